//! Replicated KV state machine (being written).
