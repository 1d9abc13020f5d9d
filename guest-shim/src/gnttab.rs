// SPDX-License-Identifier: MIT OR Apache-2.0
//! A domain's own grant entries, as a granter writes them: frame 0 of its v1
//! grant table (512 entries), mapped writable somewhere in its address space.
//!
//! The hypervisor changes the flags too (GTF_reading/GTF_writing while a
//! grant is mapped), so they are only ever accessed atomically, and an entry
//! is made out in the order `grant_table.h` asks: domid and frame first, the
//! flags that make it valid last.
//!
//! ```no_run
//! # use guest_shim::gnttab::GrantFrame;
//! # use guest_shim::pv_abi::grant_table::GrantEntryV1;
//! # let (va, mfn) = (0xffff_c900_0000_0000u64, 0x1234u32);
//! // SAFETY: `va` maps frame 0 of this domain's grant table, writable, for good.
//! let gt = unsafe { GrantFrame::at(va) };
//! gt.grant(8, GrantEntryV1::permit_access(0, mfn, false));
//! // ... dom0 maps and unmaps ref 8 ...
//! assert!(gt.end_access(8).is_ok());
//! ```

use core::sync::atomic::{AtomicU16, Ordering, fence};
use pv_abi::grant_table::{GTF_READING, GTF_WRITING, GrantEntryV1, GrantRef};

/// Entries in one v1 table frame.
pub const ENTRIES_PER_FRAME: GrantRef = 512;

/// Frame 0 of this domain's grant table at a virtual address.
#[derive(Clone, Copy, Debug)]
pub struct GrantFrame {
    base: u64,
}

impl GrantFrame {
    /// The table frame mapped at `va`.
    ///
    /// # Safety
    ///
    /// `va` must map frame 0 of this domain's grant table, writable, for as long
    /// as the returned value (or a copy) is used.
    pub unsafe fn at(va: u64) -> Self {
        GrantFrame { base: va }
    }

    /// The address it is mapped at.
    pub fn va(self) -> u64 {
        self.base
    }

    fn entry(self, r: GrantRef) -> *mut GrantEntryV1 {
        assert!(r < ENTRIES_PER_FRAME, "ref {r} is not in frame 0");
        (self.base + u64::from(r) * 8) as *mut GrantEntryV1
    }

    fn flags_word(self, r: GrantRef) -> &'static AtomicU16 {
        // SAFETY: the frame is mapped writable at `base` (the contract of `at`);
        // `flags` is the entry's first, 2-aligned field and every access to it is
        // atomic.
        unsafe { AtomicU16::from_ptr(self.entry(r).cast::<u16>()) }
    }

    /// Entry `r`'s flags.
    pub fn flags(self, r: GrantRef) -> u16 {
        self.flags_word(r).load(Ordering::SeqCst)
    }

    /// Makes entry `r` out as `e`: domid and frame, then the flags.
    pub fn grant(self, r: GrantRef, e: GrantEntryV1) {
        let p = self.entry(r);
        // SAFETY: as in `flags_word`; the hypervisor reads these fields only once
        // the flags say the entry is valid.
        unsafe {
            (&raw mut (*p).domid).write_volatile(e.domid);
            (&raw mut (*p).frame).write_volatile(e.frame);
        }
        fence(Ordering::SeqCst);
        self.flags_word(r).store(e.flags, Ordering::SeqCst);
    }

    /// Ends access to entry `r` as a granter must (Linux's
    /// `gnttab_end_foreign_access_ref`): the flags go to 0 only while neither
    /// GTF_reading nor GTF_writing is set. Fails with the flags found if the
    /// hypervisor has either set (the grant is mapped or being copied).
    pub fn end_access(self, r: GrantRef) -> Result<(), u16> {
        let word = self.flags_word(r);
        let mut now = word.load(Ordering::SeqCst);
        loop {
            if now & (GTF_READING | GTF_WRITING) != 0 {
                return Err(now);
            }
            match word.compare_exchange(now, 0, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(seen) => now = seen,
            }
        }
    }
}
