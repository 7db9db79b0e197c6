//! The open-loop schedule of `synod-bench --rate`.
//!
//! A [`Pacer`] owns one worker thread's send schedule: request `k` is
//! *intended* at `start + phase + k / rate`, whatever happened to the
//! requests before it. The worker asks which request is due, takes it when a
//! pipeline slot is free, and reports when it found every slot taken. A
//! request that could not go out at its intended time keeps that time: its
//! latency is measured from it, so a stall of the servers (or of the load
//! generator) shows up in the percentiles instead of silently slowing the
//! offered load down (the "coordinated omission" of closed-loop tools).
//!
//! This module owns only the arithmetic: it never reads the clock (the
//! caller passes `now`) and knows nothing of sockets or sessions, so it is
//! tested on its own.

use std::time::{Duration, Instant};

/// Highest `--rate` accepted: one request per nanosecond would make the
/// intended-time arithmetic meaningless long before any server keeps up.
pub const RATE_MAX: f64 = 1e9;

/// The share of `rate` (operations per second across all sessions) that a
/// worker driving `sessions` of the run's `clients` sessions issues: rates
/// are split by session count, so an uneven split of sessions over threads
/// still offers every session the same load and the shares add up to `rate`.
pub fn worker_rate(rate: f64, sessions: usize, clients: usize) -> f64 {
    assert!(
        clients > 0 && sessions <= clients,
        "{sessions} of {clients}"
    );
    rate * sessions as f64 / clients as f64
}

/// The first of `sessions` sessions at or after `cursor` (wrapping around)
/// that `has_room` (a free pipeline slot). Starting from a moving cursor
/// spreads the load over the sessions, and so over their connections,
/// instead of filling the first session's pipeline first.
pub fn next_free(
    sessions: usize,
    cursor: usize,
    has_room: impl Fn(usize) -> bool,
) -> Option<usize> {
    (0..sessions)
        .map(|i| (cursor + i) % sessions)
        .find(|&s| has_room(s))
}

/// One request handed out by [`Pacer::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Its place in the schedule (0-based).
    pub index: u64,
    /// When it should have been sent: its latency runs from here.
    pub intended: Instant,
    /// It became due while every pipeline slot of the worker was taken, so
    /// part of its latency is waiting for a slot rather than for a server.
    pub delayed: bool,
}

/// One worker's open-loop schedule.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Intended time of request 0.
    first: Instant,
    /// Operations per second this worker offers.
    rate: f64,
    /// No request is intended at or after this (the end of the measured
    /// window); `None`: the schedule never ends (a `--ops` run).
    end: Option<Instant>,
    /// Index of the next request to hand out.
    next: u64,
    /// Requests with an index below this were due while the pipeline was
    /// full (see [`Pacer::full`]).
    delayed_below: u64,
    /// The worker found every pipeline slot taken and has not seen one free
    /// since.
    full: bool,
}

impl Pacer {
    /// A schedule of `rate` requests per second whose first request is
    /// intended at `start + phase`, with none intended at or after `end`.
    pub fn new(start: Instant, phase: Duration, rate: f64, end: Option<Instant>) -> Pacer {
        assert!(
            rate > 0.0 && rate <= RATE_MAX && rate.is_finite(),
            "rate {rate} out of range"
        );
        Pacer {
            first: start + phase,
            rate,
            end,
            next: 0,
            delayed_below: 0,
            full: false,
        }
    }

    /// When request `k` is intended. Computed from `k` directly rather than
    /// by adding an interval per request, so rounding never accumulates into
    /// drift over a long run.
    pub fn intended(&self, k: u64) -> Instant {
        let ns = (k as f64 * 1e9 / self.rate).round();
        self.first + Duration::from_nanos(ns as u64)
    }

    /// When the next request is intended, or `None` once every request
    /// before the end has been handed out.
    pub fn next_intended(&self) -> Option<Instant> {
        let t = self.intended(self.next);
        match self.end {
            Some(end) if t >= end => None,
            _ => Some(t),
        }
    }

    /// Whether the next request is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_intended().is_some_and(|t| t <= now)
    }

    /// Whether every request before the end has been handed out.
    pub fn exhausted(&self) -> bool {
        self.next_intended().is_none()
    }

    /// How many requests are intended at or before `now` (and before the
    /// end), handed out or not.
    fn due_count(&self, now: Instant) -> u64 {
        let mut t = now;
        if let Some(end) = self.end {
            if end <= t {
                // Only requests intended strictly before the end exist.
                match end.checked_sub(Duration::from_nanos(1)) {
                    Some(before) => t = before,
                    None => return 0,
                }
            }
        }
        if t < self.first {
            return 0;
        }
        let elapsed_s = t.duration_since(self.first).as_secs_f64();
        // Estimate from the rate, then correct against `intended` itself so
        // float rounding can never count a request that is not yet due (or
        // miss one that is).
        let mut n = (elapsed_s * self.rate).floor() as u64 + 1;
        while n > 0 && self.intended(n - 1) > t {
            n -= 1;
        }
        while self.intended(n) <= t {
            n += 1;
        }
        n
    }

    /// Requests intended at or before `now` (and before the end) that have
    /// not been handed out: the backlog a full pipeline or a slow worker
    /// left behind.
    pub fn backlog(&self, now: Instant) -> u64 {
        self.due_count(now).saturating_sub(self.next)
    }

    /// Requests before the end not yet handed out (what is left unsent if
    /// the run gives up on its backlog).
    pub fn left(&self) -> u64 {
        match self.end {
            Some(end) => self.due_count(end).saturating_sub(self.next),
            None => 0,
        }
    }

    /// The worker found every pipeline slot taken at `now`. Everything due
    /// by then, and everything that falls due before a slot is seen free
    /// again ([`Pacer::slot_free`]), waits for the pipeline.
    pub fn full(&mut self, now: Instant) {
        self.full = true;
        self.delayed_below = self.delayed_below.max(self.due_count(now));
    }

    /// The worker found a free pipeline slot at `now`. If the pipeline was
    /// full, every request that fell due in between waited for this slot.
    pub fn slot_free(&mut self, now: Instant) {
        if self.full {
            self.full = false;
            self.delayed_below = self.delayed_below.max(self.due_count(now));
        }
    }

    /// Hands out the next request; the caller has checked it is due and has
    /// a free slot for it (and called [`Pacer::slot_free`]).
    pub fn take(&mut self, now: Instant) -> Slot {
        let intended = self
            .next_intended()
            .expect("take() past the end of the schedule");
        assert!(intended <= now, "take() before the request is due");
        let slot = Slot {
            index: self.next,
            intended,
            delayed: self.next < self.delayed_below,
        };
        self.next += 1;
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn requests_are_evenly_spaced_from_the_phase() {
        let t0 = Instant::now();
        let p = Pacer::new(t0, us(250), 1000.0, None);
        assert_eq!(p.intended(0), t0 + us(250));
        assert_eq!(p.intended(1), t0 + us(1250));
        assert_eq!(p.intended(7), t0 + us(7250));
    }

    #[test]
    fn schedule_does_not_drift_over_a_long_run() {
        // 1/3 µs per request is not a whole number of nanoseconds: adding a
        // rounded interval per request would be off by ~33 ms after 100 M.
        let t0 = Instant::now();
        let p = Pacer::new(t0, Duration::ZERO, 3_000_000.0, None);
        assert_eq!(p.intended(300_000_000), t0 + Duration::from_secs(100));
        assert_eq!(p.intended(1), t0 + Duration::from_nanos(333));
        assert_eq!(p.intended(2), t0 + Duration::from_nanos(667));
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, ms(1), 1000.0, None);
        assert!(!p.is_due(t0));
        assert!(!p.is_due(t0 + us(999)));
        assert!(p.is_due(t0 + ms(1)));
        let s = p.take(t0 + ms(1));
        assert_eq!((s.index, s.intended, s.delayed), (0, t0 + ms(1), false));
        assert!(!p.is_due(t0 + us(1999)), "the next one is due at 2 ms");
        assert_eq!(p.next_intended(), Some(t0 + ms(2)));
    }

    #[test]
    fn a_late_worker_keeps_every_intended_time() {
        // The worker wakes 5.5 ms late: the five requests it missed still
        // carry their own times, so their latency includes the lateness.
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, Duration::ZERO, 1000.0, None);
        let now = t0 + us(5500);
        assert_eq!(p.backlog(now), 6);
        let mut got = Vec::new();
        while p.is_due(now) {
            got.push(p.take(now));
        }
        let times: Vec<Instant> = got.iter().map(|s| s.intended).collect();
        assert_eq!(times, (0..6).map(|k| t0 + ms(k)).collect::<Vec<_>>());
        assert!(
            got.iter().all(|s| !s.delayed),
            "late, but not for want of a slot"
        );
        assert_eq!(p.backlog(now), 0);
    }

    #[test]
    fn requests_due_while_the_pipeline_is_full_are_delayed() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, Duration::ZERO, 1000.0, None);
        // Request 0 takes the last free slot at 0 ms.
        assert!(!p.take(t0).delayed);
        p.full(t0);
        // Requests 1..=3 fall due while the worker sleeps on a full pipeline;
        // a reply frees a slot at 3.2 ms.
        let now = t0 + us(3200);
        p.slot_free(now);
        let s = p.take(now);
        assert_eq!((s.index, s.intended, s.delayed), (1, t0 + ms(1), true));
        // The pipeline fills again before 2 and 3 are sent...
        p.full(now);
        // ...and frees at 4.5 ms: 2, 3 and 4 all waited.
        let now = t0 + us(4500);
        p.slot_free(now);
        let delayed: Vec<bool> = (0..3).map(|_| p.take(now).delayed).collect();
        assert_eq!(delayed, [true, true, true]);
        // Request 5, due after the slot was seen free, did not wait.
        let now = t0 + ms(5);
        p.slot_free(now);
        assert!(!p.take(now).delayed);
    }

    #[test]
    fn a_free_slot_without_a_full_pipeline_delays_nothing() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, Duration::ZERO, 1000.0, None);
        p.slot_free(t0 + ms(3));
        assert!((0..4).all(|_| !p.take(t0 + ms(3)).delayed));
    }

    #[test]
    fn nothing_is_intended_at_or_after_the_end() {
        let t0 = Instant::now();
        let end = t0 + ms(3);
        let mut p = Pacer::new(t0, Duration::ZERO, 1000.0, Some(end));
        assert_eq!(p.left(), 3, "requests at 0, 1 and 2 ms");
        let late = t0 + ms(10);
        assert_eq!(p.backlog(late), 3, "the backlog stops at the end");
        p.take(late);
        assert_eq!((p.left(), p.backlog(late)), (2, 2));
        p.take(late);
        p.take(late);
        assert!(p.exhausted() && !p.is_due(late));
        assert_eq!((p.left(), p.backlog(late)), (0, 0));
    }

    #[test]
    fn due_count_matches_the_intended_times_exactly() {
        // At a rate whose interval is not whole nanoseconds, the count of
        // due requests must agree with `intended` right at the boundaries.
        let t0 = Instant::now();
        let p = Pacer::new(t0, Duration::from_nanos(17), 7_000_003.0, None);
        for k in [0u64, 1, 2, 999, 1_000_000, 7_000_003] {
            let t = p.intended(k);
            assert_eq!(p.due_count(t), k + 1, "at request {k}'s time");
            assert_eq!(
                p.due_count(t - Duration::from_nanos(1)),
                k,
                "just before {k}"
            );
        }
        assert_eq!(p.due_count(t0), 0);
    }

    #[test]
    fn the_rate_is_split_by_sessions() {
        // 10 sessions over 3 threads: 4, 3, 3.
        let shares: Vec<f64> = [4, 3, 3]
            .iter()
            .map(|&s| worker_rate(1000.0, s, 10))
            .collect();
        assert_eq!(shares, [400.0, 300.0, 300.0]);
        assert!((shares.iter().sum::<f64>() - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn free_slots_are_found_round_robin() {
        // Sessions with these many requests in flight, pipeline 2.
        let free =
            |in_flight: &[usize], cursor| next_free(in_flight.len(), cursor, |s| in_flight[s] < 2);
        assert_eq!(free(&[0, 0, 0], 0), Some(0));
        assert_eq!(free(&[0, 0, 0], 2), Some(2));
        assert_eq!(free(&[2, 2, 1], 0), Some(2));
        assert_eq!(free(&[1, 2, 2], 1), Some(0), "wraps around");
        assert_eq!(free(&[2, 2, 2], 1), None);
        assert_eq!(free(&[], 0), None);
    }
}
