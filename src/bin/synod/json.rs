//! The shapes of `synod`'s one-line JSON output, written by `serde_json`.

use std::collections::BTreeMap;

use serde::Serialize;
use synod_wire::{Config, GroupId};

/// A configuration:
/// `{"num":N,"shards":[gid,...],"groups":{"gid":["addr",...],...}}`,
/// groups in ascending gid order (JSON object keys are strings; serde_json
/// writes the integer keys as such).
#[derive(Serialize)]
pub(crate) struct ConfigJson<'a> {
    num: u64,
    shards: &'a [GroupId],
    groups: BTreeMap<GroupId, &'a [String]>,
}

impl<'a> From<&'a Config> for ConfigJson<'a> {
    fn from(config: &'a Config) -> ConfigJson<'a> {
        ConfigJson {
            num: config.num,
            shards: &config.shards,
            groups: config
                .groups
                .iter()
                .map(|g| (g.gid, g.servers.as_slice()))
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
