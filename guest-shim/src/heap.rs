// SPDX-License-Identifier: MIT OR Apache-2.0
//! A bump allocator over a static arena (feature `alloc`).
//!
//! Allocation moves a cursor up; freeing the most recent allocation moves it back, and
//! when every allocation has been freed the whole arena is reused. That suits test and
//! example guests (allocate, check, drop) without the bookkeeping of a general
//! allocator; a guest that churns memory needs a real one.
//!
//! ```ignore
//! extern crate alloc;
//! #[global_allocator]
//! static HEAP: guest_shim::heap::BumpHeap<{ 1 << 20 }> = guest_shim::heap::BumpHeap::new();
//! ```
//!
//! The arena is part of the image (`.bss`), so it is mapped from the start and counts
//! towards the image size the builder loads.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

use spin::Mutex;

/// Arena storage, page-aligned.
#[repr(C, align(4096))]
struct Arena<const N: usize>(UnsafeCell<[u8; N]>);

/// Cursor state.
struct State {
    /// Offset of the first free byte.
    next: usize,
    /// Allocations not yet freed.
    live: usize,
}

/// A bump allocator over an `N`-byte arena of its own. See the [module docs](self).
pub struct BumpHeap<const N: usize> {
    arena: Arena<N>,
    state: Mutex<State>,
}

// SAFETY: the arena is only reached through `alloc`/`dealloc`, which hand out
// disjoint ranges under the `state` lock.
unsafe impl<const N: usize> Sync for BumpHeap<N> {}

impl<const N: usize> BumpHeap<N> {
    /// An empty heap.
    pub const fn new() -> Self {
        Self { arena: Arena(UnsafeCell::new([0; N])), state: Mutex::new(State { next: 0, live: 0 }) }
    }

    /// Bytes handed out and not reclaimed yet (including alignment padding).
    pub fn used(&self) -> usize {
        self.state.lock().next
    }

    /// The arena's capacity.
    pub const fn capacity(&self) -> usize {
        N
    }

    fn base(&self) -> *mut u8 {
        self.arena.0.get().cast()
    }
}

impl<const N: usize> Default for BumpHeap<N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `alloc` returns null or a range of `layout.size()` bytes aligned to
// `layout.align()` inside the arena, disjoint from every live allocation (the cursor
// only moves back over freed memory: the last allocation, or everything when nothing
// is live).
unsafe impl<const N: usize> GlobalAlloc for BumpHeap<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut s = self.state.lock();
        let base = self.base() as usize;
        let Some(start) = (base + s.next).checked_next_multiple_of(layout.align()) else {
            return ptr::null_mut();
        };
        let offset = start - base;
        match offset.checked_add(layout.size()) {
            Some(end) if end <= N => {
                s.next = end;
                s.live += 1;
                // Stay inside the arena's provenance.
                self.base().wrapping_add(offset)
            }
            _ => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let mut s = self.state.lock();
        s.live = s.live.saturating_sub(1);
        let offset = p as usize - self.base() as usize;
        if s.live == 0 {
            s.next = 0;
        } else if offset + layout.size() == s.next {
            s.next = offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_alignment_and_reuse() {
        let h = BumpHeap::<4096>::new();
        let l8 = Layout::from_size_align(8, 8).unwrap();
        let l64 = Layout::from_size_align(100, 64).unwrap();
        // SAFETY: layouts are non-zero-sized; pointers are freed with their layouts.
        unsafe {
            let a = h.alloc(l8);
            let b = h.alloc(l64);
            assert!(!a.is_null() && !b.is_null());
            assert_eq!(b as usize % 64, 0);
            assert!(b as usize >= a as usize + 8);
            assert_eq!(h.used(), 64 + 100);
            // Freeing the last allocation gives its bytes back (not the padding
            // before it).
            h.dealloc(b, l64);
            assert_eq!(h.used(), 64);
            // Freeing everything resets the arena.
            h.dealloc(a, l8);
            assert_eq!(h.used(), 0);
        }
    }

    #[test]
    fn exhaustion_returns_null() {
        let h = BumpHeap::<256>::new();
        let big = Layout::from_size_align(200, 8).unwrap();
        // SAFETY: as above.
        unsafe {
            let a = h.alloc(big);
            assert!(!a.is_null());
            assert!(h.alloc(big).is_null());
            h.dealloc(a, big);
            assert!(!h.alloc(big).is_null());
        }
    }
}
