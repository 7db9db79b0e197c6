//! Allocation bounds, measured by a counting global allocator (which is why
//! this is its own test binary): lying headers and counts cost no memory,
//! decoded payloads are not copied, and whatever a body makes the decoder
//! allocate is bounded by a small multiple of the body's own size.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use common::*;
use synod_wire::*;

/// Counts, per thread (tests run on parallel threads), the bytes requested
/// and the largest single request.
struct Counting;

thread_local! {
    static TOTAL: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: the allocator may be called while thread-locals are torn down.
    let _ = TOTAL.try_with(|t| t.set(t.get() + size));
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters are const-initialised thread-locals of `Copy`
// values, so touching them never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`, returning its result with (total bytes, largest allocation)
/// requested on this thread meanwhile.
fn measure<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    TOTAL.with(|t| t.set(0));
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, TOTAL.with(Cell::get), LARGEST.with(Cell::get))
}

#[test]
fn oversized_header_allocates_nothing() {
    let mut buf = seal(KIND_OK, 1, 1, &[]);
    buf[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&buf[..28]);
    buf[28..32].copy_from_slice(&crc.to_le_bytes());
    let capacity = buf.capacity();
    let mut decoder = Decoder::default();
    let (r, total, _) = measure(|| decoder.decode(&mut buf));
    assert!(matches!(r, Err(DecodeError::FrameTooLarge { .. })));
    assert_eq!(total, 0, "refusing a header must not allocate");
    assert_eq!(buf.capacity(), capacity);
}

#[test]
fn huge_vector_counts_allocate_nothing() {
    let huge = u32::MAX.to_le_bytes();
    let bodies: Vec<(u8, Bytes)> = vec![
        (
            KIND_PROMISE,
            Bytes::from([&[0u8; 32][..], &huge, &[0; 10]].concat()),
        ),
        (
            KIND_ACCEPT,
            Bytes::from([&[0u8; 24][..], &huge, &[0; 10]].concat()),
        ),
        (
            KIND_ACCEPTED,
            Bytes::from([&[0u8; 32][..], &huge, &[0; 10]].concat()),
        ),
        (
            KIND_CATCHUP_RESPONSE,
            Bytes::from([&[0u8; 12][..], &huge, &[0; 10]].concat()),
        ),
        (
            KIND_ACCEPT,
            Bytes::from(
                [
                    &[0u8; 24][..],
                    &1u32.to_le_bytes(),
                    &[0; 8],
                    &huge,
                    &[0; 10],
                ]
                .concat(),
            ),
        ),
        (
            KIND_SNAPSHOT_CHUNK,
            Bytes::from([&[0u8; 28][..], &huge, &[0; 10]].concat()),
        ),
        // Master messages: Join's groups, Leave's gids, Config's shards
        // and Config's groups (after an empty shard list).
        (
            KIND_MASTER_JOIN,
            Bytes::from([&[0u8; 24][..], &huge, &[0; 10]].concat()),
        ),
        (
            KIND_MASTER_LEAVE,
            Bytes::from([&[0u8; 24][..], &huge, &[0; 10]].concat()),
        ),
        (
            KIND_CONFIG,
            Bytes::from([&[0u8; 8][..], &huge, &[0; 10]].concat()),
        ),
        (
            KIND_CONFIG,
            Bytes::from([&[0u8; 12][..], &huge, &[0; 10]].concat()),
        ),
    ];
    for (kind, body) in bodies {
        let (r, total, _) = measure(|| decode_body(kind, body.clone()));
        assert_eq!(r, Err(DecodeError::Truncated), "kind {kind:#04x}");
        // One small allocation is allowed for the first `Bytes::clone` of a
        // Vec-backed buffer (it is promoted to a shared one); no reservation.
        assert!(total <= 64, "kind {kind:#04x}: {total} bytes allocated");
    }
}

#[test]
fn decoding_a_large_value_does_not_copy_it() {
    let frame = Frame {
        request_id: 1,
        group: 1,
        message: Message::Paxos(PaxosMsg::SnapshotChunk(SnapshotChunk {
            from: 0,
            index: 10,
            total_len: 1 << 20,
            offset: 0,
            data: Bytes::from(vec![0x5a; 1 << 20]),
        })),
    };
    let mut buf = encode(&frame);
    let mut decoder = Decoder::default();
    let (r, total, _) = measure(|| decoder.decode(&mut buf));
    assert_eq!(r, Ok(Some(frame)));
    assert!(total < 1024, "{total} bytes allocated for a 1 MiB body");

    let req = ClientRequest {
        client_id: 1,
        seq: 1,
        ack_seq: 0,
        op: Op::Put {
            key: b("k"),
            value: Bytes::from(vec![1u8; 1 << 20]),
        },
    };
    let cmd = encode_command(&req);
    let (r, total, _) = measure(|| decode_command(cmd.clone()));
    assert_eq!(r, Ok(req));
    assert!(total < 1024, "{total} bytes allocated decoding a command");
}

/// Random sealed bodies, biased towards lying counts: whatever the decoder
/// allocates stays within a small multiple of the body length (the worst
/// case is a batch of empty commands: 4 wire bytes per 32-byte `Bytes`).
#[test]
fn allocation_is_bounded_by_body_size() {
    let mut rng = SplitMix(0xa110c);
    let encoded: Vec<BytesMut> = samples().iter().map(encode).collect();
    for i in 0..20_000 {
        let template = &encoded[i % encoded.len()];
        let kind = template[5];
        let mut body = template[HEADER_LEN..].to_vec();
        match rng.below(3) {
            0 => {
                // Replace everything after a prefix with a lying count and
                // a run of zeros (which decode as empty items).
                let keep = rng.below(body.len() + 1);
                body.truncate(keep);
                let count = [u32::MAX, 1 << 20, rng.below(512) as u32][rng.below(3)];
                body.extend_from_slice(&count.to_le_bytes());
                let zeros = rng.below(4096);
                body.resize(body.len() + zeros, 0);
            }
            1 => {
                let extra = rng.below(64);
                body.extend(rng.bytes(extra));
                if !body.is_empty() {
                    let i = rng.below(body.len());
                    body[i] = rng.next_u64() as u8;
                }
            }
            _ => {
                let n = rng.below(256);
                body = rng.bytes(n);
            }
        }
        let mut wire = seal(kind, 0, 0, &body);
        let mut decoder = Decoder::default();
        let (_, total, largest) = measure(|| decoder.decode(&mut wire));
        // A transaction's operations are the densest case: an `Op` in
        // memory per 5 wire bytes (kind + empty key), so its factor is
        // size_of::<Op>() / 5 (the decoder also refuses more than
        // TXN_PARTS_MAX parts before reserving).
        // A two-phase commit prepare (0x1A) carries a transaction too.
        let factor = if kind == 0x08 || kind == 0x1A {
            std::mem::size_of::<Op>() / 5 + 1
        } else {
            8
        };
        let bound = (factor + 4) * body.len() + 256;
        assert!(
            total <= bound && largest <= factor * body.len() + 256,
            "kind {kind:#04x}, body {} bytes: total {total}, largest {largest}",
            body.len()
        );
    }
}
