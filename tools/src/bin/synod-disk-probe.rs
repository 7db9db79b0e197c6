//! `synod-disk-probe DIR [--syncs N] [--bytes B]`: the disk's own sync
//! latency, measured the way the WAL syncs: append `B` bytes (default 4096)
//! to a fresh file in `DIR` and `fdatasync` it, `N` times (default 1000).
//! Prints one line of `key=value` fields (`syncs`, `p50_us`, `p99_us`,
//! `p999_us`, `max_us`, `mean_us`) for the perf scripts, which report
//! request latency as multiples of it so a target holds across machines.
//! The file is removed afterwards. The command line is declared with
//! `clap`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

/// The disk's own append + fdatasync latency, measured the way the WAL
/// syncs.
///
/// Each option can also be set as SYNOD_DISK_PROBE_<OPTION>.
#[derive(Parser)]
#[command(name = "synod-disk-probe", version, args_override_self = true)]
struct Args {
    /// Directory on the disk to measure (a file is made and removed there)
    dir: PathBuf,
    /// Appends, each followed by fdatasync
    #[arg(long, env = "SYNOD_DISK_PROBE_SYNCS", value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    syncs: u64,
    /// Bytes per append
    #[arg(long, env = "SYNOD_DISK_PROBE_BYTES", value_name = "B", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..))]
    bytes: u64,
}

fn main() -> ExitCode {
    let Args { dir, syncs, bytes } = Args::parse();
    let (syncs, bytes) = (syncs as usize, bytes as usize);
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
