//! The benchmark's results as text: the human summary, the one-line
//! `key=value` record scripts parse, and the same figures as JSON.
//!
//! Both machine formats come from one ordered field list
//! ([`Summary::fields`]), so they can never disagree, and the order is
//! fixed so a diff of two result files lines up.

use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// One figure's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    /// Printed with the given number of decimals.
    Float(f64, usize),
    /// A bare word: never contains spaces or `=` (scripts split on them).
    Word(String),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Int(v) => v.to_string(),
            Value::Float(v, decimals) => format!("{v:.decimals$}"),
            Value::Word(w) => w.clone(),
        }
    }
}

/// JSON: integers and words as such; a float rounded to its decimals (so
/// the JSON says what the `key=value` line says), `null` when not finite
/// (JSON has no NaN or infinity).
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Int(v) => serializer.serialize_u64(*v),
            Value::Float(v, decimals) if v.is_finite() => {
                let rounded: f64 = format!("{v:.decimals$}").parse().unwrap_or(*v);
                serializer.serialize_f64(rounded)
            }
            Value::Float(..) => serializer.serialize_none(),
            Value::Word(w) => serializer.serialize_str(w),
        }
    }
}

/// The same figures as [`Summary::kv_line`], as one JSON object in the
/// same order.
impl Serialize for Summary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.fields();
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (k, v) in &fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A word safe for the `key=value` line: whitespace and `=` become `_`.
pub fn word(s: &str) -> Value {
    Value::Word(
        s.chars()
            .map(|c| {
                if c.is_whitespace() || c == '=' {
                    '_'
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// What an open-loop (`--rate`) run adds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenLoop {
    /// Operations per second asked for, across all sessions.
    pub target_rate: f64,
    /// Measured requests that fell due while every pipeline slot of their
    /// worker was taken (their wait is part of their latency).
    pub delayed: u64,
    /// Requests intended in the measured window but never sent.
    pub unsent: u64,
    /// First send time minus intended time, over measured requests (µs):
    /// what a full pipeline or a late load generator added.
    pub lag_p50_us: u64,
    pub lag_p99_us: u64,
    pub lag_max_us: u64,
}

/// What a transfer run (`--workload transfer`) adds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transfers {
    /// Two-phase commit attempts (transfers across groups; every retry is
    /// an attempt).
    pub two_pc: u64,
    /// Of those, the aborted ones (a key locked by another transaction,
    /// a `WrongGroup`, a part without an answer), each retried.
    pub two_pc_aborts: u64,
    /// Of the aborted, those whose decision lost to a presumed abort.
    pub two_pc_presumed_aborts: u64,
    /// Transfers that could not be placed as the span asked.
    pub off_span: u64,
    /// Transfers answered with a refused half (the bank is broken).
    pub broken: u64,
    /// `--check`: whether the final audit found the initial total (and no
    /// transfer was broken).
    pub bank_ok: Option<bool>,
}

/// Everything a run reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub workload: String,
    pub clients: usize,
    pub pipeline: usize,
    pub threads: usize,
    pub keys: u64,
    pub dist: String,
    pub value_size: usize,
    /// Successful operations in the measured window.
    pub ops: u64,
    /// Length of the measured window.
    pub secs: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    /// Operations that ended without a usable answer (Error reply, timeout,
    /// unfinished at the drain deadline), over the whole run.
    pub errors: u64,
    /// Of `errors`, those that timed out or were cut off by the drain.
    pub timeouts: u64,
    /// Busy replies (each was retried).
    pub busy: u64,
    /// NotLeader/WrongGroup replies (each was re-routed and retried).
    pub redirects: u64,
    /// Connections lost or refused (their requests were resent).
    pub reconnects: u64,
    /// Gets answered NoKey (a prefilled get workload should have none).
    pub get_misses: u64,
    /// `Some` for an open-loop run (`--rate`); closed-loop output is
    /// unchanged.
    pub open_loop: Option<OpenLoop>,
    /// `Some` for a transfer run.
    pub transfers: Option<Transfers>,
    /// `Some` when the history was checked (`--check`).
    pub linearizable: Option<bool>,
}

impl Summary {
    /// Operations per second over the measured window.
    pub fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Every figure, in the order both machine formats print them.
    pub fn fields(&self) -> Vec<(&'static str, Value)> {
        let mut f = vec![
            ("ops", Value::Int(self.ops)),
            ("secs", Value::Float(self.secs, 3)),
            ("ops_per_sec", Value::Float(self.ops_per_sec(), 1)),
            ("p50_us", Value::Int(self.p50_us)),
            ("p90_us", Value::Int(self.p90_us)),
            ("p99_us", Value::Int(self.p99_us)),
            ("p999_us", Value::Int(self.p999_us)),
            ("max_us", Value::Int(self.max_us)),
            ("mean_us", Value::Float(self.mean_us, 1)),
            ("errors", Value::Int(self.errors)),
            ("timeouts", Value::Int(self.timeouts)),
            ("busy", Value::Int(self.busy)),
            ("redirects", Value::Int(self.redirects)),
            ("reconnects", Value::Int(self.reconnects)),
            ("get_misses", Value::Int(self.get_misses)),
            ("clients", Value::Int(self.clients as u64)),
            ("pipeline", Value::Int(self.pipeline as u64)),
            ("threads", Value::Int(self.threads as u64)),
            ("workload", word(&self.workload)),
            ("keys", Value::Int(self.keys)),
            ("dist", word(&self.dist)),
            ("value_size", Value::Int(self.value_size as u64)),
        ];
        if let Some(o) = &self.open_loop {
            f.extend([
                ("target_rate", Value::Float(o.target_rate, 1)),
                ("delayed", Value::Int(o.delayed)),
                ("unsent", Value::Int(o.unsent)),
                ("lag_p50_us", Value::Int(o.lag_p50_us)),
                ("lag_p99_us", Value::Int(o.lag_p99_us)),
                ("lag_max_us", Value::Int(o.lag_max_us)),
            ]);
        }
        if let Some(t) = &self.transfers {
            f.extend([
                ("two_pc", Value::Int(t.two_pc)),
                ("two_pc_aborts", Value::Int(t.two_pc_aborts)),
                (
                    "two_pc_presumed_aborts",
                    Value::Int(t.two_pc_presumed_aborts),
                ),
                ("off_span", Value::Int(t.off_span)),
                ("broken", Value::Int(t.broken)),
            ]);
            if let Some(ok) = t.bank_ok {
                f.push(("bank", word(if ok { "ok" } else { "broken" })));
            }
        }
        if let Some(ok) = self.linearizable {
            f.push(("linearizable", word(if ok { "yes" } else { "no" })));
        }
        f
    }

    /// The last line of the output: `key=value` pairs separated by single
    /// spaces, no spaces inside values, so `tr ' ' '\n'` or a shell `for`
    /// loop can take it apart.
    pub fn kv_line(&self) -> String {
        let fields: Vec<String> = self
            .fields()
            .into_iter()
            .map(|(k, v)| format!("{k}={}", v.text()))
            .collect();
        fields.join(" ")
    }

    /// The same figures as one JSON object (one line, trailing newline),
    /// written by `serde_json`.
    pub fn json(&self) -> String {
        // A map of strings and numbers: serializing it cannot fail.
        serde_json::to_string(self).expect("JSON of plain figures") + "\n"
    }

    /// A few lines for a person.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "workload {} | {} clients x pipeline {} on {} threads | {} keys ({}) | {} B values",
            self.workload,
            self.clients,
            self.pipeline,
            self.threads,
            self.keys,
            self.dist,
            self.value_size
        );
        let _ = writeln!(
            s,
            "throughput {:.0} ops/s ({} ops in {:.2} s)",
            self.ops_per_sec(),
            self.ops,
            self.secs
        );
        if let Some(o) = &self.open_loop {
            let _ = writeln!(
                s,
                "open loop: target {:.0} ops/s, achieved {:.0} ({:.1}%) | delayed by a full \
                 pipeline {} | unsent {} | send lag us: p50 {} p99 {} max {}",
                o.target_rate,
                self.ops_per_sec(),
                100.0 * self.ops_per_sec() / o.target_rate,
                o.delayed,
                o.unsent,
                o.lag_p50_us,
                o.lag_p99_us,
                o.lag_max_us
            );
        }
        let _ = writeln!(
            s,
            "latency us{}: p50 {} p90 {} p99 {} p99.9 {} max {} mean {:.0}",
            if self.open_loop.is_some() {
                " (from intended send times)"
            } else {
                ""
            },
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.mean_us
        );
        let _ = writeln!(
            s,
            "errors {} (timeouts {}) | busy {} | redirects {} | reconnects {} | get misses {}",
            self.errors, self.timeouts, self.busy, self.redirects, self.reconnects, self.get_misses
        );
        if let Some(t) = &self.transfers {
            let _ = writeln!(
                s,
                "transactions: two-phase commits {} (aborted and retried {}, of them lost to \
                 a presumed abort {}) | off span {} | broken {}",
                t.two_pc, t.two_pc_aborts, t.two_pc_presumed_aborts, t.off_span, t.broken
            );
            if let Some(ok) = t.bank_ok {
                let _ = writeln!(
                    s,
                    "bank audit: {}",
                    if ok { "total unchanged" } else { "BROKEN" }
                );
            }
        }
        if let Some(ok) = self.linearizable {
            let _ = writeln!(s, "linearizable: {}", if ok { "yes" } else { "NO" });
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        Summary {
            workload: "mixed".into(),
            clients: 4,
            pipeline: 8,
            threads: 1,
            keys: 100,
            dist: "zipfian".into(),
            value_size: 64,
            ops: 1500,
            secs: 3.0,
            p50_us: 900,
            p90_us: 1500,
            p99_us: 2000,
            p999_us: 4000,
            max_us: 5000,
            mean_us: 1000.25,
            errors: 0,
            ..Summary::default()
        }
    }

    #[test]
    fn last_line_is_space_separated_key_value_pairs() {
        let line = sample().kv_line();
        assert!(line.starts_with("ops=1500 secs=3.000 ops_per_sec=500.0 p50_us=900 "));
        assert!(line.contains(" p99_us=2000 p999_us=4000 "));
        assert!(line.contains(" errors=0 "));
        assert!(line.contains(" clients=4 pipeline=8 "));
        assert!(line.contains(" workload=mixed "));
        assert!(!line.contains("linearizable"), "only printed with --check");
        assert!(!line.contains('\n'));
        for pair in line.split(' ') {
            let (k, v) = pair.split_once('=').expect("key=value");
            assert!(!k.is_empty() && !v.is_empty() && !v.contains('='), "{pair}");
        }
    }

    #[test]
    fn check_verdict_is_the_last_pair() {
        let mut s = sample();
        s.linearizable = Some(true);
        assert!(s.kv_line().ends_with(" linearizable=yes"));
        s.linearizable = Some(false);
        assert!(s.kv_line().ends_with(" linearizable=no"));
    }

    #[test]
    fn words_never_break_the_line() {
        let mut s = sample();
        s.workload = "a b=c".into();
        assert!(s.kv_line().contains(" workload=a_b_c "));
    }

    #[test]
    fn json_has_the_same_figures() {
        let mut s = sample();
        s.linearizable = Some(true);
        let j = s.json();
        assert!(j.starts_with("{\"ops\":1500,\"secs\":3.0,\"ops_per_sec\":500.0,"));
        assert!(j.contains("\"workload\":\"mixed\""));
        assert!(
            j.contains("\"mean_us\":1000.2,"),
            "rounded as in the line: {j}"
        );
        assert!(j.ends_with("\"linearizable\":\"yes\"}\n"));
        s.secs = f64::NAN;
        assert!(s.json().contains("\"secs\":null,"));
    }

    #[test]
    fn open_loop_figures_follow_the_closed_loop_ones() {
        let mut s = sample();
        let closed = s.kv_line();
        assert!(!closed.contains("target_rate") && !s.human().contains("open loop"));
        s.open_loop = Some(OpenLoop {
            target_rate: 600.0,
            delayed: 7,
            unsent: 0,
            lag_p50_us: 3,
            lag_p99_us: 120,
            lag_max_us: 900,
        });
        s.linearizable = Some(true);
        let line = s.kv_line();
        assert!(
            line.starts_with(closed.as_str()),
            "closed-loop fields keep their order"
        );
        assert!(line.ends_with(
            " value_size=64 target_rate=600.0 delayed=7 unsent=0 lag_p50_us=3 lag_p99_us=120 \
             lag_max_us=900 linearizable=yes"
        ));
        assert!(s.json().contains("\"target_rate\":600.0,\"delayed\":7,"));
        assert!(s.human().contains("target 600 ops/s, achieved 500 (83.3%)"));
        assert!(s.human().contains("from intended send times"));
    }

    #[test]
    fn transfer_figures_follow_and_the_bank_verdict_is_last() {
        let mut s = sample();
        let closed = s.kv_line();
        s.workload = "transfer".into();
        s.transfers = Some(Transfers {
            two_pc: 900,
            two_pc_aborts: 12,
            two_pc_presumed_aborts: 1,
            off_span: 0,
            broken: 0,
            bank_ok: Some(true),
        });
        let line = s.kv_line();
        assert_eq!(
            line.split(" workload=").next(),
            closed.split(" workload=").next(),
            "the common fields keep their order"
        );
        assert!(line.ends_with(
            " two_pc=900 two_pc_aborts=12 two_pc_presumed_aborts=1 off_span=0 broken=0 bank=ok"
        ));
        assert!(s
            .human()
            .contains("two-phase commits 900 (aborted and retried 12"));
        assert!(s.human().contains("bank audit: total unchanged"));
        s.transfers.as_mut().unwrap().bank_ok = Some(false);
        assert!(s.kv_line().ends_with(" bank=broken"));
        assert!(s.json().ends_with("\"broken\":0,\"bank\":\"broken\"}\n"));
    }

    #[test]
    fn zero_seconds_means_zero_rate() {
        let s = Summary::default();
        assert_eq!(s.ops_per_sec(), 0.0);
        assert!(s.kv_line().contains("ops_per_sec=0.0"));
    }
}
