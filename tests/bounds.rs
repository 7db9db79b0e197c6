//! Issue 8's resource and start-up findings against real `synod-server`
//! processes: reply bytes of a client that never reads (6), idle sockets at
//! the connection limit, per-frame deadlines and the partial-frame budget
//! (9), the data directory's lock and identity (12), and flag validation
//! (14). Every wait is bounded; every child is killed by `Cluster`'s drop.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{free_ports, raw_call, Cluster, GID};
use synod_wire::{
    encode_frame, ClientReply, ClientRequest, Frame, MasterOp, MasterRequest, Message, Op,
};

/// A header (checksums right) for a Put to group 1 declaring `body` bytes.
fn put_header(body: u32) -> Vec<u8> {
    let mut h = vec![0u8; 32];
    h[0..4].copy_from_slice(&0x444E_5953u32.to_le_bytes());
    h[4] = 1; // version
    h[5] = 0x02; // Put
    h[8..12].copy_from_slice(&body.to_le_bytes());
    h[12..20].copy_from_slice(&1u64.to_le_bytes());
    h[20..24].copy_from_slice(&GID.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn get_frame(request_id: u64, key: &'static [u8], out: &mut BytesMut) {
    encode_frame(
        &Frame {
            request_id,
            group: GID,
            message: Message::Request(ClientRequest {
                client_id: 0xBAD0,
                seq: request_id,
                ack_seq: 0,
                op: Op::Get { key: key.into() },
            }),
        },
        out,
    );
}

/// Has the server closed `s`? Reads (and discards) until EOF or an error,
/// for at most `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("closed: {e}");
                return true; // reset
            }
        }
    }
    false
}

/// A good client's put+get round trips for `d`; panics if one fails or
/// takes over 3 s. Returns how many completed.
fn good_client_for(c: &Cluster, d: Duration) -> usize {
    let mut client = c.client_with_timeout(Duration::from_secs(5));
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < d {
        let t = Instant::now();
        let v = Bytes::from(format!("v{n}"));
        client
            .put(&b"good"[..], v.clone())
            .expect("put under attack");
        assert_eq!(client.get(&b"good"[..]).expect("get under attack"), Some(v));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
        n += 1;
    }
    n
}

/// Finding 6: a client pipelines 4,096 Gets of a 1 MiB value and never
/// reads. Before, every reply was queued (2.7 GiB); now the connection
/// stops being read at the soft cap and is closed at the hard cap
/// (32 MiB), so the server's RSS grows by less than 128 MiB, and a good
/// client is served throughout.
#[test]
fn a_client_that_never_reads_large_replies_costs_a_bounded_buffer() {
    let c = Cluster::new(1);
    let addr = c.nodes[0].addr.clone();
    let mut client = c.client();
    client
        .put(&b"big"[..], Bytes::from(vec![7u8; 1 << 20]))
        .expect("put 1 MiB");
    let rss_before = c.rss_kib(0);
    let mut hog = TcpStream::connect(&addr).unwrap();
    // A small receive buffer: the kernel holds little on the hog's behalf.
    socket2::SockRef::from(&hog)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut out = BytesMut::new();
    for i in 1..=4096 {
        get_frame(i, b"big", &mut out);
    }
    hog.write_all(&out).expect("pipeline the gets");

    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = c.pid(0);
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let kib = rss_of(pid);
                peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let served = good_client_for(&c, Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("RSS before {rss_before} KiB, peak under the non-reading client {peak} KiB; {served} good round trips");
    assert!(served > 5, "only {served} round trips in 3 s");
    assert!(
        peak < rss_before + 128 * 1024,
        "server RSS went from {rss_before} KiB to a peak of {peak} KiB"
    );
    assert!(
        closed_within(&mut hog, Duration::from_secs(5)),
        "the non-reading client was not closed at the hard cap"
    );
    assert!(c.exited_none());
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn query_request() -> Message {
    Message::Master(MasterRequest {
        client_id: 0xAD,
        seq: 1,
        ack_seq: 0,
        op: MasterOp::Query { num: None },
    })
}

/// Finding 9: with `--connections-max 16`, 100 idle sockets on node 0 used
/// to lock out an admin query and a restarted peer. Now the idle ones are
/// evicted to make room: the query is answered, and after node 1 restarts
/// and node 2 stops, nodes 0 and 1 form a majority and serve a put (node 1
/// must get its own connection into node 0 accepted for that).
#[test]
fn idle_sockets_at_the_connection_limit_do_not_lock_out_admin_or_peers() {
    let mut c = Cluster::with_args(
        3,
        0,
        &["--connections-max", "16", "--first-frame-secs", "120"],
    );
    c.client()
        .join(vec![synod_wire::GroupInfo::new(GID, c.masters.clone())])
        .expect("join");
    c.wait_for(Duration::from_secs(30), |c| {
        c.client().put(&b"k"[..], &b"v0"[..]).is_ok()
    });
    let target = c.nodes[0].addr.clone();
    let idle: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(&target).ok())
        .collect();
    assert!(idle.len() >= 90, "only {} idle sockets", idle.len());
    std::thread::sleep(Duration::from_millis(300));
    match raw_call(&target, 0, query_request(), Duration::from_secs(3)) {
        Some(Message::Config(_)) | Some(Message::Reply(ClientReply::NotLeader { .. })) => {}
        other => panic!("admin query on a node full of idle sockets: {other:?}"),
    }
    c.kill(1);
    c.start_node(1);
    c.kill(2);
    let mut client = c.client_with_timeout(Duration::from_secs(15));
    client
        .put(&b"k"[..], &b"v1"[..])
        .expect("nodes 0 and 1 serve after 1 restarted among idle sockets");
    drop(idle);
    assert!(c.exited_none());
}

/// Finding 9: one valid frame no longer exempts a connection from
/// deadlines. A client sends a Get, then 10 bytes of a frame declaring
/// 1 MiB, and stops: it is closed at `--frame-timeout-secs` (2 s here),
/// not at the 300 s idle timeout.
#[test]
fn a_partial_frame_after_a_valid_one_is_closed_at_the_frame_deadline() {
    let c = Cluster::with_args(1, 0, &["--frame-timeout-secs", "2"]);
    let addr = c.nodes[0].addr.clone();
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut out = BytesMut::new();
    get_frame(1, b"x", &mut out);
    s.write_all(&out).unwrap();
    let mut partial = put_header(1 << 20);
    partial.extend_from_slice(&[0u8; 10]);
    // Before the write: a test thread descheduled after it (a loaded CI
    // box) must not make the server look early.
    let start = Instant::now();
    s.write_all(&partial).unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(6)),
        "a stalled partial frame kept its connection open"
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
}

/// Finding 9: 20 connections each send 15 MiB of a frame declaring one
/// byte more and stop. Before, the server held all of it (300 MiB); now the
/// per-core budget (64 MiB) closes the largest partials and a good client
/// is served. All of them wait on the accepting core (a connection moves
/// to its group's core with its first whole frame), so RSS may grow by
/// that one budget plus 48 MiB: each hog's first read before its header is
/// checked (up to 1 MiB) and what the allocator keeps. It grew by 64-170
/// MiB while freed read buffers stayed resident (one CI failure at a
/// 160 MiB limit); with exact-size buffers, mapped on their own, by
/// 63-67 MiB in 19 runs.
#[test]
fn partial_frame_hogs_are_closed_past_the_budget() {
    let c = Cluster::new(1);
    let addr = c.nodes[0].addr.clone();
    let rss_before = c.rss_kib(0);
    const BODY: u32 = 15 << 20;
    let hogs: Vec<_> = (0..20)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).ok()?;
                s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
                let mut bytes = put_header(BODY + 1);
                bytes.resize(32 + BODY as usize, 0xAB);
                let _ = s.write_all(&bytes);
                Some(s)
            })
        })
        .collect();
    let hogs: Vec<TcpStream> = hogs.into_iter().filter_map(|h| h.join().unwrap()).collect();
    let served = good_client_for(&c, Duration::from_secs(2));
    let rss = c.rss_kib(0);
    eprintln!("RSS before {rss_before} KiB, with 20 partial-frame hogs {rss} KiB; {served} good round trips");
    assert!(served > 3, "only {served} round trips");
    assert!(
        rss < rss_before + (64 + 48) * 1024,
        "server RSS went from {rss_before} KiB to {rss} KiB with partial-frame hogs"
    );
    let mut hogs = hogs;
    let closed = hogs
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(300)))
        .filter(|&closed| closed)
        .count();
    assert!(closed >= 14, "only {closed} of 20 hogs closed");
    assert!(c.exited_none());
}

/// Run `synod-server` with `args`; its exit status and output, or a panic
/// if it is still running after 10 s (killed first).
fn run_server(args: &[&str]) -> (std::process::ExitStatus, String) {
    run_server_with_env(args, &[])
}

/// [`run_server`] with these environment variables set.
fn run_server_with_env(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_synod-server"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn synod-server");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status, out);
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("synod-server {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Finding 12: a second server on a running node's data directory is
/// refused (the LOCK file), and a stopped node's directory started under
/// another address is refused (IDENTITY), each with a clear message.
#[test]
fn a_data_directory_serves_one_process_under_one_identity() {
    let mut c = Cluster::start_masters(1);
    let dir = c.nodes[0].data_dir.to_str().unwrap().to_string();
    let other = format!("127.0.0.1:{}", free_ports(1)[0]);
    let (status, out) = run_server(&["--listen", &other, "--data-dir", &dir, "--masters", &other]);
    assert!(!status.success());
    assert!(out.contains("in use by another synod-server"), "{out}");
    c.kill(0);
    let (status, out) = run_server(&["--listen", &other, "--data-dir", &dir, "--masters", &other]);
    assert!(!status.success());
    assert!(out.contains("belongs to another node or cluster"), "{out}");
    assert!(out.contains("--allow-identity-change"), "{out}");
    // Its own address still starts.
    c.start_node(0);
    c.wait_for(Duration::from_secs(20), |c| c.client().query(None).is_ok());
}

/// Finding 14: nonsense flags exit non-zero with a message naming them
/// instead of starting a node that cannot work (or panicking).
#[test]
fn bad_flags_exit_non_zero_with_a_message() {
    let dir = std::env::temp_dir().join(format!("synod-badflags-{}", std::process::id()));
    let dir_s = dir.to_str().unwrap().to_string();
    let port = free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let localhost = format!("localhost:{port}");
    let base = ["--listen", &listen, "--data-dir", &dir_s, "--masters"];
    let cases: [(&[&str], &str); 7] = [
        (&[&localhost], "not IP:PORT"),
        (&[&listen, "--shards", "70000"], "--shards"),
        (&[&listen, "--connections-max", "0"], "--connections-max"),
        (&[&listen, "--cores", "0"], "--cores"),
        (&[&listen, "--frame-bytes-max", "10"], "--frame-bytes-max"),
        // The names before the limits took the `*_max` order (issue 9).
        (&[&listen, "--max-connections", "0"], "--connections-max 0"),
        (
            &[&listen, "--max-frame-bytes", "10"],
            "--frame-bytes-max 10",
        ),
    ];
    for (rest, want) in cases {
        let args: Vec<&str> = base.iter().chain(rest.iter()).copied().collect();
        let (status, out) = run_server(&args);
        assert!(!status.success(), "{args:?} started");
        assert!(out.contains(want), "{args:?}: {out}");
    }
    // Old environment names too; the new name wins when both are set.
    let args: Vec<&str> = base.iter().copied().chain([listen.as_str()]).collect();
    let old_env = [
        (&[("SYNOD_MAX_CONNECTIONS", "0")][..], "--connections-max 0"),
        (
            &[("SYNOD_MAX_FRAME_BYTES", "10")][..],
            "--frame-bytes-max 10",
        ),
        (
            &[
                ("SYNOD_MAX_FRAME_BYTES", "10"),
                ("SYNOD_FRAME_BYTES_MAX", "20"),
            ][..],
            "--frame-bytes-max 20",
        ),
    ];
    for (env, want) in old_env {
        let (status, out) = run_server_with_env(&args, env);
        assert!(!status.success(), "{env:?} started");
        assert!(out.contains(want), "{env:?}: {out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Finding 10 (cores): cores keep only the configurations their groups can
/// still need. Here core 0 hosts no KV group while group 1 (core 1) goes
/// through ten configurations, so core 0 prunes all but the latest few;
/// group 2 (core 0) then joins and must walk configurations 1.. from the
/// start: its core asks the watcher to publish them again, and group 2
/// serves its shards.
#[test]
fn a_group_hosted_after_its_core_pruned_old_configurations_still_starts() {
    let c = Cluster::start_masters(3);
    let mut admin = c.client();
    admin
        .join(vec![synod_wire::GroupInfo::new(1, c.masters.clone())])
        .expect("join 1");
    for i in 0..10 {
        admin.move_shard(i % 4, 1).expect("move");
    }
    // Let the watcher publish them all (it polls every 100 ms).
    std::thread::sleep(Duration::from_millis(500));
    let cfg = admin
        .join(vec![synod_wire::GroupInfo::new(2, c.masters.clone())])
        .expect("join 2");
    assert!(cfg.num >= 12);
    let key = (0..1000u32)
        .map(|i| format!("k{i}"))
        .find(|k| {
            cfg.shards[synod_wire::shard_of(k.as_bytes(), cfg.shards.len() as u32) as usize] == 2
        })
        .expect("a key of group 2");
    let mut client = c.client_with_timeout(Duration::from_secs(20));
    client
        .put(key.clone().into_bytes(), &b"v"[..])
        .expect("group 2 serves after its core re-learned old configurations");
    assert_eq!(
        client.get(key.into_bytes()).unwrap(),
        Some(Bytes::from_static(b"v"))
    );
}

/// Finding 9: a frame arriving slower than `--min-recv-bytes-per-sec`
/// (here 100 KB/s asked, 10 KB/s sent) is closed once the 5 s grace is
/// over, long before its 30 s frame deadline.
#[test]
fn a_frame_arriving_below_the_minimum_rate_is_closed() {
    let c = Cluster::with_args(1, 0, &["--min-recv-bytes-per-sec", "100000"]);
    let mut s = TcpStream::connect(&c.nodes[0].addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    // One valid frame first: the first-frame deadline no longer applies.
    let mut first = BytesMut::new();
    get_frame(1, b"x", &mut first);
    s.write_all(&first).unwrap();
    let start = Instant::now();
    s.write_all(&put_header(1 << 20)).unwrap();
    let chunk = [0u8; 1000];
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(15) {
        if s.write_all(&chunk).is_err() {
            closed = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {
                closed = true;
                break;
            }
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    let took = start.elapsed();
    assert!(closed, "a 10 KB/s frame was still open after {took:?}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
}

/// Finding 11 on real processes: node 0 (member 0 of the KV group, which
/// new clients ask first) runs out of file space (RLIMIT_FSIZE: its WAL
/// writes fail with EFBIG, as on a full disk), so its KV replicas stop.
/// They used to answer `Error("replica stopped")`, final for the client:
/// every put/get of a fresh client failed while nodes 1 and 2 served. Now
/// fresh clients' operations succeed through the other two.
#[test]
fn a_node_with_a_stopped_replica_does_not_fail_clients() {
    use std::os::unix::process::CommandExt;
    let mut c = Cluster::new(3);
    c.kill(0);
    let node = &c.nodes[0];
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synod-server"));
    cmd.arg("--listen")
        .arg(&node.addr)
        .arg("--data-dir")
        .arg(&node.data_dir)
        .arg("--masters")
        .arg(c.masters.join(","))
        .args(&c.extra_args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 2 << 20,
                rlim_max: 2 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Writes past the limit fail with EFBIG instead of killing.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    c.nodes[0].child = Some(cmd.spawn().expect("spawn node 0"));
    // Fill node 0's KV log past 2 MiB.
    let mut client = c.client();
    for i in 0..6 {
        client
            .put(
                format!("big{i}").into_bytes(),
                Bytes::from(vec![1u8; 512 << 10]),
            )
            .expect("a big put");
    }
    c.wait_for(Duration::from_secs(20), |c| c.log(0).contains("WAL failed"));
    assert!(
        c.exited(0).is_none(),
        "node 0 exited instead of stopping its replicas"
    );
    // Fresh clients (member 0 first) are served by members 1 and 2.
    for i in 0..5 {
        let mut fresh = c.client_with_timeout(Duration::from_secs(10));
        let key = format!("after{i}").into_bytes();
        fresh
            .put(key.clone(), &b"v"[..])
            .expect("put with member 0 stopped");
        assert_eq!(
            fresh.get(key).expect("get with member 0 stopped"),
            Some(Bytes::from_static(b"v"))
        );
    }
}

/// Finding 10 on a real master: a Join listing 1,024 groups of 15
/// 260-byte addresses (4 MB, which every later configuration used to copy)
/// is refused with a clear error, and the master stays small and serving.
#[test]
fn a_huge_join_is_refused_by_the_master() {
    let c = Cluster::start_masters(1);
    let rss_before = c.rss_kib(0);
    let long = "a".repeat(260);
    let groups: Vec<synod_wire::GroupInfo> = (1..=1024)
        .map(|gid| synod_wire::GroupInfo::new(gid, vec![long.clone(); 15]))
        .collect();
    let mut admin = c.client();
    match admin.join(groups) {
        Err(synod::client::ClientError::Refused(why)) => {
            assert!(why.contains("bytes of server addresses"), "{why}")
        }
        other => panic!("a 4 MB join: {other:?}"),
    }
    for i in 0..40 {
        assert!(admin.move_shard(i % 4, 1).is_err(), "no group 1 to move to");
    }
    assert_eq!(admin.query(None).unwrap().num, 0);
    let rss = c.rss_kib(0);
    eprintln!("master RSS {rss_before} KiB before, {rss} KiB after the refused join");
    assert!(rss < rss_before + 64 * 1024, "{rss_before} -> {rss} KiB");
}

/// Finding 6 across connections: eight clients each pipeline 24 Gets of a
/// 1 MiB value and never read, each staying under its own 32 MiB hard cap
/// (192 MiB together, held until the idle timeout). The core's reply
/// budget (64 MiB here) closes the connections holding the most until the
/// rest fit.
#[test]
fn non_reading_clients_together_stay_within_the_core_reply_budget() {
    let c = Cluster::with_args(1, 0, &["--reply-bytes-budget", "67108864"]);
    c.client()
        .join(vec![synod_wire::GroupInfo::new(GID, c.masters.clone())])
        .expect("join");
    let mut client = c.client();
    c.wait_for(Duration::from_secs(20), |_| {
        client
            .put(&b"big"[..], Bytes::from(vec![7u8; 1 << 20]))
            .is_ok()
    });
    let rss_before = c.rss_kib(0);
    let mut hogs: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(&c.nodes[0].addr).unwrap();
            socket2::SockRef::from(&s)
                .set_recv_buffer_size(4096)
                .unwrap();
            let mut out = BytesMut::new();
            for i in 1..=24 {
                get_frame(i, b"big", &mut out);
            }
            s.write_all(&out).unwrap();
            s
        })
        .collect();
    let served = good_client_for(&c, Duration::from_secs(2));
    let rss = c.rss_kib(0);
    eprintln!("RSS before {rss_before} KiB, with 8 non-reading clients {rss} KiB; {served} good round trips");
    let closed = hogs
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(300)))
        .filter(|&closed| closed)
        .count();
    assert!(closed >= 4, "only {closed} of 8 non-reading clients closed");
    // Not asserted on RSS: the 192 Gets admitted in one turn are answered
    // by copies of the value made before any reply is queued (192 MiB),
    // which the allocator may keep; the budget bounds what stays queued.
}
