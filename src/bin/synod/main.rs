//! `synod`: the command-line client and local playground.
//!
//! This binary owns the command line (declared with `clap` in `args.rs`),
//! output formats (raw values, one-line JSON through `serde_json`), exit
//! statuses, and the `playground` command that
//! runs a throwaway local cluster of `synod-server` processes. Talking to the
//! cluster is entirely [`synod::client`]'s job.
//!
//! It must never panic or hang on user input or cluster behaviour: every
//! failure is one line on stderr and a non-zero exit status, and every
//! cluster call is bounded by `--timeout`.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use synod::auth::Key;
use synod::client::{Client, ClientError, ClientOptions, TxnResultJson};
use synod_wire::{Config, GroupInfo};

mod args;
mod json;
mod playground;
#[cfg(test)]
mod tests;

use args::*;
use json::*;
use playground::*;

/// Exit status for success.
const EXIT_OK: i32 = 0;
/// `get` of an absent key, or an operation the cluster did not complete.
const EXIT_FAILED: i32 = 1;
/// The command line could not be understood.
const EXIT_USAGE: i32 = 2;

/// Longest accepted `--timeout`: long enough for anything interactive,
/// short enough that deadline arithmetic can never overflow.
const TIMEOUT_MAX: Duration = Duration::from_secs(24 * 3600);

/// Default first port of `playground`.
const DEFAULT_BASE_PORT: u16 = 7100;
/// Default and maximum node count of `playground`.
const DEFAULT_NODES: usize = 3;
const NODES_MAX: usize = 9;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Everything the command owns (child processes above all) is dropped
    // inside `run`, before `exit`, which would skip destructors.
    let code = run(args);
    std::process::exit(code);
}

fn run(args: Vec<OsString>) -> i32 {
    let cli = match parse_args(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version go to stdout with status 0; usage errors
            // to stderr with status 2 (EXIT_USAGE).
            let _ = e.print();
            return e.exit_code();
        }
    };
    let command = match cli.command {
        Cmd::Playground(args) => {
            return match playground(&args, cli.timeout) {
                Ok(()) => EXIT_OK,
                Err(why) => {
                    eprintln!("synod playground: {why}");
                    EXIT_FAILED
                }
            }
        }
        Cmd::TraceMerge { files } => return trace_merge(&files),
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a write error
            // (`synod completions bash | head`), print_stdout does not.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "synod", &mut script);
            print_stdout(&script);
            return EXIT_OK;
        }
        Cmd::Txn { words } => {
            let words: Vec<Vec<u8>> = words.into_iter().map(OsStringExt::into_vec).collect();
            match synod::client::parse_txn_words(&words) {
                Ok(txn) => Request::Txn(txn),
                Err(why) => {
                    eprintln!("synod txn: {why}");
                    return EXIT_USAGE;
                }
            }
        }
        Cmd::Admin {
            command: Admin::Status { table },
        } => Request::Status { table },
        other => Request::Cmd(other),
    };
    let masters = match resolve_masters(cli.masters.as_deref()) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("synod: {why}");
            return EXIT_USAGE;
        }
    };
    let mut opts = ClientOptions::new(masters);
    opts.timeout = cli.timeout;
    opts.rpc_timeout = opts.rpc_timeout.min(cli.timeout);
    // An empty path (`SYNOD_CLUSTER_KEY_FILE=`) means no key.
    let load = |path: Option<PathBuf>| match path.filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => Key::load(&path).map(Some),
        None => Ok(None),
    };
    match (load(cli.cluster_key_file), load(cli.client_key_file)) {
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
    if let Request::Status { table } = command {
        return admin_status(&mut client, &masters, key.as_ref(), cli.timeout, table);
    }
    execute(&mut client, command)
}

/// What a parsed command asks of the cluster.
enum Request {
    Status {
        table: bool,
    },
    Txn(synod_wire::Txn),
    /// The other commands, run by [`execute`].
    Cmd(Cmd),
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
fn execute(client: &mut Client, request: Request) -> i32 {
    let bytes = |s: OsString| s.into_vec();
    let config_line = |c: Config| Some(json_line(&ConfigJson::from(&c)).into_bytes());
    let command = match request {
        Request::Cmd(command) => command,
        Request::Txn(txn) => {
            return match client.txn(txn) {
                Ok(r) => {
                    print_stdout(json_line(&TxnResultJson::from(&r)).as_bytes());
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("synod: {e}");
                    EXIT_FAILED
                }
            }
        }
        Request::Status { .. } => unreachable!("handled by run"),
    };
    let result: Result<Option<Vec<u8>>, ClientError> = match command {
        Cmd::Get { json: true, key } => return get_json(client, bytes(key)),
        Cmd::Get { json: false, key } => match client.get(bytes(key.clone())) {
            Ok(Some(value)) => Ok(Some([&value[..], b"\n"].concat())),
            Ok(None) => {
                eprintln!(
                    "synod: key {} has no value",
                    key.to_string_lossy().escape_debug()
                );
                return EXIT_FAILED;
            }
            Err(e) => Err(e),
        },
        Cmd::Keys { pattern } => {
            let mut out = std::io::stdout().lock();
            client
                .scan_keys(pattern.map(|p| bytes(p).into()), 1000, |k| {
                    let _ = out.write_all(k);
                    let _ = out.write_all(b"\n");
                })
                .map(|_| None)
        }
        Cmd::Del { keys } => {
            let ops = keys
                .into_iter()
                .map(|key| synod_wire::Op::Delete {
                    key: bytes(key).into(),
                })
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
        Cmd::Put { key, value } => client.put(bytes(key), bytes(value)).map(|()| None),
        Cmd::Append { key, value } => client.append(bytes(key), bytes(value)).map(|()| None),
        Cmd::Admin { command } => match command {
            Admin::Join { mode, gid, servers } => {
                let mut group = GroupInfo::new(gid, servers);
                group.mode = mode.into();
                client.join(vec![group]).map(config_line)
            }
            Admin::Leave { gids } => client.leave(gids).map(config_line),
            Admin::Move { shard, gid } => client.move_shard(shard, gid).map(config_line),
            Admin::Replace { gid, old, new } => client.replace(gid, old, new).map(config_line),
            Admin::AddMember { gid, addr } => client.add_member(gid, addr).map(config_line),
            Admin::RemoveMember { gid, addr } => client.remove_member(gid, addr).map(config_line),
            Admin::Query { num } => client.query(num).map(config_line),
            Admin::Status { .. } => unreachable!("handled by run"),
        },
        Cmd::Txn { .. } | Cmd::Playground(_) | Cmd::Completions { .. } | Cmd::TraceMerge { .. } => {
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
    let (value, version, code) = match result.results.first() {
        Some(synod_wire::TxnOpResult::Ok { value, version }) => (
            Some(String::from_utf8_lossy(value).into_owned()),
            *version,
            EXIT_OK,
        ),
        Some(synod_wire::TxnOpResult::NoKey) => (None, 0, EXIT_FAILED),
        other => {
            eprintln!("synod: unexpected transaction result {other:?}");
            return EXIT_FAILED;
        }
    };
    let line = json_line(&GetJson {
        key: String::from_utf8_lossy(&key).into_owned(),
        value,
        version,
    });
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
    let text = if table { st.to_table() } else { json_line(&st) };
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
