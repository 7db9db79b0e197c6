//! `synod-lossyfs MOUNTPOINT`: an in-memory FUSE filesystem that loses
//! exactly what a power cut loses, for fault tests on real processes.
//!
//! SIGKILL keeps the page cache, so a missing or misplaced fsync goes
//! unnoticed by kill-and-restart tests. This filesystem keeps two images
//! of everything:
//! - a file's bytes as written, and its bytes as of its last `fsync` /
//!   `fdatasync` (only what was synced survives);
//! - a directory's entries as changed (create, rename, unlink, mkdir), and
//!   its entries as of its last directory fsync: the strict POSIX rule, so
//!   a file whose name was never made durable vanishes with its data even
//!   if the file itself was synced.
//!
//! Control files (created with `mkdir` at the mount's root; the mkdir
//! itself fails with `ECANCELED` after the action, so nothing is left
//! behind):
//! - `.freeze`: the instant the power goes: from now on every operation
//!   fails with `EIO` and nothing more becomes durable (a sync already
//!   queued behind the cut never lands), until `.power-cut`.
//! - `.power-cut`: every directory reverts to its synced entries and every
//!   file reachable through them to its synced bytes; the rest is dropped.
//!   Kill the processes using the mount first (`.freeze` before killing
//!   them, so syncs they queued while dying do not land): their open files
//!   are gone. Unfreezes. One line on stderr says what was lost.
//! - `.disk-full` / `.disk-ok`: writes that grow a file fail with `ENOSPC`
//!   from now on / no longer.
//! - `.sync-fails` / `.sync-ok`: every fsync fails with `EIO` (and makes
//!   nothing durable) from now on / no longer.
//!
//! SIGTERM or SIGINT unmounts and exits. Data lives in memory only, so the
//! volume is bounded by RAM; made for tests, not for storing anything.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use fuser::{
    consts::FOPEN_DIRECT_IO, FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, FUSE_ROOT_ID,
};

/// Attributes and entries are never cached by the kernel: after a power
/// cut every lookup must see the reverted state.
const TTL: Duration = Duration::ZERO;
/// What `statfs` reports as the volume's size (the bound is RAM).
const VOLUME_BYTES: u64 = 64 << 30;
const BLOCK: u64 = 4096;
/// The names `mkdir` at the root acts on (see the module comment).
const CONTROLS: [&str; 6] = [
    ".freeze",
    ".power-cut",
    ".disk-full",
    ".disk-ok",
    ".sync-fails",
    ".sync-ok",
];

enum Body {
    File {
        data: Vec<u8>,
        synced: Vec<u8>,
        /// Lowest offset changed since the last sync (`None`: clean), so a
        /// sync of an appended-to log copies only the new tail.
        dirty_from: Option<usize>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        synced: BTreeMap<OsString, u64>,
    },
}

struct Node {
    body: Body,
    perm: u16,
    mtime: SystemTime,
}

impl Node {
    fn file(perm: u16) -> Node {
        Node {
            body: Body::File {
                data: Vec::new(),
                synced: Vec::new(),
                dirty_from: None,
            },
            perm,
            mtime: SystemTime::now(),
        }
    }

    fn dir(perm: u16) -> Node {
        Node {
            body: Body::Dir {
                entries: BTreeMap::new(),
                synced: BTreeMap::new(),
            },
            perm,
            mtime: SystemTime::now(),
        }
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size, nlink) = match &self.body {
            Body::File { data, .. } => (FileType::RegularFile, data.len() as u64, 1),
            Body::Dir { entries, .. } => (FileType::Directory, 0, 2 + entries.len() as u32),
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            crtime: self.mtime,
            kind,
            perm: self.perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLOCK as u32,
            flags: 0,
        }
    }
}

struct LossyFs {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    disk_full: bool,
    sync_fails: bool,
    frozen: bool,
}

/// Set by SIGTERM/SIGINT: the main thread unmounts.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

impl LossyFs {
    fn new() -> LossyFs {
        let mut nodes = HashMap::new();
        nodes.insert(FUSE_ROOT_ID, Node::dir(0o755));
        LossyFs {
            nodes,
            next_ino: FUSE_ROOT_ID + 1,
            disk_full: false,
            sync_fails: false,
            frozen: false,
        }
    }

    fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>, libc::c_int> {
        match self.nodes.get(&dir).map(|n| &n.body) {
            Some(Body::Dir { entries, .. }) => Ok(entries),
            Some(Body::File { .. }) => Err(libc::ENOTDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, libc::c_int> {
        match self.nodes.get_mut(&dir).map(|n| &mut n.body) {
            Some(Body::Dir { entries, .. }) => Ok(entries),
            Some(Body::File { .. }) => Err(libc::ENOTDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn child(&self, dir: u64, name: &OsStr) -> Result<u64, libc::c_int> {
        self.entries(dir)?.get(name).copied().ok_or(libc::ENOENT)
    }

    /// Adds `node` as `name` in `parent` (which must not have it).
    fn insert(&mut self, parent: u64, name: &OsStr, node: Node) -> Result<FileAttr, libc::c_int> {
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let attr = node.attr(ino);
        self.nodes.insert(ino, node);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.touch(parent);
        Ok(attr)
    }

    fn touch(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.mtime = SystemTime::now();
        }
    }

    /// Nodes reachable from the root through current entries and, with
    /// `synced`, also through entries as of the last directory sync.
    fn reachable(&self, synced: bool) -> std::collections::HashSet<u64> {
        let mut live = std::collections::HashSet::new();
        let mut stack = vec![FUSE_ROOT_ID];
        while let Some(ino) = stack.pop() {
            if !live.insert(ino) {
                continue;
            }
            if let Some(Node {
                body:
                    Body::Dir {
                        entries,
                        synced: durable,
                    },
                ..
            }) = self.nodes.get(&ino)
            {
                stack.extend(entries.values());
                if synced {
                    stack.extend(durable.values());
                }
            }
        }
        live
    }

    /// Drops nodes that no directory names any more, now or as synced (no
    /// process holds them open in the tests' use: the servers are killed
    /// before a cut, and unlinked files are never read again by Synod).
    fn collect(&mut self) {
        let live = self.reachable(true);
        self.nodes.retain(|ino, _| live.contains(ino));
    }

    /// Bytes held by files (what `statfs` reports as used).
    fn bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match &n.body {
                Body::File { data, .. } => data.len() as u64,
                Body::Dir { .. } => 0,
            })
            .sum()
    }

    /// The power cut: only what was synced, reachable through synced
    /// directory entries, survives.
    fn power_cut(&mut self) {
        let (mut files, mut lost_bytes, mut lost_entries) = (0u64, 0u64, 0u64);
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File {
                    data,
                    synced,
                    dirty_from,
                } => {
                    if dirty_from.is_some() || data.len() != synced.len() {
                        files += 1;
                        let differs = match dirty_from {
                            Some(from) => data.len().saturating_sub(*from),
                            None => 0,
                        };
                        lost_bytes += (differs as u64)
                            .max((data.len() as i64 - synced.len() as i64).unsigned_abs());
                    }
                    *data = synced.clone();
                    *dirty_from = None;
                }
                Body::Dir { entries, synced } => {
                    lost_entries += entries
                        .iter()
                        .filter(|(k, v)| synced.get(*k) != Some(v))
                        .count() as u64;
                    lost_entries +=
                        synced.keys().filter(|k| !entries.contains_key(*k)).count() as u64;
                    *entries = synced.clone();
                }
            }
        }
        // Nodes only the lost entries named are gone.
        let live = self.reachable(false);
        self.nodes.retain(|ino, _| live.contains(ino));
        eprintln!(
            "synod-lossyfs: power cut: {files} files lost unsynced bytes (about {lost_bytes} bytes), \
             {lost_entries} directory entries reverted"
        );
    }

    fn control(&mut self, name: &OsStr) -> bool {
        match name.to_str() {
            Some(".freeze") => self.frozen = true,
            Some(".power-cut") => {
                self.power_cut();
                self.frozen = false;
            }
            Some(".disk-full") => self.disk_full = true,
            Some(".disk-ok") => self.disk_full = false,
            Some(".sync-fails") => self.sync_fails = true,
            Some(".sync-ok") => self.sync_fails = false,
            _ => return false,
        }
        eprintln!("synod-lossyfs: {}", name.to_string_lossy());
        true
    }

    fn sync_file(&mut self, ino: u64) -> Result<(), libc::c_int> {
        if self.sync_fails {
            return Err(libc::EIO);
        }
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::File {
                data,
                synced,
                dirty_from,
            }) => {
                if let Some(from) = dirty_from.take() {
                    synced.truncate(from.min(data.len()));
                    synced.extend_from_slice(&data[synced.len()..]);
                } else if synced.len() != data.len() {
                    synced.clone_from(data);
                }
                Ok(())
            }
            Some(Body::Dir { entries, synced }) => {
                synced.clone_from(entries);
                Ok(())
            }
            None => Err(libc::ENOENT),
        }
    }
}

fn result(reply: ReplyEmpty, r: Result<(), libc::c_int>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for LossyFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        // The kernel looks a name up before it makes it: control names
        // never exist, also while frozen.
        if parent == FUSE_ROOT_ID && CONTROLS.contains(&name.to_str().unwrap_or("")) {
            return reply.error(libc::ENOENT);
        }
        if self.frozen {
            return reply.error(libc::EIO);
        }
        match self.child(parent, name) {
            Ok(ino) => reply.entry(&TTL, &self.nodes[&ino].attr(ino), 0),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        if self.frozen && ino != FUSE_ROOT_ID {
            return reply.error(libc::EIO);
        }
        match self.nodes.get(&ino) {
            Some(n) => reply.attr(&TTL, &n.attr(ino)),
            None => reply.error(libc::ENOENT),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        let disk_full = self.disk_full;
        let Some(node) = self.nodes.get_mut(&ino) else {
            return reply.error(libc::ENOENT);
        };
        if let Some(size) = size {
            let Body::File {
                data, dirty_from, ..
            } = &mut node.body
            else {
                return reply.error(libc::EISDIR);
            };
            let size = size as usize;
            if size > data.len() && disk_full {
                return reply.error(libc::ENOSPC);
            }
            let from = size.min(data.len());
            data.resize(size, 0);
            *dirty_from = Some(dirty_from.map_or(from, |d| d.min(from)));
            node.mtime = SystemTime::now();
        }
        if let Some(mode) = mode {
            node.perm = (mode & 0o7777) as u16;
        }
        let attr = node.attr(ino);
        reply.attr(&TTL, &attr);
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        if parent == FUSE_ROOT_ID && self.control(name) {
            return reply.error(libc::ECANCELED);
        }
        if self.frozen {
            return reply.error(libc::EIO);
        }
        match self.insert(parent, name, Node::dir((mode & 0o7777) as u16)) {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        match self.insert(parent, name, Node::file((mode & 0o7777) as u16)) {
            Ok(attr) => reply.created(&TTL, &attr, 0, 0, FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        let r = (|| {
            let ino = self.child(parent, name)?;
            if matches!(self.nodes[&ino].body, Body::Dir { .. }) {
                return Err(libc::EISDIR);
            }
            self.entries_mut(parent)?.remove(name);
            self.touch(parent);
            self.collect();
            Ok(())
        })();
        result(reply, r);
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        let r = (|| {
            let ino = self.child(parent, name)?;
            if !self.entries(ino)?.is_empty() {
                return Err(libc::ENOTEMPTY);
            }
            self.entries_mut(parent)?.remove(name);
            self.touch(parent);
            self.collect();
            Ok(())
        })();
        result(reply, r);
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        let r = (|| {
            if flags != 0 {
                return Err(libc::EINVAL);
            }
            let ino = self.child(parent, name)?;
            if let Ok(old) = self.child(newparent, newname) {
                let (a, b) = (&self.nodes[&ino].body, &self.nodes[&old].body);
                match (a, b) {
                    (Body::File { .. }, Body::Dir { .. }) => return Err(libc::EISDIR),
                    (Body::Dir { .. }, Body::File { .. }) => return Err(libc::ENOTDIR),
                    (Body::Dir { .. }, Body::Dir { entries, .. }) if !entries.is_empty() => {
                        return Err(libc::ENOTEMPTY)
                    }
                    _ => {}
                }
            }
            self.entries_mut(parent)?.remove(name);
            self.entries_mut(newparent)?.insert(newname.to_owned(), ino);
            self.touch(parent);
            self.touch(newparent);
            self.collect();
            Ok(())
        })();
        result(reply, r);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        match self.nodes.get(&ino) {
            Some(_) => reply.opened(0, FOPEN_DIRECT_IO),
            None => reply.error(libc::ENOENT),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        match self.nodes.get(&ino).map(|n| &n.body) {
            Some(Body::File { data, .. }) => {
                let start = (offset.max(0) as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Some(Body::Dir { .. }) => reply.error(libc::EISDIR),
            None => reply.error(libc::ENOENT),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        bytes: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        let disk_full = self.disk_full;
        let Some(node) = self.nodes.get_mut(&ino) else {
            return reply.error(libc::ENOENT);
        };
        let Body::File {
            data, dirty_from, ..
        } = &mut node.body
        else {
            return reply.error(libc::EISDIR);
        };
        let Ok(start) = usize::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        let end = start + bytes.len();
        if end > data.len() {
            if disk_full {
                return reply.error(libc::ENOSPC);
            }
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        *dirty_from = Some(dirty_from.map_or(start, |d| d.min(start)));
        node.mtime = SystemTime::now();
        reply.written(bytes.len() as u32);
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        // Close makes nothing durable.
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        let r = self.sync_file(ino);
        result(reply, r);
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        match self.entries(ino) {
            Ok(_) => reply.opened(0, 0),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        let entries = match self.entries(ino) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let listing = [
            (ino, FileType::Directory, OsStr::new(".")),
            (ino, FileType::Directory, OsStr::new("..")),
        ]
        .into_iter()
        .chain(entries.iter().map(|(name, child)| {
            let kind = match self.nodes.get(child).map(|n| &n.body) {
                Some(Body::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (*child, kind, name.as_os_str())
        }));
        for (i, (child, kind, name)) in listing.enumerate().skip(offset.max(0) as usize) {
            if reply.add(child, (i + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        let r = self.sync_file(ino);
        result(reply, r);
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        let blocks = VOLUME_BYTES / BLOCK;
        let used = self.bytes().div_ceil(BLOCK);
        let free = if self.disk_full {
            0
        } else {
            blocks.saturating_sub(used)
        };
        reply.statfs(
            blocks,
            free,
            free,
            1 << 20,
            1 << 20,
            BLOCK as u32,
            255,
            BLOCK as u32,
        );
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, _mask: i32, reply: ReplyEmpty) {
        if self.frozen {
            return reply.error(libc::EIO);
        }
        match self.nodes.get(&ino) {
            Some(_) => reply.ok(),
            None => reply.error(libc::ENOENT),
        }
    }
}

/// An in-memory FUSE filesystem that loses exactly what a power cut loses
/// (control files: see the doc comment of src/bin/synod-lossyfs.rs).
#[derive(clap::Parser)]
#[command(name = "synod-lossyfs", version, args_override_self = true)]
struct Args {
    /// Where to mount it (needs /dev/fuse and root)
    mountpoint: std::path::PathBuf,
}

fn main() -> ExitCode {
    let Args { mountpoint } = clap::Parser::parse();
    let mountpoint = mountpoint.display().to_string();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let options = [
        MountOption::FSName("synod-lossyfs".into()),
        MountOption::RW,
        MountOption::NoAtime,
    ];
    let session = match fuser::spawn_mount2(LossyFs::new(), &mountpoint, &options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("synod-lossyfs: cannot mount {mountpoint}: {e} (needs /dev/fuse and root)");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("synod-lossyfs: mounted {mountpoint}");
    while !STOP.load(Ordering::SeqCst) && !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(session);
    eprintln!("synod-lossyfs: unmounted {mountpoint}");
    ExitCode::SUCCESS
}
