//! The one event loop of both simulated worlds: virtual time, a queue of
//! events ordered by `(time, sequence number)`, and [`run`], which hands
//! each event to its world until the world is finished or time runs out.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Micros;

/// A scheduled event, ordered by `(time, sequence number)`: the sequence
/// number breaks ties in scheduling order, which is what makes a seed replay
/// exactly.
struct Queued<E> {
    at: Micros,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Queued<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<E> Eq for Queued<E> {}
impl<E> PartialOrd for Queued<E> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Queued<E> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A world's virtual clock and the events scheduled on it.
pub(crate) struct Timeline<E> {
    /// The time of the event being handled (µs).
    pub(crate) now: Micros,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued<E>>>,
}

impl<E> Timeline<E> {
    pub(crate) fn new() -> Timeline<E> {
        Timeline {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
        }
    }

    pub(crate) fn schedule(&mut self, at: Micros, ev: E) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    /// The next event due no later than `end`, with the clock moved to it.
    /// A later event stays queued, so a caller may run in stages.
    pub(crate) fn next(&mut self, end: Micros) -> Option<E> {
        if self.queue.peek()?.0.at > end {
            return None;
        }
        let Reverse(q) = self.queue.pop()?;
        self.now = q.at;
        Some(q.ev)
    }
}

/// A simulated world, as the event loop sees it.
pub(crate) trait Simulated {
    type Event;
    fn timeline(&mut self) -> &mut Timeline<Self::Event>;
    fn handle(&mut self, ev: Self::Event);
    /// Checked after every event: stop early (the workload is over and
    /// everything settled).
    fn finished(&self) -> bool;
}

/// Hand every event due by `end` to `world` in `(time, sequence)` order.
pub(crate) fn run<W: Simulated>(world: &mut W, end: Micros) {
    while let Some(ev) = world.timeline().next(end) {
        world.handle(ev);
        if world.finished() {
            break;
        }
    }
}
