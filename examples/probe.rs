//! Ask every node, for every group, a Get over the raw protocol and print the
//! reply (debugging aid). `cargo run --example probe -- ADDR... -- GID...`
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use synod_wire::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let addrs = &args[..split];
    let gids: Vec<u32> = args[split + 1..]
        .iter()
        .map(|g| g.parse().unwrap())
        .collect();
    for addr in addrs {
        for gid in &gids {
            let reply = (|| -> Option<Message> {
                let mut s = TcpStream::connect(addr).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                let mut buf = BytesMut::new();
                let msg = Message::Request(ClientRequest {
                    client_id: 77,
                    seq: 1,
                    ack_seq: 0,
                    op: Op::Get { key: "k1".into() },
                });
                encode_frame(
                    &Frame {
                        request_id: 1,
                        group: *gid,
                        message: msg,
                    },
                    &mut buf,
                );
                s.write_all(&buf).ok()?;
                let mut dec = Decoder::default();
                let mut rb = BytesMut::new();
                let mut chunk = [0u8; 4096];
                loop {
                    if let Ok(Some(f)) = dec.decode(&mut rb) {
                        return Some(f.message);
                    }
                    let n = s.read(&mut chunk).ok()?;
                    if n == 0 {
                        return None;
                    }
                    rb.extend_from_slice(&chunk[..n]);
                }
            })();
            println!("{addr} group {gid}: {reply:?}");
        }
    }
}
