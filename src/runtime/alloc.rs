//! The server's global allocator: blocks of 4 MiB and more are anonymous
//! mappings of their own, unmapped when freed; everything smaller goes to
//! the system allocator unchanged.
//!
//! Why: glibc's malloc raises its own mapping threshold to the size of
//! each mapped block freed (up to 32 MiB), so after one large frame's read
//! buffer was freed, the next ones of that size came from a thread's heap
//! and stayed resident after they were freed. 20 connections each sending
//! most of a 15 MiB frame, all on the accepting core with its partial-frame
//! budget of 64 MiB, left the server at 126-163 MB of RSS in 4 of 12 runs
//! of `tests/bounds.rs` (exact-size read buffers alone, `Conn::make_room`).
//! Fixing glibc's threshold instead (`mallopt(M_MMAP_THRESHOLD, 4 MiB)`)
//! bounded that but moved every block between 128 KiB and 4 MiB into the
//! heaps for good: a replica restarted on 1M keys held 255-314 MiB of RSS
//! instead of 177-189. Here glibc sees only the smaller blocks and keeps
//! its own policy for them.
//!
//! Blocks this large are large frames' read buffers, snapshot and
//! migration chunks and replies of large values: none per small request,
//! so a mapping each costs nothing on the hot path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// See the module documentation.
pub struct LargeMapped;

/// Blocks at least this large (with at most page alignment) are mapped.
const LARGE: usize = 4 << 20;
/// Alignment an anonymous mapping always has.
const PAGE: usize = 4096;

fn large(size: usize, align: usize) -> bool {
    size >= LARGE && align <= PAGE
}

/// A fresh zeroed mapping of `size` bytes, or null.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every block is given back the way it was taken: `large` decides
// by size and alignment, and a block's layout (size, alignment) is the one
// it was allocated or last reallocated with, as `GlobalAlloc` guarantees.
unsafe impl GlobalAlloc for LargeMapped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if large(layout.size(), layout.align()) {
            map(layout.size())
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if large(layout.size(), layout.align()) {
            map(layout.size()) // anonymous mappings are zeroed
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if large(layout.size(), layout.align()) {
            // SAFETY: `p` is a mapping of this size made by `map` or
            // `mremap` (the kernel rounds the length up to pages).
            unsafe { libc::munmap(p.cast(), layout.size()) };
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        match (large(layout.size(), align), large(new_size, align)) {
            // SAFETY: the caller's contract, passed on.
            (false, false) => unsafe { System.realloc(p, layout, new_size) },
            (true, true) => {
                // SAFETY: `p` is a mapping of `layout.size()` bytes; the
                // kernel moves it if it cannot grow in place.
                let q = unsafe {
                    libc::mremap(p.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE)
                };
                if q == libc::MAP_FAILED {
                    ptr::null_mut()
                } else {
                    q.cast()
                }
            }
            _ => {
                // SAFETY: `new_size` is non-zero and, rounded up to
                // `align`, does not overflow (the caller's contract).
                let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
                // SAFETY: a valid layout; `p` holds `layout.size()` bytes
                // and the new block `new_size`, and they are distinct.
                unsafe {
                    let q = self.alloc(new_layout);
                    if !q.is_null() {
                        ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                        self.dealloc(p, layout);
                    }
                    q
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks cross the threshold both ways with their bytes intact.
    #[test]
    fn blocks_keep_their_bytes_across_the_threshold() {
        let a = LargeMapped;
        unsafe {
            let small = Layout::from_size_align(1000, 8).unwrap();
            let p = a.alloc(small);
            assert!(!p.is_null());
            for i in 0..1000 {
                *p.add(i) = i as u8;
            }
            // small → large → larger → small
            let p = a.realloc(p, small, LARGE + 1);
            assert!(!p.is_null());
            *p.add(LARGE) = 7;
            let big = Layout::from_size_align(LARGE + 1, 8).unwrap();
            let p = a.realloc(p, big, 3 * LARGE);
            assert!(!p.is_null());
            assert_eq!(*p.add(LARGE), 7);
            let bigger = Layout::from_size_align(3 * LARGE, 8).unwrap();
            let p = a.realloc(p, bigger, 500);
            assert!(!p.is_null());
            for i in 0..500 {
                assert_eq!(*p.add(i), i as u8);
            }
            a.dealloc(p, Layout::from_size_align(500, 8).unwrap());
            let z = a.alloc_zeroed(big);
            assert!((0..LARGE + 1).step_by(4093).all(|i| *z.add(i) == 0));
            a.dealloc(z, big);
        }
    }
}
