//! `synod playground`: a throwaway local cluster of `synod-server` processes,
//! stopped in order on SIGINT/SIGTERM.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use synod::auth::Key;
use synod::client::{Client, ClientError, ClientOptions};
use synod_wire::{GroupId, GroupInfo};

use super::*;

/// Set by SIGINT/SIGTERM; polled by the playground's loops.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to [`STOP`], so the playground can shut its
/// children down in order instead of dying with them orphaned.
///
/// Done with `libc` directly rather than `ctrlc` or `signal-hook`: the
/// playground needs `libc` anyway (to send SIGTERM, which std cannot, and
/// to set a parent-death signal), and a flag-setting handler is a few lines.
pub(crate) fn install_stop_handler() -> Result<(), String> {
    let handler = on_stop_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to a static atomic, which is
        // async-signal-safe, and it stays valid for the process's life.
        let previous = unsafe { libc::signal(signal, handler as libc::sighandler_t) };
        if previous == libc::SIG_ERR {
            return Err(format!(
                "cannot install a handler for signal {signal}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Why the playground stopped early.
pub(crate) enum Stop {
    /// Ctrl-C or SIGTERM: not an error.
    Signalled,
    Failed(String),
}

impl From<String> for Stop {
    fn from(why: String) -> Stop {
        Stop::Failed(why)
    }
}

/// How long nodes get to exit after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);
/// The key the readiness probe writes.
pub(crate) const PROBE_KEY: &str = "synod:playground:probe";

/// The playground's child processes. Dropping it stops them (also on a
/// panic), so the playground never leaves servers running behind it.
pub(crate) struct Nodes {
    /// `(address, log path, process)`, in node order.
    children: Vec<(String, PathBuf, Child)>,
    /// Nodes whose exit has already been reported.
    reported: Vec<bool>,
}

impl Nodes {
    /// Fails if a node has exited, naming it and its log.
    fn check_alive(&mut self) -> Result<(), String> {
        for (addr, log, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "node {addr} exited ({status}) before the cluster was ready; see {}",
                    log.display()
                ));
            }
        }
        Ok(())
    }

    /// Reports (once) nodes that exited while the playground runs. Not fatal:
    /// killing a node is a fine thing to try in a playground.
    fn report_exits(&mut self) {
        for (i, (addr, log, child)) in self.children.iter_mut().enumerate() {
            if self.reported[i] {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                self.reported[i] = true;
                eprintln!(
                    "synod playground: node {addr} exited ({status}); see {}",
                    log.display()
                );
            }
        }
    }

    /// SIGTERM to every node, up to [`STOP_GRACE`] to exit, then SIGKILL.
    fn stop(&mut self) {
        for (_, _, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill has no memory-safety preconditions. The
                    // child is not yet reaped (try_wait saw it running), so
                    // its pid cannot have been reused by another process.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline
            && self
                .children
                .iter_mut()
                .any(|(_, _, c)| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for (_, _, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.children.clear();
        self.reported.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn playground(args: &PlaygroundArgs, timeout: Duration) -> Result<(), String> {
    match playground_inner(args, timeout) {
        Ok(()) | Err(Stop::Signalled) => {
            eprintln!("synod playground: stopped");
            Ok(())
        }
        Err(Stop::Failed(why)) => Err(why),
    }
}

pub(crate) fn playground_inner(args: &PlaygroundArgs, timeout: Duration) -> Result<(), Stop> {
    let addrs: Vec<String> = (0..args.nodes)
        .map(|i| format!("127.0.0.1:{}", usize::from(args.base_port) + i))
        .collect();
    let resp_addrs: Vec<Option<String>> = (0..args.nodes)
        .map(|i| {
            args.resp_port
                .map(|p| format!("127.0.0.1:{}", usize::from(p) + i))
        })
        .collect();
    let metrics_addrs: Vec<String> = (0..args.nodes)
        .map(|i| format!("127.0.0.1:{}", args.metrics_base() + i))
        .collect();
    // Check every port before starting anything, so a clash is one clear
    // message rather than a node dying in its log.
    let all = addrs.iter().chain(resp_addrs.iter().flatten());
    for addr in all.chain(&metrics_addrs) {
        if let Err(e) = TcpListener::bind(addr.as_str()) {
            return Err(Stop::Failed(format!(
                "port {addr} is busy ({e}); pick free ports with --base-port"
            )));
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let bin_dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))?;
    let server = bin_dir.join("synod-server");
    if !server.is_file() {
        return Err(Stop::Failed(format!(
            "{} not found; build it next to synod (cargo build --release --bins)",
            server.display()
        )));
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => fresh_temp_dir(),
    };
    // Durably (each new directory and its parent fsynced), like the key
    // below: a power cut soon after the start must not take the directory,
    // and every node's data in it, away.
    synod::storage::create_dir_durable(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    install_stop_handler()?;
    // Authenticated by default: a key in the data directory (kept across
    // runs on the same --dir), given to every node and to this client.
    let key_path = dir.join("cluster.key");
    let key = playground_key(&key_path)?;
    let mut server_args: Vec<OsString> = vec!["--cluster-key-file".into(), key_path.clone().into()];
    server_args.extend(args.server_args.iter().cloned());

    let masters = addrs.join(",");
    let mut nodes = Nodes {
        children: Vec::new(),
        reported: vec![false; addrs.len()],
    };
    if let Some(t) = &args.trace_dir {
        std::fs::create_dir_all(t).map_err(|e| format!("cannot create {}: {e}", t.display()))?;
    }
    for (i, addr) in addrs.iter().enumerate() {
        let data_dir = dir.join(format!("node-{i}"));
        let log = dir.join(format!("node-{i}.log"));
        let mut node_args = server_args.clone();
        node_args.push("--metrics-listen".into());
        node_args.push(metrics_addrs[i].clone().into());
        if let Some(t) = &args.trace_dir {
            node_args.push("--trace".into());
            node_args.push(t.join(format!("trace-{i}.log")).into());
        }
        let child = spawn_node(
            &server,
            addr,
            resp_addrs[i].as_deref(),
            &data_dir,
            &masters,
            &log,
            &node_args,
        )?;
        nodes.children.push((addr.clone(), log, child));
    }
    eprintln!(
        "synod playground: started {} nodes (data and logs in {})",
        addrs.len(),
        dir.display()
    );

    let mut opts = ClientOptions::new(addrs.clone());
    // Short attempts: the loops below retry until their own deadlines and
    // check for Ctrl-C and dead nodes in between.
    opts.timeout = timeout.min(Duration::from_secs(2));
    opts.rpc_timeout = opts.rpc_timeout.min(opts.timeout);
    opts.cluster_key = Some(key);
    let mut client = Client::new(opts).map_err(|e| e.to_string())?;

    let config = wait_for(
        &mut nodes,
        args.ready_within,
        "the masters to answer",
        || client.query(None).map(Some),
    )?;
    // Three KV groups, each replicated on all three nodes, so shards are
    // spread over groups and `synod admin move/leave` have somewhere to go.
    for gid in 1..=args.groups {
        if config.groups.iter().any(|g| g.gid == gid) {
            eprintln!(
                "synod playground: group {gid} already joined (configuration {})",
                config.num
            );
            continue;
        }
        let group = playground_group(gid, &addrs, args.mode, args.pb_replicas);
        let what = format!("group {gid} to join");
        wait_for(&mut nodes, args.ready_within, &what, || {
            match client.join(vec![group.clone()]) {
                Ok(_) => Ok(Some(())),
                // A join that timed out may have been applied; a retry of it
                // is then refused. Whether the group is in is what counts.
                Err(ClientError::Refused(why)) => {
                    let cfg = client.query(None)?;
                    if cfg.groups.iter().any(|g| g.gid == gid) {
                        Ok(Some(()))
                    } else {
                        Err(ClientError::Refused(why))
                    }
                }
                Err(e) => Err(e),
            }
        })?;
    }
    // Serving means every group answers: probe keys spread over the shards.
    wait_for(
        &mut nodes,
        args.ready_within,
        "the groups to serve requests",
        || {
            for i in 0..16 {
                let key = format!("{PROBE_KEY}-{i}");
                client.put(key.clone(), "ok")?;
                if client.get(key)?.filter(|v| v == "ok").is_none() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )?;

    let synod = shell_quote(&exe.to_string_lossy());
    let mut banner = String::new();
    let key_file = shell_quote(&key_path.to_string_lossy());
    let _ = writeln!(banner, "SYNOD_MASTERS={masters}");
    let _ = writeln!(banner, "SYNOD_CLUSTER_KEY_FILE={key_file}");
    let resp: Vec<&str> = resp_addrs.iter().flatten().map(String::as_str).collect();
    if !resp.is_empty() {
        // One line per fact, so scripts can `sed -n 's/^SYNOD_RESP=//p'`.
        let _ = writeln!(banner, "SYNOD_RESP={}", resp.join(","));
    }
    let metrics_urls: Vec<String> = metrics_addrs
        .iter()
        .map(|a| format!("http://{a}/metrics"))
        .collect();
    let _ = writeln!(banner, "SYNOD_METRICS={}", metrics_urls.join(","));
    let _ = writeln!(
        banner,
        "export SYNOD_MASTERS={masters} SYNOD_CLUSTER_KEY_FILE={key_file}; {synod} put hello world; {synod} get hello"
    );
    print_stdout(banner.as_bytes());
    eprintln!("synod playground: ready; Ctrl-C stops the cluster");

    while !STOP.load(Ordering::SeqCst) {
        nodes.report_exits();
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("synod playground: stopping nodes");
    nodes.stop();
    Ok(())
}

/// Calls `attempt` until it yields `Some`, the deadline passes, a node dies,
/// the server refuses outright, or a stop signal arrives.
/// KV groups the playground starts by default.
pub(crate) const PLAYGROUND_GROUPS: GroupId = 3;

pub(crate) fn wait_for<T>(
    nodes: &mut Nodes,
    within: Duration,
    what: &str,
    mut attempt: impl FnMut() -> Result<Option<T>, ClientError>,
) -> Result<T, Stop> {
    let deadline = Instant::now() + within;
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Err(Stop::Signalled);
        }
        nodes.check_alive()?;
        let last = match attempt() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "not yet".to_string(),
            Err(ClientError::Refused(why)) => {
                return Err(Stop::Failed(format!("waiting for {what}: refused: {why}")))
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Stop::Failed(format!(
                "gave up waiting {}s for {what} ({last}); see the node logs",
                within.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn spawn_node(
    server: &Path,
    addr: &str,
    resp: Option<&str>,
    data_dir: &Path,
    masters: &str,
    log: &Path,
    extra: &[OsString],
) -> Result<Child, String> {
    let out =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let mut cmd = Command::new(server);
    cmd.arg("--listen")
        .arg(addr)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--masters")
        .arg(masters)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // Every option of synod-server also reads a SYNOD_* variable: the
    // playground configures its nodes by flags alone, so a variable the
    // shell exported for the client (say SYNOD_CLIENT_KEY_FILE, or
    // SYNOD_CORES for something else) does not silently change them.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SYNOD_") {
            cmd.env_remove(name);
        }
    }
    if let Some(resp) = resp {
        cmd.arg("--resp-listen").arg(resp);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    // Own process group: Ctrl-C in the terminal reaches only the
    // playground, which then stops the nodes in order (SIGTERM, grace,
    // SIGKILL) instead of all of them dying at once mid-write.
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // If the playground dies without cleaning up (SIGKILL), the
                // kernel sends the nodes SIGTERM rather than orphaning them.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.display()))
}

/// The playground's cluster key at `path`: the one already there (a
/// restart on the same --dir), or 32 fresh random bytes written with mode
/// 0600.
pub(crate) fn playground_key(path: &Path) -> Result<Key, String> {
    if path.exists() {
        return Key::load(path);
    }
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let key = Key::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(key.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| match path.parent() {
            // Its name too, or a power cut could leave the file nameless.
            Some(d) if !d.as_os_str().is_empty() => synod::storage::sync_dir(d),
            _ => Ok(()),
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

/// A new directory name under the system temp dir, unique per run.
pub(crate) fn fresh_temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("synod-playground-{}-{nanos}", std::process::id()))
}

/// Quotes `text` for a POSIX shell when it needs it.
pub(crate) fn shell_quote(text: &str) -> String {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c));
    if plain && !text.is_empty() {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Group `gid` of the playground: every node for a Paxos group; for a
/// primary/backup group `replicas` nodes, rotating with the gid so the
/// groups' primaries spread over the nodes.
pub(crate) fn playground_group(
    gid: GroupId,
    addrs: &[String],
    mode: Mode,
    replicas: usize,
) -> GroupInfo {
    match mode {
        Mode::Paxos => GroupInfo::new(gid, addrs.to_vec()),
        Mode::Pb => {
            let n = addrs.len();
            let servers = (0..replicas.min(n))
                .map(|i| addrs[(gid as usize - 1 + i) % n].clone())
                .collect();
            let mut group = GroupInfo::new(gid, servers);
            group.mode = synod_wire::ReplicationMode::PrimaryBackup;
            group
        }
    }
}
