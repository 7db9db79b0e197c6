//! The `ack_seq` watermark of one pipelining client session.
//!
//! PROTOCOL.md section 7: `ack_seq` is the highest `s` such that every seq
//! `<= s` is finished. A pipelined session finishes seqs out of order
//! (replies of one connection may be reordered, a Busy or a redirect delays
//! one request while later ones complete), and acknowledging past a gap
//! would let the servers drop the cached reply of a request that may still
//! be resent. So finished seqs above the first gap wait here until the gap
//! closes.
//!
//! (The client library has the same rule in `client::logic::AckWindow`, but
//! it is private to that crate; this one is a ring of flags instead of a
//! `BTreeSet` because the benchmark retires one seq per operation on its
//! hot path.)

use std::collections::VecDeque;

use synod_wire::Seq;

/// Tracks which seqs are finished and yields the contiguous low-water mark.
#[derive(Debug, Default)]
pub struct AckWatermark {
    /// Every seq `<= upto` is finished.
    upto: Seq,
    /// `done[i]` says whether seq `upto + 1 + i` is finished. Never starts
    /// with `true` (that seq would have been folded into `upto`).
    done: VecDeque<bool>,
}

impl AckWatermark {
    /// Marks `seq` finished: it will never be sent again. Retiring a seq
    /// twice, or one at or below the mark, is a no-op.
    pub fn retire(&mut self, seq: Seq) {
        assert!(seq > 0, "seq 0 is never issued");
        if seq <= self.upto {
            return;
        }
        let index = (seq - self.upto - 1) as usize;
        if index >= self.done.len() {
            self.done.resize(index + 1, false);
        }
        self.done[index] = true;
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.upto += 1;
        }
    }

    /// The `ack_seq` to put on the next request.
    pub fn ack_seq(&self) -> Seq {
        self.upto
    }

    /// Seqs tracked above the mark (finished or not): the window's size.
    pub fn window(&self) -> usize {
        self.done.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_retirement_advances_one_by_one() {
        let mut a = AckWatermark::default();
        assert_eq!(a.ack_seq(), 0);
        for s in 1..=5 {
            a.retire(s);
            assert_eq!(a.ack_seq(), s);
        }
        assert_eq!(a.window(), 0);
    }

    #[test]
    fn a_gap_holds_the_mark_until_it_closes() {
        let mut a = AckWatermark::default();
        a.retire(2);
        a.retire(3);
        a.retire(5);
        assert_eq!(a.ack_seq(), 0, "seq 1 is still outstanding");
        a.retire(1);
        assert_eq!(a.ack_seq(), 3, "4 is still outstanding");
        a.retire(4);
        assert_eq!(a.ack_seq(), 5);
        assert_eq!(a.window(), 0);
    }

    #[test]
    fn duplicates_and_old_seqs_are_ignored() {
        let mut a = AckWatermark::default();
        a.retire(1);
        a.retire(1);
        a.retire(3);
        a.retire(3);
        assert_eq!(a.ack_seq(), 1);
        a.retire(2);
        assert_eq!(a.ack_seq(), 3);
        a.retire(2);
        assert_eq!(a.ack_seq(), 3);
    }

    #[test]
    fn matches_a_naive_model_on_shuffled_pipelines() {
        let mut rng = synod::rng::Rng::new(11);
        for _ in 0..200 {
            let n = rng.range(1, 64);
            let mut seqs: Vec<u64> = (1..=n).collect();
            for i in (1..seqs.len()).rev() {
                let j = rng.range(0, i as u64 + 1) as usize;
                seqs.swap(i, j);
            }
            let mut a = AckWatermark::default();
            let mut done = std::collections::BTreeSet::new();
            for s in seqs {
                a.retire(s);
                done.insert(s);
                let naive = (1..).take_while(|x| done.contains(x)).last().unwrap_or(0);
                assert_eq!(a.ack_seq(), naive);
            }
            assert_eq!(a.ack_seq(), n);
        }
    }
}
