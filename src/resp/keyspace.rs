//! The commands over the whole keyspace — SCAN, KEYS, DBSIZE, FLUSHDB —
//! which the gateway answers by asking every shard in turn (ARCHITECTURE.md,
//! "SCAN across shards"), and the SCAN cursors of one connection.
//!
//! A SCAN cursor stands for a position `(shard, last key returned)`: the
//! scan walks shard 0, 1, ... in order and each shard in bytewise key order,
//! one [`Op::Scan`] page per call. A shard moves between groups with all
//! its keys, so a key that exists for the whole scan is in its shard's order
//! whichever group serves the page, and is returned; a key may come twice
//! only if a client retries a cursor (Redis allows duplicates).
//!
//! Redis clients hold a cursor as a decimal `u64` (redis-py parses it as an
//! int), and a position holds a key of any length, so the position stays in
//! the gateway: a per-connection table of at most [`CURSORS_MAX`] entries
//! maps the number handed out to the position. The number is the
//! connection's id (unique per gateway) above a 24-bit counter, so a cursor
//! from another connection, an evicted one, or one from before a gateway
//! restart is refused with `ERR invalid cursor` — never silently restarted
//! from 0 — and the client starts a new scan.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use synod_wire::{decode_scan_page, Op, SCAN_COUNT_MAX};

use super::command::{is, Session};
use super::reply::Reply;

/// SCAN cursors one connection holds at most; the oldest goes first.
pub const CURSORS_MAX: usize = 64;
/// Keys one SCAN returns unless COUNT says otherwise (Redis' default).
pub const DEFAULT_SCAN_COUNT: u32 = 10;
const CURSOR_COUNTER_BITS: u32 = 24;

/// Refusal of a cursor this connection did not hand out (or has evicted).
pub const INVALID_CURSOR: &str = "ERR invalid cursor";
/// FLUSHDB/FLUSHALL on a server started without `--resp-allow-flushdb`.
pub const FLUSH_DISABLED: &str =
    "ERR FLUSHDB is disabled on this server (start synod-server with --resp-allow-flushdb)";
/// KEYS over a shard larger than one page.
pub const KEYS_TOO_MANY: &str =
    "ERR KEYS: a shard holds more keys than one request may examine; use SCAN";
const NO_SHARDS: &str = "CLUSTERDOWN the gateway does not know the shard count";

/// A position of a scan: the next page is `shard`'s keys after `after`
/// (`None`: from its first key).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Position {
    shard: u32,
    after: Option<Bytes>,
}

/// The SCAN cursors of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursors {
    counter: u64,
    entries: VecDeque<(u64, Position)>,
}

impl Cursors {
    fn lookup(&self, cursor: u64) -> Option<&Position> {
        self.entries
            .iter()
            .find(|(c, _)| *c == cursor)
            .map(|(_, p)| p)
    }

    /// A fresh cursor number for `pos` (never 0), evicting the oldest entry
    /// past [`CURSORS_MAX`].
    fn add(&mut self, conn: u64, pos: Position) -> u64 {
        self.counter = (self.counter % ((1 << CURSOR_COUNTER_BITS) - 1)) + 1;
        let cursor = (conn << CURSOR_COUNTER_BITS) | self.counter;
        self.entries.retain(|(c, _)| *c != cursor);
        if self.entries.len() >= CURSORS_MAX {
            self.entries.pop_front();
        }
        self.entries.push_back((cursor, pos));
        cursor
    }

    /// Cursors held (for tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// One key per shard, in shard order: for shard `s`, the smallest decimal
/// number that hashes to it. Whole-shard operations name their shard by any
/// key of it (PROTOCOL.md 5.1), so they route like any key. Cached in the
/// session (the shard count never changes for a cluster); finding them all
/// costs about `shards * ln(shards)` hashes of short strings.
fn shard_keys(session: &mut Session) -> &[Bytes] {
    if session.shard_keys.len() != session.shards as usize {
        session.shard_keys = synod_wire::shard_keys(session.shards);
    }
    &session.shard_keys
}

/// What a whole-keyspace command does with its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyspaceFinish {
    /// One Scan page of `shard`: a new cursor and the keys.
    Scan { shard: u32 },
    /// One Scan page per shard: every key, or an error if a page was cut.
    Keys,
    /// One Count per shard: their sum.
    DbSize,
    /// One Flush per shard: `+OK`.
    Flush,
}

/// The plan of SCAN, KEYS, DBSIZE, FLUSHDB or FLUSHALL (`name`), or `None`
/// for any other command. Arity is checked by the caller.
pub fn plan(
    name: &[u8],
    rest: &[Bytes],
    session: &mut Session,
) -> Option<Result<(KeyspaceFinish, Vec<Op>), Reply>> {
    let plan = if is(name, "SCAN") {
        scan(rest, session)
    } else if is(name, "KEYS") {
        per_shard(session, KeyspaceFinish::Keys, |key| Op::Scan {
            key,
            after: None,
            count: SCAN_COUNT_MAX,
            pattern: Some(rest[0].clone()),
        })
    } else if is(name, "DBSIZE") {
        per_shard(session, KeyspaceFinish::DbSize, |key| Op::Count { key })
    } else if is(name, "FLUSHDB") || is(name, "FLUSHALL") {
        if rest.len() > 1 || !rest.iter().all(|a| is(a, "ASYNC") || is(a, "SYNC")) {
            return Some(Err(Reply::error("ERR syntax error")));
        }
        if !session.allow_flushdb {
            return Some(Err(Reply::error(FLUSH_DISABLED)));
        }
        per_shard(session, KeyspaceFinish::Flush, |key| Op::Flush { key })
    } else {
        return None;
    };
    Some(plan)
}

fn per_shard(
    session: &mut Session,
    finish: KeyspaceFinish,
    op: impl Fn(Bytes) -> Op,
) -> Result<(KeyspaceFinish, Vec<Op>), Reply> {
    if session.shards == 0 {
        return Err(Reply::error(NO_SHARDS));
    }
    Ok((
        finish,
        shard_keys(session).iter().cloned().map(op).collect(),
    ))
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
fn scan(rest: &[Bytes], session: &mut Session) -> Result<(KeyspaceFinish, Vec<Op>), Reply> {
    let cursor = std::str::from_utf8(&rest[0])
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Reply::error(INVALID_CURSOR))?;
    let mut pattern = None;
    let mut count = DEFAULT_SCAN_COUNT;
    let mut only_strings = true;
    let mut opts = rest[1..].chunks(2);
    for pair in &mut opts {
        let [opt, value] = pair else {
            return Err(Reply::error("ERR syntax error"));
        };
        if is(opt, "MATCH") {
            // `*` matches everything: no filtering work on the servers.
            pattern = (value.as_ref() != b"*").then(|| value.clone());
        } else if is(opt, "COUNT") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| Reply::error("ERR value is not an integer or out of range"))?;
            if n < 1 {
                return Err(Reply::error("ERR syntax error"));
            }
            count = n.min(i64::from(SCAN_COUNT_MAX)) as u32;
        } else if is(opt, "TYPE") {
            // Every Synod key is a string.
            only_strings = is(value, "string");
        } else {
            return Err(Reply::error("ERR syntax error"));
        }
    }
    if session.shards == 0 {
        return Err(Reply::error(NO_SHARDS));
    }
    let pos = if cursor == 0 {
        Position {
            shard: 0,
            after: None,
        }
    } else {
        session
            .cursors
            .lookup(cursor)
            .cloned()
            .ok_or_else(|| Reply::error(INVALID_CURSOR))?
    };
    if !only_strings || pos.shard >= session.shards {
        // No key of another type exists: the scan is over at once.
        return Err(scan_reply(0, Vec::new()));
    }
    let key = shard_keys(session)[pos.shard as usize].clone();
    Ok((
        KeyspaceFinish::Scan { shard: pos.shard },
        vec![Op::Scan {
            key,
            after: pos.after,
            count,
            pattern,
        }],
    ))
}

fn scan_reply(cursor: u64, keys: Vec<Bytes>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(cursor.to_string().into_bytes())),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ])
}

fn malformed() -> Reply {
    Reply::Error(Cow::Borrowed(
        "ERR cluster protocol error: malformed reply to a keyspace request",
    ))
}

/// The reply, given one result per op; errors are handled by the caller.
/// A SCAN's next cursor goes into `session`'s table.
pub fn finish(finish: KeyspaceFinish, results: Vec<Option<Bytes>>, session: &mut Session) -> Reply {
    match finish {
        KeyspaceFinish::Scan { shard } => {
            let Some(Ok(page)) = results.into_iter().next().flatten().map(decode_scan_page) else {
                return malformed();
            };
            let next = match page.resume_after {
                Some(after) => Some(Position {
                    shard,
                    after: Some(after),
                }),
                None if shard + 1 < session.shards => Some(Position {
                    shard: shard + 1,
                    after: None,
                }),
                None => None,
            };
            let cursor = next.map_or(0, |pos| session.cursors.add(session.id, pos));
            scan_reply(cursor, page.keys)
        }
        KeyspaceFinish::Keys => {
            let mut keys = Vec::new();
            for r in results {
                let Some(Ok(page)) = r.map(decode_scan_page) else {
                    return malformed();
                };
                if page.resume_after.is_some() {
                    return Reply::error(KEYS_TOO_MANY);
                }
                keys.extend(page.keys.into_iter().map(Reply::Bulk));
            }
            Reply::Array(keys)
        }
        KeyspaceFinish::DbSize => {
            let mut total: i64 = 0;
            for r in results {
                match r
                    .as_deref()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|s| s.parse::<i64>().ok())
                {
                    Some(n) => total = total.saturating_add(n),
                    None => return malformed(),
                }
            }
            Reply::Integer(total)
        }
        KeyspaceFinish::Flush => Reply::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_wire::{encode_scan_page, shard_of, ScanPage};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn session(shards: u32) -> Session {
        Session {
            id: 5,
            shards,
            ..Session::default()
        }
    }

    fn page(keys: &[&str], resume: Option<&str>) -> Option<Bytes> {
        Some(encode_scan_page(&ScanPage {
            keys: keys.iter().map(|k| b(k)).collect(),
            resume_after: resume.map(b),
        }))
    }

    fn cursor_of(r: &Reply) -> u64 {
        let Reply::Array(parts) = r else {
            panic!("{r:?}")
        };
        let Reply::Bulk(c) = &parts[0] else {
            panic!("{r:?}")
        };
        std::str::from_utf8(c).unwrap().parse().unwrap()
    }

    fn plan_ok(words: &[&str], s: &mut Session) -> (KeyspaceFinish, Vec<Op>) {
        let args: Vec<Bytes> = words.iter().map(|w| b(w)).collect();
        plan(&args[0], &args[1..], s)
            .expect("a keyspace command")
            .expect("planned")
    }

    fn plan_err(words: &[&str], s: &mut Session) -> Reply {
        let args: Vec<Bytes> = words.iter().map(|w| b(w)).collect();
        plan(&args[0], &args[1..], s)
            .expect("a keyspace command")
            .expect_err("refused")
    }

    /// A key of shard `shard` among `shards`: the smallest decimal number that
    /// hashes to it, found one by one (what the table must agree with).
    fn shard_key(shard: u32, shards: u32) -> Bytes {
        let mut n: u64 = 0;
        loop {
            let text = n.to_string();
            if shard_of(text.as_bytes(), shards) == shard {
                return Bytes::from(text.into_bytes());
            }
            n += 1;
        }
    }

    #[test]
    fn shard_keys_hash_to_their_shard() {
        let mut s = session(64);
        let keys = shard_keys(&mut s).to_vec();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(shard_of(k, 64) as usize, i);
            assert_eq!(shard_key(i as u32, 64), *k);
        }
    }

    #[test]
    fn scan_walks_shards_in_order_through_the_cursor_table() {
        let mut s = session(3);
        let (f, ops) = plan_ok(&["SCAN", "0", "MATCH", "k*", "COUNT", "5"], &mut s);
        assert_eq!(f, KeyspaceFinish::Scan { shard: 0 });
        assert!(
            matches!(&ops[..], [Op::Scan { after: None, count: 5, pattern: Some(p), .. }] if p == "k*")
        );
        // The shard is not done: the cursor resumes in it after "k2".
        let r = finish(f, vec![page(&["k1", "k2"], Some("k2"))], &mut s);
        let c = cursor_of(&r);
        assert_ne!(c, 0);
        let (f, ops) = plan_ok(&["scan", &c.to_string()], &mut s);
        assert_eq!(f, KeyspaceFinish::Scan { shard: 0 });
        assert!(
            matches!(&ops[..], [Op::Scan { after: Some(a), count: 10, pattern: None, .. }] if a == "k2")
        );
        // Shard 0 done: the next cursor starts shard 1.
        let c = cursor_of(&finish(f, vec![page(&[], None)], &mut s));
        let (f, ops) = plan_ok(&["SCAN", &c.to_string()], &mut s);
        assert_eq!(f, KeyspaceFinish::Scan { shard: 1 });
        assert!(matches!(&ops[..], [Op::Scan { after: None, key, .. }] if shard_of(key, 3) == 1));
        // The last shard done: cursor 0.
        let r = finish(
            KeyspaceFinish::Scan { shard: 2 },
            vec![page(&["z"], None)],
            &mut s,
        );
        assert_eq!(r, scan_reply(0, vec![b("z")]));
    }

    #[test]
    fn unknown_evicted_and_foreign_cursors_are_refused_not_restarted() {
        let mut s = session(2);
        let invalid = Reply::error(INVALID_CURSOR);
        assert_eq!(plan_err(&["SCAN", "12345"], &mut s), invalid);
        assert_eq!(plan_err(&["SCAN", "abc"], &mut s), invalid);
        assert_eq!(plan_err(&["SCAN", "-1"], &mut s), invalid);
        let first = cursor_of(&finish(
            KeyspaceFinish::Scan { shard: 0 },
            vec![page(&["a"], Some("a"))],
            &mut s,
        ));
        let mut other = Session {
            id: 6,
            ..session(2)
        };
        assert_eq!(plan_err(&["SCAN", &first.to_string()], &mut other), invalid);
        for _ in 0..CURSORS_MAX {
            finish(
                KeyspaceFinish::Scan { shard: 0 },
                vec![page(&[], Some("b"))],
                &mut s,
            );
        }
        assert_eq!(s.cursors.len(), CURSORS_MAX);
        assert_eq!(
            plan_err(&["SCAN", &first.to_string()], &mut s),
            invalid,
            "evicted"
        );
    }

    #[test]
    fn scan_options_follow_redis() {
        let mut s = session(2);
        let syntax = Reply::error("ERR syntax error");
        assert_eq!(plan_err(&["SCAN", "0", "COUNT", "0"], &mut s), syntax);
        assert_eq!(plan_err(&["SCAN", "0", "MATCH"], &mut s), syntax);
        assert_eq!(plan_err(&["SCAN", "0", "FOO", "x"], &mut s), syntax);
        assert_eq!(
            plan_err(&["SCAN", "0", "COUNT", "x"], &mut s),
            Reply::error("ERR value is not an integer or out of range")
        );
        // TYPE: only strings exist.
        assert_eq!(
            plan_err(&["SCAN", "0", "TYPE", "hash"], &mut s),
            scan_reply(0, vec![])
        );
        let (_, ops) = plan_ok(
            &["SCAN", "0", "TYPE", "STRING", "COUNT", "999999999"],
            &mut s,
        );
        assert!(matches!(&ops[..], [Op::Scan { count, .. }] if *count == SCAN_COUNT_MAX));
        assert_eq!(
            plan_err(&["SCAN", "0"], &mut Session::default()),
            Reply::error(NO_SHARDS)
        );
    }

    #[test]
    fn keys_dbsize_and_flushdb_ask_every_shard() {
        let mut s = session(4);
        let (f, ops) = plan_ok(&["KEYS", "a*"], &mut s);
        assert_eq!((f, ops.len()), (KeyspaceFinish::Keys, 4));
        let r = finish(
            f,
            vec![
                page(&["a1"], None),
                page(&[], None),
                page(&["a2", "a3"], None),
                page(&[], None),
            ],
            &mut s,
        );
        assert_eq!(
            r,
            Reply::Array(vec![
                Reply::Bulk(b("a1")),
                Reply::Bulk(b("a2")),
                Reply::Bulk(b("a3"))
            ])
        );
        let cut = finish(
            f,
            vec![
                page(&["a1"], Some("a1")),
                page(&[], None),
                page(&[], None),
                page(&[], None),
            ],
            &mut s,
        );
        assert_eq!(cut, Reply::error(KEYS_TOO_MANY));
        let (f, ops) = plan_ok(&["DBSIZE"], &mut s);
        assert!(ops.iter().all(|o| matches!(o, Op::Count { .. })));
        let r = finish(
            f,
            ["3", "0", "4", "1"].iter().map(|n| Some(b(n))).collect(),
            &mut s,
        );
        assert_eq!(r, Reply::Integer(8));
        assert_eq!(plan_err(&["FLUSHDB"], &mut s), Reply::error(FLUSH_DISABLED));
        s.allow_flushdb = true;
        assert_eq!(
            plan_err(&["FLUSHDB", "LAZY"], &mut s),
            Reply::error("ERR syntax error")
        );
        let (f, ops) = plan_ok(&["FLUSHDB", "ASYNC"], &mut s);
        assert_eq!(f, KeyspaceFinish::Flush);
        assert!(ops.iter().all(|o| matches!(o, Op::Flush { .. })));
        assert_eq!(ops.len(), 4);
    }
}
