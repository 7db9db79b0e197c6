//! Argument parsing and output tests.

use super::*;
use std::net::TcpListener;
use std::time::Instant;

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
        cmd(&["get", "--json", "k"]),
        Cmd::GetJson { key: b"k".to_vec() }
    );
    // A key named --json is still a key.
    assert_eq!(
        cmd(&["get", "--json"]),
        Cmd::Get {
            key: b"--json".to_vec()
        }
    );
    assert_eq!(
        cmd(&["del", "a", "b"]),
        Cmd::Del {
            keys: vec![b"a".to_vec(), b"b".to_vec()]
        }
    );
    assert!(parse(&["del"]).is_err());
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
        &["playground", "--ready-secs", "0"],
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
            ready_within: Duration::from_secs(30),
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
            "120"
        ]),
        Cmd::Playground(PlaygroundArgs {
            dir: Some(PathBuf::from("/tmp/x")),
            base_port: 9000,
            nodes: 5,
            groups: 1,
            server_args: vec!["--reads".into(), "log".into()],
            resp_port: Some(9100),
            metrics_port: Some(9200),
            ready_within: Duration::from_secs(120),
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
        ready_within: READY_WITHIN_DEFAULT,
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
