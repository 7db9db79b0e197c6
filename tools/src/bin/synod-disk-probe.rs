//! `synod-disk-probe DIR [--syncs N] [--bytes B]`: the disk's own sync
//! latency, measured the way the WAL syncs: append `B` bytes (default 4096)
//! to a fresh file in `DIR` and `fdatasync` it, `N` times (default 1000).
//! Prints one line of `key=value` fields (`syncs`, `p50_us`, `p99_us`,
//! `p999_us`, `max_us`, `mean_us`) for the perf scripts, which report
//! request latency as multiples of it so a target holds across machines.
//! The file is removed afterwards.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut syncs, mut bytes) = (None, 1000usize, 4096usize);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Option<usize> {
            let v = args.next().and_then(|v| v.parse().ok()).filter(|&v| v > 0);
            if v.is_none() {
                eprintln!("synod-disk-probe: {name} needs a positive number");
            }
            v
        };
        match a.as_str() {
            "--syncs" => match num("--syncs") {
                Some(v) => syncs = v,
                None => return ExitCode::from(2),
            },
            "--bytes" => match num("--bytes") {
                Some(v) => bytes = v,
                None => return ExitCode::from(2),
            },
            "-h" | "--help" => {
                eprintln!("usage: synod-disk-probe DIR [--syncs N] [--bytes B]");
                return ExitCode::SUCCESS;
            }
            _ if dir.is_none() && !a.starts_with('-') => dir = Some(PathBuf::from(a)),
            _ => {
                eprintln!("synod-disk-probe: unexpected argument {a:?}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: synod-disk-probe DIR [--syncs N] [--bytes B]");
        return ExitCode::from(2);
    };
    let path = dir.join(format!("synod-disk-probe-{}", std::process::id()));
    let result = probe(&path, syncs, bytes);
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(mut us) => {
            us.sort_unstable();
            let at = |q: f64| us[((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1];
            let mean = us.iter().sum::<u64>() / us.len() as u64;
            println!(
                "syncs={} bytes={} p50_us={} p99_us={} p999_us={} max_us={} mean_us={}",
                us.len(),
                bytes,
                at(0.50),
                at(0.99),
                at(0.999),
                us[us.len() - 1],
                mean
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("synod-disk-probe: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// Each append + fdatasync's latency in microseconds.
fn probe(path: &PathBuf, syncs: usize, bytes: usize) -> std::io::Result<Vec<u64>> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)?;
    let block = vec![0x5au8; bytes];
    let mut us = Vec::with_capacity(syncs);
    for _ in 0..syncs {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        us.push(t.elapsed().as_micros() as u64);
    }
    Ok(us)
}
