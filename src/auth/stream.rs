//! The dialer's handshake ([`super::dial::Handshake`]) over a blocking
//! `std::net::TcpStream`, for the blocking clients (the client library,
//! tests). Done once, right after connect, before any other frame.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use synod_wire::{Decoder, GroupId};

use super::dial::Handshake;
use super::{Identity, Key};

/// Authenticate `stream` (already connected, blocking) as `identity` with
/// `key`, naming `group` (the group the connection is for; the server's
/// core 0 hands the connection to that group's core). Waits at most
/// `timeout` for the server's challenge. On success the server has proved
/// it holds the key and the proof is sent: the caller may write requests.
pub fn dial(
    stream: &mut TcpStream,
    key: &Key,
    identity: Identity,
    group: GroupId,
    timeout: Duration,
) -> Result<(), String> {
    let mut out = BytesMut::new();
    let handshake = Handshake::start(key, identity, group, &mut out)?;
    stream
        .write_all(&out)
        .map_err(|e| format!("authentication: {e}"))?;
    let old = stream.read_timeout().ok().flatten();
    stream
        .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(|e| format!("authentication: {e}"))?;
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 512];
    let frame = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(f)) => break f,
            Ok(None) => {}
            Err(e) => return Err(format!("authentication: bad frame from the server: {e}")),
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err("authentication refused: the server closed the connection \
                            (wrong key, or the server has no key for this role)"
                    .into())
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("authentication: no challenge from the server: {e}")),
        }
    };
    let _ = stream.set_read_timeout(old);
    out.clear();
    handshake.finish(frame, &mut out)?;
    stream
        .write_all(&out)
        .map_err(|e| format!("authentication: {e}"))?;
    Ok(())
}

/// The key and identity a client dials with, from the keys it was given: the
/// cluster key makes it an admin (allowed everything a client is), else the
/// client key makes it a client; neither: no handshake.
pub fn client_identity(cluster: Option<&Key>, client: Option<&Key>) -> Option<(Key, Identity)> {
    match (cluster, client) {
        (Some(k), _) => Some((k.clone(), Identity::Admin)),
        (None, Some(k)) => Some((k.clone(), Identity::Client)),
        (None, None) => None,
    }
}
