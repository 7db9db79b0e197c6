//! Synod's operator and benchmarking tools (the load generator lands with the throughput issue).
