//! The dialer's handshake over a blocking `std::net::TcpStream`, for the
//! clients (the client library, `synod-bench`, the RESP gateway's upstream
//! connections). Done once, right after connect, before any other frame.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use synod_wire::{encode_frame, AuthMsg, Decoder, Frame, GroupId, Message};

use super::{random_nonce, Dialer, Identity, Key};

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
    let nonce = random_nonce()?;
    let (dialer, hello) = Dialer::new(key, identity, nonce);
    let mut out = BytesMut::new();
    encode_frame(
        &Frame {
            request_id: 0,
            group,
            message: Message::Auth(AuthMsg::Hello(hello)),
        },
        &mut out,
    );
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
    let Message::Auth(AuthMsg::Challenge(c)) = frame.message else {
        return Err(
            "authentication: the server answered the hello with something else \
             (does it run without a key?)"
                .into(),
        );
    };
    let proof = dialer
        .on_challenge(&c)
        .map_err(|e| format!("authentication: the server does not hold the key: {e}"))?;
    out.clear();
    encode_frame(
        &Frame {
            request_id: 0,
            group,
            message: Message::Auth(AuthMsg::Proof(proof)),
        },
        &mut out,
    );
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
