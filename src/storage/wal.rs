//! The write-ahead log of one core: append, group-commit sync, rotation,
//! segment deletion, and recovery.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use synod_wire::{Ballot, GroupId, Slot};

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::durable::sync_dir;
use super::janitor::{Notify, WriteDone};
use super::record::{self, Bad, WalRecord};
use super::snapshot;
use super::Janitor;
use super::{FsyncPolicy, StorageError, WalOptions};
use crate::paxos::{Durable, Record, Synced};
use crate::pb::{PbDurable, PbRecord};

/// What [`Wal::open`] found on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The durable image of every Paxos group with anything on disk.
    pub groups: BTreeMap<GroupId, Durable>,
    /// The durable image of every primary/backup group with anything on
    /// disk (a group is one once it has a primary/backup record).
    pub pb: BTreeMap<GroupId, PbDurable>,
    /// Bytes cut off the end of the last segment as a torn write (or, in a
    /// recycled segment, as records of its file's earlier life).
    pub truncated_tail_bytes: u64,
    pub segments_read: usize,
    pub records_read: u64,
    pub snapshots_loaded: usize,
    /// Leftovers of a crash deleted: snapshot temp files (mid-snapshot)
    /// and segments the janitor was cutting down (`janitor::remove_slowly`).
    pub tmp_files_removed: usize,
    /// Segments deleted at open because snapshots made them unnecessary.
    pub segments_deleted: usize,
}

/// Counters of the system calls a [`Wal`] issued, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// `write(2)` calls on WAL segments.
    pub writes: u64,
    /// `fdatasync`/`fsync` calls of any file or directory.
    pub syncs: u64,
    /// Bytes written to WAL segments.
    pub bytes: u64,
    pub snapshots_written: u64,
    /// Bytes of snapshot files written.
    pub snapshot_bytes: u64,
    /// Time spent writing snapshot files (temp file, fsync, rename), µs.
    pub snapshot_write_us: u64,
    /// New segments, recycled ones included.
    pub segments_created: u64,
    /// New segments that took over a dead segment's file instead of
    /// creating one.
    pub segments_recycled: u64,
    pub segments_deleted: u64,
}

/// Per-group state the WAL needs to write rotation heads, decide which
/// snapshots are new, and which segments are garbage.
#[derive(Clone, Copy, Debug, Default)]
struct GroupState {
    /// Highest promise appended (equal to the durable one after a sync).
    promised: Ballot,
    /// A primary/backup group: its highest view appended (the rotation
    /// head it gets instead of a promise).
    pb_view: Option<u64>,
    /// A primary/backup group: the highest log position any record of it
    /// has named (see [`SegMeta::note_pb`]).
    pb_high: Slot,
    /// Index of the group's durable snapshot file.
    snap_index: Option<Slot>,
}

/// What one segment holds that decides whether it may be deleted: per
/// group, the highest slot of an `Accepted` record in it. Its size is
/// bounded by the groups of the core.
#[derive(Clone, Debug, Default)]
struct SegMeta {
    max_slot: BTreeMap<GroupId, Slot>,
    /// Written in the first format (`wal-<seq>.log`, plain checksums):
    /// read, deleted when dead, never recycled.
    legacy: bool,
}

impl SegMeta {
    fn note(&mut self, group: GroupId, rec: &Record) {
        if let Record::Accepted { slot, .. } = rec {
            self.note_slot(group, *slot);
        }
    }

    fn note_slot(&mut self, group: GroupId, slot: Slot) {
        let m = self.max_slot.entry(group).or_insert(slot);
        *m = (*m).max(slot);
    }

    /// A primary/backup entry or install at `pos` drops every entry held at
    /// or above it, so recovery must see it whenever it sees one of those:
    /// it counts as naming the highest position the group ever wrote
    /// (`high`), which keeps its segment as long as any segment holding an
    /// entry it dropped.
    fn note_pb(&mut self, group: GroupId, pos: Slot, high: &mut Slot) {
        *high = (*high).max(pos);
        self.note_slot(group, *high);
    }
}

/// One write-ahead log per core, holding the records of many groups.
///
/// Segments rotate once a sync leaves the current one at
/// `segment_bytes` or more. Every new segment starts with one `Promised`
/// per group seen so far, so older segments are never needed for promises;
/// a closed segment is dead once every `Accepted` record in it is below
/// its group's durable snapshot index (such records are dropped on recovery
/// anyway, see [`Durable::apply`]).
///
/// A dead segment is deleted, or kept as a spare (up to
/// `WalOptions::recycle_segments`): the next rotation renames the spare's
/// file to the new segment's name and writes over it from the start.
/// Why: a sync that only overwrites blocks the file already has is a data
/// write, while one that grows the file also commits its new size through
/// the file system's journal, and deleting a dead file frees all its blocks
/// in one journal commit that every sync waits for. The records of the
/// file's earlier lives stay behind the new ones, but each record's
/// checksum is seeded with its segment's number (`record::segment_seed`),
/// so they never check out under the new name: recovery reads them as a
/// torn tail and cuts them off, and rotation cuts them off a segment it
/// closes, so a closed segment always ends at its last record.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// The active segment, written at `seg_len` (not in append mode: a
    /// recycled file is longer than what it holds).
    file: File,
    seq: u64,
    /// Checksum seed of the active segment's records.
    seed: u32,
    /// Bytes written to the active segment.
    seg_len: u64,
    /// The active segment file's length: above `seg_len` while writing
    /// over a recycled file.
    file_len: u64,
    active: SegMeta,
    /// Closed segments still on disk, by sequence number.
    closed: BTreeMap<u64, SegMeta>,
    /// Dead segments kept on disk, under their names, for the next
    /// rotations to recycle.
    spares: Vec<u64>,
    groups: BTreeMap<GroupId, GroupState>,
    /// Records appended since the last sync, already encoded.
    buf: Vec<u8>,
    /// Snapshots appended since the last sync: only the newest per group,
    /// and only if newer than the durable one (what `Durable::apply` keeps).
    staged: BTreeMap<GroupId, (Slot, Bytes)>,
    /// Set by the first I/O error of a sync; see [`Wal::sync`].
    poisoned: Option<String>,
    stats: WalStats,
    /// Deletes garbage segments (with `background_delete`) and drops what
    /// the core hands it ([`Wal::janitor`]).
    janitor: Janitor,
    /// Writes the snapshots of [`Wal::write_snapshot`] off the caller's
    /// thread, one report each on `done_rx`.
    snap_writer: Janitor,
    done_tx: Sender<WriteDone>,
    done_rx: Receiver<WriteDone>,
    /// Groups with a snapshot write in flight, and its index.
    in_flight: BTreeMap<GroupId, Slot>,
    /// Writes found durable and not yet handed out by
    /// [`Wal::snapshots_durable`].
    durable_snaps: Vec<(GroupId, Slot)>,
    notify: Option<Notify>,
    /// A [`Wal::begin_sync`] not yet finished.
    syncing: bool,
    #[cfg(test)]
    fail_next_sync: bool,
    /// The durable steps of each rotation, in order, for tests of their
    /// order (which only a crash between them would otherwise show).
    #[cfg(test)]
    pub(crate) rotation_steps: Vec<&'static str>,
}

/// What [`Wal::begin_sync`] did.
pub enum Begun {
    /// The whole sync, done on the caller's thread.
    Done(Result<Synced, StorageError>),
    /// The records are written; this `fdatasync` is left.
    Job(SyncJob),
}

/// The `fdatasync` of a begun sync, on its own handle of the segment
/// (runs on any thread; the segment never rotates under it, as
/// [`Wal::begin_sync`] syncs whole when a rotation is due).
pub struct SyncJob {
    file: File,
}

impl SyncJob {
    pub fn run(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// The file of segment `seq`, its records checksummed from
/// `record::segment_seed(seq)`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016}.seg")
}

/// The file of segment `seq` in the first format (plain checksums), which
/// is still read but no longer written.
fn legacy_segment_name(seq: u64) -> String {
    format!("wal-{seq:016}.log")
}

fn seg_name(seq: u64, legacy: bool) -> String {
    if legacy {
        legacy_segment_name(seq)
    } else {
        segment_name(seq)
    }
}

/// The checksum seed of segment `seq`'s records in its format.
fn seg_seed(seq: u64, legacy: bool) -> u32 {
    if legacy {
        record::LEGACY_SEED
    } else {
        record::segment_seed(seq)
    }
}

/// A segment's number, and whether it is in the first format.
fn parse_segment_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("wal-")?;
    let (digits, legacy) = match (rest.strip_suffix(".seg"), rest.strip_suffix(".log")) {
        (Some(d), _) => (d, false),
        (None, Some(d)) => (d, true),
        (None, None) => return None,
    };
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, legacy))
}

impl Wal {
    /// Open (or create) the WAL in `dir` and recover every group's durable
    /// image from its snapshot files and segments.
    ///
    /// A torn tail of the last segment is truncated away (with a warning);
    /// any other damage is [`StorageError::Corrupt`] and the caller must not
    /// start this core's replicas.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Recovered), StorageError> {
        assert!(opts.segment_bytes > 0, "segment_bytes must be positive");
        assert!(
            opts.record_bytes_max >= record::LEN_MIN,
            "record_bytes_max {} is below the smallest record",
            opts.record_bytes_max
        );
        super::create_dir_durable(dir).map_err(|e| StorageError::io(dir, e))?;
        let mut rec = Recovered::default();

        let mut segments: Vec<(u64, bool, PathBuf)> = Vec::new();
        let mut snapshots: Vec<(GroupId, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                log::warn!(
                    "wal {}: ignoring non-UTF-8 file {}",
                    dir.display(),
                    path.display()
                );
                continue;
            };
            if let Some((seq, legacy)) = parse_segment_name(&name) {
                segments.push((seq, legacy, path));
            } else if let Some(gid) = snapshot::parse_name(&name) {
                snapshots.push((gid, path));
            } else if super::janitor::is_garbage_name(&name) {
                // A crash while the janitor cut a dead segment down.
                log::warn!("wal {}: removing leftover {name}", dir.display());
                fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
                rec.tmp_files_removed += 1;
            } else if snapshot::is_tmp_name(&name) {
                // A crash between creating the temp file and renaming it:
                // the old snapshot (if any) is still whole and current.
                log::warn!("wal {}: removing leftover {name}", dir.display());
                fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
                rec.tmp_files_removed += 1;
            } else {
                log::warn!("wal {}: ignoring unknown file {name}", dir.display());
            }
        }
        segments.sort();
        snapshots.sort();
        if let Some(w) = segments.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(StorageError::corrupt(
                &w[1].2,
                0,
                format!("segment {} exists in both formats", w[1].0),
            ));
        }
        if rec.tmp_files_removed > 0 {
            sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        }

        // Snapshots first: folding one before the WAL records drops exactly
        // the entries below its index, which is what folding it wherever it
        // came in the original order does (its index is the highest the
        // group ever made durable, and `Durable::apply` drops everything
        // below the highest snapshot whenever it arrives).
        for (gid, path) in &snapshots {
            let (index, data) = snapshot::read(path, *gid)?;
            let d = rec.groups.entry(*gid).or_default();
            d.apply(&Record::Snapshot { index, data });
            rec.snapshots_loaded += 1;
        }

        let mut metas: Vec<SegMeta> = Vec::with_capacity(segments.len());
        let mut last_len = 0;
        let mut pb_high = BTreeMap::new();
        for (i, (seq, legacy, path)) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let seed = seg_seed(*seq, *legacy);
            let (mut meta, valid_len) =
                Self::recover_segment(path, is_last, seed, &opts, &mut rec, &mut pb_high)?;
            meta.legacy = *legacy;
            metas.push(meta);
            last_len = valid_len;
            rec.segments_read += 1;
        }

        let mut groups: BTreeMap<GroupId, GroupState> = rec
            .groups
            .iter()
            .map(|(g, d)| {
                let state = GroupState {
                    promised: d.promised,
                    snap_index: d.snapshot.as_ref().map(|(i, _)| *i),
                    ..GroupState::default()
                };
                (*g, state)
            })
            .collect();
        for (g, d) in &rec.pb {
            let state = GroupState {
                pb_view: Some(d.view),
                pb_high: pb_high.get(g).copied().unwrap_or(0),
                snap_index: d.snapshot.as_ref().map(|(i, _, _)| *i),
                ..GroupState::default()
            };
            groups.insert(*g, state);
        }

        let mut stats = WalStats::default();
        let (seq, file, seg_len, active) = match segments.last() {
            Some((seq, _, path)) => {
                // Its valid length is its length: a torn tail, and with it
                // any earlier life's records, was cut off above.
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| StorageError::io(path, e))?;
                let active = metas.pop().unwrap_or_default();
                (*seq, file, last_len, active)
            }
            None => {
                let seq = 1;
                let path = dir.join(segment_name(seq));
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| StorageError::io(&path, e))?;
                // The new name must survive a crash, or records synced into
                // this file would vanish with it.
                if opts.fsync == FsyncPolicy::Always {
                    sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
                    stats.syncs += 1;
                }
                stats.segments_created += 1;
                (seq, file, 0, SegMeta::default())
            }
        };
        let closed: BTreeMap<u64, SegMeta> =
            segments.iter().map(|(s, _, _)| *s).zip(metas).collect();
        let seed = seg_seed(seq, active.legacy);
        let thread_name = |what: &str| {
            format!(
                "{what}-{}",
                dir.file_name()
                    .map_or("wal".into(), |n| n.to_string_lossy())
            )
        };
        let (done_tx, done_rx) = unbounded();

        let mut wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            file,
            seq,
            seed,
            seg_len,
            file_len: seg_len,
            active,
            closed,
            spares: Vec::new(),
            groups,
            buf: Vec::new(),
            staged: BTreeMap::new(),
            poisoned: None,
            stats,
            janitor: Janitor::start(thread_name("janitor"))
                .map_err(|e| StorageError::io(dir, e))?,
            snap_writer: Janitor::start(thread_name("snapw"))
                .map_err(|e| StorageError::io(dir, e))?,
            done_tx,
            done_rx,
            in_flight: BTreeMap::new(),
            durable_snaps: Vec::new(),
            notify: None,
            syncing: false,
            #[cfg(test)]
            fail_next_sync: false,
            #[cfg(test)]
            rotation_steps: Vec::new(),
        };
        if wal.active.legacy {
            // New records go to segments of the current format only.
            wal.rotate().map_err(|e| StorageError::io(dir, e))?;
        }
        // Segments a crash kept from being deleted after their snapshot
        // (at once, whatever `background_delete` says: recovery reports it),
        // and spares left from before (kept as spares again).
        rec.segments_deleted = wal
            .collect_garbage(false)
            .map_err(|e| StorageError::io(dir, e))?;
        log::info!(
            "wal {}: recovered {} groups from {} segments ({} records) and {} snapshots; \
             truncated {} torn bytes; fsync {}",
            dir.display(),
            rec.groups.len(),
            rec.segments_read,
            rec.records_read,
            rec.snapshots_loaded,
            rec.truncated_tail_bytes,
            wal.opts.fsync
        );
        if wal.opts.fsync == FsyncPolicy::Never {
            log::warn!(
                "wal {}: fsync disabled, UNSAFE outside benchmarks",
                dir.display()
            );
        }
        Ok((wal, rec))
    }

    /// Fold one segment into `rec`; returns its bookkeeping and the length
    /// of its valid prefix (after truncating a torn tail of the last one).
    fn recover_segment(
        path: &Path,
        is_last: bool,
        seed: u32,
        opts: &WalOptions,
        rec: &mut Recovered,
        pb_high: &mut BTreeMap<GroupId, Slot>,
    ) -> Result<(SegMeta, u64), StorageError> {
        let bytes = fs::read(path).map_err(|e| StorageError::io(path, e))?;
        let mut meta = SegMeta::default();
        let scan = scan_segment(
            &bytes,
            is_last,
            seed,
            opts.record_bytes_max,
            |off, group, record| {
                let record = match record {
                    WalRecord::Paxos(r) => r,
                    WalRecord::PbInstalled { index, .. } => {
                        let durable = pb_durable(rec, group).map_err(|reason| Damage {
                            offset: off,
                            reason,
                        })?;
                        match durable.snapshot.as_ref().map(|s| s.0) {
                            // The install's own file (or a later snapshot,
                            // read first): the entries before it go.
                            Some(i) if i >= index => durable.entries.clear(),
                            // Its file never landed: the sync that logged
                            // it did not finish, so nothing was logged
                            // after it and none of it was acknowledged.
                            _ => log::warn!(
                                "wal {}: group {group}: an install at {index} whose snapshot \
                                 file never landed (a crash within its sync): ignored",
                                path.display()
                            ),
                        }
                        let high = pb_high.entry(group).or_default();
                        meta.note_pb(group, index, high);
                        rec.records_read += 1;
                        return Ok(());
                    }
                    WalRecord::Pb(r) => {
                        let damage = |reason: String| Damage {
                            offset: off,
                            reason,
                        };
                        let durable = pb_durable(rec, group).map_err(damage)?;
                        if let PbRecord::View(v) = &r {
                            if *v < durable.view {
                                return Err(damage(format!(
                                    "group {group} view went backwards: {v} after {}",
                                    durable.view
                                )));
                            }
                        }
                        match &r {
                            // An install older than the snapshot file (read
                            // first): a later snapshot superseded it, so it
                            // only drops the entries it dropped.
                            PbRecord::Snapshot {
                                index,
                                install: true,
                                ..
                            } if durable.snapshot.as_ref().is_some_and(|s| s.0 > *index) => {
                                durable.entries.clear()
                            }
                            _ => durable.apply(&r),
                        }
                        let high = pb_high.entry(group).or_default();
                        match &r {
                            PbRecord::Entry { pos, .. } => meta.note_pb(group, *pos, high),
                            PbRecord::Snapshot { index, .. } => meta.note_pb(group, *index, high),
                            PbRecord::View(_) => {}
                        }
                        rec.records_read += 1;
                        return Ok(());
                    }
                };
                if rec.pb.contains_key(&group) {
                    return Err(Damage {
                        offset: off,
                        reason: format!("group {group} has Paxos and primary/backup records"),
                    });
                }
                let durable = rec.groups.entry(group).or_default();
                if let Record::Promised(b) = &record {
                    if *b < durable.promised {
                        return Err(Damage {
                            offset: off,
                            reason: format!(
                                "group {group} promise went backwards: {b:?} after {:?}",
                                durable.promised
                            ),
                        });
                    }
                }
                durable.apply(&record);
                meta.note(group, &record);
                rec.records_read += 1;
                Ok(())
            },
        )
        .map_err(|d| StorageError::corrupt(path, d.offset as u64, d.reason))?;
        if let Some(reason) = &scan.torn {
            // A torn tail: the last write was cut short by a crash.
            // Nothing after `valid_len` was ever acknowledged by a Synced.
            let off = scan.valid_len;
            let cut = (bytes.len() - off) as u64;
            log::warn!(
                "wal: torn tail in {} at offset {off}: {reason}; truncating {cut} bytes \
                 (a write a crash cut short, or, in a recycled segment, its earlier records)",
                path.display(),
            );
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| StorageError::io(path, e))?;
            f.set_len(off as u64)
                .map_err(|e| StorageError::io(path, e))?;
            // Always synced, whatever the policy: appending after an
            // undurable truncation could resurrect the torn bytes
            // behind new records.
            f.sync_all().map_err(|e| StorageError::io(path, e))?;
            rec.truncated_tail_bytes += cut;
        }
        Ok((meta, scan.valid_len as u64))
    }

    /// Queue `records` of `group` for the next [`Wal::sync`]. No system
    /// calls: this only encodes into memory.
    ///
    /// Panics if a promise goes backwards (as [`Durable::apply`] does) or a
    /// record is longer than `record_bytes_max`: both are caller bugs.
    pub fn append(&mut self, group: GroupId, records: &[Record]) {
        debug_assert!(!self.syncing, "append while a sync is in flight");
        if self.poisoned.is_some() || records.is_empty() {
            // Poisoned: nothing appended now can ever be synced, and sync
            // reports why. Empty: a group with no records is not "seen" (it
            // would otherwise get a promise record at the next rotation).
            return;
        }
        let state = self.groups.entry(group).or_default();
        for rec in records {
            match rec {
                Record::Promised(b) => {
                    assert!(
                        *b >= state.promised,
                        "group {group}: promise went backwards ({b:?} < {:?})",
                        state.promised
                    );
                    state.promised = *b;
                }
                Record::Accepted { .. } => {}
                Record::Snapshot { index, data } => {
                    let current = self
                        .staged
                        .get(&group)
                        .map(|(i, _)| *i)
                        .or(state.snap_index);
                    // Same rule as `Durable::apply`: only a strictly newer
                    // snapshot replaces the current one.
                    if current.is_none_or(|i| i < *index) {
                        self.staged.insert(group, (*index, data.clone()));
                    }
                    continue;
                }
            }
            record::encode(
                &mut self.buf,
                self.seed,
                group,
                rec,
                self.opts.record_bytes_max,
            );
            self.active.note(group, rec);
        }
    }

    /// Queue primary/backup `records` of `group` for the next
    /// [`Wal::sync`], like [`Wal::append`]. Views and entries are WAL
    /// records; a state installed by transfer becomes the group's snapshot
    /// file, written within the same sync after the records' `fdatasync`,
    /// and a small record marking it (ordered with the entries around it,
    /// as [`PbDurable::apply`] folds it; the state itself may be larger
    /// than a record may be). A local snapshot is only the file, written off the loop by
    /// [`Wal::write_snapshot`] (`pb::SnapshotWrite::file`). A snapshot file
    /// of a primary/backup group holds the tag of the entry before its
    /// index (`u64`, little-endian) ahead of the state.
    ///
    /// Panics if the view goes backwards (as [`PbDurable::apply`] does), on
    /// a local snapshot, or if a record is longer than `record_bytes_max`:
    /// caller bugs.
    pub fn append_pb(&mut self, group: GroupId, records: &[PbRecord]) {
        debug_assert!(!self.syncing, "append while a sync is in flight");
        if self.poisoned.is_some() || records.is_empty() {
            return;
        }
        let state = self.groups.entry(group).or_default();
        let view = state.pb_view.get_or_insert(0);
        for rec in records {
            match rec {
                PbRecord::View(v) => {
                    assert!(
                        *v >= *view,
                        "group {group}: view went backwards ({v} < {view})"
                    );
                    *view = *v;
                }
                PbRecord::Entry { pos, .. } => {
                    self.active.note_pb(group, *pos, &mut state.pb_high);
                }
                PbRecord::Snapshot { install: false, .. } => {
                    panic!("group {group}: a local snapshot goes to write_snapshot")
                }
                PbRecord::Snapshot {
                    index,
                    last_tag,
                    data,
                    install: true,
                } => {
                    let current = self
                        .staged
                        .get(&group)
                        .map(|(i, _)| *i)
                        .or(state.snap_index);
                    if current.is_none_or(|i| i < *index) {
                        let mut file = Vec::with_capacity(8 + data.len());
                        file.extend_from_slice(&last_tag.to_le_bytes());
                        file.extend_from_slice(data);
                        self.staged.insert(group, (*index, Bytes::from(file)));
                    }
                    self.active.note_pb(group, *index, &mut state.pb_high);
                }
            }
            record::encode_pb(
                &mut self.buf,
                self.seed,
                group,
                rec,
                self.opts.record_bytes_max,
            );
        }
    }

    /// Has anything been appended since the last [`Wal::sync`] (so the
    /// next one writes and syncs)?
    pub fn dirty(&self) -> bool {
        !self.buf.is_empty() || !self.staged.is_empty()
    }

    /// Make everything appended since the last sync durable, then return
    /// the proof. One `write(2)` of all buffered records and one
    /// `fdatasync` (under [`FsyncPolicy::Always`]) cover every group; then,
    /// if needed, rotation to a new segment, staged snapshots, and deletion
    /// of segments the snapshots made unnecessary. With nothing appended it
    /// returns at once, without system calls.
    ///
    /// Any I/O error (ENOSPC included) poisons the `Wal`: this call and every
    /// later one return [`StorageError::Failed`]. It never retries. After a
    /// failed `fsync` the kernel may have dropped the dirty pages and
    /// cleared the error, so a retry that succeeds proves nothing
    /// ("fsyncgate"); and a failed `write` may have left a partial record
    /// mid-file that later records would follow. The only honest answer is to
    /// stop and let the core recover from what is really on disk, where the
    /// unsynced tail is at worst a torn tail nobody was promised.
    pub fn sync(&mut self) -> Result<Synced, StorageError> {
        if let Some(why) = &self.poisoned {
            return Err(StorageError::Failed(why.clone()));
        }
        if !self.dirty() {
            return Ok(Synced::after_sync());
        }
        match self.sync_inner() {
            Ok(()) => Ok(Synced::after_sync()),
            Err(e) => Err(self.poison(e)),
        }
    }

    /// The first I/O error: nothing appended is ever synced now (see
    /// [`Wal::sync`]).
    fn poison(&mut self, e: io::Error) -> StorageError {
        let why = format!("{}: {e}", self.dir.display());
        log::error!("wal poisoned: {why}");
        self.poisoned = Some(why.clone());
        self.buf = Vec::new();
        self.staged.clear();
        StorageError::Failed(why)
    }

    /// [`Wal::sync`] in two halves, so the `fdatasync` can run on another
    /// thread while the caller's goes on: this writes the buffered records
    /// and returns the sync still to do as a [`Begun::Job`]; its result
    /// goes to [`Wal::finish_sync`], which hands out the proof. Until then
    /// nothing may be appended (checked in debug builds). A sync with more
    /// to it than one `fdatasync` (staged snapshots, a rotation due after
    /// the write, fsync off, nothing to write, an earlier failure) is done
    /// whole, here, as [`Begun::Done`].
    pub fn begin_sync(&mut self) -> Begun {
        let whole = self.poisoned.is_some()
            || !self.dirty()
            || self.opts.fsync != FsyncPolicy::Always
            || !self.staged.is_empty()
            || self.seg_len + self.buf.len() as u64 >= self.opts.segment_bytes;
        #[cfg(test)]
        let whole = whole || self.fail_next_sync;
        if whole {
            return Begun::Done(self.sync());
        }
        let buf = std::mem::take(&mut self.buf);
        let written = self
            .write_segment(&buf)
            .and_then(|()| self.file.try_clone());
        self.buf = buf;
        self.buf.clear();
        match written {
            Ok(file) => {
                self.syncing = true;
                Begun::Job(SyncJob { file })
            }
            Err(e) => Begun::Done(Err(self.poison(e))),
        }
    }

    /// The end of a sync [`Wal::begin_sync`] began: `result` is its
    /// [`SyncJob::run`]'s. An error poisons the `Wal` as in [`Wal::sync`].
    pub fn finish_sync(&mut self, result: io::Result<()>) -> Result<Synced, StorageError> {
        debug_assert!(self.syncing, "finish_sync without a sync begun");
        self.syncing = false;
        match result {
            Ok(()) => {
                self.stats.syncs += 1;
                Ok(Synced::after_sync())
            }
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Is a sync begun and not finished ([`Wal::begin_sync`])?
    pub fn syncing(&self) -> bool {
        self.syncing
    }

    fn sync_inner(&mut self) -> io::Result<()> {
        let always = self.opts.fsync == FsyncPolicy::Always;
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.write_segment(&buf)?;
            #[cfg(test)]
            if std::mem::take(&mut self.fail_next_sync) {
                return Err(io::Error::other("injected fdatasync failure"));
            }
            if always {
                self.file.sync_data()?;
                self.stats.syncs += 1;
            }
            // Reuse the allocation: steady state allocates nothing per turn.
            self.buf = buf;
            self.buf.clear();
        }
        let rotated = self.seg_len >= self.opts.segment_bytes;
        if rotated {
            self.rotate()?;
        }
        let snapshots = !self.staged.is_empty();
        if snapshots {
            for (group, (index, data)) in std::mem::take(&mut self.staged) {
                // A snapshot received from a peer while our own write for
                // the group is in flight (rare: catch-up): let that one
                // finish first, so the two never share the temp file and
                // the older one can never be renamed over the newer.
                while self.in_flight.contains_key(&group) {
                    let done = self
                        .done_rx
                        .recv()
                        .map_err(|_| io::Error::other("snapshot writer thread gone"))?;
                    self.absorb(done)?;
                }
                let began = std::time::Instant::now();
                self.stats.syncs += snapshot::write(&self.dir, group, index, &data, always)?;
                self.stats.snapshot_write_us += began.elapsed().as_micros() as u64;
                self.stats.snapshots_written += 1;
                self.stats.snapshot_bytes += data.len() as u64;
                let state = self.groups.entry(group).or_default();
                state.snap_index = state.snap_index.max(Some(index));
                log::debug!(
                    "wal {}: group {group} snapshot at {index}",
                    self.dir.display()
                );
            }
            // One directory sync makes every rename of this turn durable.
            if always {
                sync_dir(&self.dir)?;
                self.stats.syncs += 1;
            }
        }
        if rotated || snapshots {
            self.collect_garbage(self.opts.background_delete)?;
        }
        Ok(())
    }

    /// Wake-up for the snapshot writer's reports (the runtime's mio
    /// `Waker`): called once per finished write.
    pub fn set_snapshot_notify(&mut self, notify: Notify) {
        self.notify = Some(notify);
    }

    /// Write `data` as `group`'s snapshot at `index` on the WAL's snapshot
    /// writer thread: temp file, fsync, rename, directory fsync, none of it
    /// on the caller's thread. Until [`Wal::snapshots_durable`] reports it,
    /// nothing changes here: the group's durable snapshot is still the old
    /// one, and no segment it would make garbage is deleted, so a crash at
    /// any point leaves the old snapshot and the whole log above it, or the
    /// new snapshot and the log above that.
    ///
    /// One write per group is in flight at a time (the replica asks for
    /// no other until the last is durable); should a second come anyway
    /// (a group dropped and hosted again meanwhile), this waits for the
    /// first, so the two never share the temp file. Poisoned: ignored.
    pub fn write_snapshot(&mut self, group: GroupId, index: Slot, data: Bytes) {
        if self.poisoned.is_some() {
            return;
        }
        while self.in_flight.contains_key(&group) {
            let done = self
                .done_rx
                .recv()
                .map_err(|_| io::Error::other("snapshot writer thread gone"));
            if let Err(e) = done.and_then(|d| self.absorb(d)) {
                let why = format!("{}: snapshot write: {e}", self.dir.display());
                log::error!("wal poisoned: {why}");
                self.poisoned = Some(why);
                return;
            }
        }
        if self.groups.get(&group).and_then(|s| s.snap_index) >= Some(index) {
            // Already covered by a newer durable snapshot (one received from
            // a peer): report it durable at once.
            self.durable_snaps.push((group, index));
            return;
        }
        self.in_flight.insert(group, index);
        self.snap_writer.write_snapshot(
            self.dir.clone(),
            group,
            index,
            data,
            self.opts.fsync == FsyncPolicy::Always,
            self.done_tx.clone(),
            self.notify.clone(),
        );
    }

    /// Snapshot writes in flight.
    pub fn snapshot_writes_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The snapshot writes that became durable since the last call, as
    /// `(group, index)`: each is now its group's durable snapshot (unless a
    /// newer one is), and the segments it made garbage are handed to the
    /// janitor. Never blocks. A failed write poisons the `Wal` (as a failed
    /// sync does, and for the same reasons) and is returned as the error.
    pub fn snapshots_durable(&mut self) -> Result<Vec<(GroupId, Slot)>, StorageError> {
        self.collect_snapshot_reports(false)
    }

    /// [`Wal::snapshots_durable`], but first waits for every write in
    /// flight (tests, and a clean shutdown).
    pub fn wait_snapshots_durable(&mut self) -> Result<Vec<(GroupId, Slot)>, StorageError> {
        self.collect_snapshot_reports(true)
    }

    fn collect_snapshot_reports(
        &mut self,
        wait: bool,
    ) -> Result<Vec<(GroupId, Slot)>, StorageError> {
        if let Some(why) = &self.poisoned {
            return Err(StorageError::Failed(why.clone()));
        }
        let mut result = Ok(());
        let mut any = false;
        loop {
            let done = if wait && !self.in_flight.is_empty() {
                match self.done_rx.recv() {
                    Ok(d) => d,
                    Err(_) => {
                        result = Err(io::Error::other("snapshot writer thread gone"));
                        break;
                    }
                }
            } else {
                match self.done_rx.try_recv() {
                    Ok(d) => d,
                    Err(_) => break,
                }
            };
            any = true;
            if let Err(e) = self.absorb(done) {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() && any {
            result = self
                .collect_garbage(self.opts.background_delete)
                .map(|_| ());
        }
        if let Err(e) = result {
            let why = format!("{}: snapshot write: {e}", self.dir.display());
            log::error!("wal poisoned: {why}");
            self.poisoned = Some(why.clone());
            self.buf = Vec::new();
            self.staged.clear();
            self.durable_snaps.clear();
            return Err(StorageError::Failed(why));
        }
        Ok(std::mem::take(&mut self.durable_snaps))
    }

    /// Take one report of the snapshot writer into the WAL's state.
    fn absorb(&mut self, done: WriteDone) -> io::Result<()> {
        if self.in_flight.get(&done.group) == Some(&done.index) {
            self.in_flight.remove(&done.group);
        }
        let (syncs, us) = done.result?;
        self.stats.syncs += syncs;
        self.stats.snapshot_write_us += us;
        self.stats.snapshots_written += 1;
        self.stats.snapshot_bytes += done.bytes;
        let state = self.groups.entry(done.group).or_default();
        state.snap_index = state.snap_index.max(Some(done.index));
        log::debug!(
            "wal {}: group {} snapshot at {} durable (written off the loop)",
            self.dir.display(),
            done.group,
            done.index
        );
        self.durable_snaps.push((done.group, done.index));
        Ok(())
    }

    /// Write all of `buf` to the active segment at `seg_len` and move
    /// `seg_len` past it, counting system calls.
    fn write_segment(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.file.write_at(buf, self.seg_len) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.stats.writes += 1;
                    self.stats.bytes += n as u64;
                    self.seg_len += n as u64;
                    buf = &buf[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.file_len = self.file_len.max(self.seg_len);
        Ok(())
    }

    /// Close the active segment and start the next, headed by every known
    /// group's promise so no older segment is needed for promises; in a
    /// spare's file if there is one (see [`Wal`]).
    fn rotate(&mut self) -> io::Result<()> {
        let always = self.opts.fsync == FsyncPolicy::Always;
        if self.file_len > self.seg_len {
            // A recycled file: an earlier life's records follow ours. Cut
            // them off, durably, before the next segment exists: recovery
            // reads a closed segment whole and calls anything in it that
            // does not check out damage (only the last may have a tail).
            self.file.set_len(self.seg_len)?;
            if always {
                self.file.sync_data()?;
                self.stats.syncs += 1;
            }
            self.file_len = self.seg_len;
        }
        let seq = self.seq + 1;
        let seed = record::segment_seed(seq);
        let path = self.dir.join(segment_name(seq));
        let (file, file_len, named) = match self.spares.pop() {
            Some(spare) => {
                // The new name is made durable before anything is written
                // under it. A crash before that sync leaves the spare under
                // its old name, dead, or under the new one holding only
                // records that do not check out under the new seed (read
                // as empty): nothing lost either way. Written first, a
                // synced head under the new seed in a file whose rename a
                // crash undid would be damage in a closed segment, the
                // spare's, and the node would refuse to start.
                fs::rename(self.dir.join(segment_name(spare)), &path)?;
                self.step("rename");
                if always {
                    sync_dir(&self.dir)?;
                    self.stats.syncs += 1;
                    self.step("sync dir");
                }
                let file = OpenOptions::new().write(true).open(&path)?;
                let len = file.metadata()?.len();
                self.stats.segments_recycled += 1;
                (file, len, true)
            }
            None => {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                (file, 0, false)
            }
        };
        let mut head = Vec::new();
        let mut meta = SegMeta::default();
        for (g, state) in &self.groups {
            if let Some(view) = state.pb_view {
                let rec = PbRecord::View(view);
                record::encode_pb(&mut head, seed, *g, &rec, self.opts.record_bytes_max);
                continue;
            }
            let rec = Record::Promised(state.promised);
            record::encode(&mut head, seed, *g, &rec, self.opts.record_bytes_max);
            meta.note(*g, &rec);
        }
        let old = std::mem::replace(&mut self.file, file);
        drop(old);
        let old_meta = std::mem::replace(&mut self.active, meta);
        self.closed.insert(self.seq, old_meta);
        self.seq = seq;
        self.seed = seed;
        self.seg_len = 0;
        self.file_len = file_len;
        self.stats.segments_created += 1;
        if !head.is_empty() {
            self.write_segment(&head)?;
            if always {
                self.file.sync_data()?;
                self.stats.syncs += 1;
                self.step("sync head");
            }
        }
        if always && !named {
            // Without this a crash could lose the new file's name, and with
            // it every record synced into it (a recycled file's name was
            // made durable above, before its head was written).
            sync_dir(&self.dir)?;
            self.stats.syncs += 1;
            self.step("sync dir");
        }
        log::debug!("wal {}: rotated to {}", self.dir.display(), path.display());
        Ok(())
    }

    /// Note a durable step of a rotation (tests only; see
    /// `rotation_steps`).
    fn step(&mut self, _what: &'static str) {
        #[cfg(test)]
        self.rotation_steps.push(_what);
    }

    /// The core's cleanup thread, for work too slow for its loop.
    pub fn janitor(&self) -> &Janitor {
        &self.janitor
    }

    /// Forget every closed segment whose records are all below their
    /// groups' durable snapshots: keep it as a spare while there are fewer
    /// than `recycle_segments`, else delete it (on the janitor's thread if
    /// `later`). Returns how many were deleted.
    fn collect_garbage(&mut self, later: bool) -> io::Result<usize> {
        let groups = &self.groups;
        let dead: Vec<u64> = self
            .closed
            .iter()
            .filter(|(_, meta)| {
                meta.max_slot.iter().all(|(g, max)| {
                    groups
                        .get(g)
                        .and_then(|s| s.snap_index)
                        .is_some_and(|i| *max < i)
                })
            })
            .map(|(seq, _)| *seq)
            .collect();
        let always = self.opts.fsync == FsyncPolicy::Always;
        let mut paths = Vec::with_capacity(dead.len());
        for seq in dead {
            let meta = self.closed.remove(&seq).expect("a closed segment");
            if !meta.legacy && self.spares.len() < self.opts.recycle_segments {
                self.spares.push(seq);
                continue;
            }
            paths.push(self.dir.join(seg_name(seq, meta.legacy)));
            self.stats.segments_deleted += 1;
        }
        if paths.is_empty() {
            return Ok(0);
        }
        let deleted = paths.len();
        if later {
            self.janitor.remove_files(self.dir.clone(), paths, always);
            return Ok(deleted);
        }
        for path in &paths {
            fs::remove_file(path)?;
            log::debug!("wal {}: deleted {}", self.dir.display(), path.display());
        }
        if always {
            sync_dir(&self.dir)?;
            self.stats.syncs += 1;
        }
        Ok(deleted)
    }

    pub fn stats(&self) -> WalStats {
        self.stats
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `group`'s durable snapshot at `index` (`len` data bytes), mapped
    /// read-only from its file instead of held on the heap (see
    /// `snapshot::map` for why); `None` if the durable snapshot is not that
    /// one or cannot be mapped. No data page is read.
    pub fn map_snapshot(&self, group: GroupId, index: Slot, len: usize) -> Option<Bytes> {
        if self.groups.get(&group).and_then(|s| s.snap_index) != Some(index) {
            return None;
        }
        let path = self.dir.join(snapshot::file_name(group));
        snapshot::map(&path, group, index, len)
    }

    pub fn options(&self) -> &WalOptions {
        &self.opts
    }

    /// Bytes appended and not yet synced (for back-pressure).
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether an I/O error has made every later sync fail.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Segments on disk (closed ones, spares, and the active one).
    pub fn segment_count(&self) -> usize {
        self.closed.len() + self.spares.len() + 1
    }

    /// Make the next sync fail right after its write, as a failing
    /// `fdatasync` would.
    #[cfg(test)]
    pub(crate) fn fail_next_sync(&mut self) {
        self.fail_next_sync = true;
    }

    /// Swap the active segment's handle for a read-only one, so the next
    /// write fails with an I/O error (EBADF) as a dying disk would.
    #[cfg(test)]
    pub(crate) fn break_file_handle(&mut self) {
        let path = self.dir.join(segment_name(self.seq));
        self.file = File::open(path).expect("reopen segment read-only");
    }

    #[cfg(test)]
    pub(crate) fn active_segment_path(&self) -> PathBuf {
        self.dir.join(segment_name(self.seq))
    }
}

/// The primary/backup image of `group` being recovered. The first of its
/// records makes it one: the snapshot file read before the segments (in
/// `rec.groups`, as every group's is) moves over, its first 8 bytes being
/// the tag of the entry before its index (see [`Wal::append_pb`]).
fn pb_durable(rec: &mut Recovered, group: GroupId) -> Result<&mut PbDurable, String> {
    if !rec.pb.contains_key(&group) {
        let mut durable = PbDurable::default();
        if let Some(paxos) = rec.groups.remove(&group) {
            if paxos.promised != Ballot::default() || !paxos.entries.is_empty() {
                return Err(format!(
                    "group {group} has Paxos and primary/backup records"
                ));
            }
            if let Some((index, data)) = paxos.snapshot {
                if data.len() < 8 {
                    return Err(format!(
                        "group {group}: primary/backup snapshot at {index} has no tag"
                    ));
                }
                let tag = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
                durable.snapshot = Some((index, tag, data.slice(8..)));
            }
        }
        rec.pb.insert(group, durable);
    }
    Ok(rec.pb.get_mut(&group).expect("inserted above"))
}

/// Where and why a segment is damaged (not a torn tail).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Damage {
    pub offset: usize,
    pub reason: String,
}

/// What [`scan_segment`] found besides the records it handed over.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// Length of the valid prefix: every record in it was handed over.
    pub valid_len: usize,
    /// Why the bytes after `valid_len` are a torn tail, if there are any.
    pub torn: Option<String>,
}

/// Decode one segment's bytes, handing every record to `each` (its offset,
/// group and record) in order. A bad record ends the scan: in the last
/// segment, if it is provably a torn tail (see [`judge_damage`]) the scan
/// stops there with `torn` set; anywhere else it is [`Damage`]. `each` may
/// reject a record as damage too. Pure, so the simulator's disk faults run
/// the very rules recovery runs.
pub(crate) fn scan_segment(
    bytes: &[u8],
    is_last: bool,
    seed: u32,
    record_bytes_max: u32,
    mut each: impl FnMut(usize, GroupId, WalRecord) -> Result<(), Damage>,
) -> Result<Scanned, Damage> {
    let mut off = 0;
    while off < bytes.len() {
        match record::decode_at(bytes, off, seed, record_bytes_max) {
            Ok(d) => {
                each(off, d.group, d.record)?;
                off = d.next;
            }
            Err(bad) => {
                judge_damage(bytes, off, is_last, seed, record_bytes_max, &bad)?;
                return Ok(Scanned {
                    valid_len: off,
                    torn: Some(bad.reason().to_string()),
                });
            }
        }
    }
    Ok(Scanned {
        valid_len: off,
        torn: None,
    })
}

/// Decide whether a bad record at `off` is a torn tail (`Ok`) or damage.
fn judge_damage(
    bytes: &[u8],
    off: usize,
    is_last: bool,
    seed: u32,
    record_bytes_max: u32,
    bad: &Bad,
) -> Result<(), Damage> {
    let damage = |reason: String| {
        Err(Damage {
            offset: off,
            reason,
        })
    };
    if let Bad::Malformed(r) = bad {
        return damage(format!("checksum valid but contents bad: {r}"));
    }
    if !is_last {
        // A closed segment was fully written and synced before the next
        // one was created, so it cannot have a torn tail.
        return damage(format!("{} (in a closed segment)", bad.reason()));
    }
    // A torn write leaves nothing valid behind it; a bit flip (even one
    // in a length field, which can look exactly like a record running
    // past the end) does. Refusing to start beats silently dropping
    // acknowledged records. (A torn record whose command bytes happen to
    // contain an encoded record also lands here: the safe direction.)
    if let Some(next) = record::find_valid_after(bytes, off + 1, seed, record_bytes_max) {
        return damage(format!(
            "{}, but a valid record follows at offset {next}",
            bad.reason()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(7), "wal-0000000000000007.seg");
        assert_eq!(parse_segment_name(&segment_name(7)), Some((7, false)));
        assert_eq!(parse_segment_name(&legacy_segment_name(7)), Some((7, true)));
        assert_eq!(parse_segment_name("wal-7.log"), None);
        assert_eq!(parse_segment_name("wal-0000000000000007.seg.garbage"), None);
        assert_eq!(parse_segment_name("wal-000000000000000x.log"), None);
    }
}
