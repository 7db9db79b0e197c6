//! What the client session core costs per request, with no sockets and no
//! servers: one session, 16 requests in flight, every frame it sends
//! answered at once with `Ok`, the best of several repetitions (so other
//! work on the machine costs less of the figure). Issue 9: how much of
//! a driver's CPU per request is the shared core
//! (`perf/results/ab-2026-11-30-issue9-split.md`).
//!
//! `cargo run --release -p synod-tools --example session_cost -- [OPS] [REPS] [put|get]`
use bytes::Bytes;
use std::time::{Duration, Instant};
use synod::client::session::{Req, Session, SessionOptions};
use synod_wire::{ClientReply, Config, Frame, GroupInfo, Message, Op};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(2_000_000, |s| s.parse().unwrap());
    let reps: usize = std::env::args().nth(2).map_or(5, |s| s.parse().unwrap());
    let get = std::env::args().nth(3).is_some_and(|s| s == "get");
    let shards = synod_wire::shard::DEFAULT_SHARDS;
    let config = Config {
        num: 1,
        shards: vec![1; shards as usize],
        groups: vec![GroupInfo {
            gid: 1,
            servers: vec![
                "127.0.0.1:1".into(),
                "127.0.0.1:2".into(),
                "127.0.0.1:3".into(),
            ],
            added: 0,
            removed: 0,
            mode: Default::default(),
        }],
    };
    let keys: Vec<Bytes> = (0..10_000)
        .map(|i| Bytes::from(format!("key{i}")))
        .collect();
    let value = Bytes::from(vec![b'v'; 64]);
    let mut best = f64::MAX;
    for _ in 0..reps {
        let opts = SessionOptions::new(Duration::from_secs(10), Duration::from_secs(5), 16);
        let mut s = Session::with_config(opts, config.clone(), 42, 1, Duration::ZERO);
        let t0 = Instant::now();
        let mut done = 0u64;
        let mut submitted = 0u64;
        let mut out = Vec::new();
        let start = Instant::now();
        while done < n {
            while s.pending() < 16 && submitted < n {
                let key = keys[(submitted % 10_000) as usize].clone();
                let op = if get {
                    Op::Get { key }
                } else {
                    Op::Put {
                        key,
                        value: value.clone(),
                    }
                };
                s.submit(Req::Kv(op));
                submitted += 1;
            }
            let now = start.elapsed();
            s.poll(now);
            while let Some(t) = s.poll_transmit() {
                out.push(t);
            }
            for t in out.drain(..) {
                let reply = Frame {
                    request_id: t.frame.request_id,
                    group: t.frame.group,
                    message: Message::Reply(ClientReply::Ok(Bytes::new())),
                };
                s.on_frame(&t.dest, reply, now);
            }
            while let Some(c) = s.poll_completion() {
                assert!(c.result.is_ok());
                done += 1;
            }
        }
        let ns = t0.elapsed().as_nanos() as f64 / n as f64;
        best = best.min(ns);
    }
    println!("best {best:.1} ns/op over {reps} reps of {n}");
}
