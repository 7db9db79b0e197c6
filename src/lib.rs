//! Synod: a sharded, Multi-Paxos-replicated, linearizable key/value store.
//!
//! The protocol cores ([`paxos`], [`kv`], [`master`], [`replica`]) are
//! sans-IO state machines: events in, actions out; they never open a socket,
//! read a clock, touch a file or call a global RNG. The deterministic simulator ([`sim`])
//! drives them in tests; the mio runtime drives them in production.

pub mod auth;
pub mod check;
pub mod client;
pub mod kv;
pub mod master;
pub mod metrics;
pub mod paxos;
pub mod pb;
pub mod replica;
pub mod resp;
pub mod rng;
pub mod runtime;
pub mod shardkv;
pub mod sim;
pub mod storage;
pub mod trace;
