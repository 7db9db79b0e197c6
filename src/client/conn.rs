//! One TCP connection to a server, with a reader thread.
//!
//! The client is synchronous, but one batch may have requests outstanding on
//! several connections at once (different groups, a leader change half way).
//! Blocking std sockets cannot wait on several sockets at once, so each
//! connection gets a reader thread that decodes frames and forwards them to
//! the client's single event channel; the engine waits on that channel with
//! a timeout. Writes stay on the caller's thread (one `write_all` per
//! connection per engine turn, carrying every frame queued for it).
//!
//! Reading concurrently with writing also means a large pipelined write can
//! never deadlock against a server that is blocked writing replies to us.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::Sender;
use std::time::Duration;

use bytes::BytesMut;
use synod_wire::{Decoder, Frame};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What a reader thread reports.
#[derive(Debug)]
pub(crate) enum Event {
    /// A whole, valid frame arrived on connection `conn`.
    Frame { conn: u64, frame: Frame },
    /// Connection `conn` is finished: closed by the peer, failed, or sent
    /// bytes that do not decode (after which framing cannot be trusted).
    Closed { conn: u64, reason: String },
}

/// The client's side of one connection.
pub(crate) struct Conn {
    pub(crate) id: u64,
    stream: TcpStream,
}

impl Conn {
    /// Connects to `addr` within `connect_timeout` and starts the reader.
    ///
    /// Errors are one line naming the address, for the user.
    pub(crate) fn open(
        id: u64,
        addr: &str,
        gid: synod_wire::GroupId,
        auth: Option<&(crate::auth::Key, crate::auth::Identity)>,
        connect_timeout: Duration,
        write_timeout: Duration,
        events: Sender<Event>,
    ) -> Result<Conn, String> {
        let mut stream = connect(addr, connect_timeout)?;
        // Requests are small and latency-bound; never wait for Nagle.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("{addr}: {e}"))?;
        // A server that stops reading must not block the caller forever.
        // (No read timeout: the reader thread blocks until a frame arrives
        // or the socket is shut down; the engine owns the deadlines.)
        stream
            .set_write_timeout(Some(write_timeout.max(Duration::from_millis(1))))
            .map_err(|e| format!("{addr}: {e}"))?;
        // With a key, the connection proves it (and checks that the server
        // holds it) before any request goes out.
        if let Some((key, identity)) = auth {
            crate::auth::stream::dial(&mut stream, key, *identity, gid, connect_timeout)
                .map_err(|e| format!("{addr}: {e}"))?;
        }
        let reader = stream.try_clone().map_err(|e| format!("{addr}: {e}"))?;
        std::thread::Builder::new()
            .name(format!("synod-client-conn-{id}"))
            .spawn(move || read_loop(id, reader, events))
            .map_err(|e| format!("{addr}: cannot start reader thread: {e}"))?;
        Ok(Conn { id, stream })
    }

    /// Writes `bytes` (one or more whole frames) completely.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

impl Drop for Conn {
    /// Shutting the socket down wakes the reader thread (its read returns),
    /// so it exits instead of leaking.
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: cannot resolve: {e}"))?
        .collect();
    let timeout = timeout.max(Duration::from_millis(1));
    let mut last = format!("{addr}: no address to connect to");
    for sa in addrs {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// Decodes frames from `stream` until it fails, forwarding each to `events`.
/// Ends silently when the client is gone (the channel is closed).
fn read_loop(id: u64, mut stream: TcpStream, events: Sender<Event>) {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let reason = loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if events.send(Event::Frame { conn: id, frame }).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = events.send(Event::Closed {
                        conn: id,
                        reason: format!("undecodable reply: {e}"),
                    });
                    return;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => break "connection closed by the server".to_string(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break format!("read failed: {e}"),
        }
    };
    let _ = events.send(Event::Closed { conn: id, reason });
}
