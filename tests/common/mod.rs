//! Test fixtures for cluster tests: real `synod-server` processes on
//! ephemeral loopback ports. Every child is SIGKILLed and reaped when the
//! `Cluster` is dropped, including when a test panics; every wait is bounded.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use synod::auth::Key;
use synod::client::{Client, ClientOptions};
use synod_wire::{
    encode_frame, ClientReply, ClientRequest, Decoder, Frame, GroupInfo, Message, Op,
};

pub const GID: u32 = 1;

/// One `GET /metrics` from `addr`: the body, or why not.
pub fn scrape_metrics(addr: &str) -> Result<String, String> {
    let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no head")?;
    if !head.starts_with("HTTP/1.1 200 OK") || !head.contains("text/plain; version=0.0.4") {
        return Err(format!("bad head {head:?}"));
    }
    Ok(body.to_string())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Ports the kernel considers free right now (bound and released), never
/// one this test process handed out before: tests in one binary run in
/// parallel, and a port one cluster was given and has not bound yet looks
/// free to the kernel, so another cluster could be given it too (seen in
/// CI: a node failed to listen, and its group's peers dialed the other
/// cluster's server, which failed their key check).
pub fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n + 10_000 {
        if ports.len() == n {
            break;
        }
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = l.local_addr().expect("local addr").port();
        if given.insert(port) {
            ports.push(port);
        }
        // Kept bound until all are found, so the kernel offers others.
        held.push(l);
    }
    assert_eq!(ports.len(), n, "no {n} unused ephemeral ports");
    ports
}

pub struct NodeProc {
    pub addr: String,
    /// `--resp-listen` address, when the cluster was started with RESP.
    pub resp_addr: Option<String>,
    /// `--metrics-listen` address, when the cluster was started with metrics.
    pub metrics_addr: Option<String>,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    pub log: PathBuf,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<NodeProc>,
    pub masters: Vec<String>,
    pub extra_args: Vec<String>,
    /// The cluster key every node and `client()` use (`None`: a cluster
    /// without authentication).
    pub key: Option<Key>,
    /// The client key, when the nodes run with `--client-key-file`.
    pub client_key: Option<Key>,
    /// Arguments for one node only, after `extra_args` (which they
    /// override: the server lets a later flag win), by node index.
    pub node_args: Vec<Vec<String>>,
}

/// How a test cluster authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No keys: everything open, as before authentication existed.
    Open,
    /// A cluster key (the default for test clusters).
    ClusterKey,
    /// A cluster key and a client key.
    ClientKey,
}

/// A fresh random key written to `path` (mode 0600).
pub fn write_key(path: &std::path::Path) -> Key {
    use std::os::unix::fs::OpenOptionsExt;
    let key = Key::generate().expect("random key");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("write key file");
    f.write_all(key.as_bytes()).expect("write key");
    key
}

impl Cluster {
    /// `n` nodes, all of them masters, not yet joined into a KV group.
    pub fn start_masters(n: usize) -> Cluster {
        Cluster::start_masters_opts(n, false)
    }

    /// [`Cluster::start_masters`]; with `resp`, each node also serves RESP
    /// on its own port (`NodeProc::resp_addr`).
    pub fn start_masters_opts(n: usize, resp: bool) -> Cluster {
        Cluster::start_opts(n, 0, resp, &[])
    }

    /// [`Cluster::new_with_resp`], every node also given `args`, with `auth`.
    pub fn new_with_resp_args(n: usize, args: &[&str], auth: Auth) -> Cluster {
        let c = Cluster::start_full(n, 0, true, args, auth, false);
        c.join_group_1();
        c
    }

    /// `n` nodes, masters and group 1 of all of them, serving, with `auth`.
    pub fn new_auth(n: usize, auth: Auth) -> Cluster {
        let c = Cluster::start_full(n, 0, false, &[], auth, false);
        c.join_group_1();
        c
    }

    /// `masters` + `extra` nodes, each serving RESP and given `args`, no KV
    /// group joined yet.
    pub fn with_resp_nodes(masters: usize, extra: usize, args: &[&str]) -> Cluster {
        Cluster::start_opts(masters, extra, true, args)
    }

    /// `masters` master nodes plus `extra` nodes that host no master replica
    /// (for KV groups on their own nodes), no KV group joined yet.
    pub fn with_extra_nodes(masters: usize, extra: usize) -> Cluster {
        Cluster::start_opts(masters, extra, false, &[])
    }

    /// [`Cluster::with_extra_nodes`], every node also given `args` (e.g.
    /// `--snapshot-log-slots 16`), on every restart too.
    pub fn with_args(masters: usize, extra: usize, args: &[&str]) -> Cluster {
        Cluster::start_opts(masters, extra, false, args)
    }

    fn start_opts(n_masters: usize, extra: usize, resp: bool, args: &[&str]) -> Cluster {
        Cluster::start_full(n_masters, extra, resp, args, Auth::ClusterKey, false)
    }

    /// [`Cluster::with_args`] with `--metrics-listen` on every node
    /// (nodes added later by [`Cluster::add_node`] too).
    pub fn with_args_metrics(masters: usize, extra: usize, args: &[&str]) -> Cluster {
        Cluster::start_full(masters, extra, false, args, Auth::ClusterKey, true)
    }

    /// Starts one more node on fresh ports with an empty data directory
    /// (neither a master nor in any group until a configuration lists
    /// it); returns its index.
    pub fn add_node(&mut self) -> usize {
        let ports = free_ports(2);
        let i = self.nodes.len();
        let metrics = self.nodes.iter().any(|n| n.metrics_addr.is_some());
        self.nodes.push(NodeProc {
            addr: format!("127.0.0.1:{}", ports[0]),
            resp_addr: None,
            metrics_addr: metrics.then(|| format!("127.0.0.1:{}", ports[1])),
            data_dir: self.dir.join(format!("node-{i}")),
            child: None,
            log: self.dir.join(format!("node-{i}.log")),
        });
        self.start_node(i);
        i
    }

    /// `n` nodes, masters and group 1 of all of them, serving, each with
    /// `--metrics-listen` on its own port (`NodeProc::metrics_addr`).
    pub fn new_with_metrics(n: usize) -> Cluster {
        let c = Cluster::start_full(n, 0, false, &[], Auth::ClusterKey, true);
        c.join_group_1();
        c
    }

    /// `n` nodes, masters and group 1 of all of them, serving, with every
    /// node's data directory under `data_root` (say, a fault-injecting
    /// filesystem) instead of the test directory; logs stay in the test
    /// directory.
    pub fn start_on(n: usize, data_root: &std::path::Path, args: &[&str]) -> Cluster {
        let c = Cluster::start_full_on(
            n,
            0,
            false,
            args,
            Auth::ClusterKey,
            false,
            Some(data_root),
            &[],
        );
        c.join_group_1();
        c
    }

    /// `node_args.len()` nodes, masters and group 1 of all of them,
    /// serving, with metrics; node `i` also given `node_args[i]` (say, its
    /// own `--cores`).
    pub fn with_node_args(node_args: &[&[&str]]) -> Cluster {
        let n = node_args.len();
        let c = Cluster::start_full_on(n, 0, false, &[], Auth::ClusterKey, true, None, node_args);
        c.join_group_1();
        c
    }

    fn start_full(
        n_masters: usize,
        extra: usize,
        resp: bool,
        args: &[&str],
        auth: Auth,
        metrics: bool,
    ) -> Cluster {
        Cluster::start_full_on(n_masters, extra, resp, args, auth, metrics, None, &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn start_full_on(
        n_masters: usize,
        extra: usize,
        resp: bool,
        args: &[&str],
        auth: Auth,
        metrics: bool,
        data_root: Option<&std::path::Path>,
        node_args: &[&[&str]],
    ) -> Cluster {
        let n = n_masters + extra;
        let dir = std::env::temp_dir().join(format!(
            "synod-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let mut extra_args: Vec<String> = ["--cores", "2"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect();
        let key = (auth != Auth::Open).then(|| {
            let path = dir.join("cluster.key");
            let key = write_key(&path);
            extra_args.push("--cluster-key-file".into());
            extra_args.push(path.display().to_string());
            key
        });
        let client_key = (auth == Auth::ClientKey).then(|| {
            let path = dir.join("client.key");
            let key = write_key(&path);
            extra_args.push("--client-key-file".into());
            extra_args.push(path.display().to_string());
            key
        });
        let ports = free_ports(3 * n);
        let addrs: Vec<String> = ports[..n]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let masters = addrs[..n_masters].to_vec();
        let nodes = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| NodeProc {
                addr: addr.clone(),
                resp_addr: resp.then(|| format!("127.0.0.1:{}", ports[n + i])),
                metrics_addr: metrics.then(|| format!("127.0.0.1:{}", ports[2 * n + i])),
                data_dir: data_root.unwrap_or(&dir).join(format!("node-{i}")),
                child: None,
                log: dir.join(format!("node-{i}.log")),
            })
            .collect();
        let mut c = Cluster {
            dir,
            nodes,
            masters,
            extra_args,
            key,
            client_key,
            node_args: node_args
                .iter()
                .map(|a| a.iter().map(|s| s.to_string()).collect())
                .collect(),
        };
        for i in 0..n {
            c.start_node(i);
        }
        c.wait_for(Duration::from_secs(30), |c| c.client().query(None).is_ok());
        c
    }

    /// [`Cluster::new`], every node also given `args`.
    pub fn new_with_args(n: usize, args: &[&str]) -> Cluster {
        let c = Cluster::start_opts(n, 0, false, args);
        c.join_group_1();
        c
    }

    /// `n` nodes, masters and one KV group (gid 1) of all of them, serving.
    pub fn new(n: usize) -> Cluster {
        Cluster::new_opts(n, false)
    }

    /// [`Cluster::new`] with a RESP gateway on every node.
    pub fn new_with_resp(n: usize) -> Cluster {
        Cluster::new_opts(n, true)
    }

    fn new_opts(n: usize, resp: bool) -> Cluster {
        let c = Cluster::start_masters_opts(n, resp);
        c.join_group_1();
        c
    }

    /// Join group 1 (every master node) and wait until it serves.
    fn join_group_1(&self) {
        let c = self;
        let group = GroupInfo::new(GID, c.masters.clone());
        c.client().join(vec![group]).expect("join group 1");
        c.wait_for(Duration::from_secs(30), |c| {
            c.client().put(&b"__ready"[..], &b"1"[..]).is_ok()
        });
    }

    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open node log");
        let child = Command::new(env!("CARGO_BIN_EXE_synod-server"))
            .arg("--listen")
            .arg(&node.addr)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--masters")
            .arg(self.masters.join(","))
            .args(
                node.resp_addr
                    .iter()
                    .flat_map(|a| ["--resp-listen".to_string(), a.clone()]),
            )
            .args(
                node.metrics_addr
                    .iter()
                    .flat_map(|a| ["--metrics-listen".to_string(), a.clone()]),
            )
            // `{dir}` and `{node}` in an argument become the test directory
            // and the node's index (per-node files such as `--trace`).
            .args(self.extra_args.iter().map(|a| {
                a.replace("{dir}", &self.dir.display().to_string())
                    .replace("{node}", &i.to_string())
            }))
            .args(self.node_args.get(i).into_iter().flatten())
            // SYNOD_TEST_LOG=info,synod::runtime::core=debug (say) to see
            // a failing test's migration steps in the kept node logs.
            .env(
                "RUST_LOG",
                std::env::var("SYNOD_TEST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn synod-server");
        node.child = Some(child);
    }

    pub fn client(&self) -> Client {
        self.client_with_timeout(Duration::from_secs(20))
    }

    /// A client that gives up on an operation after `timeout` (to show that
    /// something is unavailable without waiting the default 20 s).
    pub fn client_with_timeout(&self, timeout: Duration) -> Client {
        Client::new(ClientOptions {
            masters: self.masters.clone(),
            timeout,
            cluster_key: self.key.clone(),
            ..ClientOptions::default()
        })
        .expect("client options")
    }

    /// A client holding the given keys (or none), for refusal tests.
    pub fn client_with_keys(
        &self,
        cluster_key: Option<Key>,
        client_key: Option<Key>,
        timeout: Duration,
    ) -> Client {
        Client::new(ClientOptions {
            masters: self.masters.clone(),
            timeout,
            rpc_timeout: Duration::from_millis(500),
            cluster_key,
            client_key,
            ..ClientOptions::default()
        })
        .expect("client options")
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().expect("running").id()
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, i: usize, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid(i).to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Has node `i` exited by itself (e.g. refused to start)? Its status.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.nodes[i].child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Run `synod admin ARGS` against this cluster with its cluster key
    /// (bounded: the CLI gives up after its 10 s `--timeout`).
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_synod"))
            .env_remove("SYNOD_CLUSTER_KEY_FILE")
            .env_remove("SYNOD_MASTERS")
            .arg("--masters")
            .arg(self.masters.join(","))
            .arg("--cluster-key-file")
            .arg(self.dir.join("cluster.key"))
            .arg("--timeout")
            .arg("10")
            .arg("admin")
            .args(args)
            .output()
            .expect("run synod admin")
    }

    /// Poll `f` until it holds, panicking (with the node logs) after `limit`.
    pub fn wait_for(&self, limit: Duration, mut f: impl FnMut(&Cluster) -> bool) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs: Vec<String> = (0..self.nodes.len())
            .map(|i| format!("--- node {i} ---\n{}", tail(&self.log(i), 30)))
            .collect();
        panic!("condition not met within {limit:?}\n{}", logs.join("\n"));
    }

    /// Which node leads the KV group: the one that does not answer a Get
    /// with NotLeader.
    pub fn kv_leader(&self) -> Option<usize> {
        for (i, n) in self.nodes.iter().enumerate() {
            if n.child.is_none() {
                continue;
            }
            let req = ClientRequest {
                client_id: 0xFEED,
                seq: 1,
                ack_seq: 0,
                op: Op::Get {
                    key: b"__probe".as_slice().into(),
                },
            };
            match raw_call(
                &n.addr,
                GID,
                Message::Request(req),
                Duration::from_millis(500),
            ) {
                Some(Message::Reply(ClientReply::NotLeader { .. })) | None => {}
                Some(_) => return Some(i),
            }
        }
        None
    }

    /// Which of `candidates` says it leads KV group `gid`, by a status
    /// request (admin, over one short authenticated connection each), the
    /// leader with the highest ballot if several say so; `None` on a
    /// cluster without a key. Not by a Get: at volume the probe key's
    /// shard may be moving, and a leader answers nothing about it until
    /// the move is done (a million-key nemesis run found no leader for 10
    /// s that way while group 1 had elected one).
    pub fn group_leader(&self, gid: u32, candidates: &[usize]) -> Option<usize> {
        let key = self.key.as_ref()?;
        let mut best: Option<(synod_wire::Ballot, usize)> = None;
        for &i in candidates {
            let n = &self.nodes[i];
            if n.child.is_none() {
                continue;
            }
            let Ok(addr) = n.addr.parse() else { continue };
            let t = Duration::from_millis(300);
            let Ok(mut s) = TcpStream::connect_timeout(&addr, t) else {
                continue;
            };
            if synod::auth::stream::dial(&mut s, key, synod::auth::Identity::Admin, 0, t).is_err() {
                continue;
            }
            let _ = s.set_read_timeout(Some(t));
            let mut buf = BytesMut::new();
            encode_frame(
                &Frame {
                    request_id: 1,
                    group: 0,
                    message: Message::StatusRequest,
                },
                &mut buf,
            );
            if s.write_all(&buf).is_err() {
                continue;
            }
            let mut dec = Decoder::default();
            let mut rbuf = BytesMut::new();
            let mut chunk = [0u8; 4096];
            let reply = loop {
                if let Ok(Some(f)) = dec.decode(&mut rbuf) {
                    break Some(f.message);
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(k) => rbuf.extend_from_slice(&chunk[..k]),
                }
            };
            let Some(Message::Status(status)) = reply else {
                continue;
            };
            for g in status.groups.iter().filter(|g| g.gid == gid && g.leading) {
                if best.is_none_or(|(b, _)| g.ballot > b) {
                    best = Some((g.ballot, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// Resident memory of node `i` in KiB.
    pub fn rss_kib(&self, i: usize) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid(i))).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() {
                // A stopped process must be continued to die promptly.
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .arg(self.pid(i).to_string())
                    .status();
            }
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("cluster logs kept in {}", self.dir.display());
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One request over a fresh connection, speaking the wire protocol by hand.
pub fn raw_call(addr: &str, group: u32, msg: Message, timeout: Duration) -> Option<Message> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = BytesMut::new();
    encode_frame(
        &Frame {
            request_id: 42,
            group,
            message: msg,
        },
        &mut buf,
    );
    s.write_all(&buf).ok()?;
    let mut dec = Decoder::default();
    let mut rbuf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(f)) = dec.decode(&mut rbuf) {
            return Some(f.message);
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        rbuf.extend_from_slice(&chunk[..n]);
    }
}

/// What a server did with one hand-made frame.
#[derive(Debug)]
pub enum Outcome {
    /// It answered.
    Reply(Message),
    /// It closed the connection without answering.
    Closed,
    /// Nothing within the timeout, connection still open.
    Silent,
    /// The handshake failed (our side refused the server, or it closed).
    AuthFailed(String),
}

/// Like [`raw_call`], but tells a closed connection from silence, and
/// authenticates first as `identity` with `key` when given.
pub fn raw_exchange(
    addr: &str,
    group: u32,
    auth: Option<(&Key, synod::auth::Identity)>,
    msg: Message,
    timeout: Duration,
) -> Outcome {
    let mut s = TcpStream::connect_timeout(&addr.parse().expect("addr"), timeout).expect("connect");
    if let Some((key, id)) = auth {
        if let Err(e) = synod::auth::stream::dial(&mut s, key, id, group, timeout) {
            return Outcome::AuthFailed(e);
        }
    }
    s.set_read_timeout(Some(timeout)).expect("timeout");
    let mut buf = BytesMut::new();
    encode_frame(
        &Frame {
            request_id: 42,
            group,
            message: msg,
        },
        &mut buf,
    );
    if s.write_all(&buf).is_err() {
        return Outcome::Closed;
    }
    let mut dec = Decoder::default();
    let mut rbuf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(f)) = dec.decode(&mut rbuf) {
            return Outcome::Reply(f.message);
        }
        match s.read(&mut chunk) {
            Ok(0) => return Outcome::Closed,
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Outcome::Silent
            }
            Err(_) => return Outcome::Closed,
        }
    }
}

/// A concurrent workload against the cluster, recorded for the checker.
pub struct Workload {
    pub history: std::sync::Arc<std::sync::Mutex<Vec<synod::check::KvOp>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub start: Instant,
}

impl Workload {
    /// `clients` threads, each one op at a time on `keys` keys, until stopped.
    pub fn start(cluster: &Cluster, clients: usize, keys: usize) -> Workload {
        use synod::check::{KvInput, KvOp, KvOutput};
        let history = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let start = Instant::now();
        let mut threads = Vec::new();
        for c in 0..clients {
            let mut client = cluster.client();
            let history = history.clone();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = bytes::Bytes::from(format!("k{}", (n * 7 + c as u64) % keys as u64));
                    let value = bytes::Bytes::from(format!("c{c}.{n};"));
                    let call = start.elapsed().as_nanos() as u64;
                    let (input, output) = match n % 3 {
                        0 => (
                            KvInput::Get,
                            match client.get(key.clone()) {
                                Ok(v) => KvOutput::Value(v),
                                Err(_) => KvOutput::Unknown,
                            },
                        ),
                        1 => (
                            KvInput::Put(value.clone()),
                            match client.put(key.clone(), value) {
                                Ok(()) => KvOutput::Ok,
                                Err(_) => KvOutput::Unknown,
                            },
                        ),
                        _ => (
                            KvInput::Append(value.clone()),
                            match client.append(key.clone(), value) {
                                Ok(()) => KvOutput::Ok,
                                Err(_) => KvOutput::Unknown,
                            },
                        ),
                    };
                    let ret = match output {
                        KvOutput::Unknown => u64::MAX,
                        _ => start.elapsed().as_nanos() as u64,
                    };
                    history.lock().unwrap().push(KvOp {
                        client: c as u64,
                        key,
                        input,
                        output,
                        call,
                        ret,
                    });
                }
            }));
        }
        Workload {
            history,
            stop,
            threads,
            start,
        }
    }

    /// Completed (acknowledged) operations so far.
    pub fn completed(&self) -> usize {
        self.history
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.ret != u64::MAX)
            .count()
    }

    /// Stop, join, and check the history; returns it.
    pub fn finish(self) -> Vec<synod::check::KvOp> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("workload thread panicked");
        }
        let history = std::mem::take(&mut *self.history.lock().unwrap());
        let verdict = synod::check::check_kv(&history, &synod::check::CheckOptions::default());
        assert!(verdict.is_ok(), "history not linearizable: {verdict:?}");
        history
    }
}

impl Cluster {
    /// True when no started node has exited.
    pub fn exited_none(&self) -> bool {
        self.nodes.iter().all(|n| match &n.child {
            Some(_) => {
                let status = std::fs::read_to_string(format!(
                    "/proc/{}/stat",
                    n.child.as_ref().map_or(0, |c| c.id())
                ))
                .unwrap_or_default();
                // A zombie ('Z') has exited.
                !status.contains(") Z ")
            }
            None => true,
        })
    }
}
