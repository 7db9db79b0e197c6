//! Frame and body encoding (being written).
