//! One TCP connection as a core sees it: bounded read and write buffers, an
//! incremental decoder, and the bookkeeping that drives back-pressure and
//! timeouts. All socket system calls of the runtime live here and in
//! `core.rs`'s accept loop, written the way mio expects: read and write until
//! `WouldBlock`, retry on `Interrupted`, tolerate spurious events.

use std::io::{self, Read, Write};
use std::time::Instant;

use bytes::BytesMut;
use mio::net::TcpStream;
use synod_wire::{encode_frame, AuthMsg, DecodeError, Decoder, Frame, GroupId, Message, ReplicaId};

use crate::auth::{Accepting, Dialer, Identity, Key};

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
    /// Registered for writable events (a write hit `WouldBlock`).
    pub want_write: bool,
    pub auth: AuthState,
    /// Frames queued on a dialed connection before its handshake finished.
    pub held: BytesMut,
    /// Requests refused for lack of authentication (logged once per
    /// connection at warn level, so a flood of them is not a log flood).
    pub refused: u64,
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
        }
    }
}

/// How much one read call asks for; the buffer grows in these steps.
const READ_CHUNK: usize = 64 * 1024;

impl Conn {
    pub fn new(stream: TcpStream, role: Role, max_frame_bytes: u32, now: Instant) -> Conn {
        Conn {
            stream,
            role,
            decoder: Decoder::new(max_frame_bytes),
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::new(),
            in_flight: 0,
            created: now,
            last_frame: now,
            frames_in: 0,
            connecting: matches!(role, Role::Peer { .. } | Role::Rpc { .. }),
            paused: false,
            want_write: false,
            auth: AuthState::None,
            held: BytesMut::new(),
            refused: 0,
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
    /// edge-triggered and will not say so again.
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
                    self.rbuf.extend_from_slice(&scratch[..n]);
                    read += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Close::Io(e)),
            }
        }
    }

    /// The next whole frame in the read buffer, if any.
    pub fn next_frame(&mut self, now: Instant) -> Result<Option<Frame>, Close> {
        match self.decoder.decode(&mut self.rbuf) {
            Ok(Some(f)) => {
                self.frames_in += 1;
                self.last_frame = now;
                Ok(Some(f))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Close::Decode(e)),
        }
    }

    pub fn queue(&mut self, frame: &Frame) {
        if matches!(self.auth, AuthState::Dialing(_)) {
            encode_frame(frame, &mut self.held);
        } else {
            encode_frame(frame, &mut self.wbuf);
        }
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
