//! Argument parsing and output tests.

use super::*;
use std::net::TcpListener;
use std::time::Instant;

fn args(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

fn parse(words: &[&str]) -> Result<Cli, clap::Error> {
    parse_args(args(words))
}

fn cmd(words: &[&str]) -> Cmd {
    parse(words).unwrap().command
}

fn os(s: &str) -> OsString {
    OsString::from(s)
}

#[test]
fn kv_commands_take_raw_keys_and_values() {
    let get = |key: &str, json| Cmd::Get { json, key: os(key) };
    assert_eq!(cmd(&["get", "k"]), get("k", false));
    assert_eq!(cmd(&["keys"]), Cmd::Keys { pattern: None });
    assert_eq!(
        cmd(&["keys", "a*"]),
        Cmd::Keys {
            pattern: Some(os("a*"))
        }
    );
    assert!(parse(&["keys", "a", "b"]).is_err());
    assert_eq!(cmd(&["get", "--json", "k"]), get("k", true));
    // A key that looks like a flag goes after `--`.
    assert_eq!(cmd(&["get", "--", "--json"]), get("--json", false));
    assert_eq!(cmd(&["get", "-x"]), get("-x", false));
    assert_eq!(
        cmd(&["del", "a", "-b"]),
        Cmd::Del {
            keys: vec![os("a"), os("-b")]
        }
    );
    assert!(parse(&["del"]).is_err());
    assert_eq!(
        cmd(&["put", "k", "--not-a-flag"]),
        Cmd::Put {
            key: os("k"),
            value: os("--not-a-flag")
        }
    );
    assert_eq!(
        cmd(&["append", "", "x y"]),
        Cmd::Append {
            key: os(""),
            value: os("x y")
        }
    );
    assert_eq!(
        cmd(&["txn", "put", "a", "-1", "get", "--b"]),
        Cmd::Txn {
            words: ["put", "a", "-1", "get", "--b"].map(os).to_vec()
        }
    );
    // Non-UTF-8 bytes pass through untouched.
    use std::os::unix::ffi::OsStringExt;
    let raw = OsString::from_vec(vec![0xff, 0x00, b'k']);
    let cli = parse_args(vec![OsString::from("get"), raw.clone()]).unwrap();
    assert_eq!(
        cli.command,
        Cmd::Get {
            json: false,
            key: raw
        }
    );
}

#[test]
fn global_options_come_before_the_command() {
    let cli = parse(&["--masters", "a:1, b:2,,c:3", "--timeout=2.5", "get", "k"]).unwrap();
    assert_eq!(
        resolve_masters(cli.masters.as_deref()),
        Ok(vec!["a:1".into(), "b:2".into(), "c:3".into()])
    );
    assert_eq!(cli.timeout, Duration::from_millis(2500));
    let cli = parse(&["--masters=x:1", "admin", "query"]).unwrap();
    assert_eq!(cli.masters.as_deref(), Some("x:1"));
    assert_eq!(cli.timeout, Duration::from_secs(10), "the default");
    assert_eq!(
        cli.command,
        Cmd::Admin {
            command: Admin::Query { num: None }
        }
    );
    assert!(parse(&["get", "k", "--timeout", "1"]).is_err());
    // A repeated option: the last one wins (args_override_self), as the
    // hand parser did; scripts append overrides to default flags.
    let cli = parse(&["--timeout", "1", "--timeout=3", "get", "k"]).unwrap();
    assert_eq!(cli.timeout, Duration::from_secs(3));
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
        &["playground", "--ready-secs", "0"],
        &["playground", "--base-port", "65535"],
        &["playground", "--dir"],
        &["playground", "--frob", "1"],
        &["completions", "cmd.exe"],
    ] {
        let err = parse(bad).expect_err(&format!("{bad:?} should be refused"));
        assert_eq!(err.exit_code(), EXIT_USAGE, "{bad:?}");
    }
}

#[test]
fn help_and_completions_exit_zero() {
    for words in [
        &["--help"][..],
        &["help"],
        &["help", "admin", "status"],
        &["admin", "status", "--help"],
        &["playground", "-h"],
    ] {
        assert_eq!(parse(words).unwrap_err().exit_code(), EXIT_OK, "{words:?}");
    }
    assert_eq!(
        cmd(&["completions", "bash"]),
        Cmd::Completions {
            shell: clap_complete::Shell::Bash
        }
    );
    // clap's own consistency checks of the declarations (debug builds).
    <Cli as clap::CommandFactory>::command().debug_assert();
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
    let admin = |words: &[&str]| match cmd(&[&["admin"], words].concat()) {
        Cmd::Admin { command } => command,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        admin(&["join", "3", "a:1", "b:2"]),
        Admin::Join {
            mode: Mode::Paxos,
            gid: 3,
            servers: vec!["a:1".into(), "b:2".into()]
        }
    );
    assert_eq!(
        admin(&["join", "--mode", "pb", "3", "a:1", "b:2"]),
        Admin::Join {
            mode: Mode::Pb,
            gid: 3,
            servers: vec!["a:1".into(), "b:2".into()]
        }
    );
    assert_eq!(
        admin(&["leave", "3", "4"]),
        Admin::Leave { gids: vec![3, 4] }
    );
    assert_eq!(admin(&["move", "7", "2"]), Admin::Move { shard: 7, gid: 2 });
    assert_eq!(admin(&["query", "12"]), Admin::Query { num: Some(12) });
    assert_eq!(
        admin(&["replace", "2", "10.0.0.2:7000", "10.0.0.9:7000"]),
        Admin::Replace {
            gid: 2,
            old: "10.0.0.2:7000".into(),
            new: "10.0.0.9:7000".into()
        }
    );
    assert_eq!(
        admin(&["add-member", "2", "10.0.0.9:7000"]),
        Admin::AddMember {
            gid: 2,
            addr: "10.0.0.9:7000".into()
        }
    );
    assert_eq!(
        admin(&["remove-member", "2", "10.0.0.9:7000"]),
        Admin::RemoveMember {
            gid: 2,
            addr: "10.0.0.9:7000".into()
        }
    );
    assert!(parse(&["admin", "replace", "2", "a:1"]).is_err());
    assert!(parse(&["admin", "replace", "0", "a:1", "b:1"]).is_err());
    assert_eq!(admin(&["status"]), Admin::Status { table: false });
    assert_eq!(admin(&["status", "--table"]), Admin::Status { table: true });
    assert!(parse(&["admin", "status", "--tabel"]).is_err());
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
            mode: Mode::Paxos,
            pb_replicas: 2,
            server_args: vec![],
            resp_port: None,
            metrics_port: None,
            ready_within: Duration::from_secs(30),
            trace_dir: None,
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
            "9200",
            "--ready-secs",
            "120",
            "--server-arg",
            "--fsync",
            "--trace-dir",
            "/tmp/t",
            "--mode",
            "pb",
            "--pb-replicas",
            "3",
        ]),
        Cmd::Playground(PlaygroundArgs {
            dir: Some(PathBuf::from("/tmp/x")),
            base_port: 9000,
            nodes: 5,
            groups: 1,
            mode: Mode::Pb,
            pb_replicas: 3,
            server_args: vec!["--reads".into(), "log".into(), "--fsync".into()],
            resp_port: Some(9100),
            metrics_port: Some(9200),
            ready_within: Duration::from_secs(120),
            trace_dir: Some(PathBuf::from("/tmp/t")),
        })
    );
}

#[test]
fn masters_are_a_comma_separated_list() {
    assert_eq!(
        resolve_masters(Some("e:1, e:2,")),
        Ok(vec!["e:1".to_string(), "e:2".to_string()])
    );
    assert!(resolve_masters(None).is_err());
    assert!(resolve_masters(Some(" ,")).is_err());
}

#[test]
fn config_json_is_one_line_in_the_documented_shape() {
    let config = Config {
        num: 4,
        shards: vec![1, 2, 0],
        groups: vec![
            GroupInfo::new(10, vec!["c:1".into()]),
            GroupInfo::new(2, vec!["b:1".into()]),
            GroupInfo::new(1, vec!["a:1".into(), "a:2".into()]),
        ],
    };
    assert_eq!(
        json_line(&ConfigJson::from(&config)),
        "{\"num\":4,\"shards\":[1,2,0],\"groups\":{\"1\":[\"a:1\",\"a:2\"],\"2\":[\"b:1\"],\"10\":[\"c:1\"]}}\n"
    );
    assert_eq!(
        json_line(&ConfigJson::from(&Config::default())),
        "{\"num\":0,\"shards\":[],\"groups\":{}}\n"
    );
    let get = GetJson {
        key: "a\"b\n".into(),
        value: None,
        version: 0,
    };
    assert_eq!(
        json_line(&get),
        "{\"key\":\"a\\\"b\\n\",\"value\":null,\"version\":0}\n"
    );
}

#[test]
fn shell_quote_only_when_needed() {
    assert_eq!(shell_quote("/usr/bin/synod"), "/usr/bin/synod");
    assert_eq!(shell_quote("/a b/synod"), "'/a b/synod'");
    assert_eq!(shell_quote("it's"), r#"'it'\''s'"#);
}

/// `--mode pb` puts each group on `--pb-replicas` nodes, rotating with the
/// gid so primaries spread; `--mode paxos` on every node.
#[test]
fn playground_groups_by_mode() {
    let addrs: Vec<String> = ["a:1", "b:1", "c:1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let g = playground_group(1, &addrs, Mode::Paxos, 2);
    assert_eq!(
        (g.servers.len(), g.mode),
        (3, synod_wire::ReplicationMode::Paxos)
    );
    let g = playground_group(3, &addrs, Mode::Pb, 2);
    assert_eq!(g.servers, vec!["c:1".to_string(), "a:1".to_string()]);
    assert_eq!(g.mode, synod_wire::ReplicationMode::PrimaryBackup);
    assert_eq!(playground_group(2, &addrs, Mode::Pb, 5).servers.len(), 3);
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
        mode: Mode::Paxos,
        pb_replicas: 2,
        server_args: vec![],
        resp_port: None,
        metrics_port: None,
        ready_within: Duration::from_secs(30),
        trace_dir: None,
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
    let code = run(args(&["--timeout", "0.5", "--masters", &addr, "get", "k"]));
    assert_eq!(code, EXIT_FAILED);
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(run(args(&["--masters", ",", "get", "k"])), EXIT_USAGE);
    if std::env::var_os("SYNOD_MASTERS").is_none() {
        assert_eq!(run(args(&["get", "k"])), EXIT_USAGE, "no masters");
    }
    assert_eq!(run(args(&["--masters", "a:1", "nope"])), EXIT_USAGE);
    assert_eq!(run(args(&["--masters", "a:1", "txn", "frob"])), EXIT_USAGE);
}

/// Every option of every subcommand reads `SYNOD_[<SUBCOMMAND>_]<OPTION>`
/// (README, "Command lines"); a new flag without its variable fails here.
#[test]
fn every_option_reads_its_synod_variable() {
    fn walk(cmd: &clap::Command, prefix: &str) {
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long().filter(|l| !["help", "version"].contains(l)) else {
                continue;
            };
            let want = format!("{prefix}{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&want)), "--{long}");
        }
        for sub in cmd.get_subcommands() {
            let name = sub.get_name().to_uppercase().replace('-', "_");
            walk(sub, &format!("{prefix}{name}_"));
        }
    }
    walk(&<Cli as clap::CommandFactory>::command(), "SYNOD_");
}
