//! Loop-wide request ids for sessions that share an event loop's
//! connections (the RESP gateway's upstream, `synod-bench`'s worker).
//!
//! Every session numbers its sends on its own, so two sessions' requests
//! on one connection could carry the same id. Each send therefore leaves
//! under an id the loop assigns, and its answer is handed back to the
//! session that sent it under that session's own id. The table also knows
//! which connection each send went on: an answer on another connection is
//! a confused server, and a connection that fails names the sessions with
//! sends on it.

use synod_wire::Frame;

use super::idmap::IdMap;

/// One send on the wire.
#[derive(Clone, Copy, Debug)]
struct Sent {
    /// The session that sent it (the driver's index).
    owner: usize,
    /// The session's own request id for that send.
    request_id: u64,
    /// The connection it went on (its token).
    conn: usize,
}

/// Whose answer a frame is ([`WireIds::answer`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// Session `owner`'s; the frame now carries that session's own id.
    Owner(usize),
    /// An id this loop never sent, or whose answer came already: nobody
    /// waits for it.
    Unknown,
    /// Sent on another connection than the one it came back on.
    Confused,
}

/// See the module documentation.
#[derive(Debug)]
pub struct WireIds {
    sent: IdMap<u64, Sent>,
    next: u64,
}

impl Default for WireIds {
    fn default() -> WireIds {
        WireIds {
            sent: IdMap::default(),
            next: 1,
        }
    }
}

impl WireIds {
    /// Gives `frame`, which session `owner` sends on connection `conn`, a
    /// loop-wide id.
    pub fn stamp(&mut self, owner: usize, conn: usize, frame: &mut Frame) {
        let id = self.next;
        self.next += 1;
        self.sent.insert(
            id,
            Sent {
                owner,
                request_id: frame.request_id,
                conn,
            },
        );
        frame.request_id = id;
    }

    /// `frame` arrived on connection `conn`: whose answer it is. An
    /// answer is taken once (a second copy is `Unknown`).
    pub fn answer(&mut self, conn: usize, frame: &mut Frame) -> Answered {
        let Some(sent) = self.sent.remove(&frame.request_id) else {
            return Answered::Unknown;
        };
        if sent.conn != conn {
            return Answered::Confused;
        }
        frame.request_id = sent.request_id;
        Answered::Owner(sent.owner)
    }

    /// Connection `conn` is gone: forgets its sends and returns the
    /// sessions that had any on it (sorted, each once).
    pub fn forget_conn(&mut self, conn: usize) -> Vec<usize> {
        let mut owners = Vec::new();
        self.sent.retain(|_, s| {
            if s.conn == conn {
                owners.push(s.owner);
                false
            } else {
                true
            }
        });
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// Keeps only the sends for which `waits(owner, request_id)` holds:
    /// an answer that never comes (the session gave up on the request, or
    /// resent it elsewhere) then costs nothing for long.
    pub fn retain_waiting(&mut self, mut waits: impl FnMut(usize, u64) -> bool) {
        self.sent.retain(|_, s| waits(s.owner, s.request_id));
    }

    /// Nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use synod_wire::{ClientReply, Message};

    use super::*;

    fn frame(request_id: u64) -> Frame {
        Frame {
            request_id,
            group: 1,
            message: Message::Reply(ClientReply::Ok(bytes::Bytes::new())),
        }
    }

    #[test]
    fn two_sessions_with_the_same_ids_get_their_own_answers() {
        let mut ids = WireIds::default();
        let (mut a, mut b) = (frame(7), frame(7));
        ids.stamp(0, 10, &mut a);
        ids.stamp(1, 10, &mut b);
        assert_ne!(a.request_id, b.request_id, "distinct on the wire");
        // Answers in the other order.
        assert_eq!(ids.answer(10, &mut b), Answered::Owner(1));
        assert_eq!(b.request_id, 7, "the session's own id again");
        assert_eq!(ids.answer(10, &mut a), Answered::Owner(0));
        assert_eq!(a.request_id, 7);
        assert!(ids.is_empty());
    }

    #[test]
    fn a_second_copy_or_a_stranger_is_unknown_and_another_connection_confused() {
        let mut ids = WireIds::default();
        let mut a = frame(1);
        ids.stamp(0, 10, &mut a);
        let wire = a.request_id;
        let mut copy = frame(wire);
        assert_eq!(ids.answer(10, &mut a), Answered::Owner(0));
        assert_eq!(ids.answer(10, &mut copy), Answered::Unknown);
        assert_eq!(ids.answer(10, &mut frame(999)), Answered::Unknown);
        let mut b = frame(2);
        ids.stamp(0, 10, &mut b);
        assert_eq!(ids.answer(11, &mut b), Answered::Confused);
    }

    #[test]
    fn a_failed_connection_names_each_session_once_and_keeps_the_others() {
        let mut ids = WireIds::default();
        for (owner, conn) in [(3, 10), (1, 10), (3, 10), (2, 11)] {
            ids.stamp(owner, conn, &mut frame(5));
        }
        assert_eq!(ids.forget_conn(10), vec![1, 3]);
        assert!(!ids.is_empty(), "connection 11's send stays");
        assert_eq!(ids.forget_conn(10), Vec::<usize>::new());
        ids.retain_waiting(|owner, request_id| owner != 2 || request_id != 5);
        assert!(ids.is_empty(), "a send nobody waits for is swept");
    }
}
