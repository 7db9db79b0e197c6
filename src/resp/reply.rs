//! RESP2 replies and their bytes. Sans-IO: replies are appended to a buffer
//! the gateway writes in one system call.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

/// One RESP2 reply.
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
    /// `$-1`: the RESP2 null (a missing key).
    Nil,
    /// `*n` then each element.
    Array(Vec<Reply>),
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

    /// Appends this reply's bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
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
            Reply::Nil => out.put_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                out.put_u8(b'*');
                out.put_slice(items.len().to_string().as_bytes());
                out.put_slice(b"\r\n");
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
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

    #[test]
    fn line_breaks_in_status_and_error_texts_cannot_split_the_reply() {
        assert_eq!(
            bytes(&Reply::error("ERR a\r\nb")),
            b"-ERR a  b\r\n".to_vec()
        );
    }
}
