//! Client tests: the pure rules alone, then the whole client against
//! scripted TCP servers (test fixtures, see [`ScriptedServer`]).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use synod_wire::{
    encode_frame, shard_of, ClientReply, Config, Decoder, Frame, GroupInfo, MasterOp, Message, Op,
    Seq, DEFAULT_FRAME_BYTES_MAX,
};

use super::logic::{backoff, AckWindow, Route, Router, BACKOFF_BASE, BACKOFF_MAX};
use super::session::{check_size, Req};
use super::{Client, ClientError, ClientOptions};

// ---------------------------------------------------------------------------
// Pure logic
// ---------------------------------------------------------------------------

#[test]
fn ack_window_waits_for_the_lowest_unfinished_seq() {
    let mut w = AckWindow::default();
    assert_eq!(w.ack_seq(), 0);
    // Out of order: 2 and 3 finish before 1.
    w.retire(3);
    w.retire(2);
    assert_eq!(w.ack_seq(), 0, "seq 1 is still open");
    assert_eq!(w.pending(), 2);
    w.retire(1);
    assert_eq!(w.ack_seq(), 3, "the gap closed: 1..=3 are all finished");
    assert_eq!(w.pending(), 0);
    w.retire(5);
    assert_eq!(w.ack_seq(), 3);
    w.retire(4);
    assert_eq!(w.ack_seq(), 5);
}

#[test]
fn ack_window_ignores_duplicates_and_never_decreases() {
    let mut w = AckWindow::default();
    for seq in [1, 1, 2, 1, 2, 4, 4] {
        w.retire(seq);
    }
    assert_eq!(w.ack_seq(), 2);
    assert_eq!(w.pending(), 1);
    w.retire(3);
    assert_eq!(w.ack_seq(), 4);
    w.retire(2);
    assert_eq!(w.ack_seq(), 4);
}

#[test]
fn ack_window_matches_a_naive_model_on_shuffled_pipelines() {
    let mut rng = crate::rng::Rng::new(11);
    for _ in 0..200 {
        let n = rng.range(1, 64);
        let mut seqs: Vec<u64> = (1..=n).collect();
        for i in (1..seqs.len()).rev() {
            let j = rng.range(0, i as u64 + 1) as usize;
            seqs.swap(i, j);
        }
        let mut a = AckWindow::default();
        let mut done = std::collections::BTreeSet::new();
        for s in seqs {
            a.retire(s);
            done.insert(s);
            let naive = (1..).take_while(|x| done.contains(x)).last().unwrap_or(0);
            assert_eq!(a.ack_seq(), naive);
        }
        assert_eq!(a.ack_seq(), n);
    }
}

#[test]
fn backoff_grows_exponentially_within_jittered_bounds() {
    let mut rng = crate::rng::Rng::new(7);
    for attempt in 0..40u32 {
        let full = (BACKOFF_BASE * 2u32.saturating_pow(attempt.min(20))).min(BACKOFF_MAX);
        for _ in 0..200 {
            let d = backoff(attempt, rng.next_u64());
            assert!(
                d >= full / 2,
                "attempt {attempt}: {d:?} below half of {full:?}"
            );
            assert!(d <= full, "attempt {attempt}: {d:?} above {full:?}");
            assert!(d <= BACKOFF_MAX);
        }
    }
    assert!(backoff(0, 0) >= BACKOFF_BASE / 2);
    assert_eq!(backoff(u32::MAX, 0), BACKOFF_MAX / 2);
    let nanos = BACKOFF_MAX.as_nanos() as u64;
    assert_eq!(
        backoff(u32::MAX, nanos / 2),
        BACKOFF_MAX,
        "top of the range"
    );
}

fn config(num: u64, shards: Vec<u32>, groups: &[(u32, &[&str])]) -> Config {
    Config {
        num,
        shards,
        groups: groups
            .iter()
            .map(|(gid, servers)| {
                GroupInfo::new(*gid, servers.iter().map(|s| s.to_string()).collect())
            })
            .collect(),
    }
}

/// Some key whose shard (of `shards`) is `shard`.
fn key_in_shard(shard: u32, shards: u32) -> Vec<u8> {
    (0u32..)
        .map(|i| format!("key{i}").into_bytes())
        .find(|k| shard_of(k, shards) == shard)
        .expect("some key hashes to every shard")
}

#[test]
fn route_key_follows_shard_map_to_group_member() {
    let mut r = Router::new(vec!["m0".into()]);
    r.install(config(
        3,
        vec![1, 1, 2, 2],
        &[(1, &["a0", "a1", "a2"]), (2, &["b0", "b1", "b2"])],
    ));
    for shard in 0..4u32 {
        let key = key_in_shard(shard, 4);
        let want_gid = if shard < 2 { 1 } else { 2 };
        let want_addr = if shard < 2 { "a0" } else { "b0" };
        assert_eq!(
            r.route_key(&key),
            Route::To {
                gid: want_gid,
                index: 0,
                addr: want_addr.into()
            },
            "shard {shard}"
        );
    }
    // The pinned vector of PROTOCOL.md section 8: "k1" is shard 1 of 64.
    let mut shards = vec![9; 64];
    shards[1] = 4;
    r.install(config(4, shards, &[(4, &["x"]), (9, &["y"])]));
    assert_eq!(
        r.route_key(b"k1"),
        Route::To {
            gid: 4,
            index: 0,
            addr: "x".into()
        }
    );
}

#[test]
fn route_key_needs_config_when_missing_unassigned_or_unknown_group() {
    let mut r = Router::new(vec!["m0".into()]);
    assert_eq!(r.route_key(b"k"), Route::NeedConfig, "no configuration yet");
    r.install(config(0, vec![], &[]));
    assert_eq!(r.route_key(b"k"), Route::NeedConfig, "no shards");
    r.install(config(1, vec![0; 4], &[]));
    assert_eq!(r.route_key(b"k"), Route::NeedConfig, "shard unassigned");
    r.install(config(2, vec![7; 4], &[(1, &["a"])]));
    assert_eq!(r.route_key(b"k"), Route::NeedConfig, "group 7 not listed");
    r.install(config(3, vec![7; 4], &[(7, &[])]));
    assert_eq!(
        r.route_key(b"k"),
        Route::NeedConfig,
        "group 7 has no members"
    );
    // Masters are always routable.
    assert_eq!(
        r.route_master(),
        Route::To {
            gid: 0,
            index: 0,
            addr: "m0".into()
        }
    );
}

#[test]
fn install_never_rolls_back_to_an_older_config() {
    let mut r = Router::new(vec!["m".into()]);
    assert!(r.install(config(5, vec![1], &[(1, &["a"])])));
    assert!(!r.install(config(4, vec![2], &[(2, &["b"])])));
    assert_eq!(r.config().map(|c| c.num), Some(5));
    assert!(
        r.install(config(5, vec![1], &[(1, &["a"])])),
        "same number re-installs (restores invalidated shards)"
    );
    assert!(r.install(config(6, vec![2], &[(2, &["b"])])));
    assert_eq!(r.config().map(|c| c.num), Some(6));
}

#[test]
fn wrong_group_invalidates_only_that_shard_until_refresh() {
    let mut r = Router::new(vec!["m".into()]);
    let cfg = config(2, vec![1, 1, 1, 1], &[(1, &["a"])]);
    r.install(cfg.clone());
    let bad = key_in_shard(2, 4);
    let good = key_in_shard(0, 4);
    r.invalidate_key(&bad);
    assert_eq!(r.route_key(&bad), Route::NeedConfig);
    assert!(matches!(r.route_key(&good), Route::To { gid: 1, .. }));
    r.install(cfg);
    assert!(matches!(r.route_key(&bad), Route::To { gid: 1, .. }));
}

#[test]
fn not_leader_hint_moves_to_named_member_and_ignores_useless_hints() {
    let mut r = Router::new(vec!["m0".into(), "m1".into(), "m2".into()]);
    r.install(config(1, vec![1], &[(1, &["a0", "a1", "a2"])]));
    let key = b"k";
    r.on_not_leader(1, 0, Some(2));
    assert!(matches!(r.route_key(key), Route::To { index: 2, .. }));
    // A replica naming itself is no help: move on.
    r.on_not_leader(1, 2, Some(2));
    assert!(matches!(r.route_key(key), Route::To { index: 0, .. }));
    // Out of range or absent: next member in turn.
    r.on_not_leader(1, 0, Some(17));
    assert!(matches!(r.route_key(key), Route::To { index: 1, .. }));
    r.on_not_leader(1, 1, None);
    assert!(matches!(r.route_key(key), Route::To { index: 2, .. }));
    // Masters keep their own hint.
    r.on_not_leader(0, 0, Some(1));
    assert!(matches!(r.route_master(), Route::To { index: 1, addr, .. } if addr == "m1"));
    assert!(matches!(r.route_key(key), Route::To { index: 2, .. }));
}

#[test]
fn burst_of_failures_on_one_member_advances_the_hint_once() {
    let mut r = Router::new(vec!["m0".into(), "m1".into(), "m2".into()]);
    for _ in 0..10 {
        r.on_failure(0, 0);
    }
    assert!(matches!(r.route_master(), Route::To { index: 1, .. }));
    r.on_failure(0, 1);
    r.on_failure(0, 2);
    assert!(
        matches!(r.route_master(), Route::To { index: 0, .. }),
        "wraps"
    );
}

#[test]
fn check_size_refuses_bodies_over_the_frame_limit() {
    let limit = DEFAULT_FRAME_BYTES_MAX as usize;
    // Put body = 8 + 8 + 8 + 4 + key + 4 + value.
    let fits = Op::Put {
        key: Bytes::from_static(b"k"),
        value: Bytes::from(vec![0u8; limit - 33]),
    };
    assert_eq!(check_size(&Req::Kv(fits)), Ok(()));
    let over = Op::Append {
        key: Bytes::from_static(b"k"),
        value: Bytes::from(vec![0u8; limit - 32]),
    };
    assert_eq!(check_size(&Req::Kv(over)), Err(ClientError::TooLarge));
    let huge_key = Op::Get {
        key: Bytes::from(vec![0u8; limit]),
    };
    assert_eq!(check_size(&Req::Kv(huge_key)), Err(ClientError::TooLarge));
    assert_eq!(
        check_size(&Req::Master(MasterOp::Query { num: None })),
        Ok(())
    );
}

#[test]
fn new_refuses_an_empty_master_list_and_ids_are_random() {
    assert!(matches!(
        Client::new(ClientOptions::new(vec![" ".into()])),
        Err(ClientError::Unreachable(_))
    ));
    let a = Client::new(ClientOptions::new(vec!["m:1".into()])).unwrap();
    let b = Client::new(ClientOptions::new(vec!["m:1".into()])).unwrap();
    assert_ne!(a.client_id(), b.client_id());
    assert_eq!(a.ack_seq(), 0);
}

#[test]
fn errors_display_one_line_naming_the_problem() {
    for e in [
        ClientError::Unreachable("127.0.0.1:1: refused".into()),
        ClientError::Timeout,
        ClientError::Refused("no such group".into()),
        ClientError::TooLarge,
        ClientError::Protocol("x".into()),
    ] {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{s:?}");
    }
}

// ---------------------------------------------------------------------------
// Test fixture: a scripted server
// ---------------------------------------------------------------------------

/// One frame the fixture received.
#[derive(Clone, Debug)]
struct Seen {
    /// Which accepted connection (0-based) it came on.
    conn: usize,
    request_id: u64,
    group: u32,
    message: Message,
}

impl Seen {
    fn seq(&self) -> Seq {
        match &self.message {
            Message::Request(r) => r.seq,
            Message::Master(r) => r.seq,
            m => panic!("fixture got a non-request {m:?}"),
        }
    }
    fn ack_seq(&self) -> Seq {
        match &self.message {
            Message::Request(r) => r.ack_seq,
            Message::Master(r) => r.ack_seq,
            m => panic!("fixture got a non-request {m:?}"),
        }
    }
    fn is_master(&self) -> bool {
        matches!(self.message, Message::Master(_))
    }
}

/// What the fixture does in answer to one frame.
enum Out {
    /// Reply with this message under the request's id.
    Reply(Message),
    /// Reply under another id (a held-back reply, or a wrong id on purpose).
    ReplyAs(u64, Message),
    /// Write raw bytes (garbage).
    Raw(Vec<u8>),
    /// Close the connection.
    Close,
}

fn reply(r: ClientReply) -> Out {
    Out::Reply(Message::Reply(r))
}

/// TEST FIXTURE, not a server: accepts connections on a loopback port and
/// answers each decoded frame with whatever the test's script returns. It
/// exists to make the client face exactly the server behaviour a test
/// names (redirects, garbage, silence) and to record what the client sent.
struct ScriptedServer {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<AtomicUsize>,
}

type Script = Box<dyn FnMut(&Seen) -> Vec<Out> + Send>;

impl ScriptedServer {
    fn bind() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        (listener, addr)
    }

    fn start(script: impl FnMut(&Seen) -> Vec<Out> + Send + 'static) -> ScriptedServer {
        let (listener, _) = Self::bind();
        Self::serve(listener, script)
    }

    fn serve(
        listener: TcpListener,
        script: impl FnMut(&Seen) -> Vec<Out> + Send + 'static,
    ) -> ScriptedServer {
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let (seen2, accepted2) = (seen.clone(), accepted.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let conn = accepted2.fetch_add(1, Ordering::SeqCst);
                let (seen, script) = (seen2.clone(), script.clone());
                std::thread::spawn(move || fixture_conn(conn, stream, seen, script));
            }
        });
        ScriptedServer {
            addr,
            seen,
            accepted,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn fixture_conn(
    conn: usize,
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<Script>>,
) {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            let s = Seen {
                conn,
                request_id: frame.request_id,
                group: frame.group,
                message: frame.message,
            };
            seen.lock().unwrap().push(s.clone());
            let outs = (script.lock().unwrap())(&s);
            for out in outs {
                let mut bytes = BytesMut::new();
                let (request_id, message) = match out {
                    Out::Reply(m) => (s.request_id, m),
                    Out::ReplyAs(id, m) => (id, m),
                    Out::Raw(raw) => {
                        let _ = stream.write_all(&raw);
                        continue;
                    }
                    Out::Close => {
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                };
                encode_frame(
                    &Frame {
                        request_id,
                        group: s.group,
                        message,
                    },
                    &mut bytes,
                );
                if stream.write_all(&bytes).is_err() {
                    return;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Options with short deadlines so failure tests finish quickly.
fn fast(masters: &[&str]) -> ClientOptions {
    ClientOptions {
        masters: masters.iter().map(|m| m.to_string()).collect(),
        timeout: Duration::from_secs(3),
        rpc_timeout: Duration::from_millis(300),
        in_flight_max: 128,
        ..ClientOptions::default()
    }
}

/// One group (gid 1) of `members`, serving all 4 shards.
fn one_group(num: u64, members: &[&str]) -> Config {
    config(num, vec![1; 4], &[(1, members)])
}

fn ok(v: &'static [u8]) -> Out {
    reply(ClientReply::Ok(Bytes::from_static(v)))
}

// ---------------------------------------------------------------------------
// The client against scripted servers
// ---------------------------------------------------------------------------

#[test]
fn master_not_leader_redirects_to_the_hinted_master() {
    let b = ScriptedServer::start(|_| vec![Out::Reply(Message::Config(one_group(7, &["x"])))]);
    let a = ScriptedServer::start(|_| vec![reply(ClientReply::NotLeader { leader: Some(1) })]);
    let mut c = Client::new(fast(&[&a.addr, &b.addr])).unwrap();
    let cfg = c.query(None).unwrap();
    assert_eq!(cfg.num, 7);
    let (sa, sb) = (a.seen(), b.seen());
    assert_eq!((sa.len(), sb.len()), (1, 1));
    assert_eq!(sa[0].seq(), sb[0].seq(), "a redirect resends the same seq");
    assert_eq!(sa[0].group, 0, "master requests go to group 0");
    assert_eq!(c.cached_config().map(|c| c.num), Some(7));
    assert_eq!(c.ack_seq(), 1);
}

#[test]
fn kv_not_leader_redirect_keeps_the_seq() {
    let (l1, follower_addr) = ScriptedServer::bind();
    let (l2, leader_addr) = ScriptedServer::bind();
    let members = [follower_addr.clone(), leader_addr.clone()];
    let cfg = config(1, vec![1; 4], &[(1, &[&members[0], &members[1]])]);
    let cfg2 = cfg.clone();
    // The follower is also the master: it answers Query, redirects KV.
    let follower = ScriptedServer::serve(l1, move |s| {
        if s.is_master() {
            vec![Out::Reply(Message::Config(cfg2.clone()))]
        } else {
            vec![reply(ClientReply::NotLeader { leader: Some(1) })]
        }
    });
    let leader = ScriptedServer::serve(l2, |_| vec![ok(b"v1")]);
    let mut c = Client::new(fast(&[&follower_addr])).unwrap();
    assert_eq!(c.get("k").unwrap(), Some(Bytes::from_static(b"v1")));
    let kv_at_follower: Vec<Seen> = follower
        .seen()
        .into_iter()
        .filter(|s| !s.is_master())
        .collect();
    let at_leader = leader.seen();
    assert_eq!((kv_at_follower.len(), at_leader.len()), (1, 1));
    assert_eq!(kv_at_follower[0].seq(), at_leader[0].seq());
    assert_eq!(at_leader[0].group, 1);
    // The hint sticks: the next request goes straight to the leader.
    c.put("k", "v2").unwrap();
    assert_eq!(leader.seen().len(), 2);
    assert_eq!(follower.seen().iter().filter(|s| !s.is_master()).count(), 1);
}

#[test]
fn wrong_group_refreshes_the_config_and_resends_the_same_seq() {
    let (lm, master_addr) = ScriptedServer::bind();
    let old_owner = ScriptedServer::start(|_| vec![reply(ClientReply::WrongGroup)]);
    let new_owner = ScriptedServer::start(|_| vec![ok(b"")]);
    let (old_addr, new_addr) = (old_owner.addr.clone(), new_owner.addr.clone());
    let queries = Arc::new(AtomicUsize::new(0));
    let q = queries.clone();
    let _master = ScriptedServer::serve(lm, move |_| {
        // First answer: group 1 owns everything. Later: group 2 does.
        let cfg = if q.fetch_add(1, Ordering::SeqCst) == 0 {
            config(1, vec![1; 4], &[(1, &[&old_addr])])
        } else {
            config(2, vec![2; 4], &[(2, &[&new_addr])])
        };
        vec![Out::Reply(Message::Config(cfg))]
    });
    let mut c = Client::new(fast(&[&master_addr])).unwrap();
    c.put("k", "v").unwrap();
    assert_eq!(
        queries.load(Ordering::SeqCst),
        2,
        "initial query, then refresh"
    );
    let (o, n) = (old_owner.seen(), new_owner.seen());
    assert_eq!((o.len(), n.len()), (1, 1));
    assert_eq!(o[0].seq(), n[0].seq(), "same seq after WrongGroup");
    assert_eq!((o[0].group, n[0].group), (1, 2));
    assert_eq!(c.cached_config().map(|c| c.num), Some(2));
}

/// A server that is master and sole member of group 1; `kv` scripts the KV
/// answers.
fn single_node(kv: impl FnMut(&Seen) -> Vec<Out> + Send + 'static) -> ScriptedServer {
    let (listener, addr) = ScriptedServer::bind();
    let cfg = one_group(1, &[&addr]);
    let mut kv = kv;
    ScriptedServer::serve(listener, move |s| {
        if s.is_master() {
            vec![Out::Reply(Message::Config(cfg.clone()))]
        } else {
            kv(s)
        }
    })
}

#[test]
fn garbage_reply_drops_the_connection_and_retries_on_a_new_one() {
    let mut kv_seen = 0;
    let node = single_node(move |_| {
        kv_seen += 1;
        if kv_seen == 1 {
            vec![Out::Raw(b"this is not a synod frame, not at all".to_vec())]
        } else {
            vec![ok(b"v")]
        }
    });
    let mut c = Client::new(fast(&[&node.addr])).unwrap();
    assert_eq!(c.get("k").unwrap(), Some(Bytes::from_static(b"v")));
    let kv: Vec<Seen> = node.seen().into_iter().filter(|s| !s.is_master()).collect();
    assert_eq!(kv.len(), 2);
    assert_eq!(kv[0].seq(), kv[1].seq());
    assert_ne!(kv[0].conn, kv[1].conn, "the resend used a new connection");
    // One to the master group, then two to group 1 (one per group per server).
    assert_eq!(node.connections(), 3);
}

#[test]
fn unknown_request_id_drops_the_connection_and_retries() {
    let mut kv_seen = 0;
    let node = single_node(move |s| {
        kv_seen += 1;
        if kv_seen == 1 {
            vec![Out::ReplyAs(
                s.request_id + 1000,
                Message::Reply(ClientReply::NoKey),
            )]
        } else {
            vec![reply(ClientReply::NoKey)]
        }
    });
    let mut c = Client::new(fast(&[&node.addr])).unwrap();
    assert_eq!(c.get("k").unwrap(), None);
    // One to the master group, then two to group 1 (one per group per server).
    assert_eq!(node.connections(), 3);
}

#[test]
fn closed_connection_mid_request_is_resent() {
    let mut kv_seen = 0;
    let node = single_node(move |_| {
        kv_seen += 1;
        if kv_seen == 1 {
            vec![Out::Close]
        } else {
            vec![ok(b"")]
        }
    });
    let mut c = Client::new(fast(&[&node.addr])).unwrap();
    c.append("k", "x").unwrap();
    let kv: Vec<Seen> = node.seen().into_iter().filter(|s| !s.is_master()).collect();
    assert_eq!(kv.len(), 2);
    assert_eq!(kv[0].seq(), kv[1].seq());
}

#[test]
fn silent_server_times_out_within_the_deadline() {
    let silent = ScriptedServer::start(|_| vec![]);
    let mut opts = fast(&[&silent.addr]);
    opts.timeout = Duration::from_millis(800);
    opts.rpc_timeout = Duration::from_millis(200);
    let mut c = Client::new(opts).unwrap();
    let start = Instant::now();
    assert_eq!(c.query(None), Err(ClientError::Timeout));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // Each missed attempt reset the connection and tried again.
    assert!(silent.connections() >= 2);
    let seen = silent.seen();
    assert!(seen.iter().all(|s| s.seq() == seen[0].seq()));
}

#[test]
fn unreachable_masters_are_reported_as_unreachable() {
    // A port that was just free: connections are refused.
    let addr = {
        let (l, addr) = ScriptedServer::bind();
        drop(l);
        addr
    };
    let mut opts = fast(&[&addr]);
    opts.timeout = Duration::from_millis(500);
    let mut c = Client::new(opts).unwrap();
    let start = Instant::now();
    match c.get("k") {
        Err(ClientError::Unreachable(why)) => assert!(why.contains(&addr), "{why}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_millis(1200));
    match c.query(None) {
        Err(ClientError::Unreachable(why)) => assert!(why.contains(&addr), "{why}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[test]
fn error_reply_is_refused_without_retry() {
    let master = ScriptedServer::start(|_| {
        vec![reply(ClientReply::Error {
            reason: "gid 0 is reserved".into(),
        })]
    });
    let mut c = Client::new(fast(&[&master.addr])).unwrap();
    let got = c.join(vec![GroupInfo::new(0, vec!["a:1".into()])]);
    assert_eq!(got, Err(ClientError::Refused("gid 0 is reserved".into())));
    assert_eq!(master.seen().len(), 1);
    assert_eq!(c.ack_seq(), 1, "a refusal is a final answer");
}

#[test]
fn busy_reply_backs_off_and_retries_the_same_replica() {
    let mut calls = 0;
    let master = ScriptedServer::start(move |_| {
        calls += 1;
        if calls <= 3 {
            vec![reply(ClientReply::Busy)]
        } else {
            vec![Out::Reply(Message::Config(one_group(2, &["x"])))]
        }
    });
    let mut c = Client::new(fast(&[&master.addr])).unwrap();
    assert_eq!(c.move_shard(0, 1).unwrap().num, 2);
    let seen = master.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|s| s.seq() == seen[0].seq()));
    assert_eq!(master.connections(), 1, "Busy is not a connection failure");
}

#[test]
fn execute_many_pipelines_and_matches_out_of_order_replies() {
    const N: usize = 16;
    let mut held: Vec<Seen> = Vec::new();
    let node = single_node(move |s| {
        held.push(s.clone());
        if held.len() < N {
            return vec![];
        }
        // Every request arrived before any reply: answer in reverse order.
        held.drain(..)
            .rev()
            .map(|h| {
                let Message::Request(r) = &h.message else {
                    unreachable!()
                };
                let v = Bytes::from(r.op.key().to_vec());
                Out::ReplyAs(h.request_id, Message::Reply(ClientReply::Ok(v)))
            })
            .collect()
    });
    let mut opts = fast(&[&node.addr]);
    opts.in_flight_max = N;
    let mut c = Client::new(opts).unwrap();
    let ops: Vec<Op> = (0..N)
        .map(|i| Op::Get {
            key: Bytes::from(format!("key-{i}")),
        })
        .collect();
    let results = c.execute_many(ops);
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), Some(Bytes::from(format!("key-{i}"))), "op {i}");
    }
    // The batch and the initial Query used seqs 1..=N+1, all finished.
    assert_eq!(c.ack_seq(), N as u64 + 1);
}

#[test]
fn execute_many_respects_the_in_flight_window() {
    let outstanding = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let mut held: Vec<Seen> = Vec::new();
    let (o, m) = (outstanding.clone(), max_seen.clone());
    let node = single_node(move |s| {
        held.push(s.clone());
        let now = o.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        if held.len() < 4 {
            return vec![];
        }
        o.fetch_sub(held.len(), Ordering::SeqCst);
        held.drain(..)
            .map(|h| Out::ReplyAs(h.request_id, Message::Reply(ClientReply::Ok(Bytes::new()))))
            .collect()
    });
    let mut opts = fast(&[&node.addr]);
    opts.in_flight_max = 4;
    let mut c = Client::new(opts).unwrap();
    let ops: Vec<Op> = (0..20)
        .map(|i| Op::Put {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from_static(b"v"),
        })
        .collect();
    assert!(c
        .execute_many(ops)
        .iter()
        .all(|r| r == &Ok(Some(Bytes::new()))));
    assert_eq!(max_seen.load(Ordering::SeqCst), 4);
}

#[test]
fn ack_seq_is_piggybacked_on_later_requests() {
    let node = single_node(|_| vec![ok(b"")]);
    let mut c = Client::new(fast(&[&node.addr])).unwrap();
    c.put("a", "1").unwrap();
    c.put("b", "2").unwrap();
    c.put("c", "3").unwrap();
    let seen = node.seen();
    let pairs: Vec<(Seq, Seq)> = seen.iter().map(|s| (s.seq(), s.ack_seq())).collect();
    // The first put takes seq 1, then parks for a configuration, whose
    // Query goes out as seq 2; each later put acknowledges all before it.
    assert_eq!(pairs, vec![(2, 0), (1, 0), (3, 2), (4, 3)]);
}

#[test]
fn oversized_value_is_refused_locally_without_touching_the_network() {
    // Nothing listens at port 1; a network attempt would fail differently.
    let mut c = Client::new(fast(&["127.0.0.1:1"])).unwrap();
    let start = Instant::now();
    let big = Bytes::from(vec![b'x'; DEFAULT_FRAME_BYTES_MAX as usize]);
    assert_eq!(c.put("k", big), Err(ClientError::TooLarge));
    assert!(start.elapsed() < Duration::from_millis(200));
    assert_eq!(c.ack_seq(), 0, "no seq was spent");
}

#[test]
fn unassigned_shard_backs_off_and_reports_why() {
    let queries = Arc::new(AtomicUsize::new(0));
    let q = queries.clone();
    // A master whose configuration has no groups yet.
    let master = ScriptedServer::start(move |_| {
        q.fetch_add(1, Ordering::SeqCst);
        vec![Out::Reply(Message::Config(config(0, vec![0; 4], &[])))]
    });
    let mut opts = fast(&[&master.addr]);
    opts.timeout = Duration::from_millis(1000);
    let mut c = Client::new(opts).unwrap();
    let start = Instant::now();
    match c.get("k") {
        Err(ClientError::Unreachable(why)) => assert!(why.contains("no group"), "{why}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_millis(1500));
    // Doubling backoff from 1 ms: about a dozen refreshes, not hundreds.
    let n = queries.load(Ordering::SeqCst);
    assert!((2..=20).contains(&n), "{n} queries");
}

/// Issue 8, finding 11: member 0 of the KV group has a failed WAL. Whether
/// it answers the current stopped reply (NotLeader without a hint) or an
/// older server's `Error("replica stopped: ...")`, the client asks the next
/// member, and its operations succeed there with the same seq.
#[test]
fn a_stopped_replica_sends_the_client_to_the_next_member() {
    for stopped in [
        ClientReply::NotLeader { leader: None },
        ClientReply::Error {
            reason: "replica stopped: No space left on device (os error 28)".into(),
        },
    ] {
        let (l0, addr0) = ScriptedServer::bind();
        let (l1, addr1) = ScriptedServer::bind();
        let cfg = config(1, vec![1; 4], &[(1, &[&addr0, &addr1])]);
        // Member 0 is also the master: it answers Query, and is stopped for KV.
        let stopped_member = ScriptedServer::serve(l0, move |s| {
            if s.is_master() {
                vec![Out::Reply(Message::Config(cfg.clone()))]
            } else {
                vec![reply(stopped.clone())]
            }
        });
        let healthy = ScriptedServer::serve(l1, |_| vec![ok(b"v")]);
        let mut c = Client::new(fast(&[&addr0])).unwrap();
        assert_eq!(c.get("k").unwrap(), Some(Bytes::from_static(b"v")));
        c.put("k", "v").unwrap();
        let at_stopped: Vec<Seen> = stopped_member
            .seen()
            .into_iter()
            .filter(|s| !s.is_master())
            .collect();
        assert_eq!(at_stopped.len(), 1, "the stopped member was asked once");
        assert_eq!(healthy.seen().len(), 2);
        assert_eq!(at_stopped[0].seq(), healthy.seen()[0].seq());
    }
}
