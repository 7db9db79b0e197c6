//! A thread that does a core's slow cleanup off its event loop: deleting
//! WAL segments a snapshot made unnecessary (a 1 MiB chunk at a time with
//! fsync on, [`remove_slowly`]: unlinking a 64 MiB file at once took
//! 116-180 ms on the development VM and stalled every WAL sync beside it)
//! and dropping compacted log entries (thousands of batches of `Bytes`,
//! 5-30 ms).
//! A second instance of the same thread is each WAL's snapshot writer
//! ([`Janitor::write_snapshot`]): it writes, syncs and renames a snapshot
//! file and reports back on a channel; the WAL makes it the group's
//! snapshot only when that report says it is durable.
//!
//! Nothing else here is needed for durability or correctness: a segment is handed
//! over only once the snapshots covering it are durable, so a crash before
//! the deletion leaves a segment that recovery reads and ignores (and the
//! next collection deletes), and dropping memory is dropping memory. A
//! failed deletion is logged, not fatal: the space stays used until the next
//! start, when recovery collects the segment again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{unbounded, Sender};
use synod_wire::{GroupId, Slot};

use super::snapshot;

/// Called by the writer after each report, to wake the loop that waits
/// for it (the runtime's mio `Waker`).
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// The writer's report on one snapshot file.
pub(crate) struct WriteDone {
    pub group: GroupId,
    pub index: Slot,
    pub bytes: u64,
    /// Fsyncs issued and microseconds taken, or why it failed.
    pub result: io::Result<(u64, u64)>,
}

enum Job {
    Drop(#[allow(dead_code)] Box<dyn Send>),
    Remove {
        dir: PathBuf,
        files: Vec<PathBuf>,
        sync_dir: bool,
    },
    WriteSnapshot {
        dir: PathBuf,
        group: GroupId,
        index: Slot,
        data: Bytes,
        fsync: bool,
        done: Sender<WriteDone>,
        notify: Option<Notify>,
    },
}

/// Temp file, fsync, rename, directory fsync (the last two only with
/// `fsync`): after this the snapshot survives a power cut.
fn write_snapshot_durably(
    dir: &std::path::Path,
    group: GroupId,
    index: Slot,
    data: &[u8],
    fsync: bool,
) -> io::Result<(u64, u64)> {
    let began = Instant::now();
    let mut syncs = snapshot::write(dir, group, index, data, fsync)?;
    if fsync {
        fs::File::open(dir)?.sync_all()?;
        syncs += 1;
    }
    Ok((syncs, began.elapsed().as_micros() as u64))
}

/// The most a slow deletion frees per step ([`remove_slowly`]).
pub(crate) const DELETE_CHUNK_BYTES: u64 = 1 << 20;

/// A file being deleted a chunk at a time ([`remove_slowly`]) is renamed
/// to its name with this suffix first; [`Wal::open`](super::Wal::open)
/// deletes such leftovers of a crash.
pub(crate) const GARBAGE_SUFFIX: &str = ".garbage";

/// Is `name` a file [`remove_slowly`] was deleting?
pub(crate) fn is_garbage_name(name: &str) -> bool {
    name.ends_with(GARBAGE_SUFFIX)
}

/// Delete the file at `path` gently: rename it to a garbage name
/// ([`GARBAGE_SUFFIX`]), cut `chunk` bytes off its end at a time, each cut
/// synced, with a pause after each as long as it took, and unlink it once
/// it is at most `chunk` long.
///
/// Why: unlinking a whole 64 MiB WAL segment frees all its blocks in one
/// journal transaction, and on a file system mounted with `discard` (the
/// development VM's ext4) that commit trims them all at once. Every WAL
/// `fdatasync` on the disk waits for that commit: measured with
/// `perf trace`, a segment's `unlink` took 116-180 ms and the loops'
/// `fdatasync`s beside it 85-130 ms, then 30-40 ms for a while; that was
/// the put tail at half of peak (`perf/results/latency-2026-11-30.md`).
/// Freed a chunk per commit, each sync waits for a small trim. RocksDB's
/// `DeleteScheduler` does the same (`bytes_max_delete_chunk`).
///
/// The rename comes first because recovery reads every segment and takes
/// a short closed one for damage; under the garbage name a crash midway
/// leaves a file recovery deletes, and before the rename is durable, the
/// whole segment under its old name, which recovery reads past (it is all
/// below a durable snapshot) and collects again.
pub(crate) fn remove_slowly(path: &Path, chunk: u64) -> io::Result<()> {
    let mut garbage = path.as_os_str().to_owned();
    garbage.push(GARBAGE_SUFFIX);
    let garbage = PathBuf::from(garbage);
    fs::rename(path, &garbage)?;
    let f = fs::OpenOptions::new().write(true).open(&garbage)?;
    let mut len = f.metadata()?.len();
    while len > chunk {
        let began = Instant::now();
        len -= chunk;
        f.set_len(len)?;
        f.sync_data()?;
        std::thread::sleep(began.elapsed());
    }
    drop(f);
    fs::remove_file(&garbage)
}

/// The handle; the thread ends once every handle is dropped and the queue
/// is drained. Dropping the `Janitor` waits for that, so a process that
/// drops its `Wal` does not leave deletions half done behind it.
pub struct Janitor {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Janitor {
    pub fn start(name: String) -> io::Result<Janitor> {
        let (tx, rx) = unbounded::<Job>();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            for job in rx {
                match job {
                    Job::Drop(garbage) => drop(garbage),
                    Job::Remove {
                        dir,
                        files,
                        sync_dir,
                    } => {
                        for f in &files {
                            // With fsyncs on, a big file is cut down a
                            // chunk at a time first (see `remove_slowly`).
                            let removed = if sync_dir {
                                remove_slowly(f, DELETE_CHUNK_BYTES)
                            } else {
                                fs::remove_file(f)
                            };
                            match removed {
                                Ok(()) => log::debug!("deleted {}", f.display()),
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                Err(e) => log::error!("cannot delete {}: {e}", f.display()),
                            }
                        }
                        if sync_dir {
                            if let Err(e) = fs::File::open(&dir).and_then(|d| d.sync_all()) {
                                log::error!("cannot sync {}: {e}", dir.display());
                            }
                        }
                    }
                    Job::WriteSnapshot {
                        dir,
                        group,
                        index,
                        data,
                        fsync,
                        done,
                        notify,
                    } => {
                        let result = write_snapshot_durably(&dir, group, index, &data, fsync);
                        // The WAL may be gone (shutdown): nobody to tell.
                        let _ = done.send(WriteDone {
                            group,
                            index,
                            bytes: data.len() as u64,
                            result,
                        });
                        drop(data);
                        if let Some(n) = notify {
                            n();
                        }
                    }
                }
            }
        })?;
        Ok(Janitor {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Drop `garbage` on the janitor's thread.
    pub fn drop_later<T: Send + 'static>(&self, garbage: T) {
        if let Some(tx) = &self.tx {
            // The thread only stops when we drop `tx`: sending cannot fail.
            let _ = tx.send(Job::Drop(Box::new(garbage)));
        }
    }

    /// Delete `files` of `dir` (then sync `dir` if asked) on the janitor's
    /// thread.
    pub fn remove_files(&self, dir: PathBuf, files: Vec<PathBuf>, sync_dir: bool) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Job::Remove {
                dir,
                files,
                sync_dir,
            });
        }
    }
}

impl Janitor {
    /// Write `data` as `group`'s snapshot at `index` in `dir` (temp file,
    /// fsync, rename, directory fsync; no fsyncs without `fsync`) on this
    /// thread, then report on `done` and call `notify`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_snapshot(
        &self,
        dir: PathBuf,
        group: GroupId,
        index: Slot,
        data: Bytes,
        fsync: bool,
        done: Sender<WriteDone>,
        notify: Option<Notify>,
    ) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Job::WriteSnapshot {
                dir,
                group,
                index,
                data,
                fsync,
                done,
                notify,
            });
        }
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
