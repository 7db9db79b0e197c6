//! The acceptor's log: accepted values by slot, above the snapshot point.
//!
//! Slots below `start` were compacted into a snapshot and are gone. Slots at
//! or above `start` may be holes (`None`). The log owns no I/O; the records
//! that make it durable are produced by the Paxos core.

use std::collections::VecDeque;

use synod_wire::{Ballot, Batch, Slot};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ballot: Ballot,
    pub batch: Batch,
}

#[derive(Clone, Debug, Default)]
pub struct Log {
    start: Slot,
    entries: VecDeque<Option<Entry>>,
}

impl Log {
    pub fn new(start: Slot) -> Log {
        Log {
            start,
            entries: VecDeque::new(),
        }
    }

    /// First slot still held (everything below is in the snapshot).
    pub fn start(&self) -> Slot {
        self.start
    }

    /// One past the highest slot ever written (holes included).
    pub fn end(&self) -> Slot {
        self.start + self.entries.len() as u64
    }

    pub fn get(&self, slot: Slot) -> Option<&Entry> {
        if slot < self.start {
            return None;
        }
        self.entries
            .get((slot - self.start) as usize)
            .and_then(|e| e.as_ref())
    }

    /// Store `entry` at `slot`. Writing below `start` is a caller bug.
    pub fn set(&mut self, slot: Slot, entry: Entry) {
        assert!(slot >= self.start, "write to compacted slot {slot}");
        let idx = (slot - self.start) as usize;
        if idx >= self.entries.len() {
            self.entries.resize(idx + 1, None);
        }
        self.entries[idx] = Some(entry);
    }

    /// Drop every slot below `upto` (they are covered by a snapshot).
    /// Returns the dropped entries, so the caller can free them where it
    /// is cheap (thousands of batches take milliseconds to drop).
    pub fn compact(&mut self, upto: Slot) -> Vec<Option<Entry>> {
        if upto <= self.start {
            return Vec::new();
        }
        let n = ((upto - self.start) as usize).min(self.entries.len());
        let dropped = self.entries.drain(..n).collect();
        self.start = upto;
        dropped
    }

    /// Number of slots held (holes included); what compaction bounds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Held entries at slots `>= from`, in slot order.
    pub fn iter_from(&self, from: Slot) -> impl Iterator<Item = (Slot, &Entry)> {
        let skip = from.saturating_sub(self.start) as usize;
        let start = self.start;
        self.entries
            .iter()
            .enumerate()
            .skip(skip)
            .filter_map(move |(i, e)| e.as_ref().map(|e| (start + i as u64, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(round: u64) -> Entry {
        Entry {
            ballot: Ballot::new(round, 0),
            batch: Batch::noop(),
        }
    }

    #[test]
    fn holes_and_compaction() {
        let mut log = Log::new(10);
        log.set(12, e(1));
        assert_eq!(log.end(), 13);
        assert!(log.get(10).is_none());
        assert!(log.get(11).is_none());
        assert_eq!(log.get(12), Some(&e(1)));
        log.compact(12);
        assert_eq!(log.start(), 12);
        assert_eq!(log.get(12), Some(&e(1)));
        log.compact(20);
        assert_eq!(log.start(), 20);
        assert_eq!(log.end(), 20);
        assert!(log.is_empty());
    }

    #[test]
    fn iter_from_skips_holes() {
        let mut log = Log::new(0);
        log.set(1, e(1));
        log.set(3, e(3));
        let got: Vec<Slot> = log.iter_from(2).map(|(s, _)| s).collect();
        assert_eq!(got, vec![3]);
        let all: Vec<Slot> = log.iter_from(0).map(|(s, _)| s).collect();
        assert_eq!(all, vec![1, 3]);
    }
}
