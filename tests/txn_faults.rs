//! The bank on real processes under faults (issue 10): client threads move
//! money between accounts with `Client::txn` (two `Incr`s per transfer,
//! two-phase commit when the accounts' shards are in different groups)
//! while a mover moves the accounts' shards between the two groups and a
//! nemesis SIGKILLs or SIGSTOPs the leader of one group at a time and then
//! restarts or continues it. An auditor reads every account in one
//! transaction throughout; every audit must see the initial total, every
//! transfer's answer must show both halves applied, and after the faults
//! stop a last audit must find the initial total too.
//!
//! `SYNOD_TXN_FAULT_SECS=N` runs the faults for N seconds (default 20,
//! which keeps the test near 25 s in a debug build);
//! `SYNOD_TXN_FAULT_SEED=S` replays a schedule's random choices (the
//! seed, else one from the clock, is printed; timing still varies). Every loop is bounded
//! in time; every server is killed by `Cluster`'s drop, on panic too, and
//! the worker threads stop when the test's guard drops.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;
use synod::check::bank::{accounts, audit_txn, check_audit, check_transfer, transfer_txn};
use synod::client::TxnBuilder;
use synod::rng::Rng;
use synod_wire::{shard_of, GroupInfo};

const NODES: usize = 3;
const ACCOUNTS: usize = 8;
const BALANCE: i64 = 1_000;
const TOTAL: i64 = BALANCE * ACCOUNTS as i64;
const TRANSFER_THREADS: usize = 3;
/// How long one blocking call may take, retries included.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);
/// How long the worker threads get to notice the end and return (one
/// call in flight, whose transaction finishes before `txn` returns).
const JOIN_PATIENCE: Duration = Duration::from_secs(45);

fn fault_secs() -> u64 {
    std::env::var("SYNOD_TXN_FAULT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn seed() -> u64 {
    std::env::var("SYNOD_TXN_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
        })
}

/// Stops the worker threads when dropped: at the end, or when the test
/// panics (then `Cluster`'s drop kills the servers as well).
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Counts {
    transfers: AtomicU64,
    transfers_unknown: AtomicU64,
    audits: AtomicU64,
    audits_failed_to_answer: AtomicU64,
    moves: AtomicU64,
}

/// Sleeps `d` in short steps, returning early once `stop` is set.
fn nap(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .expect("spawn a test thread")
}

#[test]
fn bank_total_holds_under_leader_kills_pauses_and_shard_moves() {
    // A dead client's (or a given-up attempt's) locks are recovered after
    // 1 s instead of 5, so audits are not held off for long by them.
    let seed = seed();
    eprintln!("txn faults: seed {seed} (SYNOD_TXN_FAULT_SEED={seed} replays its choices)");
    let mut c = Cluster::new_with_args(NODES, &["--txn-resolve-after-ms", "1000"]);
    let mut admin = c.client();
    let config = admin
        .join(vec![GroupInfo::new(2, c.masters.clone())])
        .expect("join group 2");
    let shards = config.shards.len() as u32;
    let accounts = accounts(ACCOUNTS, shards, false);
    let group_of = |config: &synod_wire::Config, a: &Bytes| {
        config.shards[shard_of(a, config.shards.len() as u32) as usize]
    };
    let in_2 = (0..)
        .map(|i| format!("probe{i}"))
        .find(|k| config.shards[shard_of(k.as_bytes(), shards) as usize] == 2)
        .unwrap();
    c.wait_for(Duration::from_secs(30), |c| {
        c.client().put(in_2.clone(), "x").is_ok()
    });
    assert!(
        accounts.iter().any(|a| group_of(&config, a) == 1)
            && accounts.iter().any(|a| group_of(&config, a) == 2),
        "the accounts span both groups"
    );
    let mut open = TxnBuilder::new();
    for a in &accounts {
        open = open.then_put(a.clone(), BALANCE.to_string());
    }
    assert!(
        admin
            .txn(open.build())
            .expect("open the accounts")
            .succeeded
    );

    let stop = Arc::new(AtomicBool::new(false));
    let guard = Stop(stop.clone());
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let counts = Arc::new(Counts::default());
    let mut threads = Vec::new();
    let client = |c: &Cluster| c.client_with_timeout(CLIENT_TIMEOUT);

    for t in 0..TRANSFER_THREADS {
        let (mut client, accounts) = (client(&c), accounts.clone());
        let (stop, failures, counts) = (stop.clone(), failures.clone(), counts.clone());
        threads.push(spawn(&format!("transfer-{t}"), move || {
            let mut rng = Rng::new(seed ^ (0x7a11 + t as u64));
            while !stop.load(Ordering::Relaxed) {
                let i = rng.range(0, ACCOUNTS as u64) as usize;
                let j = (i + 1 + rng.range(0, ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
                let amount = rng.range(1, 21) as i64;
                let txn = transfer_txn(accounts[i].clone(), accounts[j].clone(), amount);
                match client.txn(txn) {
                    Ok(r) => match check_transfer(&r) {
                        Ok(()) => {
                            counts.transfers.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => failures.lock().unwrap().push(why),
                    },
                    // Outcome unknown; a transfer is atomic either way,
                    // which the audits check.
                    Err(_) => {
                        counts.transfers_unknown.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // A short pause now and then, so audits (which lock every
                // account, no-wait) find all of them free at times.
                nap(&stop, Duration::from_millis(rng.range(0, 15)));
            }
        }));
    }

    {
        let (mut client, accounts) = (client(&c), accounts.clone());
        let (stop, failures, counts) = (stop.clone(), failures.clone(), counts.clone());
        threads.push(spawn("auditor", move || {
            while !stop.load(Ordering::Relaxed) {
                match client.txn(audit_txn(&accounts)) {
                    Ok(r) => match check_audit(&r, TOTAL) {
                        Ok(_) => {
                            counts.audits.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => failures.lock().unwrap().push(why),
                    },
                    Err(_) => {
                        counts
                            .audits_failed_to_answer
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                nap(&stop, Duration::from_millis(100));
            }
        }));
    }

    {
        let (mut admin, accounts) = (client(&c), accounts.clone());
        let (stop, counts) = (stop.clone(), counts.clone());
        threads.push(spawn("mover", move || {
            let mut rng = Rng::new(seed ^ 0x30ce);
            while !stop.load(Ordering::Relaxed) {
                nap(&stop, Duration::from_millis(rng.range(400, 1_200)));
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(config) = admin.query(None) else {
                    continue;
                };
                let a = &accounts[rng.range(0, ACCOUNTS as u64) as usize];
                let shard = shard_of(a, config.shards.len() as u32);
                let to = if config.shards[shard as usize] == 1 {
                    2
                } else {
                    1
                };
                // A move whose answer is lost is simply not counted.
                if admin.move_shard(shard, to).is_ok() {
                    counts.moves.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // The nemesis: one group leader at a time, SIGKILL (then restart) or
    // SIGSTOP (then SIGCONT), alternately, 1-2.5 s each, 0.5-1.5 s apart.
    let mut rng = Rng::new(seed ^ 0xfa17);
    let end = Instant::now() + Duration::from_secs(fault_secs());
    let (mut kills, mut stops) = (0u32, 0u32);
    let all: Vec<usize> = (0..NODES).collect();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(rng.range(500, 1_500)));
        let gid = 1 + rng.range(0, 2) as u32;
        let Some(victim) = c.group_leader(gid, &all) else {
            continue;
        };
        let down = Duration::from_millis(rng.range(1_000, 2_500));
        if kills <= stops {
            c.kill(victim);
            kills += 1;
            std::thread::sleep(down);
            c.start_node(victim);
        } else {
            c.signal(victim, "STOP");
            stops += 1;
            std::thread::sleep(down);
            c.signal(victim, "CONT");
        }
    }
    drop(guard);
    let deadline = Instant::now() + JOIN_PATIENCE;
    for t in threads {
        while !t.is_finished() {
            assert!(
                Instant::now() < deadline,
                "a worker thread did not stop within {JOIN_PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t.join().expect("a worker thread panicked");
    }

    // Every node runs again; the last audit waits out any lock a given-up
    // transfer left (recovered by presumed abort) within its timeout.
    let mut last = c.client_with_timeout(Duration::from_secs(30));
    let final_audit = last.txn(audit_txn(&accounts)).expect("final audit");
    let final_check = check_audit(&final_audit, TOTAL);

    let failures = failures.lock().unwrap().clone();
    let n = |x: &AtomicU64| x.load(Ordering::Relaxed);
    eprintln!(
        "txn faults: seed {seed}, {} s, {kills} leader kills, {stops} leader pauses, {} shard moves; \
         {} transfers committed, {} of unknown outcome; {} audits passed, {} unanswered",
        fault_secs(),
        n(&counts.moves),
        n(&counts.transfers),
        n(&counts.transfers_unknown),
        n(&counts.audits),
        n(&counts.audits_failed_to_answer),
    );
    assert!(failures.is_empty(), "bank broken: {failures:#?}");
    final_check.unwrap_or_else(|why| panic!("final audit: {why}"));
    assert!(n(&counts.transfers) > 0, "no transfer committed");
    assert!(
        n(&counts.audits) > 0,
        "no audit completed during the faults"
    );
    assert!(kills > 0 && stops > 0, "the nemesis never struck");
    assert!(n(&counts.moves) > 0, "no shard moved");
}
