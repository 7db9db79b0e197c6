//! The dialer's handshake as every client-side driver runs it: the hello
//! and proof frames and what a first frame other than a good challenge
//! means. Sans-IO (the nonce comes from [`random_nonce`], the OS CSPRNG,
//! drawn once at start); the blocking clients (`stream::dial`) and the
//! non-blocking ones (`client::mio_conn`: the RESP gateway's upstream,
//! `synod-bench`) move the bytes.

use bytes::BytesMut;
use synod_wire::{encode_frame, AuthMsg, Frame, GroupId, Message};

use super::{random_nonce, Dialer, Identity, Key};

/// A handshake in progress on one dialed connection.
#[derive(Debug)]
pub struct Handshake {
    dialer: Dialer,
    group: GroupId,
}

impl Handshake {
    /// Starts authenticating as `identity` with `key` on a connection for
    /// `group` (the server's core 0 hands the connection to that group's
    /// core): encodes the hello into `out`. Nothing else may be sent until
    /// [`Handshake::finish`] succeeded.
    pub fn start(
        key: &Key,
        identity: Identity,
        group: GroupId,
        out: &mut BytesMut,
    ) -> Result<Handshake, String> {
        let nonce = random_nonce().map_err(|e| format!("authentication: {e}"))?;
        let (dialer, hello) = Dialer::new(key, identity, nonce);
        encode_frame(
            &Frame {
                request_id: 0,
                group,
                message: Message::Auth(AuthMsg::Hello(hello)),
            },
            out,
        );
        Ok(Handshake { dialer, group })
    }

    /// The server's first frame: if it is a challenge proving the server
    /// holds the key, encodes our proof into `out` (the connection is then
    /// authenticated both ways); anything else is an error naming why.
    pub fn finish(self, frame: Frame, out: &mut BytesMut) -> Result<(), String> {
        let Message::Auth(AuthMsg::Challenge(c)) = frame.message else {
            return Err(
                "authentication: the server answered the hello with something else \
                 (does it run without a key?)"
                    .into(),
            );
        };
        let proof = self
            .dialer
            .on_challenge(&c)
            .map_err(|e| format!("authentication: the server does not hold the key: {e}"))?;
        encode_frame(
            &Frame {
                request_id: 0,
                group: self.group,
                message: Message::Auth(AuthMsg::Proof(proof)),
            },
            out,
        );
        Ok(())
    }
}
