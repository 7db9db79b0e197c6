//! One-line JSON output of configurations.

use std::fmt::Write as _;
use synod::client::json_string;
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
