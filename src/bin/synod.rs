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
use std::fmt::Write as _;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use synod::auth::Key;
use synod::client::{Client, ClientError, ClientOptions};
use synod_wire::{Config, GroupId, GroupInfo};

const USAGE: &str = "\
usage: synod [--masters A,B,C] [--timeout SECS] [--cluster-key-file PATH] COMMAND

commands:
  get KEY                 print KEY's value and a newline
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
  playground [--dir DIR] [--base-port PORT] [--nodes N] [--groups G (default 3)]
             [--server-arg ARG]... [--resp-port PORT] [--metrics-port PORT]
                          run a local cluster until Ctrl-C; each --server-arg
                          is passed to every synod-server (e.g.
                          --server-arg=--reads --server-arg=log); with
                          --resp-port, node i also serves Redis (RESP2) on
                          PORT+i; node i serves Prometheus metrics on
                          http://127.0.0.1:PORT+i/metrics (default PORT:
                          --base-port + 200), printed as SYNOD_METRICS

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
    Put { key: Vec<u8>, value: Vec<u8> },
    Append { key: Vec<u8>, value: Vec<u8> },
    Txn(synod_wire::Txn),
    Join { gid: GroupId, servers: Vec<String> },
    Leave { gids: Vec<GroupId> },
    Move { shard: u32, gid: GroupId },
    Query { num: Option<u64> },
    Status { table: bool },
    Playground(PlaygroundArgs),
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
        Cmd::Help | Cmd::Playground(_) | Cmd::Status { .. } => unreachable!("handled by run"),
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

// ---------------------------------------------------------------------------
// Argument parsing
// ---------------------------------------------------------------------------

fn parse_args(args: Vec<OsString>) -> Result<Cli, String> {
    let mut masters = None;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut cluster_key_file = None;
    let mut client_key_file = None;
    let mut rest = args.into_iter().peekable();
    // Options come before the command, so a key or value that starts with
    // "--" is never mistaken for one.
    while let Some(arg) = rest.peek() {
        let arg = arg.to_string_lossy().into_owned();
        if !arg.starts_with('-') {
            break;
        }
        rest.next();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => rest
                    .next()
                    .map(|v| v.to_string_lossy().into_owned())
                    .ok_or_else(|| format!("{name} needs {what}")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => {
                return Ok(Cli {
                    masters,
                    timeout,
                    cluster_key_file,
                    client_key_file,
                    command: Cmd::Help,
                })
            }
            "--masters" => masters = Some(parse_masters(&value("a list of addresses")?)?),
            "--timeout" => timeout = parse_timeout(&value("a number of seconds")?)?,
            "--cluster-key-file" => cluster_key_file = Some(PathBuf::from(value("a path")?)),
            "--client-key-file" => client_key_file = Some(PathBuf::from(value("a path")?)),
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    let words: Vec<OsString> = rest.collect();
    let command = parse_command(&words)?;
    Ok(Cli {
        masters,
        timeout,
        cluster_key_file,
        client_key_file,
        command,
    })
}

fn parse_command(words: &[OsString]) -> Result<Cmd, String> {
    let text = |i: usize| words[i].to_string_lossy().into_owned();
    let bytes = |i: usize| words[i].as_bytes().to_vec();
    let Some(name) = words.first().map(|w| w.to_string_lossy().into_owned()) else {
        return Err("no command given".to_string());
    };
    let args = words.len() - 1;
    let want = |n: usize, shape: &str| -> Result<(), String> {
        if args == n {
            Ok(())
        } else {
            Err(format!("usage: synod {shape}"))
        }
    };
    match name.as_str() {
        "help" => Ok(Cmd::Help),
        "get" => {
            want(1, "get KEY")?;
            Ok(Cmd::Get { key: bytes(1) })
        }
        "put" => {
            want(2, "put KEY VALUE")?;
            Ok(Cmd::Put {
                key: bytes(1),
                value: bytes(2),
            })
        }
        "append" => {
            want(2, "append KEY VALUE")?;
            Ok(Cmd::Append {
                key: bytes(1),
                value: bytes(2),
            })
        }
        "txn" => {
            let parts: Vec<Vec<u8>> = (1..words.len()).map(bytes).collect();
            synod::client::parse_txn_words(&parts)
                .map(Cmd::Txn)
                .map_err(|why| format!("synod txn: {why}"))
        }
        "admin" => {
            let sub = words.get(1).map(|w| w.to_string_lossy().into_owned());
            let n = words.len().saturating_sub(2);
            match sub.as_deref() {
                Some("join") => {
                    if n < 2 {
                        return Err("usage: synod admin join GID ADDR...".to_string());
                    }
                    let gid = parse_gid(&text(2))?;
                    let servers = (3..words.len()).map(text).collect();
                    Ok(Cmd::Join { gid, servers })
                }
                Some("leave") => {
                    if n < 1 {
                        return Err("usage: synod admin leave GID...".to_string());
                    }
                    let gids = (2..words.len())
                        .map(|i| parse_gid(&text(i)))
                        .collect::<Result<_, _>>()?;
                    Ok(Cmd::Leave { gids })
                }
                Some("move") => {
                    if n != 2 {
                        return Err("usage: synod admin move SHARD GID".to_string());
                    }
                    let shard = parse_number::<u32>(&text(2), "SHARD")?;
                    let gid = parse_number::<u32>(&text(3), "GID")?;
                    Ok(Cmd::Move { shard, gid })
                }
                Some("query") => match n {
                    0 => Ok(Cmd::Query { num: None }),
                    1 => Ok(Cmd::Query {
                        num: Some(parse_number::<u64>(&text(2), "NUM")?),
                    }),
                    _ => Err("usage: synod admin query [NUM]".to_string()),
                },
                Some("status") => match (n, words.get(2).map(|w| w.to_string_lossy())) {
                    (0, _) => Ok(Cmd::Status { table: false }),
                    (1, Some(w)) if w == "--table" => Ok(Cmd::Status { table: true }),
                    _ => Err("usage: synod admin status [--table]".to_string()),
                },
                Some(other) => Err(format!(
                    "unknown admin command {other:?} (join, leave, move, query, status)"
                )),
                None => Err("usage: synod admin join|leave|move|query|status ...".to_string()),
            }
        }
        "playground" => parse_playground(&words[1..]).map(Cmd::Playground),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn parse_playground(words: &[OsString]) -> Result<PlaygroundArgs, String> {
    let mut args = PlaygroundArgs {
        dir: None,
        base_port: DEFAULT_BASE_PORT,
        nodes: DEFAULT_NODES,
        groups: PLAYGROUND_GROUPS,
        server_args: Vec::new(),
        resp_port: None,
        metrics_port: None,
    };
    let mut i = 0;
    while i < words.len() {
        let arg = words[i].to_string_lossy().into_owned();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(OsString::from(v))),
            None => (arg.clone(), None),
        };
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                words
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("playground: {name} needs a value"))?
            }
        };
        match name.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(value)),
            "--base-port" => {
                args.base_port = parse_number::<u16>(&value.to_string_lossy(), "PORT")?;
                if args.base_port == 0 {
                    return Err("--base-port must be a port number, 1-65535".to_string());
                }
            }
            "--groups" => {
                args.groups = parse_number::<GroupId>(&value.to_string_lossy(), "--groups")?;
                if !(1..=16).contains(&args.groups) {
                    return Err("--groups must be between 1 and 16".to_string());
                }
            }
            "--server-arg" => args.server_args.push(value),
            "--nodes" => {
                args.nodes = parse_number::<usize>(&value.to_string_lossy(), "--nodes")?;
                if !(1..=MAX_NODES).contains(&args.nodes) {
                    return Err(format!("--nodes must be between 1 and {MAX_NODES}"));
                }
            }
            "--resp-port" => {
                let port = parse_number::<u16>(&value.to_string_lossy(), "PORT")?;
                if port == 0 {
                    return Err("--resp-port must be a port number, 1-65535".to_string());
                }
                args.resp_port = Some(port);
            }
            "--metrics-port" => {
                let port = parse_number::<u16>(&value.to_string_lossy(), "PORT")?;
                if port == 0 {
                    return Err("--metrics-port must be a port number, 1-65535".to_string());
                }
                args.metrics_port = Some(port);
            }
            _ => return Err(format!("playground: unknown option {arg}")),
        }
        i += 1;
    }
    if usize::from(args.base_port) + args.nodes - 1 > usize::from(u16::MAX) {
        return Err(format!(
            "--base-port {} leaves no room for {} nodes",
            args.base_port, args.nodes
        ));
    }
    if args.metrics_base() + args.nodes - 1 > usize::from(u16::MAX) {
        return Err(format!(
            "--metrics-port {} leaves no room for {} nodes",
            args.metrics_base(),
            args.nodes
        ));
    }
    if let Some(p) = args.resp_port {
        if usize::from(p) + args.nodes - 1 > usize::from(u16::MAX) {
            return Err(format!(
                "--resp-port {p} leaves no room for {} nodes",
                args.nodes
            ));
        }
    }
    Ok(args)
}

fn parse_number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what} must be a non-negative integer, not {text:?}"))
}

fn parse_gid(text: &str) -> Result<GroupId, String> {
    let gid = parse_number::<u32>(text, "GID")?;
    if gid == 0 {
        // Group 0 is the shard master itself.
        return Err("GID must be positive (0 is the shard master group)".to_string());
    }
    Ok(gid)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let bad = || format!("--timeout must be a positive number of seconds, not {text:?}");
    let secs: f64 = text.trim().parse().map_err(|_| bad())?;
    // Also refuses NaN, which compares false with everything.
    if secs.is_nan() || secs <= 0.0 {
        return Err(bad());
    }
    let d = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
    if d > MAX_TIMEOUT {
        return Err(format!(
            "--timeout is at most {} seconds",
            MAX_TIMEOUT.as_secs()
        ));
    }
    Ok(d.max(Duration::from_millis(1)))
}

fn parse_masters(text: &str) -> Result<Vec<String>, String> {
    let masters: Vec<String> = text
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if masters.is_empty() {
        return Err("--masters needs at least one host:port".to_string());
    }
    Ok(masters)
}

/// `--masters` wins over `SYNOD_MASTERS`.
fn resolve_masters(flag: Option<Vec<String>>, env: Option<&str>) -> Result<Vec<String>, String> {
    if let Some(m) = flag {
        return Ok(m);
    }
    match env.map(parse_masters) {
        Some(Ok(m)) => Ok(m),
        Some(Err(_)) | None => {
            Err("no shard master addresses: pass --masters A,B,C or set SYNOD_MASTERS".to_string())
        }
    }
}

// ---------------------------------------------------------------------------
// JSON output
// ---------------------------------------------------------------------------

/// `config` as one line of JSON:
/// `{"num":N,"shards":[gid,...],"groups":{"gid":["addr",...],...}}`,
/// groups in ascending gid order (JSON object keys must be strings).
fn config_json(config: &Config) -> String {
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
fn json_string(out: &mut String, text: &str) {
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

// ---------------------------------------------------------------------------
// Playground
// ---------------------------------------------------------------------------

/// Set by SIGINT/SIGTERM; polled by the playground's loops.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to [`STOP`], so the playground can shut its
/// children down in order instead of dying with them orphaned.
///
/// Done with `libc` directly rather than `ctrlc` or `signal-hook`: the
/// playground needs `libc` anyway (to send SIGTERM, which std cannot, and
/// to set a parent-death signal), and a flag-setting handler is a few lines.
fn install_stop_handler() -> Result<(), String> {
    let handler = on_stop_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to a static atomic, which is
        // async-signal-safe, and it stays valid for the process's life.
        let previous = unsafe { libc::signal(signal, handler as libc::sighandler_t) };
        if previous == libc::SIG_ERR {
            return Err(format!(
                "cannot install a handler for signal {signal}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Why the playground stopped early.
enum Stop {
    /// Ctrl-C or SIGTERM: not an error.
    Signalled,
    Failed(String),
}

impl From<String> for Stop {
    fn from(why: String) -> Stop {
        Stop::Failed(why)
    }
}

/// How long nodes get to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long the masters get to elect a leader and answer a Query.
const MASTERS_READY_WITHIN: Duration = Duration::from_secs(30);
/// How long group 1 gets to join and serve a put and a get.
const GROUP_READY_WITHIN: Duration = Duration::from_secs(30);
/// The key the readiness probe writes.
const PROBE_KEY: &str = "synod:playground:probe";

/// The playground's child processes. Dropping it stops them (also on a
/// panic), so the playground never leaves servers running behind it.
struct Nodes {
    /// `(address, log path, process)`, in node order.
    children: Vec<(String, PathBuf, Child)>,
    /// Nodes whose exit has already been reported.
    reported: Vec<bool>,
}

impl Nodes {
    /// Fails if a node has exited, naming it and its log.
    fn check_alive(&mut self) -> Result<(), String> {
        for (addr, log, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "node {addr} exited ({status}) before the cluster was ready; see {}",
                    log.display()
                ));
            }
        }
        Ok(())
    }

    /// Reports (once) nodes that exited while the playground runs. Not fatal:
    /// killing a node is a fine thing to try in a playground.
    fn report_exits(&mut self) {
        for (i, (addr, log, child)) in self.children.iter_mut().enumerate() {
            if self.reported[i] {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                self.reported[i] = true;
                eprintln!(
                    "synod playground: node {addr} exited ({status}); see {}",
                    log.display()
                );
            }
        }
    }

    /// SIGTERM to every node, up to [`STOP_GRACE`] to exit, then SIGKILL.
    fn stop(&mut self) {
        for (_, _, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill has no memory-safety preconditions. The
                    // child is not yet reaped (try_wait saw it running), so
                    // its pid cannot have been reused by another process.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline
            && self
                .children
                .iter_mut()
                .any(|(_, _, c)| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for (_, _, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.children.clear();
        self.reported.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop();
    }
}

fn playground(args: &PlaygroundArgs, timeout: Duration) -> Result<(), String> {
    match playground_inner(args, timeout) {
        Ok(()) | Err(Stop::Signalled) => {
            eprintln!("synod playground: stopped");
            Ok(())
        }
        Err(Stop::Failed(why)) => Err(why),
    }
}

fn playground_inner(args: &PlaygroundArgs, timeout: Duration) -> Result<(), Stop> {
    let addrs: Vec<String> = (0..args.nodes)
        .map(|i| format!("127.0.0.1:{}", usize::from(args.base_port) + i))
        .collect();
    let resp_addrs: Vec<Option<String>> = (0..args.nodes)
        .map(|i| {
            args.resp_port
                .map(|p| format!("127.0.0.1:{}", usize::from(p) + i))
        })
        .collect();
    let metrics_addrs: Vec<String> = (0..args.nodes)
        .map(|i| format!("127.0.0.1:{}", args.metrics_base() + i))
        .collect();
    // Check every port before starting anything, so a clash is one clear
    // message rather than a node dying in its log.
    let all = addrs.iter().chain(resp_addrs.iter().flatten());
    for addr in all.chain(&metrics_addrs) {
        if let Err(e) = TcpListener::bind(addr.as_str()) {
            return Err(Stop::Failed(format!(
                "port {addr} is busy ({e}); pick free ports with --base-port"
            )));
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let bin_dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))?;
    let server = bin_dir.join("synod-server");
    if !server.is_file() {
        return Err(Stop::Failed(format!(
            "{} not found; build it next to synod (cargo build --release --bins)",
            server.display()
        )));
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => fresh_temp_dir(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    install_stop_handler()?;
    // Authenticated by default: a key in the data directory (kept across
    // runs on the same --dir), given to every node and to this client.
    let key_path = dir.join("cluster.key");
    let key = playground_key(&key_path)?;
    let mut server_args: Vec<OsString> = vec!["--cluster-key-file".into(), key_path.clone().into()];
    server_args.extend(args.server_args.iter().cloned());

    let masters = addrs.join(",");
    let mut nodes = Nodes {
        children: Vec::new(),
        reported: vec![false; addrs.len()],
    };
    for (i, addr) in addrs.iter().enumerate() {
        let data_dir = dir.join(format!("node-{i}"));
        let log = dir.join(format!("node-{i}.log"));
        let mut node_args = server_args.clone();
        node_args.push("--metrics-listen".into());
        node_args.push(metrics_addrs[i].clone().into());
        let child = spawn_node(
            &server,
            addr,
            resp_addrs[i].as_deref(),
            &data_dir,
            &masters,
            &log,
            &node_args,
        )?;
        nodes.children.push((addr.clone(), log, child));
    }
    eprintln!(
        "synod playground: started {} nodes (data and logs in {})",
        addrs.len(),
        dir.display()
    );

    let mut opts = ClientOptions::new(addrs.clone());
    // Short attempts: the loops below retry until their own deadlines and
    // check for Ctrl-C and dead nodes in between.
    opts.timeout = timeout.min(Duration::from_secs(2));
    opts.rpc_timeout = opts.rpc_timeout.min(opts.timeout);
    opts.cluster_key = Some(key);
    let mut client = Client::new(opts).map_err(|e| e.to_string())?;

    let config = wait_for(
        &mut nodes,
        MASTERS_READY_WITHIN,
        "the masters to answer",
        || client.query(None).map(Some),
    )?;
    // Three KV groups, each replicated on all three nodes, so shards are
    // spread over groups and `synod admin move/leave` have somewhere to go.
    for gid in 1..=args.groups {
        if config.groups.iter().any(|g| g.gid == gid) {
            eprintln!(
                "synod playground: group {gid} already joined (configuration {})",
                config.num
            );
            continue;
        }
        let group = GroupInfo {
            gid,
            servers: addrs.clone(),
        };
        let what = format!("group {gid} to join");
        wait_for(&mut nodes, GROUP_READY_WITHIN, &what, || {
            match client.join(vec![group.clone()]) {
                Ok(_) => Ok(Some(())),
                // A join that timed out may have been applied; a retry of it
                // is then refused. Whether the group is in is what counts.
                Err(ClientError::Refused(why)) => {
                    let cfg = client.query(None)?;
                    if cfg.groups.iter().any(|g| g.gid == gid) {
                        Ok(Some(()))
                    } else {
                        Err(ClientError::Refused(why))
                    }
                }
                Err(e) => Err(e),
            }
        })?;
    }
    // Serving means every group answers: probe keys spread over the shards.
    wait_for(
        &mut nodes,
        GROUP_READY_WITHIN,
        "the groups to serve requests",
        || {
            for i in 0..16 {
                let key = format!("{PROBE_KEY}-{i}");
                client.put(key.clone(), "ok")?;
                if client.get(key)?.filter(|v| v == "ok").is_none() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )?;

    let synod = shell_quote(&exe.to_string_lossy());
    let mut banner = String::new();
    let key_file = shell_quote(&key_path.to_string_lossy());
    let _ = writeln!(banner, "SYNOD_MASTERS={masters}");
    let _ = writeln!(banner, "SYNOD_CLUSTER_KEY_FILE={key_file}");
    let resp: Vec<&str> = resp_addrs.iter().flatten().map(String::as_str).collect();
    if !resp.is_empty() {
        // One line per fact, so scripts can `sed -n 's/^SYNOD_RESP=//p'`.
        let _ = writeln!(banner, "SYNOD_RESP={}", resp.join(","));
    }
    let metrics_urls: Vec<String> = metrics_addrs
        .iter()
        .map(|a| format!("http://{a}/metrics"))
        .collect();
    let _ = writeln!(banner, "SYNOD_METRICS={}", metrics_urls.join(","));
    let _ = writeln!(
        banner,
        "export SYNOD_MASTERS={masters} SYNOD_CLUSTER_KEY_FILE={key_file}; {synod} put hello world; {synod} get hello"
    );
    print_stdout(banner.as_bytes());
    eprintln!("synod playground: ready; Ctrl-C stops the cluster");

    while !STOP.load(Ordering::SeqCst) {
        nodes.report_exits();
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("synod playground: stopping nodes");
    nodes.stop();
    Ok(())
}

/// Calls `attempt` until it yields `Some`, the deadline passes, a node dies,
/// the server refuses outright, or a stop signal arrives.
/// KV groups the playground starts by default.
const PLAYGROUND_GROUPS: GroupId = 3;

fn wait_for<T>(
    nodes: &mut Nodes,
    within: Duration,
    what: &str,
    mut attempt: impl FnMut() -> Result<Option<T>, ClientError>,
) -> Result<T, Stop> {
    let deadline = Instant::now() + within;
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Err(Stop::Signalled);
        }
        nodes.check_alive()?;
        let last = match attempt() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "not yet".to_string(),
            Err(ClientError::Refused(why)) => {
                return Err(Stop::Failed(format!("waiting for {what}: refused: {why}")))
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Stop::Failed(format!(
                "gave up waiting {}s for {what} ({last}); see the node logs",
                within.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spawn_node(
    server: &Path,
    addr: &str,
    resp: Option<&str>,
    data_dir: &Path,
    masters: &str,
    log: &Path,
    extra: &[OsString],
) -> Result<Child, String> {
    let out =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let mut cmd = Command::new(server);
    cmd.arg("--listen")
        .arg(addr)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--masters")
        .arg(masters)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if let Some(resp) = resp {
        cmd.arg("--resp-listen").arg(resp);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    // Own process group: Ctrl-C in the terminal reaches only the
    // playground, which then stops the nodes in order (SIGTERM, grace,
    // SIGKILL) instead of all of them dying at once mid-write.
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // If the playground dies without cleaning up (SIGKILL), the
                // kernel sends the nodes SIGTERM rather than orphaning them.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.display()))
}

/// The playground's cluster key at `path`: the one already there (a
/// restart on the same --dir), or 32 fresh random bytes written with mode
/// 0600.
fn playground_key(path: &Path) -> Result<Key, String> {
    if path.exists() {
        return Key::load(path);
    }
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let key = Key::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(key.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

/// A new directory name under the system temp dir, unique per run.
fn fresh_temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("synod-playground-{}-{nanos}", std::process::id()))
}

/// Quotes `text` for a POSIX shell when it needs it.
fn shell_quote(text: &str) -> String {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c));
    if plain && !text.is_empty() {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn parse(words: &[&str]) -> Result<Cli, String> {
        parse_args(args(words))
    }

    fn cmd(words: &[&str]) -> Cmd {
        parse(words).unwrap().command
    }

    #[test]
    fn kv_commands_take_raw_keys_and_values() {
        assert_eq!(cmd(&["get", "k"]), Cmd::Get { key: b"k".to_vec() });
        assert_eq!(
            cmd(&["put", "k", "--not-a-flag"]),
            Cmd::Put {
                key: b"k".to_vec(),
                value: b"--not-a-flag".to_vec()
            }
        );
        assert_eq!(
            cmd(&["append", "", "x y"]),
            Cmd::Append {
                key: vec![],
                value: b"x y".to_vec()
            }
        );
        // Non-UTF-8 bytes pass through untouched.
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(vec![0xff, 0x00, b'k']);
        let cli = parse_args(vec![OsString::from("get"), raw]).unwrap();
        assert_eq!(
            cli.command,
            Cmd::Get {
                key: vec![0xff, 0x00, b'k']
            }
        );
    }

    #[test]
    fn global_options_come_before_the_command() {
        let cli = parse(&["--masters", "a:1, b:2,,c:3", "--timeout=2.5", "get", "k"]).unwrap();
        assert_eq!(
            cli.masters,
            Some(vec!["a:1".into(), "b:2".into(), "c:3".into()])
        );
        assert_eq!(cli.timeout, Duration::from_millis(2500));
        let cli = parse(&["--masters=x:1", "admin", "query"]).unwrap();
        assert_eq!(cli.masters, Some(vec!["x:1".into()]));
        assert_eq!(cli.timeout, DEFAULT_TIMEOUT);
        assert_eq!(cli.command, Cmd::Query { num: None });
    }

    #[test]
    fn bad_usage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &["frobnicate"],
            &["get"],
            &["get", "a", "b"],
            &["put", "k"],
            &["--timeout", "0", "get", "k"],
            &["--timeout", "-1", "get", "k"],
            &["--timeout", "NaN", "get", "k"],
            &["--timeout", "inf", "get", "k"],
            &["--timeout", "1e30", "get", "k"],
            &["--timeout"],
            &["--masters", ",", "get", "k"],
            &["--bogus", "get", "k"],
            &["admin"],
            &["admin", "join", "1"],
            &["admin", "join", "0", "a:1"],
            &["admin", "join", "x", "a:1"],
            &["admin", "leave"],
            &["admin", "leave", "1", "-2"],
            &["admin", "move", "1"],
            &["admin", "move", "1", "99999999999"],
            &["admin", "query", "1", "2"],
            &["admin", "query", "latest"],
            &["admin", "nope"],
            &["playground", "--nodes", "0"],
            &["playground", "--nodes", "10"],
            &["playground", "--base-port", "0"],
            &["playground", "--base-port", "65535"],
            &["playground", "--dir"],
            &["playground", "--frob", "1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn key_files_are_global_options() {
        let cli = parse(&[
            "--cluster-key-file",
            "/k/cluster",
            "--client-key-file=/k/client",
            "admin",
            "query",
        ])
        .unwrap();
        assert_eq!(cli.cluster_key_file, Some(PathBuf::from("/k/cluster")));
        assert_eq!(cli.client_key_file, Some(PathBuf::from("/k/client")));
        assert!(parse(&["--cluster-key-file"]).is_err());
    }

    #[test]
    fn playground_key_is_made_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let a = playground_key(&path).unwrap();
        assert_eq!(a.as_bytes().len(), 32);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A restart on the same directory keeps the key (nodes hold it).
        assert_eq!(playground_key(&path).unwrap(), a);
    }

    #[test]
    fn admin_commands_parse() {
        assert_eq!(
            cmd(&["admin", "join", "3", "a:1", "b:2"]),
            Cmd::Join {
                gid: 3,
                servers: vec!["a:1".into(), "b:2".into()]
            }
        );
        assert_eq!(
            cmd(&["admin", "leave", "3", "4"]),
            Cmd::Leave { gids: vec![3, 4] }
        );
        assert_eq!(
            cmd(&["admin", "move", "7", "2"]),
            Cmd::Move { shard: 7, gid: 2 }
        );
        assert_eq!(cmd(&["admin", "query", "12"]), Cmd::Query { num: Some(12) });
        assert_eq!(cmd(&["admin", "status"]), Cmd::Status { table: false });
        assert_eq!(
            cmd(&["admin", "status", "--table"]),
            Cmd::Status { table: true }
        );
        assert!(parse(&["admin", "status", "--tabel"]).is_err());
        assert_eq!(cmd(&["--help"]), Cmd::Help);
        assert_eq!(cmd(&["help"]), Cmd::Help);
    }

    #[test]
    fn playground_options_have_defaults() {
        assert_eq!(
            cmd(&["playground"]),
            Cmd::Playground(PlaygroundArgs {
                dir: None,
                base_port: 7100,
                nodes: 3,
                groups: 3,
                server_args: vec![],
                resp_port: None,
                metrics_port: None,
            })
        );
        assert_eq!(
            cmd(&[
                "playground",
                "--dir",
                "/tmp/x",
                "--base-port=9000",
                "--nodes",
                "5",
                "--groups",
                "1",
                "--server-arg=--reads",
                "--server-arg",
                "log",
                "--resp-port",
                "9100",
                "--metrics-port",
                "9200"
            ]),
            Cmd::Playground(PlaygroundArgs {
                dir: Some(PathBuf::from("/tmp/x")),
                base_port: 9000,
                nodes: 5,
                groups: 1,
                server_args: vec!["--reads".into(), "log".into()],
                resp_port: Some(9100),
                metrics_port: Some(9200),
            })
        );
    }

    #[test]
    fn masters_flag_wins_over_the_environment() {
        assert_eq!(
            resolve_masters(Some(vec!["f:1".into()]), Some("e:1")),
            Ok(vec!["f:1".to_string()])
        );
        assert_eq!(
            resolve_masters(None, Some("e:1,e:2")),
            Ok(vec!["e:1".to_string(), "e:2".to_string()])
        );
        assert!(resolve_masters(None, None).is_err());
        assert!(resolve_masters(None, Some(" ")).is_err());
    }

    #[test]
    fn config_json_is_one_line_in_the_documented_shape() {
        let config = Config {
            num: 4,
            shards: vec![1, 2, 0],
            groups: vec![
                GroupInfo {
                    gid: 2,
                    servers: vec!["b:1".into()],
                },
                GroupInfo {
                    gid: 1,
                    servers: vec!["a:1".into(), "a:2".into()],
                },
            ],
        };
        assert_eq!(
            config_json(&config),
            r#"{"num":4,"shards":[1,2,0],"groups":{"1":["a:1","a:2"],"2":["b:1"]}}"#
        );
        assert_eq!(
            config_json(&Config::default()),
            r#"{"num":0,"shards":[],"groups":{}}"#
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\te\u{1}f\u{7f}é");
        assert_eq!(s, r#""a\"b\\c\nd\te\u0001f\u007fé""#);
    }

    #[test]
    fn shell_quote_only_when_needed() {
        assert_eq!(shell_quote("/usr/bin/synod"), "/usr/bin/synod");
        assert_eq!(shell_quote("/a b/synod"), "'/a b/synod'");
        assert_eq!(shell_quote("it's"), r#"'it'\''s'"#);
    }

    #[test]
    fn playground_refuses_a_busy_port() {
        // Ports are checked before anything else (even finding
        // synod-server), so this holds without a server binary.
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let args = PlaygroundArgs {
            dir: None,
            base_port: port,
            nodes: 1,
            groups: 1,
            server_args: vec![],
            resp_port: None,
            metrics_port: None,
        };
        let err = playground(&args, Duration::from_secs(1)).unwrap_err();
        assert!(
            err.contains("busy") && err.contains(&port.to_string()),
            "{err}"
        );
    }

    #[test]
    fn unreachable_cluster_fails_with_exit_status_one() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let start = Instant::now();
        let code = run(
            args(&["--timeout", "0.5", "--masters", &addr, "get", "k"]),
            None,
        );
        assert_eq!(code, EXIT_FAILED);
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(run(args(&["get", "k"]), None), EXIT_USAGE, "no masters");
        assert_eq!(run(args(&["nope"]), Some("a:1".into())), EXIT_USAGE);
    }
}
