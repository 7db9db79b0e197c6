//! The command line, declared with `clap`: words in, a [`Cli`] (or clap's
//! error, exit status 2) out.
//!
//! Every option can also come from the environment (README, "Command
//! lines"): the global options from `SYNOD_<OPTION>` (`SYNOD_MASTERS`,
//! `SYNOD_TIMEOUT`, ...), a subcommand's from `SYNOD_<SUBCOMMAND>_<OPTION>`
//! (`SYNOD_PLAYGROUND_BASE_PORT`, `SYNOD_ADMIN_STATUS_TABLE`). Options come
//! before the command, and keys and values may start with `-`, so
//! `synod put k --not-a-flag` stores "--not-a-flag".

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use synod_wire::GroupId;

use super::*;

const AFTER_HELP: &str = "\
playground generates a cluster key into DIR/cluster.key and prints
SYNOD_CLUSTER_KEY_FILE beside SYNOD_MASTERS.

admin commands print the resulting configuration as one line of JSON:
  {\"num\":N,\"shards\":[gid,...],\"groups\":{\"gid\":[\"addr\",...],...}}

exit status: 0 ok, 1 key not found or operation failed, 2 bad usage";

/// The Synod command-line client and local playground.
#[derive(Debug, PartialEq, Parser)]
#[command(name = "synod", version, args_override_self = true, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Shard master addresses (checked only by the commands that use them)
    #[arg(long, env = "SYNOD_MASTERS", value_name = "A,B,C")]
    pub masters: Option<String>,
    /// Give up on an operation after SECS
    #[arg(long, env = "SYNOD_TIMEOUT", value_name = "SECS", default_value = "10",
          value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The cluster's key; needed for admin commands on a cluster with a key
    #[arg(long, env = "SYNOD_CLUSTER_KEY_FILE", value_name = "PATH")]
    pub cluster_key_file: Option<PathBuf>,
    /// The client key, for a cluster started with --client-key-file
    #[arg(long, env = "SYNOD_CLIENT_KEY_FILE", value_name = "PATH")]
    pub client_key_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, PartialEq, Subcommand)]
pub(crate) enum Cmd {
    /// Print KEY's value and a newline
    Get {
        /// Print {"key":..,"value":..,"version":N} instead (value null and
        /// version 0 when KEY has no value; exit 1 then)
        #[arg(long, env = "SYNOD_GET_JSON", value_parser = FalseyValueParser::new())]
        json: bool,
        #[arg(allow_hyphen_values = true)]
        key: OsString,
    },
    /// Delete the keys; print how many had a value
    Del {
        #[arg(required = true, allow_hyphen_values = true)]
        keys: Vec<OsString>,
    },
    /// Print every key (matching the Redis glob PATTERN), one per line
    ///
    /// Shard by shard in key order (a SCAN: keys that exist throughout are
    /// printed even if shards move meanwhile).
    Keys {
        #[arg(allow_hyphen_values = true)]
        pattern: Option<OsString>,
    },
    /// Set KEY to VALUE
    Put {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
        #[arg(allow_hyphen_values = true)]
        value: OsString,
    },
    /// Append VALUE to KEY's value
    Append {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
        #[arg(allow_hyphen_values = true)]
        value: OsString,
    },
    /// Run a transaction; print its result as one line of JSON
    ///
    /// txn [if CMP [and CMP]... then] OP... [else OP...] (README:
    /// Transactions). CMP is KEY value|version =|!=|<|> X, KEY exists or KEY absent; OP is
    /// get K, put K V, append K V, delete K or incr K N.
    Txn {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "WORDS"
        )]
        words: Vec<OsString>,
    },
    /// Merge the --trace files of a run's servers into one trace for ShiViz
    ///
    /// Prints the merged trace (stdout) in Lamport order, and checks its
    /// clocks (summary on stderr).
    TraceMerge {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Change or show the cluster's configuration and status
    Admin {
        #[command(subcommand)]
        command: Admin,
    },
    /// Run a local cluster until Ctrl-C
    Playground(PlaygroundArgs),
    /// Print a completion script for SHELL to stdout
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, PartialEq, Subcommand)]
pub(crate) enum Admin {
    /// Add replica group GID with members ADDR...
    ///
    /// --mode pb replicates the group by primary/backup with the master as
    /// its view service: f+1 servers survive f failures (Paxos needs
    /// 2f+1), but every write waits for every backup, and a dead server
    /// stalls writes until the master moves to a new view
    Join {
        /// How the group replicates (paxos or pb); never changes
        #[arg(long, env = "SYNOD_ADMIN_JOIN_MODE", value_enum, default_value_t = Mode::Paxos)]
        mode: Mode,
        #[arg(value_parser = parse_gid)]
        gid: GroupId,
        #[arg(required = true, value_name = "ADDR")]
        servers: Vec<String>,
    },
    /// Remove groups
    Leave {
        #[arg(required = true, value_name = "GID", value_parser = parse_gid)]
        gids: Vec<GroupId>,
    },
    /// Assign SHARD to group GID
    Move {
        #[arg(value_parser = parse_number::<u32>)]
        shard: u32,
        #[arg(value_parser = parse_number::<GroupId>)]
        gid: GroupId,
    },
    /// Swap member OLD_ADDR of group GID for a new server NEW_ADDR
    ///
    /// The master lists NEW_ADDR with a fresh replica id and marks OLD_ADDR
    /// removed; the group's leader then adds the new replica to its Paxos
    /// membership once it can reach it, and removes the old one after.
    /// Start NEW_ADDR first (`synod-server --advertise NEW_ADDR` with an
    /// empty data directory); it catches up by snapshot. Prints the new
    /// configuration as JSON
    Replace {
        #[arg(value_parser = parse_gid)]
        gid: GroupId,
        #[arg(value_name = "OLD_ADDR")]
        old: String,
        #[arg(value_name = "NEW_ADDR")]
        new: String,
    },
    /// Add server ADDR to group GID as a new member (a fresh replica id)
    AddMember {
        #[arg(value_parser = parse_gid)]
        gid: GroupId,
        #[arg(value_name = "ADDR")]
        addr: String,
    },
    /// Remove member ADDR from group GID (its replica id is never reused)
    RemoveMember {
        #[arg(value_parser = parse_gid)]
        gid: GroupId,
        #[arg(value_name = "ADDR")]
        addr: String,
    },
    /// Print configuration NUM (default: latest) as JSON
    Query {
        #[arg(value_parser = parse_number::<u64>)]
        num: Option<u64>,
    },
    /// Print every group's leader, lag, shards and reachability
    ///
    /// Asks every node (masters and configured servers) for the groups it
    /// hosts; prints every group's members, leader, ballot, commit and
    /// applied points, each member's lag, its shards and each node's
    /// reachability, as one line of JSON or a table; exit 1 when a group has
    /// no reachable majority
    Status {
        /// Print a table instead of JSON
        #[arg(long, env = "SYNOD_ADMIN_STATUS_TABLE", value_parser = FalseyValueParser::new())]
        table: bool,
    },
}

/// A group's replication mode on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Multi-Paxos among 2f+1 replicas
    #[default]
    Paxos,
    /// Primary/backup among f+1 replicas, the master as view service
    Pb,
}

impl From<Mode> for synod_wire::ReplicationMode {
    fn from(m: Mode) -> synod_wire::ReplicationMode {
        match m {
            Mode::Paxos => synod_wire::ReplicationMode::Paxos,
            Mode::Pb => synod_wire::ReplicationMode::PrimaryBackup,
        }
    }
}

/// `synod playground`'s options.
#[derive(Debug, PartialEq, Args)]
pub(crate) struct PlaygroundArgs {
    /// Data directories, logs and the cluster key (default: a fresh
    /// directory under the system's temp dir)
    #[arg(long, env = "SYNOD_PLAYGROUND_DIR")]
    pub dir: Option<PathBuf>,
    /// Node i listens on PORT+i
    #[arg(long, env = "SYNOD_PLAYGROUND_BASE_PORT", value_name = "PORT",
          default_value_t = DEFAULT_BASE_PORT, value_parser = parse_port)]
    pub base_port: u16,
    /// Nodes, each a master replica and a member of every group
    #[arg(long, env = "SYNOD_PLAYGROUND_NODES", value_name = "N",
          default_value_t = DEFAULT_NODES, value_parser = parse_nodes)]
    pub nodes: usize,
    /// KV groups to join (each on every node)
    #[arg(long, env = "SYNOD_PLAYGROUND_GROUPS", value_name = "G",
          default_value_t = PLAYGROUND_GROUPS, value_parser = parse_groups)]
    pub groups: GroupId,
    /// How the KV groups replicate: paxos (each on every node), or pb
    /// (primary/backup, each on --pb-replicas nodes, rotating)
    #[arg(long, env = "SYNOD_PLAYGROUND_MODE", value_enum, default_value_t = Mode::Paxos)]
    pub mode: Mode,
    /// Servers per primary/backup group with --mode pb (at most --nodes)
    #[arg(long, env = "SYNOD_PLAYGROUND_PB_REPLICAS", value_name = "N", default_value_t = 2,
          value_parser = parse_nodes)]
    pub pb_replicas: usize,
    /// Passed to every synod-server (repeat it: --server-arg=--reads
    /// --server-arg=log)
    #[arg(
        long = "server-arg",
        env = "SYNOD_PLAYGROUND_SERVER_ARG",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    pub server_args: Vec<OsString>,
    /// Node i also serves Redis (RESP2) on PORT+i
    #[arg(long, env = "SYNOD_PLAYGROUND_RESP_PORT", value_name = "PORT",
          value_parser = parse_port)]
    pub resp_port: Option<u16>,
    /// Node i serves Prometheus metrics on http://127.0.0.1:PORT+i/metrics,
    /// printed as SYNOD_METRICS (default: --base-port + 200)
    #[arg(long, env = "SYNOD_PLAYGROUND_METRICS_PORT", value_name = "PORT",
          value_parser = parse_port)]
    pub metrics_port: Option<u16>,
    /// How long the masters, and then the groups, get to serve (a restart
    /// that replays a large log needs more)
    #[arg(long = "ready-secs", env = "SYNOD_PLAYGROUND_READY_SECS", value_name = "N",
          default_value = "30", value_parser = parse_ready_secs)]
    pub ready_within: Duration,
    /// Node i writes a Lamport/vector-clock trace of every frame it sends
    /// and receives to DIR/trace-i.log (synod-server --trace); merge them
    /// with `synod trace-merge DIR/trace-*.log` and open the result in
    /// ShiViz
    #[arg(long, env = "SYNOD_PLAYGROUND_TRACE_DIR", value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,
}

impl PlaygroundArgs {
    pub(crate) fn metrics_base(&self) -> usize {
        self.metrics_port
            .map_or(usize::from(self.base_port) + 200, usize::from)
    }

    /// What one option cannot check alone: every node's ports fit.
    pub(crate) fn check(&self) -> Result<(), String> {
        let fits = |base: usize| base + self.nodes - 1 <= usize::from(u16::MAX);
        if !fits(usize::from(self.base_port)) {
            return Err(format!(
                "--base-port {} leaves no room for {} nodes",
                self.base_port, self.nodes
            ));
        }
        if !fits(self.metrics_base()) {
            return Err(format!(
                "--metrics-port {} leaves no room for {} nodes",
                self.metrics_base(),
                self.nodes
            ));
        }
        if let Some(p) = self.resp_port.filter(|&p| !fits(usize::from(p))) {
            return Err(format!(
                "--resp-port {p} leaves no room for {} nodes",
                self.nodes
            ));
        }
        Ok(())
    }
}

/// Parses `words` (without the program name).
pub(crate) fn parse_args(words: Vec<OsString>) -> Result<Cli, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once(OsString::from("synod")).chain(words))?;
    if let Cmd::Playground(p) = &cli.command {
        p.check().map_err(|why| {
            <Cli as clap::CommandFactory>::command()
                .error(clap::error::ErrorKind::ValueValidation, why)
        })?;
    }
    Ok(cli)
}

pub(crate) fn parse_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| "must be a non-negative integer".to_string())
}

fn parse_gid(text: &str) -> Result<GroupId, String> {
    match parse_number::<GroupId>(text)? {
        // Group 0 is the shard master itself.
        0 => Err("GID must be positive (0 is the shard master group)".to_string()),
        gid => Ok(gid),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match parse_number::<u16>(text) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("must be a port number, 1-65535".to_string()),
    }
}

fn parse_nodes(text: &str) -> Result<usize, String> {
    match parse_number::<usize>(text) {
        Ok(n) if (1..=NODES_MAX).contains(&n) => Ok(n),
        _ => Err(format!("must be between 1 and {NODES_MAX}")),
    }
}

fn parse_groups(text: &str) -> Result<GroupId, String> {
    match parse_number::<GroupId>(text) {
        Ok(g) if (1..=16).contains(&g) => Ok(g),
        _ => Err("must be between 1 and 16".to_string()),
    }
}

fn parse_ready_secs(text: &str) -> Result<Duration, String> {
    match parse_number::<u64>(text) {
        Ok(s) if (1..=3600).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err("must be between 1 and 3600".to_string()),
    }
}

pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    let bad = || "must be a positive number of seconds".to_string();
    let secs: f64 = text.trim().parse().map_err(|_| bad())?;
    // Also refuses NaN, which compares false with everything.
    if secs.is_nan() || secs <= 0.0 {
        return Err(bad());
    }
    let d = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
    if d > TIMEOUT_MAX {
        return Err(format!("is at most {} seconds", TIMEOUT_MAX.as_secs()));
    }
    Ok(d.max(Duration::from_millis(1)))
}

/// `--masters` (or `SYNOD_MASTERS`): comma-separated host:port addresses.
pub(crate) fn resolve_masters(text: Option<&str>) -> Result<Vec<String>, String> {
    let masters: Vec<String> = text
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if masters.is_empty() {
        return Err("no shard master addresses: pass --masters A,B,C or set SYNOD_MASTERS".into());
    }
    Ok(masters)
}
