//! redis-py (the most used Redis client) against a real cluster's RESP
//! gateway: `tests/redis_py/test_*.py`, each run with `SYNOD_RESP_ADDR`.
//! redis-py comes from `tools/install-test-deps.sh` (which .ci/run runs
//! before `cargo test`). Without python3 or redis-py the test says so and
//! passes, except under CI (`CI` set), where that is a failure: CI must
//! run the suite.

mod common;

use std::process::Command;

use common::Cluster;

fn redis_py_available() -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import redis; print(redis.__version__)"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "redis-py is not installed ({}); run tools/install-test-deps.sh",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("python3 cannot be run: {e}")),
    }
}

#[test]
fn redis_py_suite_runs_green_against_the_gateway() {
    if let Err(why) = redis_py_available() {
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        eprintln!("SKIPPED redis_py_suite: {why}");
        return;
    }
    let cluster = Cluster::new_with_resp(3);
    let addr = cluster.nodes[0]
        .resp_addr
        .clone()
        .expect("started with RESP");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redis_py");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/redis_py")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test_") && n.ends_with(".py"))
        })
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no test_*.py in {}", dir.display());
    for script in scripts {
        let out = Command::new("python3")
            .arg(&script)
            .env("SYNOD_RESP_ADDR", &addr)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
