//! Snapshot files: one per group, replaced atomically (layout in the module
//! doc of `storage`).
//!
//! Replacement is write-temp, fsync, rename, fsync-directory: after a crash
//! at any point the group has either its old complete snapshot or its new
//! complete one, never a mix, and a leftover temp file is deleted on open.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use byteorder::{ByteOrder, LittleEndian};
use bytes::Bytes;
use synod_wire::{GroupId, Slot};

use super::StorageError;

/// `"SYNS"` when the little-endian `u32` is written.
pub const SNAPSHOT_MAGIC: u32 = 0x534E_5953;
pub const SNAPSHOT_VERSION: u32 = 1;
pub const SNAPSHOT_HEADER_LEN: usize = 36;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_GROUP: usize = 8;
const OFF_DATA_CRC: usize = 12;
const OFF_INDEX: usize = 16;
const OFF_DATA_LEN: usize = 24;
const OFF_HEADER_CRC: usize = 32;

const _: () = assert!(OFF_VERSION == OFF_MAGIC + 4);
const _: () = assert!(OFF_GROUP == OFF_VERSION + 4);
const _: () = assert!(OFF_DATA_CRC == OFF_GROUP + 4);
const _: () = assert!(OFF_INDEX == OFF_DATA_CRC + 4);
const _: () = assert!(OFF_DATA_LEN == OFF_INDEX + 8);
const _: () = assert!(OFF_HEADER_CRC == OFF_DATA_LEN + 8);
const _: () = assert!(OFF_HEADER_CRC + 4 == SNAPSHOT_HEADER_LEN);

pub(crate) const TMP_SUFFIX: &str = ".tmp";

pub(crate) fn file_name(group: GroupId) -> String {
    format!("snap-g{group}.bin")
}

/// The group a snapshot file name (`snap-g<gid>.bin`) belongs to.
pub(crate) fn parse_name(name: &str) -> Option<GroupId> {
    let digits = name.strip_prefix("snap-g")?.strip_suffix(".bin")?;
    // Only the canonical spelling, so two names never map to one group.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let gid: GroupId = digits.parse().ok()?;
    (file_name(gid) == name).then_some(gid)
}

/// Whether `name` is a snapshot temp file (`snap-g<gid>.bin.tmp`).
pub(crate) fn is_tmp_name(name: &str) -> bool {
    name.strip_suffix(TMP_SUFFIX)
        .is_some_and(|base| parse_name(base).is_some())
}

fn header(group: GroupId, index: Slot, data: &[u8]) -> [u8; SNAPSHOT_HEADER_LEN] {
    header_of(group, index, data.len(), crc32c::crc32c(data))
}

/// The header of a snapshot of `len` bytes whose CRC32C is `data_crc`.
fn header_of(group: GroupId, index: Slot, len: usize, data_crc: u32) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0; SNAPSHOT_HEADER_LEN];
    LittleEndian::write_u32(&mut h[OFF_MAGIC..], SNAPSHOT_MAGIC);
    LittleEndian::write_u32(&mut h[OFF_VERSION..], SNAPSHOT_VERSION);
    LittleEndian::write_u32(&mut h[OFF_GROUP..], group);
    LittleEndian::write_u32(&mut h[OFF_DATA_CRC..], data_crc);
    LittleEndian::write_u64(&mut h[OFF_INDEX..], index);
    LittleEndian::write_u64(&mut h[OFF_DATA_LEN..], len as u64);
    let crc = crc32c::crc32c(&h[..OFF_HEADER_CRC]);
    LittleEndian::write_u32(&mut h[OFF_HEADER_CRC..], crc);
    h
}

/// Write the snapshot of `group` to `<dir>/snap-g<gid>.bin` atomically.
/// `fsync` false (benchmarks only) skips the file fsync; the caller syncs
/// the directory. Returns the number of fsyncs issued.
pub(crate) fn write(
    dir: &Path,
    group: GroupId,
    index: Slot,
    data: &[u8],
    fsync: bool,
) -> std::io::Result<u64> {
    let path = dir.join(file_name(group));
    let tmp = tmp_path(dir, group);
    let mut f = File::create(&tmp)?;
    if fsync {
        // The header last: its CRC is computed step by step as well.
        f.write_all(&[0; SNAPSHOT_HEADER_LEN])?;
        let crc = write_back_in_steps(&mut f, SNAPSHOT_HEADER_LEN as u64, data)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&header_of(group, index, data.len(), crc))?;
    } else {
        f.write_all(&header(group, index, data))?;
        f.write_all(data)?;
    }
    let mut syncs = 0;
    if fsync {
        // The data must be on disk before the rename makes it the snapshot,
        // or a crash could leave a new name pointing at missing blocks.
        f.sync_all()?;
        syncs += 1;
    }
    drop(f);
    fs::rename(&tmp, &path)?;
    Ok(syncs)
}

/// How much of a snapshot file is written before its write-back is
/// started (see [`write_back_in_steps`]): a WAL sync queues behind at most
/// two steps in the device's queue. On the development VM a 4 MiB step's
/// write-back took 21-36 ms, and the loops' `fdatasync`s beside a snapshot
/// write 15-50 ms; with 1 MiB steps put p99 at a million keys fell from
/// 67-86 to 56-60 ms (`perf/results/snapstall-2026-12-01-step.md`).
const WRITE_BACK_STEP: usize = 1 << 20;

/// Writes `data` at `offset` of `f` a [`WRITE_BACK_STEP`] at a time,
/// starting each step's write-back at once and waiting for the step before
/// it, so at most two steps of the file are dirty at any time, and pausing
/// after each step as long as the step took; returns `data`'s CRC32C.
///
/// Why: a snapshot of a large store is hundreds of MB. Written whole and
/// then synced, it sits dirty in the page cache until that sync, and the
/// WAL's next `fdatasync` (every loop turn, on the same disk) queues behind
/// the whole flush: the put path's tail at a million keys. Written back in
/// steps, a WAL sync waits behind at most two steps (RocksDB's
/// `bytes_per_sync`, for the same reason). The pause leaves the disk, and
/// the core this thread shares with the event loops, to the WAL at least
/// half the time: the writer takes at most half of either, whatever the
/// disk's speed (a 100 MB snapshot written at full speed on a small
/// machine took a core and the disk for a second in one burst). The final
/// `sync_all` still makes the file durable; this only spreads the work.
fn write_back_in_steps(f: &mut File, offset: u64, data: &[u8]) -> std::io::Result<u32> {
    let mut at = offset;
    let mut crc = 0;
    let mut previous: Option<(u64, u64)> = None;
    let mut steps = data.chunks(WRITE_BACK_STEP).peekable();
    while let Some(step) = steps.next() {
        let began = Instant::now();
        crc = crc32c::crc32c_append(crc, step);
        f.write_all(step)?;
        let this = (at, step.len() as u64);
        write_back(f, this, false);
        if let Some(before) = previous {
            write_back(f, before, true);
        }
        previous = Some(this);
        at += step.len() as u64;
        if steps.peek().is_some() {
            std::thread::sleep(began.elapsed());
        }
    }
    Ok(crc)
}

/// Starts the write-back of `range` (`(offset, len)`) of `f`, and with
/// `wait` waits for it to finish. Linux's `sync_file_range`: it makes
/// nothing durable (no metadata, no device cache flush), so the caller
/// still syncs, and that sync is what reports a write error; a failure
/// here only loses the pacing, so it is logged, not returned. Elsewhere
/// it does nothing.
#[cfg(target_os = "linux")]
fn write_back(f: &File, (offset, len): (u64, u64), wait: bool) {
    use std::os::fd::AsRawFd;
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    // SAFETY: a plain system call on an open descriptor `f` owns; it reads
    // no memory of ours.
    let rc = unsafe { libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, flags) };
    if rc != 0 {
        log::debug!(
            "sync_file_range on a snapshot file: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn write_back(_f: &File, _range: (u64, u64), _wait: bool) {}

/// Read and verify a snapshot file of `group`; returns `(index, data)`.
pub(crate) fn read(path: &Path, group: GroupId) -> Result<(Slot, Bytes), StorageError> {
    let bytes = fs::read(path).map_err(|e| StorageError::io(path, e))?;
    let corrupt =
        |offset: usize, reason: String| StorageError::corrupt(path, offset as u64, reason);
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err(corrupt(
            0,
            format!(
                "{} bytes, shorter than the {SNAPSHOT_HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    let header = check_header(&bytes[..SNAPSHOT_HEADER_LEN], group, bytes.len())
        .map_err(|(offset, reason)| corrupt(offset, reason))?;
    let data = &bytes[SNAPSHOT_HEADER_LEN..];
    if header.data_crc != crc32c::crc32c(data) {
        return Err(corrupt(
            SNAPSHOT_HEADER_LEN,
            "data checksum mismatch".into(),
        ));
    }
    let mut bytes = Bytes::from(bytes);
    Ok((header.index, bytes.split_off(SNAPSHOT_HEADER_LEN)))
}

/// What a snapshot file's header says, once checked.
struct Header {
    index: Slot,
    data_crc: u32,
}

/// Checks the header `h` of a snapshot file of `file_len` bytes that its
/// name says holds `group`: checksum, magic, version, group and data
/// length. The error is the offending offset and why.
fn check_header(h: &[u8], group: GroupId, file_len: usize) -> Result<Header, (usize, String)> {
    let header_crc = LittleEndian::read_u32(&h[OFF_HEADER_CRC..]);
    if header_crc != crc32c::crc32c(&h[..OFF_HEADER_CRC]) {
        return Err((OFF_HEADER_CRC, "header checksum mismatch".into()));
    }
    let magic = LittleEndian::read_u32(&h[OFF_MAGIC..]);
    if magic != SNAPSHOT_MAGIC {
        return Err((OFF_MAGIC, format!("bad magic {magic:#010x}")));
    }
    let version = LittleEndian::read_u32(&h[OFF_VERSION..]);
    if version != SNAPSHOT_VERSION {
        return Err((OFF_VERSION, format!("unknown version {version}")));
    }
    let file_group = LittleEndian::read_u32(&h[OFF_GROUP..]);
    if file_group != group {
        return Err((
            OFF_GROUP,
            format!("holds group {file_group}, its name says group {group}"),
        ));
    }
    let data_len = LittleEndian::read_u64(&h[OFF_DATA_LEN..]);
    let actual_len = (file_len - SNAPSHOT_HEADER_LEN) as u64;
    if data_len != actual_len {
        return Err((
            OFF_DATA_LEN,
            format!("header says {data_len} data bytes, the file has {actual_len}"),
        ));
    }
    Ok(Header {
        index: LittleEndian::read_u64(&h[OFF_INDEX..]),
        data_crc: LittleEndian::read_u32(&h[OFF_DATA_CRC..]),
    })
}

/// The data of `group`'s snapshot file at `path`, mapped read-only into
/// memory instead of read, if the file holds the snapshot at `index` of
/// `len` data bytes; `None` otherwise (a newer snapshot replaced it, or the
/// mapping failed: the caller keeps the copy it has).
///
/// Why: a replica keeps its latest snapshot to serve laggards, and a copy
/// on the heap is about as large as the whole store (1M keys of 64 bytes:
/// 95 MB beside the store's own ~200 MB, issue 15). Mapped, it costs no
/// memory until a laggard is served (then its pages are file-backed page
/// cache the kernel can reclaim), and a file replaced by a newer snapshot
/// stays readable through the mapping until the last slice is dropped
/// (the rename unlinks the name, not the inode).
///
/// Only the header's page is read here: it must carry `group`, `index` and
/// `len` under a valid checksum. The data's checksum was verified when the
/// file was read at start-up or is the bytes this process wrote and
/// synced; the file is never written in place after its rename, so the
/// mapping sees exactly those bytes (a later I/O error reading them back
/// would be a SIGBUS, as for any mapped file: the price of not holding
/// them twice).
pub(crate) fn map(path: &Path, group: GroupId, index: Slot, len: usize) -> Option<Bytes> {
    let file = File::open(path).ok()?;
    let file_len = usize::try_from(file.metadata().ok()?.len()).ok()?;
    if file_len != SNAPSHOT_HEADER_LEN + len {
        return None;
    }
    let mapped = Bytes::from_owner(Mapping::new(&file, file_len)?);
    let header = check_header(&mapped[..SNAPSHOT_HEADER_LEN], group, file_len).ok()?;
    (header.index == index).then(|| mapped.slice(SNAPSHOT_HEADER_LEN..))
}

/// A whole file mapped read-only and private; unmapped when the last
/// [`Bytes`] slice of it is dropped.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and never changed after `mmap`; the
// pointer is only read through `as_ref` and freed once, in `drop`.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared references only read.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(file: &File, len: usize) -> Option<Mapping> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh read-only private mapping of `len` bytes of an
        // open file; the kernel picks the address. The file may be closed
        // after this: the mapping keeps its inode.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            log::debug!(
                "snapshot: mmap failed ({}), keeping the copy in memory",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Mapping { ptr, len })
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`, and nothing
        // writes them (PROT_READ, MAP_PRIVATE, files replaced by rename).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped, once; no slice of it is
        // left (`Bytes` drops its owner after its last clone).
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

pub(crate) fn tmp_path(dir: &Path, group: GroupId) -> PathBuf {
    dir.join(format!("{}{TMP_SUFFIX}", file_name(group)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_only_canonically() {
        assert_eq!(parse_name("snap-g0.bin"), Some(0));
        assert_eq!(parse_name("snap-g42.bin"), Some(42));
        assert_eq!(parse_name("snap-g042.bin"), None);
        assert_eq!(parse_name("snap-g+4.bin"), None);
        assert_eq!(parse_name("snap-g.bin"), None);
        assert_eq!(parse_name("snap-g99999999999.bin"), None);
        assert!(is_tmp_name("snap-g3.bin.tmp"));
        assert!(!is_tmp_name("other.tmp"));
    }
}
