//! Lamport and vector clocks for tracing a distributed run, written in the
//! log format ShiViz reads (GoVector's): every event is two lines,
//!
//! ```text
//! r1 {"r1":7,"r0":3,"c0":2}
//! lamport=12 recv Accept from r0 msg=41
//! ```
//!
//! the host and its vector clock after the event, then the event, whose
//! text starts with the host's Lamport timestamp. The file's first line is
//! the regular expression ShiViz needs to parse the rest; paste the file
//! into ShiViz (<https://bestchai.bitbucket.io/shiviz/>) with that line as
//! the parser expression.
//!
//! Sans-IO like the protocol code: the tracer is handed events and writes
//! to any `Write`; a message's [`Stamp`] travels with it however the driver
//! carries messages. Off (no tracer) costs nothing.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use synod_wire::TraceStamp;

/// The expression ShiViz parses each event with (the first line of a trace).
pub const SHIVIZ_REGEX: &str = r"(?<host>\S*) (?<clock>{.*})\n(?<event>.*)";

/// A vector clock: host name → events seen from that host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VClock(pub BTreeMap<String, u64>);

impl VClock {
    /// Every component at least `other`'s.
    pub fn dominates(&self, other: &VClock) -> bool {
        other
            .0
            .iter()
            .all(|(h, n)| self.0.get(h).copied().unwrap_or(0) >= *n)
    }

    fn merge(&mut self, other: &VClock) {
        for (h, n) in &other.0 {
            let mine = self.0.entry(h.clone()).or_insert(0);
            *mine = (*mine).max(*n);
        }
    }

    /// `{"a":1,"b":2}` (host names are ours: no escaping needed beyond
    /// quotes and backslashes, which are escaped anyway).
    pub fn to_json(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(h, n)| format!("\"{}\":{n}", h.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    /// Parses what [`VClock::to_json`] writes.
    pub fn from_json(s: &str) -> Option<VClock> {
        let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
        let mut map = BTreeMap::new();
        for part in inner.split(',').filter(|p| !p.is_empty()) {
            let (h, n) = part.rsplit_once(':')?;
            let h = h.trim().strip_prefix('"')?.strip_suffix('"')?;
            map.insert(h.to_string(), n.trim().parse().ok()?);
        }
        Some(VClock(map))
    }
}

/// What travels with a traced message: the sender's clocks at the send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub id: u64,
    pub lamport: u64,
    pub clock: VClock,
}

/// One host's clocks.
#[derive(Default)]
struct HostClock {
    lamport: u64,
    clock: VClock,
}

/// Writes a trace of sends, receives and local events with every host's
/// Lamport and vector clocks.
pub struct Tracer {
    out: Box<dyn Write + Send>,
    hosts: BTreeMap<String, HostClock>,
    next_msg: u64,
    /// The first write error; later events are dropped (a trace is a
    /// debugging aid and must never stop the run it traces).
    pub error: Option<io::Error>,
}

impl Tracer {
    /// A tracer writing to `out`, starting with the ShiViz expression line
    /// and a blank line.
    pub fn new(mut out: Box<dyn Write + Send>) -> Tracer {
        let error = writeln!(out, "{SHIVIZ_REGEX}\n").err();
        Tracer {
            out,
            hosts: BTreeMap::new(),
            next_msg: 0,
            error,
        }
    }

    fn tick(&mut self, host: &str) -> &mut HostClock {
        let h = self.hosts.entry(host.to_string()).or_default();
        h.lamport += 1;
        *h.clock.0.entry(host.to_string()).or_insert(0) += 1;
        h
    }

    fn write(&mut self, host: &str, text: &str) {
        if self.error.is_some() {
            return;
        }
        let h = &self.hosts[host];
        let r = writeln!(
            self.out,
            "{host} {}\nlamport={} {text}",
            h.clock.to_json(),
            h.lamport
        );
        self.error = r.err();
    }

    /// `host` sends a message described by `what`; returns the stamp to
    /// carry with it.
    pub fn send(&mut self, host: &str, what: &str) -> Stamp {
        self.next_msg += 1;
        let id = self.next_msg;
        let h = self.tick(host);
        let stamp = Stamp {
            id,
            lamport: h.lamport,
            clock: h.clock.clone(),
        };
        self.write(host, &format!("send {what} msg={id}"));
        stamp
    }

    /// `host` receives the message `stamp` came with.
    pub fn recv(&mut self, host: &str, stamp: &Stamp, what: &str) {
        let h = self.hosts.entry(host.to_string()).or_default();
        h.clock.merge(&stamp.clock);
        h.lamport = h.lamport.max(stamp.lamport);
        self.tick(host);
        self.write(host, &format!("recv {what} msg={}", stamp.id));
    }

    /// Something happened at `host` alone (a crash, a restart, a timer).
    pub fn local(&mut self, host: &str, what: &str) {
        self.tick(host);
        self.write(host, what);
    }

    /// A tracer whose message ids start after `first_id`: servers tracing
    /// one run each write their own file, so each takes ids from its own
    /// random range and the files can be merged ([`merge`]).
    pub fn with_first_id(out: Box<dyn Write + Send>, first_id: u64) -> Tracer {
        let mut t = Tracer::new(out);
        t.next_msg = first_id;
        t
    }

    /// Flush the output; the first error if any write failed.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        self.out.flush()
    }

    /// Flush the output; the first error if any write failed.
    pub fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

impl Stamp {
    /// The stamp as it travels on the wire.
    pub fn to_wire(&self) -> TraceStamp {
        TraceStamp {
            id: self.id,
            lamport: self.lamport,
            clock: self.clock.0.iter().map(|(h, n)| (h.clone(), *n)).collect(),
        }
    }

    /// A stamp read off the wire.
    pub fn from_wire(w: TraceStamp) -> Stamp {
        Stamp {
            id: w.id,
            lamport: w.lamport,
            clock: VClock(w.clock.into_iter().collect()),
        }
    }
}

/// One server's trace (`synod-server --trace FILE`): every core of the
/// node records its sends and receives here, as the one host named by the
/// node's advertised address. The lock is taken per traced frame, only
/// while tracing; a server without `--trace` has no `NodeTracer` and pays
/// one `None` check per frame.
pub struct NodeTracer {
    host: String,
    inner: Mutex<Tracer>,
}

impl NodeTracer {
    /// Creates (truncates) `path`. Message ids start at a random multiple
    /// of 2^32, so ids from the servers of one run do not collide.
    pub fn create(path: &Path, host: &str) -> io::Result<NodeTracer> {
        use std::hash::{BuildHasher, Hasher};
        let f = std::fs::File::create(path)?;
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(host.as_bytes());
        h.write_u32(std::process::id());
        let first_id = (h.finish() >> 32) << 32;
        let out = WholeEvents {
            file: f,
            buf: Vec::new(),
        };
        let t = NodeTracer {
            host: host.to_string(),
            inner: Mutex::new(Tracer::with_first_id(Box::new(out), first_id)),
        };
        t.local("start");
        Ok(t)
    }

    fn tracer(&self) -> std::sync::MutexGuard<'_, Tracer> {
        // A core that panicked while holding the lock leaves a trace that
        // is still worth writing to.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a send; the stamp to put before the frame.
    pub fn send(&self, what: &str) -> TraceStamp {
        self.tracer().send(&self.host, what).to_wire()
    }

    /// Records the receive of a frame that came with `stamp`.
    pub fn recv(&self, stamp: TraceStamp, what: &str) {
        self.tracer()
            .recv(&self.host, &Stamp::from_wire(stamp), what);
    }

    /// Records an event of this node alone (a frame to or from someone who
    /// does not trace, such as a client).
    pub fn local(&self, what: &str) {
        self.tracer().local(&self.host, what);
    }

    /// Writes what is buffered (each core after its loop turn), so a
    /// killed server's trace holds everything up to its last turn.
    pub fn flush(&self) {
        let _ = self.tracer().flush();
    }
}

/// A server trace's output: events collect in memory and go to the file
/// only on `flush` (each core's end of turn), in one write, so a killed
/// server's file ends with a whole event (a buffered writer would write
/// whenever its buffer filled, mid-event).
struct WholeEvents {
    file: std::fs::File,
    buf: Vec<u8>,
}

impl Write for WholeEvents {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.file.write_all(&self.buf);
        self.buf.clear();
        r
    }
}

/// Merges the traces of one run's servers into one file that ShiViz
/// reads and [`check`] accepts: every event in Lamport order (a receive's
/// Lamport time exceeds its send's and each host's only grows, so this
/// order puts every send before its receives and keeps each host's order).
pub fn merge(traces: &[String]) -> Result<String, String> {
    let mut all = Vec::new();
    for (i, t) in traces.iter().enumerate() {
        let events = parse(t).map_err(|e| format!("trace {}: {e}", i + 1))?;
        all.extend(events);
    }
    // Stable: events of one host with equal Lamport times cannot exist.
    all.sort_by(|a, b| a.lamport.cmp(&b.lamport).then_with(|| a.host.cmp(&b.host)));
    let mut out = format!("{SHIVIZ_REGEX}\n\n");
    for e in &all {
        out.push_str(&format!("{} {}\n{}\n", e.host, e.clock.to_json(), e.text));
    }
    Ok(out)
}

/// One parsed trace event.
#[derive(Clone, Debug)]
pub struct TraceEvent {
    pub host: String,
    pub clock: VClock,
    pub lamport: u64,
    /// `Some((true, id))` for a send, `Some((false, id))` for a receive.
    pub msg: Option<(bool, u64)>,
    pub text: String,
}

/// Parses a trace written by [`Tracer`].
pub fn parse(trace: &str) -> Result<Vec<TraceEvent>, String> {
    let mut lines = trace.lines();
    if lines.next() != Some(SHIVIZ_REGEX) {
        return Err("the first line is not the ShiViz expression".into());
    }
    let mut events = Vec::new();
    let rest: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    for (i, pair) in rest.chunks(2).enumerate() {
        let [head, text] = pair else {
            return Err(format!("event {i}: a host line without its event line"));
        };
        let (host, clock) = head
            .split_once(' ')
            .ok_or(format!("event {i}: no clock in {head:?}"))?;
        let clock = VClock::from_json(clock).ok_or(format!("event {i}: bad clock {clock:?}"))?;
        let lamport = text
            .strip_prefix("lamport=")
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .ok_or(format!("event {i}: no Lamport timestamp in {text:?}"))?;
        let id = text.rsplit_once(" msg=").and_then(|(_, n)| n.parse().ok());
        let kind = text.split(' ').nth(1);
        let msg = match (kind, id) {
            (Some("send"), Some(id)) => Some((true, id)),
            (Some("recv"), Some(id)) => Some((false, id)),
            _ => None,
        };
        events.push(TraceEvent {
            host: host.to_string(),
            clock,
            lamport,
            msg,
            text: text.to_string(),
        });
    }
    Ok(events)
}

/// Checks a trace's clocks: on each host both clocks only grow (its own
/// component by exactly one per event); every receive's vector clock
/// dominates its send's and its Lamport timestamp exceeds the send's.
/// Returns the number of matched send/receive pairs.
pub fn check(events: &[TraceEvent]) -> Result<usize, String> {
    let mut last: BTreeMap<&str, (&VClock, u64)> = BTreeMap::new();
    let mut sends: BTreeMap<u64, &TraceEvent> = BTreeMap::new();
    let mut pairs = 0;
    for (i, e) in events.iter().enumerate() {
        let own = e.clock.0.get(&e.host).copied().unwrap_or(0);
        if let Some((prev, lamport)) = last.get(e.host.as_str()) {
            let prev_own = prev.0.get(&e.host).copied().unwrap_or(0);
            if !e.clock.dominates(prev) || own != prev_own + 1 || e.lamport <= *lamport {
                return Err(format!(
                    "event {i} ({}): clocks went backwards or skipped: {:?} after {:?}",
                    e.text, e.clock, prev
                ));
            }
        } else if own != 1 {
            return Err(format!(
                "event {i}: host {}'s first event has own count {own}",
                e.host
            ));
        }
        last.insert(&e.host, (&e.clock, e.lamport));
        match e.msg {
            Some((true, id)) => {
                sends.insert(id, e);
            }
            Some((false, id)) => {
                let s = sends
                    .get(&id)
                    .ok_or(format!("event {i}: receive of msg {id}, never sent before"))?;
                if !e.clock.dominates(&s.clock) || e.lamport <= s.lamport {
                    return Err(format!(
                        "event {i}: receive of msg {id} does not follow its send"
                    ));
                }
                pairs += 1;
            }
            None => {}
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn clocks_follow_messages_and_the_checker_catches_a_forged_one() {
        let buf = Shared::default();
        let mut t = Tracer::new(Box::new(buf.clone()));
        t.local("a", "start");
        let s1 = t.send("a", "ping to b");
        t.local("b", "timer");
        t.recv("b", &s1, "ping from a");
        let s2 = t.send("b", "pong to a");
        t.recv("a", &s2, "pong from b");
        // A duplicate delivery is a second receive of the same send.
        t.recv("b", &s1, "ping from a (duplicate)");
        t.finish().unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let events = parse(&text).unwrap();
        assert_eq!(events.len(), 7);
        assert_eq!(check(&events), Ok(3));
        assert_eq!(events[3].clock.to_json(), r#"{"a":2,"b":2}"#);
        assert_eq!(events[3].lamport, 3);
        assert_eq!(events[5].clock.to_json(), r#"{"a":3,"b":3}"#);

        // A receive whose clock does not include its send is caught.
        let mut bad = events.clone();
        bad[3].clock.0.insert("a".into(), 1);
        assert!(check(&bad)
            .unwrap_err()
            .contains("does not follow its send"));
        // So is a clock that goes backwards on one host.
        let mut bad = events.clone();
        bad[4].clock.0.insert("b".into(), 2);
        assert!(check(&bad).is_err());
    }

    #[test]
    fn traces_of_two_nodes_merge_into_one_that_checks() {
        let (a, b) = (Shared::default(), Shared::default());
        let mut ta = Tracer::with_first_id(Box::new(a.clone()), 1 << 32);
        let mut tb = Tracer::with_first_id(Box::new(b.clone()), 2 << 32);
        let s1 = ta.send("a", "ping");
        tb.local("b", "start");
        tb.local("b", "timer");
        tb.local("b", "timer");
        tb.recv("b", &Stamp::from_wire(s1.to_wire()), "ping");
        let s2 = tb.send("b", "pong");
        ta.recv("a", &s2, "pong");
        ta.finish().unwrap();
        tb.finish().unwrap();
        let read = |s: &Shared| String::from_utf8(s.0.lock().unwrap().clone()).unwrap();
        // Each file alone has a receive whose send is in the other.
        assert!(check(&parse(&read(&b)).unwrap()).is_err());
        let merged = merge(&[read(&a), read(&b)]).unwrap();
        let events = parse(&merged).unwrap();
        assert_eq!(events.len(), 7);
        assert_eq!(check(&events), Ok(2));
        assert!(merge(&["not a trace".into()]).is_err());
    }

    #[test]
    fn vector_clocks_round_trip_through_json() {
        let mut c = VClock::default();
        c.0.insert("r0".into(), 3);
        c.0.insert("c12".into(), 1);
        assert_eq!(VClock::from_json(&c.to_json()), Some(c));
        assert_eq!(VClock::from_json("{}"), Some(VClock::default()));
        assert_eq!(VClock::from_json("not json"), None);
    }
}
