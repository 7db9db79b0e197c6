//! RESP2 and RESP3 replies and their bytes. Sans-IO: replies are appended
//! to a buffer the gateway writes in one system call. A reply is built once
//! in RESP3 terms (maps, nulls, booleans, doubles, verbatim strings) and
//! encoded in the protocol the connection chose with HELLO: RESP2 gets the
//! types Redis itself sends a RESP2 client (a map as a flat array, a
//! boolean as 1 or 0, a double as a bulk string, a null as `$-1`).

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+text` (a status such as `OK` or `PONG`).
    Simple(Cow<'static, str>),
    /// `-CODE text`: the first word is the error code clients switch on
    /// (`ERR`, `TIMEOUT`, `CLUSTERDOWN`, `NOPROTO`).
    Error(Cow<'static, str>),
    /// `:n`.
    Integer(i64),
    /// `$len\r\nbytes`.
    Bulk(Bytes),
    /// The null of a missing key: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// `*n` then each element.
    Array(Vec<Reply>),
    /// The null array of an EXEC whose WATCHed key changed: `*-1` in
    /// RESP2, `_` in RESP3.
    NilArray,
    /// RESP3 `%n` then key, value pairs; a flat `*2n` array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `#t`/`#f`; `:1`/`:0` in RESP2.
    Bool(bool),
    /// RESP3 `,` double, kept as its decimal text (Redis' formatting is
    /// the caller's); a bulk string in RESP2.
    Double(String),
    /// RESP3 `=len\r\ntxt:...` verbatim text (INFO, CLIENT INFO); a bulk
    /// string in RESP2.
    Verbatim(String),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple(Cow::Borrowed("OK"));

    /// An error reply; `text` starts with its code (`ERR ...`).
    pub fn error(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Error(text.into())
    }

    /// A bulk string copied from a `&str` (for fixed texts and numbers).
    pub fn bulk_str(text: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// Appends this reply's RESP2 bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_proto(out, 2)
    }

    /// Appends this reply's bytes to `out` in protocol `proto` (2 or 3).
    pub fn encode_proto(&self, out: &mut BytesMut, proto: u8) {
        let resp3 = proto >= 3;
        match self {
            Reply::Simple(s) => line(out, b'+', s),
            Reply::Error(s) => line(out, b'-', s),
            Reply::Integer(n) => {
                out.put_u8(b':');
                out.put_slice(n.to_string().as_bytes());
                out.put_slice(b"\r\n");
            }
            Reply::Bulk(b) => {
                out.put_u8(b'$');
                out.put_slice(b.len().to_string().as_bytes());
                out.put_slice(b"\r\n");
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Reply::Nil if resp3 => out.put_slice(b"_\r\n"),
            Reply::Nil => out.put_slice(b"$-1\r\n"),
            Reply::NilArray if resp3 => out.put_slice(b"_\r\n"),
            Reply::NilArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                header(out, b'*', items.len());
                for item in items {
                    item.encode_proto(out, proto);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    header(out, b'%', pairs.len());
                } else {
                    header(out, b'*', 2 * pairs.len());
                }
                for (k, v) in pairs {
                    k.encode_proto(out, proto);
                    v.encode_proto(out, proto);
                }
            }
            Reply::Bool(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Reply::Bool(b) => out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
            Reply::Double(d) if resp3 => line(out, b',', d),
            Reply::Double(d) => Reply::bulk_str(d).encode_proto(out, proto),
            Reply::Verbatim(text) if resp3 => {
                header(out, b'=', text.len() + 4);
                out.put_slice(b"txt:");
                out.put_slice(text.as_bytes());
                out.put_slice(b"\r\n");
            }
            Reply::Verbatim(text) => Reply::bulk_str(text).encode_proto(out, proto),
        }
    }
}

fn header(out: &mut BytesMut, prefix: u8, n: usize) {
    out.put_u8(prefix);
    out.put_slice(n.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

/// A simple string or error line. CR and LF become spaces: they would end
/// the line early and desynchronize the client, and error texts can carry
/// server-side reasons we do not control.
fn line(out: &mut BytesMut, prefix: u8, text: &str) {
    out.put_u8(prefix);
    for &b in text.as_bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(r: &Reply) -> Vec<u8> {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn every_reply_kind_encodes_as_resp2() {
        assert_eq!(bytes(&Reply::OK), b"+OK\r\n");
        assert_eq!(bytes(&Reply::error("ERR no")), b"-ERR no\r\n");
        assert_eq!(bytes(&Reply::Integer(-3)), b":-3\r\n");
        assert_eq!(bytes(&Reply::bulk_str("hi")), b"$2\r\nhi\r\n");
        assert_eq!(bytes(&Reply::Bulk(Bytes::new())), b"$0\r\n\r\n");
        assert_eq!(bytes(&Reply::Nil), b"$-1\r\n");
        assert_eq!(bytes(&Reply::Array(vec![])), b"*0\r\n");
        assert_eq!(
            bytes(&Reply::Array(vec![Reply::Integer(1), Reply::Nil])),
            b"*2\r\n:1\r\n$-1\r\n"
        );
    }

    fn bytes3(r: &Reply) -> Vec<u8> {
        let mut out = BytesMut::new();
        r.encode_proto(&mut out, 3);
        out.to_vec()
    }

    #[test]
    fn resp3_types_and_their_resp2_fallbacks() {
        let map = Reply::Map(vec![(Reply::bulk_str("a"), Reply::Integer(1))]);
        assert_eq!(bytes3(&map), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(bytes(&map), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(bytes3(&Reply::Nil), b"_\r\n");
        assert_eq!(bytes3(&Reply::Array(vec![Reply::Nil])), b"*1\r\n_\r\n");
        assert_eq!(bytes3(&Reply::Bool(true)), b"#t\r\n");
        assert_eq!(bytes(&Reply::Bool(false)), b":0\r\n");
        assert_eq!(bytes3(&Reply::Double("1.5".into())), b",1.5\r\n");
        assert_eq!(bytes(&Reply::Double("1.5".into())), b"$3\r\n1.5\r\n");
        assert_eq!(bytes3(&Reply::Verbatim("hi".into())), b"=6\r\ntxt:hi\r\n");
        assert_eq!(bytes(&Reply::Verbatim("hi".into())), b"$2\r\nhi\r\n");
    }

    #[test]
    fn line_breaks_in_status_and_error_texts_cannot_split_the_reply() {
        assert_eq!(
            bytes(&Reply::error("ERR a\r\nb")),
            b"-ERR a  b\r\n".to_vec()
        );
    }
}
