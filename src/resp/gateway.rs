//! The RESP front door's sockets: a std `TcpListener`, one thread per
//! connection, each thread with its own [`Client`] (its own at-most-once
//! session with the cluster).
//!
//! Thread per connection is the simple, obviously correct shape: the client
//! library is blocking, a connection's commands run in order on one stack,
//! and a slow connection only stalls itself. It costs a thread (and the
//! client's reader threads) per connection, which [`GatewayOptions`] bounds;
//! that is fine for a compatibility front door. The fast path stays the
//! native binary protocol, which the runtime serves from its event loops.
//!
//! One loop turn per connection: read what is available, parse every
//! complete command, run all their KV operations as pipelined batches
//! (`Client::execute_many`, split only where per-key order needs it: see
//! `batch`), then write every reply, in order, with one write.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BytesMut;

use super::batch;
use super::command::{plan, Plan, Session};
use super::parse::{Parser, MAX_BULK_BYTES};
use super::reply::Reply;
use crate::client::{Client, ClientOptions, OpResult};
use synod_wire::Op;

/// Default [`GatewayOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// Default [`GatewayOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`GatewayOptions::read_buf_max`]: room for one command carrying
/// two maximal values (an MSET of two 16 MiB values) plus headers.
pub const DEFAULT_READ_BUF_MAX: usize = 2 * MAX_BULK_BYTES + (1 << 20);
/// Most commands answered per loop turn. More may be buffered; they are
/// taken on the next turn without waiting for the socket, so this only
/// bounds the replies held in memory at once.
pub const MAX_COMMANDS_PER_TURN: usize = 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// Limits of one gateway.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Open RESP connections at most; one more is answered
    /// `-ERR max number of clients reached` and closed.
    pub max_connections: usize,
    /// A connection silent this long (or not reading its replies this long)
    /// is closed.
    pub idle_timeout: Duration,
    /// Largest partial command buffered; a larger one is refused and the
    /// connection closed.
    pub read_buf_max: usize,
    /// How each connection's client reaches the cluster.
    pub client: ClientOptions,
}

impl GatewayOptions {
    /// Defaults for everything but the cluster's masters.
    pub fn new(masters: Vec<String>) -> GatewayOptions {
        GatewayOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            read_buf_max: DEFAULT_READ_BUF_MAX,
            client: ClientOptions::new(masters),
        }
    }
}

/// Binds `listen` and serves RESP on it for the cluster whose shard masters
/// are `masters`, with default limits. Returns the accept thread's handle;
/// it runs for the life of the process.
pub fn serve(listen: SocketAddr, masters: Vec<String>) -> io::Result<JoinHandle<()>> {
    serve_with(TcpListener::bind(listen)?, GatewayOptions::new(masters))
}

/// [`serve`] on an already bound listener with explicit limits.
pub fn serve_with(listener: TcpListener, opts: GatewayOptions) -> io::Result<JoinHandle<()>> {
    let local = listener.local_addr()?;
    log::info!("RESP gateway listening on {local}");
    std::thread::Builder::new()
        .name("resp-accept".into())
        .spawn(move || accept_loop(listener, opts))
}

/// Decrements the open-connection count when a connection thread ends,
/// however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(listener: TcpListener, opts: GatewayOptions) {
    let open = Arc::new(AtomicUsize::new(0));
    let next_id = AtomicU64::new(1);
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Typically out of file descriptors: back off instead of
                // spinning on the error.
                log::warn!("RESP accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::AcqRel) >= opts.max_connections {
            open.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let slot = Slot(open.clone());
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let opts = opts.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("resp-{id}"))
            .spawn(move || {
                let _slot = slot;
                let peer = stream.peer_addr().ok();
                if let Err(e) = serve_connection(stream, id, &opts) {
                    log::debug!("RESP connection {id} ({peer:?}) ended: {e}");
                }
            });
        if let Err(e) = spawned {
            // The closure (and with it the stream and the slot) was dropped.
            log::warn!("RESP: cannot start a connection thread: {e}");
        }
    }
}

/// Why a connection loop stops after this turn's replies are written.
enum Close {
    Quit,
    Refused(String),
}

fn serve_connection(mut stream: TcpStream, id: u64, opts: &GatewayOptions) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(opts.idle_timeout))?;
    stream.set_write_timeout(Some(opts.idle_timeout))?;
    let mut client = match Client::new(opts.client.clone()) {
        Ok(c) => c,
        Err(e) => {
            stream.write_all(format!("-ERR gateway misconfigured: {e}\r\n").as_bytes())?;
            return Ok(());
        }
    };
    let mut session = Session { id, name: None };
    let mut parser = Parser::new();
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let mut plans = Vec::new();
        let mut close = None;
        while plans.len() < MAX_COMMANDS_PER_TURN {
            match parser.next_command(&mut buf) {
                Ok(Some(args)) => {
                    let p = plan(&args, &mut session);
                    let quit = p == Plan::Quit;
                    plans.push(p);
                    if quit {
                        close = Some(Close::Quit);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("RESP connection {id}: {e}; closing it");
                    close = Some(Close::Refused(format!("ERR {e}")));
                    break;
                }
            }
        }
        if close.is_none() && buf.len() >= opts.read_buf_max {
            log::warn!(
                "RESP connection {id}: request over {} bytes; closing it",
                opts.read_buf_max
            );
            close = Some(Close::Refused(format!(
                "ERR Protocol error: request larger than {} bytes",
                opts.read_buf_max
            )));
        }
        let full_turn = plans.len() == MAX_COMMANDS_PER_TURN;
        let mut out = respond(plans, |ops| client.execute_many(ops));
        if let Some(Close::Refused(text)) = &close {
            Reply::error(text.clone()).encode(&mut out);
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
        }
        if close.is_some() {
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        if full_turn {
            continue; // more commands may already be buffered
        }
        let n = loop {
            match stream.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e), // includes the idle timeout
            }
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Every reply of one turn's commands, in order. All their KV operations go
/// to `execute` as pipelined batches (waves, see `batch`), so the commands
/// of one read cost one round trip per wave, not one per command.
pub(crate) fn respond(plans: Vec<Plan>, execute: impl FnMut(Vec<Op>) -> Vec<OpResult>) -> BytesMut {
    let ops: Vec<Op> = plans
        .iter()
        .filter_map(|p| match p {
            Plan::Kv(k) => Some(k.ops.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut results = if ops.is_empty() {
        Vec::new()
    } else {
        batch::run(ops, execute)
    }
    .into_iter();
    let mut out = BytesMut::new();
    for p in plans {
        match p {
            Plan::Reply(r) => r.encode(&mut out),
            Plan::Quit => Reply::OK.encode(&mut out),
            Plan::Kv(k) => {
                let mine: Vec<OpResult> = results.by_ref().take(k.ops.len()).collect();
                k.finish(mine).encode(&mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::BTreeMap;

    fn plans(cmds: &[&[&str]]) -> Vec<Plan> {
        let mut s = Session::default();
        cmds.iter()
            .map(|c| {
                let args: Vec<Bytes> = c
                    .iter()
                    .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                    .collect();
                plan(&args, &mut s)
            })
            .collect()
    }

    #[test]
    fn a_pipeline_answers_in_order_with_one_batch_per_wave() {
        let mut map: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        let mut batches = 0;
        let out = respond(
            plans(&[
                &["PING"],
                &["SET", "a", "1"],
                &["SET", "b", "2"],
                &["APPEND", "a", "23"],
                &["GET", "b"],
                &["DEL", "a", "zz"],
                &["GET", "a"],
            ]),
            |ops| {
                batches += 1;
                ops.iter()
                    .map(|op| {
                        Ok(match op {
                            Op::Get { key } => map.get(key).cloned(),
                            Op::Put { key, value } => {
                                map.insert(key.clone(), value.clone());
                                Some(Bytes::new())
                            }
                            Op::Append { key, value } => {
                                let mut v = map.get(key).map(|v| v.to_vec()).unwrap_or_default();
                                v.extend_from_slice(value);
                                map.insert(key.clone(), Bytes::from(v));
                                Some(Bytes::new())
                            }
                            Op::Delete { key } => {
                                Some(Bytes::from_static(if map.remove(key).is_some() {
                                    b"1"
                                } else {
                                    b"0"
                                }))
                            }
                        })
                    })
                    .collect()
            },
        );
        assert_eq!(
            &out[..],
            &b"+PONG\r\n+OK\r\n+OK\r\n:3\r\n$1\r\n2\r\n:1\r\n$-1\r\n"[..]
        );
        // SET a | APPEND a | GET a (for APPEND) | DEL a | GET a: five waves
        // for key a; the key b ops ride along.
        assert_eq!(batches, 5);
    }

    #[test]
    fn a_turn_without_kv_commands_never_calls_the_cluster() {
        let out = respond(plans(&[&["PING"], &["ECHO", "x"], &["QUIT"]]), |_| {
            panic!("no KV op expected")
        });
        assert_eq!(&out[..], &b"+PONG\r\n$1\r\nx\r\n+OK\r\n"[..]);
    }
}
