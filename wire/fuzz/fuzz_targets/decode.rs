//! Arbitrary bytes into every decoding entry point. Properties, as in the
//! proptest suite (`wire/tests/robustness.rs`): nothing panics, and anything
//! that decodes re-encodes to exactly the bytes it came from.
//!
//! Input layout: byte 0 picks where to split the stream into two reads;
//! the rest is the stream. The same rest is also tried as a command and as
//! a body whose kind is its first byte.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use synod_wire::{
    decode_body, decode_command, encode_command, encode_frame, encode_message_body, Decoder,
};

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };

    // The incremental decoder, fed in two reads.
    let cut = (split as usize * stream.len()) / 255;
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut consumed = 0;
    'reads: for part in [&stream[..cut], &stream[cut..]] {
        buf.extend_from_slice(part);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let mut again = BytesMut::new();
                    encode_frame(&frame, &mut again);
                    assert_eq!(
                        Some(&again[..]),
                        stream.get(consumed..consumed + again.len())
                    );
                    consumed += again.len();
                }
                Ok(None) => break,
                Err(_) => break 'reads,
            }
        }
    }

    // A command as stored in a Paxos batch.
    if let Ok(req) = decode_command(Bytes::copy_from_slice(stream)) {
        assert_eq!(&encode_command(&req)[..], stream);
    }

    // A bare body of the kind named by its first byte.
    if let Some((&kind, body)) = stream.split_first() {
        if let Ok(msg) = decode_body(kind, Bytes::copy_from_slice(body)) {
            let mut again = BytesMut::new();
            encode_message_body(&msg, &mut again);
            assert_eq!(&again[..], body);
        }
    }
});
