//! A simulated client: one request outstanding at a time, retried with the
//! same sequence number until it is answered, following leader hints.

use bytes::Bytes;
use synod_wire::{ClientReply, ClientRequest, Op, ReplicaId};

use super::{token, Micros, MS};
use crate::check::{KvInput, KvOp, KvOutput};
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub(crate) struct KeySpace {
    pub mixed: Vec<Bytes>,
    pub append: Vec<Bytes>,
}

impl KeySpace {
    pub fn new(mixed: usize, append: usize) -> KeySpace {
        KeySpace {
            mixed: (0..mixed).map(|i| Bytes::from(format!("m{i}"))).collect(),
            append: (0..append).map(|i| Bytes::from(format!("a{i}"))).collect(),
        }
    }
}

/// What the world must do for a client after an event.
#[derive(Default)]
pub(crate) struct Actions {
    pub send: Vec<(ReplicaId, u64, ClientRequest)>,
    pub wake: Option<(Micros, u64)>,
    pub completed: Vec<KvOp>,
    pub failures: Vec<String>,
    /// A `SessionExpired` came back: the world gives this client a fresh id.
    pub renew_id: bool,
}

struct Current {
    req: ClientRequest,
    input: KvInput,
    call: Micros,
    target: ReplicaId,
    /// The next wake is a retry to `target`, not a timeout.
    redirect: bool,
}

/// One append this client issued: `(key, seq, acknowledged)`.
pub(crate) struct Appended {
    pub key: Bytes,
    pub seq: u64,
    pub acked: bool,
}

pub(crate) struct Client {
    pub idx: usize,
    replicas: u32,
    keys: KeySpace,
    rng: Rng,
    seq: u64,
    acked: u64,
    current: Option<Current>,
    /// Only the latest scheduled wake counts.
    token: u64,
    stopped: bool,
    pub appends: Vec<Appended>,
    /// The id requests go out under: `idx + 1` at first, a fresh
    /// time-ordered one after each `SessionExpired`.
    client_id: u64,
}

const TIMEOUT: Micros = 150 * MS;

impl Client {
    pub fn new(idx: usize, replicas: u32, keys: KeySpace, rng: Rng) -> Client {
        Client {
            idx,
            replicas,
            keys,
            rng,
            seq: 0,
            acked: 0,
            current: None,
            token: 0,
            stopped: false,
            appends: Vec::new(),
            client_id: idx as u64 + 1,
        }
    }

    /// The id the next requests go out under (never while one is
    /// outstanding: a request is never resent under another id).
    pub fn set_client_id(&mut self, id: u64) {
        assert!(self.current.is_none(), "renewing the id with a request out");
        self.client_id = id;
    }

    /// Done issuing and nothing outstanding.
    pub fn idle(&self) -> bool {
        self.stopped && self.current.is_none()
    }

    pub fn outstanding(&self) -> Option<(u64, Micros)> {
        self.current.as_ref().map(|c| (c.req.seq, c.call))
    }

    fn reply_to(&self, seq: u64) -> u64 {
        ((self.idx as u64) << 40) | (seq & ((1 << 40) - 1))
    }

    fn new_op(&mut self) -> (Op, KvInput) {
        let append_only = !self.keys.append.is_empty() && self.rng.chance(0.4);
        if append_only {
            let key =
                self.keys.append[self.rng.range(0, self.keys.append.len() as u64) as usize].clone();
            if self.rng.chance(0.3) {
                return (Op::Get { key }, KvInput::Get);
            }
            let value = token(b'A', self.idx, self.seq);
            self.appends.push(Appended {
                key: key.clone(),
                seq: self.seq,
                acked: false,
            });
            return (
                Op::Append {
                    key,
                    value: value.clone(),
                },
                KvInput::Append(value),
            );
        }
        let key = self.keys.mixed[self.rng.range(0, self.keys.mixed.len() as u64) as usize].clone();
        match self.rng.range(0, 10) {
            0..=3 => (Op::Get { key }, KvInput::Get),
            4..=6 => {
                let value = token(b'P', self.idx, self.seq);
                (
                    Op::Put {
                        key,
                        value: value.clone(),
                    },
                    KvInput::Put(value),
                )
            }
            _ => {
                let value = token(b'a', self.idx, self.seq);
                (
                    Op::Append {
                        key,
                        value: value.clone(),
                    },
                    KvInput::Append(value),
                )
            }
        }
    }

    fn send_current(&mut self, a: &mut Actions) {
        let c = self.current.as_ref().expect("an op is outstanding");
        a.send
            .push((c.target, self.reply_to(c.req.seq), c.req.clone()));
    }

    fn arm(&mut self, a: &mut Actions, after: Micros) {
        self.token += 1;
        a.wake = Some((after, self.token));
    }

    pub fn on_wake(&mut self, now: Micros, token: u64, stop_new: bool) -> Actions {
        let mut a = Actions::default();
        if token != self.token {
            return a;
        }
        match &mut self.current {
            None => {
                if stop_new {
                    self.stopped = true;
                    return a;
                }
                self.seq += 1;
                let (op, input) = self.new_op();
                let target = self.rng.range(0, self.replicas as u64) as ReplicaId;
                self.current = Some(Current {
                    req: ClientRequest {
                        client_id: self.client_id,
                        seq: self.seq,
                        ack_seq: self.acked,
                        op,
                    },
                    input,
                    call: now,
                    target,
                    redirect: false,
                });
            }
            Some(c) => {
                if !c.redirect {
                    // Timed out: try another replica.
                    c.target = (c.target + 1 + self.rng.range(0, self.replicas as u64 - 1) as u32)
                        % self.replicas;
                    if self.replicas == 1 {
                        c.target = 0;
                    }
                }
                c.redirect = false;
            }
        }
        self.send_current(&mut a);
        let jitter = self.rng.range(0, 50 * MS);
        self.arm(&mut a, TIMEOUT + jitter);
        a
    }

    pub fn on_reply(&mut self, now: Micros, reply_to: u64, reply: ClientReply) -> Actions {
        let mut a = Actions::default();
        let Some(seq) = self.current.as_ref().map(|c| c.req.seq) else {
            return a;
        };
        if reply_to != self.reply_to(seq) {
            return a; // an answer to an earlier request, already settled
        }
        let c = self.current.as_mut().expect("checked above");
        let output = match reply {
            ClientReply::Ok(v) => match c.input {
                KvInput::Get => KvOutput::Value(Some(v)),
                _ => KvOutput::Ok,
            },
            ClientReply::NoKey => KvOutput::Value(None),
            ClientReply::NotLeader { leader } => {
                c.target = match leader {
                    Some(l) if l != c.target && l < self.replicas => l,
                    _ => (c.target + 1) % self.replicas,
                };
                c.redirect = true;
                let backoff = self.rng.range(MS, 10 * MS);
                self.arm(&mut a, backoff);
                return a;
            }
            ClientReply::Busy => {
                c.redirect = true;
                let backoff = self.rng.range(5 * MS, 30 * MS);
                self.arm(&mut a, backoff);
                return a;
            }
            // The session expired (short TTLs on some seeds): an earlier
            // copy of this write may have applied, so its outcome is
            // unknown; carry on under a fresh, newer client id, as
            // PROTOCOL.md 7 says.
            ClientReply::SessionExpired => {
                a.renew_id = true;
                KvOutput::Unknown
            }
            other => {
                a.failures.push(format!(
                    "client {} seq {}: unexpected reply {other:?}",
                    self.idx, c.req.seq
                ));
                return a;
            }
        };
        let c = self.current.take().expect("checked above");
        if let (KvInput::Append(_), false) = (&c.input, output == KvOutput::Unknown) {
            if let Some(ap) = self.appends.iter_mut().find(|x| x.seq == c.req.seq) {
                ap.acked = true;
            }
        }
        self.acked = c.req.seq;
        a.completed.push(KvOp {
            client: self.idx as u64,
            key: c.req.op.key().clone(),
            input: c.input,
            output,
            call: c.call,
            ret: now,
        });
        let think = self.rng.range(0, 3 * MS);
        self.arm(&mut a, think);
        a
    }

    /// The outstanding op at the end of the run, as an op of unknown outcome.
    pub fn pending_op(&self, _now: Micros) -> Option<KvOp> {
        let c = self.current.as_ref()?;
        Some(KvOp {
            client: self.idx as u64,
            key: c.req.op.key().clone(),
            input: c.input.clone(),
            output: KvOutput::Unknown,
            call: c.call,
            ret: u64::MAX,
        })
    }
}
