//! The runtime's resource limits: checking a configuration before a node
//! starts (issue 8, finding 14), and the rate limit on connection-close
//! warnings. The limits themselves, with their defaults, are listed in
//! ARCHITECTURE.md ("Limits").

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{RuntimeConfig, StartError};

/// Most event loops (cores) a node runs.
pub const CORES_MAX: usize = 1024;
/// The highest `--connections-max` (connections one core accepts) allowed.
pub const CONNECTIONS_MAX_CEILING: usize = 1 << 20;
/// The lowest `--frame-bytes-max` allowed: room for a configuration and
/// small values.
pub const FRAME_BYTES_MAX_FLOOR: u32 = 64 << 10;
/// The highest `--frame-bytes-max` allowed (one frame is buffered whole).
pub const FRAME_BYTES_MAX_CEILING: u32 = 1 << 30;

/// The window [`WarnLimiter`] counts warnings in: `per_sec` of them per
/// window are logged, the rest counted and reported with the next one.
const WARN_WINDOW: Duration = Duration::from_secs(1);

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    flag: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), StartError> {
    if v < lo || v > hi {
        return Err(StartError(format!(
            "{flag} {v} is out of range: it must be between {lo} and {hi}"
        )));
    }
    Ok(())
}

/// Refuse a configuration that cannot work or would fall over later (a
/// shard count the store panics on, zero connections, a frame limit too
/// small for any message, a master list this node cannot be found in).
pub fn validate(cfg: &RuntimeConfig) -> Result<(), StartError> {
    range("--cores", cfg.cores, 1, CORES_MAX)?;
    range("--shards", cfg.shards, 1, crate::kv::SHARDS_MAX)?;
    range(
        "--connections-max",
        cfg.connections_max,
        1,
        CONNECTIONS_MAX_CEILING,
    )?;
    range(
        "--frame-bytes-max",
        cfg.frame_bytes_max,
        FRAME_BYTES_MAX_FLOOR,
        FRAME_BYTES_MAX_CEILING,
    )?;
    let frame = cfg.frame_bytes_max as usize;
    range("--conn-in-flight-max", cfg.conn_in_flight_max, 1, 1 << 20)?;
    range(
        "--conn-write-buf-max",
        cfg.conn_write_buf_max,
        4096,
        1 << 32,
    )?;
    if cfg.conn_reply_hard_max < cfg.conn_write_buf_max + frame {
        return Err(StartError(format!(
            "--conn-reply-hard-max {} must be at least --conn-write-buf-max plus \
             --frame-bytes-max ({}): a connection under the soft cap may still be \
             owed one maximal reply",
            cfg.conn_reply_hard_max,
            cfg.conn_write_buf_max + frame
        )));
    }
    if cfg.reply_bytes_budget < cfg.conn_reply_hard_max {
        return Err(StartError(format!(
            "--reply-bytes-budget {} must be at least --conn-reply-hard-max ({})",
            cfg.reply_bytes_budget, cfg.conn_reply_hard_max
        )));
    }
    if cfg.partial_frames_budget < frame {
        return Err(StartError(format!(
            "--partial-frames-budget {} must be at least --frame-bytes-max ({frame}): \
             one maximal frame must fit",
            cfg.partial_frames_budget
        )));
    }
    let secs = |d: Duration| d.as_secs();
    range("--idle-timeout-secs", secs(cfg.idle_timeout), 1, 1 << 30)?;
    range(
        "--first-frame-secs",
        secs(cfg.first_frame_timeout),
        1,
        1 << 30,
    )?;
    range("--frame-timeout-secs", secs(cfg.frame_timeout), 1, 1 << 30)?;
    range("--snapshot-log-slots", cfg.snapshot_log_slots, 1, 1 << 30)?;
    range("--snapshot-log-bytes", cfg.snapshot_log_bytes, 1, 1 << 40)?;
    range(
        "--snapshot-log-percent",
        cfg.snapshot_log_percent,
        0,
        10_000,
    )?;
    range(
        "--snapshot-step-bytes",
        cfg.snapshot_step_bytes as u64,
        1,
        1 << 30,
    )?;
    range("--tick-ms", cfg.tick.as_millis() as u64, 1, 10_000)?;
    if let Some(b) = cfg.socket_buf_bytes {
        range("--socket-buf-bytes", b, 4096, 1 << 30)?;
    }
    // Peers dial configuration addresses as written (no name lookup), and
    // this node finds itself in --masters by its --advertise spelling: a
    // name like localhost:P would start a node that silently hosts no
    // master and that no peer can reach.
    for m in &cfg.masters {
        if m.parse::<SocketAddr>().is_err() {
            return Err(StartError(format!(
                "--masters entry {m:?} is not IP:PORT; nodes reach each other by the \
                 addresses in --masters exactly as written, so use IP addresses \
                 (e.g. 127.0.0.1:7000, not localhost:7000)"
            )));
        }
    }
    let advertise: SocketAddr = cfg.advertise.parse().map_err(|_| {
        StartError(format!(
            "--advertise {:?} is not IP:PORT (peers dial it as written)",
            cfg.advertise
        ))
    })?;
    // The same address spelled differently (127.0.0.1:7000 vs 127.0.0.01:7000
    // is not possible after parsing, but [::1]:7000 vs [0:0:0:0:0:0:0:1]:7000
    // is): compare parsed addresses, and insist on the same spelling.
    for m in &cfg.masters {
        if m.parse::<SocketAddr>().ok() == Some(advertise) && *m != cfg.advertise {
            return Err(StartError(format!(
                "--masters lists {m:?}, which is this node's address spelled differently \
                 from --advertise {:?}; spell it the same way",
                cfg.advertise
            )));
        }
    }
    let mut sorted = cfg.masters.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != cfg.masters.len() {
        return Err(StartError("--masters lists an address twice".into()));
    }
    Ok(())
}

/// At most `per_sec` warnings a second; the rest are counted and reported
/// with the next warning let through ("suppressed K"). A thousand hostile
/// connections closed at once must not flood the log (or the disk it is on).
#[derive(Debug)]
pub struct WarnLimiter {
    per_sec: u32,
    window: Instant,
    used: u32,
    suppressed: u64,
}

impl WarnLimiter {
    pub fn new(per_sec: u32, now: Instant) -> WarnLimiter {
        WarnLimiter {
            per_sec,
            window: now,
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(k)` to log now (`k` warnings were suppressed since the last
    /// one logged), `None` to drop this one.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.window) >= WARN_WINDOW {
            self.window = now;
            self.used = 0;
        }
        if self.used >= self.per_sec {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> RuntimeConfig {
        RuntimeConfig::new(
            "127.0.0.1:7000".parse().unwrap(),
            "/tmp/x".into(),
            vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()],
        )
    }

    #[test]
    fn nonsense_configurations_are_refused_with_the_flag_named() {
        validate(&good()).unwrap();
        type Change = Box<dyn Fn(&mut RuntimeConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("--cores", Box::new(|c| c.cores = 0)),
            ("--cores", Box::new(|c| c.cores = 100_000)),
            ("--shards", Box::new(|c| c.shards = 70_000)),
            ("--shards", Box::new(|c| c.shards = 0)),
            ("--connections-max", Box::new(|c| c.connections_max = 0)),
            ("--frame-bytes-max", Box::new(|c| c.frame_bytes_max = 100)),
            (
                "--conn-in-flight-max",
                Box::new(|c| c.conn_in_flight_max = 0),
            ),
            (
                "--conn-reply-hard-max",
                Box::new(|c| c.conn_reply_hard_max = 1),
            ),
            (
                "--partial-frames-budget",
                Box::new(|c| c.partial_frames_budget = 1),
            ),
            (
                "--reply-bytes-budget",
                Box::new(|c| c.reply_bytes_budget = 1),
            ),
            (
                "--idle-timeout-secs",
                Box::new(|c| c.idle_timeout = Duration::ZERO),
            ),
            (
                "localhost:7000",
                Box::new(|c| c.masters[0] = "localhost:7000".into()),
            ),
            (
                "--advertise",
                Box::new(|c| c.advertise = "myhost:7000".into()),
            ),
            ("twice", Box::new(|c| c.masters[1] = c.masters[0].clone())),
        ];
        for (want, change) in cases {
            let mut c = good();
            change(&mut c);
            let err = validate(&c).expect_err(want).0;
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn warnings_are_limited_per_second_and_the_suppressed_are_counted() {
        let t0 = Instant::now();
        let mut w = WarnLimiter::new(3, t0);
        let got: Vec<Option<u64>> = (0..10).map(|_| w.allow(t0)).collect();
        assert_eq!(got[..3], [Some(0), Some(0), Some(0)]);
        assert!(got[3..].iter().all(Option::is_none));
        assert_eq!(w.allow(t0 + Duration::from_millis(1001)), Some(7));
        assert_eq!(w.allow(t0 + Duration::from_millis(1002)), Some(0));
    }
}
