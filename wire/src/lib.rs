//! `synod-wire`: Synod's binary protocol.
//!
//! - [`types`]: every message as a Rust value (shared by the server, the
//!   client library and the simulator).
//! - [`codec`]: frames and bodies as bytes; an incremental decoder that never
//!   panics and never allocates past the configured maximum frame size.
//! - [`cursor`]: [`ByteReader`], the bounds-checked cursor every byte format
//!   (here and in the server's snapshots) reads untrusted input with.
//! - [`shard`]: the key→shard hash every client routes with.
//! - [`glob`]: Redis' glob patterns, which servers match scans with.
//!
//! `PROTOCOL.md` beside this crate specifies every byte.

pub mod codec;
pub mod cursor;
pub mod glob;
pub mod shard;
pub mod types;

pub use codec::*;
pub use cursor::{ByteReader, ReadError};
pub use glob::glob_match;
pub use shard::*;
pub use types::*;
