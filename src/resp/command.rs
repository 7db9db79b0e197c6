//! Redis commands mapped onto Synod operations. Sans-IO: [`plan`] turns a
//! command's arguments into either an immediate reply (connection-local
//! commands such as PING or CLIENT SETNAME) or a list of KV [`Op`]s plus the
//! rule that turns their results into the command's reply ([`KvCommand`]).
//! The gateway runs the ops; nothing here touches a socket or the cluster.
//!
//! [`COMMANDS`] is the table of what is supported (COMMAND answers from it;
//! README's command table says how each differs from Redis). Replies are
//! built in RESP3 terms and encoded in the connection's protocol (`reply`).
//! Without `synod-server --resp-password-file` no AUTH is needed; with it
//! every command but PING, AUTH, HELLO, QUIT and RESET answers `-NOAUTH`
//! until AUTH succeeds. Hash, list, set and sorted-set commands answer an
//! error that says what Synod supports; anything else unknown is Redis'
//! `-ERR unknown command`. MULTI/EXEC/WATCH and the atomic multi-key
//! commands (MSETNX, RENAME, and MSET/MGET/DEL of several keys) are
//! `multi`'s: it sees every command first.

use std::borrow::Cow;

use bytes::Bytes;
use synod_wire::{glob_match, ExpireCond, Expiry, Op, PutCond};

use super::keyspace::{self, Cursors, KeyspaceFinish};
use super::reply::Reply;
use crate::client::{ClientError, OpResult};

/// Connection-local state a few commands read or set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Returned by CLIENT ID and HELLO; unique per gateway.
    pub id: u64,
    /// Set by CLIENT SETNAME (or HELLO SETNAME).
    pub name: Option<Bytes>,
    /// The password this connection must AUTH with (`None`: no password).
    pub password: Option<std::sync::Arc<[u8]>>,
    /// AUTH succeeded on this connection.
    pub authed: bool,
    /// The RESP version replies are encoded in: 2 until `HELLO 3`.
    pub proto: u8,
    /// CLIENT SETINFO LIB-NAME / LIB-VER, shown by CLIENT INFO.
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    /// The cluster's shard count (fixed per cluster; 0: unknown), which
    /// SCAN, KEYS, DBSIZE and FLUSHDB walk.
    pub shards: u32,
    /// `synod-server --resp-allow-flushdb`: FLUSHDB/FLUSHALL may run.
    pub allow_flushdb: bool,
    /// This connection's SCAN cursors.
    pub cursors: Cursors,
    /// One key per shard, computed on first use (`keyspace`).
    pub(super) shard_keys: Vec<Bytes>,
}

impl Default for Session {
    fn default() -> Session {
        Session {
            id: 0,
            name: None,
            password: None,
            authed: false,
            proto: 2,
            lib_name: None,
            lib_ver: None,
            shards: 0,
            allow_flushdb: false,
            cursors: Cursors::default(),
            shard_keys: Vec::new(),
        }
    }
}

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";
/// The `redis_version` reported by HELLO and INFO. Client libraries
/// feature-detect on it; 7.0.0 names the command set whose subset the
/// gateway follows, not a claim to be Redis.
const REDIS_VERSION: &str = "7.0.0";

impl Session {
    /// Commands are refused until AUTH.
    pub(super) fn locked(&self) -> bool {
        self.password.is_some() && !self.authed
    }

    /// Checks `user`/`pass` (Redis' only user is "default"), in constant
    /// time in the password's content.
    fn try_auth(&mut self, user: Option<&[u8]>, pass: &[u8]) -> Reply {
        let Some(want) = &self.password else {
            if user.is_some_and(|u| u == b"default") {
                // Redis' default user without a password ("nopass")
                // accepts any password given with its name.
                return Reply::OK;
            }
            if user.is_some() {
                return Reply::error(WRONGPASS);
            }
            return Reply::error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
        };
        let ok = crate::auth::ct_eq(want, pass);
        if ok && user.is_none_or(|u| u == b"default") {
            self.authed = true;
            Reply::OK
        } else {
            Reply::error(WRONGPASS)
        }
    }
}

/// What to do for one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Answer at once; nothing reaches the cluster.
    Reply(Reply),
    /// Answer `+OK`, then close the connection.
    Quit,
    /// Run these KV operations, then build the reply from their results.
    Kv(KvCommand),
}

/// A command that needs the cluster: its operations, in program order, and
/// how to turn their results into one reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCommand {
    pub ops: Vec<Op>,
    finish: Finish,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    Get,
    Set,
    /// Ops: Append then Get; the reply is the length the Get read.
    Append,
    Del,
    Exists,
    MGet,
    MSet,
    /// One Get; the reply is the value's length (0 without a key).
    Strlen,
    /// One Get; the reply is Redis' GETRANGE slice of it.
    GetRange(i64, i64),
    /// One Get; `string` or `none`.
    Type,
    /// One Ttl: -2 without the key, -1 without expiry, else the time
    /// left, in milliseconds (PTTL) or seconds rounded (TTL).
    Ttl {
        ms: bool,
    },
    /// One Expire: 1 if the expiry changed, 0 if not.
    Expire,
    /// One PutIf: `+OK` if it wrote, nil if not; with GET, the old value.
    SetIf {
        get_old: bool,
    },
    /// One PutIf NotExists: 1 if it wrote, 0 if not.
    SetNx,
    /// One PutIf Any with the old value: the old value (GETSET).
    GetSet,
    /// One GetDel: the removed value or nil.
    GetDel,
    /// One Incr: the new value.
    Incr,
    /// One SetRange: the new length.
    SetRange,
    /// One IncrByFloat: the new value, as a bulk string.
    IncrByFloat,
    /// SCAN, KEYS, DBSIZE, FLUSHDB (`keyspace`).
    Keyspace(KeyspaceFinish),
}

impl KvCommand {
    /// The reply, given one result per op (same order as [`Self::ops`]),
    /// for a command that keeps no connection state (all but SCAN).
    pub fn finish(&self, results: Vec<OpResult>) -> Reply {
        self.finish_in(results, &mut Session::default())
    }

    /// The reply, given one result per op; a SCAN records its next cursor
    /// in `session`.
    pub fn finish_in(&self, results: Vec<OpResult>, session: &mut Session) -> Reply {
        assert_eq!(results.len(), self.ops.len(), "one result per op");
        if let Some(e) = first_error(&results) {
            // Every command's reply depends on all of its ops (a failed
            // Append is reported even if the Get worked; MGET has no
            // per-key error slot, and a failed key read as nil would hide
            // the failure).
            return e;
        }
        let mut values = results.into_iter().map(|r| r.expect("no error"));
        let one = |values: &mut dyn Iterator<Item = Option<Bytes>>| {
            values.next().expect("one op or more")
        };
        match self.finish {
            Finish::Get => match one(&mut values) {
                Some(v) => Reply::Bulk(v),
                None => Reply::Nil,
            },
            Finish::Set | Finish::MSet => Reply::OK,
            Finish::Append => {
                // The Append's outcome decided above; the Get only measures.
                let _ = one(&mut values);
                Reply::Integer(one(&mut values).map_or(0, |v| v.len() as i64))
            }
            Finish::Del => Reply::Integer(
                values
                    .filter(|v| matches!(v, Some(v) if v.as_ref() == b"1"))
                    .count() as i64,
            ),
            Finish::Exists => Reply::Integer(values.filter(|v| v.is_some()).count() as i64),
            Finish::MGet => Reply::Array(
                values
                    .map(|v| v.map_or(Reply::Nil, Reply::Bulk))
                    .collect::<Vec<_>>(),
            ),
            Finish::Strlen => Reply::Integer(one(&mut values).map_or(0, |v| v.len() as i64)),
            Finish::GetRange(start, end) => {
                let v = one(&mut values).unwrap_or_default();
                let (from, to) = range(v.len(), start, end);
                Reply::Bulk(v.slice(from..to))
            }
            Finish::Type => Reply::Simple(Cow::Borrowed(match one(&mut values) {
                Some(_) => "string",
                None => "none",
            })),
            Finish::Ttl { ms } => match one(&mut values) {
                None => Reply::Integer(-2),
                Some(v) => match int_arg(&v) {
                    Some(-1) => Reply::Integer(-1),
                    Some(left) if left >= 0 && ms => Reply::Integer(left),
                    // Redis rounds TTL to the nearest second.
                    Some(left) if left >= 0 => Reply::Integer((left + 500) / 1000),
                    _ => malformed(),
                },
            },
            Finish::Expire => match one(&mut values).as_deref() {
                Some(b"1") => Reply::Integer(1),
                Some(b"0") => Reply::Integer(0),
                _ => malformed(),
            },
            Finish::SetIf { get_old } => match (put_if_reply(one(&mut values)), get_old) {
                (Some((_, old)), true) => old.map_or(Reply::Nil, Reply::Bulk),
                (Some((true, _)), false) => Reply::OK,
                (Some((false, _)), false) => Reply::Nil,
                (None, _) => malformed(),
            },
            Finish::SetNx => match put_if_reply(one(&mut values)) {
                Some((wrote, _)) => Reply::Integer(wrote.into()),
                None => malformed(),
            },
            Finish::GetSet => match put_if_reply(one(&mut values)) {
                Some((_, old)) => old.map_or(Reply::Nil, Reply::Bulk),
                None => malformed(),
            },
            Finish::GetDel => match one(&mut values).as_ref().and_then(|v| presence(v, 0)) {
                Some(old) => old.map_or(Reply::Nil, Reply::Bulk),
                None => malformed(),
            },
            Finish::Incr | Finish::SetRange => match one(&mut values).and_then(|v| int_arg(&v)) {
                Some(n) => Reply::Integer(n),
                None => malformed(),
            },
            Finish::IncrByFloat => match one(&mut values) {
                Some(v) => Reply::Bulk(v),
                None => malformed(),
            },
            Finish::Keyspace(f) => keyspace::finish(f, values.collect(), session),
        }
    }
}

/// An answer that does not have the layout PROTOCOL.md gives its op.
fn malformed() -> Reply {
    Reply::error("ERR cluster protocol error: malformed reply to an atomic write")
}

/// Reads the optional value at `at` of a PutIf or GetDel answer: `1` and
/// the value, or `0` (PROTOCOL.md 5.1). `None` if malformed.
fn presence(v: &Bytes, at: usize) -> Option<Option<Bytes>> {
    match v.get(at)? {
        b'1' => Some(Some(v.slice(at + 1..))),
        b'0' if v.len() == at + 1 => Some(None),
        _ => None,
    }
}

/// A PutIf answer: whether it wrote, and the old value if it was asked
/// for (`None` inside when it was not, or the key had none).
fn put_if_reply(v: Option<Bytes>) -> Option<(bool, Option<Bytes>)> {
    let v = v?;
    let wrote = match v.first()? {
        b'1' => true,
        b'0' => false,
        _ => return None,
    };
    if v.len() == 1 {
        return Some((wrote, None));
    }
    Some((wrote, presence(&v, 1)?))
}

/// GETRANGE's byte range `[from, to)` of a value of `len` bytes for the
/// inclusive, possibly negative, `start` and `end` (Redis' rules: negative
/// counts from the end, both are clamped, an empty range is empty).
fn range(len: usize, start: i64, end: i64) -> (usize, usize) {
    let n = len as i64;
    if n == 0 || (start < 0 && end < 0 && start > end) {
        return (0, 0);
    }
    let start = if start < 0 { (n + start).max(0) } else { start };
    let end = if end < 0 {
        (n + end).max(0)
    } else {
        end.min(n - 1)
    };
    if start > end {
        return (0, 0);
    }
    (start as usize, end as usize + 1)
}

fn first_error(results: &[OpResult]) -> Option<Reply> {
    results
        .iter()
        .find_map(|r| r.as_ref().err().map(error_reply))
}

/// A client library error as a Redis error reply. The codes tell a client
/// what it may assume: TIMEOUT means the write may or may not have happened,
/// CLUSTERDOWN that it was never delivered.
pub fn error_reply(e: &ClientError) -> Reply {
    Reply::Error(Cow::Owned(match e {
        ClientError::Timeout => {
            "TIMEOUT the cluster did not answer in time; the command may or may not have taken effect"
                .to_string()
        }
        ClientError::Unreachable(why) => format!("CLUSTERDOWN {why}"),
        ClientError::Refused(reason) => format!("ERR {reason}"),
        ClientError::SessionExpired => {
            "SESSIONEXPIRED the connection's session on the cluster expired; the command may or may not have taken effect"
                .to_string()
        }
        ClientError::TooLarge => "ERR value too large".to_string(),
        ClientError::Protocol(why) => format!("ERR cluster protocol error: {why}"),
    }))
}

pub(super) fn wrong_arity(name: &[u8]) -> Reply {
    Reply::Error(Cow::Owned(format!(
        "ERR wrong number of arguments for '{}' command",
        lower(name)
    )))
}

fn lower(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_lowercase()
}

fn kv(finish: Finish, ops: Vec<Op>) -> Plan {
    Plan::Kv(KvCommand { ops, finish })
}

pub(super) fn is(word: &[u8], name: &str) -> bool {
    word.eq_ignore_ascii_case(name.as_bytes())
}

/// A decimal `i64` argument as Redis parses one (no spaces, no `+`).
fn int_arg(arg: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(arg).ok()?;
    if s.starts_with('+') || (s.len() > 1 && s.starts_with('0')) || s.starts_with("-0") {
        return None;
    }
    s.parse().ok()
}

/// One supported command: name, arity (negative: at least that many
/// words, the name included), flags, first key, last key, key step — what
/// COMMAND INFO reports, and the group COMMAND DOCS reports.
struct CommandSpec {
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        keys,
        group,
        summary,
    }
}

const R: &[&str] = &["readonly", "fast"];
const W: &[&str] = &["write"];
const C: &[&str] = &["fast", "loading", "stale"];
const NONE: (i64, i64, i64) = (0, 0, 0);
const KEY1: (i64, i64, i64) = (1, 1, 1);
const KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command the gateway answers.
const COMMANDS: &[CommandSpec] = &[
    spec(
        "get",
        2,
        R,
        KEY1,
        "string",
        "Returns the string value of a key.",
    ),
    spec(
        "set",
        -3,
        W,
        KEY1,
        "string",
        "Sets the string value of a key (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL).",
    ),
    spec(
        "setex",
        4,
        W,
        KEY1,
        "string",
        "Sets a value and its expiry in seconds.",
    ),
    spec(
        "psetex",
        4,
        W,
        KEY1,
        "string",
        "Sets a value and its expiry in milliseconds.",
    ),
    spec(
        "getex",
        -2,
        W,
        KEY1,
        "string",
        "Returns a value and sets or clears its expiry.",
    ),
    spec(
        "expire",
        -3,
        W,
        KEY1,
        "generic",
        "Sets a key's expiry in seconds (NX, XX, GT, LT).",
    ),
    spec(
        "pexpire",
        -3,
        W,
        KEY1,
        "generic",
        "Sets a key's expiry in milliseconds (NX, XX, GT, LT).",
    ),
    spec(
        "expireat",
        -3,
        W,
        KEY1,
        "generic",
        "Sets a key's expiry to a Unix time in seconds.",
    ),
    spec(
        "pexpireat",
        -3,
        W,
        KEY1,
        "generic",
        "Sets a key's expiry to a Unix time in milliseconds.",
    ),
    spec("persist", 2, W, KEY1, "generic", "Removes a key's expiry."),
    spec(
        "ttl",
        2,
        R,
        KEY1,
        "generic",
        "Returns a key's time to live in seconds (log time).",
    ),
    spec(
        "pttl",
        2,
        R,
        KEY1,
        "generic",
        "Returns a key's time to live in milliseconds (log time).",
    ),
    spec(
        "append",
        3,
        W,
        KEY1,
        "string",
        "Appends a string to the value of a key.",
    ),
    spec(
        "strlen",
        2,
        R,
        KEY1,
        "string",
        "Returns the length of a string value.",
    ),
    spec(
        "getrange",
        4,
        R,
        KEY1,
        "string",
        "Returns a substring of a string value.",
    ),
    spec(
        "setnx",
        3,
        W,
        KEY1,
        "string",
        "Sets a key only if it has no value.",
    ),
    spec(
        "getset",
        3,
        W,
        KEY1,
        "string",
        "Sets a key and returns its previous value.",
    ),
    spec(
        "getdel",
        2,
        W,
        KEY1,
        "string",
        "Returns a key's value and deletes the key.",
    ),
    spec(
        "incr",
        2,
        W,
        KEY1,
        "string",
        "Adds 1 to a key's integer value.",
    ),
    spec(
        "decr",
        2,
        W,
        KEY1,
        "string",
        "Subtracts 1 from a key's integer value.",
    ),
    spec(
        "incrby",
        3,
        W,
        KEY1,
        "string",
        "Adds an integer to a key's integer value.",
    ),
    spec(
        "decrby",
        3,
        W,
        KEY1,
        "string",
        "Subtracts an integer from a key's integer value.",
    ),
    spec("mget", -2, R, KEYS, "string", "Returns the values of keys."),
    spec(
        "setrange",
        4,
        W,
        KEY1,
        "string",
        "Overwrites part of a string at an offset, padding with zero bytes.",
    ),
    spec(
        "incrbyfloat",
        3,
        W,
        KEY1,
        "string",
        "Adds a floating point number to a key's value.",
    ),
    spec(
        "scan",
        -2,
        &["readonly"],
        NONE,
        "generic",
        "Iterates the keys of every shard (MATCH, COUNT, TYPE).",
    ),
    spec(
        "keys",
        2,
        &["readonly"],
        NONE,
        "generic",
        "Returns the keys matching a pattern (every shard).",
    ),
    spec(
        "dbsize",
        1,
        &["readonly", "fast"],
        NONE,
        "server",
        "Counts the keys of every shard.",
    ),
    spec(
        "flushdb",
        -1,
        W,
        NONE,
        "server",
        "Removes every key (only with synod-server --resp-allow-flushdb).",
    ),
    spec(
        "flushall",
        -1,
        W,
        NONE,
        "server",
        "Removes every key (only with synod-server --resp-allow-flushdb).",
    ),
    spec(
        "mset",
        -3,
        W,
        (1, -1, 2),
        "string",
        "Sets keys, all at once when they lie in one group.",
    ),
    spec(
        "del",
        -2,
        W,
        KEYS,
        "generic",
        "Deletes keys, all at once when they lie in one group.",
    ),
    spec(
        "unlink",
        -2,
        W,
        KEYS,
        "generic",
        "Deletes keys, all at once when they lie in one group.",
    ),
    spec(
        "exists",
        -2,
        R,
        KEYS,
        "generic",
        "Counts the keys that exist.",
    ),
    spec(
        "msetnx",
        -3,
        W,
        (1, -1, 2),
        "string",
        "Sets keys only if none exists, as one transaction (keys in one group).",
    ),
    spec(
        "rename",
        3,
        W,
        (1, 2, 1),
        "generic",
        "Renames a key (keys in one group).",
    ),
    spec(
        "renamenx",
        3,
        W,
        (1, 2, 1),
        "generic",
        "Renames a key if the new name is free (keys in one group).",
    ),
    spec("multi", 1, C, NONE, "transactions", "Starts a transaction."),
    spec(
        "exec",
        1,
        C,
        NONE,
        "transactions",
        "Runs the queued commands as one transaction (keys in one group).",
    ),
    spec(
        "discard",
        1,
        C,
        NONE,
        "transactions",
        "Discards the queued commands.",
    ),
    spec(
        "watch",
        -2,
        C,
        KEYS,
        "transactions",
        "Makes EXEC fail if a key changes.",
    ),
    spec(
        "unwatch",
        1,
        C,
        NONE,
        "transactions",
        "Forgets the watched keys.",
    ),
    spec(
        "type",
        2,
        R,
        KEY1,
        "generic",
        "Returns the type of a key (string or none).",
    ),
    spec(
        "ping",
        -1,
        C,
        NONE,
        "connection",
        "Returns PONG or the argument.",
    ),
    spec("echo", 2, C, NONE, "connection", "Returns the argument."),
    spec(
        "hello",
        -1,
        C,
        NONE,
        "connection",
        "Handshakes, choosing RESP2 or RESP3.",
    ),
    spec(
        "auth",
        -2,
        C,
        NONE,
        "connection",
        "Authenticates the connection.",
    ),
    spec(
        "client",
        -2,
        C,
        NONE,
        "connection",
        "CLIENT ID, GETNAME, SETNAME, SETINFO, INFO.",
    ),
    spec(
        "select",
        2,
        C,
        NONE,
        "connection",
        "Selects database 0, the only one.",
    ),
    spec("quit", -1, C, NONE, "connection", "Closes the connection."),
    spec(
        "reset",
        1,
        C,
        NONE,
        "connection",
        "Resets the connection's state.",
    ),
    spec(
        "command",
        -1,
        C,
        NONE,
        "server",
        "COMMAND, COUNT, INFO, DOCS, LIST.",
    ),
    spec(
        "config",
        -2,
        C,
        NONE,
        "server",
        "CONFIG GET of a few fixed settings.",
    ),
    spec(
        "info",
        -1,
        C,
        NONE,
        "server",
        "Server information (server, clients, keyspace).",
    ),
];

fn command_info(c: &CommandSpec) -> Reply {
    let words = |w: &[&str]| {
        Reply::Array(
            w.iter()
                .map(|f| Reply::Simple(Cow::Owned(f.to_string())))
                .collect(),
        )
    };
    Reply::Array(vec![
        Reply::bulk_str(c.name),
        Reply::Integer(c.arity),
        words(c.flags),
        Reply::Integer(c.keys.0),
        Reply::Integer(c.keys.1),
        Reply::Integer(c.keys.2),
        words(&[]),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

fn command_docs(c: &CommandSpec) -> Reply {
    Reply::Map(vec![
        (Reply::bulk_str("summary"), Reply::bulk_str(c.summary)),
        (Reply::bulk_str("since"), Reply::bulk_str("1.0.0")),
        (Reply::bulk_str("group"), Reply::bulk_str(c.group)),
    ])
}

fn find_command(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| is(name, c.name))
}

/// The server's self-description for HELLO: the fields Redis sends, a map
/// in RESP3 and a flat array in RESP2.
fn hello_fields(session: &Session) -> Reply {
    Reply::Map(vec![
        (Reply::bulk_str("server"), Reply::bulk_str("synod")),
        (Reply::bulk_str("version"), Reply::bulk_str(REDIS_VERSION)),
        (
            Reply::bulk_str("proto"),
            Reply::Integer(session.proto.into()),
        ),
        (Reply::bulk_str("id"), Reply::Integer(session.id as i64)),
        (Reply::bulk_str("mode"), Reply::bulk_str("standalone")),
        (Reply::bulk_str("role"), Reply::bulk_str("master")),
        (Reply::bulk_str("modules"), Reply::Array(Vec::new())),
    ])
}

/// INFO's text for the sections asked for (all three by default).
/// The keyspace section is empty: keys live in independent groups and the
/// gateway has no count of them.
fn info_text(sections: &[Bytes]) -> String {
    let want = |s: &str| {
        sections.is_empty()
            || sections
                .iter()
                .any(|a| is(a, s) || is(a, "all") || is(a, "default") || is(a, "everything"))
    };
    let mut out = String::new();
    if want("server") {
        out.push_str(&format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nsynod_version:{}\r\nredis_mode:standalone\r\n\
             synod_consistency:linearizable per key\r\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    if want("keyspace") {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str("# Keyspace\r\n");
    }
    out
}

/// The settings CONFIG GET reports (what client libraries and tools ask
/// for), with the values that describe Synod.
const CONFIG: &[(&str, &str)] = &[
    ("appendonly", "yes"),
    ("databases", "1"),
    ("maxmemory", "0"),
    ("maxmemory-policy", "noeviction"),
    ("save", ""),
    ("timeout", "0"),
];

/// Commands of the data types Synod does not have.
fn unsupported_type(name: &[u8]) -> Option<&'static str> {
    const HASH: &[&str] = &[
        "HSET",
        "HGET",
        "HMSET",
        "HMGET",
        "HGETALL",
        "HDEL",
        "HEXISTS",
        "HINCRBY",
        "HINCRBYFLOAT",
        "HKEYS",
        "HVALS",
        "HLEN",
        "HSETNX",
        "HSTRLEN",
        "HSCAN",
        "HRANDFIELD",
    ];
    const LIST: &[&str] = &[
        "LPUSH",
        "RPUSH",
        "LPOP",
        "RPOP",
        "LRANGE",
        "LLEN",
        "LINDEX",
        "LSET",
        "LREM",
        "LTRIM",
        "LINSERT",
        "LPUSHX",
        "RPUSHX",
        "LPOS",
        "LMOVE",
        "BLPOP",
        "BRPOP",
        "BLMOVE",
        "RPOPLPUSH",
        "BRPOPLPUSH",
        "LMPOP",
        "BLMPOP",
    ];
    const SET: &[&str] = &[
        "SADD",
        "SREM",
        "SMEMBERS",
        "SISMEMBER",
        "SMISMEMBER",
        "SCARD",
        "SPOP",
        "SRANDMEMBER",
        "SINTER",
        "SUNION",
        "SDIFF",
        "SINTERSTORE",
        "SUNIONSTORE",
        "SDIFFSTORE",
        "SMOVE",
        "SSCAN",
        "SINTERCARD",
    ];
    const ZSET: &[&str] = &[
        "ZADD",
        "ZREM",
        "ZRANGE",
        "ZREVRANGE",
        "ZSCORE",
        "ZCARD",
        "ZINCRBY",
        "ZRANK",
        "ZREVRANK",
        "ZCOUNT",
        "ZRANGEBYSCORE",
        "ZREVRANGEBYSCORE",
        "ZPOPMIN",
        "ZPOPMAX",
        "ZSCAN",
        "ZMSCORE",
        "ZREMRANGEBYSCORE",
        "ZREMRANGEBYRANK",
        "BZPOPMIN",
        "BZPOPMAX",
    ];
    for (names, what) in [
        (HASH, "hashes"),
        (LIST, "lists"),
        (SET, "sets"),
        (ZSET, "sorted sets"),
    ] {
        if names.iter().any(|n| is(name, n)) {
            return Some(what);
        }
    }
    None
}

/// What to do for the command `args` (never empty: the parser skips empty
/// commands).
pub fn plan(args: &[Bytes], session: &mut Session) -> Plan {
    let Some((name, rest)) = args.split_first() else {
        return Plan::Reply(Reply::error("ERR empty command"));
    };
    let n = rest.len();
    let key_op = |f: fn(Bytes) -> Op| rest.iter().cloned().map(f).collect::<Vec<_>>();
    let name = name.as_ref();
    if is(name, "QUIT") {
        return Plan::Quit;
    }
    if session.locked()
        && !(is(name, "AUTH") || is(name, "HELLO") || is(name, "PING") || is(name, "RESET"))
    {
        return Plan::Reply(Reply::error(NOAUTH));
    }
    if let Some(spec) = find_command(name) {
        let words = n as i64 + 1;
        let arity_ok = if spec.arity >= 0 {
            words == spec.arity
        } else {
            words >= -spec.arity
        };
        if !arity_ok {
            return Plan::Reply(wrong_arity(name));
        }
    }
    let get = |finish| {
        kv(
            finish,
            vec![Op::Get {
                key: rest[0].clone(),
            }],
        )
    };
    if is(name, "GET") {
        get(Finish::Get)
    } else if is(name, "STRLEN") {
        get(Finish::Strlen)
    } else if is(name, "TYPE") {
        get(Finish::Type)
    } else if is(name, "TTL") || is(name, "PTTL") {
        kv(
            Finish::Ttl {
                ms: is(name, "PTTL"),
            },
            vec![Op::Ttl {
                key: rest[0].clone(),
            }],
        )
    } else if is(name, "PERSIST") {
        kv(
            Finish::Expire,
            vec![Op::Expire {
                key: rest[0].clone(),
                expiry: Expiry::Persist,
                cond: ExpireCond::Always,
            }],
        )
    } else if is(name, "GETEX") {
        getex(rest)
    } else if is(name, "EXPIRE")
        || is(name, "PEXPIRE")
        || is(name, "EXPIREAT")
        || is(name, "PEXPIREAT")
    {
        expire(name, rest)
    } else if is(name, "SETEX") || is(name, "PSETEX") {
        let ms = is(name, "PSETEX");
        match expire_time(&rest[1], ms, false, name) {
            Ok(expiry) => kv(
                Finish::SetIf { get_old: false },
                vec![Op::PutEx {
                    key: rest[0].clone(),
                    value: rest[2].clone(),
                    cond: PutCond::Any,
                    get_old: false,
                    expiry,
                }],
            ),
            Err(e) => Plan::Reply(e),
        }
    } else if is(name, "GETRANGE") {
        match (int_arg(&rest[1]), int_arg(&rest[2])) {
            (Some(start), Some(end)) => get(Finish::GetRange(start, end)),
            _ => Plan::Reply(Reply::error(NOT_INTEGER)),
        }
    } else if is(name, "SET") {
        set(rest)
    } else if is(name, "SETNX") {
        put_if(Finish::SetNx, rest, PutCond::NotExists, false)
    } else if is(name, "GETSET") {
        put_if(Finish::GetSet, rest, PutCond::Any, true)
    } else if is(name, "GETDEL") {
        kv(
            Finish::GetDel,
            vec![Op::GetDel {
                key: rest[0].clone(),
            }],
        )
    } else if is(name, "INCR") || is(name, "DECR") {
        let delta = if is(name, "INCR") { 1 } else { -1 };
        kv(
            Finish::Incr,
            vec![Op::Incr {
                key: rest[0].clone(),
                delta,
            }],
        )
    } else if is(name, "INCRBY") || is(name, "DECRBY") {
        let delta = match int_arg(&rest[1]) {
            Some(d) if is(name, "INCRBY") => d,
            Some(d) => match d.checked_neg() {
                Some(d) => d,
                None => return Plan::Reply(Reply::error("ERR decrement would overflow")),
            },
            None => return Plan::Reply(Reply::error(NOT_INTEGER)),
        };
        kv(
            Finish::Incr,
            vec![Op::Incr {
                key: rest[0].clone(),
                delta,
            }],
        )
    } else if is(name, "APPEND") {
        kv(
            Finish::Append,
            vec![
                Op::Append {
                    key: rest[0].clone(),
                    value: rest[1].clone(),
                },
                Op::Get {
                    key: rest[0].clone(),
                },
            ],
        )
    } else if is(name, "DEL") || is(name, "UNLINK") {
        kv(Finish::Del, key_op(|key| Op::Delete { key }))
    } else if is(name, "EXISTS") {
        kv(Finish::Exists, key_op(|key| Op::Get { key }))
    } else if is(name, "MGET") {
        kv(Finish::MGet, key_op(|key| Op::Get { key }))
    } else if is(name, "SETRANGE") {
        set_range(rest)
    } else if is(name, "INCRBYFLOAT") {
        // Parsed here only to answer a bad increment without a round trip;
        // the servers parse the text again (the log carries it verbatim).
        if crate::kv::parse_float(&rest[1]).is_none() {
            return Plan::Reply(Reply::error("ERR value is not a valid float"));
        }
        kv(
            Finish::IncrByFloat,
            vec![Op::IncrByFloat {
                key: rest[0].clone(),
                delta: rest[1].clone(),
            }],
        )
    } else if let Some(p) = keyspace::plan(name, rest, session) {
        match p {
            Ok((finish, ops)) => kv(Finish::Keyspace(finish), ops),
            Err(reply) => Plan::Reply(reply),
        }
    } else if is(name, "MSET") {
        if n % 2 != 0 {
            return Plan::Reply(wrong_arity(name));
        }
        let ops = rest
            .chunks(2)
            .map(|kv| Op::Put {
                key: kv[0].clone(),
                value: kv[1].clone(),
            })
            .collect();
        kv(Finish::MSet, ops)
    } else {
        Plan::Reply(local(name, rest, session))
    }
}

/// `SETRANGE key offset value`, with Redis' refusals before any round trip.
fn set_range(rest: &[Bytes]) -> Plan {
    let Some(offset) = int_arg(&rest[1]) else {
        return Plan::Reply(Reply::error(NOT_INTEGER));
    };
    if offset < 0 {
        return Plan::Reply(Reply::error("ERR offset is out of range"));
    }
    let value = rest[2].clone();
    if !value.is_empty() && offset as u64 + value.len() as u64 > crate::kv::VALUE_BYTES_MAX as u64 {
        return Plan::Reply(Reply::error(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
        ));
    }
    kv(
        Finish::SetRange,
        vec![Op::SetRange {
            key: rest[0].clone(),
            offset: offset as u64,
            value,
        }],
    )
}

fn put_if(finish: Finish, rest: &[Bytes], cond: PutCond, get_old: bool) -> Plan {
    kv(
        finish,
        vec![Op::PutIf {
            key: rest[0].clone(),
            value: rest[1].clone(),
            cond,
            get_old,
        }],
    )
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms |
/// KEEPTTL]: a Put, one PutIf when an option asks for a condition or the
/// old value, or one PutEx when one sets or keeps an expiry.
fn set(rest: &[Bytes]) -> Plan {
    let (key, value) = (rest[0].clone(), rest[1].clone());
    let mut cond = PutCond::Any;
    let mut get_old = false;
    let mut expiry: Option<Expiry> = None;
    let mut opts = rest[2..].iter();
    while let Some(opt) = opts.next() {
        if is(opt, "NX") && cond != PutCond::Exists {
            cond = PutCond::NotExists;
        } else if is(opt, "XX") && cond != PutCond::NotExists {
            cond = PutCond::Exists;
        } else if is(opt, "GET") {
            get_old = true;
        } else if is(opt, "KEEPTTL") && expiry.is_none() {
            expiry = Some(Expiry::Keep);
        } else if let Some((ms, at)) = expiry_option(opt) {
            let Some(arg) = opts.next().filter(|_| expiry.is_none()) else {
                return Plan::Reply(Reply::error(SYNTAX));
            };
            match expire_time(arg, ms, at, b"set") {
                Ok(e) => expiry = Some(e),
                Err(e) => return Plan::Reply(e),
            }
        } else {
            return Plan::Reply(Reply::error(SYNTAX));
        }
    }
    match expiry {
        Some(expiry) => kv(
            Finish::SetIf { get_old },
            vec![Op::PutEx {
                key,
                value,
                cond,
                get_old,
                expiry,
            }],
        ),
        None if cond == PutCond::Any && !get_old => kv(Finish::Set, vec![Op::Put { key, value }]),
        None => put_if(Finish::SetIf { get_old }, rest, cond, get_old),
    }
}

/// EX, PX, EXAT, PXAT: `(in milliseconds, absolute)`.
fn expiry_option(opt: &[u8]) -> Option<(bool, bool)> {
    if is(opt, "EX") {
        Some((false, false))
    } else if is(opt, "PX") {
        Some((true, false))
    } else if is(opt, "EXAT") {
        Some((false, true))
    } else if is(opt, "PXAT") {
        Some((true, true))
    } else {
        None
    }
}

/// The expiry an EX/PX/EXAT/PXAT argument (or SETEX's, PSETEX's) names,
/// with Redis' errors: not an integer; not positive, or overflowing
/// milliseconds ("invalid expire time in 'set' command").
fn expire_time(arg: &[u8], ms: bool, at: bool, cmd: &[u8]) -> Result<Expiry, Reply> {
    let n = int_arg(arg).ok_or_else(|| Reply::error(NOT_INTEGER))?;
    let invalid = || {
        Reply::Error(Cow::Owned(format!(
            "ERR invalid expire time in '{}' command",
            lower(cmd)
        )))
    };
    if n <= 0 {
        return Err(invalid());
    }
    let ms_value = if ms { Some(n) } else { n.checked_mul(1000) };
    let ms_value = ms_value.ok_or_else(invalid)? as u64;
    Ok(if at {
        Expiry::At(ms_value)
    } else {
        Expiry::In(ms_value)
    })
}

/// GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]: a Get without
/// options, else one GetEx.
fn getex(rest: &[Bytes]) -> Plan {
    let key = rest[0].clone();
    let expiry = match &rest[1..] {
        [] => return kv(Finish::Get, vec![Op::Get { key }]),
        [opt] if is(opt, "PERSIST") => Expiry::Persist,
        [opt, arg] => match expiry_option(opt) {
            Some((ms, at)) => match expire_time(arg, ms, at, b"getex") {
                Ok(e) => e,
                Err(e) => return Plan::Reply(e),
            },
            None => return Plan::Reply(Reply::error(SYNTAX)),
        },
        _ => return Plan::Reply(Reply::error(SYNTAX)),
    };
    kv(Finish::GetDel, vec![Op::GetEx { key, expiry }])
}

/// EXPIRE/PEXPIRE key time [NX | XX | GT | LT], EXPIREAT/PEXPIREAT key
/// unix-time [...]: one Expire. A time not in the future (a negative
/// relative one included) deletes the key, as in Redis.
fn expire(name: &[u8], rest: &[Bytes]) -> Plan {
    let ms = is(name, "PEXPIRE") || is(name, "PEXPIREAT");
    let at = is(name, "EXPIREAT") || is(name, "PEXPIREAT");
    let Some(n) = int_arg(&rest[1]) else {
        return Plan::Reply(Reply::error(NOT_INTEGER));
    };
    let invalid = || {
        Plan::Reply(Reply::Error(Cow::Owned(format!(
            "ERR invalid expire time in '{}' command",
            lower(name)
        ))))
    };
    let Some(ms_value) = (if ms { Some(n) } else { n.checked_mul(1000) }) else {
        return invalid();
    };
    let expiry = match (at, ms_value) {
        // Not in the future: deletes the key (At(1) is before any log time).
        (_, t) if t <= 0 => Expiry::At(1),
        (true, t) => Expiry::At(t as u64),
        (false, t) => Expiry::In(t as u64),
    };
    let mut cond = ExpireCond::Always;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &rest[2..] {
        if is(opt, "NX") {
            nx = true;
            cond = ExpireCond::Nx;
        } else if is(opt, "XX") {
            xx = true;
            cond = ExpireCond::Xx;
        } else if is(opt, "GT") {
            gt = true;
            cond = ExpireCond::Gt;
        } else if is(opt, "LT") {
            lt = true;
            cond = ExpireCond::Lt;
        } else {
            return Plan::Reply(Reply::Error(Cow::Owned(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            ))));
        }
    }
    if nx && (xx || gt || lt) {
        return Plan::Reply(Reply::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Plan::Reply(Reply::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    // One condition travels: GT already implies XX (a key without expiry
    // never matches it). XX with LT runs as LT, so a key without expiry
    // matches (Redis refuses it): a difference stated in the README.
    if xx && gt {
        cond = ExpireCond::Gt;
    }
    kv(
        Finish::Expire,
        vec![Op::Expire {
            key: rest[0].clone(),
            expiry,
            cond,
        }],
    )
}

/// Commands answered by the gateway itself (arity of those in
/// [`COMMANDS`] already checked).
fn local(name: &[u8], rest: &[Bytes], session: &mut Session) -> Reply {
    let n = rest.len();
    let sub = rest.first().map(|s| s.as_ref()).unwrap_or(b"");
    if is(name, "PING") {
        match n {
            0 => Reply::Simple(Cow::Borrowed("PONG")),
            1 => Reply::Bulk(rest[0].clone()),
            _ => wrong_arity(name),
        }
    } else if is(name, "ECHO") {
        Reply::Bulk(rest[0].clone())
    } else if is(name, "HELLO") {
        hello(rest, session)
    } else if is(name, "AUTH") {
        match rest {
            [pass] => session.try_auth(None, pass),
            [user, pass] => session.try_auth(Some(user), pass),
            _ => Reply::error(SYNTAX),
        }
    } else if is(name, "RESET") {
        session.name = None;
        session.proto = 2;
        session.authed = false;
        session.lib_name = None;
        session.lib_ver = None;
        Reply::Simple(Cow::Borrowed("RESET"))
    } else if is(name, "CLIENT") {
        client(sub, &rest[1..], session)
    } else if is(name, "COMMAND") {
        command(sub, &rest[n.min(1)..])
    } else if is(name, "CONFIG") {
        if is(sub, "GET") {
            if n < 2 {
                return wrong_arity(b"config|get");
            }
            let pairs = CONFIG
                .iter()
                .filter(|(k, _)| {
                    rest[1..]
                        .iter()
                        .any(|p| glob_match(&p.to_ascii_lowercase(), k.as_bytes()))
                })
                .map(|(k, v)| (Reply::bulk_str(k), Reply::bulk_str(v)))
                .collect();
            Reply::Map(pairs)
        } else {
            Reply::error(
                "ERR only CONFIG GET is supported: Synod's settings are flags of synod-server",
            )
        }
    } else if is(name, "SELECT") {
        match int_arg(&rest[0]) {
            Some(0) => Reply::OK,
            Some(_) => Reply::error("ERR DB index is out of range (Synod has only database 0)"),
            None => Reply::error(NOT_INTEGER),
        }
    } else if is(name, "INFO") {
        Reply::Verbatim(info_text(rest))
    } else if is(name, "EXPIRETIME") || is(name, "PEXPIRETIME") {
        Reply::Error(Cow::Owned(format!(
            "ERR '{}' is not supported: use TTL or PTTL",
            lower(name)
        )))
    } else if is(name, "RANDOMKEY") {
        Reply::error(
            "ERR 'randomkey' is not supported: keys are spread over shards of independent groups (use SCAN)",
        )
    } else if let Some(what) = unsupported_type(name) {
        Reply::Error(Cow::Owned(format!(
            "ERR '{}' is not supported: Synod stores strings only, not {what} (see README's command table)",
            lower(name)
        )))
    } else {
        let mut msg = format!(
            "ERR unknown command '{}', with args beginning with: ",
            String::from_utf8_lossy(name)
        );
        for a in rest.iter().take(16) {
            msg.push_str(&format!(
                "'{}' ",
                String::from_utf8_lossy(&a[..a.len().min(128)])
            ));
        }
        Reply::Error(Cow::Owned(msg))
    }
}

/// COMMAND [COUNT | LIST | INFO name... | DOCS [name...]].
fn command(sub: &[u8], args: &[Bytes]) -> Reply {
    if sub.is_empty() {
        Reply::Array(COMMANDS.iter().map(command_info).collect())
    } else if is(sub, "COUNT") {
        Reply::Integer(COMMANDS.len() as i64)
    } else if is(sub, "LIST") {
        Reply::Array(COMMANDS.iter().map(|c| Reply::bulk_str(c.name)).collect())
    } else if is(sub, "INFO") {
        if args.is_empty() {
            return Reply::Array(COMMANDS.iter().map(command_info).collect());
        }
        Reply::Array(
            args.iter()
                .map(|a| find_command(a).map_or(Reply::Nil, command_info))
                .collect(),
        )
    } else if is(sub, "DOCS") {
        let pick: Vec<&CommandSpec> = if args.is_empty() {
            COMMANDS.iter().collect()
        } else {
            args.iter().filter_map(|a| find_command(a)).collect()
        };
        Reply::Map(
            pick.into_iter()
                .map(|c| (Reply::bulk_str(c.name), command_docs(c)))
                .collect(),
        )
    } else {
        Reply::Error(Cow::Owned(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(sub)
        )))
    }
}

/// HELLO [protover [AUTH user pass] [SETNAME name]].
fn hello(rest: &[Bytes], session: &mut Session) -> Reply {
    let Some((version, mut opts)) = rest.split_first() else {
        return hello_fields(session);
    };
    let proto = match int_arg(version) {
        Some(v @ 2..=3) => v as u8,
        Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
        None => return Reply::error("ERR Protocol version is not an integer or out of range"),
    };
    let mut name = None;
    while let Some((opt, more)) = opts.split_first() {
        if is(opt, "SETNAME") && !more.is_empty() {
            name = Some(more[0].clone());
            opts = &more[1..];
        } else if is(opt, "AUTH") && more.len() >= 2 {
            let reply = session.try_auth(Some(&more[0]), &more[1]);
            if reply != Reply::OK {
                return reply;
            }
            opts = &more[2..];
        } else {
            return Reply::Error(Cow::Owned(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    if session.locked() {
        return Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        );
    }
    if let Some(name) = name {
        if !valid_name(&name) {
            return Reply::error(BAD_NAME);
        }
        session.name = (!name.is_empty()).then_some(name);
    }
    session.proto = proto;
    hello_fields(session)
}

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// CLIENT subcommands. SETINFO is what redis-cli and client libraries send
/// to label the connection; CLIENT INFO shows it.
fn client(sub: &[u8], args: &[Bytes], session: &mut Session) -> Reply {
    if is(sub, "SETNAME") {
        match args {
            [name] if valid_name(name) => {
                session.name = (!name.is_empty()).then(|| name.clone());
                Reply::OK
            }
            [_] => Reply::error(BAD_NAME),
            _ => wrong_arity(b"client|setname"),
        }
    } else if is(sub, "GETNAME") {
        match &session.name {
            Some(n) => Reply::Bulk(n.clone()),
            None => Reply::Nil,
        }
    } else if is(sub, "ID") {
        Reply::Integer(session.id as i64)
    } else if is(sub, "SETINFO") {
        match args {
            [attr, value] if is(attr, "LIB-NAME") || is(attr, "LIB-VER") => {
                if !valid_name(value) {
                    return Reply::error(
                        "ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.",
                    );
                }
                let slot = if is(attr, "LIB-NAME") {
                    &mut session.lib_name
                } else {
                    &mut session.lib_ver
                };
                *slot = (!value.is_empty()).then(|| value.clone());
                Reply::OK
            }
            [attr, _] => Reply::Error(Cow::Owned(format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(attr)
            ))),
            _ => wrong_arity(b"client|setinfo"),
        }
    } else if is(sub, "INFO") || is(sub, "LIST") {
        Reply::Verbatim(client_line(session))
    } else {
        Reply::Error(Cow::Owned(format!(
            "ERR unknown subcommand '{}' for CLIENT (supported: SETNAME, GETNAME, ID, SETINFO, INFO, LIST)",
            String::from_utf8_lossy(sub)
        )))
    }
}

/// CLIENT INFO's line for this connection (the fields the gateway knows;
/// CLIENT LIST shows only the caller's own connection).
fn client_line(session: &Session) -> String {
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned())
    };
    format!(
        "id={} name={} db=0 multi=-1 resp={} lib-name={} lib-ver={}\n",
        session.id,
        text(&session.name),
        session.proto,
        text(&session.lib_name),
        text(&session.lib_ver)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn run(words: &[&str]) -> Plan {
        plan(&args(words), &mut Session::default())
    }

    fn reply(words: &[&str]) -> Reply {
        match run(words) {
            Plan::Reply(r) => r,
            other => panic!("{words:?}: expected an immediate reply, got {other:?}"),
        }
    }

    /// Every command `plan` dispatches, sent with no arguments and with one,
    /// answers (an error or a plan) and never panics: an index past the
    /// arguments in the gateway would abort the whole server.
    #[test]
    fn every_command_with_too_few_arguments_is_answered_not_a_panic() {
        let names = [
            "GET",
            "SET",
            "SETEX",
            "PSETEX",
            "GETEX",
            "EXPIRE",
            "PEXPIRE",
            "EXPIREAT",
            "PEXPIREAT",
            "PERSIST",
            "TTL",
            "PTTL",
            "APPEND",
            "STRLEN",
            "GETRANGE",
            "MGET",
            "MSET",
            "DEL",
            "UNLINK",
            "EXISTS",
            "MSETNX",
            "RENAME",
            "RENAMENX",
            "MULTI",
            "EXEC",
            "DISCARD",
            "WATCH",
            "UNWATCH",
            "TYPE",
            "PING",
            "ECHO",
            "HELLO",
            "AUTH",
            "CLIENT",
            "SELECT",
            "RESET",
            "COMMAND",
            "CONFIG",
            "INFO",
            "SETNX",
            "GETSET",
            "GETDEL",
            "INCR",
            "DECR",
            "INCRBY",
            "DECRBY",
            "DBSIZE",
            "KEYS",
            "SCAN",
            "FLUSHDB",
            "FLUSHALL",
            "RANDOMKEY",
            "EXPIRETIME",
            "PEXPIRETIME",
        ];
        for name in names {
            for words in [vec![name], vec![name, "k"]] {
                let _ = plan(&args(&words), &mut Session::default());
            }
        }
        for name in [
            "INCR", "DECR", "INCRBY", "DECRBY", "SETNX", "GETSET", "GETDEL",
        ] {
            match plan(&args(&[name]), &mut Session::default()) {
                Plan::Reply(r) => {
                    assert!(format!("{r:?}").contains("wrong number"), "{name}: {r:?}")
                }
                _ => panic!("{name} without a key was planned"),
            }
        }
    }

    fn kv_cmd(words: &[&str]) -> KvCommand {
        match run(words) {
            Plan::Kv(k) => k,
            other => panic!("{words:?}: expected KV ops, got {other:?}"),
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn is_error(r: &Reply, prefix: &str) -> bool {
        matches!(r, Reply::Error(e) if e.starts_with(prefix))
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(reply(&["pInG"]), Reply::Simple("PONG".into()));
        assert_eq!(kv_cmd(&["get", "k"]).ops, vec![Op::Get { key: b("k") }]);
    }

    #[test]
    fn ping_and_echo() {
        assert_eq!(reply(&["PING", "hi"]), Reply::Bulk(b("hi")));
        assert_eq!(reply(&["ECHO", "x"]), Reply::Bulk(b("x")));
        assert!(is_error(&reply(&["ECHO"]), "ERR wrong number"));
    }

    #[test]
    fn get_and_set_map_to_one_op() {
        let get = kv_cmd(&["GET", "k"]);
        assert_eq!(get.finish(vec![Ok(Some(b("v")))]), Reply::Bulk(b("v")));
        assert_eq!(get.finish(vec![Ok(None)]), Reply::Nil);
        let set = kv_cmd(&["SET", "k", "v"]);
        assert_eq!(
            set.ops,
            vec![Op::Put {
                key: b("k"),
                value: b("v")
            }]
        );
        assert_eq!(set.finish(vec![Ok(Some(Bytes::new()))]), Reply::OK);
    }

    #[test]
    fn set_options_become_one_put_if() {
        assert!(is_error(&reply(&["SET", "k"]), "ERR wrong number"));
        assert_eq!(reply(&["SET", "k", "v", "NX", "XX"]), Reply::error(SYNTAX));
        assert_eq!(reply(&["SET", "k", "v", "BOGUS"]), Reply::error(SYNTAX));
        let put_if = |cond, get_old| Op::PutIf {
            key: b("k"),
            value: b("v"),
            cond,
            get_old,
        };
        assert_eq!(
            kv_cmd(&["SET", "k", "v", "KEEPTTL"]).ops,
            vec![Op::PutEx {
                key: b("k"),
                value: b("v"),
                cond: PutCond::Any,
                get_old: false,
                expiry: Expiry::Keep,
            }]
        );
        let nx = kv_cmd(&["SET", "k", "v", "nx"]);
        assert_eq!(nx.ops, vec![put_if(PutCond::NotExists, false)]);
        assert_eq!(nx.finish(vec![Ok(Some(b("1")))]), Reply::OK);
        assert_eq!(nx.finish(vec![Ok(Some(b("0")))]), Reply::Nil);
        let xx_get = kv_cmd(&["SET", "k", "v", "XX", "GET"]);
        assert_eq!(xx_get.ops, vec![put_if(PutCond::Exists, true)]);
        assert_eq!(
            xx_get.finish(vec![Ok(Some(b("11old")))]),
            Reply::Bulk(b("old"))
        );
        assert_eq!(xx_get.finish(vec![Ok(Some(b("00")))]), Reply::Nil);
        assert!(is_error(
            &xx_get.finish(vec![Ok(Some(b("1x")))]),
            "ERR cluster protocol error"
        ));
        let setnx = kv_cmd(&["SETNX", "k", "v"]);
        assert_eq!(setnx.finish(vec![Ok(Some(b("0")))]), Reply::Integer(0));
        let getset = kv_cmd(&["GETSET", "k", "v"]);
        assert_eq!(getset.ops, vec![put_if(PutCond::Any, true)]);
        assert_eq!(getset.finish(vec![Ok(Some(b("10")))]), Reply::Nil);
        let getdel = kv_cmd(&["GETDEL", "k"]);
        assert_eq!(getdel.finish(vec![Ok(Some(b("1")))]), Reply::Bulk(b("")));
        assert_eq!(getdel.finish(vec![Ok(Some(b("0")))]), Reply::Nil);
    }

    #[test]
    fn expiry_commands_map_to_one_op_with_redis_replies_and_errors() {
        let ttl = kv_cmd(&["TTL", "k"]);
        assert_eq!(ttl.ops, vec![Op::Ttl { key: b("k") }]);
        assert_eq!(ttl.finish(vec![Ok(Some(b("-1")))]), Reply::Integer(-1));
        assert_eq!(ttl.finish(vec![Ok(None)]), Reply::Integer(-2));
        assert_eq!(ttl.finish(vec![Ok(Some(b("1499")))]), Reply::Integer(1));
        assert_eq!(ttl.finish(vec![Ok(Some(b("1500")))]), Reply::Integer(2));
        let pttl = kv_cmd(&["pttl", "k"]);
        assert_eq!(pttl.finish(vec![Ok(Some(b("1499")))]), Reply::Integer(1499));
        let persist = kv_cmd(&["PERSIST", "k"]);
        assert_eq!(
            persist.ops,
            vec![Op::Expire {
                key: b("k"),
                expiry: Expiry::Persist,
                cond: ExpireCond::Always
            }]
        );
        assert_eq!(persist.finish(vec![Ok(Some(b("1")))]), Reply::Integer(1));
        let ex = |w: &[&str]| match &kv_cmd(w).ops[..] {
            [Op::PutEx {
                expiry,
                cond,
                get_old,
                ..
            }] => (*expiry, *cond, *get_old),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ex(&["SET", "k", "v", "EX", "10"]),
            (Expiry::In(10_000), PutCond::Any, false)
        );
        assert_eq!(
            ex(&["SET", "k", "v", "px", "10", "NX", "GET"]),
            (Expiry::In(10), PutCond::NotExists, true)
        );
        assert_eq!(
            ex(&["SET", "k", "v", "XX", "EXAT", "7"]),
            (Expiry::At(7_000), PutCond::Exists, false)
        );
        assert_eq!(
            ex(&["SET", "k", "v", "PXAT", "7"]),
            (Expiry::At(7), PutCond::Any, false)
        );
        assert_eq!(ex(&["SETEX", "k", "3", "v"]).0, Expiry::In(3_000));
        assert_eq!(ex(&["PSETEX", "k", "3", "v"]).0, Expiry::In(3));
        for bad in [
            &["SET", "k", "v", "EX", "1", "PX", "1"][..],
            &["SET", "k", "v", "EX", "1", "KEEPTTL"],
            &["SET", "k", "v", "KEEPTTL", "EX", "1"],
            &["SET", "k", "v", "EX"],
            &["GETEX", "k", "FOO"],
            &["GETEX", "k", "EX", "1", "PX", "1"],
        ] {
            assert_eq!(reply(bad), Reply::error(SYNTAX), "{bad:?}");
        }
        assert_eq!(
            reply(&["SET", "k", "v", "EX", "x"]),
            Reply::error(NOT_INTEGER)
        );
        assert!(is_error(
            &reply(&["SET", "k", "v", "EX", "0"]),
            "ERR invalid expire time in 'set' command"
        ));
        assert!(is_error(
            &reply(&["SETEX", "k", "-1", "v"]),
            "ERR invalid expire time in 'setex' command"
        ));
        assert!(is_error(
            &reply(&["SET", "k", "v", "EX", "9223372036854775807"]),
            "ERR invalid expire time in 'set' command"
        ));
        let getex = kv_cmd(&["GETEX", "k", "EX", "5"]);
        assert_eq!(
            getex.ops,
            vec![Op::GetEx {
                key: b("k"),
                expiry: Expiry::In(5_000)
            }]
        );
        assert_eq!(getex.finish(vec![Ok(Some(b("1v")))]), Reply::Bulk(b("v")));
        assert_eq!(getex.finish(vec![Ok(Some(b("0")))]), Reply::Nil);
        assert_eq!(kv_cmd(&["GETEX", "k"]).ops, vec![Op::Get { key: b("k") }]);
        let exp = |w: &[&str]| match &kv_cmd(w).ops[..] {
            [Op::Expire { expiry, cond, .. }] => (*expiry, *cond),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            exp(&["EXPIRE", "k", "2"]),
            (Expiry::In(2_000), ExpireCond::Always)
        );
        assert_eq!(
            exp(&["PEXPIRE", "k", "2", "gt"]),
            (Expiry::In(2), ExpireCond::Gt)
        );
        assert_eq!(
            exp(&["EXPIREAT", "k", "2", "NX"]),
            (Expiry::At(2_000), ExpireCond::Nx)
        );
        assert_eq!(
            exp(&["PEXPIREAT", "k", "2", "LT"]),
            (Expiry::At(2), ExpireCond::Lt)
        );
        assert_eq!(
            exp(&["EXPIRE", "k", "-5"]),
            (Expiry::At(1), ExpireCond::Always)
        );
        assert!(is_error(
            &reply(&["EXPIRE", "k", "1", "NX", "XX"]),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        ));
        assert!(is_error(
            &reply(&["EXPIRE", "k", "1", "GT", "LT"]),
            "ERR GT and LT options at the same time are not compatible"
        ));
        assert!(is_error(
            &reply(&["EXPIRE", "k", "1", "FOO"]),
            "ERR Unsupported option FOO"
        ));
        assert_eq!(reply(&["EXPIRE", "k", "x"]), Reply::error(NOT_INTEGER));
        assert!(is_error(&reply(&["TTL"]), "ERR wrong number of arguments"));
        assert!(is_error(
            &reply(&["EXPIRE", "k"]),
            "ERR wrong number of arguments"
        ));
        assert!(is_error(
            &reply(&["SETEX", "k", "1"]),
            "ERR wrong number of arguments"
        ));
    }

    #[test]
    fn incr_family_is_one_incr_op() {
        let incr = |w: &[&str]| match &kv_cmd(w).ops[..] {
            [Op::Incr { delta, .. }] => *delta,
            other => panic!("{other:?}"),
        };
        assert_eq!(incr(&["INCR", "k"]), 1);
        assert_eq!(incr(&["DECR", "k"]), -1);
        assert_eq!(incr(&["INCRBY", "k", "-5"]), -5);
        assert_eq!(incr(&["DECRBY", "k", "5"]), -5);
        assert_eq!(reply(&["INCRBY", "k", "1.5"]), Reply::error(NOT_INTEGER));
        assert_eq!(reply(&["INCRBY", "k", "+1"]), Reply::error(NOT_INTEGER));
        assert_eq!(
            reply(&["DECRBY", "k", "-9223372036854775808"]),
            Reply::error("ERR decrement would overflow")
        );
        let cmd = kv_cmd(&["INCR", "k"]);
        assert_eq!(cmd.finish(vec![Ok(Some(b("-3")))]), Reply::Integer(-3));
        let refused = ClientError::Refused("value is not an integer or out of range".into());
        assert_eq!(cmd.finish(vec![Err(refused)]), Reply::error(NOT_INTEGER));
    }

    #[test]
    fn setrange_and_incrbyfloat_are_one_op_with_redis_refusals() {
        let sr = kv_cmd(&["SETRANGE", "k", "5", "ab"]);
        assert_eq!(
            sr.ops,
            vec![Op::SetRange {
                key: b("k"),
                offset: 5,
                value: b("ab")
            }]
        );
        assert_eq!(sr.finish(vec![Ok(Some(b("7")))]), Reply::Integer(7));
        assert!(is_error(
            &reply(&["SETRANGE", "k", "-1", "x"]),
            "ERR offset is out of range"
        ));
        assert!(is_error(&reply(&["SETRANGE", "k", "x", "x"]), NOT_INTEGER));
        assert!(is_error(
            &reply(&["SETRANGE", "k", "536870911", "xy"]),
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        ));
        // An empty value never writes, so it is never too large.
        assert!(matches!(
            run(&["SETRANGE", "k", "536870911", ""]),
            Plan::Kv(_)
        ));
        let f = kv_cmd(&["INCRBYFLOAT", "k", "0.1"]);
        assert_eq!(
            f.ops,
            vec![Op::IncrByFloat {
                key: b("k"),
                delta: b("0.1")
            }]
        );
        assert_eq!(f.finish(vec![Ok(Some(b("10.6")))]), Reply::Bulk(b("10.6")));
        assert_eq!(
            f.finish(vec![Err(ClientError::Refused(
                "value is not a valid float".into()
            ))]),
            Reply::error("ERR value is not a valid float")
        );
        assert!(is_error(
            &reply(&["INCRBYFLOAT", "k", "abc"]),
            "ERR value is not a valid float"
        ));
        assert!(is_error(
            &reply(&["INCRBYFLOAT", "k", "nan"]),
            "ERR value is not a valid float"
        ));
    }

    #[test]
    fn append_is_an_append_then_a_get_and_answers_the_length_read() {
        let cmd = kv_cmd(&["APPEND", "k", "xy"]);
        assert_eq!(
            cmd.ops,
            vec![
                Op::Append {
                    key: b("k"),
                    value: b("xy")
                },
                Op::Get { key: b("k") }
            ]
        );
        assert_eq!(
            cmd.finish(vec![Ok(Some(Bytes::new())), Ok(Some(b("abxy")))]),
            Reply::Integer(4)
        );
        // A failed Append is reported even if the Get worked.
        let r = cmd.finish(vec![Err(ClientError::Timeout), Ok(Some(b("ab")))]);
        assert!(is_error(&r, "TIMEOUT"));
    }

    #[test]
    fn a_password_locks_everything_but_ping_auth_hello_quit() {
        let mut s = Session {
            password: Some(std::sync::Arc::from(&b"pw"[..])),
            ..Session::default()
        };
        let mut call = |w: &[&str]| match plan(&args(w), &mut s) {
            Plan::Reply(r) => r,
            Plan::Quit => Reply::OK,
            Plan::Kv(_) => Reply::Simple(Cow::Borrowed("KV")),
        };
        let noauth = Reply::error(NOAUTH);
        assert_eq!(call(&["GET", "k"]), noauth);
        assert_eq!(call(&["ECHO", "x"]), noauth);
        assert_eq!(call(&["PING"]), Reply::Simple(Cow::Borrowed("PONG")));
        assert_eq!(call(&["AUTH", "p"]), Reply::error(WRONGPASS));
        assert_eq!(call(&["AUTH", "bob", "pw"]), Reply::error(WRONGPASS));
        assert!(is_error(&call(&["AUTH"]), "ERR wrong number"));
        assert!(is_error(&call(&["HELLO", "2"]), "NOAUTH"));
        assert_eq!(call(&["GET", "k"]), noauth);
        assert_eq!(call(&["AUTH", "default", "pw"]), Reply::OK);
        assert_eq!(call(&["GET", "k"]), Reply::Simple(Cow::Borrowed("KV")));
        // Without a password, AUTH is refused as Redis refuses it.
        let mut open = Session::default();
        let r = match plan(&args(&["AUTH", "pw"]), &mut open) {
            Plan::Reply(r) => r,
            other => panic!("{other:?}"),
        };
        assert!(is_error(&r, "ERR AUTH <password> called without"));
        assert!(matches!(plan(&args(&["GET", "k"]), &mut open), Plan::Kv(_)));
    }

    #[test]
    fn del_and_exists_count_keys() {
        let del = kv_cmd(&["DEL", "a", "b", "c"]);
        assert_eq!(del.ops.len(), 3);
        let r = del.finish(vec![Ok(Some(b("1"))), Ok(Some(b("0"))), Ok(Some(b("1")))]);
        assert_eq!(r, Reply::Integer(2));
        let ex = kv_cmd(&["EXISTS", "a", "a"]);
        assert_eq!(
            ex.finish(vec![Ok(Some(Bytes::new())), Ok(Some(b("v")))]),
            Reply::Integer(2)
        );
        assert!(is_error(&reply(&["DEL"]), "ERR wrong number"));
    }

    #[test]
    fn mget_and_mset() {
        let mget = kv_cmd(&["MGET", "a", "b"]);
        assert_eq!(
            mget.finish(vec![Ok(Some(b("1"))), Ok(None)]),
            Reply::Array(vec![Reply::Bulk(b("1")), Reply::Nil])
        );
        assert!(is_error(
            &mget.finish(vec![Ok(None), Err(ClientError::Timeout)]),
            "TIMEOUT"
        ));
        let mset = kv_cmd(&["MSET", "a", "1", "b", "2"]);
        assert_eq!(mset.ops.len(), 2);
        assert!(is_error(&reply(&["MSET", "a"]), "ERR wrong number"));
    }

    #[test]
    fn client_errors_map_to_redis_error_codes() {
        let get = kv_cmd(&["GET", "k"]);
        for (e, code) in [
            (ClientError::Timeout, "TIMEOUT "),
            (ClientError::Unreachable("no route".into()), "CLUSTERDOWN "),
            (ClientError::Refused("stale".into()), "ERR stale"),
            (ClientError::TooLarge, "ERR value too large"),
            (ClientError::Protocol("x".into()), "ERR "),
        ] {
            let r = get.finish(vec![Err(e)]);
            assert!(is_error(&r, code), "{r:?}");
        }
    }

    #[test]
    fn hello_chooses_the_protocol_and_answers_redis_fields() {
        let mut s = Session {
            id: 9,
            ..Session::default()
        };
        let mut go = |w: &[&str]| match plan(&args(w), &mut s) {
            Plan::Reply(r) => r,
            other => panic!("{other:?}"),
        };
        assert!(is_error(&go(&["HELLO", "4"]), "NOPROTO"));
        assert!(is_error(&go(&["HELLO", "x"]), "ERR Protocol version"));
        let Reply::Map(fields) = go(&["HELLO", "3", "SETNAME", "me"]) else {
            panic!("HELLO answers a map")
        };
        let keys: Vec<_> = fields.iter().map(|(k, _)| k.clone()).collect();
        let want: Vec<_> = [
            "server", "version", "proto", "id", "mode", "role", "modules",
        ]
        .iter()
        .map(|k| Reply::bulk_str(k))
        .collect();
        assert_eq!(keys, want);
        assert_eq!(fields[2].1, Reply::Integer(3));
        assert_eq!(fields[3].1, Reply::Integer(9));
        assert_eq!(s.proto, 3);
        assert_eq!(s.name, Some(b("me")));
        // A failed HELLO leaves the protocol as it was.
        plan(&args(&["HELLO", "2", "BOGUS"]), &mut s);
        assert_eq!(s.proto, 3);
        plan(&args(&["RESET"]), &mut s);
        assert_eq!((s.proto, s.name.clone()), (2, None));
        // HELLO AUTH with the passwordless default user succeeds, as in Redis.
        assert!(matches!(
            plan(&args(&["HELLO", "3", "AUTH", "default", "x"]), &mut s),
            Plan::Reply(Reply::Map(_))
        ));
    }

    #[test]
    fn strlen_getrange_type_read_one_get() {
        let strlen = kv_cmd(&["STRLEN", "k"]);
        assert_eq!(strlen.ops, vec![Op::Get { key: b("k") }]);
        assert_eq!(strlen.finish(vec![Ok(Some(b("abc")))]), Reply::Integer(3));
        assert_eq!(strlen.finish(vec![Ok(None)]), Reply::Integer(0));
        let ty = kv_cmd(&["TYPE", "k"]);
        assert_eq!(ty.finish(vec![Ok(None)]), Reply::Simple("none".into()));
        assert_eq!(
            ty.finish(vec![Ok(Some(b("")))]),
            Reply::Simple("string".into())
        );
        // Redis' own examples for GETRANGE on "This is a string".
        let v = "This is a string";
        for (start, end, want) in [
            ("0", "3", "This"),
            ("-3", "-1", "ing"),
            ("0", "-1", v),
            ("10", "100", "string"),
            ("5", "3", ""),
            ("-1", "-5", ""),
            ("-100", "2", "Thi"),
        ] {
            let cmd = kv_cmd(&["GETRANGE", "k", start, end]);
            assert_eq!(
                cmd.finish(vec![Ok(Some(b(v)))]),
                Reply::Bulk(b(want)),
                "{start} {end}"
            );
        }
        assert_eq!(
            kv_cmd(&["GETRANGE", "k", "0", "1"]).finish(vec![Ok(None)]),
            Reply::Bulk(b(""))
        );
        assert_eq!(
            reply(&["GETRANGE", "k", "a", "1"]),
            Reply::error(NOT_INTEGER)
        );
        assert!(is_error(
            &reply(&["GETRANGE", "k", "1"]),
            "ERR wrong number"
        ));
    }

    #[test]
    fn other_data_types_and_transactions_are_refused_by_name() {
        let r = reply(&["HSET", "h", "f", "v"]);
        assert!(
            is_error(
                &r,
                "ERR 'hset' is not supported: Synod stores strings only, not hashes"
            ),
            "{r:?}"
        );
        assert!(is_error(
            &reply(&["lpush", "l", "x"]),
            "ERR 'lpush' is not supported"
        ));
        assert!(is_error(&reply(&["FLUSHDB"]), "ERR FLUSHDB is disabled"));
        assert!(is_error(&reply(&["FLUSHALL"]), "ERR FLUSHDB is disabled"));
    }

    #[test]
    fn client_setname_getname_id() {
        let mut s = Session {
            id: 7,
            ..Session::default()
        };
        let mut go = |w: &[&str]| match plan(&args(w), &mut s) {
            Plan::Reply(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(go(&["CLIENT", "GETNAME"]), Reply::Nil);
        assert_eq!(go(&["CLIENT", "SETNAME", "bob"]), Reply::OK);
        assert_eq!(go(&["client", "getname"]), Reply::Bulk(b("bob")));
        assert_eq!(go(&["CLIENT", "ID"]), Reply::Integer(7));
        assert_eq!(go(&["CLIENT", "SETINFO", "lib-name", "x"]), Reply::OK);
        assert!(is_error(
            &go(&["CLIENT", "SETINFO", "color", "x"]),
            "ERR Unrecognized option"
        ));
        assert_eq!(
            go(&["CLIENT", "INFO"]),
            Reply::Verbatim("id=7 name=bob db=0 multi=-1 resp=2 lib-name=x lib-ver=\n".into())
        );
        assert!(is_error(&go(&["CLIENT", "KILL"]), "ERR unknown subcommand"));
    }

    #[test]
    fn startup_handshakes_of_redis_tools_get_harmless_answers() {
        let Reply::Array(all) = reply(&["COMMAND"]) else {
            panic!("COMMAND answers an array")
        };
        assert_eq!(
            reply(&["COMMAND", "COUNT"]),
            Reply::Integer(all.len() as i64)
        );
        assert!(matches!(reply(&["COMMAND", "DOCS"]), Reply::Map(m) if m.len() == all.len()));
        assert_eq!(
            reply(&["COMMAND", "INFO", "get", "nope"]),
            Reply::Array(vec![
                command_info(find_command(b"get").unwrap()),
                Reply::Nil
            ])
        );
        assert_eq!(
            reply(&["CONFIG", "GET", "save", "data*"]),
            Reply::Map(vec![
                (Reply::bulk_str("databases"), Reply::bulk_str("1")),
                (Reply::bulk_str("save"), Reply::bulk_str("")),
            ])
        );
        assert_eq!(reply(&["SELECT", "0"]), Reply::OK);
        assert!(is_error(&reply(&["SELECT", "1"]), "ERR DB index"));
        assert!(
            matches!(reply(&["INFO"]), Reply::Verbatim(t) if t.contains("redis_version:") && t.contains("# Keyspace"))
        );
        assert!(
            matches!(reply(&["INFO", "keyspace"]), Reply::Verbatim(t) if t == "# Keyspace\r\n")
        );
        // The gateway of a cluster whose shard count it knows asks every
        // shard.
        let mut s = Session {
            shards: 4,
            ..Session::default()
        };
        assert!(matches!(plan(&args(&["DBSIZE"]), &mut s), Plan::Kv(c) if c.ops.len() == 4));
    }

    #[test]
    fn quit_and_unknown_commands() {
        assert_eq!(run(&["quit"]), Plan::Quit);
        assert_eq!(
            reply(&["FOO", "a"]),
            Reply::error("ERR unknown command 'FOO', with args beginning with: 'a' ")
        );
    }
}
