// SPDX-License-Identifier: MIT OR Apache-2.0
//! The frame allocator: one bit per machine frame (1 = free) over
//! `[0, nframes)`. Only ranges handed to `add_free` are ever allocated; a frame
//! is handed out at most once until it is freed, and freeing a frame that is
//! not allocated is refused (a double free is a hypervisor bug to report, not
//! to absorb).

use super::memmap::{PAGE_SIZE, Range};

/// A machine frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mfn(pub u64);

impl Mfn {
    pub const fn addr(self) -> u64 {
        self.0 * PAGE_SIZE
    }
}

// Frames are only handed back once domains exist; host tests use it now.
#[cfg_attr(target_os = "none", allow(dead_code))]
#[derive(Debug, PartialEq, Eq)]
pub enum FreeError {
    OutOfRange,
    NotAllocated,
}

pub struct FrameAllocator<'a> {
    bitmap: &'a mut [u64],
    nframes: u64,
    free: u64,
    /// No free frame below this word index.
    hint: usize,
}

impl<'a> FrameAllocator<'a> {
    /// Bytes of bitmap needed for `nframes` frames.
    pub const fn bitmap_bytes(nframes: u64) -> u64 {
        nframes.div_ceil(64) * 8
    }

    /// An allocator with every frame in use; `bitmap` must hold `nframes` bits.
    pub fn new(bitmap: &'a mut [u64], nframes: u64) -> Self {
        assert!(bitmap.len() as u64 * 64 >= nframes);
        bitmap.fill(0);
        FrameAllocator { bitmap, nframes, free: 0, hint: 0 }
    }

    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// Whether `pfn` is in the pool and not allocated.
    pub fn is_free(&self, pfn: u64) -> bool {
        pfn < self.nframes && self.bitmap[(pfn / 64) as usize] & (1 << (pfn % 64)) != 0
    }

    fn set(&mut self, pfn: u64, free: bool) {
        let word = &mut self.bitmap[(pfn / 64) as usize];
        if free {
            *word |= 1 << (pfn % 64);
        } else {
            *word &= !(1 << (pfn % 64));
        }
    }

    /// Makes the whole frames inside `r` available (clipped to the bitmap).
    pub fn add_free(&mut self, r: Range) {
        let first = r.start.div_ceil(PAGE_SIZE);
        let last = (r.end / PAGE_SIZE).min(self.nframes);
        for pfn in first..last {
            if !self.is_free(pfn) {
                self.set(pfn, true);
                self.free += 1;
            }
        }
        self.hint = 0;
    }

    /// Lowest free frame.
    pub fn alloc(&mut self) -> Option<Mfn> {
        let idx = self.bitmap[self.hint..].iter().position(|&w| w != 0)? + self.hint;
        self.hint = idx;
        let pfn = idx as u64 * 64 + u64::from(self.bitmap[idx].trailing_zeros());
        self.set(pfn, false);
        self.free -= 1;
        Some(Mfn(pfn))
    }

    /// `n` contiguous free frames, the first aligned to `align` frames.
    pub fn alloc_contiguous(&mut self, n: u64, align: u64) -> Option<Mfn> {
        if n == 0 || align == 0 {
            return None;
        }
        let mut start = (self.hint as u64 * 64).next_multiple_of(align);
        while start + n <= self.nframes {
            match (start..start + n).rev().find(|&p| !self.is_free(p)) {
                None => {
                    for p in start..start + n {
                        self.set(p, false);
                    }
                    self.free -= n;
                    return Some(Mfn(start));
                }
                Some(used) => start = (used + 1).next_multiple_of(align),
            }
        }
        None
    }

    #[cfg_attr(target_os = "none", allow(dead_code))]
    pub fn free(&mut self, mfn: Mfn) -> Result<(), FreeError> {
        if mfn.0 >= self.nframes {
            return Err(FreeError::OutOfRange);
        }
        if self.is_free(mfn.0) {
            return Err(FreeError::NotAllocated);
        }
        self.set(mfn.0, true);
        self.free += 1;
        self.hint = self.hint.min((mfn.0 / 64) as usize);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn only_added_ranges_are_handed_out() {
        let mut bits = [0u64; 4];
        let mut a = FrameAllocator::new(&mut bits, 200);
        a.add_free(Range::new(10 * PAGE_SIZE, 12 * PAGE_SIZE));
        a.add_free(Range::new(150 * PAGE_SIZE + 1, 400 * PAGE_SIZE)); // clipped both ends
        assert_eq!(a.free_frames(), 2 + 49);
        assert_eq!(a.alloc(), Some(Mfn(10)));
        assert_eq!(a.alloc(), Some(Mfn(11)));
        assert_eq!(a.alloc(), Some(Mfn(151)));
        assert_eq!(a.free(Mfn(11)), Ok(()));
        assert_eq!(a.free(Mfn(11)), Err(FreeError::NotAllocated));
        assert_eq!(a.free(Mfn(5000)), Err(FreeError::OutOfRange));
        assert_eq!(a.alloc(), Some(Mfn(11)));
    }

    #[test]
    fn contiguous_aligned() {
        let mut bits = [0u64; 16];
        let mut a = FrameAllocator::new(&mut bits, 1024);
        a.add_free(Range::new(3 * PAGE_SIZE, 1024 * PAGE_SIZE));
        let m = a.alloc_contiguous(512, 512).unwrap();
        assert_eq!(m, Mfn(512));
        assert_eq!(a.alloc_contiguous(512, 512), None);
        assert_eq!(a.alloc_contiguous(509, 1), Some(Mfn(3)));
        assert_eq!(a.free_frames(), 0);
    }

    proptest! {
        /// No frame is handed out twice, reserved (never added) frames are
        /// never handed out, and the free count stays exact.
        #[test]
        fn never_twice_never_reserved(
            free_ranges in prop::collection::vec((0u64..300, 0u64..40), 1..6),
            ops in prop::collection::vec((0u8..3, 1u64..9, any::<prop::sample::Index>()), 0..200),
        ) {
            let mut bits = [0u64; 5];
            let mut a = FrameAllocator::new(&mut bits, 300);
            let mut pool = BTreeSet::new();
            for &(s, l) in &free_ranges {
                a.add_free(Range::new(s * PAGE_SIZE, (s + l) * PAGE_SIZE));
                pool.extend(s..(s + l).min(300));
            }
            let mut held: BTreeSet<u64> = BTreeSet::new();
            for (op, n, idx) in ops {
                match op {
                    0 => if let Some(m) = a.alloc() {
                        prop_assert!(pool.contains(&m.0));
                        prop_assert!(held.insert(m.0));
                    },
                    1 => if let Some(m) = a.alloc_contiguous(n, 1 << (n % 3)) {
                        prop_assert_eq!(m.0 % (1 << (n % 3)), 0);
                        for p in m.0..m.0 + n {
                            prop_assert!(pool.contains(&p));
                            prop_assert!(held.insert(p));
                        }
                    },
                    _ => if !held.is_empty() {
                        let p = *held.iter().nth(idx.index(held.len())).unwrap();
                        held.remove(&p);
                        prop_assert_eq!(a.free(Mfn(p)), Ok(()));
                    },
                }
                prop_assert_eq!(a.free_frames() as usize, pool.len() - held.len());
            }
        }
    }
}
