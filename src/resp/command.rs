//! Redis commands mapped onto Synod operations. Sans-IO: [`plan`] turns a
//! command's arguments into either an immediate reply (connection-local
//! commands such as PING or CLIENT SETNAME) or a list of KV [`Op`]s plus the
//! rule that turns their results into the command's reply ([`KvCommand`]).
//! The gateway runs the ops; nothing here touches a socket or the cluster.
//!
//! Supported: GET, SET key value (no options), APPEND, DEL, EXISTS, MGET,
//! MSET, PING, ECHO, QUIT, HELLO [2] [AUTH user pass], AUTH [default] password
//! (with `synod-server --resp-password-file`; until then every command but
//! PING, AUTH, HELLO and QUIT answers `-NOAUTH`),
//! CLIENT SETNAME/GETNAME/ID/SETINFO, COMMAND [COUNT|DOCS|...], CONFIG GET,
//! SELECT 0, INFO, DBSIZE (refused). Everything else is
//! `-ERR unknown command`.

use std::borrow::Cow;

use bytes::Bytes;
use synod_wire::Op;

use super::reply::Reply;
use crate::client::{ClientError, OpResult};

/// Connection-local state a few commands read or set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// Returned by CLIENT ID and HELLO; unique per gateway.
    pub id: u64,
    /// Set by CLIENT SETNAME (or HELLO SETNAME).
    pub name: Option<Bytes>,
    /// The password this connection must AUTH with (`None`: no password).
    pub password: Option<std::sync::Arc<[u8]>>,
    /// AUTH succeeded on this connection.
    pub authed: bool,
}

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

impl Session {
    /// Commands are refused until AUTH.
    fn locked(&self) -> bool {
        self.password.is_some() && !self.authed
    }

    /// Checks `user`/`pass` (Redis' only user is "default"), in constant
    /// time in the password's content.
    fn try_auth(&mut self, user: Option<&[u8]>, pass: &[u8]) -> Reply {
        let Some(want) = &self.password else {
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
}

impl KvCommand {
    /// The reply, given one result per op (same order as [`Self::ops`]).
    pub fn finish(&self, results: Vec<OpResult>) -> Reply {
        assert_eq!(results.len(), self.ops.len(), "one result per op");
        match self.finish {
            Finish::Get => match results.into_iter().next() {
                Some(Ok(Some(v))) => Reply::Bulk(v),
                Some(Ok(None)) => Reply::Nil,
                Some(Err(e)) => error_reply(&e),
                None => unreachable!("GET has one op"),
            },
            Finish::Set | Finish::MSet => match first_error(&results) {
                Some(e) => e,
                None => Reply::OK,
            },
            Finish::Append => {
                // The Append's outcome decides; the Get only measures.
                if let Some(e) = first_error(&results[..1]) {
                    return e;
                }
                match &results[1] {
                    Ok(v) => Reply::Integer(v.as_ref().map_or(0, |v| v.len() as i64)),
                    Err(e) => error_reply(e),
                }
            }
            Finish::Del => {
                if let Some(e) = first_error(&results) {
                    return e;
                }
                let removed = results
                    .iter()
                    .filter(|r| matches!(r, Ok(Some(v)) if v.as_ref() == b"1"))
                    .count();
                Reply::Integer(removed as i64)
            }
            Finish::Exists => {
                if let Some(e) = first_error(&results) {
                    return e;
                }
                Reply::Integer(results.iter().filter(|r| matches!(r, Ok(Some(_)))).count() as i64)
            }
            Finish::MGet => Reply::Array(
                results
                    .into_iter()
                    .map(|r| match r {
                        Ok(Some(v)) => Reply::Bulk(v),
                        Ok(None) => Reply::Nil,
                        // MGET has no per-key error slot in Redis; a failed
                        // key reads as nil would hide the failure, so the
                        // whole reply becomes the error below instead.
                        Err(e) => error_reply(&e),
                    })
                    .collect::<Vec<_>>(),
            )
            .flatten_errors(),
        }
    }
}

impl Reply {
    /// An array with an error inside becomes that error: a client of MGET
    /// expects bulk strings or nils, never an error element.
    fn flatten_errors(self) -> Reply {
        match self {
            Reply::Array(items) => match items.iter().find(|r| matches!(r, Reply::Error(_))) {
                Some(e) => e.clone(),
                None => Reply::Array(items),
            },
            other => other,
        }
    }
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

fn wrong_arity(name: &[u8]) -> Reply {
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

fn is(word: &[u8], name: &str) -> bool {
    word.eq_ignore_ascii_case(name.as_bytes())
}

/// The server's self-description for HELLO (RESP2: a flat array of
/// field/value pairs, where RESP3 would send a map).
fn hello_fields(session: &Session) -> Reply {
    Reply::Array(vec![
        Reply::bulk_str("server"),
        Reply::bulk_str("synod"),
        Reply::bulk_str("version"),
        Reply::bulk_str(env!("CARGO_PKG_VERSION")),
        Reply::bulk_str("proto"),
        Reply::Integer(2),
        Reply::bulk_str("id"),
        Reply::Integer(session.id as i64),
        Reply::bulk_str("mode"),
        Reply::bulk_str("standalone"),
        Reply::bulk_str("role"),
        Reply::bulk_str("master"),
        Reply::bulk_str("modules"),
        Reply::Array(Vec::new()),
    ])
}

/// INFO's text. `redis_version` is there because client libraries
/// feature-detect on it; 7.0.0 names the command set whose RESP2 subset the
/// gateway follows, not a claim to be Redis.
fn info_text() -> String {
    format!(
        "# Server\r\nredis_version:7.0.0\r\nsynod_version:{}\r\nredis_mode:standalone\r\n\
         # Synod\r\nsynod_gateway:resp2\r\nsynod_consistency:linearizable per key\r\n",
        env!("CARGO_PKG_VERSION")
    )
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
    if session.locked() && !(is(name, "AUTH") || is(name, "HELLO") || is(name, "PING")) {
        return Plan::Reply(Reply::error(NOAUTH));
    }
    if is(name, "GET") {
        if n != 1 {
            return Plan::Reply(wrong_arity(name));
        }
        kv(Finish::Get, key_op(|key| Op::Get { key }))
    } else if is(name, "SET") {
        match n {
            2 => kv(
                Finish::Set,
                vec![Op::Put {
                    key: rest[0].clone(),
                    value: rest[1].clone(),
                }],
            ),
            0 | 1 => Plan::Reply(wrong_arity(name)),
            _ => Plan::Reply(Reply::Error(Cow::Owned(format!(
                "ERR SET options are not supported by Synod (got '{}'): only SET key value",
                String::from_utf8_lossy(&rest[2])
            )))),
        }
    } else if is(name, "APPEND") {
        if n != 2 {
            return Plan::Reply(wrong_arity(name));
        }
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
        if n == 0 {
            return Plan::Reply(wrong_arity(name));
        }
        kv(Finish::Del, key_op(|key| Op::Delete { key }))
    } else if is(name, "EXISTS") {
        if n == 0 {
            return Plan::Reply(wrong_arity(name));
        }
        kv(Finish::Exists, key_op(|key| Op::Get { key }))
    } else if is(name, "MGET") {
        if n == 0 {
            return Plan::Reply(wrong_arity(name));
        }
        kv(Finish::MGet, key_op(|key| Op::Get { key }))
    } else if is(name, "MSET") {
        if n == 0 || n % 2 != 0 {
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

/// Commands answered by the gateway itself.
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
        if n != 1 {
            return wrong_arity(name);
        }
        Reply::Bulk(rest[0].clone())
    } else if is(name, "HELLO") {
        hello(rest, session)
    } else if is(name, "AUTH") {
        match rest {
            [pass] => session.try_auth(None, pass),
            [user, pass] => session.try_auth(Some(user), pass),
            _ => wrong_arity(name),
        }
    } else if is(name, "CLIENT") {
        client(sub, &rest[n.min(1)..], session)
    } else if is(name, "COMMAND") {
        // redis-cli asks for COMMAND DOCS at start-up for its hints; an empty
        // answer makes it run without hints rather than fail.
        if n > 0 && is(sub, "COUNT") {
            Reply::Integer(0)
        } else {
            Reply::Array(Vec::new())
        }
    } else if is(name, "CONFIG") {
        // redis-benchmark asks for "save" and "appendonly"; an empty answer
        // means "nothing to report", which it handles.
        if n >= 2 && is(sub, "GET") {
            Reply::Array(Vec::new())
        } else if n >= 1 && is(sub, "GET") {
            wrong_arity(b"config|get")
        } else {
            Reply::error("ERR only CONFIG GET is supported, and it reports nothing")
        }
    } else if is(name, "SELECT") {
        match rest {
            [db] if db.as_ref() == b"0" => Reply::OK,
            [_] => Reply::error("ERR DB index is out of range (Synod has only database 0)"),
            _ => wrong_arity(name),
        }
    } else if is(name, "INFO") {
        Reply::bulk_str(&info_text())
    } else if is(name, "DBSIZE") {
        Reply::error(
            "ERR DBSIZE is not supported: keys are spread over shards of independent groups",
        )
    } else {
        Reply::Error(Cow::Owned(format!(
            "ERR unknown command '{}'",
            String::from_utf8_lossy(name)
        )))
    }
}

/// HELLO [protover [AUTH user pass] [SETNAME name]].
fn hello(rest: &[Bytes], session: &mut Session) -> Reply {
    let Some((version, mut opts)) = rest.split_first() else {
        return hello_fields(session);
    };
    if version.as_ref() != b"2" {
        return Reply::error("NOPROTO unsupported protocol version: this server speaks RESP2 only");
    }
    let mut name = None;
    while let Some((opt, more)) = opts.split_first() {
        if is(opt, "SETNAME") && !more.is_empty() {
            name = Some(more[0].clone());
            opts = &more[1..];
        } else if is(opt, "AUTH") && more.len() >= 2 {
            if session.password.is_none() {
                return Reply::error("ERR AUTH is not supported: no password is configured");
            }
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
        session.name = Some(name);
    }
    hello_fields(session)
}

/// CLIENT subcommands. SETINFO is what redis-cli and client libraries send
/// to label the connection; accepting it politely keeps them quiet.
fn client(sub: &[u8], args: &[Bytes], session: &mut Session) -> Reply {
    if is(sub, "SETNAME") {
        match args {
            [name] if !name.iter().any(|b| *b == b' ' || *b == b'\n') => {
                session.name = (!name.is_empty()).then(|| name.clone());
                Reply::OK
            }
            [_] => Reply::error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
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
        Reply::OK
    } else {
        Reply::Error(Cow::Owned(format!(
            "ERR unknown subcommand '{}' for CLIENT (supported: SETNAME, GETNAME, ID, SETINFO)",
            String::from_utf8_lossy(sub)
        )))
    }
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
    fn set_options_are_refused_clearly() {
        let r = reply(&["SET", "k", "v", "EX", "10"]);
        assert!(is_error(&r, "ERR SET options are not supported"), "{r:?}");
        assert!(is_error(&reply(&["SET", "k"]), "ERR wrong number"));
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
    fn hello_speaks_resp2_only() {
        assert!(is_error(&reply(&["HELLO", "3"]), "NOPROTO"));
        let Reply::Array(fields) = reply(&["HELLO", "2"]) else {
            panic!("HELLO 2 answers an array")
        };
        assert_eq!(fields[0], Reply::bulk_str("server"));
        assert!(fields.contains(&Reply::Integer(2)));
        let mut s = Session::default();
        plan(&args(&["HELLO", "2", "SETNAME", "me"]), &mut s);
        assert_eq!(s.name, Some(b("me")));
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
        assert!(is_error(&go(&["CLIENT", "KILL"]), "ERR unknown subcommand"));
    }

    #[test]
    fn startup_handshakes_of_redis_tools_get_harmless_answers() {
        assert_eq!(reply(&["COMMAND"]), Reply::Array(vec![]));
        assert_eq!(reply(&["COMMAND", "DOCS"]), Reply::Array(vec![]));
        assert_eq!(reply(&["COMMAND", "COUNT"]), Reply::Integer(0));
        assert_eq!(reply(&["CONFIG", "GET", "save"]), Reply::Array(vec![]));
        assert_eq!(reply(&["SELECT", "0"]), Reply::OK);
        assert!(is_error(&reply(&["SELECT", "1"]), "ERR DB index"));
        assert!(matches!(reply(&["INFO"]), Reply::Bulk(_)));
        assert!(is_error(&reply(&["DBSIZE"]), "ERR DBSIZE is not supported"));
    }

    #[test]
    fn quit_and_unknown_commands() {
        assert_eq!(run(&["quit"]), Plan::Quit);
        assert_eq!(
            reply(&["FLUSHALL"]),
            Reply::error("ERR unknown command 'FLUSHALL'")
        );
    }
}
