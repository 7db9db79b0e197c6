//! One-line JSON output of configurations.

use std::fmt::Write as _;
use synod_wire::{Config, GroupInfo};

/// `config` as one line of JSON:
/// `{"num":N,"shards":[gid,...],"groups":{"gid":["addr",...],...}}`,
/// groups in ascending gid order (JSON object keys must be strings).
pub(crate) fn config_json(config: &Config) -> String {
    let mut s = String::new();
    let _ = write!(s, "{{\"num\":{},\"shards\":[", config.num);
    for (i, gid) in config.shards.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{gid}");
    }
    s.push_str("],\"groups\":{");
    let mut groups: Vec<&GroupInfo> = config.groups.iter().collect();
    groups.sort_by_key(|g| g.gid);
    for (i, group) in groups.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{}\":[", group.gid);
        for (j, server) in group.servers.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            json_string(&mut s, server);
        }
        s.push(']');
    }
    s.push_str("}}");
    s
}

/// Appends `text` as a JSON string literal (RFC 8259 escaping).
pub(crate) fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
