//! A Redis-protocol (RESP2 and RESP3) front door to a Synod cluster.
//!
//! This module owns everything between a Redis client's bytes and the
//! Synod client library: the request parser (`parse`), the reply encoder
//! (`reply`), the mapping of Redis commands onto KV operations (`command`),
//! MULTI/EXEC/WATCH and the atomic multi-key commands on single-group
//! transactions (`multi`), the per-key ordering rule for a connection's operations (`batch`), a
//! connection's commands from parsing to in-order replies (`pipeline`), the
//! event loops and RESP sockets (`gateway`) and each loop's connections to
//! the cluster (`upstream`). `parse`, `reply`, `command`, `multi`, `batch`
//! and `pipeline` are sans-IO and tested on byte buffers.
//!
//! The gateway is a *client* of the cluster, not part of a replica: it runs
//! in the `synod-server` process (`--resp-listen ADDR`) but reaches the data
//! through the same wire protocol as any other client, so every command
//! gets the store's guarantees (linearizable per key, at-most-once writes)
//! and the replicas stay unaware of it.
//!
//! What it must never do: panic on anything a Redis client sends, or hold
//! unbounded memory for one (declared sizes are checked before anything is
//! buffered for them; connections, request bytes and idle time are capped).
//!
//! Semantics worth knowing as a Redis user:
//! - `SET` takes NX, XX, GET, EX, PX, EXAT, PXAT and KEEPTTL (one atomic
//!   PutIf, or PutEx with an expiry). INCR and friends, SETNX, GETSET,
//!   GETDEL, SETEX, PSETEX, GETEX, the EXPIRE family and PERSIST are one
//!   atomic write each; TTL/PTTL one read. Expiry is in log time (the
//!   group leader's clock stamped into the log).
//! - The protocol is per connection: RESP2 until `HELLO 3`; each reply is
//!   encoded in the protocol in force when its command arrived.
//! - `APPEND` is two operations, an Append then a Get, and replies the length
//!   the Get read: if another client writes the key in between, the length
//!   includes that write. Synod's Append does not return the new length.
//! - `MSET`, `MGET` and `DEL`/`UNLINK` of several keys, `MSETNX`,
//!   `RENAME`, `RENAMENX` and `EXEC` are transactions (`multi`): one log
//!   entry when the keys lie in one group, two-phase commit across groups.
//! - Commands of one pipeline keep their order per key; different keys run
//!   concurrently (see `batch`).
//! - Errors: `-TIMEOUT` (the command may or may not have taken effect),
//!   `-CLUSTERDOWN` (never delivered), `-ERR` (refused).

mod batch;
mod command;
mod gateway;
mod keyspace;
mod multi;
mod parse;
mod pipeline;
mod reply;
mod upstream;

pub use command::{plan, KvCommand, Plan, Session};
pub use gateway::{
    default_threads, serve, serve_with, GatewayOptions, DEFAULT_COMMAND_ARGS_MAX,
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECTIONS_MAX, DEFAULT_IDLE_TIMEOUT, DEFAULT_PARTIAL_BUDGET,
    DEFAULT_READ_BUF_MAX, THREADS_MAX, UNANSWERED_COMMANDS_MAX, UNSENT_REPLY_BYTES_MAX,
};
pub use parse::{ParseError, Parser, ARRAY_LEN_MAX, BULK_BYTES_MAX, INLINE_BYTES_MAX};
pub use reply::Reply;
