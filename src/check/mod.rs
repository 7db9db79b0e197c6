//! Checkers for simulator and cluster histories.
//!
//! [`linearizability`] owns the generic Wing & Gong / Lowe search over any
//! sequential [`linearizability::Model`]; [`kv`] owns the key/value model
//! and the history types clients record ([`kv::KvOp`]), and checks a whole
//! multi-key history with [`kv::check_kv`]. For transactions, [`bank`]
//! checks audits' totals and [`elle`] checks list-append histories for
//! strict serializability (dependency cycles with real time, Elle-style).
//! Checkers only read histories: they never drive the system under test.

pub mod bank;
pub mod elle;
pub mod kv;
pub mod linearizability;

pub use kv::{check_kv, CheckResult, KvInput, KvModel, KvOp, KvOutput};
pub use linearizability::{CheckOptions, Model, Operation, Verdict};
