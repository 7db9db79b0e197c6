//! The RESP gateway against a real cluster: three `synod-server` processes,
//! each with `--resp-listen`, spoken to over raw TCP the way a Redis client
//! would (and with `redis-cli` when it is installed).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Auth, Cluster};

/// A RESP2 reply as the test reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum R {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<R>),
}

fn bulk(s: &str) -> R {
    R::Bulk(Some(s.as_bytes().to_vec()))
}

fn ok() -> R {
    R::Simple("OK".into())
}

/// One raw RESP connection with a blocking reader and a 20 s timeout.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).expect("connect to the RESP port");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    fn send(&mut self, args: &[&str]) {
        self.send_raw(&encode(args));
    }

    fn call(&mut self, args: &[&str]) -> R {
        self.send(args);
        self.read()
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("read a reply line");
        assert!(l.ends_with("\r\n"), "reply line {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    fn read(&mut self) -> R {
        let l = self.line();
        let (kind, rest) = l.split_at(1);
        match kind {
            "+" => R::Simple(rest.into()),
            "-" => R::Error(rest.into()),
            ":" => R::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return R::Bulk(None);
                }
                let mut b = vec![0; n as usize + 2];
                self.reader.read_exact(&mut b).unwrap();
                b.truncate(n as usize);
                R::Bulk(Some(b))
            }
            "*" => {
                let n: usize = rest.parse().unwrap();
                R::Array((0..n).map(|_| self.read()).collect())
            }
            _ => panic!("not a RESP reply: {l:?}"),
        }
    }

    /// True once the server has closed the connection (EOF or reset).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

fn resp_addr(c: &Cluster, i: usize) -> String {
    c.nodes[i].resp_addr.clone().expect("started with RESP")
}

#[test]
fn redis_commands_work_through_every_nodes_gateway() {
    let cluster = Cluster::new_with_resp(3);
    let mut a = Conn::open(&resp_addr(&cluster, 0));

    // What redis-cli and redis-benchmark ask first.
    assert_eq!(a.call(&["PING"]), R::Simple("PONG".into()));
    assert!(matches!(a.call(&["HELLO", "4"]), R::Error(e) if e.starts_with("NOPROTO")));
    assert!(matches!(a.call(&["HELLO", "2"]), R::Array(f) if f[1] == bulk("synod")));
    assert!(matches!(a.call(&["COMMAND", "DOCS"]), R::Array(d) if !d.is_empty()));
    assert_eq!(
        a.call(&["CONFIG", "GET", "save"]),
        R::Array(vec![bulk("save"), bulk("")])
    );
    assert_eq!(a.call(&["CLIENT", "SETNAME", "t"]), ok());
    assert_eq!(a.call(&["CLIENT", "GETNAME"]), bulk("t"));
    assert_eq!(a.call(&["SELECT", "0"]), ok());

    // The KV commands.
    assert_eq!(a.call(&["GET", "nothing"]), R::Bulk(None));
    assert_eq!(a.call(&["SET", "k", "hello"]), ok());
    assert_eq!(a.call(&["GET", "k"]), bulk("hello"));
    assert_eq!(a.call(&["APPEND", "k", " world"]), R::Int(11));
    assert_eq!(a.call(&["EXISTS", "k", "nothing", "k"]), R::Int(2));
    assert_eq!(a.call(&["MSET", "x", "1", "y", "2"]), ok());
    assert_eq!(
        a.call(&["MGET", "x", "nothing", "y"]),
        R::Array(vec![bulk("1"), R::Bulk(None), bulk("2")])
    );
    assert_eq!(a.call(&["DEL", "k", "x", "nothing"]), R::Int(2));
    assert_eq!(a.call(&["GET", "k"]), R::Bulk(None));
    assert_eq!(a.call(&["SET", "k", "v", "EX", "100"]), ok());
    assert!(matches!(a.call(&["TTL", "k"]), R::Int(t) if t > 90 && t <= 100));
    assert!(
        matches!(a.call(&["SET", "k", "v", "EX", "0"]), R::Error(e) if e.starts_with("ERR invalid expire time"))
    );
    assert_eq!(a.call(&["DEL", "k"]), R::Int(1));
    assert_eq!(
        a.call(&["NOSUCH", "x"]),
        R::Error("ERR unknown command 'NOSUCH', with args beginning with: 'x' ".into())
    );

    // A write through one node's gateway is seen through another's and by
    // the native client: the gateways are clients of one store.
    let mut b = Conn::open(&resp_addr(&cluster, 2));
    assert_eq!(b.call(&["GET", "y"]), bulk("2"));
    assert_eq!(
        cluster.client().get(&b"y"[..]).unwrap().as_deref(),
        Some(&b"2"[..])
    );

    // A pipeline in one write: every reply, in order, with per-key order
    // kept (the GET after the SET and APPEND of the same key sees both).
    let mut pipeline = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        pipeline.extend(encode(&["SET", &format!("p{i}"), &format!("v{i}")]));
        expected.push(ok());
    }
    pipeline.extend(encode(&["SET", "seq", "a"]));
    pipeline.extend(encode(&["APPEND", "seq", "b"]));
    pipeline.extend(encode(&["GET", "seq"]));
    pipeline.extend(b"PING\r\n");
    for i in 0..50 {
        pipeline.extend(encode(&["GET", &format!("p{i}")]));
    }
    expected.extend([ok(), R::Int(2), bulk("ab"), R::Simple("PONG".into())]);
    expected.extend((0..50).map(|i| bulk(&format!("v{i}"))));
    a.send_raw(&pipeline);
    let got: Vec<R> = (0..expected.len()).map(|_| a.read()).collect();
    assert_eq!(got, expected);

    // Inline commands, as typed into telnet.
    a.send_raw(b"set inline yes\r\nget inline\r\n");
    assert_eq!(a.read(), ok());
    assert_eq!(a.read(), bulk("yes"));

    assert_eq!(a.call(&["QUIT"]), ok());
    assert!(a.closed());

    redis_cli_if_installed(&resp_addr(&cluster, 1));
}

/// The real redis-cli, when the machine has it; never installed by a test.
/// Exact reply bytes, RESP2 then RESP3 on one connection (HELLO 3 switches
/// the replies of the commands after it), for the types RESP3 adds.
#[test]
fn exact_reply_bytes_in_resp2_and_resp3() {
    let cluster = Cluster::new_with_resp(3);
    let mut a = Conn::open(&resp_addr(&cluster, 0));
    let expect = |a: &mut Conn, args: &[&str], want: &[u8]| {
        a.send(args);
        let mut got = vec![0; want.len()];
        a.reader.read_exact(&mut got).expect("reply bytes");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "{args:?}"
        );
    };
    let R::Int(id) = a.call(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID answers an integer")
    };
    // RESP2.
    expect(&mut a, &["SET", "s", "This is a string"], b"+OK\r\n");
    expect(&mut a, &["GET", "missing"], b"$-1\r\n");
    expect(
        &mut a,
        &["MGET", "s", "missing"],
        b"*2\r\n$16\r\nThis is a string\r\n$-1\r\n",
    );
    expect(&mut a, &["STRLEN", "s"], b":16\r\n");
    expect(&mut a, &["GETRANGE", "s", "-6", "-1"], b"$6\r\nstring\r\n");
    expect(&mut a, &["TYPE", "s"], b"+string\r\n");
    expect(&mut a, &["TYPE", "missing"], b"+none\r\n");
    expect(
        &mut a,
        &["CONFIG", "GET", "save"],
        b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n",
    );
    expect(&mut a, &["INFO", "keyspace"], b"$12\r\n# Keyspace\r\n\r\n");
    expect(
        &mut a,
        &["STRLEN"],
        b"-ERR wrong number of arguments for 'strlen' command\r\n",
    );
    // HELLO 3: Redis' fields, as a map.
    let hello = format!(
        "%7\r\n$6\r\nserver\r\n$5\r\nsynod\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n\
         $5\r\nproto\r\n:3\r\n$2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
         $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    );
    expect(&mut a, &["HELLO", "3"], hello.as_bytes());
    expect(&mut a, &["GET", "missing"], b"_\r\n");
    expect(
        &mut a,
        &["MGET", "missing", "s"],
        b"*2\r\n_\r\n$16\r\nThis is a string\r\n",
    );
    expect(
        &mut a,
        &["CONFIG", "GET", "save"],
        b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n",
    );
    expect(
        &mut a,
        &["INFO", "keyspace"],
        b"=16\r\ntxt:# Keyspace\r\n\r\n",
    );
    expect(&mut a, &["CLIENT", "GETNAME"], b"_\r\n");
    expect(&mut a, &["INCR", "n"], b":1\r\n");
    expect(&mut a, &["INCRBY", "n", "-3"], b":-2\r\n");
    expect(
        &mut a,
        &["INCR", "s"],
        b"-ERR value is not an integer or out of range\r\n",
    );
    expect(&mut a, &["SET", "n", "x", "NX"], b"_\r\n");
    expect(&mut a, &["SET", "n", "x", "XX", "GET"], b"$2\r\n-2\r\n");
    expect(&mut a, &["GETDEL", "n"], b"$1\r\nx\r\n");
    expect(&mut a, &["SETNX", "n", "y"], b":1\r\n");
    expect(&mut a, &["DEL", "s", "missing", "n"], b":2\r\n");
    // RESET goes back to RESP2.
    expect(&mut a, &["RESET"], b"+RESET\r\n");
    expect(&mut a, &["GET", "missing"], b"$-1\r\n");
}

fn redis_cli_if_installed(addr: &str) {
    let Ok(found) = std::process::Command::new("which")
        .arg("redis-cli")
        .output()
    else {
        println!("note: cannot run `which`; skipping the redis-cli check");
        return;
    };
    if !found.status.success() {
        println!("note: redis-cli is not installed; skipping the redis-cli check");
        return;
    }
    let (host, port) = addr.rsplit_once(':').unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", host, "-p", port])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["set", "a", "b"]), "OK");
    assert_eq!(cli(&["get", "a"]), "b");
    assert_eq!(cli(&["del", "a"]), "1");
    // MULTI/SET/SET/EXEC on one redis-cli connection (commands on stdin).
    let mut child = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run redis-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"MULTI\nSET cli:a 1\nSET cli:b 2\nEXEC\nMGET cli:a cli:b\n")
        .expect("write redis-cli's input");
    let out = child.wait_with_output().expect("redis-cli finishes");
    assert!(out.status.success(), "redis-cli MULTI: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        ["OK", "QUEUED", "QUEUED", "OK", "OK", "1", "2"],
        "{text}"
    );
}

/// Keys of the cluster's latest configuration: two in one group and one in
/// another (`None` while the configuration has only one serving group).
fn keys_by_group(cluster: &Cluster) -> Option<(String, String, String)> {
    let config = cluster.client().query(None).ok()?;
    let n = config.shards.len() as u32;
    let gid = |k: &str| config.shards[synod_wire::shard_of(k.as_bytes(), n) as usize];
    let keys: Vec<String> = (0..1000).map(|i| format!("xg{i}")).collect();
    let a = keys.iter().find(|k| gid(k) != 0)?;
    let same = keys.iter().find(|k| *k != a && gid(k) == gid(a))?;
    let other = keys.iter().find(|k| gid(k) != 0 && gid(k) != gid(a))?;
    Some((a.clone(), same.clone(), other.clone()))
}

/// With two groups: keys of one group get one transaction (one log entry),
/// keys across groups one two-phase commit: MSET, MGET, MSETNX and EXEC
/// are atomic across groups too.
#[test]
fn transactions_are_atomic_in_one_group_and_across_groups() {
    let cluster = Cluster::new_with_resp(3);
    cluster
        .client()
        .join(vec![synod_wire::GroupInfo::new(2, cluster.masters.clone())])
        .expect("join group 2");
    let mut keys = None;
    cluster.wait_for(Duration::from_secs(30), |c| {
        keys = keys_by_group(c);
        keys.is_some()
    });
    let (a, same, other) = keys.expect("waited");
    let mut c = Conn::open(&resp_addr(&cluster, 0));
    // Shards may still be moving: a refusal or timeout before they settle
    // is retried (bounded by wait_for).
    cluster.wait_for(Duration::from_secs(30), |_| {
        c.call(&["MSET", &a, "1", &same, "2"]) == ok()
    });
    assert_eq!(
        c.call(&["MSETNX", &a, "x", &same, "y"]),
        R::Int(0),
        "MSETNX within one group"
    );
    for cmd in [&["MULTI"][..], &["SET", &a, "3"], &["INCR", &same]] {
        c.send(cmd);
    }
    c.send(&["EXEC"]);
    assert_eq!(c.read(), ok());
    assert_eq!(c.read(), R::Simple("QUEUED".into()));
    assert_eq!(c.read(), R::Simple("QUEUED".into()));
    assert_eq!(c.read(), R::Array(vec![ok(), R::Int(3)]));

    // Across groups: two-phase commit.
    assert_eq!(
        c.call(&["MSET", &a, "4", &other, "5"]),
        ok(),
        "MSET across groups"
    );
    assert_eq!(
        c.call(&["MGET", &a, &other]),
        R::Array(vec![bulk("4"), bulk("5")])
    );
    assert_eq!(
        c.call(&["MSETNX", &a, "x", &other, "y"]),
        R::Int(0),
        "MSETNX across groups: both keys exist"
    );
    c.call(&["MULTI"]);
    c.call(&["SET", &a, "6"]);
    c.call(&["SET", &other, "7"]);
    let r = c.call(&["EXEC"]);
    assert_eq!(r, R::Array(vec![ok(), ok()]), "EXEC across groups");
    assert_eq!(
        c.call(&["MGET", &a, &other]),
        R::Array(vec![bulk("6"), bulk("7")]),
        "EXEC across groups ran both"
    );
    assert_eq!(c.call(&["DEL", &a, &same, &other]), R::Int(3));
}

#[test]
fn hostile_resp_input_is_refused_without_harming_the_node() {
    let cluster = Cluster::new_with_resp(3);
    let addr = resp_addr(&cluster, 0);

    // A bulk length over the limit is refused from its header alone, with
    // an error reply, and the connection is closed.
    let mut c = Conn::open(&addr);
    c.send_raw(b"*2\r\n$3\r\nGET\r\n$999999999\r\n");
    assert!(matches!(c.read(), R::Error(e) if e.contains("Protocol error")));
    assert!(c.closed());

    // So is an absurd argument count.
    let mut c = Conn::open(&addr);
    c.send_raw(b"*99999999\r\n");
    assert!(matches!(c.read(), R::Error(e) if e.contains("Protocol error")));
    assert!(c.closed());

    // Replies to the commands before the garbage still arrive.
    let mut c = Conn::open(&addr);
    c.send_raw(b"PING\r\n*1\r\n:5\r\n");
    assert_eq!(c.read(), R::Simple("PONG".into()));
    assert!(matches!(c.read(), R::Error(e) if e.contains("expected '$'")));
    assert!(c.closed());

    // Random bytes on many connections, some cut off mid-command.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..30 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let junk: Vec<u8> = (0..(round * 37 % 500 + 1))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = s.write_all(if round % 3 == 0 {
            b"*3\r\n$3\r\nSET\r\n$1"
        } else {
            &junk
        });
        let mut sink = [0u8; 1024];
        let _ = s.read(&mut sink);
    }

    // The node and its gateway still serve.
    let mut c = Conn::open(&addr);
    assert_eq!(c.call(&["SET", "after", "garbage"]), ok());
    assert_eq!(c.call(&["GET", "after"]), bulk("garbage"));
    assert!(cluster.exited_none());
}

/// Reads `n` replies.
fn read_n(c: &mut Conn, n: usize) -> Vec<R> {
    (0..n).map(|_| c.read()).collect()
}

#[test]
fn interleaved_pipelines_keep_per_key_order_while_results_complete_out_of_order() {
    let cluster = Cluster::new_with_resp(3);
    let mut c = Conn::open(&resp_addr(&cluster, 1));
    // 600 APPENDs over 6 keys in one write: different keys run
    // concurrently and complete in any order, one key's appends never
    // overtake each other, and every reply comes back in command order.
    let mut pipeline = Vec::new();
    let mut want: Vec<String> = vec![String::new(); 6];
    let mut expected = Vec::new();
    for i in 0..600 {
        let k = (i * 7 + i / 13) % 6;
        let piece = format!("{i},");
        want[k].push_str(&piece);
        pipeline.extend(encode(&["APPEND", &format!("ord{k}"), &piece]));
        expected.push(R::Int(want[k].len() as i64));
        if i % 50 == 0 {
            // Reads in the middle see exactly the appends before them.
            pipeline.extend(encode(&["GET", &format!("ord{k}")]));
            expected.push(bulk(&want[k]));
        }
    }
    c.send_raw(&pipeline);
    assert_eq!(read_n(&mut c, expected.len()), expected);
    for (k, w) in want.iter().enumerate() {
        assert_eq!(c.call(&["GET", &format!("ord{k}")]), bulk(w));
    }

    // More commands in one write than the gateway takes from a connection
    // at once (1024 unanswered): it stops parsing, answers, and resumes by
    // itself although no new bytes arrive.
    let mut pipeline = Vec::new();
    let mut expected = Vec::new();
    for i in 0..3000 {
        let k = format!("many{}", (i / 2) % 3);
        if i % 2 == 0 {
            pipeline.extend(encode(&["SET", &k, &i.to_string()]));
            expected.push(ok());
        } else {
            pipeline.extend(encode(&["GET", &k]));
            expected.push(bulk(&(i - 1).to_string()));
        }
    }
    c.send_raw(&pipeline);
    assert_eq!(read_n(&mut c, expected.len()), expected);
}

#[test]
fn pipelined_commands_survive_a_leader_kill_through_a_surviving_gateway() {
    let mut cluster = Cluster::new_with_resp(3);
    let leader = cluster.kv_leader().expect("a KV leader");
    let via = (leader + 1) % 3;
    let mut c = Conn::open(&resp_addr(&cluster, via));
    assert_eq!(c.call(&["SET", "before", "kill"]), ok());
    cluster.kill(leader);
    // The gateway's upstream connection to the dead leader fails or goes
    // silent; its requests move to the other members, follow NotLeader
    // hints until a new leader is elected, and keep their seqs (so each
    // APPEND applies once).
    let mut pipeline = Vec::new();
    let mut expected = Vec::new();
    let mut log = String::new();
    for i in 0..40 {
        pipeline.extend(encode(&["SET", &format!("after{i}"), &format!("v{i}")]));
        expected.push(ok());
        log.push_str(&format!("{i};"));
        pipeline.extend(encode(&["APPEND", "log", &format!("{i};")]));
        expected.push(R::Int(log.len() as i64));
    }
    c.send_raw(&pipeline);
    assert_eq!(read_n(&mut c, expected.len()), expected);
    assert_eq!(c.call(&["GET", "before"]), bulk("kill"));
    assert_eq!(c.call(&["GET", "log"]), bulk(&log));
    assert_eq!(c.call(&["GET", "after39"]), bulk("v39"));
}

#[test]
fn a_client_that_stops_reading_stalls_only_itself() {
    let cluster = Cluster::new_with_resp(3);
    let addr = resp_addr(&cluster, 0);
    let mut c = Conn::open(&addr);
    let big = "x".repeat(256 << 10);
    assert_eq!(c.call(&["SET", "big", &big]), ok());
    // 400 GETs of 256 KiB: 100 MiB of replies that this client never
    // reads. The gateway stops taking its commands once its reply buffer
    // is full; the kernel buffers fill; nothing else waits for it.
    let rss_before = cluster.rss_kib(0);
    let mut greedy = TcpStream::connect(&addr).unwrap();
    greedy
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut cmds = Vec::new();
    for _ in 0..400 {
        cmds.extend(encode(&["GET", "big"]));
    }
    let _ = greedy.write_all(&cmds); // may time out: TCP pushes back
    std::thread::sleep(Duration::from_millis(500));
    // What the gateway holds for it is bounded by its reply buffer and the
    // results of its operations in flight (128 x 256 KiB), not by the
    // 100 MiB it asked for.
    let grown_mib = cluster.rss_kib(0).saturating_sub(rss_before) / 1024;
    println!("node 0 grew by {grown_mib} MiB for the client that does not read");
    assert!(grown_mib < 64, "node 0 grew by {grown_mib} MiB");
    for i in 0..20 {
        assert_eq!(c.call(&["SET", &format!("s{i}"), "v"]), ok());
        assert_eq!(c.call(&["GET", &format!("s{i}")]), bulk("v"));
    }
    let mut other = Conn::open(&addr);
    assert_eq!(other.call(&["PING"]), R::Simple("PONG".into()));
    // Once it reads, it gets every reply, in order: the gateway resumes
    // the connection as its buffers drain.
    greedy
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut greedy = Conn {
        reader: BufReader::new(greedy.try_clone().unwrap()),
        writer: greedy,
    };
    let want = bulk(&big);
    for i in 0..400 {
        assert!(greedy.read() == want, "reply {i} is the big value");
    }
    assert_eq!(greedy.call(&["PING"]), R::Simple("PONG".into()));
    assert_eq!(c.call(&["GET", "s0"]), bulk("v"));

    // Distinct keys: more operations than may be in flight (128), whose
    // results fill the reply buffer, so sending stops until the client
    // reads; then the rest are sent and answered, in order.
    let mid = "m".repeat(64 << 10);
    let mut sets = Vec::new();
    for i in 0..300 {
        sets.extend(encode(&["SET", &format!("mid{i}"), &mid]));
    }
    c.send_raw(&sets);
    assert!(read_n(&mut c, 300).iter().all(|r| *r == ok()));
    let mut gets = Vec::new();
    for i in 0..300 {
        gets.extend(encode(&["GET", &format!("mid{i}")]));
    }
    greedy.send_raw(&gets);
    std::thread::sleep(Duration::from_millis(500));
    let want = bulk(&mid);
    for i in 0..300 {
        assert!(greedy.read() == want, "reply {i} is mid{i}'s value");
    }
}

#[test]
fn connection_limit_and_idle_timeout_of_an_in_process_gateway() {
    let cluster = Cluster::new(3);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut opts = synod::resp::GatewayOptions::new(cluster.masters.clone());
    opts.connections_max = 2;
    opts.idle_timeout = Duration::from_secs(1);
    opts.threads = 2;
    synod::resp::serve_with(listener, opts).unwrap();

    let mut a = Conn::open(&addr);
    let mut b = Conn::open(&addr);
    assert_eq!(a.call(&["SET", "lim", "1"]), ok());
    assert_eq!(b.call(&["GET", "lim"]), bulk("1"));
    // A third connection is refused with Redis' own message.
    let mut c = Conn::open(&addr);
    assert_eq!(
        c.read(),
        R::Error("ERR max number of clients reached".into())
    );
    assert!(c.closed());
    // Closing one frees its slot (the count follows the loops' closes).
    assert_eq!(a.call(&["QUIT"]), ok());
    assert!(a.closed());
    let mut d = None;
    for _ in 0..50 {
        let mut t = Conn::open(&addr);
        t.send(&["PING"]);
        if t.read() == R::Simple("PONG".into()) {
            d = Some(t);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut d = d.expect("a slot frees up after QUIT");
    // Silent connections are closed after the idle timeout.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(b.closed(), "idle connection closed");
    assert!(d.closed(), "idle connection closed");
}

#[test]
fn the_gateway_follows_shards_to_a_new_group_with_each_append_applied_once() {
    let cluster = Cluster::new_with_resp(3);
    let mut c = Conn::open(&resp_addr(&cluster, 2));
    let mut pipeline = Vec::new();
    for i in 0..100 {
        pipeline.extend(encode(&["SET", &format!("mv{i}"), "a"]));
    }
    c.send_raw(&pipeline);
    assert!(read_n(&mut c, 100).iter().all(|r| *r == ok()));
    // Group 2 takes half the shards. The gateway's cached configuration is
    // now stale: requests for moved shards get WrongGroup, the gateway
    // queries the masters and resends them, same seqs, to group 2.
    cluster
        .client()
        .join(vec![synod_wire::GroupInfo::new(2, cluster.masters.clone())])
        .expect("join group 2");
    // Let both groups apply the new configuration (their watchers poll the
    // masters every 100 ms) and the shards move, so group 1 now answers
    // WrongGroup for them.
    let mut native = cluster.client();
    cluster.wait_for(Duration::from_secs(30), |_| {
        (0..100).all(|i| {
            native
                .get(bytes::Bytes::from(format!("mv{i}")))
                .is_ok_and(|v| v.as_deref() == Some(&b"a"[..]))
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut pipeline = Vec::new();
    let mut expected = Vec::new();
    for i in 0..100 {
        pipeline.extend(encode(&["APPEND", &format!("mv{i}"), "b"]));
        expected.push(R::Int(2));
        pipeline.extend(encode(&["GET", &format!("mv{i}")]));
        expected.push(bulk("ab"));
    }
    c.send_raw(&pipeline);
    assert_eq!(read_n(&mut c, expected.len()), expected);
}

/// `--resp-password-file`: nothing but PING/AUTH/HELLO/QUIT before AUTH,
/// Redis' own error texts, and AUTH in its one- and two-argument forms and
/// through HELLO. The nodes also require a client key, so the gateway's own
/// upstream connections must authenticate (with the node's key) to serve.
#[test]
fn a_resp_password_is_required_before_commands() {
    let pw_file = std::env::temp_dir().join(format!("synod-resp-pw-{}", std::process::id()));
    std::fs::write(&pw_file, "s3cret\n").expect("write password file");
    let cluster = Cluster::new_with_resp_args(
        1,
        &["--resp-password-file", pw_file.to_str().unwrap()],
        Auth::ClientKey,
    );
    let _ = std::fs::remove_file(&pw_file);
    let noauth = R::Error("NOAUTH Authentication required.".into());
    let wrongpass =
        R::Error("WRONGPASS invalid username-password pair or user is disabled.".into());

    let mut a = Conn::open(&resp_addr(&cluster, 0));
    assert_eq!(a.call(&["PING"]), R::Simple("PONG".into()));
    assert_eq!(a.call(&["SET", "k", "v"]), noauth);
    assert_eq!(a.call(&["GET", "k"]), noauth);
    assert_eq!(a.call(&["CLIENT", "SETNAME", "x"]), noauth);
    assert_eq!(a.call(&["AUTH", "wrong"]), wrongpass);
    assert_eq!(a.call(&["AUTH", "admin", "s3cret"]), wrongpass);
    assert!(matches!(a.call(&["HELLO", "2"]), R::Error(e) if e.starts_with("NOAUTH")));
    assert_eq!(a.call(&["GET", "k"]), noauth);
    assert_eq!(a.call(&["AUTH", "s3cret"]), ok());
    assert_eq!(a.call(&["SET", "k", "v"]), ok());
    assert_eq!(a.call(&["GET", "k"]), bulk("v"));

    let mut b = Conn::open(&resp_addr(&cluster, 0));
    assert_eq!(a.call(&["GET", "k"]), bulk("v"));
    assert_eq!(b.call(&["GET", "k"]), noauth, "AUTH is per connection");
    assert_eq!(b.call(&["AUTH", "default", "s3cret"]), ok());
    assert_eq!(b.call(&["GET", "k"]), bulk("v"));

    let mut c = Conn::open(&resp_addr(&cluster, 0));
    assert_eq!(
        c.call(&["HELLO", "2", "AUTH", "default", "nope"]),
        wrongpass
    );
    assert!(matches!(
        c.call(&["HELLO", "2", "AUTH", "default", "s3cret"]),
        R::Array(_)
    ));
    assert_eq!(c.call(&["GET", "k"]), bulk("v"));
}

/// Issue 8, finding 7: sessions are bounded. With at most 4 sessions per
/// shard, (1) native clients beyond the cap evict the least recently active
/// one, whose next write gets SessionExpired (its outcome unknown, never
/// applied twice) and whose client then carries on under a fresh id; (2) a
/// gateway reuses the session of a closed RESP connection, so 60 short
/// connections do not evict a long-lived connection's session.
#[test]
fn sessions_are_capped_per_shard_and_short_resp_connections_reuse_theirs() {
    let cluster = Cluster::new_with_resp_args(
        3,
        &["--sessions-per-shard-max", "4", "--resp-threads", "1"],
        Auth::ClusterKey,
    );
    let shards = synod_wire::DEFAULT_SHARDS;
    let in_shard = |shard: u32| -> Vec<String> {
        (0..)
            .map(|i| format!("capped{i}"))
            .filter(|k| synod_wire::shard_of(k.as_bytes(), shards) == shard)
            .take(5)
            .collect()
    };
    let keys = in_shard(synod_wire::shard_of(b"capped", shards));

    // (1) The cap, through the native client. Client ids are ordered by
    // their second of creation, so the four others, made a second later,
    // are all newer than the first (the only one the cap evicts).
    let mut first = cluster.client();
    first
        .put(keys[0].clone().into_bytes(), &b"a"[..])
        .expect("first put");
    std::thread::sleep(Duration::from_millis(1100));
    for key in &keys[1..5] {
        cluster
            .client()
            .put(key.clone().into_bytes(), &b"x"[..])
            .expect("other clients' puts");
    }
    let old_id = first.client_id();
    assert!(
        matches!(
            first.append(keys[0].clone().into_bytes(), &b"b"[..]),
            Err(synod::client::ClientError::SessionExpired)
        ),
        "the evicted client's write must be refused, not applied"
    );
    assert_ne!(first.client_id(), old_id, "a fresh id after SessionExpired");
    first
        .append(keys[0].clone().into_bytes(), &b"c"[..])
        .expect("under the fresh id");
    assert_eq!(
        cluster
            .client()
            .get(keys[0].clone().into_bytes())
            .expect("get")
            .as_deref(),
        Some(&b"ac"[..])
    );

    // (2) The gateway's session pool, in another shard. Without it, each
    // short connection would be a new session and the cap would evict the
    // long-lived connection's.
    let keys = in_shard((synod_wire::shard_of(b"capped", shards) + 1) % shards);
    let addr = resp_addr(&cluster, 0);
    let mut long = Conn::open(&addr);
    assert_eq!(long.call(&["SET", &keys[0], "1"]), ok());
    for i in 0..60 {
        let mut short = Conn::open(&addr);
        assert_eq!(short.call(&["SET", &keys[1], &i.to_string()]), ok());
        assert_eq!(short.call(&["QUIT"]), ok());
        assert!(short.closed());
        // Let the gateway see the close before the next connection opens.
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(long.call(&["APPEND", &keys[0], "2"]), R::Int(2));
    assert_eq!(long.call(&["GET", &keys[0]]), bulk("12"));
}

/// Has the gateway closed `c` (EOF or reset) within `limit`? Unlike
/// `Conn::closed`, a read timeout means open.
fn closed_within(c: &Conn, limit: Duration) -> bool {
    let mut s = c.writer.try_clone().unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

/// A gateway in this process for a cluster that is not there: the hostile
/// clients below never reach the cluster, and PING is answered locally.
fn lone_gateway(tweak: impl FnOnce(&mut synod::resp::GatewayOptions)) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut opts = synod::resp::GatewayOptions::new(vec!["127.0.0.1:1".into()]);
    opts.threads = 1;
    tweak(&mut opts);
    synod::resp::serve_with(listener, opts).unwrap();
    addr
}

/// Issue 8, finding 9 (RESP): silent connections filling `connections_max`
/// no longer lock out a PING (the one silent longest is closed for it), a
/// byte at a time no longer keeps a connection alive (the idle timer
/// counts whole commands, and an unfinished command has a deadline), and
/// an MGET of a million keys is refused from its count.
#[test]
fn resp_idle_and_trickling_connections_do_not_lock_out_ping() {
    let addr = lone_gateway(|o| {
        o.connections_max = 20;
        o.idle_timeout = Duration::from_secs(60);
        o.command_timeout = Duration::from_secs(1);
    });
    let hogs: Vec<Conn> = (0..20).map(|_| Conn::open(&addr)).collect();
    std::thread::sleep(Duration::from_millis(1300));
    let mut p = Conn::open(&addr);
    assert_eq!(p.call(&["PING"]), R::Simple("PONG".into()));
    let closed_hogs = hogs
        .into_iter()
        .filter(|h| closed_within(h, Duration::from_millis(100)))
        .count();
    assert!(closed_hogs >= 1, "no silent connection made room");

    // A byte every 200 ms of a command that never completes.
    let mut t = Conn::open(&addr);
    t.writer
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let start = Instant::now();
    let mut closed = false;
    for b in b"*2\r\n$4\r\nECHO\r\n$1000\r\n".iter().cycle().take(40) {
        if t.writer.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if matches!(t.writer.read(&mut buf), Ok(0)) {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(closed, "a trickling connection stayed open");
    assert!(start.elapsed() < Duration::from_secs(5));

    let mut m = Conn::open(&addr);
    m.send_raw(b"*1000001\r\n$4\r\nMGET\r\n");
    match m.read() {
        R::Error(e) => assert!(e.contains("invalid multibulk length"), "{e}"),
        other => panic!("an MGET of a million keys got {other:?}"),
    }
    assert!(m.closed());
}

/// Issue 8, finding 9 (RESP): four connections each send 30 MiB of an
/// MSET of two 16 MiB values and stop. Before, the gateway held all
/// 120 MiB (each under the 33 MiB per-connection cap); now its partial
/// budget (64 MiB, one loop here) closes the largest until the rest fit.
#[test]
fn resp_unfinished_commands_are_held_within_the_budget() {
    let addr = lone_gateway(|o| o.command_timeout = Duration::from_secs(60));
    let chunk = vec![b'x'; 1 << 20];
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (addr, chunk) = (addr.clone(), chunk.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(&addr);
                c.writer
                    .set_write_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let _ = c
                    .writer
                    .write_all(b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$16777216\r\n");
                for i in 0..30 {
                    if i == 16 {
                        let _ = c.writer.write_all(b"\r\n$1\r\nb\r\n$16777216\r\n");
                    }
                    if c.writer.write_all(&chunk).is_err() {
                        break;
                    }
                }
                c
            })
        })
        .collect();
    let conns: Vec<Conn> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let closed = conns
        .iter()
        .filter(|c| closed_within(c, Duration::from_millis(500)))
        .count();
    assert!(
        closed >= 2,
        "only {closed} of 4 unfinished 30 MiB commands closed"
    );
}

/// Key expiry lives in the log (log time, absolute deadlines), so it
/// survives the leader's death and a shard's move to another group: a
/// long TTL is still counting down afterwards, a short one has still
/// expired, and a key without one still has none.
#[test]
fn expiry_survives_a_leader_kill_and_a_shard_move() {
    let mut cluster = Cluster::new_with_resp(3);
    let leader = cluster.kv_leader().expect("a KV leader");
    let via = (leader + 1) % 3;
    let mut c = Conn::open(&resp_addr(&cluster, via));
    let keys = 16;
    for i in 0..keys {
        assert_eq!(
            c.call(&["SET", &format!("long{i}"), "v", "EX", "600"]),
            ok()
        );
        assert_eq!(
            c.call(&["SET", &format!("short{i}"), "v", "PX", "1200"]),
            ok()
        );
        assert_eq!(c.call(&["SET", &format!("plain{i}"), "v"]), ok());
    }
    let pttl = |c: &mut Conn, key: &str| match c.call(&["PTTL", key]) {
        R::Int(n) => n,
        other => panic!("PTTL {key}: {other:?}"),
    };
    assert!(pttl(&mut c, "short0") > 0);
    cluster.kill(leader);
    let check = |c: &mut Conn, when: &str| {
        // Bounded: the short keys expire 1.2 s after they were written.
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..keys {
            loop {
                match c.call(&["GET", &format!("short{i}")]) {
                    R::Bulk(None) => break,
                    R::Bulk(Some(_)) => {
                        assert!(Instant::now() < deadline, "short{i} alive {when}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => panic!("GET short{i} {when}: {other:?}"),
                }
            }
            assert_eq!(pttl(c, &format!("short{i}")), -2, "{when}");
            let left = pttl(c, &format!("long{i}"));
            assert!(left > 0 && left <= 600_000, "long{i} {when}: {left}");
            assert_eq!(pttl(c, &format!("plain{i}")), -1, "{when}");
            assert_eq!(c.call(&["GET", &format!("long{i}")]), bulk("v"));
        }
    };
    check(&mut c, "after the leader kill");
    // Group 2 takes half the shards (on the two live nodes and the dead
    // one: two of three make a quorum).
    let mut admin = cluster.client();
    let config = admin
        .join(vec![synod_wire::GroupInfo::new(2, cluster.masters.clone())])
        .expect("join group 2");
    let moved: Vec<usize> = (0..keys)
        .filter(|i| {
            let shard =
                synod_wire::shard_of(format!("long{i}").as_bytes(), config.shards.len() as u32);
            config.shards[shard as usize] == 2
        })
        .collect();
    assert!(!moved.is_empty(), "no test key moved to group 2");
    // Wait until group 2 serves the moved keys (a write there succeeds
    // only once the shard arrived), then check them all again.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in &moved {
        loop {
            match c.call(&["EXPIRE", &format!("plain{i}"), "600", "GT"]) {
                R::Int(0) => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "plain{i} never served: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
    let now_config = admin.query(None).expect("query");
    assert!(moved.iter().all(|i| {
        let shard = synod_wire::shard_of(
            format!("long{i}").as_bytes(),
            now_config.shards.len() as u32,
        );
        now_config.shards[shard as usize] == 2
    }));
    check(&mut c, "after the shard move");
    // And the new owner expires keys by its own log time.
    let i = moved[0];
    assert_eq!(c.call(&["PEXPIRE", &format!("long{i}"), "300"]), R::Int(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.call(&["EXISTS", &format!("long{i}")]) != R::Int(0) {
        assert!(
            Instant::now() < deadline,
            "long{i} never expired at group 2"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A command and the end of the client's stream in one readiness edge
/// (both sent while the node was stopped, on a connection the gateway
/// already polls): the gateway still reads on to the end of the stream
/// after the short read, and closes the connection at once rather than
/// at the idle timeout.
#[test]
fn a_command_and_the_end_of_the_stream_in_one_edge_close_the_connection() {
    let c = Cluster::new_with_resp(1);
    let mut conn = Conn::open(&resp_addr(&c, 0));
    assert_eq!(conn.call(&["PING"]), R::Simple("PONG".into()));
    c.signal(0, "STOP");
    conn.send(&["PING"]);
    conn.writer.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.signal(0, "CONT");
    assert!(
        closed_within(&conn, Duration::from_secs(5)),
        "the gateway kept the half-closed connection open"
    );
}
