//! Power loss on real processes: every node's data directory lives on
//! `synod-lossyfs`, a FUSE filesystem that, on a cut, keeps only what was
//! fsynced (file bytes by fsync/fdatasync, directory entries by a
//! directory fsync: the strict POSIX rule). Under a workload of unique
//! appends and puts, all nodes are SIGKILLed at once, the power is cut,
//! the nodes restart, and every acknowledged write must be there exactly
//! once. SIGKILL alone keeps the page cache, so only this finds a missing
//! or misplaced fsync.
//!
//! The control run does the same with `--fsync never` and must find
//! acknowledged writes lost: the check can fail.
//!
//! Needs root and /dev/fuse; skips with a message otherwise.
//! `SYNOD_POWER_CUTS` (default 2) sets the number of cuts per run. A
//! minority cut gives each node a filesystem of its own and cuts one while
//! the other two serve.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;

/// The mounted filesystem; unmounted (and its process ended) on drop,
/// also when the test panics.
struct LossyFs {
    mount: PathBuf,
    child: Child,
    log: PathBuf,
}

impl LossyFs {
    /// Mounts a fresh filesystem, or says why it cannot.
    fn mount(dir: &Path) -> Result<LossyFs, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse".into());
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (mounting FUSE needs it here)".into());
        }
        let mount = dir.join("mnt");
        std::fs::create_dir_all(&mount).map_err(|e| e.to_string())?;
        let log = dir.join("lossyfs.log");
        let child = Command::new(env!("CARGO_BIN_EXE_synod-lossyfs"))
            .arg(&mount)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| e.to_string())?;
        let fs = LossyFs { mount, child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if fs.log_text().contains("mounted") {
                return Ok(fs);
            }
            if fs.log_text().contains("cannot mount") {
                return Err(fs.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not mounted after 10 s: {}", fs.log_text()))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn control(&self, what: &str) {
        // The control mkdir fails by design (ECANCELED) once done.
        let err = std::fs::create_dir(self.mount.join(what)).expect_err("control mkdir");
        assert_eq!(err.raw_os_error(), Some(libc::ECANCELED), "{what}: {err}");
    }
}

impl Drop for LossyFs {
    fn drop(&mut self) {
        // SAFETY: plain syscalls on a pid we own and a path we mounted.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(path) = std::ffi::CString::new(self.mount.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid C string; a lazy unmount of a gone mount is a no-op error.
            unsafe {
                libc::umount2(path.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// What the workload got acknowledged.
#[derive(Default)]
struct Acked {
    /// Acknowledged writes so far.
    count_acked: usize,
    /// key → tokens whose append was acknowledged.
    appends: BTreeMap<String, BTreeSet<String>>,
    /// Every token ever sent as an append (acknowledged or not).
    sent: BTreeSet<String>,
    /// key → value of acknowledged puts (each key written once).
    puts: BTreeMap<String, String>,
}

const APPEND_KEYS: u64 = 4;

/// Clients doing unique appends on a few keys and puts of fresh keys until
/// `stop`, recording what was acknowledged.
fn workload(
    c: &Cluster,
    clients: usize,
    round: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Acked>>, Vec<std::thread::JoinHandle<()>>) {
    let acked = Arc::new(Mutex::new(Acked::default()));
    let threads = (0..clients)
        .map(|t| {
            let mut client = c.client_with_timeout(Duration::from_secs(3));
            let acked = acked.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let token = format!("r{round}c{t}n{n};");
                    if n.is_multiple_of(2) {
                        let key = format!("a{}", n % APPEND_KEYS);
                        acked.lock().unwrap().sent.insert(token.clone());
                        if client
                            .append(Bytes::from(key.clone()), Bytes::from(token.clone()))
                            .is_ok()
                        {
                            acked
                                .lock()
                                .unwrap()
                                .appends
                                .entry(key)
                                .or_default()
                                .insert(token);
                            acked.lock().unwrap().count_acked += 1;
                        }
                    } else {
                        let key = format!("p.{token}");
                        if client
                            .put(Bytes::from(key.clone()), Bytes::from(token.clone()))
                            .is_ok()
                        {
                            let mut a = acked.lock().unwrap();
                            a.puts.insert(key, token);
                            a.count_acked += 1;
                        }
                    }
                }
            })
        })
        .collect();
    (acked, threads)
}

/// Stops the workload's threads and takes what they got acknowledged.
fn stop_workload(
    stop: &AtomicBool,
    threads: Vec<std::thread::JoinHandle<()>>,
    acked: Arc<Mutex<Acked>>,
) -> Acked {
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("workload thread");
    }
    Arc::try_unwrap(acked)
        .ok()
        .expect("threads joined")
        .into_inner()
        .unwrap()
}

/// Acknowledged writes missing or duplicated after the restart (empty:
/// none lost).
fn check(c: &Cluster, all: &[Acked]) -> Vec<String> {
    let mut client = c.client_with_timeout(Duration::from_secs(30));
    let mut problems = Vec::new();
    let sent: BTreeSet<&String> = all.iter().flat_map(|a| &a.sent).collect();
    for k in 0..APPEND_KEYS {
        let key = format!("a{k}");
        let value = client
            .get(Bytes::from(key.clone()))
            .expect("read after restart")
            .unwrap_or_default();
        let value = String::from_utf8(value.to_vec()).expect("utf-8 tokens");
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for token in value.split_inclusive(';') {
            *seen.entry(token).or_default() += 1;
        }
        for (token, count) in &seen {
            if *count > 1 {
                problems.push(format!("{key}: {token} appended {count} times"));
            }
            if !sent.contains(&token.to_string()) {
                problems.push(format!("{key}: {token} never sent"));
            }
        }
        for token in all.iter().filter_map(|a| a.appends.get(&key)).flatten() {
            if !seen.contains_key(token.as_str()) {
                problems.push(format!("{key}: acknowledged append {token} lost"));
            }
        }
    }
    for (key, want) in all.iter().flat_map(|a| &a.puts) {
        let got = client
            .get(Bytes::from(key.clone()))
            .expect("read after restart");
        if got.as_deref() != Some(want.as_bytes()) {
            problems.push(format!("{key}: acknowledged put lost (read {got:?})"));
        }
    }
    problems
}

/// Runs `cuts` power cuts under load; returns the problems found after
/// the last restart, and how many writes were acknowledged in all.
fn power_cuts(
    args: &[&str],
    cuts: usize,
    comeback: Duration,
    fault: Option<(&str, &str)>,
) -> Option<Result<(Vec<String>, usize), String>> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "synod-power-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fs = match LossyFs::mount(&dir) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: power-loss test needs a FUSE mount: {why}");
            return None;
        }
    };
    let mut c = Cluster::start_on(3, &fs.mount, args);
    let mut all = Vec::new();
    for round in 0..cuts {
        let stop = Arc::new(AtomicBool::new(false));
        let (acked, threads) = workload(&c, 4, round, stop.clone());
        // Let writes flow, then cut in the middle of them; with a fault,
        // the disk fails under the writes first.
        std::thread::sleep(Duration::from_secs(2));
        if let Some((on, _)) = fault {
            let before = acked.lock().unwrap().count_acked;
            fs.control(on);
            std::thread::sleep(Duration::from_secs(2));
            let during = acked.lock().unwrap().count_acked - before;
            eprintln!("round {round}: {during} writes acknowledged while {on} was on");
            for (i, node) in c.nodes.iter().enumerate() {
                let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
                eprintln!(
                    "node {i} errors: {}",
                    lines.join("\n").chars().take(600).collect::<String>()
                );
            }
        } else {
            std::thread::sleep(Duration::from_secs(1));
        }
        // The power goes now: nothing the dying servers still queue lands.
        fs.control(".freeze");
        for i in 0..3 {
            c.kill(i);
        }
        fs.control(".power-cut");
        if let Some((_, off)) = fault {
            fs.control(off);
        }
        let acked = stop_workload(&stop, threads, acked);
        assert!(
            !acked.puts.is_empty(),
            "round {round}: no write was acknowledged before the cut"
        );
        all.push(acked);
        for i in 0..3 {
            c.start_node(i);
        }
        // Serving again (a node whose data vanished would not come back
        // into the group, or would come back empty).
        let deadline = Instant::now() + comeback;
        while c
            .client_with_timeout(Duration::from_secs(2))
            .put(&b"__after_cut"[..], &b"1"[..])
            .is_err()
        {
            if Instant::now() > deadline {
                eprintln!("{}", fs.log_text());
                return Some(Err(format!(
                    "round {round}: not serving {comeback:?} after the restart"
                )));
            }
        }
    }
    eprintln!("{}", fs.log_text());
    let acknowledged = all
        .iter()
        .map(|a| a.puts.len() + a.appends.values().map(|s| s.len()).sum::<usize>())
        .sum();
    Some(Ok((check(&c, &all), acknowledged)))
}

fn cuts() -> usize {
    std::env::var("SYNOD_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

#[test]
fn acknowledged_writes_survive_power_cuts() {
    let Some(run) = power_cuts(&[], cuts(), Duration::from_secs(60), None) else {
        return;
    };
    let (problems, acknowledged) = run.expect("the cluster comes back after a power cut");
    eprintln!("{acknowledged} writes acknowledged over {} cuts", cuts());
    assert!(problems.is_empty(), "after power cuts: {problems:#?}");
}

/// The check can fail: without fsync the same run loses acknowledged
/// writes (or whole data directories, so the cluster does not come back).
#[test]
fn without_fsync_a_power_cut_loses_acknowledged_writes() {
    match power_cuts(&["--fsync", "never"], 1, Duration::from_secs(10), None) {
        None => {}
        Some(Ok((problems, acknowledged))) => {
            assert!(acknowledged > 0);
            assert!(
                !problems.is_empty(),
                "fsync never lost nothing: the power cut did not cut"
            );
        }
        // Not coming back at all is losing data too (the masters forgot
        // the group).
        Some(Err(why)) => eprintln!("as expected without fsync: {why}"),
    }
}

/// Runs the writes into a disk fault (`on`), then cuts the power, clears
/// the fault (`off`) and restarts: every acknowledged write must be there.
fn fault_then_power_cut(on: &str, off: &str) {
    let Some(run) = power_cuts(&[], 1, Duration::from_secs(60), Some((on, off))) else {
        return;
    };
    let (problems, _) = run.expect("the cluster comes back once the fault is gone");
    assert!(problems.is_empty(), "after {on}: {problems:#?}");
}

/// A disk that fills up under the writes: writes stop being acknowledged
/// (nothing that is not durable is acknowledged), no node loses what it
/// acknowledged, and once there is room again (and the power was cut on
/// top) the cluster serves everything acknowledged.
#[test]
fn a_full_disk_loses_no_acknowledged_write() {
    fault_then_power_cut(".disk-full", ".disk-ok");
}

/// fsync failing with EIO (the kernel may have dropped the dirty pages:
/// "fsyncgate"): a node must not acknowledge on a failed sync nor retry it
/// as if the data were safe. After the power cut, every acknowledged write
/// is there.
#[test]
fn failing_fsyncs_lose_no_acknowledged_write() {
    fault_then_power_cut(".sync-fails", ".sync-ok");
}

/// The same with a snapshot every 64 slots, so cuts land among snapshot
/// writes, renames and the removal of the log segments they replace; each
/// snapshot is serialized 512 bytes per loop turn, so cuts also land while
/// one is captured copy-on-write across turns.
#[test]
fn acknowledged_writes_survive_power_cuts_across_snapshots() {
    let Some(run) = power_cuts(
        &["--snapshot-log-slots", "64", "--snapshot-step-bytes", "512"],
        cuts(),
        Duration::from_secs(60),
        None,
    ) else {
        return;
    };
    let (problems, acknowledged) = run.expect("the cluster comes back after a power cut");
    eprintln!("{acknowledged} writes acknowledged over {} cuts", cuts());
    assert!(problems.is_empty(), "after power cuts: {problems:#?}");
}

/// A minority loses power while the rest serve: each node's data directory
/// is its own filesystem, so one node (the KV group's leader in the first
/// round, a follower in the second) freezes, is SIGKILLed and comes back
/// with only what it synced, while the other two keep acknowledging
/// writes. It must restart on that log (recovery refuses nothing it should
/// accept), rejoin and catch up; then another node is killed, so the one
/// that lost power is part of every majority, and every acknowledged
/// write must still be there exactly once.
#[test]
fn a_minority_power_cut_rejoins_and_counts_in_the_majority() {
    let dir = std::env::temp_dir().join(format!("synod-power-minority-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut mounts = Vec::new();
    for i in 0..3 {
        let d = dir.join(format!("fs{i}"));
        std::fs::create_dir_all(&d).unwrap();
        match LossyFs::mount(&d) {
            Ok(fs) => {
                // The node's data directory is this mount's root.
                std::os::unix::fs::symlink(&fs.mount, root.join(format!("node-{i}"))).unwrap();
                mounts.push(fs);
            }
            Err(why) => {
                eprintln!("SKIPPED: power-loss test needs a FUSE mount: {why}");
                return;
            }
        }
    }
    let mut c = Cluster::start_on(3, &root, &["--snapshot-log-slots", "64"]);
    let mut all = Vec::new();
    let mut cut_nodes = Vec::new();
    for round in 0..2 {
        let stop = Arc::new(AtomicBool::new(false));
        let (acked, threads) = workload(&c, 4, round, stop.clone());
        std::thread::sleep(Duration::from_secs(2));
        let leader = c.kv_leader().expect("group 1 has a leader");
        let victim = if round == 0 { leader } else { (leader + 1) % 3 };
        let before = acked.lock().unwrap().count_acked;
        mounts[victim].control(".freeze");
        c.kill(victim);
        mounts[victim].control(".power-cut");
        std::thread::sleep(Duration::from_secs(2));
        let during = acked.lock().unwrap().count_acked - before;
        assert!(
            during > 0,
            "round {round}: nothing acknowledged while node {victim} was down"
        );
        c.start_node(victim);
        std::thread::sleep(Duration::from_secs(2));
        let acked = stop_workload(&stop, threads, acked);
        eprintln!(
            "round {round}: node {victim} lost power; {during} writes acknowledged while it was down, {} in the round",
            acked.count_acked
        );
        all.push(acked);
        cut_nodes.push(victim);
    }
    // The node that lost power last must now be part of the majority.
    let last = *cut_nodes.last().unwrap();
    let other = (0..3).find(|&i| i != last).unwrap();
    c.kill(other);
    let deadline = Instant::now() + Duration::from_secs(60);
    while c
        .client_with_timeout(Duration::from_secs(2))
        .put(&b"__after_minority_cut"[..], &b"1"[..])
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "not serving with node {other} down: node {last} did not come back into the group"
        );
    }
    let problems = check(&c, &all);
    assert!(
        problems.is_empty(),
        "after minority power cuts: {problems:#?}"
    );
    drop(c);
    drop(mounts);
    let _ = std::fs::remove_dir_all(&dir);
}
