//! The KV store as a replicated [`StateMachine`] with no sharding: log
//! commands are client requests encoded by `synod_wire::encode_command`.
//!
//! Test-only: nothing the server or the simulator runs uses it (they run
//! `ShardKv`); the Paxos unit tests (`paxos/tests.rs`) still do.

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
