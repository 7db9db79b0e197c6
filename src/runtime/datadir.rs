//! What a data directory says about who may use it (issue 8, finding 12).
//!
//! - `LOCK`: held with `flock(LOCK_EX | LOCK_NB)` for the life of the
//!   process, so a second server on the same directory is refused at start
//!   instead of interleaving its writes with the first one's (two servers on
//!   one directory lost an acknowledged Join). The kernel drops the lock
//!   when the process exits, however it exits, so there is nothing stale to
//!   clean up after a crash.
//! - `IDENTITY`: the node's advertised address and the cluster it belongs
//!   to (the `--masters` list, sorted: a cluster is named by its masters),
//!   written at the first start. A directory copied to another node, or
//!   started under another address or cluster, is refused: its Paxos
//!   promises were made as the recorded replica, and the same promises
//!   under a second identity could break quorum intersection. An operator
//!   who moved a node on purpose (the old address is gone for good) passes
//!   `--allow-identity-change`, which records the new identity.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{RuntimeConfig, StartError};

/// The held lock on a data directory; released when dropped (or when the
/// process exits).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Take the data directory's `LOCK`, or explain who holds it.
pub fn lock(dir: &Path) -> Result<DirLock, StartError> {
    crate::storage::create_dir_durable(dir)
        .map_err(|e| StartError(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StartError(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor this function owns; no memory involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(StartError(if e.kind() == std::io::ErrorKind::WouldBlock {
            format!(
                "refusing to start: {} is in use by another synod-server ({}); \
                 one data directory serves one process",
                dir.display(),
                holder.trim()
            )
        } else {
            format!("cannot lock {}: {e}", path.display())
        }));
    }
    // Who holds it, for the message above (best effort: the lock is what counts).
    let _ = file.set_len(0);
    let _ = std::io::Write::write_all(
        &mut &file,
        format!("pid {}\n", std::process::id()).as_bytes(),
    );
    Ok(DirLock { _file: file })
}

/// The identity line this node would record.
fn identity(cfg: &RuntimeConfig) -> String {
    let mut masters = cfg.masters.clone();
    masters.sort();
    format!(
        "advertise={}\ncluster={}\n",
        cfg.advertise,
        masters.join(",")
    )
}

/// Check (or record, at the first start or with the override) the node's
/// identity in its data directory. Call with the lock held.
pub fn check_identity(cfg: &RuntimeConfig) -> Result<(), StartError> {
    let path = cfg.data_dir.join("IDENTITY");
    let want = identity(cfg);
    let write = || {
        crate::storage::write_durable(&path, want.as_bytes())
            .map_err(|e| StartError(format!("cannot write {}: {e}", path.display())))
    };
    match std::fs::read_to_string(&path) {
        Ok(have) if have == want => Ok(()),
        Ok(have) if cfg.allow_identity_change => {
            log::warn!(
                "--allow-identity-change: {} was {:?}, now {:?}",
                cfg.data_dir.display(),
                have.trim().replace('\n', ", "),
                want.trim().replace('\n', ", ")
            );
            write()
        }
        Ok(have) => Err(StartError(format!(
            "refusing to start: {} belongs to another node or cluster ({}), \
             not this one ({}); a copied data directory must not run under a second \
             identity. If this node moved for good, start once with --allow-identity-change",
            cfg.data_dir.display(),
            have.trim().replace('\n', ", "),
            want.trim().replace('\n', ", ")
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write(),
        Err(e) => Err(StartError(format!("cannot read {}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, advertise: &str) -> RuntimeConfig {
        let mut c = RuntimeConfig::new(
            "127.0.0.1:1".parse().unwrap(),
            dir.to_path_buf(),
            vec!["127.0.0.1:2".into(), "127.0.0.1:1".into()],
        );
        c.advertise = advertise.into();
        c
    }

    fn tempdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("synod-datadir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_second_lock_on_one_directory_is_refused_until_the_first_is_released() {
        let d = tempdir("lock");
        let first = lock(&d).unwrap();
        let err = lock(&d).unwrap_err().0;
        assert!(err.contains("in use by another synod-server"), "{err}");
        drop(first);
        lock(&d).unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn identity_is_recorded_then_enforced_unless_overridden() {
        let d = tempdir("identity");
        std::fs::create_dir_all(&d).unwrap();
        check_identity(&cfg(&d, "127.0.0.1:1")).unwrap();
        check_identity(&cfg(&d, "127.0.0.1:1")).unwrap();
        let err = check_identity(&cfg(&d, "127.0.0.1:9")).unwrap_err().0;
        assert!(err.contains("--allow-identity-change"), "{err}");
        let mut moved = cfg(&d, "127.0.0.1:9");
        moved.allow_identity_change = true;
        check_identity(&moved).unwrap();
        check_identity(&cfg(&d, "127.0.0.1:9")).unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }
}
