//! The KV store as a replicated [`StateMachine`]: log commands are client
//! requests encoded by `synod_wire::encode_command`.

use bytes::Bytes;
use synod_wire::{ClientId, ClientReply, ClientRequest, Op, Seq, Slot};

use crate::kv::{KvOptions, KvStore};
use crate::replica::StateMachine;

pub struct KvMachine {
    store: KvStore,
    opts: KvOptions,
    /// Commands that did not decode. Only our own code writes commands into
    /// the log, so this stays 0 unless something is badly wrong.
    pub undecodable: u64,
}

impl KvMachine {
    pub fn new(opts: KvOptions) -> KvMachine {
        KvMachine {
            store: KvStore::new(opts),
            opts,
            undecodable: 0,
        }
    }

    pub fn store(&self) -> &KvStore {
        &self.store
    }
}

impl StateMachine for KvMachine {
    type Request = ClientRequest;
    type Reply = ClientReply;

    fn request_id(req: &ClientRequest) -> (ClientId, Seq) {
        (req.client_id, req.seq)
    }

    fn apply(&mut self, _slot: Slot, cmd: &Bytes) -> Option<(ClientId, Seq, ClientReply)> {
        if let Some(ms) = crate::kv::decode_clock(cmd) {
            self.store.advance_clock(ms, |_| true);
            return None;
        }
        match synod_wire::decode_command(cmd.clone()) {
            Ok(req) => {
                let reply = self.store.apply(&req);
                Some((req.client_id, req.seq, reply))
            }
            Err(e) => {
                // Every replica sees the same bytes and skips them alike, so
                // the replicas stay identical; count it loudly.
                ::log::error!("undecodable command in the log: {e}");
                self.undecodable += 1;
                None
            }
        }
    }

    fn snapshot(&self) -> Bytes {
        self.store.snapshot()
    }

    fn check_snapshot(&self, data: &[u8]) -> Result<(), String> {
        KvStore::restore(data, self.opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.store = KvStore::restore(data, self.opts).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn is_read(req: &ClientRequest) -> bool {
        matches!(req.op, Op::Get { .. })
    }

    fn clock_command(ms: u64) -> Option<Bytes> {
        Some(crate::kv::clock_command(ms))
    }

    fn read_local(&self, req: &ClientRequest) -> Option<ClientReply> {
        match &req.op {
            Op::Get { key } => Some(self.store.read(key)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Durable, Synced};
    use crate::replica::{Replica, ReplicaConfig};
    use crate::rng::Rng;

    /// Runs the replica until it has nothing more to persist; returns the
    /// replies and the clock stamps applied.
    fn drive(r: &mut Replica<KvMachine>) -> (Vec<ClientReply>, Vec<u64>) {
        let (mut replies, mut stamps) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            r.flush();
            let ready = r.ready();
            if ready.is_empty() {
                break;
            }
            let out = r.advance(ready, Synced::after_sync());
            replies.extend(out.replies.into_iter().map(|(_, reply)| reply));
            for (_, batch) in &out.committed {
                stamps.extend(
                    batch
                        .commands
                        .iter()
                        .filter_map(|c| crate::kv::decode_clock(c)),
                );
            }
        }
        (replies, stamps)
    }

    fn write(
        r: &mut Replica<KvMachine>,
        now_ms: u64,
        client: u64,
        seq: u64,
    ) -> (ClientReply, Vec<u64>) {
        r.set_now_ms(now_ms);
        let req = ClientRequest {
            client_id: client,
            seq,
            ack_seq: seq - 1,
            op: Op::Append {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"x"),
            },
        };
        r.on_request(0, &req, synod_wire::encode_command);
        let (replies, stamps) = drive(r);
        assert_eq!(replies.len(), 1);
        (replies[0].clone(), stamps)
    }

    /// The leader stamps the log with the driver's time before a write, at
    /// most every `clock_interval_ms`, never backwards; the state machine
    /// expires by those stamps alone.
    #[test]
    fn the_leader_stamps_the_log_and_sessions_expire_by_the_stamps() {
        let mut rng = Rng::new(7);
        let mut cfg = ReplicaConfig::new(0, 1);
        cfg.clock_interval_ms = 100;
        let sm = KvMachine::new(KvOptions {
            session_ttl_ms: 1_000,
            ..KvOptions::default()
        });
        let mut r = Replica::new(cfg, Durable::default(), sm, &mut rng);
        for _ in 0..1_000 {
            if r.is_leader() {
                break;
            }
            r.tick(&mut rng);
            drive(&mut r);
        }
        assert!(r.is_leader());
        let ok = ClientReply::Ok(Bytes::new());
        assert_eq!(write(&mut r, 10_000, 5, 1), (ok.clone(), vec![10_000]));
        assert_eq!(
            write(&mut r, 10_050, 5, 2),
            (ok.clone(), vec![]),
            "too soon"
        );
        assert_eq!(write(&mut r, 10_200, 6, 1), (ok.clone(), vec![10_200]));
        // The driver's clock going back does not move the stamps back.
        assert_eq!(write(&mut r, 9_000, 6, 2), (ok.clone(), vec![]));
        assert_eq!(write(&mut r, 10_350, 6, 3), (ok.clone(), vec![10_350]));
        assert_eq!(r.state().store().log_time_ms(), 10_350);
        // Client 5 has been idle for more than the TTL at the next stamp,
        // client 6 not.
        assert_eq!(write(&mut r, 11_200, 6, 4), (ok, vec![11_200]));
        assert_eq!(r.state().store().stats().sessions, 1);
        assert_eq!(write(&mut r, 11_210, 5, 2).0, ClientReply::SessionExpired);
        assert_eq!(
            r.state().store().read(b"k"),
            ClientReply::Ok(Bytes::from_static(b"xxxxxx"))
        );
    }
}
