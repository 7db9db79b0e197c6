//! The metrics listener (`synod-server --metrics-listen`): a blocking
//! HTTP/1.x responder on its own thread that answers `GET /metrics` with
//! `Metrics::render` and closes the connection. Not on any core's loop, so
//! a scrape never delays a request.
//!
//! Bad input is bounded and closed, never a panic: one connection at a
//! time, its request head at most `HEAD_BYTES_MAX` (431 past it), the
//! whole exchange within `EXCHANGE_TIMEOUT` (a slow or silent client is
//! closed without an answer), anything but a well-formed `GET /metrics`
//! answered 400, 404 or 405. A scraper that is blocked waits at most that
//! deadline for the one ahead of it.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Metrics;

/// Largest request head (request line and headers) read.
pub const HEAD_BYTES_MAX: usize = 8 << 10;
/// A connection must send its request and take the answer within this.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serve `metrics` on `listener` until the process ends.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || loop {
            match listener.accept() {
                Ok((stream, addr)) => {
                    if let Err(e) = answer(stream, &metrics) {
                        log::debug!("metrics: {addr}: {e}");
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: do not spin.
                    log::warn!("metrics: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    Metrics,
    /// Status code and reason to answer with.
    Refuse(u16, &'static str),
}

/// Judge a complete request head (up to and without the blank line).
pub fn parse_head(head: &[u8]) -> Head {
    let Ok(text) = std::str::from_utf8(head) else {
        return Head::Refuse(400, "Bad Request");
    };
    let line = text.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Head::Refuse(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Head::Refuse(400, "Bad Request");
    }
    if method != "GET" {
        return Head::Refuse(405, "Method Not Allowed");
    }
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return Head::Refuse(404, "Not Found");
    }
    Head::Metrics
}

fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break parse_head(&buf[..end]);
        }
        if buf.len() >= HEAD_BYTES_MAX {
            break Head::Refuse(431, "Request Header Fields Too Large");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(ErrorKind::TimedOut, "request too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        let want = (HEAD_BYTES_MAX - buf.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Ok(()), // closed before a whole request
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let (status, reason, ctype, body) = match head {
        Head::Metrics => (
            200,
            "OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        Head::Refuse(code, reason) => (code, reason, "text/plain", format!("{reason}\n")),
    };
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    stream.write_all(&out)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_get_of_metrics_is_served() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Head::Metrics
        );
        assert_eq!(parse_head(b"GET /metrics?x=1 HTTP/1.0"), Head::Metrics);
        assert_eq!(parse_head(b"POST /metrics HTTP/1.1").status(), 405);
        assert_eq!(parse_head(b"GET / HTTP/1.1").status(), 404);
        assert_eq!(parse_head(b"GET /metrics").status(), 400);
        assert_eq!(parse_head(b"GET /metrics SPDY/3").status(), 400);
        assert_eq!(parse_head(b"\xff\xfe").status(), 400);
        assert_eq!(parse_head(b"").status(), 400);
    }

    impl Head {
        fn status(&self) -> u16 {
            match self {
                Head::Metrics => 200,
                Head::Refuse(c, _) => *c,
            }
        }
    }

    fn exchange(addr: std::net::SocketAddr, send: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(send);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Oversize, malformed and slow requests are answered or closed within
    /// the deadline, and the listener serves the next scrape afterwards.
    #[test]
    fn bad_requests_are_bounded_and_closed() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let m = Arc::new(Metrics::new("n".into(), 1));
        serve(l, m).unwrap();

        let big = vec![b'a'; HEAD_BYTES_MAX + 100];
        assert!(exchange(addr, &big).starts_with("HTTP/1.1 431"));
        assert!(exchange(addr, b"BREW /pot HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(exchange(addr, b"garbage\r\n\r\n").starts_with("HTTP/1.1 400"));

        // A client that sends half a request and stalls is closed.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /met").unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        let n = slow.read_to_end(&mut rest).unwrap_or(0);
        assert_eq!(n, 0, "a stalled request gets no answer");

        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        let body = ok.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.contains("synod_up_seconds{node=\"n\"}"));
        for line in body.lines() {
            super::super::check_line(line).unwrap();
        }
    }
}
