//! The session core on virtual time: every test feeds frames and a clock it
//! advances itself, so nothing here depends on the machine's speed.

use std::time::Duration;

use bytes::Bytes;
use synod_wire::{ClientReply, Config, Frame, GroupInfo, MasterOp, Message, Op, Seq};

use super::session::{Answer, Dest, Req, Session, SessionOptions, Time, Transmit};
use super::ClientError;

const MS: Duration = Duration::from_millis(1);

fn group(num: u64, gid: u32, members: &[&str]) -> Config {
    Config {
        num,
        shards: vec![gid; 4],
        groups: vec![GroupInfo::new(
            gid,
            members.iter().map(|s| s.to_string()).collect(),
        )],
    }
}

fn opts(in_flight_max: usize) -> SessionOptions {
    SessionOptions::new(Duration::from_secs(5), 100 * MS, in_flight_max)
}

fn fixed(in_flight_max: usize) -> Session {
    Session::with_config(
        opts(in_flight_max),
        group(1, 1, &["a", "b", "c"]),
        7,
        1,
        Time::ZERO,
    )
}

fn get(key: &str) -> Req {
    Req::Kv(Op::Get {
        key: Bytes::from(key.to_string()),
    })
}

fn put(key: &str) -> Req {
    Req::Kv(Op::Put {
        key: Bytes::from(key.to_string()),
        value: Bytes::from_static(b"v"),
    })
}

fn sent(s: &mut Session) -> Vec<Transmit> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn seq_of(t: &Transmit) -> (Seq, Seq) {
    match &t.frame.message {
        Message::Request(r) => (r.seq, r.ack_seq),
        Message::Master(r) => (r.seq, r.ack_seq),
        m => panic!("not a request: {m:?}"),
    }
}

fn answer(s: &mut Session, t: &Transmit, reply: ClientReply, now: Time) {
    answer_msg(s, t, Message::Reply(reply), now);
}

fn answer_msg(s: &mut Session, t: &Transmit, message: Message, now: Time) {
    s.on_frame(
        &t.dest,
        Frame {
            request_id: t.frame.request_id,
            group: t.frame.group,
            message,
        },
        now,
    );
}

#[test]
fn pipelines_within_the_window_and_acks_only_the_contiguous_prefix() {
    let mut s = fixed(3);
    let handles: Vec<u64> = (0..5).map(|i| s.submit(put(&format!("k{i}")))).collect();
    s.poll(Time::ZERO);
    let first = sent(&mut s);
    assert_eq!(first.len(), 3, "the window admits three");
    assert_eq!(s.pending(), 5);
    // Seq 3 then 2 answer before seq 1: nothing may be acknowledged yet.
    answer(&mut s, &first[2], ClientReply::Ok(Bytes::new()), MS);
    answer(&mut s, &first[1], ClientReply::Ok(Bytes::new()), MS);
    let done: Vec<u64> = std::iter::from_fn(|| s.poll_completion())
        .map(|c| c.handle)
        .collect();
    assert_eq!(done, vec![handles[2], handles[1]]);
    assert_eq!(s.ack_seq(), 0);
    s.poll(MS);
    let second = sent(&mut s);
    assert_eq!(second.len(), 2, "two slots freed");
    assert_eq!(
        second.iter().map(seq_of).collect::<Vec<_>>(),
        vec![(4, 0), (5, 0)]
    );
    answer(&mut s, &first[0], ClientReply::Ok(Bytes::new()), 2 * MS);
    assert_eq!(s.ack_seq(), 3, "seq 1 closes the gap below 2 and 3");
}

#[test]
fn not_leader_follows_hints_three_times_then_backs_off_with_the_same_seq() {
    let mut s = fixed(1);
    s.submit(get("k"));
    s.poll(Time::ZERO);
    let mut t = sent(&mut s).pop().unwrap();
    let first_id = t.frame.request_id;
    let now = MS;
    // Answers NotLeader naming another member; returns the member named.
    let redirect = |s: &mut Session, t: &Transmit| {
        let hint = if &*t.dest.addr == "a" { 1 } else { 0 };
        answer(s, t, ClientReply::NotLeader { leader: Some(hint) }, now);
        s.poll(now);
        hint
    };
    for hop in 0..3 {
        let hint = redirect(&mut s, &t);
        let next = sent(&mut s);
        assert_eq!(next.len(), 1, "redirect {hop} goes out at once");
        assert_eq!(&*next[0].dest.addr, ["a", "b", "c"][hint as usize]);
        assert_eq!(seq_of(&next[0]).0, 1, "same seq on every resend");
        assert_ne!(next[0].frame.request_id, t.frame.request_id);
        t = next.into_iter().next().unwrap();
    }
    redirect(&mut s, &t);
    assert!(sent(&mut s).is_empty(), "the fourth redirect backs off");
    let wake = s.next_wake(now).unwrap();
    assert!(wake > now);
    // A late answer to the first send is dropped, not taken as the result.
    s.on_frame(
        &Dest {
            addr: "a".into(),
            gid: 1,
        },
        Frame {
            request_id: first_id,
            group: 1,
            message: Message::Reply(ClientReply::Ok(Bytes::from_static(b"stale"))),
        },
        now,
    );
    assert!(s.poll_completion().is_none());
    assert!(
        s.poll_close().is_none(),
        "a late answer is not a confused server"
    );
    s.poll(wake);
    let t = sent(&mut s).pop().expect("resent after the backoff");
    assert_eq!(seq_of(&t).0, 1);
    answer(&mut s, &t, ClientReply::NoKey, wake);
    let done = s.poll_completion().unwrap();
    assert_eq!(done.result, Ok(Answer::Kv(None)));
}

/// Issue 13: a group's server list grows on a replace. A NotLeader hint
/// naming a replica past the list the session knows makes it fetch the
/// newest configuration (not cycle through the old list, whose other
/// members may be dead by now); the new configuration's removed server is
/// skipped, and the request goes to the hinted new replica, same seq.
#[test]
fn a_leader_hint_past_the_known_servers_refreshes_the_configuration() {
    let mut s = Session::with_masters(opts(8), vec!["m0".into()], 7, 1, Time::ZERO);
    let h = s.submit(put("k"));
    s.poll(Time::ZERO);
    let q = sent(&mut s).pop().unwrap();
    answer_msg(
        &mut s,
        &q,
        Message::Config(group(1, 1, &["a", "b", "c"])),
        MS,
    );
    s.poll(s.next_wake(MS).unwrap());
    let t = sent(&mut s).pop().unwrap();
    assert_eq!(t.dest.addr.as_ref(), "a");
    let kv_seq = seq_of(&t).0;
    let now = 30 * MS;
    answer(&mut s, &t, ClientReply::NotLeader { leader: Some(3) }, now);
    s.poll(now);
    let refresh = sent(&mut s).pop().expect("a configuration refresh");
    assert_eq!(refresh.dest.gid, 0, "asks the master, not b or c");
    // Replace a -> d: d is replica 3, a (replica 0) removed.
    let mut grown = group(2, 1, &["a", "b", "c", "d"]);
    grown.groups[0].added = 0b1000;
    grown.groups[0].removed = 0b0001;
    answer_msg(&mut s, &refresh, Message::Config(grown), now);
    let mut at = now;
    let resent = loop {
        s.poll(at);
        if let Some(t) = s.poll_transmit() {
            break t;
        }
        at = s.next_wake(at).unwrap();
    };
    assert_ne!(
        resent.dest.addr.as_ref(),
        "a",
        "a removed server is skipped"
    );
    assert_eq!(seq_of(&resent).0, kv_seq, "the same seq after the refresh");
    // Whoever it asked, a hint to replica 3 now reaches d.
    let d = if resent.dest.addr.as_ref() == "d" {
        resent
    } else {
        answer(
            &mut s,
            &resent,
            ClientReply::NotLeader { leader: Some(3) },
            at,
        );
        s.poll(at);
        sent(&mut s).pop().expect("redirected at once")
    };
    assert_eq!(d.dest.addr.as_ref(), "d");
    answer(&mut s, &d, ClientReply::Ok(Bytes::new()), at);
    assert_eq!(s.poll_completion().unwrap().handle, h);
}

#[test]
fn wrong_group_refreshes_without_blocking_and_resends_the_same_seq() {
    let mut s = Session::with_masters(opts(8), vec!["m0".into()], 7, 1, Time::ZERO);
    let h = s.submit(put("k"));
    s.poll(Time::ZERO);
    let q = sent(&mut s).pop().unwrap();
    assert_eq!(q.dest.gid, 0, "no configuration yet: ask the master");
    answer_msg(&mut s, &q, Message::Config(group(1, 1, &["a"])), MS);
    s.poll(s.next_wake(MS).unwrap());
    let t = sent(&mut s).pop().unwrap();
    assert_eq!((t.dest.addr.as_ref(), t.dest.gid), ("a", 1));
    let kv_seq = seq_of(&t).0;
    // Another request is in flight while the refresh below runs.
    let other = s.submit(get("j"));
    s.poll(30 * MS);
    let j = sent(&mut s).pop().unwrap();
    let now = 30 * MS;
    answer(&mut s, &t, ClientReply::WrongGroup, now);
    s.poll(now);
    let refresh = sent(&mut s).pop().expect("a refresh");
    assert_eq!(refresh.dest.gid, 0);
    answer(&mut s, &j, ClientReply::NoKey, now);
    let done = s
        .poll_completion()
        .expect("answers are taken during a refresh");
    assert_eq!((done.handle, done.result), (other, Ok(Answer::Kv(None))));
    answer_msg(&mut s, &refresh, Message::Config(group(2, 2, &["b"])), now);
    let mut at = now;
    let resent = loop {
        s.poll(at);
        if let Some(t) = s.poll_transmit() {
            break t;
        }
        at = s.next_wake(at).unwrap();
    };
    assert_eq!((resent.dest.addr.as_ref(), resent.dest.gid), ("b", 2));
    assert_eq!(seq_of(&resent).0, kv_seq, "the same seq after the refresh");
    answer(&mut s, &resent, ClientReply::Ok(Bytes::new()), at);
    assert_eq!(s.poll_completion().unwrap().handle, h);
}

#[test]
fn a_silent_member_is_dropped_and_its_requests_go_to_the_next() {
    let mut s = fixed(4);
    s.submit(get("k1"));
    s.submit(get("k2"));
    s.poll(Time::ZERO);
    let first = sent(&mut s);
    assert!(first.iter().all(|t| &*t.dest.addr == "a"));
    let wake = s.next_wake(Time::ZERO).unwrap();
    assert_eq!(wake, 100 * MS, "the rpc timeout");
    s.poll(wake);
    let (dest, _) = s.poll_close().expect("the silent connection is dropped");
    assert_eq!(&*dest.addr, "a");
    assert!(s.poll_close().is_none(), "once, for both requests");
    let mut at = wake;
    let mut again = Vec::new();
    while again.len() < 2 {
        at = s.next_wake(at).unwrap();
        s.poll(at);
        again.extend(sent(&mut s));
    }
    assert!(again.iter().all(|t| &*t.dest.addr == "b"));
    let mut seqs: Vec<Seq> = again.iter().map(|t| seq_of(t).0).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![1, 2]);
}

#[test]
fn deadline_says_unreachable_if_never_delivered_and_timeout_if_delivered() {
    let mut s = Session::with_config(
        SessionOptions::new(50 * MS, 10 * MS, 4),
        group(1, 1, &["a"]),
        7,
        1,
        Time::ZERO,
    );
    let never = s.submit(get("k1"));
    s.poll(Time::ZERO);
    let t = sent(&mut s).pop().unwrap();
    s.on_conn_failed(&t.dest, "connection refused", false, Time::ZERO);
    let mut at = Time::ZERO;
    while let Some(wake) = s.next_wake(at) {
        at = wake;
        s.poll(at);
        for t in sent(&mut s) {
            s.on_conn_failed(&t.dest, "connection refused", false, at);
        }
    }
    let done = s.poll_completion().unwrap();
    assert_eq!(done.handle, never);
    assert!(
        matches!(done.result, Err(ClientError::Unreachable(ref why)) if why.contains("refused"))
    );
    assert!(
        at >= 50 * MS && at < 60 * MS,
        "ends by its deadline, not later"
    );

    let maybe = s.submit(get("k2"));
    s.poll(at);
    assert_eq!(sent(&mut s).len(), 1, "delivered; no answer ever comes");
    let start = at;
    while let Some(wake) = s.next_wake(at) {
        at = wake;
        s.poll(at);
        sent(&mut s);
        while s.poll_close().is_some() {}
    }
    let done = s.poll_completion().unwrap();
    assert_eq!(done.handle, maybe);
    assert_eq!(done.result, Err(ClientError::Timeout));
    assert_eq!(at - start, 50 * MS);
}

#[test]
fn session_expired_drains_then_waits_for_a_fresh_id_and_restarts_seqs() {
    let mut s = fixed(2);
    s.submit(put("k1"));
    s.submit(put("k2"));
    let third = s.submit(put("k3"));
    s.poll(Time::ZERO);
    let out = sent(&mut s);
    assert_eq!(out.len(), 2);
    answer(&mut s, &out[0], ClientReply::SessionExpired, MS);
    assert_eq!(
        s.poll_completion().unwrap().result,
        Err(ClientError::SessionExpired)
    );
    s.poll(MS);
    assert!(sent(&mut s).is_empty(), "nothing new under an expired id");
    assert!(!s.needs_new_id(MS), "seq 2 is still in flight under it");
    answer(&mut s, &out[1], ClientReply::Ok(Bytes::new()), MS);
    s.poll_completion().unwrap();
    assert!(s.needs_new_id(MS));
    s.set_client_id(99, MS);
    s.poll(MS);
    let t = sent(&mut s).pop().unwrap();
    let Message::Request(r) = &t.frame.message else {
        panic!("a KV request")
    };
    assert_eq!((r.client_id, r.seq, r.ack_seq), (99, 1, 0));
    answer(&mut s, &t, ClientReply::Ok(Bytes::new()), MS);
    assert_eq!(s.poll_completion().unwrap().handle, third);
}

#[test]
fn busy_backs_off_on_the_same_member_and_a_never_sent_id_drops_the_connection() {
    let mut s = fixed(1);
    s.submit(get("k"));
    s.poll(Time::ZERO);
    let t = sent(&mut s).pop().unwrap();
    answer(&mut s, &t, ClientReply::Busy, MS);
    s.poll(MS);
    assert!(sent(&mut s).is_empty(), "Busy waits");
    let wake = s.next_wake(MS).unwrap();
    s.poll(wake);
    let t2 = sent(&mut s).pop().unwrap();
    assert_eq!(t2.dest, t.dest, "the same member: it leads");
    assert_eq!(seq_of(&t2).0, seq_of(&t).0);
    s.on_frame(
        &t2.dest,
        Frame {
            request_id: t2.frame.request_id + 1000,
            group: 1,
            message: Message::Reply(ClientReply::NoKey),
        },
        wake,
    );
    assert_eq!(s.poll_close().map(|(d, _)| d), Some(t2.dest.clone()));
    assert!(s.poll_completion().is_none());
}

#[test]
fn an_error_reply_is_final_and_too_large_never_costs_a_seq() {
    let mut s = fixed(1);
    let big = s.submit(Req::Kv(Op::Put {
        key: Bytes::from_static(b"k"),
        value: Bytes::from(vec![0u8; synod_wire::DEFAULT_FRAME_BYTES_MAX as usize]),
    }));
    let done = s.poll_completion().unwrap();
    assert_eq!((done.handle, done.seq), (big, None));
    assert_eq!(done.result, Err(ClientError::TooLarge));
    s.submit(get("k"));
    s.poll(Time::ZERO);
    let t = sent(&mut s).pop().unwrap();
    assert_eq!(seq_of(&t).0, 1);
    answer(
        &mut s,
        &t,
        ClientReply::Error {
            reason: "no".into(),
        },
        MS,
    );
    assert_eq!(
        s.poll_completion().unwrap().result,
        Err(ClientError::Refused("no".into()))
    );
    assert_eq!(s.ack_seq(), 1);
}

#[test]
fn an_installed_configuration_routes_at_once_and_never_rolls_back() {
    let mut s = Session::with_masters(opts(4), vec!["m0".into()], 7, 1, Time::ZERO);
    assert!(s.install_config(group(3, 2, &["b"])));
    assert!(!s.install_config(group(2, 1, &["a"])), "older: refused");
    assert_eq!(s.config().map(|c| c.num), Some(3));
    s.submit(put("k"));
    s.poll(Time::ZERO);
    let t = sent(&mut s).pop().unwrap();
    assert_eq!(
        (t.dest.addr.as_ref(), t.dest.gid),
        ("b", 2),
        "no query of the masters first"
    );
}

#[test]
fn stats_count_redirects_wrong_groups_and_busy_answers() {
    let mut s = Session::with_masters(opts(4), vec!["m0".into()], 7, 1, Time::ZERO);
    s.install_config(group(1, 1, &["a", "b"]));
    s.submit(put("k"));
    s.poll(Time::ZERO);
    let t = sent(&mut s).pop().unwrap();
    answer(&mut s, &t, ClientReply::NotLeader { leader: Some(1) }, MS);
    s.poll(MS);
    let t = sent(&mut s).pop().unwrap();
    answer(&mut s, &t, ClientReply::Busy, MS);
    let at = s.next_wake(MS).unwrap();
    s.poll(at);
    let t = sent(&mut s).pop().unwrap();
    answer(&mut s, &t, ClientReply::WrongGroup, at);
    let stats = s.stats();
    assert_eq!(
        (stats.not_leader, stats.busy, stats.wrong_group),
        (1, 1, 1),
        "{stats:?}"
    );
}

#[test]
fn a_completion_gives_the_request_back() {
    let mut s = fixed(2);
    let h = s.submit(get("mine"));
    s.poll(Time::ZERO);
    let t = sent(&mut s).pop().unwrap();
    answer(&mut s, &t, ClientReply::NoKey, MS);
    let done = s.poll_completion().unwrap();
    assert_eq!(done.handle, h);
    match done.req {
        Req::Kv(op) => assert_eq!(op.key().as_ref(), b"mine"),
        other => panic!("not the request submitted: {other:?}"),
    }
}

/// The RESP gateway hands a closed connection's session to the next one:
/// whatever the old caller left in flight or queued is dropped without a
/// completion, every seq it used is acknowledged by the next request (a
/// copy still on its way is then refused as stale, never applied), and
/// late answers to the abandoned sends are ignored.
#[test]
fn abandoning_everything_acknowledges_every_seq_used_and_drops_late_answers() {
    let mut s = fixed(2);
    for i in 0..4 {
        s.submit(put(&format!("k{i}")));
    }
    s.poll(Time::ZERO);
    let out = sent(&mut s);
    assert_eq!(out.len(), 2, "two in flight, two queued");
    answer(&mut s, &out[1], ClientReply::Ok(Bytes::new()), MS);
    assert!(s.poll_completion().is_some());
    s.abandon_all();
    assert_eq!(s.pending(), 0);
    assert!(s.poll_completion().is_none());
    assert!(!s.needs_new_id(MS), "the id stays usable");
    // A late answer to the abandoned send is dropped, not a confused server.
    answer(&mut s, &out[0], ClientReply::Ok(Bytes::new()), 2 * MS);
    assert!(s.poll_completion().is_none());
    assert!(s.poll_close().is_none());
    let h = s.submit(get("next"));
    s.poll(3 * MS);
    let t = sent(&mut s).pop().unwrap();
    assert_eq!(seq_of(&t), (3, 2), "seqs 1 and 2 acknowledged");
    answer(&mut s, &t, ClientReply::NoKey, 4 * MS);
    assert_eq!(s.poll_completion().unwrap().handle, h);
}

/// A poll costs what is due, not a scan of every request: the session
/// keeps its tasks' times in queues whose finished entries are dropped
/// from the top whenever one may be stale and rebuilt past twice the tasks. So
/// with one request stuck on the wire while thousands come and go, the
/// entries stay bounded, the next wake-up is still the stuck request's
/// rpc deadline, and once everything finished there is nothing to wake for.
#[test]
fn finished_requests_leave_no_timers_and_the_wake_up_is_the_earliest_live_one() {
    let mut s = fixed(4);
    s.submit(get("stuck"));
    s.poll(Time::ZERO);
    let stuck = sent(&mut s).pop().unwrap();
    let mut now = Time::ZERO;
    for i in 0..2000 {
        now += Duration::from_micros(20);
        s.submit(put(&format!("k{i}")));
        s.poll(now);
        let t = sent(&mut s).pop().unwrap();
        answer(&mut s, &t, ClientReply::Ok(Bytes::new()), now);
        assert!(s.poll_completion().is_some());
        assert!(
            s.timer_entries() <= 3 * (2 * 2 + 64),
            "timer entries bounded by the tasks"
        );
    }
    // 40 ms in: the stuck request's attempt times out at 100 ms.
    assert_eq!(s.next_wake(now), Some(100 * MS));
    answer(&mut s, &stuck, ClientReply::NoKey, now);
    assert!(s.poll_completion().is_some());
    assert_eq!(
        s.next_wake(now),
        None,
        "nothing in flight, nothing to wake for"
    );
    assert_eq!(s.timer_entries(), 0);
}

/// Two groups, shards 0-1 on group 1 and 2-3 on group 2; a key of each.
fn two_groups() -> (Session, Bytes, Bytes) {
    let config = Config {
        num: 1,
        shards: vec![1, 1, 2, 2],
        groups: vec![
            GroupInfo::new(1, vec!["a".to_string()]),
            GroupInfo::new(2, vec!["b".to_string()]),
        ],
    };
    let key_in = |gid: u32| {
        (0..)
            .map(|i| Bytes::from(format!("k{i}")))
            .find(|k| config.shards[synod_wire::shard_of(k, 4) as usize] == gid)
            .unwrap()
    };
    let (k1, k2) = (key_in(1), key_in(2));
    (
        Session::with_config(opts(4), config, 7, 1, Time::ZERO),
        k1,
        k2,
    )
}

fn op_of(t: &Transmit) -> &Op {
    match &t.frame.message {
        Message::Request(r) => &r.op,
        m => panic!("not a request: {m:?}"),
    }
}

fn vote(yes: bool, results: usize) -> ClientReply {
    let ok = synod_wire::TxnOpResult::Ok {
        value: Bytes::new(),
        version: 9,
    };
    ClientReply::Ok(synod_wire::encode_txn_vote(&synod_wire::TxnVote {
        yes,
        holds: true,
        success: if yes { vec![ok; results] } else { vec![] },
        failure: vec![],
    }))
}

fn transfer(k1: &Bytes, k2: &Bytes) -> Req {
    Req::Kv(Op::Txn(Box::new(
        super::TxnBuilder::new()
            .when_exists(k1.clone())
            .then_put(k1.clone(), "1")
            .then_put(k2.clone(), "2")
            .build(),
    )))
}

/// A transaction across groups: prepares to both groups in parallel, the
/// decision to the first key's group, the caller answered once it is
/// applied (with both groups' results in order), the outcome to the other
/// group afterwards.
#[test]
fn a_transaction_across_groups_prepares_in_parallel_then_decides_at_the_first_keys_group() {
    let (mut s, k1, k2) = two_groups();
    let h = s.submit(transfer(&k1, &k2));
    s.poll(Time::ZERO);
    let prepares = sent(&mut s);
    assert_eq!(prepares.len(), 2, "{prepares:?}");
    let mut gids: Vec<u32> = prepares.iter().map(|t| t.dest.gid).collect();
    gids.sort();
    assert_eq!(gids, vec![1, 2]);
    let ids: Vec<_> = prepares
        .iter()
        .map(|t| match op_of(t) {
            Op::TxnPrepare(p) => {
                assert_eq!(p.part.success.len(), 1);
                p.txn
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids[0], ids[1], "one transaction id for every part");
    for t in &prepares {
        answer(&mut s, t, vote(true, 1), MS);
    }
    s.poll(MS);
    let decide = sent(&mut s);
    assert_eq!(decide.len(), 1);
    assert_eq!(
        decide[0].dest.gid, 1,
        "the coordinator is the first key's group"
    );
    assert!(matches!(op_of(&decide[0]),
        Op::TxnDecide(f) if f.outcome == synod_wire::TxnOutcome::Success));
    assert!(
        s.poll_completion().is_none(),
        "answered before the decision"
    );
    answer(
        &mut s,
        &decide[0],
        ClientReply::Ok(Bytes::from_static(&[1])),
        2 * MS,
    );
    let done = s.poll_completion().expect("answered after the decision");
    assert_eq!(done.handle, h);
    let Ok(Answer::Kv(Some(bytes))) = done.result else {
        panic!("{:?}", done.result);
    };
    let result = synod_wire::decode_txn_result(bytes).unwrap();
    assert!(result.succeeded);
    assert_eq!(result.results.len(), 2);
    s.poll(2 * MS);
    let finish = sent(&mut s);
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0].dest.gid, 2);
    assert!(matches!(op_of(&finish[0]), Op::TxnFinish(_)));
    assert_eq!(s.background(), 1);
    answer(
        &mut s,
        &finish[0],
        ClientReply::Ok(Bytes::from_static(&[1])),
        3 * MS,
    );
    assert_eq!(s.background(), 0);
    assert_eq!(s.pending(), 0);
}

/// A No vote (a key locked by another transaction): the Yes voter gets the
/// abort, and the transaction is tried again under a new id.
#[test]
fn a_no_vote_aborts_the_attempt_and_retries_under_a_new_id() {
    let (mut s, k1, k2) = two_groups();
    s.submit(transfer(&k1, &k2));
    s.poll(Time::ZERO);
    let prepares = sent(&mut s);
    let first_id = match op_of(&prepares[0]) {
        Op::TxnPrepare(p) => p.txn,
        other => panic!("{other:?}"),
    };
    answer(&mut s, &prepares[0], vote(true, 1), MS);
    answer(&mut s, &prepares[1], vote(false, 0), MS);
    s.poll(MS);
    let abort = sent(&mut s);
    assert_eq!(abort.len(), 1);
    assert_eq!(abort[0].dest.gid, prepares[0].dest.gid);
    assert!(matches!(op_of(&abort[0]),
        Op::TxnFinish(f) if f.outcome == synod_wire::TxnOutcome::Abort && f.txn == first_id));
    assert!(s.poll_completion().is_none());
    // After the backoff: a new attempt, a new id.
    let later = Duration::from_secs(2);
    s.poll(later);
    let again = sent(&mut s);
    assert_eq!(again.len(), 2, "{again:?}");
    for t in &again {
        assert!(matches!(op_of(t), Op::TxnPrepare(p) if p.txn != first_id));
    }
}

/// Every prepare names the coordinator (the first key's group); a decision
/// the coordinator answers Abort (a participant asked first: presumed
/// abort) is an abort, not a success: the other part gets the abort and
/// the transaction is tried again under a new id. An unknown decision
/// (`0xFF`) is an error, never a success.
#[test]
fn a_decision_that_lost_to_a_presumed_abort_is_retried_and_an_unknown_one_fails() {
    let (mut s, k1, k2) = two_groups();
    s.submit(transfer(&k1, &k2));
    s.poll(Time::ZERO);
    let prepares = sent(&mut s);
    let first_id = match op_of(&prepares[0]) {
        Op::TxnPrepare(p) => p.txn,
        other => panic!("{other:?}"),
    };
    for t in &prepares {
        assert!(matches!(op_of(t), Op::TxnPrepare(p) if p.coordinator == 1));
        answer(&mut s, t, vote(true, 1), MS);
    }
    s.poll(MS);
    let decide = sent(&mut s);
    answer(
        &mut s,
        &decide[0],
        ClientReply::Ok(Bytes::from_static(&[0])),
        2 * MS,
    );
    assert!(s.poll_completion().is_none(), "not answered: retried");
    s.poll(2 * MS);
    let abort = sent(&mut s);
    assert_eq!(abort.len(), 1);
    assert_eq!(abort[0].dest.gid, 2);
    assert!(matches!(op_of(&abort[0]),
        Op::TxnFinish(f) if f.outcome == synod_wire::TxnOutcome::Abort && f.txn == first_id));
    assert_eq!(s.stats().two_pc_presumed_aborts, 1);
    let later = Duration::from_secs(2);
    s.poll(later);
    let again: Vec<Transmit> = sent(&mut s)
        .into_iter()
        .filter(|t| matches!(op_of(t), Op::TxnPrepare(_)))
        .collect();
    assert_eq!(again.len(), 2, "{again:?}");
    for t in &again {
        assert!(matches!(op_of(t), Op::TxnPrepare(p) if p.txn != first_id));
        answer(&mut s, t, vote(true, 1), later + MS);
    }
    s.poll(later + MS);
    let decide = sent(&mut s);
    answer(
        &mut s,
        &decide[0],
        ClientReply::Ok(Bytes::from_static(&[synod_wire::TXN_NOT_HELD])),
        later + 2 * MS,
    );
    let done = s.poll_completion().expect("answered");
    assert!(done.result.is_err(), "{:?}", done.result);
}

/// Polls until something is sent; the first transmit and the time it left.
fn next_sent(s: &mut Session, mut at: Time) -> (Transmit, Time) {
    for _ in 0..100 {
        s.poll(at);
        if let Some(t) = s.poll_transmit() {
            return (t, at);
        }
        at = s.next_wake(at).expect("something to wake for");
    }
    panic!("nothing sent");
}

/// A transaction sent as one group's request may have applied there. When
/// its keys then spread over two groups, it goes on under the same seq to
/// its first key's group (which answers a copy that applied from its
/// session, or refuses it for good), never beside it as two-phase commit
/// under a new id: that ran it twice (the list-append checker's seed 2).
/// Only the group's final refusal (`TXN_SPANS_GROUPS`, cached there) lets
/// it run again under a new seq, as two-phase commit.
#[test]
fn a_sent_transaction_is_run_again_across_groups_only_after_its_group_refused_it() {
    let mut s = Session::with_masters(opts(8), vec!["m0".into()], 7, 1, Time::ZERO);
    let (k1, k2) = (Bytes::from_static(b"k1"), Bytes::from_static(b"k2"));
    s.submit(transfer(&k1, &k2));
    s.poll(Time::ZERO);
    let q = sent(&mut s).pop().unwrap();
    answer_msg(&mut s, &q, Message::Config(group(1, 1, &["a"])), MS);
    let (t, at) = next_sent(&mut s, MS);
    assert!(matches!(op_of(&t), Op::Txn(_)), "one group: one request");
    let seq = seq_of(&t).0;
    // Its answer is lost (the group says WrongGroup after a move), and the
    // keys now lie in two groups.
    answer(&mut s, &t, ClientReply::WrongGroup, at);
    let (refresh, at) = next_sent(&mut s, at);
    assert_eq!(refresh.dest.gid, 0);
    let spread = |num| {
        let home = synod_wire::shard_of(&k1, 4);
        Config {
            num,
            shards: (0..4).map(|i| if i == home { 1 } else { 2 }).collect(),
            groups: vec![
                GroupInfo::new(1, vec!["a".to_string()]),
                GroupInfo::new(2, vec!["b".to_string()]),
            ],
        }
    };
    assert_ne!(synod_wire::shard_of(&k1, 4), synod_wire::shard_of(&k2, 4));
    answer_msg(&mut s, &refresh, Message::Config(spread(2)), at);
    let (again, at) = next_sent(&mut s, at);
    assert!(matches!(op_of(&again), Op::Txn(_)), "not two-phase commit");
    assert_eq!(
        (again.dest.gid, seq_of(&again).0),
        (1, seq),
        "same seq, first key's group"
    );
    // That group refuses it for good: now it may run across groups.
    let spans = ClientReply::Error {
        reason: synod_wire::TXN_SPANS_GROUPS.to_string(),
    };
    answer(&mut s, &again, spans, at);
    let (refresh, at) = next_sent(&mut s, at);
    assert_eq!(refresh.dest.gid, 0);
    answer_msg(&mut s, &refresh, Message::Config(spread(3)), at);
    let (first, _) = next_sent(&mut s, at);
    let mut prepares = vec![first];
    prepares.extend(sent(&mut s));
    assert_eq!(prepares.len(), 2, "{prepares:?}");
    for p in &prepares {
        assert!(matches!(op_of(p), Op::TxnPrepare(_)));
        assert!(seq_of(p).0 > seq);
        assert!(seq_of(p).1 >= seq, "the refused seq is acknowledged");
    }
    assert!(s.poll_completion().is_none());
}

/// Groups 1, 2 and 3 on the same servers `members`, which are also the
/// masters (as nodes running several groups), shards spread over them; the
/// session and a key of each group.
fn same_servers(share: bool, members: &[&str]) -> (Session, [Bytes; 3]) {
    let list: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    let config = Config {
        num: 1,
        shards: vec![1, 2, 3, 1, 2, 3],
        groups: (1..=3).map(|g| GroupInfo::new(g, list.clone())).collect(),
    };
    let key_in = |gid: u32| {
        (0..)
            .map(|i| Bytes::from(format!("k{i}")))
            .find(|k| config.shards[synod_wire::shard_of(k, 6) as usize] == gid)
            .unwrap()
    };
    let keys = [key_in(1), key_in(2), key_in(3)];
    let mut o = opts(8);
    o.share_connections = share;
    let mut s = Session::with_masters(o, list, 7, 1, Time::ZERO);
    assert!(s.install_config(config));
    (s, keys)
}

fn put_key(key: &Bytes) -> Req {
    Req::Kv(Op::Put {
        key: key.clone(),
        value: Bytes::from_static(b"v"),
    })
}

/// Submits `req` and returns its one frame, sent at `now`.
fn send_one(s: &mut Session, req: Req, now: Time) -> Transmit {
    s.submit(req);
    s.poll(now);
    let mut out = sent(s);
    assert_eq!(out.len(), 1, "{out:?}");
    out.pop().unwrap()
}

fn ok_reply() -> ClientReply {
    ClientReply::Ok(Bytes::new())
}

fn finished_ok(s: &mut Session) -> usize {
    std::iter::from_fn(|| s.poll_completion())
        .inspect(|c| assert!(c.result.is_ok(), "{:?}", c.result))
        .count()
}

/// Issue 15: a group uses another group's connection only once a reply
/// to that group's own frame on it showed which core it is bound to;
/// before that, every group opens its own.
#[test]
fn a_second_group_shares_a_connection_only_once_it_is_confirmed() {
    let (mut s, [k1, k2, _]) = same_servers(true, &["a"]);
    s.submit(put_key(&k1));
    s.submit(put_key(&k2));
    s.poll(Time::ZERO);
    let first = sent(&mut s);
    let conns: Vec<(u32, u32)> = first.iter().map(|t| (t.dest.gid, t.frame.group)).collect();
    assert_eq!(conns, vec![(1, 1), (2, 2)], "nothing confirmed: their own");
    // Group 2's answer on its own connection confirms only that one.
    answer(&mut s, &first[1], ok_reply(), MS);
    let t = send_one(&mut s, put_key(&k1), MS);
    assert_eq!((t.dest.gid, t.frame.group), (2, 1), "shares group 2's");
    assert_eq!(&*t.dest.addr, "a");
    answer(&mut s, &t, ok_reply(), MS);
    answer(&mut s, &first[0], ok_reply(), MS);
    assert_eq!(finished_ok(&mut s), 3);
    assert_eq!(s.stats().wrong_core, 0);
}

/// `WrongCore`: not executed and not the member's fault. The request is
/// resent at once (same seq, same member) on its group's own connection,
/// and completes; the connection that refused it is not tried again.
#[test]
fn wrong_core_resends_at_once_on_the_groups_own_connection_and_completes() {
    let (mut s, [k1, k2, _]) = same_servers(true, &["a", "b"]);
    let t = send_one(&mut s, put_key(&k1), Time::ZERO);
    answer(&mut s, &t, ok_reply(), MS);
    assert_eq!(finished_ok(&mut s), 1);
    let shared = send_one(&mut s, put_key(&k2), MS);
    assert_eq!((shared.dest.gid, shared.frame.group), (1, 2));
    answer(&mut s, &shared, ClientReply::WrongCore, 2 * MS);
    assert!(s.poll_close().is_none(), "the shared connection stays");
    assert!(s.poll_completion().is_none(), "not an answer");
    s.poll(2 * MS);
    let again = sent(&mut s);
    assert_eq!(again.len(), 1, "resent in the same poll, no backoff");
    let again = &again[0];
    assert_eq!((again.dest.gid, again.frame.group), (2, 2));
    assert_eq!(&*again.dest.addr, "a", "the member was not blamed");
    assert_eq!(seq_of(again), seq_of(&shared));
    answer(&mut s, again, ok_reply(), 3 * MS);
    assert_eq!(finished_ok(&mut s), 1);
    assert_eq!(s.stats().wrong_core, 1);
    let next = send_one(&mut s, put_key(&k2), 3 * MS);
    assert_eq!(next.dest.gid, 2, "never the refusing connection again");
}

/// A group's own connection answering `WrongCore` was bound to another
/// core (another group's frame went first, say after a reconnect): it is
/// closed to reopen bound right, and what was on it goes again at once.
#[test]
fn wrong_core_on_a_groups_own_connection_closes_it() {
    let (mut s, [k1, _, _]) = same_servers(true, &["a", "b"]);
    s.submit(put_key(&k1));
    s.submit(get("x"));
    let k1_get = Req::Kv(Op::Get { key: k1.clone() });
    s.submit(k1_get);
    s.poll(Time::ZERO);
    let out: Vec<Transmit> = sent(&mut s)
        .into_iter()
        .filter(|t| t.frame.group == 1)
        .collect();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|t| t.dest == Dest::new("a", 1)));
    answer(&mut s, &out[0], ClientReply::WrongCore, MS);
    let (closed, _) = s.poll_close().expect("its own connection is closed");
    assert_eq!(closed, Dest::new("a", 1));
    s.poll(MS);
    let again = sent(&mut s);
    assert_eq!(again.len(), 2, "both resent at once: {again:?}");
    assert!(again.iter().all(|t| t.dest == Dest::new("a", 1)));
    for t in &again {
        answer(&mut s, t, ok_reply(), 2 * MS);
    }
    assert_eq!(finished_ok(&mut s), 2);
}

/// A shared connection that fails is no longer known bound anywhere: the
/// groups that shared it go back to their own.
#[test]
fn a_closed_shared_connection_sends_its_groups_back_to_their_own() {
    let (mut s, [k1, k2, k3]) = same_servers(true, &["a"]);
    let t = send_one(&mut s, put_key(&k1), Time::ZERO);
    answer(&mut s, &t, ok_reply(), MS);
    let t = send_one(&mut s, put_key(&k3), MS);
    assert_eq!(t.dest.gid, 1);
    answer(&mut s, &t, ok_reply(), MS);
    let lost = send_one(&mut s, put_key(&k3), MS);
    assert_eq!(lost.dest.gid, 1);
    s.on_conn_failed(&Dest::new("a", 1), "reset", true, 2 * MS);
    let mut at = 2 * MS;
    let again = loop {
        at = s.next_wake(at).expect("the lost request is retried");
        s.poll(at);
        if let Some(t) = s.poll_transmit() {
            break t;
        }
    };
    assert_eq!((again.dest.gid, again.frame.group), (3, 3));
    assert_eq!(seq_of(&again), seq_of(&lost));
    let t = send_one(&mut s, put_key(&k2), at);
    assert_eq!(t.dest.gid, 2, "nothing confirmed any more");
}

/// Master requests keep a connection of their own, and never lend it:
/// a server binds it to the masters' core.
#[test]
fn master_requests_never_share_a_connection() {
    let (mut s, [k1, k2, _]) = same_servers(true, &["a"]);
    let q = send_one(
        &mut s,
        Req::Master(MasterOp::Query { num: None }),
        Time::ZERO,
    );
    assert_eq!(q.dest, Dest::new("a", 0));
    let config = s.config().unwrap().clone();
    answer_msg(&mut s, &q, Message::Config(config), MS);
    let t = send_one(&mut s, put_key(&k1), MS);
    assert_eq!(t.dest, Dest::new("a", 1), "not the masters' connection");
    answer(&mut s, &t, ok_reply(), MS);
    let q = send_one(&mut s, Req::Master(MasterOp::Query { num: None }), MS);
    assert_eq!(q.dest, Dest::new("a", 0), "nor a KV group's");
    let t = send_one(&mut s, put_key(&k2), MS);
    assert_eq!(t.dest, Dest::new("a", 1));
}

/// `share_connections` off: one connection per (server, group), as before.
#[test]
fn without_sharing_every_group_keeps_its_own_connection() {
    let (mut s, [k1, k2, k3]) = same_servers(false, &["a"]);
    let t = send_one(&mut s, put_key(&k1), Time::ZERO);
    answer(&mut s, &t, ok_reply(), MS);
    for (k, gid) in [(&k2, 2), (&k3, 3), (&k1, 1)] {
        let t = send_one(&mut s, put_key(k), MS);
        assert_eq!((t.dest.gid, t.frame.group), (gid, gid));
        answer(&mut s, &t, ok_reply(), MS);
    }
    assert_eq!(finished_ok(&mut s), 4);
}

/// A frame queued for a connection that closes before the driver took it
/// is never handed out (it would reopen the connection with another
/// group's frame first, bound to the wrong core); its request goes again
/// on its own group's connection.
#[test]
fn frames_queued_for_a_closed_connection_are_never_handed_out() {
    let (mut s, [k1, _, k3]) = same_servers(true, &["a"]);
    let t = send_one(&mut s, put_key(&k1), Time::ZERO);
    answer(&mut s, &t, ok_reply(), MS);
    s.submit(put_key(&k3));
    s.poll(MS);
    s.on_conn_failed(&Dest::new("a", 1), "reset", true, MS);
    let out = sent(&mut s);
    assert!(out.is_empty(), "{out:?}");
    let mut at = MS;
    let again = loop {
        at = s.next_wake(at).expect("the request is retried");
        s.poll(at);
        if let Some(t) = s.poll_transmit() {
            break t;
        }
    };
    assert_eq!((again.dest.gid, again.frame.group), (3, 3));
}
