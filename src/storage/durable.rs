//! Directories and small files that survive a power cut, not only a crash.
//!
//! A new directory entry (a created directory or file, a rename) is durable
//! only once its parent directory is fsynced; a file's bytes only once the
//! file is. `create_dir_all` and `fs::write` do neither, so after a power
//! cut a data directory made at the first start could vanish with every
//! synced WAL record in it (found by `tests/power_loss.rs`, on a filesystem
//! that keeps only what was synced).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Makes a directory's entries (created, renamed, deleted files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents, durably: every directory from
/// `dir` up to the first one that already existed, and that one's entry
/// for the next, are fsynced. Syncs `dir` and its parent even when nothing
/// was created, so a directory made by a run that lost power before its
/// entry was synced is made durable now (a few syncs at start-up).
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    let mut created = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        created.push(d);
        p = d.parent();
    }
    fs::create_dir_all(dir)?;
    sync_dir(dir)?;
    for d in created.iter().chain(std::iter::once(&dir)) {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` so that a power cut leaves the old file or
/// the new one whole, never a torn or empty one: write a temporary beside
/// it, fsync, rename over, fsync the directory.
pub fn write_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}
