//! Checkers for simulator and cluster histories.
//!
//! [`linearizability`] owns the generic Wing & Gong / Lowe search over any
//! sequential [`linearizability::Model`]. Checkers only read histories:
//! they never drive the system under test.

pub mod linearizability;

pub use linearizability::{CheckOptions, Model, Operation, Verdict};
