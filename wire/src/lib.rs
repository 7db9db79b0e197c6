//! `synod-wire`: Synod's binary protocol.
//!
//! - [`types`]: every message as a Rust value (shared by the server, the
//!   client library and the simulator).
//! - [`codec`]: frames and bodies as bytes; an incremental decoder that never
//!   panics and never allocates past the configured maximum frame size.
//! - [`shard`]: the key→shard hash every client routes with.
//! - [`glob`]: Redis' glob patterns, which servers match scans with.
//!
//! `PROTOCOL.md` beside this crate specifies every byte.

pub mod codec;
pub mod glob;
pub mod shard;
pub mod types;

pub use codec::*;
pub use glob::glob_match;
pub use shard::*;
pub use types::*;
