//! One non-blocking client connection to a server over mio, for the
//! drivers of the session core that multiplex many requests on an event
//! loop (the RESP gateway's upstream, `synod-bench`): the non-blocking
//! connect, the dialer's handshake ([`crate::auth::dial::Handshake`]) with
//! frames held until the server proved the key, reading and decoding
//! within a budget, and writing what the socket takes; [`Conns`] is a
//! loop's set of them with its bookkeeping (which have bytes to write,
//! which have more to read than a turn's budget). Protocol decisions
//! (where a frame goes, what a reply means) are the session's; when to
//! read, write or give up on the connection is the driver's.
//!
//! What it must never do: block (connects are non-blocking; addresses are
//! resolved by the caller), or panic on anything a server sends (a bad
//! frame is a failure the caller closes the connection for).

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use synod_wire::{encode_frame, Decoder, Frame, GroupId};

use super::idmap::IdMap;
use crate::auth::dial::Handshake;
use crate::auth::{Identity, Key};

/// One connection: see the module documentation.
pub struct MioConn {
    stream: TcpStream,
    connected: bool,
    /// Bytes to write (the hello first, with a key).
    out: BytesMut,
    inbuf: BytesMut,
    decoder: Decoder,
    /// With a key: the handshake in progress; frames queued meanwhile wait
    /// in `held` until the server proved the key.
    handshake: Option<Handshake>,
    held: BytesMut,
    /// An event said the server closed its side or the socket failed:
    /// reads go on to the end of the stream (a short read does not end
    /// them), since no further edge will come to say so.
    read_closed: bool,
}

/// What a read turn found.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// The budget ran out before the socket was drained: read again on a
    /// later turn (mio is edge-triggered: no new event would come).
    pub more: bool,
    /// The connection is finished (closed, failed, undecodable bytes, a
    /// failed handshake); frames decoded before it are still answers.
    pub failure: Option<String>,
}

impl MioConn {
    /// Starts connecting to `addr` for a group `group` and registers the
    /// socket under `token`; with `auth`, queues the hello.
    pub fn connect(
        addr: SocketAddr,
        group: GroupId,
        auth: Option<&(Key, Identity)>,
        registry: &Registry,
        token: Token,
    ) -> Result<MioConn, String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
        registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("{addr}: cannot register: {e}"))?;
        let mut out = BytesMut::new();
        let handshake = match auth {
            Some((key, identity)) => Some(
                Handshake::start(key, *identity, group, &mut out)
                    .map_err(|e| format!("{addr}: {e}"))?,
            ),
            None => None,
        };
        Ok(MioConn {
            stream,
            connected: false,
            out,
            inbuf: BytesMut::new(),
            decoder: Decoder::default(),
            handshake,
            held: BytesMut::new(),
            read_closed: false,
        })
    }

    /// Queues `frame` (held back while the handshake runs).
    pub fn queue(&mut self, frame: &Frame) {
        let buf = if self.handshake.is_some() {
            &mut self.held
        } else {
            &mut self.out
        };
        encode_frame(frame, buf);
    }

    /// Bytes are waiting to be written.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes what is queued, as far as the socket takes it (nothing before
    /// the connect finished: its writable event calls [`MioConn::on_writable`]).
    pub fn flush(&mut self) -> Result<(), String> {
        if !self.connected {
            return Ok(());
        }
        write_out(&mut self.stream, &mut self.out).map_err(|e| format!("write failed: {e}"))
    }

    /// A writable (or error) event: finishes the connect if it was under
    /// way, then writes.
    pub fn on_writable(&mut self) -> Result<(), String> {
        if !self.connected {
            // mio's connect protocol: a writable event, then take_error and
            // peer_addr tell whether the connection is up.
            let err = match self.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match self.stream.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = err {
                return Err(format!("connect failed: {e}"));
            }
            self.connected = true;
            // Requests are small and latency-bound: never wait for Nagle.
            let _ = self.stream.set_nodelay(true);
        }
        self.flush()
    }

    /// Reads at most `budget` bytes (in `scratch`-sized reads) and appends
    /// every whole frame to `frames`; the handshake's challenge is taken
    /// here (then [`MioConn::wants_write`] says the proof waits).
    pub fn read(
        &mut self,
        scratch: &mut [u8],
        mut budget: usize,
        frames: &mut Vec<Frame>,
    ) -> ReadOutcome {
        let mut outcome = ReadOutcome::default();
        loop {
            if budget == 0 {
                outcome.more = true;
                break;
            }
            let want = budget.min(scratch.len());
            match self.stream.read(&mut scratch[..want]) {
                Ok(0) => {
                    outcome.failure = Some("connection closed by the server".to_string());
                    break;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    budget -= n;
                    // A short read emptied the socket: epoll's edge trigger
                    // fires again on the next arrival. Not after a close
                    // event, whose edge came with this data: read on to
                    // the end of the stream.
                    if n < want && !self.read_closed {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::NotConnected && !self.connected => break,
                Err(e) => {
                    outcome.failure = Some(format!("read failed: {e}"));
                    break;
                }
            }
        }
        // Frames that arrived before a close are still answers.
        loop {
            match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(frame)) => {
                    if let Some(handshake) = self.handshake.take() {
                        // Until the server proved the key, only its
                        // challenge is expected.
                        if let Err(why) = handshake.finish(frame, &mut self.out) {
                            outcome.failure = Some(why);
                            break;
                        }
                        let held = std::mem::take(&mut self.held);
                        self.out.extend_from_slice(&held);
                    } else {
                        frames.push(frame);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    outcome.failure = Some(format!("undecodable reply: {e}"));
                    break;
                }
            }
        }
        outcome
    }

    /// Deregisters the socket (it closes when dropped).
    pub fn deregister(&mut self, registry: &Registry) {
        // Deregistering can only fail for a socket mio does not know, and
        // the socket is closed on drop either way.
        let _ = registry.deregister(&mut self.stream);
    }
}

/// Writes as much of `out` as the socket takes.
pub fn write_out(stream: &mut impl Write, out: &mut BytesMut) -> io::Result<()> {
    while !out.is_empty() {
        match stream.write(out) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bytes asked of a socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Most bytes read from one connection per turn (fairness between an event
/// loop's connections; mio is edge-triggered, so the rest is read on a
/// later turn without waiting for an event).
const READ_BUDGET_BYTES: usize = 4 << 20;

/// An event loop's client connections, each with the driver's own data
/// `M` (whose request it carries, where it goes), under mio tokens from a
/// range the driver reserves. Tracks which have bytes to write and which
/// have more to read than one turn's budget; failures are handed back for
/// the driver to close the connection and tell its session(s).
pub struct Conns<M> {
    conns: IdMap<usize, (MioConn, M)>,
    next_token: usize,
    /// Connections with bytes to write.
    dirty: Vec<usize>,
    /// Connections with more to read than one turn's budget.
    unread: Vec<usize>,
    scratch: Vec<u8>,
    /// The key and identity every connection authenticates with, if any.
    auth: Option<(Key, Identity)>,
}

impl<M> Conns<M> {
    /// Connections get tokens from `first_token` up and authenticate with
    /// `auth`, if given.
    pub fn new(first_token: usize, auth: Option<(Key, Identity)>) -> Conns<M> {
        Conns {
            conns: IdMap::default(),
            next_token: first_token,
            dirty: Vec::new(),
            unread: Vec::new(),
            scratch: vec![0; READ_CHUNK_BYTES],
            auth,
        }
    }

    /// Starts connecting to `addr` for group `group`; returns its token.
    pub fn open(
        &mut self,
        addr: SocketAddr,
        group: GroupId,
        registry: &Registry,
        meta: M,
    ) -> Result<usize, String> {
        let token = self.next_token;
        let conn = MioConn::connect(addr, group, self.auth.as_ref(), registry, Token(token))?;
        self.next_token += 1;
        self.conns.insert(token, (conn, meta));
        Ok(token)
    }

    pub fn contains(&self, token: usize) -> bool {
        self.conns.contains_key(&token)
    }

    pub fn meta(&self, token: usize) -> Option<&M> {
        self.conns.get(&token).map(|(_, m)| m)
    }

    /// Queues `frame` on `token` for the next [`Conns::flush`].
    pub fn queue(&mut self, token: usize, frame: &Frame) {
        let (conn, _) = self
            .conns
            .get_mut(&token)
            .expect("queued on an open connection");
        if !conn.wants_write() {
            self.dirty.push(token);
        }
        conn.queue(frame);
    }

    /// Deregisters and forgets `token`; returns its data.
    pub fn close(&mut self, token: usize, registry: &Registry) -> Option<M> {
        let (mut conn, meta) = self.conns.remove(&token)?;
        conn.deregister(registry);
        Some(meta)
    }

    /// Writes what every dirty connection has queued, as far as the
    /// sockets take it; returns the connections that failed, with why.
    pub fn flush(&mut self) -> Vec<(usize, String)> {
        let mut failed = Vec::new();
        for token in std::mem::take(&mut self.dirty) {
            if let Some((conn, _)) = self.conns.get_mut(&token) {
                if let Err(why) = conn.flush() {
                    failed.push((token, why));
                }
            }
        }
        failed
    }

    /// A writable (or error) event on `token`: `Err` says why it failed.
    pub fn on_writable(&mut self, token: usize) -> Result<(), String> {
        match self.conns.get_mut(&token) {
            Some((conn, _)) => conn.on_writable(),
            None => Ok(()),
        }
    }

    /// An event on `token` said the server closed its side or the socket
    /// failed: its reads go on to the end of the stream, so the close is
    /// seen now even if it came in one edge with data.
    pub fn note_read_closed(&mut self, token: usize) {
        if let Some((conn, _)) = self.conns.get_mut(&token) {
            conn.read_closed = true;
        }
    }

    /// A readable event on `token` (or a turn's leftover): appends every
    /// whole frame to `frames`; `Some` says why the connection is finished
    /// (frames before it are still answers).
    pub fn on_readable(&mut self, token: usize, frames: &mut Vec<Frame>) -> Option<String> {
        let (conn, _) = self.conns.get_mut(&token)?;
        let outcome = conn.read(&mut self.scratch, READ_BUDGET_BYTES, frames);
        if outcome.more {
            self.unread.push(token);
        }
        if conn.wants_write() {
            // The handshake's proof (and the requests held for it).
            self.dirty.push(token);
        }
        outcome.failure
    }

    /// Connections whose last read stopped at the budget: read them again
    /// this turn.
    pub fn take_unread(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.unread)
    }

    /// Some connection has more to read: the loop must not sleep.
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use mio::{Events, Poll};
    use synod_wire::{ClientReply, Message};

    use super::*;

    /// A server that answers and closes in one go (its reply and FIN reach
    /// the client before the client polls) raises one edge: the client
    /// must see the close while handling it, not at its next write.
    #[test]
    fn a_reply_and_the_close_in_one_edge_finish_the_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut poll = Poll::new().unwrap();
        let mut conns: Conns<()> = Conns::new(1, None);
        let token = conns.open(addr, 7, poll.registry(), ()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut reply = BytesMut::new();
        encode_frame(
            &Frame {
                request_id: 1,
                group: 7,
                message: Message::Reply(ClientReply::Ok(Bytes::from_static(b"v"))),
            },
            &mut reply,
        );
        server.write_all(&reply).unwrap();
        drop(server);
        std::thread::sleep(Duration::from_millis(100));

        let mut frames = Vec::new();
        let mut failure = None;
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(2);
        // Handle every event there is, as a client loop does, until no
        // new one comes for 300 ms.
        while failure.is_none() && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(300)))
                .unwrap();
            if events.is_empty() {
                break;
            }
            for event in events.iter() {
                let closed = event.is_read_closed() || event.is_error();
                if closed {
                    conns.note_read_closed(token);
                }
                if closed || event.is_readable() {
                    failure = failure.or(conns.on_readable(token, &mut frames));
                }
            }
        }
        assert_eq!(frames.len(), 1, "the reply before the close is an answer");
        assert_eq!(
            failure.as_deref(),
            Some("connection closed by the server"),
            "the close came with the reply's edge"
        );
    }
}
