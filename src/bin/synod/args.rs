//! Argument parsing: words in, a `Cli` (or a one-line error) out.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;
use synod_wire::GroupId;

use super::*;

pub(crate) fn parse_args(args: Vec<OsString>) -> Result<Cli, String> {
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

pub(crate) fn parse_command(words: &[OsString]) -> Result<Cmd, String> {
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
        "get" if args == 2 && words[1] == "--json" => Ok(Cmd::GetJson { key: bytes(2) }),
        "get" => {
            want(1, "get [--json] KEY")?;
            Ok(Cmd::Get { key: bytes(1) })
        }
        "keys" => {
            if args > 1 {
                return Err("usage: synod keys [PATTERN]".to_string());
            }
            Ok(Cmd::Keys {
                pattern: (args == 1).then(|| bytes(1)),
            })
        }
        "del" => {
            if args == 0 {
                return Err("usage: synod del KEY...".to_string());
            }
            Ok(Cmd::Del {
                keys: (1..words.len()).map(bytes).collect(),
            })
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
        "trace-merge" => {
            if args == 0 {
                return Err("usage: synod trace-merge FILE...".to_string());
            }
            Ok(Cmd::TraceMerge {
                files: words[1..].iter().map(PathBuf::from).collect(),
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

pub(crate) fn parse_playground(words: &[OsString]) -> Result<PlaygroundArgs, String> {
    let mut args = PlaygroundArgs {
        dir: None,
        base_port: DEFAULT_BASE_PORT,
        nodes: DEFAULT_NODES,
        groups: PLAYGROUND_GROUPS,
        server_args: Vec::new(),
        resp_port: None,
        metrics_port: None,
        ready_within: READY_WITHIN_DEFAULT,
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
            "--ready-secs" => {
                let secs = parse_number::<u64>(&value.to_string_lossy(), "--ready-secs")?;
                if !(1..=3600).contains(&secs) {
                    return Err("--ready-secs must be between 1 and 3600".to_string());
                }
                args.ready_within = Duration::from_secs(secs);
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

pub(crate) fn parse_number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what} must be a non-negative integer, not {text:?}"))
}

pub(crate) fn parse_gid(text: &str) -> Result<GroupId, String> {
    let gid = parse_number::<u32>(text, "GID")?;
    if gid == 0 {
        // Group 0 is the shard master itself.
        return Err("GID must be positive (0 is the shard master group)".to_string());
    }
    Ok(gid)
}

pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
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

pub(crate) fn parse_masters(text: &str) -> Result<Vec<String>, String> {
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
pub(crate) fn resolve_masters(
    flag: Option<Vec<String>>,
    env: Option<&str>,
) -> Result<Vec<String>, String> {
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
