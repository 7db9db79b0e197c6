//! Frames and bodies as bytes.
//!
//! This module owns the byte layout of every [`Message`](crate::types::Message): the fixed 32-byte
//! frame [`Header`], the body encoding of each message kind, the encoding of
//! a client (or shard master) request stored as a command inside a Paxos
//! [`Batch`](crate::types::Batch), and the incremental [`Decoder`] that turns a connection's read
//! buffer into frames.
//! `PROTOCOL.md` beside this crate is the normative description of the same
//! bytes; the golden tests pin both together.
//!
//! What it must never do, because its input comes from the network:
//! - panic on any input (errors are [`DecodeError`] values);
//! - allocate more than the input can justify: every count and length is
//!   checked against the bytes actually present before anything is reserved,
//!   and a frame whose header declares a body over the limit is refused as
//!   soon as the header is complete;
//! - copy keys, values, commands or snapshot data: they are decoded as
//!   [`Bytes::slice`](bytes::Bytes::slice)-style views of the read buffer (the exceptions are
//!   strings, which the shared types hold as `String`: an `Error` reply's
//!   reason and the server addresses of the shard master's messages; they
//!   are small and rare, so the copy does not matter).
//!
//! Encoding trusts its caller: it panics only when a length does not fit the
//! format's `u32` (a caller bug, never network input).
//!
//! Files by section: `header.rs` (layout, limits, [`Header`]), `kinds.rs`
//! (kind codes), `error.rs` ([`DecodeError`]), `encode.rs` (frames, bodies,
//! commands), `reader.rs` (the body cursor), `decode.rs` (bodies, commands),
//! `txn.rs` and `master.rs` (transactions and master requests, both ways),
//! `scan.rs` (the page answering a scan, both ways), `stamp.rs` (the
//! trace stamp a tracing server puts before a frame),
//! `decoder.rs` (the incremental [`Decoder`]).

mod decode;
mod decoder;
mod encode;
mod error;
mod header;
mod kinds;
mod master;
mod reader;
mod scan;
mod stamp;
mod txn;

pub use decode::*;
pub use decoder::*;
pub use encode::*;
pub use error::*;
pub use header::*;
pub use kinds::*;
pub use master::*;
use reader::*;
pub use scan::*;
pub use stamp::*;
pub use txn::*;

#[cfg(test)]
mod tests;
