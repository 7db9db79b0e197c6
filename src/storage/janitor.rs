//! A thread that does a core's slow cleanup off its event loop: deleting
//! WAL segments a snapshot made unnecessary (unlinking a 64 MiB file and
//! syncing the directory took 30-60 ms on the development VM) and dropping
//! compacted log entries (thousands of batches of `Bytes`, 5-30 ms).
//!
//! Nothing here is needed for durability or correctness: a segment is handed
//! over only once the snapshots covering it are durable, so a crash before
//! the deletion leaves a segment that recovery reads and ignores (and the
//! next collection deletes), and dropping memory is dropping memory. A
//! failed deletion is logged, not fatal: the space stays used until the next
//! start, when recovery collects the segment again.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Sender};

enum Job {
    Drop(#[allow(dead_code)] Box<dyn Send>),
    Remove {
        dir: PathBuf,
        files: Vec<PathBuf>,
        sync_dir: bool,
    },
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
                            match fs::remove_file(f) {
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

impl Drop for Janitor {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
