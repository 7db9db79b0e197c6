//! Behaviour of the WAL against real files in temporary directories.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

use bytes::Bytes;
use proptest::prelude::*;
use synod_wire::{Ballot, Batch, GroupId};

use super::wal::segment_name;
use super::*;
use crate::paxos::{Durable, Record};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Captures this crate's storage log lines per test thread, so a test can
/// check that a torn tail was reported.
struct Capture;

thread_local! {
    static LOGS: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("synod::storage")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LOGS.with(|l| l.borrow_mut().push((r.level(), r.args().to_string())));
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in the lib tests");
        log::set_max_level(log::LevelFilter::Info);
    });
    LOGS.with(|l| l.borrow_mut().clear());
}

fn warnings() -> Vec<String> {
    LOGS.with(|l| {
        l.borrow()
            .iter()
            .filter(|(lvl, _)| *lvl == log::Level::Warn)
            .map(|(_, m)| m.clone())
            .collect()
    })
}

fn opts(fsync: FsyncPolicy, segment_bytes: u64) -> WalOptions {
    WalOptions {
        fsync,
        segment_bytes,
        record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
        background_delete: false,
        // Dead segments deleted at once, as most tests here look for;
        // recycling has its own tests.
        recycle_segments: 0,
    }
}

fn never() -> WalOptions {
    opts(FsyncPolicy::Never, SEGMENT_BYTES_DEFAULT)
}

fn open(dir: &Path, o: WalOptions) -> (Wal, Recovered) {
    Wal::open(dir, o).expect("open")
}

fn accepted(slot: u64, round: u64, cmd: &[u8]) -> Record {
    Record::Accepted {
        slot,
        ballot: Ballot::new(round, 1),
        batch: Batch {
            commands: vec![Bytes::copy_from_slice(cmd)],
        },
    }
}

fn snap(index: u64, data: &[u8]) -> Record {
    Record::Snapshot {
        index,
        data: Bytes::copy_from_slice(data),
    }
}

/// What folding records in memory with `Durable::apply` gives: the oracle.
fn fold(records: &[(GroupId, Record)]) -> BTreeMap<GroupId, Durable> {
    let mut m: BTreeMap<GroupId, Durable> = BTreeMap::new();
    for (g, r) in records {
        m.entry(*g).or_default().apply(r);
    }
    m
}

/// `Durable` has no `PartialEq`; compare it field by field.
fn assert_same(got: &BTreeMap<GroupId, Durable>, want: &BTreeMap<GroupId, Durable>) {
    let gk: Vec<_> = got.keys().collect();
    let wk: Vec<_> = want.keys().collect();
    assert_eq!(gk, wk, "groups differ");
    for (g, w) in want {
        let d = &got[g];
        assert_eq!(d.promised, w.promised, "group {g} promised");
        assert_eq!(d.snapshot, w.snapshot, "group {g} snapshot");
        assert_eq!(d.entries, w.entries, "group {g} entries");
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg" || e == "log"))
        .collect();
    v.sort();
    v
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn append_all(wal: &mut Wal, recs: &[(GroupId, Record)]) {
    for (g, r) in recs {
        wal.append(*g, std::slice::from_ref(r));
    }
}

/// One loop turn: append `turn`, sync it, and add it to `synced` (what
/// recovery must give back).
fn sync_turn(wal: &mut Wal, synced: &mut Vec<(GroupId, Record)>, turn: Vec<(GroupId, Record)>) {
    append_all(wal, &turn);
    wal.sync().unwrap();
    synced.extend(turn);
}

// ---------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------

#[test]
fn round_trip_several_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let recs = vec![
        (1, Record::Promised(Ballot::new(1, 0))),
        (2, Record::Promised(Ballot::new(4, 2))),
        (1, accepted(0, 1, b"a")),
        (1, accepted(1, 1, b"bb")),
        (2, accepted(7, 4, b"")),
        (1, accepted(0, 2, b"replaced")),
        (3, snap(5, b"state of g3")),
        (3, accepted(4, 1, b"below the snapshot")),
        (3, accepted(5, 1, b"kept")),
    ];
    {
        let (mut wal, rec) = open(tmp.path(), opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT));
        assert!(rec.groups.is_empty());
        append_all(&mut wal, &recs[..4]);
        wal.sync().unwrap();
        append_all(&mut wal, &recs[4..]);
        wal.sync().unwrap();
    }
    let (_, rec) = open(tmp.path(), never());
    assert_same(&rec.groups, &fold(&recs));
    assert_eq!(rec.truncated_tail_bytes, 0);
}

#[test]
fn unsynced_appends_are_not_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let synced = vec![(1, accepted(0, 1, b"x"))];
    {
        let (mut wal, _) = open(tmp.path(), never());
        append_all(&mut wal, &synced);
        wal.sync().unwrap();
        wal.append(1, &[accepted(1, 1, b"lost"), snap(1, b"lost too")]);
    }
    let (_, rec) = open(tmp.path(), never());
    assert_same(&rec.groups, &fold(&synced));
}

#[derive(Clone, Debug)]
enum GenRec {
    /// Raise the promise by this many rounds (0: same ballot again).
    Promise(u64, u32),
    Accepted(u64, u64, Vec<Vec<u8>>),
    Snapshot(u64, Vec<u8>),
}

#[derive(Clone, Debug)]
enum Op {
    Append(GroupId, Vec<GenRec>),
    Sync,
    Reopen,
}

fn gen_rec() -> impl Strategy<Value = GenRec> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..24);
    prop_oneof![
        (0u64..3, 0u32..3).prop_map(|(r, n)| GenRec::Promise(r, n)),
        (0u64..40, 0u64..6, proptest::collection::vec(bytes(), 0..4))
            .prop_map(|(s, r, c)| GenRec::Accepted(s, r, c)),
        (0u64..40, bytes()).prop_map(|(i, d)| GenRec::Snapshot(i, d)),
    ]
}

fn gen_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..4, proptest::collection::vec(gen_rec(), 0..6)).prop_map(|(g, r)| Op::Append(g, r)),
        3 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    /// Whatever was synced comes back exactly as folding the same records
    /// with `Durable::apply` in memory; whatever was not, does not. Small
    /// segments make rotation and segment deletion part of the run.
    #[test]
    fn recovery_equals_in_memory_fold(
        ops in proptest::collection::vec(gen_op(), 1..60),
        segment_bytes in prop_oneof![Just(96u64), Just(512), Just(1 << 20)],
        recycle in 0usize..3,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let o = WalOptions { recycle_segments: recycle, ..opts(FsyncPolicy::Never, segment_bytes) };
        let (mut wal, _) = open(tmp.path(), o.clone());
        let mut promised: BTreeMap<GroupId, Ballot> = BTreeMap::new();
        let mut synced: Vec<(GroupId, Record)> = Vec::new();
        let mut pending: Vec<(GroupId, Record)> = Vec::new();
        for op in ops {
            match op {
                Op::Append(g, gens) => {
                    let recs: Vec<Record> = gens.into_iter().map(|r| match r {
                        GenRec::Promise(bump, node) => {
                            let p = promised.entry(g).or_default();
                            *p = if bump == 0 { *p } else { Ballot::new(p.round + bump, node) };
                            Record::Promised(*p)
                        }
                        GenRec::Accepted(slot, round, cmds) => Record::Accepted {
                            slot,
                            ballot: Ballot::new(round, 0),
                            batch: Batch { commands: cmds.into_iter().map(Bytes::from).collect() },
                        },
                        GenRec::Snapshot(index, data) => Record::Snapshot { index, data: Bytes::from(data) },
                    }).collect();
                    wal.append(g, &recs);
                    pending.extend(recs.into_iter().map(|r| (g, r)));
                }
                Op::Sync => {
                    wal.sync().unwrap();
                    synced.append(&mut pending);
                }
                Op::Reopen => {
                    drop(wal);
                    pending.clear();
                    // The promise counter must not run ahead of what is durable.
                    promised = fold(&synced).into_iter().map(|(g, d)| (g, d.promised)).collect();
                    let (w, rec) = open(tmp.path(), o.clone());
                    if recycle == 0 {
                        // Without a crash nothing is torn; in a recycled
                        // file the earlier life's records are cut off.
                        prop_assert_eq!(rec.truncated_tail_bytes, 0);
                    }
                    assert_same(&rec.groups, &fold(&synced));
                    wal = w;
                }
            }
        }
        wal.sync().unwrap();
        synced.append(&mut pending);
        drop(wal);
        let (_, rec) = open(tmp.path(), o);
        assert_same(&rec.groups, &fold(&synced));
    }
}

// ---------------------------------------------------------------------------
// Group commit and fsync policy
// ---------------------------------------------------------------------------

#[test]
fn group_commit_is_one_write_and_one_fdatasync() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT));
    let before = wal.stats();
    for i in 0..200u64 {
        let g = (i % 10) as GroupId;
        wal.append(
            g,
            &[Record::Promised(Ballot::new(i, 0)), accepted(i, i, b"cmd")],
        );
    }
    let pending = wal.pending_bytes() as u64;
    assert_eq!(wal.stats(), before, "append makes no system calls");
    wal.sync().unwrap();
    let s = wal.stats();
    assert_eq!(s.writes - before.writes, 1);
    assert_eq!(s.syncs - before.syncs, 1);
    assert_eq!(s.bytes - before.bytes, pending);
    assert_eq!(wal.pending_bytes(), 0);
}

#[test]
fn sync_with_nothing_appended_makes_no_system_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT));
    let before = wal.stats();
    wal.sync().unwrap();
    wal.append(1, &[]);
    wal.sync().unwrap();
    assert_eq!(wal.stats(), before);
}

#[test]
fn fsync_never_issues_no_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Never, 64));
    for i in 0..20 {
        wal.append(1, &[accepted(i, 1, b"some command bytes"), snap(i, b"s")]);
        wal.sync().unwrap();
    }
    let s = wal.stats();
    assert_eq!(s.syncs, 0);
    assert!(s.writes >= 20 && s.segments_created > 0 && s.snapshots_written == 20);
    assert!(FsyncPolicy::Never.to_string().contains("unsafe"));
}

// ---------------------------------------------------------------------------
// Torn tails and bit flips
// ---------------------------------------------------------------------------

/// A segment written by [`written_log`].
struct Written {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Offset of each record in the segment.
    starts: Vec<usize>,
    recs: Vec<(GroupId, Record)>,
}

/// One segment with `n` records of group 1, each synced alone.
fn written_log(dir: &Path, n: u64) -> Written {
    let (mut wal, _) = open(dir, never());
    let mut starts = Vec::new();
    let mut recs = Vec::new();
    for i in 0..n {
        starts.push(wal.stats().bytes as usize);
        let r = if i == 0 {
            Record::Promised(Ballot::new(3, 1))
        } else {
            accepted(i, 3, format!("command number {i}").as_bytes())
        };
        wal.append(1, std::slice::from_ref(&r));
        wal.sync().unwrap();
        recs.push((1, r));
    }
    let path = wal.active_segment_path();
    drop(wal);
    let bytes = fs::read(&path).unwrap();
    Written {
        path,
        bytes,
        starts,
        recs,
    }
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record_is_truncated() {
    capture_logs();
    let src = tempfile::tempdir().unwrap();
    let Written {
        path,
        bytes,
        starts,
        recs,
    } = written_log(src.path(), 4);
    let last = *starts.last().unwrap();
    let want = fold(&recs[..recs.len() - 1]);
    for cut in last + 1..bytes.len() {
        let tmp = tempfile::tempdir().unwrap();
        let seg = tmp.path().join(path.file_name().unwrap());
        fs::write(&seg, &bytes[..cut]).unwrap();
        LOGS.with(|l| l.borrow_mut().clear());
        let (wal, rec) = open(tmp.path(), never());
        drop(wal);
        assert_same(&rec.groups, &want);
        assert_eq!(
            rec.truncated_tail_bytes,
            (cut - last) as u64,
            "cut at {cut}"
        );
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            last as u64,
            "file truncated"
        );
        assert!(
            warnings().iter().any(|w| w.contains("torn tail")),
            "torn tail at {cut} not warned: {:?}",
            warnings()
        );
        // Recovery is idempotent: the second open finds a clean log.
        let (_, again) = open(tmp.path(), never());
        assert_same(&again.groups, &want);
        assert_eq!(again.truncated_tail_bytes, 0);
    }
}

#[test]
fn appending_after_a_truncated_tail_continues_the_log() {
    let src = tempfile::tempdir().unwrap();
    let Written {
        path, bytes, recs, ..
    } = written_log(src.path(), 3);
    fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let (mut wal, _) = open(src.path(), never());
    let more = (1, accepted(9, 3, b"after the tear"));
    append_all(&mut wal, std::slice::from_ref(&more));
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = open(src.path(), never());
    let mut want = recs[..2].to_vec();
    want.push(more);
    assert_same(&rec.groups, &fold(&want));
    assert_eq!(rec.truncated_tail_bytes, 0);
}

fn expect_corrupt(dir: &Path) -> (PathBuf, u64, String) {
    match Wal::open(dir, never()) {
        Err(StorageError::Corrupt {
            segment,
            offset,
            reason,
        }) => (segment, offset, reason),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok((_, rec)) => panic!("expected Corrupt, recovered {:?}", rec.groups),
    }
}

#[test]
fn bit_flip_in_a_record_followed_by_valid_records_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let Written {
        path,
        mut bytes,
        starts,
        ..
    } = written_log(tmp.path(), 5);
    bytes[starts[2] + 20] ^= 0x10; // inside record 2's payload
    fs::write(&path, &bytes).unwrap();
    let (seg, off, reason) = expect_corrupt(tmp.path());
    assert_eq!((seg, off), (path.clone(), starts[2] as u64));
    assert!(reason.contains("checksum"), "{reason}");
    // Corrupt leaves the files alone, so an operator can inspect them.
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn bit_flip_in_a_length_mid_log_is_corrupt_not_a_torn_tail() {
    // A flipped high bit makes the length run past the end of the file,
    // exactly like a torn write; the valid records after it tell them apart.
    let tmp = tempfile::tempdir().unwrap();
    let Written {
        path,
        mut bytes,
        starts,
        ..
    } = written_log(tmp.path(), 5);
    bytes[starts[1] + 2] ^= 0x01; // length += 65536: past EOF, below the limit
    fs::write(&path, &bytes).unwrap();
    let (seg, off, reason) = expect_corrupt(tmp.path());
    assert_eq!((seg, off), (path, starts[1] as u64));
    assert!(reason.contains("valid record follows"), "{reason}");
}

#[test]
fn bit_flip_in_the_last_record_header_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let Written {
        path,
        mut bytes,
        starts,
        recs,
    } = written_log(tmp.path(), 4);
    let last = starts[3];
    bytes[last + 5] ^= 0x04; // its checksum
    fs::write(&path, &bytes).unwrap();
    let (_, rec) = open(tmp.path(), never());
    assert_same(&rec.groups, &fold(&recs[..3]));
    assert_eq!(rec.truncated_tail_bytes, (bytes.len() - last) as u64);
}

#[test]
fn every_single_bit_flip_is_corrupt_before_the_tail_and_torn_in_it() {
    let src = tempfile::tempdir().unwrap();
    let Written {
        path,
        bytes,
        starts,
        recs,
    } = written_log(src.path(), 4);
    let last = starts[3];
    let want_torn = fold(&recs[..3]);
    for bit in 0..bytes.len() * 8 {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        fs::write(tmp.path().join(path.file_name().unwrap()), &b).unwrap();
        match Wal::open(tmp.path(), never()) {
            Ok((_, rec)) => {
                assert!(
                    bit / 8 >= last,
                    "flip at byte {} recovered silently",
                    bit / 8
                );
                assert_same(&rec.groups, &want_torn);
            }
            Err(StorageError::Corrupt { offset, .. }) => {
                assert!(
                    bit / 8 < last,
                    "flip in the last record at {} is Corrupt",
                    bit / 8
                );
                let rec_start = *starts.iter().rev().find(|s| **s <= bit / 8).unwrap();
                assert_eq!(offset, rec_start as u64);
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

#[test]
fn damage_at_the_end_of_a_closed_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Never, 64));
        for i in 0..6 {
            wal.append(1, &[accepted(i, 1, b"enough bytes to rotate quickly")]);
            wal.sync().unwrap();
        }
        assert!(wal.segment_count() > 2);
    }
    let segs = segments(tmp.path());
    let first = &segs[0];
    let mut b = fs::read(first).unwrap();
    let n = b.len();
    b.truncate(n - 1); // a "torn tail", but not in the last segment
    fs::write(first, &b).unwrap();
    let (seg, _, reason) = expect_corrupt(tmp.path());
    assert_eq!(&seg, first);
    assert!(reason.contains("closed segment"), "{reason}");
}

#[test]
fn a_promise_going_backwards_on_disk_is_corrupt_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = open(tmp.path(), never());
        wal.append(1, &[Record::Promised(Ballot::new(5, 0))]);
        wal.sync().unwrap();
    }
    // A second segment with a lower promise, placed after.
    let mut lower = Vec::new();
    let rec = Record::Promised(Ballot::new(2, 0));
    record::encode(&mut lower, record::segment_seed(2), 1, &rec, u32::MAX);
    fs::write(tmp.path().join(segment_name(2)), lower).unwrap();
    let (_, off, reason) = expect_corrupt(tmp.path());
    assert_eq!(off, 0);
    assert!(reason.contains("backwards"), "{reason}");
}

#[test]
fn garbage_files_never_panic_recovery() {
    // Deterministic pseudo-random garbage (no global RNG in tests either).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..200 {
        let tmp = tempfile::tempdir().unwrap();
        let len = (round * 7) % 300;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(tmp.path().join("wal-0000000000000001.log"), &junk).unwrap();
        fs::write(tmp.path().join(segment_name(2)), &junk).unwrap();
        fs::write(tmp.path().join(segment_name(3)), &junk).unwrap();
        fs::write(tmp.path().join("snap-g1.bin"), &junk).unwrap();
        let _ = Wal::open(tmp.path(), never());
    }
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

#[test]
fn snapshot_survives_reopen_and_hides_earlier_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let mut recs: Vec<(GroupId, Record)> = (0..10).map(|s| (4, accepted(s, 1, b"v"))).collect();
    recs.push((4, snap(6, b"the state as of slot 6")));
    recs.push((4, accepted(3, 2, b"late, below the snapshot")));
    recs.push((4, accepted(11, 2, b"after")));
    recs.push((4, snap(2, b"older snapshot: ignored")));
    {
        let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT));
        append_all(&mut wal, &recs);
        wal.sync().unwrap();
        assert_eq!(wal.stats().snapshots_written, 1);
    }
    let (_, rec) = open(tmp.path(), never());
    assert_eq!(rec.snapshots_loaded, 1);
    let d = &rec.groups[&4];
    assert_eq!(
        d.snapshot,
        Some((6, Bytes::from_static(b"the state as of slot 6")))
    );
    assert_eq!(
        d.entries.keys().copied().collect::<Vec<_>>(),
        vec![6, 7, 8, 9, 11]
    );
    assert_same(&rec.groups, &fold(&recs));
}

/// A snapshot of several write-back steps (written back a step at a time,
/// with fsync) reads back whole, as does one of an exact number of steps.
#[test]
fn a_snapshot_of_many_write_back_steps_reads_back_whole() {
    let tmp = tempfile::tempdir().unwrap();
    for (group, len) in [(1, (9 << 20) + 12_345), (2, 8 << 20)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let syncs = snapshot::write(tmp.path(), group, 77, &data, true).unwrap();
        assert_eq!(syncs, 1);
        let (index, read) = snapshot::read(&tmp.path().join(snapshot::file_name(group)), group)
            .expect("reads back");
        assert_eq!(index, 77);
        assert!(read[..] == data[..], "group {group}: bytes differ");
    }
}

#[test]
fn leftover_snapshot_tmp_is_removed() {
    capture_logs();
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = open(tmp.path(), never());
        wal.append(2, &[snap(3, b"good")]);
        wal.sync().unwrap();
    }
    let leftover = tmp.path().join("snap-g2.bin.tmp");
    fs::write(&leftover, b"half a snapsh").unwrap();
    let (_, rec) = open(tmp.path(), never());
    assert!(!leftover.exists());
    assert_eq!(rec.tmp_files_removed, 1);
    assert_eq!(
        rec.groups[&2].snapshot,
        Some((3, Bytes::from_static(b"good")))
    );
    assert!(warnings().iter().any(|w| w.contains("leftover")));
}

/// A way to damage a file's bytes.
type Damage = fn(&mut Vec<u8>);

#[test]
fn corrupt_snapshot_file_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = open(tmp.path(), never());
        wal.append(2, &[snap(3, b"snapshot data here")]);
        wal.sync().unwrap();
    }
    let path = tmp.path().join("snap-g2.bin");
    let good = fs::read(&path).unwrap();
    let damage: [(&str, Damage); 5] = [
        ("data flip", |b| b[SNAPSHOT_HEADER_LEN + 2] ^= 1),
        ("header flip", |b| b[17] ^= 1),
        ("truncated data", |b| b.truncate(b.len() - 1)),
        ("truncated header", |b| b.truncate(10)),
        ("empty", |b| b.clear()),
    ];
    for (what, f) in damage {
        let mut b = good.clone();
        f(&mut b);
        fs::write(&path, &b).unwrap();
        let (seg, _, _) = expect_corrupt(tmp.path());
        assert_eq!(seg, path, "{what}");
    }
    // A whole, valid file under another group's name is damage too.
    fs::write(&path, &good).unwrap();
    fs::rename(&path, tmp.path().join("snap-g5.bin")).unwrap();
    let (_, _, reason) = expect_corrupt(tmp.path());
    assert!(reason.contains("group"), "{reason}");
}

// ---------------------------------------------------------------------------
// Rotation and segment deletion
// ---------------------------------------------------------------------------

#[test]
fn rotation_and_gc_keep_disk_bounded_and_recovery_right() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(FsyncPolicy::Never, 2048);
    let (mut wal, _) = open(tmp.path(), o.clone());
    let mut recs: Vec<(GroupId, Record)> = Vec::new();
    let mut max_dir = 0;
    for round in 0..1000u64 {
        let mut turn: Vec<(GroupId, Record)> = Vec::new();
        for g in 0..3u32 {
            if round % 97 == u64::from(g) {
                turn.push((g, Record::Promised(Ballot::new(round, g))));
            }
            turn.push((g, accepted(round, 1, &[g as u8; 40])));
            // Snapshots every 50 rounds, lagging the log by 10 slots.
            if round % 50 == 49 {
                turn.push((g, snap(round - 10, format!("g{g}@{round}").as_bytes())));
            }
        }
        sync_turn(&mut wal, &mut recs, turn);
        max_dir = max_dir.max(dir_bytes(tmp.path()));
    }
    let s = wal.stats();
    assert!(s.segments_created > 50, "{s:?}");
    assert!(s.segments_deleted > 40, "{s:?}");
    // 3 groups × ~70 bytes × ≤ 60 rounds between snapshots, plus one
    // segment of slack and the snapshot files: a few times 2 KiB, never
    // the ~210 KB the log would be without deletion.
    assert!(max_dir < 24 * 1024, "directory grew to {max_dir} bytes");
    assert!(
        wal.segment_count() <= 10,
        "{} segments live",
        wal.segment_count()
    );
    drop(wal);
    let (_, rec) = open(tmp.path(), o);
    assert_eq!(rec.segments_deleted, 0);
    assert_same(&rec.groups, &fold(&recs));
    assert_eq!(rec.groups[&0].promised, Ballot::new(970, 0));
    assert_eq!(rec.groups[&2].promised, Ballot::new(972, 2));
}

/// Issue 15: dead segments are recycled. A rotation renames a spare to the
/// new segment's name and writes over it; rotation cuts the earlier life's
/// records off the segment it closes, and recovery cuts them off the last
/// one, so what comes back is exactly what was synced, across reopens
/// (each one a crash as far as the files know) and with the disk bounded.
#[test]
fn recycled_segments_never_bring_back_their_earlier_lives() {
    capture_logs();
    let tmp = tempfile::tempdir().unwrap();
    let o = WalOptions {
        recycle_segments: 1,
        ..opts(FsyncPolicy::Always, 2048)
    };
    let (mut wal, _) = open(tmp.path(), o.clone());
    let mut recs: Vec<(GroupId, Record)> = Vec::new();
    let (mut recycled, mut cut, mut reopens) = (0, 0, 0);
    for round in 0..600u64 {
        let mut turn: Vec<(GroupId, Record)> = Vec::new();
        for g in 0..2u32 {
            if round % 89 == u64::from(g) {
                turn.push((g, Record::Promised(Ballot::new(round, g))));
            }
            // Commands that differ from round to round, so an earlier
            // life's records never match the new ones byte for byte, and
            // in length, so lives end at different lengths.
            let cmd = format!("g{g} r{round} {}", "x".repeat((round * 37 % 300) as usize));
            turn.push((g, accepted(round, 1, cmd.as_bytes())));
            if round % 40 == 39 {
                turn.push((g, snap(round - 5, format!("g{g}@{round}").as_bytes())));
            }
        }
        sync_turn(&mut wal, &mut recs, turn);
        if round % 37 == 36 {
            // Reopen, often in the middle of a recycled file's life.
            recycled += wal.stats().segments_recycled;
            drop(wal);
            let (w, rec) = open(tmp.path(), o.clone());
            assert_same(&rec.groups, &fold(&recs));
            cut += rec.truncated_tail_bytes;
            reopens += 1;
            wal = w;
        }
    }
    recycled += wal.stats().segments_recycled;
    assert!(recycled >= 10, "{recycled} segments recycled");
    assert!(
        cut > 0,
        "no reopen found an earlier life behind the records"
    );
    assert_eq!(reopens, 16);
    // One spare at most, beside the live ones.
    let live = segments(tmp.path()).len();
    assert_eq!(live, wal.segment_count());
    assert!(live <= 8, "{live} segments on disk");
    drop(wal);
    let (_, rec) = open(tmp.path(), o);
    assert_same(&rec.groups, &fold(&recs));
}

/// A crash right after a rotation renamed a spare to the new segment's
/// name, before anything was written over it: the file is whole, full of
/// valid records of its earlier life, and none of them comes back.
#[test]
fn a_spare_renamed_by_a_crashed_rotation_is_read_as_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let o = WalOptions {
        recycle_segments: 1,
        ..opts(FsyncPolicy::Never, SEGMENT_BYTES_DEFAULT)
    };
    let mut recs = Vec::new();
    {
        let (mut wal, _) = open(tmp.path(), o.clone());
        for s in 0..10 {
            sync_turn(
                &mut wal,
                &mut recs,
                vec![(3, accepted(s, 1, format!("live {s}").as_bytes()))],
            );
        }
    }
    // Segment 2: an earlier life's file (records of segment 1's seed, for
    // slots the live log never had), as the rename leaves it.
    let mut earlier = Vec::new();
    for s in 100..120 {
        let r = accepted(s, 7, b"earlier life");
        record::encode(&mut earlier, record::segment_seed(1), 3, &r, u32::MAX);
    }
    fs::write(tmp.path().join(segment_name(2)), &earlier).unwrap();
    let (mut wal, rec) = open(tmp.path(), o.clone());
    assert_same(&rec.groups, &fold(&recs));
    assert_eq!(rec.truncated_tail_bytes, earlier.len() as u64);
    // The log goes on in segment 2.
    sync_turn(&mut wal, &mut recs, vec![(3, accepted(10, 1, b"after"))]);
    drop(wal);
    let (_, rec) = open(tmp.path(), o);
    assert_same(&rec.groups, &fold(&recs));
    assert_eq!(rec.truncated_tail_bytes, 0);
}

/// A recycled file's new name is durable before anything is written
/// under its new seed; a new file's name after its head (nothing in it is
/// acknowledged before the directory sync either way). The other order for
/// a recycled file would let a crash leave new-seed records at the start
/// of a file still named as the spare: damage in a closed segment, which
/// the second half shows recovery refusing.
#[test]
fn a_recycled_segments_name_is_durable_before_its_head_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let o = WalOptions {
        recycle_segments: 1,
        ..opts(FsyncPolicy::Always, 256)
    };
    let (mut wal, _) = open(tmp.path(), o);
    let mut recs = Vec::new();
    for s in 0..40 {
        sync_turn(
            &mut wal,
            &mut recs,
            vec![(5, accepted(s, 1, &[s as u8; 40]))],
        );
        if s % 10 == 9 {
            sync_turn(&mut wal, &mut recs, vec![(5, snap(s, b"state"))]);
        }
    }
    assert!(wal.stats().segments_recycled > 0);
    let steps = wal.rotation_steps.join(", ");
    assert!(steps.contains("rename, sync dir, sync head"), "{steps}");
    assert!(!steps.contains("rename, sync head"), "{steps}");
    assert!(steps.contains("sync head, sync dir"), "a new file: {steps}");
    drop(wal);

    // What the other order could leave: segment 1 (the spare, dead) under
    // its own name with a head under segment 3's seed at its start.
    let bad = tempfile::tempdir().unwrap();
    let mut spare = Vec::new();
    let head = Record::Promised(Ballot::new(1, 1));
    record::encode(&mut spare, record::segment_seed(3), 5, &head, u32::MAX);
    record::encode(
        &mut spare,
        record::segment_seed(1),
        5,
        &accepted(0, 1, b"x"),
        u32::MAX,
    );
    fs::write(bad.path().join(segment_name(1)), &spare).unwrap();
    let mut live = Vec::new();
    record::encode(&mut live, record::segment_seed(2), 5, &head, u32::MAX);
    fs::write(bad.path().join(segment_name(2)), &live).unwrap();
    let (seg, _, reason) = expect_corrupt(bad.path());
    assert_eq!(seg, bad.path().join(segment_name(1)));
    assert!(reason.contains("closed segment"), "{reason}");
}

/// A directory written in the first format (`wal-<seq>.log`, plain
/// checksums) is read back whole; new records go to a segment of the
/// current format at once, and the old segment is deleted (never
/// recycled) once dead.
#[test]
fn a_log_of_the_first_format_is_read_and_continued_in_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut old = Vec::new();
    let mut recs = vec![(4, Record::Promised(Ballot::new(3, 1)))];
    for s in 0..5 {
        recs.push((4, accepted(s, 3, format!("v1 {s}").as_bytes())));
    }
    for (g, r) in &recs {
        record::encode(&mut old, record::LEGACY_SEED, *g, r, u32::MAX);
    }
    let legacy = tmp.path().join("wal-0000000000000001.log");
    fs::write(&legacy, &old).unwrap();
    let o = WalOptions {
        recycle_segments: 1,
        ..opts(FsyncPolicy::Always, 256)
    };
    let (mut wal, rec) = open(tmp.path(), o.clone());
    assert_same(&rec.groups, &fold(&recs));
    assert!(tmp.path().join(segment_name(2)).exists());
    let before = wal.stats().bytes;
    sync_turn(&mut wal, &mut recs, vec![(4, accepted(5, 3, b"v2"))]);
    assert!(wal.stats().bytes > before);
    assert_eq!(fs::metadata(&legacy).unwrap().len(), old.len() as u64);
    drop(wal);
    let (mut wal, rec) = open(tmp.path(), o.clone());
    assert_same(&rec.groups, &fold(&recs));
    // A snapshot past everything makes the old segment dead: deleted, not
    // kept as the spare.
    for s in 6..30 {
        sync_turn(
            &mut wal,
            &mut recs,
            vec![(4, accepted(s, 3, &[s as u8; 40]))],
        );
    }
    sync_turn(&mut wal, &mut recs, vec![(4, snap(30, b"state"))]);
    assert!(
        !legacy.exists(),
        "a dead segment of the first format was kept"
    );
    assert!(wal.stats().segments_deleted >= 1);
    drop(wal);
    let (_, rec) = open(tmp.path(), o);
    assert_same(&rec.groups, &fold(&recs));
}

/// Issue 15: a snapshot written on the WAL's writer thread changes nothing
/// (no segment deleted, the durable snapshot still the old one) until the
/// WAL has taken the writer's report that it is durable.
#[test]
fn a_snapshot_written_off_the_loop_becomes_the_log_start_only_once_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(FsyncPolicy::Always, 512);
    let (mut wal, _) = open(tmp.path(), o.clone());
    let mut recs: Vec<(GroupId, Record)> = Vec::new();
    for slot in 0..40u64 {
        sync_turn(
            &mut wal,
            &mut recs,
            vec![(7, accepted(slot, 1, &[slot as u8; 60]))],
        );
    }
    let before = wal.segment_count();
    assert!(before > 4, "{before} segments");
    wal.write_snapshot(7, 30, Bytes::from_static(b"state at 30"));
    assert_eq!(wal.snapshot_writes_in_flight(), 1);
    // Whatever the writer thread has done meanwhile, the WAL has not
    // taken its report: every segment is still there, and a crash now
    // (dropping the `Wal`, reopening) finds the whole log.
    assert_eq!(wal.segment_count(), before);
    assert_eq!(segments(tmp.path()).len(), before);
    let done = wal.wait_snapshots_durable().unwrap();
    assert_eq!(done, vec![(7, 30)]);
    assert_eq!(wal.snapshot_writes_in_flight(), 0);
    assert!(wal.segment_count() < before, "no segment was collected");
    assert_eq!(segments(tmp.path()).len(), wal.segment_count());
    let s = wal.stats();
    assert_eq!(s.snapshots_written, 1);
    assert_eq!(s.snapshot_bytes, 11);
    drop(wal);
    recs.push((7, snap(30, b"state at 30")));
    let (_, rec) = open(tmp.path(), o);
    assert_same(&rec.groups, &fold(&recs));
}

/// The durable snapshot is mapped from its file (issue 15: a replica
/// serves laggards from it without a copy on the heap): the same bytes,
/// and only the snapshot the WAL holds durable at that index and length,
/// whether written off the loop or received through `sync`, and after a
/// restart. A mapping outlives the file being replaced by a newer one.
#[test]
fn the_durable_snapshot_maps_from_its_file_only_at_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT);
    let (mut wal, _) = open(tmp.path(), o.clone());
    let ours = Bytes::from(vec![7u8; 10_000]);
    wal.write_snapshot(3, 10, ours.clone());
    // Not durable yet: nothing to map.
    assert_eq!(wal.map_snapshot(3, 10, ours.len()), None);
    assert_eq!(wal.wait_snapshots_durable().unwrap(), vec![(3, 10)]);
    let mapped = wal.map_snapshot(3, 10, ours.len()).expect("mapped");
    assert_eq!(mapped, ours);
    assert_eq!(wal.map_snapshot(3, 9, ours.len()), None);
    assert_eq!(wal.map_snapshot(3, 10, ours.len() + 1), None);
    assert_eq!(wal.map_snapshot(4, 10, ours.len()), None);
    // A newer snapshot received from a peer replaces the file; the old
    // mapping still reads the old bytes.
    wal.append(3, &[snap(20, b"received at 20")]);
    wal.sync().unwrap();
    assert_eq!(wal.map_snapshot(3, 10, ours.len()), None);
    assert_eq!(
        wal.map_snapshot(3, 20, 14),
        Some(Bytes::from_static(b"received at 20"))
    );
    assert_eq!(mapped, ours);
    drop(wal);
    let (wal, _) = open(tmp.path(), o);
    assert_eq!(
        wal.map_snapshot(3, 20, 14),
        Some(Bytes::from_static(b"received at 20"))
    );
}

/// A snapshot received from a peer (synchronous, through `sync`) while the
/// group's own write is in flight waits for that write, so the older one
/// is never renamed over the newer.
#[test]
fn a_received_snapshot_waits_for_the_write_in_flight_and_stays_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT);
    let (mut wal, _) = open(tmp.path(), o.clone());
    append_all(&mut wal, &[(3, accepted(0, 1, b"a"))]);
    wal.sync().unwrap();
    wal.write_snapshot(3, 10, Bytes::from_static(b"ours at 10"));
    wal.append(3, &[snap(20, b"received at 20")]);
    wal.sync().unwrap();
    // The wait inside `sync` took our write's report; it is handed out now.
    assert_eq!(wal.snapshots_durable().unwrap(), vec![(3, 10)]);
    // Our next write is below the durable 20: reported durable at once.
    wal.write_snapshot(3, 15, Bytes::from_static(b"ours at 15"));
    assert_eq!(wal.snapshot_writes_in_flight(), 0);
    assert_eq!(wal.snapshots_durable().unwrap(), vec![(3, 15)]);
    drop(wal);
    let (_, rec) = open(tmp.path(), o);
    assert_eq!(
        rec.groups[&3].snapshot,
        Some((20, Bytes::from_static(b"received at 20")))
    );
}

/// A snapshot write that fails (here: its directory is gone) poisons the
/// WAL like a failed sync: the caller hears it and nothing is installed.
#[test]
fn a_failed_snapshot_write_poisons_the_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("core-0");
    let (mut wal, _) = open(&dir, opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT));
    append_all(&mut wal, &[(1, accepted(0, 1, b"a"))]);
    wal.sync().unwrap();
    fs::remove_dir_all(&dir).unwrap();
    wal.write_snapshot(1, 1, Bytes::from_static(b"state"));
    assert!(matches!(
        wal.wait_snapshots_durable(),
        Err(StorageError::Failed(_))
    ));
    assert!(wal.is_poisoned());
    append_all(&mut wal, &[(1, accepted(1, 1, b"b"))]);
    assert_failed(wal.sync());
}

#[test]
fn promises_survive_deletion_of_the_segment_that_wrote_them() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(FsyncPolicy::Never, 256);
    let first = tmp.path().join(segment_name(1));
    {
        let (mut wal, _) = open(tmp.path(), o.clone());
        wal.append(7, &[Record::Promised(Ballot::new(9, 2))]);
        wal.append(8, &[accepted(0, 1, b"x")]);
        wal.sync().unwrap();
        for s in 1..40 {
            wal.append(8, &[accepted(s, 1, &[0; 32])]);
            wal.sync().unwrap();
        }
        wal.append(8, &[snap(40, b"g8 state")]);
        wal.sync().unwrap();
        assert!(!first.exists(), "segment holding g7's promise not deleted");
    }
    let (_, rec) = open(tmp.path(), o);
    assert_eq!(rec.groups[&7].promised, Ballot::new(9, 2));
    assert!(rec.groups[&8].entries.is_empty());
}

#[test]
fn segments_of_a_group_without_snapshot_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Never, 128));
    for s in 0..30 {
        wal.append(1, &[accepted(s, 1, &[1; 32])]);
        wal.append(2, &[accepted(s, 1, &[2; 32])]);
        wal.sync().unwrap();
    }
    // Group 1 snapshots everything; group 2 never does, so nothing goes.
    wal.append(1, &[snap(100, b"g1")]);
    wal.sync().unwrap();
    assert_eq!(wal.stats().segments_deleted, 0);
    assert_eq!(segments(tmp.path()).len(), wal.segment_count());
}

// ---------------------------------------------------------------------------
// Poisoning
// ---------------------------------------------------------------------------

fn assert_failed(r: Result<crate::paxos::Synced, StorageError>) {
    match r {
        Err(StorageError::Failed(_)) => {}
        Err(e) => panic!("expected Failed, got {e}"),
        Ok(_) => panic!("expected Failed, got Synced"),
    }
}

#[test]
fn failed_fdatasync_poisons_the_wal_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT));
    wal.append(1, &[accepted(0, 1, b"durable")]);
    wal.sync().unwrap();
    wal.append(1, &[accepted(1, 1, b"fsync fails")]);
    wal.fail_next_sync();
    assert_failed(wal.sync());
    assert!(wal.is_poisoned());
    let after = wal.stats();
    for s in 2..5 {
        wal.append(1, &[accepted(s, 1, b"never")]);
        assert_failed(wal.sync());
    }
    // Not retried, not even attempted: no write, no fsync.
    assert_eq!(wal.stats(), after);
    assert_failed(wal.sync()); // also with nothing appended
    drop(wal);
    // Recovery sees what really reached the file; slot 0 is intact.
    let (_, rec) = open(tmp.path(), never());
    assert!(rec.groups[&1].entries.contains_key(&0));
    assert!(!rec.groups[&1].entries.contains_key(&2));
}

#[test]
fn failed_write_poisons_the_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT));
    wal.append(1, &[accepted(0, 1, b"durable")]);
    wal.sync().unwrap();
    wal.break_file_handle();
    wal.append(1, &[accepted(1, 1, b"write fails")]);
    let err = wal.sync().expect_err("sync must fail");
    assert!(matches!(err, StorageError::Failed(_)), "{err}");
    wal.append(1, &[accepted(2, 1, b"never")]);
    assert_failed(wal.sync());
    drop(wal);
    let (_, rec) = open(tmp.path(), never());
    assert_eq!(rec.groups[&1].entries.len(), 1);
}

/// A sync in two halves, its `fdatasync` run on another thread: what it
/// wrote is recovered, a sync with a rotation due is done whole, and a
/// failed job poisons the WAL as a failed inline sync does.
#[test]
fn a_sync_begun_here_and_run_elsewhere_is_a_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Always, 1 << 20));
    assert!(
        matches!(wal.begin_sync(), Begun::Done(Ok(_))),
        "clean: done"
    );
    let before = wal.stats().syncs;
    for slot in 0..3 {
        wal.append(1, &[accepted(slot, 1, b"off the loop")]);
        let Begun::Job(job) = wal.begin_sync() else {
            panic!("one record and no rotation due: a job");
        };
        assert!(wal.syncing());
        let synced = std::thread::spawn(move || job.run()).join().unwrap();
        wal.finish_sync(synced).unwrap();
        assert!(!wal.syncing());
    }
    assert_eq!(wal.stats().syncs, before + 3);
    // Past the segment's size: rotated, inline.
    wal.append(1, &[accepted(3, 1, &vec![7; 1 << 20])]);
    assert!(matches!(wal.begin_sync(), Begun::Done(Ok(_))));
    assert!(wal.segment_count() >= 2, "rotated");
    wal.append(1, &[accepted(4, 1, b"its sync fails")]);
    let Begun::Job(_job) = wal.begin_sync() else {
        panic!("a job");
    };
    assert_failed(wal.finish_sync(Err(std::io::Error::other("injected"))));
    assert!(wal.is_poisoned());
    wal.append(1, &[accepted(5, 1, b"never")]);
    assert!(matches!(wal.begin_sync(), Begun::Done(Err(_))));
    drop(wal);
    let (_, rec) = open(tmp.path(), never());
    let slots: Vec<_> = rec.groups[&1].entries.keys().copied().collect();
    // Slot 4 reached the file (only its sync "failed"); 5 never did.
    assert_eq!(slots, vec![0, 1, 2, 3, 4]);
}

// ---------------------------------------------------------------------------
// Cost
// ---------------------------------------------------------------------------

/// The price of persist-before-send on this machine's disk: one 4 KiB
/// append + sync with `FsyncPolicy::Always`. A number, not a pass/fail.
/// `cargo test -p synod --lib storage::tests::cost -- --ignored --nocapture`
///
/// Measured on the shared 2-core dev VM (ext4 on a virtual disk, load ~3,
/// 500 syncs per run, three runs): mean 0.3–3.1 ms, p50 0.2–4.0 ms, p99
/// 4.0–9.5 ms. The disk, not the code, sets this; it is why one sync must
/// cover a whole loop turn of every group.
#[test]
#[ignore]
fn cost_of_one_4k_append_and_sync() {
    fs::create_dir_all("target").unwrap();
    let tmp = tempfile::tempdir_in("target").unwrap();
    let (mut wal, _) = open(tmp.path(), opts(FsyncPolicy::Always, SEGMENT_BYTES_DEFAULT));
    let cmd = vec![0x5a; 4096 - 40]; // ~4 KiB on disk with framing
    let mut us: Vec<u128> = Vec::new();
    for s in 0..500 {
        let t = std::time::Instant::now();
        wal.append(1, &[accepted(s, 1, &cmd)]);
        wal.sync().unwrap();
        us.push(t.elapsed().as_micros());
    }
    us.sort();
    let mean = us.iter().sum::<u128>() / us.len() as u128;
    println!(
        "4 KiB append+sync (fdatasync): mean {mean} us, p50 {} us, p99 {} us, max {} us ({} bytes/sync)",
        us[us.len() / 2],
        us[us.len() * 99 / 100],
        us[us.len() - 1],
        wal.stats().bytes / 500
    );
}

/// With `background_delete` the janitor thread deletes garbage segments;
/// dropping the `Wal` waits for it, and recovery agrees with what is left.
#[test]
fn background_deletion_removes_the_same_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(FsyncPolicy::Always, 256);
    o.background_delete = true;
    let first = tmp.path().join(segment_name(1));
    {
        let (mut wal, _) = open(tmp.path(), o.clone());
        for s in 0..40 {
            wal.append(8, &[accepted(s, 1, &[0; 32])]);
            wal.sync().unwrap();
        }
        wal.append(8, &[snap(40, b"g8 state")]);
        wal.sync().unwrap();
        assert!(wal.stats().segments_deleted > 0);
        // Compacted entries can be handed over to be dropped, too.
        wal.janitor()
            .drop_later(vec![Bytes::from_static(b"garbage")]);
    }
    assert!(!first.exists(), "the janitor did not delete the segment");
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".garbage"))
        .collect();
    assert!(left.is_empty(), "garbage files left behind: {left:?}");
    let (_, rec) = open(tmp.path(), o);
    assert_eq!(rec.segments_deleted, 0);
    assert_eq!(rec.tmp_files_removed, 0);
    assert!(rec.groups[&8].entries.is_empty());
}

/// `remove_slowly` takes a file of many chunks away whole, and nothing
/// under the garbage name stays.
#[test]
fn a_file_removed_slowly_is_gone_with_its_garbage_name() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("wal-0000000000000009.log");
    fs::write(&path, vec![7u8; 5 * 4096 + 123]).unwrap();
    crate::storage::janitor::remove_slowly(&path, 4096).unwrap();
    let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert!(names.is_empty(), "left: {names:?}");
}

/// A crash while the janitor cut a dead segment down leaves it short,
/// mid-record, under its garbage name: recovery deletes it and starts.
/// The same cut under the segment's own name is damage (a closed segment
/// cannot have a torn tail), which is why the janitor renames first.
#[test]
fn a_segment_cut_down_midway_by_a_crash_is_removed_at_open() {
    for renamed in [true, false] {
        capture_logs();
        let tmp = tempfile::tempdir().unwrap();
        let o = opts(FsyncPolicy::Always, 256);
        let first = tmp.path().join(segment_name(1));
        {
            let (mut wal, _) = open(tmp.path(), o.clone());
            for s in 0..40 {
                wal.append(8, &[accepted(s, 1, &[0; 32])]);
                wal.sync().unwrap();
            }
            // Not collected yet: garbage only once the snapshot is in.
            assert!(first.exists());
            assert!(fs::metadata(&first).unwrap().len() > 100);
        }
        // The snapshot that makes the first segment dead.
        {
            let (mut wal, _) = open(tmp.path(), never());
            wal.append(8, &[snap(40, b"g8 state")]);
            wal.sync().unwrap();
        }
        // Whether or not collection deleted it, write what a crash midway
        // leaves: half a record (a chunk boundary), as the first file.
        let cut_to = if renamed {
            tmp.path().join(format!("{}.garbage", segment_name(1)))
        } else {
            first.clone()
        };
        let mut bytes = Vec::new();
        record::encode(
            &mut bytes,
            record::segment_seed(1),
            8,
            &accepted(0, 1, &[0; 32]),
            RECORD_BYTES_MAX_DEFAULT,
        );
        fs::write(&cut_to, &bytes[..bytes.len() / 2]).unwrap();
        let opened = Wal::open(tmp.path(), o);
        if renamed {
            let (_, rec) = opened.expect("a cut-down garbage file does not stop recovery");
            assert!(!cut_to.exists());
            assert_eq!(rec.tmp_files_removed, 1);
            assert_eq!(rec.groups[&8].snapshot.as_ref().unwrap().0, 40);
            assert!(warnings().iter().any(|w| w.contains("leftover")));
        } else {
            assert!(opened.is_err(), "a short closed segment is damage");
        }
    }
}

// ---------------------------------------------------------------------------
// Primary/backup groups (issue 12)
// ---------------------------------------------------------------------------

mod pb {
    use super::*;
    use crate::pb::{PbDurable, PbRecord};

    /// One step of a primary/backup replica's record stream, kept
    /// realistic by [`Model`]: views never go back, entries are written at
    /// or below the log's end (those below truncate), installs and local
    /// snapshots only move the snapshot forward.
    #[derive(Clone, Debug)]
    enum Gen {
        View(u64),
        Entry(u64, Vec<u8>),
        Install(u64, Vec<u8>),
        Local(u64, Vec<u8>),
        Sync,
        Reopen,
    }

    fn gen() -> impl Strategy<Value = Gen> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..16);
        prop_oneof![
            1 => (0u64..3).prop_map(Gen::View),
            8 => (0u64..100, bytes()).prop_map(|(p, b)| Gen::Entry(p, b)),
            1 => (1u64..8, bytes()).prop_map(|(i, b)| Gen::Install(i, b)),
            1 => (0u64..100, bytes()).prop_map(|(i, b)| Gen::Local(i, b)),
            3 => Just(Gen::Sync),
            1 => Just(Gen::Reopen),
        ]
    }

    #[derive(Default)]
    struct Model {
        view: u64,
        end: u64,
        snap: u64,
    }

    impl Model {
        /// The record `g` stands for here (or none).
        fn record(&mut self, g: &Gen) -> Option<PbRecord> {
            Some(match g {
                Gen::View(bump) => {
                    self.view += bump;
                    PbRecord::View(self.view)
                }
                Gen::Entry(p, b) => {
                    // Mostly appends, sometimes a truncating overwrite.
                    let pos = if p % 4 == 0 {
                        self.snap + p % (self.end - self.snap + 1)
                    } else {
                        self.end
                    };
                    self.end = pos + 1;
                    PbRecord::Entry {
                        pos,
                        tag: self.view,
                        batch: Batch {
                            commands: vec![Bytes::from(b.clone())],
                        },
                    }
                }
                Gen::Install(step, b) => {
                    self.snap += step;
                    self.end = self.snap;
                    PbRecord::Snapshot {
                        index: self.snap,
                        last_tag: self.view,
                        data: Bytes::from(b.clone()),
                        install: true,
                    }
                }
                Gen::Local(i, b) => {
                    if self.end <= self.snap {
                        return None;
                    }
                    self.snap += 1 + i % (self.end - self.snap);
                    PbRecord::Snapshot {
                        index: self.snap,
                        last_tag: self.view,
                        data: Bytes::from(b.clone()),
                        install: false,
                    }
                }
                Gen::Sync | Gen::Reopen => return None,
            })
        }
    }

    /// Write a local snapshot as the server does: its file off the loop,
    /// after the entries it covers are durable (they are applied, so
    /// synced), waited for here.
    fn write_local(wal: &mut Wal, group: GroupId, rec: &PbRecord) {
        let PbRecord::Snapshot {
            index,
            last_tag,
            data,
            install: false,
        } = rec
        else {
            panic!("not a local snapshot: {rec:?}")
        };
        let mut file = last_tag.to_le_bytes().to_vec();
        file.extend_from_slice(data);
        wal.write_snapshot(group, *index, Bytes::from(file));
        let done = wal.wait_snapshots_durable().unwrap();
        assert!(done.contains(&(group, *index)), "{done:?}");
    }

    fn fold(records: &[PbRecord]) -> PbDurable {
        let mut d = PbDurable::default();
        for r in records {
            d.apply(r);
        }
        d
    }

    fn assert_same(got: &PbDurable, want: &PbDurable) {
        assert_eq!(got.view, want.view, "view");
        assert_eq!(got.snapshot, want.snapshot, "snapshot");
        assert_eq!(got.entries, want.entries, "entries");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

        /// A primary/backup group's synced records come back exactly as
        /// `PbDurable::apply` folds them (truncations, installs and local
        /// snapshots included), beside a Paxos group in the same WAL,
        /// through rotation and segment deletion with small segments.
        #[test]
        fn pb_recovery_equals_in_memory_fold(
            gens in proptest::collection::vec(gen(), 1..120),
            segment_bytes in prop_oneof![Just(128u64), Just(600), Just(1 << 20)],
            recycle in 0usize..3,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let o = WalOptions { recycle_segments: recycle, ..opts(FsyncPolicy::Never, segment_bytes) };
            let (mut wal, _) = open(tmp.path(), o.clone());
            let mut model = Model::default();
            let (mut synced, mut pending) = (Vec::new(), Vec::new());
            let mut paxos: Vec<(GroupId, Record)> = Vec::new();
            let mut slot = 0;
            for g in gens {
                match g {
                    Gen::Sync => {
                        // A Paxos group shares the WAL and its rotations.
                        slot += 1;
                        let a = accepted(slot, 1, b"paxos");
                        wal.append(9, std::slice::from_ref(&a));
                        wal.sync().unwrap();
                        paxos.push((9, a));
                        synced.append(&mut pending);
                    }
                    Gen::Reopen => {
                        drop(wal);
                        pending.clear();
                        let (w, rec) = open(tmp.path(), o.clone());
                        let want = fold(&synced);
                        model = Model {
                            view: want.view,
                            snap: want.snapshot.as_ref().map_or(0, |s| s.0),
                            end: want.entries.keys().next_back().map_or(
                                want.snapshot.as_ref().map_or(0, |s| s.0),
                                |p| p + 1,
                            ),
                        };
                        if synced.is_empty() {
                            prop_assert!(!rec.pb.contains_key(&1));
                        } else {
                            assert_same(&rec.pb[&1], &want);
                        }
                        prop_assert!(!rec.groups.contains_key(&1));
                        wal = w;
                    }
                    g @ Gen::Local(..) => {
                        if let Some(r) = model.record(&g) {
                            wal.sync().unwrap();
                            synced.append(&mut pending);
                            write_local(&mut wal, 1, &r);
                            synced.push(r);
                        }
                    }
                    g => {
                        if let Some(r) = model.record(&g) {
                            wal.append_pb(1, std::slice::from_ref(&r));
                            pending.push(r);
                        }
                    }
                }
            }
            wal.sync().unwrap();
            synced.append(&mut pending);
            drop(wal);
            let (_, rec) = open(tmp.path(), o);
            if !synced.is_empty() {
                assert_same(&rec.pb[&1], &fold(&synced));
            }
            super::assert_same(&rec.groups, &super::fold(&paxos));
        }
    }

    /// A state installed by transfer may be far larger than a WAL record
    /// may be: its bytes go to the snapshot file and the log holds a small
    /// marker, so it recovers whatever its size. If the file never landed
    /// (a crash within the sync that logged the marker), the marker is
    /// ignored and the replica restarts from what it held before.
    #[test]
    fn an_install_larger_than_a_record_recovers_from_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(FsyncPolicy::Never, 1 << 20);
        o.record_bytes_max = 4096;
        let (mut wal, _) = open(tmp.path(), o.clone());
        let entry = |pos| PbRecord::Entry {
            pos,
            tag: 3,
            batch: Batch {
                commands: vec![Bytes::from_static(b"w")],
            },
        };
        let before: Vec<PbRecord> = std::iter::once(PbRecord::View(3))
            .chain((0..5).map(entry))
            .collect();
        wal.append_pb(1, &before);
        wal.sync().unwrap();
        let big = PbRecord::Snapshot {
            index: 40,
            last_tag: 3,
            data: Bytes::from(vec![0x5a; 64 << 10]),
            install: true,
        };
        let after = [big, entry(40), entry(41)];
        wal.append_pb(1, &after);
        wal.sync().unwrap();
        drop(wal);
        let all: Vec<PbRecord> = before.iter().chain(&after).cloned().collect();
        let (wal, rec) = open(tmp.path(), o.clone());
        assert_same(&rec.pb[&1], &fold(&all));
        drop(wal);

        // As if the process died after the marker's fdatasync but before
        // the file's rename: no file at the marker's index.
        std::fs::remove_file(tmp.path().join("snap-g1.bin")).unwrap();
        let (_, rec) = open(tmp.path(), o);
        let got = &rec.pb[&1];
        assert!(got.snapshot.is_none());
        assert_eq!(
            got.entries.keys().copied().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 40, 41],
            "the entries before the install kept (40 and 41 lie past a hole, \
             which a restarted replica does not take)"
        );
    }

    /// A primary/backup group's view outlives the segments that recorded
    /// it: every new segment is headed by it, as by a Paxos promise.
    #[test]
    fn pb_view_survives_segment_deletion() {
        let tmp = tempfile::tempdir().unwrap();
        let o = opts(FsyncPolicy::Never, 256);
        let (mut wal, _) = open(tmp.path(), o.clone());
        wal.append_pb(4, &[PbRecord::View(7)]);
        let mut recs = vec![PbRecord::View(7)];
        for pos in 0..200u64 {
            let turn = vec![PbRecord::Entry {
                pos,
                tag: 7,
                batch: Batch {
                    commands: vec![Bytes::from_static(b"0123456789")],
                },
            }];
            wal.append_pb(4, &turn);
            wal.sync().unwrap();
            recs.extend(turn);
            if pos % 20 == 19 {
                let local = PbRecord::Snapshot {
                    index: pos - 5,
                    last_tag: 7,
                    data: Bytes::from(format!("state@{pos}")),
                    install: false,
                };
                write_local(&mut wal, 4, &local);
                recs.push(local);
            }
        }
        assert!(wal.stats().segments_deleted > 10, "{:?}", wal.stats());
        drop(wal);
        let (_, rec) = open(tmp.path(), o);
        assert_same(&rec.pb[&4], &fold(&recs));
        assert_eq!(rec.pb[&4].view, 7);
        assert_eq!(rec.pb[&4].snapshot.as_ref().map(|s| s.0), Some(194));
    }
}
