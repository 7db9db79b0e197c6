//! `synod`: the command-line client and local playground.
//!
//! This binary owns argument parsing, output formats (raw values, one-line
//! JSON configurations), exit statuses, and the `playground` command that
//! runs a throwaway local cluster of `synod-server` processes. Talking to the
//! cluster is entirely [`synod::client`]'s job.
//!
//! It must never panic or hang on user input or cluster behaviour: every
//! failure is one line on stderr and a non-zero exit status, and every
//! cluster call is bounded by `--timeout`.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use synod::auth::Key;
use synod::client::{json_string, Client, ClientError, ClientOptions};
use synod_wire::{Config, GroupId, GroupInfo};

mod args;
mod json;
mod playground;
#[cfg(test)]
mod tests;

use args::*;
use json::*;
use playground::*;

const USAGE: &str = "\
usage: synod [--masters A,B,C] [--timeout SECS] [--cluster-key-file PATH] COMMAND

commands:
  get KEY                 print KEY's value and a newline
  get --json KEY          print {\"key\":..,\"value\":..,\"version\":N} (value null
                          and version 0 when KEY has no value; exit 1 then)
  del KEY...              delete the keys; print how many had a value
  keys [PATTERN]          print every key (matching the Redis glob PATTERN),
                          one per line, shard by shard in key order (a SCAN:
                          keys that exist throughout are printed even if
                          shards move meanwhile)
  put KEY VALUE           set KEY to VALUE
  append KEY VALUE        append VALUE to KEY's value
  txn [if CMP [and CMP]... then] OP... [else OP...]
                          run a transaction (README: Transactions); CMP is
                          KEY value|version =|!=|<|> X, KEY exists or KEY
                          absent; OP is get K, put K V, append K V, delete K
                          or incr K N; prints the result as one JSON line
  admin join GID ADDR...  add replica group GID with members ADDR...
  admin leave GID...      remove groups
  admin move SHARD GID    assign SHARD to group GID
  admin query [NUM]       print configuration NUM (default: latest) as JSON
  admin status [--table]  ask every node (masters and configured servers)
                          for the groups it hosts; print every group's
                          members, leader, ballot, commit and applied points,
                          each member's lag, its shards and each node's
                          reachability, as one line of JSON or (--table) a
                          table; exit 1 when a group has no reachable majority
  trace-merge FILE...     merge the --trace files of a run's servers into one
                          trace (stdout) for ShiViz, in Lamport order, and
                          check its clocks (summary on stderr)
  playground [--dir DIR] [--base-port PORT] [--nodes N] [--groups G (default 3)]
             [--server-arg ARG]... [--resp-port PORT] [--metrics-port PORT]
             [--ready-secs N]
                          run a local cluster until Ctrl-C; each --server-arg
                          is passed to every synod-server (e.g.
                          --server-arg=--reads --server-arg=log); with
                          --resp-port, node i also serves Redis (RESP2) on
                          PORT+i; node i serves Prometheus metrics on
                          http://127.0.0.1:PORT+i/metrics (default PORT:
                          --base-port + 200), printed as SYNOD_METRICS;
                          --ready-secs: how long the masters, and then the
                          groups, get to serve (default 30; a restart that
                          replays a large log needs more)

options (before COMMAND):
  --masters A,B,C         shard master addresses (default: $SYNOD_MASTERS)
  --timeout SECS          give up on an operation after SECS (default 10)
  --cluster-key-file PATH the cluster's key (default: $SYNOD_CLUSTER_KEY_FILE);
                          needed for admin commands on a cluster with a key
  --client-key-file PATH  the client key, for a cluster started with
                          --client-key-file (default: $SYNOD_CLIENT_KEY_FILE)

playground generates a cluster key into DIR/cluster.key and prints
SYNOD_CLUSTER_KEY_FILE beside SYNOD_MASTERS.

admin commands print the resulting configuration as one line of JSON:
  {\"num\":N,\"shards\":[gid,...],\"groups\":{\"gid\":[\"addr\",...],...}}

exit status: 0 ok, 1 key not found or operation failed, 2 bad usage";

/// Exit status for success.
const EXIT_OK: i32 = 0;
/// `get` of an absent key, or an operation the cluster did not complete.
const EXIT_FAILED: i32 = 1;
/// The command line could not be understood.
const EXIT_USAGE: i32 = 2;

/// Default `--timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted `--timeout`: long enough for anything interactive,
/// short enough that deadline arithmetic can never overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Default first port of `playground`.
const DEFAULT_BASE_PORT: u16 = 7100;
/// Default and maximum node count of `playground`.
const DEFAULT_NODES: usize = 3;
const MAX_NODES: usize = 9;

/// A parsed command line.
#[derive(Debug, PartialEq)]
struct Cli {
    /// From `--masters`; `None` means "use `SYNOD_MASTERS`".
    masters: Option<Vec<String>>,
    timeout: Duration,
    /// `--cluster-key-file`; `None` means "use `SYNOD_CLUSTER_KEY_FILE`".
    cluster_key_file: Option<PathBuf>,
    /// `--client-key-file`; `None` means "use `SYNOD_CLIENT_KEY_FILE`".
    client_key_file: Option<PathBuf>,
    command: Cmd,
}

#[derive(Debug, PartialEq)]
enum Cmd {
    Help,
    Get { key: Vec<u8> },
    Keys { pattern: Option<Vec<u8>> },
    GetJson { key: Vec<u8> },
    Del { keys: Vec<Vec<u8>> },
    Put { key: Vec<u8>, value: Vec<u8> },
    Append { key: Vec<u8>, value: Vec<u8> },
    Txn(synod_wire::Txn),
    Join { gid: GroupId, servers: Vec<String> },
    Leave { gids: Vec<GroupId> },
    Move { shard: u32, gid: GroupId },
    Query { num: Option<u64> },
    Status { table: bool },
    Playground(PlaygroundArgs),
    TraceMerge { files: Vec<PathBuf> },
}

#[derive(Debug, PartialEq)]
struct PlaygroundArgs {
    dir: Option<PathBuf>,
    base_port: u16,
    nodes: usize,
    /// KV groups to join (each on every node).
    groups: GroupId,
    /// Extra `synod-server` flags for every node (`--server-arg`, repeated).
    server_args: Vec<OsString>,
    /// With `Some(p)`, node `i` also serves RESP on `p + i`.
    resp_port: Option<u16>,
    /// Node `i` serves metrics on `p + i` (`None`: `base_port + 200`;
    /// the perf scripts put `--resp-port` at `base_port + 100`).
    metrics_port: Option<u16>,
    /// How long the masters, then the groups, get to serve (`--ready-secs`).
    ready_within: Duration,
}

impl PlaygroundArgs {
    fn metrics_base(&self) -> usize {
        self.metrics_port
            .map_or(usize::from(self.base_port) + 200, usize::from)
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let env_masters = std::env::var("SYNOD_MASTERS").ok();
    // Everything the command owns (child processes above all) is dropped
    // inside `run`, before `exit`, which would skip destructors.
    let code = run(args, env_masters);
    std::process::exit(code);
}

fn run(args: Vec<OsString>, env_masters: Option<String>) -> i32 {
    let cli = match parse_args(args) {
        Ok(cli) => cli,
        Err(why) => {
            eprintln!("synod: {why}");
            eprintln!("run `synod --help` for usage");
            return EXIT_USAGE;
        }
    };
    match cli.command {
        Cmd::Help => {
            print_stdout(format!("{USAGE}\n").as_bytes());
            EXIT_OK
        }
        Cmd::TraceMerge { files } => trace_merge(&files),
        Cmd::Playground(args) => match playground(&args, cli.timeout) {
            Ok(()) => EXIT_OK,
            Err(why) => {
                eprintln!("synod playground: {why}");
                EXIT_FAILED
            }
        },
        command => {
            let masters = match resolve_masters(cli.masters, env_masters.as_deref()) {
                Ok(m) => m,
                Err(why) => {
                    eprintln!("synod: {why}");
                    return EXIT_USAGE;
                }
            };
            let mut opts = ClientOptions::new(masters);
            opts.timeout = cli.timeout;
            opts.rpc_timeout = opts.rpc_timeout.min(cli.timeout);
            let env_path = |var: &str| {
                std::env::var_os(var)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            };
            let load = |flag: Option<PathBuf>, var: &str| match flag.or_else(|| env_path(var)) {
                Some(path) => Key::load(&path).map(Some),
                None => Ok(None),
            };
            match (
                load(cli.cluster_key_file, "SYNOD_CLUSTER_KEY_FILE"),
                load(cli.client_key_file, "SYNOD_CLIENT_KEY_FILE"),
            ) {
                (Ok(cluster), Ok(client)) => {
                    opts.cluster_key = cluster;
                    opts.client_key = client;
                }
                (Err(why), _) | (_, Err(why)) => {
                    eprintln!("synod: {why}");
                    return EXIT_USAGE;
                }
            }
            let masters = opts.masters.clone();
            let key = opts.cluster_key.clone();
            let mut client = match Client::new(opts) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("synod: {e}");
                    return EXIT_USAGE;
                }
            };
            if let Cmd::Status { table } = command {
                return admin_status(&mut client, &masters, key.as_ref(), cli.timeout, table);
            }
            execute(&mut client, command)
        }
    }
}

/// Prints the servers' `--trace` files merged into one ShiViz trace,
/// after checking its clocks.
fn trace_merge(files: &[PathBuf]) -> i32 {
    let mut texts = Vec::new();
    for f in files {
        match std::fs::read_to_string(f) {
            Ok(t) => texts.push(t),
            Err(e) => {
                eprintln!("synod trace-merge: {}: {e}", f.display());
                return EXIT_FAILED;
            }
        }
    }
    let merged = match synod::trace::merge(&texts) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("synod trace-merge: {why}");
            return EXIT_FAILED;
        }
    };
    let events = synod::trace::parse(&merged).unwrap_or_default();
    match synod::trace::check(&events) {
        Ok(pairs) => eprintln!(
            "synod trace-merge: {} events, {pairs} sends matched to their receives; clocks consistent",
            events.len()
        ),
        Err(why) => eprintln!("synod trace-merge: warning: {why}"),
    }
    print_stdout(merged.as_bytes());
    EXIT_OK
}

/// Runs one client command and prints its result.
fn execute(client: &mut Client, command: Cmd) -> i32 {
    let result: Result<Option<Vec<u8>>, ClientError> = match command {
        Cmd::Get { key } => match client.get(key.clone()) {
            Ok(Some(value)) => Ok(Some([&value[..], b"\n"].concat())),
            Ok(None) => {
                eprintln!(
                    "synod: key {} has no value",
                    String::from_utf8_lossy(&key).escape_debug()
                );
                return EXIT_FAILED;
            }
            Err(e) => Err(e),
        },
        Cmd::GetJson { key } => return get_json(client, key),
        Cmd::Keys { pattern } => {
            let mut out = std::io::stdout().lock();
            client
                .scan_keys(pattern.map(bytes::Bytes::from), 1000, |k| {
                    let _ = out.write_all(k);
                    let _ = out.write_all(b"\n");
                })
                .map(|_| None)
        }
        Cmd::Del { keys } => {
            let ops = keys
                .into_iter()
                .map(|key| synod_wire::Op::Delete { key: key.into() })
                .collect();
            let mut removed = 0u64;
            for r in client.execute_many(ops) {
                match r {
                    // Each Delete answers "1" (it had a value) or "0".
                    Ok(Some(n)) if n.as_ref() == b"1" => removed += 1,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("synod: {e}");
                        return EXIT_FAILED;
                    }
                }
            }
            Ok(Some(format!("{removed}\n").into_bytes()))
        }
        Cmd::Put { key, value } => client.put(key, value).map(|()| None),
        Cmd::Append { key, value } => client.append(key, value).map(|()| None),
        Cmd::Txn(txn) => client.txn(txn).map(|r| {
            let mut line = synod::client::txn_result_json(&r);
            line.push('\n');
            Some(line.into_bytes())
        }),
        Cmd::Join { gid, servers } => client
            .join(vec![GroupInfo { gid, servers }])
            .map(|c| Some(config_line(&c))),
        Cmd::Leave { gids } => client.leave(gids).map(|c| Some(config_line(&c))),
        Cmd::Move { shard, gid } => client.move_shard(shard, gid).map(|c| Some(config_line(&c))),
        Cmd::Query { num } => client.query(num).map(|c| Some(config_line(&c))),
        Cmd::Help | Cmd::Playground(_) | Cmd::Status { .. } | Cmd::TraceMerge { .. } => {
            unreachable!("handled by run")
        }
    };
    match result {
        Ok(out) => {
            if let Some(bytes) = out {
                print_stdout(&bytes);
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("synod: {e}");
            EXIT_FAILED
        }
    }
}

/// `get --json`: the value and its version, read as a one-Get transaction
/// (a transaction's results carry each key's version).
fn get_json(client: &mut Client, key: Vec<u8>) -> i32 {
    let txn = synod_wire::Txn {
        compares: Vec::new(),
        success: vec![synod_wire::Op::Get {
            key: key.clone().into(),
        }],
        failure: Vec::new(),
    };
    let result = match client.txn(txn) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("synod: {e}");
            return EXIT_FAILED;
        }
    };
    let mut line = String::from("{\"key\":");
    json_string(&mut line, &String::from_utf8_lossy(&key));
    let code = match result.results.first() {
        Some(synod_wire::TxnOpResult::Ok { value, version }) => {
            line.push_str(",\"value\":");
            json_string(&mut line, &String::from_utf8_lossy(value));
            line.push_str(&format!(",\"version\":{version}}}"));
            EXIT_OK
        }
        Some(synod_wire::TxnOpResult::NoKey) => {
            line.push_str(",\"value\":null,\"version\":0}");
            EXIT_FAILED
        }
        other => {
            eprintln!("synod: unexpected transaction result {other:?}");
            return EXIT_FAILED;
        }
    };
    line.push('\n');
    print_stdout(line.as_bytes());
    code
}

/// `admin status`: every node's report, put together per group. Exit 1
/// when some group has no reachable majority (or nothing answered).
fn admin_status(
    client: &mut Client,
    masters: &[String],
    key: Option<&Key>,
    timeout: Duration,
    table: bool,
) -> i32 {
    use synod::client::status;
    let config = client.query(None).map_err(|e| e.to_string());
    let nodes = status::nodes_of(masters, config.as_ref().ok());
    // Each node gets a few seconds at most; they are asked in parallel.
    let reports = status::fetch_all(&nodes, key, timeout.min(Duration::from_secs(3)));
    let st = status::assemble(masters, config.as_ref().map_err(Clone::clone), &reports);
    let text = if table {
        st.to_table()
    } else {
        st.to_json() + "\n"
    };
    print_stdout(text.as_bytes());
    if st.all_quorate() {
        EXIT_OK
    } else {
        let lost: Vec<String> = st
            .groups
            .iter()
            .filter(|g| !g.quorum)
            .map(|g| g.gid.to_string())
            .collect();
        eprintln!(
            "synod: no reachable majority in group(s) {}",
            lost.join(", ")
        );
        EXIT_FAILED
    }
}

/// Writes to stdout, ignoring a closed pipe (`synod get k | head -c1`):
/// `print!` would panic there.
fn print_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

fn config_line(config: &Config) -> Vec<u8> {
    let mut line = config_json(config);
    line.push('\n');
    line.into_bytes()
}
