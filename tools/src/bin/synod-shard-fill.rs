//! Fill one shard with about `--bytes` of values, or check that it holds
//! exactly them (used by `perf/migrate.sh` to move a large shard).
//!
//! `cargo run --release --bin synod-shard-fill -- --masters A,B,C --shard S
//! --bytes N [--value-size V] [--check]`
//!
//! Keys are `m<i>` for the `i`s that hash to shard `S` (under the cluster's
//! shard count), values `V` bytes derived from the key, so `--check` needs
//! nothing but the same arguments. Prints one `key=value` line; exits 1 on
//! any error or wrong value, 2 on bad usage. The command line is declared
//! with `clap`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::builder::FalseyValueParser;
use clap::Parser;
use synod::client::{Client, ClientOptions};
use synod_wire::Op;

/// Requests handed to the client at once (it keeps up to its in-flight
/// limit outstanding).
const BATCH: usize = 2000;

/// Fill one shard with about --bytes of values, or check that it holds
/// exactly them.
///
/// Each option can also be set as SYNOD_SHARD_FILL_<OPTION> (and --masters
/// as SYNOD_MASTERS).
#[derive(Parser)]
#[command(name = "synod-shard-fill", version, args_override_self = true)]
struct Args {
    /// Shard masters
    #[arg(long, env = "SYNOD_MASTERS", value_name = "A,B,C", default_value = "")]
    masters: String,
    /// The shard to fill
    #[arg(long, env = "SYNOD_SHARD_FILL_SHARD", value_name = "S")]
    shard: u32,
    /// About this many bytes of values
    #[arg(long, env = "SYNOD_SHARD_FILL_BYTES", value_name = "N")]
    bytes: usize,
    /// Bytes of each value
    #[arg(long, env = "SYNOD_SHARD_FILL_VALUE_SIZE", value_name = "V", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    value_size: u64,
    /// Check the values instead of writing them
    #[arg(long, env = "SYNOD_SHARD_FILL_CHECK", value_parser = FalseyValueParser::new())]
    check: bool,
}

fn main() -> ExitCode {
    let Args {
        masters,
        shard,
        bytes,
        value_size,
        check,
    } = Args::parse();
    let value_size = value_size as usize;
    let mut client = match Client::new(ClientOptions {
        timeout: Duration::from_secs(60),
        in_flight_max: 256,
        ..ClientOptions::new(masters.split(',').map(str::to_string).collect())
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("synod-shard-fill: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shards = match client.query(None) {
        Ok(c) => c.shards.len() as u32,
        Err(e) => {
            eprintln!("synod-shard-fill: query: {e}");
            return ExitCode::FAILURE;
        }
    };
    let count = bytes.div_ceil(value_size);
    let keys: Vec<Bytes> = (0u64..)
        .map(|i| format!("m{i}"))
        .filter(|k| synod_wire::shard_of(k.as_bytes(), shards) == shard)
        .take(count)
        .map(Bytes::from)
        .collect();
    let value_of = |key: &[u8]| -> Bytes {
        let mut v = Vec::with_capacity(value_size);
        while v.len() < value_size {
            v.extend_from_slice(key);
            v.push(b';');
        }
        v.truncate(value_size);
        Bytes::from(v)
    };

    let started = Instant::now();
    let (mut errors, mut wrong) = (0u64, 0u64);
    for batch in keys.chunks(BATCH) {
        let ops = batch
            .iter()
            .map(|k| {
                if check {
                    Op::Get { key: k.clone() }
                } else {
                    Op::Put {
                        key: k.clone(),
                        value: value_of(k),
                    }
                }
            })
            .collect();
        for (key, result) in batch.iter().zip(client.execute_many(ops)) {
            match result {
                Ok(got) if check && got.as_ref() != Some(&value_of(key)) => {
                    if wrong < 5 {
                        eprintln!("synod-shard-fill: wrong value for {key:?}");
                    }
                    wrong += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    if errors < 5 {
                        eprintln!("synod-shard-fill: {key:?}: {e}");
                    }
                    errors += 1;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "mode={} shard={shard} keys={} value_bytes={} secs={secs:.2} errors={errors} wrong={wrong}",
        if check { "check" } else { "fill" },
        keys.len(),
        keys.len() * value_size,
    );
    if errors == 0 && wrong == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
