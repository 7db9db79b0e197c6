//! The shard master as a replicated [`StateMachine`]: log commands are
//! master requests encoded by `synod_wire::encode_master_command` (the
//! request as the wire carries it), and the answer to a client is a whole
//! [`Message`] (`Config` on success, an `Error` reply on refusal).

use bytes::Bytes;
use synod_wire::{ClientId, ClientReply, MasterOp, MasterRequest, Message, Seq, Slot};

use super::{Answer, Master, MasterOptions};
use crate::replica::StateMachine;

pub struct MasterMachine {
    master: Master,
    opts: MasterOptions,
    /// Commands that did not decode. Only the master group's own leaders
    /// write commands into its log, so this stays 0 unless something is
    /// badly wrong.
    pub undecodable: u64,
}

impl MasterMachine {
    pub fn new(opts: MasterOptions) -> MasterMachine {
        MasterMachine {
            master: Master::new(opts),
            opts,
            undecodable: 0,
        }
    }

    pub fn master(&self) -> &Master {
        &self.master
    }
}

impl StateMachine for MasterMachine {
    type Request = MasterRequest;

    fn request_id(req: &MasterRequest) -> (ClientId, Seq) {
        (req.client_id, req.seq)
    }

    fn command(req: &MasterRequest) -> Bytes {
        synod_wire::encode_master_command(req)
    }

    fn apply(&mut self, _slot: Slot, cmd: &Bytes) -> Option<(ClientId, Seq, Message)> {
        match synod_wire::decode_master_command(cmd.clone()) {
            Ok(req) => {
                let reply = match self.master.execute(&req) {
                    Ok(Answer::Config(config)) => Message::Config(config),
                    Ok(Answer::View(view)) => Message::PbView(view),
                    Err(reason) => Message::Reply(ClientReply::Error { reason }),
                };
                Some((req.client_id, req.seq, reply))
            }
            Err(e) => {
                // Every replica sees the same bytes and skips them alike, so
                // the replicas stay identical; count it loudly.
                ::log::error!("undecodable command in the master log: {e}");
                self.undecodable += 1;
                None
            }
        }
    }

    /// A Query changes nothing (it creates no session and is never
    /// cached: `Master::apply`), so it is answered by read lease or
    /// read-index instead of a log slot: every KV node's migrator polls
    /// the master for the latest configuration, and through the log each
    /// poll cost every master an fdatasync (~30 slots/s on an idle
    /// 3-group cluster). What it gives up is the ack a Query carries,
    /// which the client's next logged request carries again.
    fn is_read(req: &MasterRequest) -> bool {
        matches!(req.op, MasterOp::Query { .. })
    }

    fn read_local(&self, req: &MasterRequest) -> Option<Message> {
        match req.op {
            MasterOp::Query { num } => Some(Message::Config(self.master.config(num).clone())),
            _ => None,
        }
    }

    fn snapshot(&self) -> Bytes {
        self.master.snapshot()
    }

    fn check_snapshot(&self, data: &[u8]) -> Result<(), String> {
        Master::restore(data, self.opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.master = Master::restore(data, self.opts).map_err(|e| e.to_string())?;
        Ok(())
    }
}
