//! Issue 13: replacing a dead replica with a fresh node, with real
//! processes. Group 1 runs on three nodes that are not masters; under a
//! checked workload one member is SIGKILLed, a fresh node with an empty
//! data directory is started on a new port and `synod admin replace`d in;
//! once it has caught up (by snapshot: the log is compacted every 64
//! slots) and the group's Paxos membership is the master's, a second old
//! member is SIGKILLed, and the group must keep serving: its quorum is now
//! the survivor and the new member, so it serves only if the new member
//! counts. Afterwards the history must be linearizable (`check::check_kv`)
//! and every acknowledged append present exactly once.
//!
//! `remove_member_retires_a_live_replica` grows a group to four with
//! `add-member`, then removes a live founder: it must stop hosting the
//! group once its removal is chosen, while the group serves on.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use synod::metrics::sample_value;
use synod_wire::GroupInfo;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One `GET /metrics` from node `i`, or `None` (dead, not up yet).
fn scrape(c: &Cluster, i: usize) -> Option<String> {
    scrape_metrics(c.nodes[i].metrics_addr.as_ref()?).ok()
}

/// Group 1's gauge `name` on node `i`, hosted there as replica `id`.
fn group_gauge(c: &Cluster, i: usize, id: u32, name: &str) -> Option<u64> {
    let body = scrape(c, i)?;
    let id = id.to_string();
    sample_value(&body, name, &[("gid", "1"), ("replica", &id)]).map(|v| v as u64)
}

/// Appenders: each client appends unique tokens to a few shared keys and
/// remembers which were acknowledged (and which it tried at all).
struct Appenders {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// token -> (key, acknowledged)
    tokens: Arc<Mutex<BTreeMap<String, (String, bool)>>>,
}

const APPEND_KEYS: u64 = 4;

impl Appenders {
    fn start(c: &Cluster, clients: usize) -> Appenders {
        let stop = Arc::new(AtomicBool::new(false));
        let tokens = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..clients)
            .map(|i| {
                let mut client = c.client_with_timeout(Duration::from_secs(15));
                let (stop, tokens) = (stop.clone(), tokens.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let key = format!("append-{}", n % APPEND_KEYS);
                        let token = format!("a{i}.{n};");
                        tokens
                            .lock()
                            .unwrap()
                            .insert(token.clone(), (key.clone(), false));
                        let ok = client.append(key.clone(), token.clone()).is_ok();
                        tokens.lock().unwrap().insert(token, (key, ok));
                    }
                })
            })
            .collect();
        Appenders {
            stop,
            threads,
            tokens,
        }
    }

    /// Stops, reads every append key, and checks: each acknowledged token
    /// appears exactly once, an unacknowledged one at most once, and
    /// nothing appears that was never sent. Returns the acknowledged count.
    fn finish(self, c: &Cluster) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("appender panicked");
        }
        let tokens = std::mem::take(&mut *self.tokens.lock().unwrap());
        let mut client = c.client();
        let mut acked = 0;
        for k in 0..APPEND_KEYS {
            let key = format!("append-{k}");
            let value = client.get(key.clone()).expect("read an append key");
            let value = text(&value.unwrap_or_default());
            let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
            for t in value.split_inclusive(';') {
                *seen.entry(t).or_default() += 1;
            }
            for (t, n) in &seen {
                let sent = tokens.get(*t);
                assert!(
                    sent.is_some_and(|(k, _)| *k == key),
                    "{key} holds {t:?}, never sent to it"
                );
                assert_eq!(*n, 1, "{t:?} appended {n} times to {key}");
            }
            for (t, (k, ok)) in &tokens {
                if *k == key && *ok {
                    acked += 1;
                    assert!(
                        seen.contains_key(t.as_str()),
                        "acknowledged append {t:?} missing from {key}"
                    );
                }
            }
        }
        acked
    }
}

/// Waits (bounded) until the workload acknowledged `more` operations past
/// `from`; panics with the node logs otherwise.
fn progress(c: &Cluster, w: &Workload, from: usize, more: usize, limit: Duration, what: &str) {
    let start = Instant::now();
    while w.completed() < from + more {
        if start.elapsed() > limit {
            let logs: Vec<String> = (0..c.nodes.len())
                .map(|i| format!("--- node {i} ---\n{}", tail(&c.log(i), 25)))
                .collect();
            panic!(
                "{what}: {} of {more} operations acknowledged in {limit:?}\n{}",
                w.completed() - from,
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_member_replaced_by_a_fresh_node_lets_the_group_survive_losing_another_old_member() {
    let started = Instant::now();
    // Nodes 0-2: masters. Nodes 3-5: group 1 (replicas 0, 1, 2).
    let mut c = Cluster::with_args_metrics(3, 3, &["--snapshot-log-slots", "64"]);
    let servers: Vec<String> = (3..6).map(|i| c.nodes[i].addr.clone()).collect();
    c.client()
        .join(vec![GroupInfo::new(GID, servers.clone())])
        .expect("join group 1");
    c.wait_for(Duration::from_secs(30), |c| {
        c.client().put(&b"__ready"[..], &b"1"[..]).is_ok()
    });

    let work = Workload::start(&c, 3, 8);
    let appends = Appenders::start(&c, 2);
    progress(
        &c,
        &work,
        0,
        100,
        Duration::from_secs(15),
        "before the kill",
    );
    // Both survivors (either may lead after the kill) must have freed a
    // prefix of their log to a snapshot, so the fresh node can only catch
    // up by one. On a quick run the first 100 operations fit in fewer
    // batches than a snapshot's 64 slots, and the fresh node then caught
    // up from the log alone (a CI failure).
    c.wait_for(Duration::from_secs(30), |c| {
        [(3, 0), (5, 2)].iter().all(|&(node, replica)| {
            let slots = group_gauge(c, node, replica, "synod_group_log_slots");
            let commit = group_gauge(c, node, replica, "synod_group_commit_index");
            matches!((slots, commit), (Some(s), Some(c)) if s < c)
        })
    });

    // Replica 1 dies for good.
    c.kill(4);
    let fresh = c.add_node();
    let fresh_addr = c.nodes[fresh].addr.clone();
    let out = c.admin(&["replace", "1", &servers[1], &fresh_addr]);
    assert!(
        out.status.success(),
        "replace failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let json = text(&out.stdout);
    // The group now lists replicas 0, 2 and the fresh node (replica 3),
    // and the configuration says which ids vote and which founded it.
    let want_members = format!(
        "\"1\":[\"{}\",\"{}\",\"{fresh_addr}\"]",
        servers[0], servers[2]
    );
    assert!(json.contains(&want_members), "{json}");
    assert!(
        json.contains("\"members\":[0,2,3],\"founders\":[0,1,2]"),
        "{json}"
    );
    // The same request again is refused: the old address is gone already.
    let again = c.admin(&["replace", "1", &servers[1], "127.0.0.1:1"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already removed"),
        "{}",
        text(&again.stderr)
    );

    // Wait until the group's Paxos membership is the master's ({0, 2, 3}:
    // the new replica added, then the dead one removed) on both survivors
    // and on the new node, and the new node has caught up by snapshot.
    let want = 0b1101u64;
    c.wait_for(Duration::from_secs(30), |c| {
        group_gauge(c, 3, 0, "synod_group_membership") == Some(want)
            && group_gauge(c, 5, 2, "synod_group_membership") == Some(want)
            && group_gauge(c, fresh, 3, "synod_group_membership") == Some(want)
    });
    let commit = group_gauge(&c, 3, 0, "synod_group_commit_index")
        .unwrap()
        .max(group_gauge(&c, 5, 2, "synod_group_commit_index").unwrap());
    c.wait_for(Duration::from_secs(20), |c| {
        group_gauge(c, fresh, 3, "synod_group_applied_index").is_some_and(|a| a >= commit)
    });
    let installed = group_gauge(&c, fresh, 3, "synod_group_snapshots_installed_total");
    assert!(
        installed.is_some_and(|n| n >= 1),
        "the fresh node caught up without a snapshot ({installed:?})"
    );
    let done = work.completed();
    progress(
        &c,
        &work,
        done,
        50,
        Duration::from_secs(15),
        "after the replace",
    );

    // Another old member dies: replicas 2 and 3 are a majority of {0, 2, 3}
    // only if the new replica counts.
    c.kill(3);
    let done = work.completed();
    progress(
        &c,
        &work,
        done,
        100,
        Duration::from_secs(20),
        "after the second kill",
    );
    let mut client = c.client_with_timeout(Duration::from_secs(10));
    client
        .put(&b"after-both-kills"[..], &b"yes"[..])
        .expect("the group serves with one founder and the new replica");
    assert_eq!(
        client.get(&b"after-both-kills"[..]).expect("read back"),
        Some(bytes::Bytes::from_static(b"yes"))
    );

    let acked = appends.finish(&c);
    assert!(acked > 20, "only {acked} appends acknowledged");
    let history = work.finish();
    eprintln!(
        "replace: {} operations checked, {acked} appends, {:?} in all",
        history.len(),
        started.elapsed()
    );
}

#[test]
fn remove_member_retires_a_live_replica_and_add_member_grows_the_group() {
    // Nodes 0-2: masters. Nodes 3-5: group 1.
    let mut c = Cluster::with_args_metrics(3, 3, &[]);
    let servers: Vec<String> = (3..6).map(|i| c.nodes[i].addr.clone()).collect();
    c.client()
        .join(vec![GroupInfo::new(GID, servers.clone())])
        .expect("join group 1");
    c.wait_for(Duration::from_secs(30), |c| {
        c.client().put(&b"__ready"[..], &b"1"[..]).is_ok()
    });
    let fresh = c.add_node();
    let fresh_addr = c.nodes[fresh].addr.clone();
    let out = c.admin(&["add-member", "1", &fresh_addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    c.wait_for(Duration::from_secs(30), |c| {
        group_gauge(c, fresh, 3, "synod_group_membership") == Some(0b1111)
    });
    // Remove a live founder (replica 0): once its removal is chosen it
    // stops hosting the group (its metrics no longer list it).
    let out = c.admin(&["remove-member", "1", &servers[0]]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    c.wait_for(Duration::from_secs(30), |c| {
        group_gauge(c, 5, 2, "synod_group_membership") == Some(0b1110)
            && scrape(c, 3).is_some_and(|b| !b.contains("synod_group_membership{gid=\"1\""))
    });
    // Refused with reasons, nothing changed.
    let out = c.admin(&["remove-member", "1", &servers[0]]);
    assert!(
        text(&out.stderr).contains("already removed"),
        "{}",
        text(&out.stderr)
    );
    let out = c.admin(&["add-member", "9", "127.0.0.1:1"]);
    assert!(text(&out.stderr).contains("group 9 is not in the configuration"));
    // The group serves on three members, the retired node's gone.
    c.kill(3);
    let mut client = c.client_with_timeout(Duration::from_secs(10));
    client.put(&b"k"[..], &b"v"[..]).expect("serves");
    let status = c.admin(&["status"]);
    let status_text = text(&status.stdout);
    assert!(status.status.success(), "{status_text}");
    assert!(!status_text.contains(&servers[0]), "{status_text}");
    assert!(status_text.contains(&fresh_addr), "{status_text}");
}
