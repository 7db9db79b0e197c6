//! The shapes of `synod`'s one-line JSON output, written by `serde_json`.

use std::collections::BTreeMap;

use serde::Serialize;
use synod_wire::{Config, GroupId, ReplicationMode};

/// A configuration:
/// `{"num":N,"shards":[gid,...],"groups":{"gid":["addr",...],...}}`,
/// groups in ascending gid order (JSON object keys are strings; serde_json
/// writes the integer keys as such), each with its *members'* addresses.
/// A group whose membership changed (replace, add-member, remove-member)
/// also appears under `"membership"`: every server it ever listed, by
/// replica id, which ids are members, and which the group started with.
/// A primary/backup group appears under `"modes"` as `"pb"`.
#[derive(Serialize)]
pub(crate) struct ConfigJson<'a> {
    num: u64,
    shards: &'a [GroupId],
    groups: BTreeMap<GroupId, Vec<&'a str>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    membership: BTreeMap<GroupId, MembershipJson<'a>>,
    /// Groups that do not replicate by Paxos, and how: `"pb"`
    /// (primary/backup). Absent when every group is Paxos.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    modes: BTreeMap<GroupId, &'static str>,
}

/// `{"servers":["addr",...],"members":[id,...],"founders":[id,...]}`.
#[derive(Serialize)]
pub(crate) struct MembershipJson<'a> {
    servers: &'a [String],
    members: Vec<u32>,
    founders: Vec<u32>,
}

impl<'a> From<&'a Config> for ConfigJson<'a> {
    fn from(config: &'a Config) -> ConfigJson<'a> {
        let ids = |mask: u64| -> Vec<u32> { (0..64).filter(|i| mask & (1u64 << i) != 0).collect() };
        ConfigJson {
            num: config.num,
            shards: &config.shards,
            groups: config
                .groups
                .iter()
                .map(|g| (g.gid, g.member_servers().map(|(_, s)| s).collect()))
                .collect(),
            membership: config
                .groups
                .iter()
                .filter(|g| g.changed())
                .map(|g| {
                    let m = MembershipJson {
                        servers: &g.servers,
                        members: ids(g.members()),
                        founders: ids(g.founders()),
                    };
                    (g.gid, m)
                })
                .collect(),
            modes: config
                .groups
                .iter()
                .filter(|g| g.mode == ReplicationMode::PrimaryBackup)
                .map(|g| (g.gid, "pb"))
                .collect(),
        }
    }
}

/// `get --json`: `{"key":..,"value":..,"version":N}`, value `null` and
/// version 0 for an absent key; both shown as UTF-8 (invalid bytes
/// replaced).
#[derive(Serialize)]
pub(crate) struct GetJson {
    pub key: String,
    pub value: Option<String>,
    pub version: u64,
}

/// `value` as one line of JSON with its newline.
pub(crate) fn json_line(value: &impl Serialize) -> String {
    // Serializing these plain structs into a String cannot fail: every map
    // key is a string or an integer.
    let mut line = serde_json::to_string(value).expect("JSON of plain data");
    line.push('\n');
    line
}
