//! Drives the [`Session`] core over blocking sockets: the only things this
//! file decides are which connection carries a frame, when to block and
//! for how long. Every protocol rule (routing, retries with the same seq,
//! the window, acknowledgements, backoff, configuration refresh) is the
//! session's.
//!
//! One turn: poll the session at the current time, drop the connections it
//! gave up on, open connections and write every frame it produced (all
//! frames for one connection in one write), collect finished requests,
//! then wait on the event channel (replies and closed connections from the
//! reader threads) until the session's next wake-up.

use std::collections::HashMap;
use std::sync::mpsc::RecvTimeoutError;

use bytes::BytesMut;
use synod_wire::encode_frame;

use super::conn::{Conn, Event};
use super::session::{Answer, Dest, Req, Time};
use super::{Client, ClientError};

impl Client {
    fn now(&self) -> Time {
        self.epoch.elapsed()
    }

    /// Runs `reqs` and returns one result per request, in order.
    pub(crate) fn run(&mut self, reqs: Vec<Req>) -> Vec<Result<Answer, ClientError>> {
        let mut index: HashMap<u64, usize> = HashMap::new();
        for (i, req) in reqs.into_iter().enumerate() {
            index.insert(self.session.submit(req), i);
        }
        let mut results: Vec<Option<Result<Answer, ClientError>>> =
            (0..index.len()).map(|_| None).collect();
        let mut left = index.len();
        loop {
            let now = self.now();
            self.renew_id_if_due(now);
            self.session.poll(now);
            self.flush(now);
            while let Some(done) = self.session.poll_completion() {
                if let Some(&i) = index.get(&done.handle) {
                    debug_assert!(results[i].is_none());
                    results[i] = Some(done.result);
                    left -= 1;
                }
            }
            // A transaction across groups is answered once its decision is
            // durable; its outcome still goes to the other groups, which
            // hold locks until it arrives, so the call returns after that.
            if left == 0 && self.session.background() == 0 {
                break;
            }
            self.wait(now);
        }
        self.renew_id_if_due(self.now());
        results
            .into_iter()
            .map(|r| r.expect("every request finishes before run returns"))
            .collect()
    }

    /// A fresh id once nothing is in flight under the old one (after a
    /// `SessionExpired`, or when it is old).
    fn renew_id_if_due(&mut self, now: Time) {
        if self.session.needs_new_id(now) {
            self.session
                .set_client_id(super::logic::fresh_client_id(), now);
        }
    }

    /// Carries out what the session asked for: connections to drop, then
    /// frames to send (one write per connection).
    fn flush(&mut self, now: Time) {
        while let Some((dest, why)) = self.session.poll_close() {
            self.drop_conn(&dest, &why);
        }
        let mut out: Vec<(Dest, BytesMut)> = Vec::new();
        while let Some(t) = self.session.poll_transmit() {
            let i = match out.iter().position(|(d, _)| *d == t.dest) {
                Some(i) => i,
                None => {
                    out.push((t.dest.clone(), BytesMut::new()));
                    out.len() - 1
                }
            };
            encode_frame(&t.frame, &mut out[i].1);
        }
        for (dest, bytes) in out {
            if let Err(why) = self.open_conn(&dest) {
                self.session.on_conn_failed(&dest, &why, false, now);
                continue;
            }
            let conn = self.conns.get_mut(&dest).expect("just opened");
            if let Err(e) = conn.write_all(&bytes) {
                let why = format!("write failed: {e}");
                self.drop_conn(&dest, &why);
                self.session.on_conn_failed(&dest, &why, true, self.now());
            }
        }
    }

    /// Blocks until the next event or the session's next wake-up, then
    /// hands every event already queued to the session.
    fn wait(&mut self, now: Time) {
        let wake = self.session.next_wake(now).unwrap_or(now);
        let event = match self.events_rx.recv_timeout(wake.saturating_sub(now)) {
            Ok(event) => event,
            // The client holds a sender, so the channel never disconnects.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
        };
        self.handle_event(event);
        while let Ok(event) = self.events_rx.try_recv() {
            self.handle_event(event);
        }
    }

    fn handle_event(&mut self, event: Event) {
        let now = self.now();
        let conn = match &event {
            Event::Frame { conn, .. } | Event::Closed { conn, .. } => *conn,
        };
        // Leftovers from a connection already dropped are ignored.
        let Some(dest) = self
            .conns
            .iter()
            .find(|(_, c)| c.id == conn)
            .map(|(d, _)| d.clone())
        else {
            return;
        };
        match event {
            Event::Frame { frame, .. } => self.session.on_frame(&dest, frame, now),
            Event::Closed { reason, .. } => {
                self.drop_conn(&dest, &reason);
                self.session.on_conn_failed(&dest, &reason, true, now);
            }
        }
    }

    /// The open connection to `dest`, connecting (and authenticating) if
    /// there is none.
    fn open_conn(&mut self, dest: &Dest) -> Result<(), String> {
        if self.conns.contains_key(dest) {
            return Ok(());
        }
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        let auth = crate::auth::stream::client_identity(
            self.opts.cluster_key.as_ref(),
            self.opts.client_key.as_ref(),
        );
        let conn = Conn::open(
            id,
            &dest.addr,
            dest.gid,
            auth.as_ref(),
            self.opts.rpc_timeout,
            self.opts.rpc_timeout,
            self.events_tx.clone(),
        )?;
        self.conns.insert(dest.clone(), conn);
        Ok(())
    }

    fn drop_conn(&mut self, dest: &Dest, reason: &str) {
        if self.conns.remove(dest).is_some() {
            log::debug!(
                "client {:016x}: dropping connection to {} (group {}): {reason}",
                self.session.client_id(),
                dest.addr,
                dest.gid
            );
        }
    }
}
