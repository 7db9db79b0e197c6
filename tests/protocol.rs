//! What `wire/PROTOCOL.md` promises a client written from it alone, checked
//! against a real server with hand-made frames: a connection is bound to
//! the core of its first frame's group (`WrongCore` for a frame of another
//! core's group, section 1), a KV request to the master group is an
//! `Error` rather than `WrongGroup` (5.2), and a `seq` reused for a
//! different request is refused while a true resend gets its reply (7).
//! Every child is killed by `Cluster`'s drop; every read has a timeout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Cluster, GID};
use synod_wire::{
    encode_frame, shard_of, ClientReply, ClientRequest, Decoder, Frame, GroupInfo, MasterOp,
    MasterRequest, Message, Op,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One raw connection: frames out, one reply per frame back.
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    next_id: u64,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Conn {
            stream,
            decoder: Decoder::default(),
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    /// Sends `message` under header `group`; the reply, checked to answer it.
    fn call(&mut self, group: u32, message: Message) -> Message {
        let request_id = self.next_id;
        self.next_id += 1;
        let mut out = BytesMut::new();
        encode_frame(
            &Frame {
                request_id,
                group,
                message,
            },
            &mut out,
        );
        self.stream.write_all(&out).expect("send");
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).expect("a valid reply") {
                assert_eq!(f.request_id, request_id, "one reply per request, in turn");
                return f.message;
            }
            let n = self
                .stream
                .read(&mut chunk)
                .expect("a reply before the timeout");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn get(client_id: u64, seq: u64, key: &str) -> Message {
    request(
        client_id,
        seq,
        0,
        Op::Get {
            key: key_bytes(key),
        },
    )
}

fn put(client_id: u64, seq: u64, ack_seq: u64, key: &str, value: &str) -> Message {
    let op = Op::Put {
        key: key_bytes(key),
        value: Bytes::copy_from_slice(value.as_bytes()),
    };
    request(client_id, seq, ack_seq, op)
}

fn key_bytes(key: &str) -> Bytes {
    Bytes::copy_from_slice(key.as_bytes())
}

fn request(client_id: u64, seq: u64, ack_seq: u64, op: Op) -> Message {
    Message::Request(ClientRequest {
        client_id,
        seq,
        ack_seq,
        op,
    })
}

fn query() -> Message {
    Message::Master(MasterRequest {
        client_id: 1,
        seq: 1,
        ack_seq: 0,
        op: MasterOp::Query { num: None },
    })
}

/// A time-ordered client id (PROTOCOL.md 7), distinct per call.
fn fresh_client_id(salt: u32) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now << 32) | u64::from(std::process::id() ^ salt.rotate_left(16))
}

fn reason(reply: &Message) -> &str {
    match reply {
        Message::Reply(ClientReply::Error { reason }) => reason,
        other => panic!("expected an Error, got {other:?}"),
    }
}

/// One node with the test harness's 2 cores: the master and group 2 on
/// core 0, group 1 on core 1.
#[test]
fn a_connection_serves_its_first_frames_core_and_says_wrong_core_for_another() {
    let c = Cluster::new(1);
    let addr = c.nodes[0].addr.clone();
    c.client()
        .join(vec![GroupInfo::new(2, c.masters.clone())])
        .expect("join group 2");

    // Bound to group 1's core (1): group 2 and the master live on core 0.
    let mut one = Conn::open(&addr);
    let served = one.call(GID, get(7, 1, "k"));
    assert!(
        !matches!(served, Message::Reply(ClientReply::WrongCore)),
        "group 1 on its own core: {served:?}"
    );
    assert_eq!(
        one.call(2, get(7, 2, "k")),
        Message::Reply(ClientReply::WrongCore)
    );
    assert_eq!(one.call(0, query()), Message::Reply(ClientReply::WrongCore));
    // The connection is still good for its own core's group.
    let again = one.call(GID, get(7, 3, "k"));
    assert!(!matches!(again, Message::Reply(ClientReply::WrongCore)));

    // Bound to core 0 by a master query: group 2 is served on it, a KV
    // request to group 0 is a client bug (an Error, not WrongGroup), and
    // group 1 is another core's.
    let mut zero = Conn::open(&addr);
    assert!(matches!(zero.call(0, query()), Message::Config(_)));
    let two = zero.call(2, get(7, 4, "k"));
    assert!(
        !matches!(
            two,
            Message::Reply(ClientReply::WrongCore | ClientReply::Error { .. })
        ),
        "group 2 shares the master's core: {two:?}"
    );
    let to_master = zero.call(0, get(7, 5, "k"));
    assert!(reason(&to_master).contains("shard master"), "{to_master:?}");
    assert_eq!(
        zero.call(GID, get(7, 6, "k")),
        Message::Reply(ClientReply::WrongCore)
    );

    // A group no core of this node hosts, on its own core (4 mod 2 = 0):
    // the node does not serve it.
    let mut four = Conn::open(&addr);
    assert_eq!(
        four.call(4, get(7, 7, "k")),
        Message::Reply(ClientReply::WrongGroup)
    );
}

#[test]
fn a_seq_reused_for_a_different_request_is_refused_and_a_resend_is_answered() {
    let c = Cluster::new(1);
    let addr = c.nodes[0].addr.clone();
    let config = c.client().query(None).expect("query");
    let shards = config.shards.len() as u32;
    let key = (0..)
        .map(|i| format!("reuse-{i}"))
        .find(|k| config.shards[shard_of(k.as_bytes(), shards) as usize] == GID)
        .expect("every shard is group 1's");
    let me = fresh_client_id(1);
    let mut conn = Conn::open(&addr);
    let ok = Message::Reply(ClientReply::Ok(Bytes::new()));
    assert_eq!(conn.call(GID, put(me, 1, 0, &key, "first")), ok);
    // The same seq for another value: refused, not answered "Ok".
    let reused = conn.call(GID, put(me, 1, 0, &key, "second"));
    assert!(reason(&reused).contains("seq already used"), "{reused:?}");
    // The true resend gets its cached reply, whatever its ack_seq says.
    assert_eq!(conn.call(GID, put(me, 1, 0, &key, "first")), ok);
    assert_eq!(
        conn.call(GID, get(me, 2, &key)),
        Message::Reply(ClientReply::Ok(Bytes::from_static(b"first")))
    );
    // Acknowledged: a copy of seq 1 is now stale, whatever it carries.
    assert_eq!(conn.call(GID, put(me, 3, 2, &key, "third")), ok);
    let stale = conn.call(GID, put(me, 1, 2, &key, "first"));
    assert!(reason(&stale).contains("stale"), "{stale:?}");
    assert_eq!(
        conn.call(GID, get(me, 4, &key)),
        Message::Reply(ClientReply::Ok(Bytes::from_static(b"third")))
    );
}

/// A request and the end of the client's stream in the same readiness
/// edge (both queued while the server was stopped, on a connection it
/// already polls): the server's read stops early on a short read only when
/// no close was signalled, so it still sees the end of the stream and
/// closes the connection at once instead of holding it open until the idle
/// timeout (300 s).
#[test]
fn a_request_and_the_end_of_the_stream_in_one_edge_close_the_connection() {
    let c = Cluster::new(1);
    let mut conn = Conn::open(&c.nodes[0].addr);
    assert!(matches!(conn.call(0, query()), Message::Config(_)));
    c.signal(0, "STOP");
    let mut out = BytesMut::new();
    encode_frame(
        &Frame {
            request_id: 99,
            group: 0,
            message: query(),
        },
        &mut out,
    );
    let s = &mut conn.stream;
    s.write_all(&out).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // Let both arrive before the server runs again.
    std::thread::sleep(Duration::from_millis(200));
    c.signal(0, "CONT");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept the half-closed connection open: {e}"),
    }
}
