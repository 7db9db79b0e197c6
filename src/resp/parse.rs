//! The RESP2 request parser: bytes from a socket in, commands (lists of
//! arguments) out. Sans-IO: it never reads a socket, so it is tested on
//! plain byte buffers.
//!
//! Two request forms are accepted, as Redis does:
//! - multibulk: `*<n>\r\n` then `n` bulk strings `$<len>\r\n<bytes>\r\n`
//!   (what every client library and `redis-benchmark` send);
//! - inline: one line of space-separated words ending in `\n` (what a human
//!   types into `telnet` or `nc`). Quotes are not interpreted, so an inline
//!   argument cannot contain a space; use multibulk for that.
//!
//! What it must never do, because its input comes from the network: panic
//! on any input, or reserve memory because a header *declared* a size. Every
//! declared length is checked against a limit first, and arguments are
//! collected one by one as their bytes actually arrive, so memory follows
//! the bytes received (which the gateway caps), never the bytes promised.
//! Parsed arguments are slices of the read buffer (no copy).

use std::fmt;

use bytes::{Bytes, BytesMut};

/// Largest bulk string (one argument) accepted. Matches the wire protocol's
/// frame limit: a larger value could never be stored anyway.
pub const BULK_BYTES_MAX: usize = 16 << 20;
/// Most arguments in one multibulk command.
pub const ARRAY_LEN_MAX: usize = 1 << 20;
/// Longest inline command line (Redis uses the same 64 KiB).
pub const INLINE_BYTES_MAX: usize = 64 << 10;
/// Longest `*<n>` / `$<n>` header line, `\r\n` included: 20 digits and a
/// sign fit. A longer one is garbage, refused before it is buffered further.
const HEADER_LINE_MAX: usize = 24;

/// Why a request stream cannot be parsed. Every variant is terminal for the
/// connection (after it the stream cannot be trusted to be aligned on a
/// command boundary): the gateway answers `-ERR <this>` and closes, as Redis
/// does on a protocol error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// `*` not followed by a decimal count and `\r\n`.
    InvalidMultibulkLength,
    /// `$` not followed by a non-negative decimal length and `\r\n`.
    InvalidBulkLength,
    /// A multibulk element that is not a bulk string; carries its first byte.
    ExpectedBulk(u8),
    /// A bulk string not followed by `\r\n`.
    MissingCrlf,
    /// A bulk string longer than [`BULK_BYTES_MAX`].
    BulkTooLarge(u64),
    /// A multibulk count larger than [`ARRAY_LEN_MAX`].
    ArrayTooLarge(u64),
    /// An inline line longer than [`INLINE_BYTES_MAX`].
    InlineTooLong,
    /// A multibulk count above the parser's own argument limit
    /// ([`Parser::with_args_max`]): `(count, limit)`.
    TooManyArgs(u64, usize),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The wording follows Redis' own protocol errors, so tools that
        // print them look familiar.
        match self {
            ParseError::InvalidMultibulkLength => {
                f.write_str("Protocol error: invalid multibulk length")
            }
            ParseError::InvalidBulkLength => f.write_str("Protocol error: invalid bulk length"),
            ParseError::ExpectedBulk(b) => write!(
                f,
                "Protocol error: expected '$', got '{}'",
                char::from(*b).escape_default()
            ),
            ParseError::MissingCrlf => {
                f.write_str("Protocol error: bulk string not followed by CRLF")
            }
            ParseError::BulkTooLarge(n) => write!(
                f,
                "Protocol error: bulk string of {n} bytes exceeds the limit of {BULK_BYTES_MAX}"
            ),
            ParseError::ArrayTooLarge(n) => write!(
                f,
                "Protocol error: {n} arguments exceed the limit of {ARRAY_LEN_MAX}"
            ),
            ParseError::InlineTooLong => f.write_str("Protocol error: too big inline request"),
            ParseError::TooManyArgs(n, limit) => write!(
                f,
                "Protocol error: invalid multibulk length ({n} arguments; this server takes at most {limit} per command)"
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// A multibulk command whose arguments are still arriving.
#[derive(Debug)]
struct Partial {
    /// Arguments still to come.
    remaining: usize,
    /// `(start, end)` offsets of the arguments seen so far, from the front of
    /// the buffer (the command's first byte).
    args: Vec<(usize, usize)>,
    /// Where the next argument's `$` is expected.
    pos: usize,
}

/// Turns one connection's read buffer into commands, one at a time.
///
/// Like the wire `Decoder`: append what the socket delivered to a `BytesMut`
/// and call [`Parser::next_command`] until it returns `Ok(None)`; pass the
/// same buffer every time (a partly parsed command is remembered, so a large
/// command arriving in many reads is scanned once, not once per read).
#[derive(Debug, Default)]
pub struct Parser {
    partial: Option<Partial>,
    /// The buffer length below which no progress is possible (0: try).
    need: usize,
    /// Inline mode: bytes of the current line already searched for `\n`.
    inline_scanned: usize,
    failed: Option<ParseError>,
    /// Most arguments of one command (0: [`ARRAY_LEN_MAX`]).
    args_max: usize,
}

impl Parser {
    /// A parser at a command boundary.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// A parser refusing commands of more than `args_max` arguments (at
    /// most [`ARRAY_LEN_MAX`]) as soon as their count is read, before any
    /// argument is buffered: one MGET of a million keys cost the gateway
    /// 129 MiB (issue 8, finding 9).
    pub fn with_args_max(args_max: usize) -> Parser {
        Parser {
            args_max: args_max.clamp(1, ARRAY_LEN_MAX),
            ..Parser::default()
        }
    }

    /// Removes the next complete command from the front of `buf` and returns
    /// its arguments (never empty: blank inline lines and `*0` are skipped,
    /// as Redis does). `Ok(None)`: more bytes are needed.
    ///
    /// Errors are sticky: once one is returned, every later call returns it.
    pub fn next_command(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            match self.step(buf) {
                Ok(Some((args, consumed))) => {
                    debug_assert!(consumed <= buf.len());
                    let frozen = buf.split_to(consumed).freeze();
                    if args.is_empty() {
                        continue;
                    }
                    return Ok(Some(
                        args.into_iter().map(|(s, e)| frozen.slice(s..e)).collect(),
                    ));
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.partial = None;
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// One command's `(argument offsets, bytes consumed)`, or `None` if it is
    /// not complete in `buf`.
    #[allow(clippy::type_complexity)]
    fn step(&mut self, buf: &[u8]) -> Result<Option<(Vec<(usize, usize)>, usize)>, ParseError> {
        if buf.len() < self.need {
            return Ok(None);
        }
        self.need = 0;
        if self.partial.is_none() {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'*' {
                return self.inline(buf);
            }
            let Some((n, next)) = header_int(buf, 1, ParseError::InvalidMultibulkLength)? else {
                self.need = buf.len() + 1;
                return Ok(None);
            };
            if n <= 0 {
                // Redis ignores `*0` and `*-1` requests.
                return Ok(Some((Vec::new(), next)));
            }
            if n as u64 > ARRAY_LEN_MAX as u64 {
                return Err(ParseError::ArrayTooLarge(n as u64));
            }
            if self.args_max > 0 && n as u64 > self.args_max as u64 {
                return Err(ParseError::TooManyArgs(n as u64, self.args_max));
            }
            self.partial = Some(Partial {
                remaining: n as usize,
                args: Vec::new(),
                pos: next,
            });
        }
        let Some(p) = self.partial.as_mut() else {
            unreachable!("set above")
        };
        while p.remaining > 0 {
            let Some(&b) = buf.get(p.pos) else {
                self.need = p.pos + 1;
                return Ok(None);
            };
            if b != b'$' {
                return Err(ParseError::ExpectedBulk(b));
            }
            let Some((len, data)) = header_int(buf, p.pos + 1, ParseError::InvalidBulkLength)?
            else {
                self.need = buf.len() + 1;
                return Ok(None);
            };
            if len < 0 {
                return Err(ParseError::InvalidBulkLength);
            }
            if len as u64 > BULK_BYTES_MAX as u64 {
                return Err(ParseError::BulkTooLarge(len as u64));
            }
            let end = data + len as usize;
            if buf.len() < end + 2 {
                // Wait for the whole string without rescanning: the caller
                // can read up to exactly this length.
                self.need = end + 2;
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ParseError::MissingCrlf);
            }
            p.args.push((data, end));
            p.pos = end + 2;
            p.remaining -= 1;
        }
        let Some(done) = self.partial.take() else {
            unreachable!("checked above")
        };
        Ok(Some((done.args, done.pos)))
    }

    /// An inline command: the line up to `\n`, an optional `\r` dropped,
    /// split on spaces and tabs.
    #[allow(clippy::type_complexity)]
    fn inline(&mut self, buf: &[u8]) -> Result<Option<(Vec<(usize, usize)>, usize)>, ParseError> {
        let limit = buf.len().min(INLINE_BYTES_MAX);
        let from = self.inline_scanned.min(limit);
        let Some(nl) = buf[from..limit].iter().position(|&b| b == b'\n') else {
            if buf.len() >= INLINE_BYTES_MAX {
                return Err(ParseError::InlineTooLong);
            }
            self.inline_scanned = limit;
            self.need = buf.len() + 1;
            return Ok(None);
        };
        self.inline_scanned = 0;
        let nl = from + nl;
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let mut args = Vec::new();
        let mut start = None;
        for (i, &b) in buf[..line_end].iter().enumerate() {
            let space = b == b' ' || b == b'\t';
            match (start, space) {
                (None, false) => start = Some(i),
                (Some(s), true) => {
                    args.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            args.push((s, line_end));
        }
        Ok(Some((args, nl + 1)))
    }
}

/// Reads a `<decimal>\r\n` header starting at `at`. `Ok(None)`: the line is
/// not complete yet. Refuses non-digits, an empty number and a line longer
/// than [`HEADER_LINE_MAX`] with `err`; returns the number and the offset
/// just past `\r\n`.
fn header_int(buf: &[u8], at: usize, err: ParseError) -> Result<Option<(i64, usize)>, ParseError> {
    let avail = buf.get(at..).unwrap_or(&[]);
    let window = &avail[..avail.len().min(HEADER_LINE_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.len() >= HEADER_LINE_MAX {
            return Err(err);
        }
        return Ok(None);
    };
    let Some(&lf) = avail.get(cr + 1) else {
        return Ok(None);
    };
    if lf != b'\n' {
        return Err(err);
    }
    let digits = &window[..cr];
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(err);
    }
    let mut n: i64 = 0;
    for &d in digits {
        n = n * 10 + i64::from(d - b'0');
    }
    Ok(Some((if negative { -n } else { n }, at + cr + 2)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(parser: &mut Parser, buf: &mut BytesMut) -> Result<Vec<Vec<Bytes>>, ParseError> {
        let mut out = Vec::new();
        while let Some(cmd) = parser.next_command(buf)? {
            out.push(cmd);
        }
        Ok(out)
    }

    fn parse(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ParseError> {
        all(&mut Parser::new(), &mut BytesMut::from(input))
    }

    fn cmd(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// The multibulk encoding a client library would send.
    fn multibulk(args: &[Bytes]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn multibulk_command_parses() {
        let got = parse(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n").unwrap();
        assert_eq!(got, vec![cmd(&["SET", "k", "hello"])]);
    }

    #[test]
    fn binary_and_empty_arguments_survive() {
        let args = vec![Bytes::from_static(b"a\r\n\0b"), Bytes::new()];
        assert_eq!(parse(&multibulk(&args)).unwrap(), vec![args]);
    }

    #[test]
    fn inline_commands_parse_with_or_without_cr() {
        let got = parse(b"PING\r\nset  a\tb\nECHO hi\r\n").unwrap();
        assert_eq!(
            got,
            vec![
                cmd(&["PING"]),
                cmd(&["set", "a", "b"]),
                cmd(&["ECHO", "hi"])
            ]
        );
    }

    #[test]
    fn blank_lines_and_empty_multibulk_are_skipped() {
        let got = parse(b"\r\n   \n*0\r\n*-1\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![cmd(&["PING"])]);
    }

    #[test]
    fn many_pipelined_commands_in_one_buffer_come_out_in_order() {
        let mut input = Vec::new();
        for i in 0..100 {
            input.extend(multibulk(&cmd(&["GET", &format!("k{i}")])));
        }
        let got = parse(&input).unwrap();
        assert_eq!(got.len(), 100);
        assert_eq!(got[42], cmd(&["GET", "k42"]));
    }

    #[test]
    fn command_split_at_every_byte_boundary_parses_once() {
        let input = multibulk(&cmd(&["SET", "key", "some value"]));
        for split in 0..=input.len() {
            let mut p = Parser::new();
            let mut buf = BytesMut::from(&input[..split]);
            let first = all(&mut p, &mut buf).unwrap();
            buf.extend_from_slice(&input[split..]);
            let second = all(&mut p, &mut buf).unwrap();
            let got: Vec<_> = first.into_iter().chain(second).collect();
            assert_eq!(
                got,
                vec![cmd(&["SET", "key", "some value"])],
                "split {split}"
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn arguments_are_slices_of_the_read_buffer() {
        let mut buf = BytesMut::from(&multibulk(&cmd(&["SET", "k", "v"]))[..]);
        let start = buf.as_ptr() as usize;
        let end = start + buf.len();
        let args = Parser::new().next_command(&mut buf).unwrap().unwrap();
        for a in &args {
            let p = a.as_ptr() as usize;
            assert!(p >= start && p + a.len() <= end, "argument copied");
        }
    }

    #[test]
    fn oversize_bulk_is_refused_from_its_header_alone() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$16777217\r\n"[..]);
        assert_eq!(
            Parser::new().next_command(&mut buf),
            Err(ParseError::BulkTooLarge(16_777_217))
        );
        // The largest allowed length is only waited for.
        let mut buf = BytesMut::from(&b"*1\r\n$16777216\r\n"[..]);
        assert_eq!(Parser::new().next_command(&mut buf), Ok(None));
    }

    #[test]
    fn a_command_over_the_argument_limit_is_refused_from_its_count() {
        let mut p = Parser::with_args_max(3);
        let mut buf = BytesMut::from(&b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n"[..]);
        assert_eq!(all(&mut p, &mut buf), Ok(vec![cmd(&["MGET", "a", "b"])]));
        let mut buf = BytesMut::from(&b"*1000001\r\n$4\r\nMGET\r\n"[..]);
        let err = p.next_command(&mut buf).unwrap_err();
        assert_eq!(err, ParseError::TooManyArgs(1_000_001, 3));
        assert!(err
            .to_string()
            .starts_with("Protocol error: invalid multibulk length"));
    }

    #[test]
    fn oversize_array_is_refused_from_its_header_alone() {
        let mut buf = BytesMut::from(&b"*1048577\r\n"[..]);
        assert_eq!(
            Parser::new().next_command(&mut buf),
            Err(ParseError::ArrayTooLarge(1_048_577))
        );
        let mut buf = BytesMut::from(&b"*99999999999999999\r\n"[..]);
        assert!(matches!(
            Parser::new().next_command(&mut buf),
            Err(ParseError::ArrayTooLarge(_))
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for (input, want) in [
            (&b"*x\r\n"[..], ParseError::InvalidMultibulkLength),
            (b"*\r\n", ParseError::InvalidMultibulkLength),
            (b"*1\rx", ParseError::InvalidMultibulkLength),
            (b"*1\r\n$-1\r\n", ParseError::InvalidBulkLength),
            (b"*1\r\n$1x\r\n", ParseError::InvalidBulkLength),
            (b"*1\r\n:1\r\n", ParseError::ExpectedBulk(b':')),
            (b"*1\r\n$1\r\nab\r\n", ParseError::MissingCrlf),
            (
                b"*1111111111111111111111111111111",
                ParseError::InvalidMultibulkLength,
            ),
        ] {
            assert_eq!(parse(input), Err(want), "{:?}", Bytes::from(input));
        }
    }

    #[test]
    fn overlong_inline_line_is_refused() {
        let input = vec![b'a'; INLINE_BYTES_MAX];
        assert_eq!(parse(&input), Err(ParseError::InlineTooLong));
        let mut short = vec![b'a'; INLINE_BYTES_MAX - 1];
        assert_eq!(parse(&short), Ok(vec![]));
        short.push(b'\n');
        assert_eq!(parse(&short).unwrap().len(), 1);
    }

    #[test]
    fn errors_are_sticky() {
        let mut p = Parser::new();
        let mut buf = BytesMut::from(&b"*x\r\n"[..]);
        assert!(p.next_command(&mut buf).is_err());
        let mut good = BytesMut::from(&b"PING\r\n"[..]);
        assert_eq!(
            p.next_command(&mut good),
            Err(ParseError::InvalidMultibulkLength)
        );
    }

    fn arb_args() -> impl Strategy<Value = Vec<Bytes>> {
        proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from),
            1..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

        /// Garbage never panics, and whatever the parser accepts it accepts
        /// the same way however the bytes are split into reads.
        #[test]
        fn arbitrary_bytes_never_panic_and_split_reads_agree(
            input in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                // Mostly well-formed prefixes with a flipped byte: reaches
                // the deeper states that random bytes rarely do.
                (arb_args(), any::<usize>(), any::<u8>()).prop_map(|(a, i, b)| {
                    let mut v = multibulk(&a);
                    let n = v.len();
                    v[i % n] = b;
                    v
                }),
            ],
            cut in any::<usize>(),
        ) {
            let whole = parse(&input);
            let cut = cut % (input.len() + 1);
            let mut p = Parser::new();
            let mut buf = BytesMut::from(&input[..cut]);
            let first = all(&mut p, &mut buf);
            buf.extend_from_slice(&input[cut..]);
            let split = first.and_then(|mut a| {
                a.extend(all(&mut p, &mut buf)?);
                Ok(a)
            });
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn pipelined_commands_round_trip_through_any_read_sizes(
            cmds in proptest::collection::vec(arb_args(), 1..10),
            chunk in 1usize..64,
        ) {
            let input: Vec<u8> = cmds.iter().flat_map(|c| multibulk(c)).collect();
            let mut p = Parser::new();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in input.chunks(chunk) {
                buf.extend_from_slice(piece);
                got.extend(all(&mut p, &mut buf).unwrap());
            }
            prop_assert_eq!(got, cmds);
            prop_assert!(buf.is_empty());
        }
    }
}
