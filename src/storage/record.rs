//! One WAL record as bytes (layout in the module doc of `storage`).
//!
//! Encoding trusts its caller and appends to a buffer without system calls.
//! Decoding trusts nothing: every length is checked against the bytes
//! present before anything is allocated, and no input makes it panic.

use byteorder::{ByteOrder, LittleEndian};
use bytes::Bytes;
use synod_wire::{Ballot, Batch, ByteReader, GroupId, ReadError};

use crate::paxos::Record;
use crate::pb::PbRecord;

/// A record of either kind of group, as read back from a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalRecord {
    Paxos(Record),
    /// A primary/backup group's record (`pb::PbRecord`); a local snapshot
    /// (`install: false`) never is one: it lives in the snapshot file.
    Pb(PbRecord),
    /// A primary/backup group installed the state at `index` received by
    /// transfer, whose bytes are the snapshot file written in the same
    /// sync (`TAG_PB_INSTALLED`): drops every entry held before it.
    PbInstalled {
        index: u64,
        last_tag: u64,
    },
}

/// The checksum seed of every record in segment `seq`
/// (`wal-<seq>.seg`): a record's crc is crc32c of its checksummed part
/// continued from this seed, so a record is valid only in the segment it
/// was written for. That is what lets the WAL recycle a dead segment's file
/// for a later one (`Wal`'s rotation): the records of its earlier lives
/// left behind the new ones never check out, and recovery takes them for
/// a torn tail's remains instead of reading them back. Two sequence numbers
/// below 2^32 never share a seed (crc32c is injective on messages that
/// differ only within 32 bits).
pub(crate) fn segment_seed(seq: u64) -> u32 {
    crc32c::crc32c(&seq.to_le_bytes())
}

/// The seed of the first WAL format (`wal-<seq>.log`, never recycled):
/// plain crc32c of the checksummed part.
pub(crate) const LEGACY_SEED: u32 = 0;

/// `len u32 | crc u32` before the checksummed part.
pub(crate) const PREFIX_LEN: usize = 8;
/// `group u32 | tag u8`: the shortest possible checksummed part.
pub(crate) const LEN_MIN: u32 = 5;

pub(crate) const TAG_PROMISED: u8 = 1;
pub(crate) const TAG_ACCEPTED: u8 = 2;
/// Primary/backup: the highest view adopted.
pub(crate) const TAG_PB_VIEW: u8 = 3;
/// Primary/backup: a log entry (drops every entry at or above its position).
pub(crate) const TAG_PB_ENTRY: u8 = 4;
/// Primary/backup: a state installed by state transfer, inline (drops every
/// entry), so it is ordered with the entries around it and atomic. Read
/// only (WALs written before `TAG_PB_INSTALLED`): a state can be larger
/// than a record may be.
pub(crate) const TAG_PB_INSTALL: u8 = 5;
/// Primary/backup: a state installed by state transfer (drops every
/// entry), its bytes in the group's snapshot file, written and renamed
/// within the same sync after this record's `fdatasync`. Recovery takes it
/// only if that file is at its index or later; a file still older means
/// the sync never finished (nothing after it was logged, nothing of it
/// acknowledged), so it is ignored.
pub(crate) const TAG_PB_INSTALLED: u8 = 6;

const OFF_LEN: usize = 0;
const OFF_CRC: usize = 4;
const OFF_GROUP: usize = 8;
const OFF_TAG: usize = 12;
const OFF_PAYLOAD: usize = 13;

/// `round u64 | node u32`.
const PROMISED_PAYLOAD_LEN: usize = 12;
/// `slot u64 | round u64 | node u32 | count u32`, before the commands.
const ACCEPTED_FIXED_LEN: usize = 24;
/// `view u64`.
const PB_VIEW_PAYLOAD_LEN: usize = 8;
/// `pos u64 | tag u64 | count u32`, before the commands.
const PB_ENTRY_FIXED_LEN: usize = 20;
/// `index u64 | last_tag u64 | len u32`, before the data.
const PB_INSTALL_FIXED_LEN: usize = 20;
/// `index u64 | last_tag u64`.
const PB_INSTALLED_PAYLOAD_LEN: usize = 16;

const _: () = assert!(OFF_CRC == OFF_LEN + 4);
const _: () = assert!(OFF_GROUP == OFF_CRC + 4 && OFF_GROUP == PREFIX_LEN);
const _: () = assert!(OFF_TAG == OFF_GROUP + 4);
const _: () = assert!(OFF_PAYLOAD == OFF_TAG + 1);
const _: () = assert!(OFF_PAYLOAD - PREFIX_LEN == LEN_MIN as usize);

/// Append `rec` of `group` to `buf`; returns the encoded length.
///
/// Panics on a `Snapshot` (snapshots live in their own files) and on a
/// record longer than `record_bytes_max`: reading would refuse it, so
/// writing it would make the log unrecoverable. Paxos bounds batches far
/// below the default limit, so this is a configuration bug.
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    seed: u32,
    group: GroupId,
    rec: &Record,
    record_bytes_max: u32,
) -> usize {
    let start = begin(buf, group);
    match rec {
        Record::Promised(b) => {
            buf.push(TAG_PROMISED);
            push_ballot(buf, *b);
        }
        Record::Accepted {
            slot,
            ballot,
            batch,
        } => {
            buf.push(TAG_ACCEPTED);
            push_u64(buf, *slot);
            push_ballot(buf, *ballot);
            push_batch(buf, batch);
        }
        Record::Snapshot { .. } => panic!("snapshots are not WAL records"),
    }
    finish(buf, start, seed, record_bytes_max)
}

/// Append primary/backup record `rec` of `group` to `buf`; returns the
/// encoded length. Panics on a local snapshot (`install: false`: it lives
/// in the snapshot file) and, as [`encode`] does, on a record longer than
/// `record_bytes_max`.
pub(crate) fn encode_pb(
    buf: &mut Vec<u8>,
    seed: u32,
    group: GroupId,
    rec: &PbRecord,
    record_bytes_max: u32,
) -> usize {
    let start = begin(buf, group);
    match rec {
        PbRecord::View(v) => {
            buf.push(TAG_PB_VIEW);
            push_u64(buf, *v);
        }
        PbRecord::Entry { pos, tag, batch } => {
            buf.push(TAG_PB_ENTRY);
            push_u64(buf, *pos);
            push_u64(buf, *tag);
            push_batch(buf, batch);
        }
        PbRecord::Snapshot {
            index,
            last_tag,
            install: true,
            ..
        } => {
            // The state itself goes to the snapshot file (`Wal::append_pb`).
            buf.push(TAG_PB_INSTALLED);
            push_u64(buf, *index);
            push_u64(buf, *last_tag);
        }
        PbRecord::Snapshot { install: false, .. } => {
            panic!("local primary/backup snapshots are not WAL records")
        }
    }
    finish(buf, start, seed, record_bytes_max)
}

/// Start a record of `group` at the end of `buf` (its prefix left to
/// [`finish`]); returns where it starts.
fn begin(buf: &mut Vec<u8>, group: GroupId) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; PREFIX_LEN]);
    push_u32(buf, group);
    start
}

/// A batch as Paxos and primary/backup records hold it: the command count,
/// then each command with its length.
fn push_batch(buf: &mut Vec<u8>, batch: &Batch) {
    push_u32(buf, fits_u32(batch.commands.len()));
    for cmd in &batch.commands {
        push_u32(buf, fits_u32(cmd.len()));
        buf.extend_from_slice(cmd);
    }
}

/// Fill in the length and checksum (from `seed`, see [`segment_seed`]) of
/// the record begun at `start`.
fn finish(buf: &mut [u8], start: usize, seed: u32, record_bytes_max: u32) -> usize {
    let len = buf.len() - start - PREFIX_LEN;
    assert!(
        len <= record_bytes_max as usize,
        "record of {len} bytes exceeds record_bytes_max {record_bytes_max}"
    );
    let crc = crc32c::crc32c_append(seed, &buf[start + PREFIX_LEN..]);
    LittleEndian::write_u32(&mut buf[start + OFF_LEN..], len as u32);
    LittleEndian::write_u32(&mut buf[start + OFF_CRC..], crc);
    buf.len() - start
}

fn fits_u32(n: usize) -> u32 {
    u32::try_from(n).expect("length does not fit the WAL's u32")
}

fn push_u32(buf: &mut Vec<u8>, v: u32) {
    let mut b = [0; 4];
    LittleEndian::write_u32(&mut b, v);
    buf.extend_from_slice(&b);
}

fn push_u64(buf: &mut Vec<u8>, v: u64) {
    let mut b = [0; 8];
    LittleEndian::write_u64(&mut b, v);
    buf.extend_from_slice(&b);
}

fn push_ballot(buf: &mut Vec<u8>, b: Ballot) {
    push_u64(buf, b.round);
    push_u32(buf, b.node);
}

/// Why the bytes at some offset are not a record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bad {
    /// The record (or its 8-byte prefix) runs past the end of the file:
    /// what a torn last write looks like.
    Truncated(String),
    /// Length out of range or checksum mismatch: a torn write, or damage.
    Damaged(String),
    /// The checksum is right but the contents do not parse. A torn write
    /// cannot do this, so it is damage (or a writer bug) wherever it is.
    Malformed(String),
}

impl Bad {
    pub(crate) fn reason(&self) -> &str {
        match self {
            Bad::Truncated(r) | Bad::Damaged(r) | Bad::Malformed(r) => r,
        }
    }
}

/// A record read back, and the offset just past it.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub group: GroupId,
    pub record: WalRecord,
    pub next: usize,
}

/// Decode the record starting at `off` in `bytes`, of a segment whose
/// records are checksummed from `seed`.
pub(crate) fn decode_at(
    bytes: &[u8],
    off: usize,
    seed: u32,
    record_bytes_max: u32,
) -> Result<Decoded, Bad> {
    let rest = &bytes[off.min(bytes.len())..];
    if rest.len() < PREFIX_LEN {
        return Err(Bad::Truncated(format!(
            "{} bytes left, a record prefix needs {PREFIX_LEN}",
            rest.len()
        )));
    }
    let len = LittleEndian::read_u32(&rest[OFF_LEN..]);
    if len < LEN_MIN || len > record_bytes_max {
        return Err(Bad::Damaged(format!(
            "record length {len} outside [{LEN_MIN}, {record_bytes_max}]"
        )));
    }
    let body_len = len as usize;
    if rest.len() - PREFIX_LEN < body_len {
        return Err(Bad::Truncated(format!(
            "record length {len} runs past the end of the file ({} bytes left)",
            rest.len() - PREFIX_LEN
        )));
    }
    let body = &rest[PREFIX_LEN..PREFIX_LEN + body_len];
    let crc = LittleEndian::read_u32(&rest[OFF_CRC..]);
    let actual = crc32c::crc32c_append(seed, body);
    if crc != actual {
        return Err(Bad::Damaged(format!(
            "checksum mismatch: stored {crc:#010x}, computed {actual:#010x}"
        )));
    }
    let group = LittleEndian::read_u32(&body[0..]);
    let tag = body[4];
    let record = decode_payload(tag, &body[LEN_MIN as usize..]).map_err(Bad::Malformed)?;
    Ok(Decoded {
        group,
        record,
        next: off + PREFIX_LEN + body_len,
    })
}

/// Whether a well-formed record starts anywhere in `bytes[from..]`; its offset.
///
/// Used to tell a torn tail (nothing valid after the damage) from damage in
/// the middle of the log. Checking the tag and length before the checksum
/// keeps the scan cheap on garbage.
pub(crate) fn find_valid_after(
    bytes: &[u8],
    from: usize,
    seed: u32,
    record_bytes_max: u32,
) -> Option<usize> {
    let last_start = bytes.len().checked_sub(PREFIX_LEN + LEN_MIN as usize)?;
    (from..=last_start).find(|&off| {
        let tag = bytes[off + OFF_TAG];
        let len = LittleEndian::read_u32(&bytes[off + OFF_LEN..]);
        let plausible = match tag {
            TAG_PROMISED => len as usize == LEN_MIN as usize + PROMISED_PAYLOAD_LEN,
            TAG_ACCEPTED => len as usize >= LEN_MIN as usize + ACCEPTED_FIXED_LEN,
            TAG_PB_VIEW => len as usize == LEN_MIN as usize + PB_VIEW_PAYLOAD_LEN,
            TAG_PB_ENTRY => len as usize >= LEN_MIN as usize + PB_ENTRY_FIXED_LEN,
            TAG_PB_INSTALL => len as usize >= LEN_MIN as usize + PB_INSTALL_FIXED_LEN,
            TAG_PB_INSTALLED => len as usize == LEN_MIN as usize + PB_INSTALLED_PAYLOAD_LEN,
            _ => false,
        };
        plausible && decode_at(bytes, off, seed, record_bytes_max).is_ok()
    })
}

fn decode_payload(tag: u8, p: &[u8]) -> Result<WalRecord, String> {
    match tag {
        TAG_PROMISED | TAG_ACCEPTED => decode_paxos(tag, p).map(WalRecord::Paxos),
        TAG_PB_INSTALLED => {
            if p.len() != PB_INSTALLED_PAYLOAD_LEN {
                return Err(format!(
                    "PbInstalled payload is {} bytes, expected {PB_INSTALLED_PAYLOAD_LEN}",
                    p.len()
                ));
            }
            Ok(WalRecord::PbInstalled {
                index: LittleEndian::read_u64(&p[..8]),
                last_tag: LittleEndian::read_u64(&p[8..]),
            })
        }
        _ => decode_pb(tag, p).map(WalRecord::Pb),
    }
}

fn decode_pb(tag: u8, p: &[u8]) -> Result<PbRecord, String> {
    let mut r = ByteReader::new(p);
    let rec = match tag {
        TAG_PB_VIEW => {
            let v = r.u64().map_err(|e| format!("PbView payload {e}"))?;
            PbRecord::View(v)
        }
        TAG_PB_ENTRY => {
            let fixed = |e: ReadError| format!("PbEntry payload {e}");
            let pos = r.u64().map_err(fixed)?;
            let tag = r.u64().map_err(fixed)?;
            let batch = read_batch(&mut r, "PbEntry")?;
            PbRecord::Entry { pos, tag, batch }
        }
        TAG_PB_INSTALL => {
            let fixed = |e: ReadError| format!("PbInstall payload {e}");
            let index = r.u64().map_err(fixed)?;
            let last_tag = r.u64().map_err(fixed)?;
            let data = Bytes::copy_from_slice(r.bytes().map_err(fixed)?);
            PbRecord::Snapshot {
                index,
                last_tag,
                data,
                install: true,
            }
        }
        _ => return Err(format!("unknown record tag {tag}")),
    };
    r.finish()
        .map_err(|e| format!("primary/backup record (tag {tag}): {e} after its last field"))?;
    Ok(rec)
}

fn decode_paxos(tag: u8, p: &[u8]) -> Result<Record, String> {
    let mut r = ByteReader::new(p);
    match tag {
        TAG_PROMISED => {
            if p.len() != PROMISED_PAYLOAD_LEN {
                return Err(format!(
                    "Promised payload is {} bytes, expected {PROMISED_PAYLOAD_LEN}",
                    p.len()
                ));
            }
            let ballot = read_ballot(&mut r).map_err(|e| format!("Promised payload {e}"))?;
            Ok(Record::Promised(ballot))
        }
        TAG_ACCEPTED => {
            let fixed = |e: ReadError| format!("Accepted payload {e}");
            let slot = r.u64().map_err(fixed)?;
            let ballot = read_ballot(&mut r).map_err(fixed)?;
            let batch = read_batch(&mut r, "Accepted")?;
            r.finish()
                .map_err(|e| format!("Accepted payload: {e} after the last command"))?;
            Ok(Record::Accepted {
                slot,
                ballot,
                batch,
            })
        }
        _ => Err(format!("unknown record tag {tag}")),
    }
}

/// A batch as [`push_batch`] wrote it, in record `what`.
fn read_batch(r: &mut ByteReader, what: &str) -> Result<Batch, String> {
    // Every command takes at least its 4-byte length, so a count the bytes
    // cannot hold is refused before reserving anything.
    let count = r.count(4).map_err(|e| format!("{what} payload {e}"))?;
    let mut commands = Vec::with_capacity(count);
    for i in 0..count {
        let command = r.bytes().map_err(|e| format!("{what} command {i} {e}"))?;
        // A copy, not a slice of the segment buffer: a slice would pin the
        // whole segment in memory for as long as the entry lives.
        commands.push(Bytes::copy_from_slice(command));
    }
    Ok(Batch { commands })
}

fn read_ballot(r: &mut ByteReader) -> Result<Ballot, ReadError> {
    Ok(Ballot {
        round: r.u64()?,
        node: r.u32()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(slot: u64, cmds: &[&[u8]]) -> Record {
        Record::Accepted {
            slot,
            ballot: Ballot::new(3, 1),
            batch: Batch {
                commands: cmds.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
            },
        }
    }

    #[test]
    fn record_round_trips_and_golden_bytes() {
        let mut buf = Vec::new();
        let n = encode(
            &mut buf,
            LEGACY_SEED,
            7,
            &Record::Promised(Ballot::new(2, 1)),
            u32::MAX,
        );
        assert_eq!(n, PREFIX_LEN + 5 + 12);
        // len=17, crc, group=7, tag=1, round=2, node=1.
        assert_eq!(&buf[0..4], &[17, 0, 0, 0]);
        assert_eq!(&buf[8..13], &[7, 0, 0, 0, 1]);
        assert_eq!(&buf[13..], &[2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(LittleEndian::read_u32(&buf[4..]), crc32c::crc32c(&buf[8..]));

        let rec = accepted(9, &[b"ab", b"", b"xyz"]);
        let start = buf.len();
        encode(&mut buf, LEGACY_SEED, 3, &rec, u32::MAX);
        let d = decode_at(&buf, start, LEGACY_SEED, u32::MAX).unwrap();
        assert_eq!(
            (d.group, &d.record, d.next),
            (3, &WalRecord::Paxos(rec), buf.len())
        );
    }

    #[test]
    fn decode_rejects_without_panicking() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            LEGACY_SEED,
            1,
            &accepted(1, &[b"hello"]),
            u32::MAX,
        );
        for cut in 0..buf.len() {
            assert!(matches!(
                decode_at(&buf[..cut], 0, LEGACY_SEED, u32::MAX),
                Err(Bad::Truncated(_))
            ));
        }
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(
                decode_at(&b, 0, LEGACY_SEED, u32::MAX).is_err(),
                "bit {i} flip undetected"
            );
        }
        // A valid checksum over a payload that does not parse is Malformed.
        let mut b = buf.clone();
        b[13 + 20] = 0xff; // command count
        let crc = crc32c::crc32c(&b[8..]);
        LittleEndian::write_u32(&mut b[4..], crc);
        assert!(matches!(
            decode_at(&b, 0, LEGACY_SEED, u32::MAX),
            Err(Bad::Malformed(_))
        ));
    }

    /// An install is logged as a fixed-size marker whatever the state's
    /// size (the state goes to the snapshot file); an inline install
    /// written by an older build still reads back.
    #[test]
    fn installs_are_small_markers_and_old_inline_ones_still_read() {
        let mut buf = Vec::new();
        let install = PbRecord::Snapshot {
            index: 9,
            last_tag: 4,
            data: Bytes::from(vec![7u8; 1 << 16]),
            install: true,
        };
        let n = encode_pb(&mut buf, LEGACY_SEED, 2, &install, 64);
        assert_eq!(n, PREFIX_LEN + LEN_MIN as usize + PB_INSTALLED_PAYLOAD_LEN);
        let d = decode_at(&buf, 0, LEGACY_SEED, 64).unwrap();
        assert_eq!(
            d.record,
            WalRecord::PbInstalled {
                index: 9,
                last_tag: 4
            }
        );
        assert_eq!(find_valid_after(&buf, 0, LEGACY_SEED, 64), Some(0));

        // The old layout: index, last_tag, len, data.
        let mut old = Vec::new();
        let start = begin(&mut old, 2);
        old.push(TAG_PB_INSTALL);
        push_u64(&mut old, 9);
        push_u64(&mut old, 4);
        push_u32(&mut old, 3);
        old.extend_from_slice(b"abc");
        finish(&mut old, start, LEGACY_SEED, u32::MAX);
        let d = decode_at(&old, 0, LEGACY_SEED, u32::MAX).unwrap();
        assert_eq!(
            d.record,
            WalRecord::Pb(PbRecord::Snapshot {
                index: 9,
                last_tag: 4,
                data: Bytes::from_static(b"abc"),
                install: true,
            })
        );
    }

    #[test]
    fn find_valid_after_skips_garbage() {
        let mut buf = vec![0xaa; 11];
        encode(
            &mut buf,
            LEGACY_SEED,
            1,
            &Record::Promised(Ballot::new(1, 0)),
            u32::MAX,
        );
        assert_eq!(find_valid_after(&buf, 0, LEGACY_SEED, u32::MAX), Some(11));
        assert_eq!(find_valid_after(&buf, 12, LEGACY_SEED, u32::MAX), None);
        assert_eq!(find_valid_after(&buf[..3], 0, LEGACY_SEED, u32::MAX), None);
    }

    /// A record checks out only under the seed of the segment it was
    /// written for: what makes a recycled file's stale records invisible.
    #[test]
    fn a_record_is_valid_only_under_its_segments_seed() {
        let (a, b) = (segment_seed(7), segment_seed(8));
        assert_ne!(a, b);
        assert_ne!(a, LEGACY_SEED);
        let mut buf = vec![0xaa; 5];
        encode(&mut buf, a, 1, &accepted(4, &[b"old life"]), u32::MAX);
        assert!(decode_at(&buf, 5, a, u32::MAX).is_ok());
        assert!(matches!(
            decode_at(&buf, 5, b, u32::MAX),
            Err(Bad::Damaged(_))
        ));
        assert!(decode_at(&buf, 5, LEGACY_SEED, u32::MAX).is_err());
        assert_eq!(find_valid_after(&buf, 0, a, u32::MAX), Some(5));
        assert_eq!(find_valid_after(&buf, 0, b, u32::MAX), None);
        // The format, pinned: the seed is crc32c of the number's 8 bytes,
        // little-endian, so a record's crc is crc32c(seq LE ++ checksummed
        // part).
        assert_eq!(segment_seed(1), 0xc514_cfad);
        let mut whole = 7u64.to_le_bytes().to_vec();
        whole.extend_from_slice(&buf[5 + PREFIX_LEN..]);
        assert_eq!(
            LittleEndian::read_u32(&buf[5 + 4..]),
            crc32c::crc32c(&whole)
        );
        // The first few thousand segments' seeds are all distinct.
        let seeds: std::collections::BTreeSet<u32> = (0..5_000).map(segment_seed).collect();
        assert_eq!(seeds.len(), 5_000);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..proptest::prelude::ProptestConfig::default() })]
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), off in 0usize..210) {
            let _ = decode_at(&bytes, off, LEGACY_SEED, 1 << 20);
            let _ = find_valid_after(&bytes, off, LEGACY_SEED, 1 << 20);
        }
    }
}
