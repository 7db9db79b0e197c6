//! Synod's operator and benchmarking tools.
//!
//! `synod-bench` (`src/bin/synod-bench.rs`) is a pipelined load generator,
//! closed-loop or at a fixed rate (`--rate`), that speaks the wire protocol
//! directly. Its parts live here so they can be unit-tested:
//!
//! - [`driver`]: the pipelined driver (sessions, connections, retries);
//! - [`pace`]: the open-loop schedule of `--rate`;
//! - [`cli`]: the command line;
//! - [`workload`]: the operation mix, key names and values;
//! - [`zipf`]: uniform and Zipfian key choosers;
//! - [`report`]: the summary, the last `key=value` line and JSON.

pub mod cli;
pub mod driver;
pub mod pace;
pub mod report;
pub mod workload;
pub mod zipf;
