//! One TCP connection as a core sees it: bounded read and write buffers, an
//! incremental decoder, and the bookkeeping that drives back-pressure and
//! timeouts. All socket system calls of the runtime live here and in
//! `core.rs`'s accept loop, written the way mio expects: read and write until
//! `WouldBlock`, retry on `Interrupted`, tolerate spurious events.

use std::io::{self, Read, Write};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;
use std::sync::Arc;

use synod_wire::{
    encode_frame, encode_trace_stamp, kind_name, kind_of, AuthMsg, DecodeError, Decoder, Frame,
    GroupId, Message, ReplicaId,
};

use crate::auth::{Accepting, Dialer, Identity, Key};
use crate::trace::NodeTracer;

/// Where a connection is in the authentication handshake (`crate::auth`).
#[derive(Debug)]
pub enum AuthState {
    /// No handshake: the server holds no key, or the dialer has not sent a
    /// hello (an anonymous client), or we dial a cluster without a key.
    None,
    /// We answered a hello and wait for the dialer's proof; any other frame
    /// closes the connection.
    Accepting(Accepting),
    /// We dialed and sent a hello; frames queued meanwhile wait in `held`
    /// until the server has proved it holds the key.
    Dialing(Dialer),
    /// Authenticated both ways as this identity (on a dialed connection:
    /// the identity we proved).
    Done(Identity),
}

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepted from someone (client or peer): frames in, replies out.
    Incoming,
    /// Dialed by us to replica `peer` of group `gid`: Paxos frames out.
    Peer { gid: GroupId, peer: ReplicaId },
    /// Dialed by us to the server at `addr`: the Paxos and primary/backup
    /// frames of every group of this core whose peer it is (each frame
    /// names its group), out; `WrongCore` answers in.
    Link { addr: std::net::SocketAddr },
    /// Dialed by us to a member of group `target` for shard migration:
    /// requests out, replies in.
    Rpc { target: GroupId },
}

pub struct Conn {
    pub stream: TcpStream,
    pub role: Role,
    pub decoder: Decoder,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    /// Requests read from this connection still waiting for their reply.
    pub in_flight: usize,
    pub created: Instant,
    pub last_frame: Instant,
    pub frames_in: u64,
    /// Outgoing connect still in progress (first writable event completes it).
    pub connecting: bool,
    /// Not reading (back-pressure): resumed when the write side drains.
    pub paused: bool,
    /// A poll event said the peer closed its side or the socket failed:
    /// reads go on until the end of the stream or an error is seen (a
    /// short read does not end them, see [`Conn::fill`]).
    pub read_closed: bool,
    /// Registered for writable events (a write hit `WouldBlock`).
    pub want_write: bool,
    pub auth: AuthState,
    /// Frames queued on a dialed connection before its handshake finished.
    pub held: BytesMut,
    /// Requests refused for lack of authentication (logged once per
    /// connection at warn level, so a flood of them is not a log flood).
    pub refused: u64,
    /// The largest reply queued lately (decays by an eighth per smaller
    /// reply): what each request in flight is expected to add to `wbuf`.
    pub reply_estimate: usize,
    /// Since when the frame at the front of `rbuf` has been incomplete.
    pub partial_since: Option<Instant>,
    /// Bytes received since `partial_since` (for the minimum receive rate).
    pub partial_bytes: u64,
    /// The node's trace (`--trace`): every frame queued or read here is
    /// recorded. `None` when not tracing, and then nothing else is done.
    pub trace: Option<Arc<NodeTracer>>,
    /// Put a trace stamp before each frame queued here: on connections we
    /// dial to other servers, and on accepted ones once the other side sent
    /// a stamp (so a client, which never does, never gets one).
    pub stamp_out: bool,
}

/// A frame as a trace names it: its kind and group (`Accept g1`).
fn describe(frame: &Frame) -> String {
    format!("{} g{}", kind_name(kind_of(&frame.message)), frame.group)
}

/// Why a connection is closed; logged with its address.
#[derive(Debug)]
pub enum Close {
    Eof,
    Io(io::Error),
    Decode(DecodeError),
    Protocol(&'static str),
    Timeout(&'static str),
    Auth(String),
    /// A resource limit (reply bytes, partial-frame budget, connection slots).
    Limit(&'static str),
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Eof => write!(f, "closed by peer"),
            Close::Io(e) => write!(f, "i/o error: {e}"),
            Close::Decode(e) => write!(f, "bad frame: {e}"),
            Close::Protocol(what) => write!(f, "protocol violation: {what}"),
            Close::Timeout(what) => write!(f, "timed out: {what}"),
            Close::Auth(why) => write!(f, "authentication: {why}"),
            Close::Limit(what) => write!(f, "over a limit: {what}"),
        }
    }
}

/// What each request in flight is expected to add to the write buffer
/// before this connection's first reply says better. Reads copy the value
/// out of the store as they are answered, so a first batch of 4,096 Gets
/// of a 1 MiB value cost 4 GiB before any reply reached the write buffer:
/// with this guess the soft cap (8 MiB) admits 64 before the first reply,
/// and the guess decays toward the real size within a few dozen replies.
const INITIAL_REPLY_ESTIMATE: usize = 128 << 10;

/// How much one read call asks for; the buffer grows in these steps.
const READ_CHUNK: usize = 64 * 1024;

impl Conn {
    pub fn new(stream: TcpStream, role: Role, frame_bytes_max: u32, now: Instant) -> Conn {
        Conn {
            stream,
            role,
            decoder: Decoder::new(frame_bytes_max),
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::new(),
            in_flight: 0,
            created: now,
            last_frame: now,
            frames_in: 0,
            connecting: matches!(
                role,
                Role::Peer { .. } | Role::Link { .. } | Role::Rpc { .. }
            ),
            paused: false,
            read_closed: false,
            want_write: false,
            auth: AuthState::None,
            held: BytesMut::new(),
            refused: 0,
            reply_estimate: INITIAL_REPLY_ESTIMATE,
            partial_since: None,
            partial_bytes: 0,
            trace: None,
            stamp_out: false,
        }
    }

    /// Reply bytes this connection is owed or holds: what is buffered plus
    /// what its requests in flight are expected to add. Reading stops while
    /// this is over the soft cap, so a client that never reads its replies
    /// of large values cannot have thousands of them queued.
    pub fn reply_debt(&self) -> usize {
        self.wbuf
            .len()
            .saturating_add(self.in_flight.saturating_mul(self.reply_estimate))
    }

    /// After decoding everything buffered: start (or keep) the clock of an
    /// incomplete frame at the front of the buffer, or stop it.
    pub fn note_partial(&mut self, now: Instant) {
        if self.rbuf.is_empty() {
            self.partial_since = None;
            self.partial_bytes = 0;
        } else if self.partial_since.is_none() {
            self.partial_since = Some(now);
            self.partial_bytes = self.rbuf.len() as u64;
        }
    }

    /// On a connection we dial: send the hello first and hold every other
    /// frame until the server's challenge checks out.
    pub fn start_dial(&mut self, key: &Key, identity: Identity, group: GroupId, nonce: [u8; 32]) {
        let (dialer, hello) = Dialer::new(key, identity, nonce);
        encode_frame(
            &Frame {
                request_id: 0,
                group,
                message: Message::Auth(AuthMsg::Hello(hello)),
            },
            &mut self.wbuf,
        );
        self.auth = AuthState::Dialing(dialer);
    }

    /// The identity this connection authenticated as, if it did.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.auth {
            AuthState::Done(id) => Some(id),
            _ => None,
        }
    }

    /// Bytes waiting to be written, held ones included.
    pub fn queued_bytes(&self) -> usize {
        self.wbuf.len() + self.held.len()
    }

    /// Read what the socket has, up to `budget` bytes beyond what is
    /// buffered. Returns `Ok(true)` if the socket may still hold data (the
    /// budget ran out), so the caller comes back next turn: mio is
    /// edge-triggered and will not say so again; `Ok(false)` once it is
    /// drained.
    ///
    /// A read shorter than `scratch` drained the socket's receive queue,
    /// so it ends the reading without the extra call that would only
    /// return `WouldBlock`: data arriving later raises a new edge (epoll
    /// signals every arrival), as Tokio also assumes. Not after a
    /// read-closed or error event ([`Conn::read_closed`]): its edge came
    /// already, so reading goes on to see the end of the stream. The
    /// extra call cost one of the three `recvfrom`s of every readable
    /// event (with `Core::on_readable`'s second `fill`, two).
    ///
    /// Reads go through the core's `scratch` buffer and only the bytes read
    /// are copied: zeroing a fresh chunk of the read buffer before every
    /// read (safe Rust cannot read into uninitialised memory) showed up as
    /// 7% of a loaded leader's profile.
    pub fn fill(&mut self, budget: usize, scratch: &mut [u8]) -> Result<bool, Close> {
        let mut read = 0;
        loop {
            if read >= budget {
                return Ok(true);
            }
            match self.stream.read(scratch) {
                Ok(0) => return Err(Close::Eof),
                Ok(n) => {
                    self.make_room(n);
                    self.rbuf.extend_from_slice(&scratch[..n]);
                    read += n;
                    if self.partial_since.is_some() {
                        self.partial_bytes += n as u64;
                    }
                    if n < scratch.len() && !self.read_closed {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Close::Io(e)),
            }
        }
    }

    /// Room in `rbuf` for `n` more bytes. While the frame at the front has
    /// a validated header ([`Decoder::bytes_wanted`]) and the new bytes
    /// are all its own, the buffer is allocated once at exactly that
    /// frame's length; otherwise it grows as `BytesMut` does (doubling).
    ///
    /// Doubling toward a 15 MiB frame allocated and freed buffers of
    /// 64 KiB, 128 KiB, ... 16 MiB one after another, and freed heap
    /// memory stays resident: the partial-frame budget counts the bytes
    /// received, not what the allocator kept. With one allocation per
    /// frame, a large frame's buffer is one mapping of its own (the
    /// server's allocator, [`super::alloc::LargeMapped`]) whose untouched pages cost
    /// nothing and which is unmapped when the frame is dropped or its
    /// connection closed.
    fn make_room(&mut self, n: usize) {
        let need = self.rbuf.len() + n;
        if need <= self.rbuf.capacity() {
            return;
        }
        let frame = self.decoder.bytes_wanted();
        if frame >= need && frame > READ_CHUNK {
            let mut exact = BytesMut::with_capacity(frame);
            exact.extend_from_slice(&self.rbuf);
            self.rbuf = exact;
        } else {
            self.rbuf.reserve(n);
        }
    }

    /// The next whole frame in the read buffer, if any, with its kind and
    /// body as they arrived (`Decoder::decode_raw`: a request's log command).
    pub fn next_frame(&mut self, now: Instant) -> Result<Option<(Frame, Bytes)>, Close> {
        match self.decoder.decode_raw(&mut self.rbuf) {
            Ok(Some(f)) => {
                self.frames_in += 1;
                self.last_frame = now;
                // The deadline is per frame: the next one starts now.
                self.partial_since = None;
                self.partial_bytes = 0;
                if let Some(t) = &self.trace {
                    let what = describe(&f.0);
                    match self.decoder.take_stamp() {
                        Some(stamp) => {
                            self.stamp_out = true;
                            t.recv(stamp, &what);
                        }
                        None => t.local(&format!("recv {what} (untraced sender)")),
                    }
                }
                Ok(Some(f))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Close::Decode(e)),
        }
    }

    pub fn queue(&mut self, frame: &Frame) {
        let dialing = matches!(self.auth, AuthState::Dialing(_));
        if let Some(t) = &self.trace {
            let what = describe(frame);
            if self.stamp_out {
                let out = if dialing {
                    &mut self.held
                } else {
                    &mut self.wbuf
                };
                encode_trace_stamp(&t.send(&what), out);
            } else {
                t.local(&format!("send {what} (untraced receiver)"));
            }
        }
        if dialing {
            encode_frame(frame, &mut self.held);
            return;
        }
        let before = self.wbuf.len();
        encode_frame(frame, &mut self.wbuf);
        let n = self.wbuf.len() - before;
        self.reply_estimate = n.max(self.reply_estimate - self.reply_estimate / 8);
    }

    /// Write as much of the write buffer as the socket takes, in as few
    /// system calls as it allows (one, when the kernel buffer has room).
    /// Returns true when everything was written.
    pub fn flush(&mut self) -> Result<bool, Close> {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(Close::Eof),
                Ok(n) => {
                    let _ = self.wbuf.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::NotConnected && self.connecting => {
                    return Ok(false)
                }
                Err(e) => return Err(Close::Io(e)),
            }
        }
        // Give memory back after a burst instead of holding the high-water mark.
        if self.wbuf.capacity() > 4 * READ_CHUNK {
            self.wbuf = BytesMut::new();
        }
        Ok(true)
    }
}
