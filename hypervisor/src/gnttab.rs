// SPDX-License-Identifier: MIT OR Apache-2.0
//! Grant tables, version 1: a domain lets another map or copy one of its
//! frames by filling an entry `{flags, domid, frame}` of its shared grant
//! table. The hypervisor keeps, per granting domain, the entries in use
//! (`active`: who maps them, read-only or writable, which sets the entry's
//! GTF_reading/GTF_writing bits the granter watches), and per mapping domain
//! its mappings (`maptrack`, by handle). The frame itself is held by the
//! mapping's page-table entry (a reference, see `guest_pt::map_grant`), so
//! it cannot be freed or become a page table while mapped, whatever the
//! granter writes into its entry.

use crate::hal::FrameMemory;
use crate::mm::frame::Mfn;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use pv_abi::grant_table::{
    GNTST_BAD_GNTREF, GNTST_BAD_HANDLE, GNTST_EAGAIN, GNTST_GENERAL_ERROR, GNTST_NO_SPACE, GTF_PERMIT_ACCESS,
    GTF_READING, GTF_READONLY, GTF_TYPE_MASK, GTF_WRITING,
};

/// v1 entries per table frame (8 bytes each).
pub const ENTRIES_PER_FRAME: u32 = 512;
/// Table frames a domain may have (Xen's default max_grant_frames).
pub const MAX_FRAMES: u32 = 64;
/// Mappings a domain may hold at once.
pub const MAX_MAPTRACK: usize = 4096;

/// A grant status (`GNTST_*`), as the op's status field carries it.
pub type Status = i16;

/// An entry in use by mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Active {
    mfn: Mfn,
    mapper: u16,
    readers: u32,
    writers: u32,
}

/// One mapping this domain holds, by handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub granter: u16,
    pub gref: u32,
    pub mfn: Mfn,
    pub readonly: bool,
    /// The L1 entry holding it (table frame and index), if a host mapping.
    pub pte: Option<(Mfn, usize)>,
    /// Mapped with GNTMAP_contains_pte: unmapped by the PTE's address only.
    pub by_pte: bool,
}

#[derive(Clone, Debug, Default)]
pub struct GrantTable {
    /// The shared frames holding the entries, in order.
    pub frames: Vec<Mfn>,
    active: BTreeMap<u32, Active>,
}

/// The grant mappings a domain holds (of its own grants or another's).
#[derive(Clone, Debug, Default)]
pub struct Maptrack {
    maptrack: Vec<Option<Mapping>>,
}

/// A v1 entry: flags, domid, frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub flags: u16,
    pub domid: u16,
    pub frame: u32,
}

impl GrantTable {
    /// A table made of these shared frames.
    pub fn new(frames: Vec<Mfn>) -> Self {
        GrantTable { frames, ..Default::default() }
    }

    pub fn nr_entries(&self) -> u32 {
        self.frames.len() as u32 * ENTRIES_PER_FRAME
    }

    fn slot(&self, gref: u32) -> Option<(Mfn, usize)> {
        let frame = *self.frames.get((gref / ENTRIES_PER_FRAME) as usize)?;
        Some((frame, (gref % ENTRIES_PER_FRAME) as usize))
    }

    /// Entry `gref` as the granter wrote it.
    pub fn entry(&self, mem: &dyn FrameMemory, gref: u32) -> Option<Entry> {
        let (frame, i) = self.slot(gref)?;
        let v = mem.read_u64(frame, i);
        Some(Entry { flags: v as u16, domid: (v >> 16) as u16, frame: (v >> 32) as u32 })
    }

    /// Writes entry `gref` whole (a transfer's result).
    pub fn set_entry(&self, mem: &mut dyn FrameMemory, gref: u32, e: Entry) {
        if let Some((frame, i)) = self.slot(gref) {
            let v = u64::from(e.flags) | u64::from(e.domid) << 16 | u64::from(e.frame) << 32;
            mem.write_u64(frame, i, v);
        }
    }

    fn update_flags(&self, mem: &mut dyn FrameMemory, gref: u32, set: u16, clear: u16) {
        if let Some((frame, i)) = self.slot(gref) {
            let v = mem.read_u64(frame, i);
            let flags = ((v as u16) | set) & !clear;
            mem.write_u64(frame, i, (v & !0xffff) | u64::from(flags));
        }
    }

    /// Checks that `mapper` may use entry `gref` (read-only or not) and
    /// returns the granted frame number as the entry gives it.
    pub fn check(
        &self,
        mem: &dyn FrameMemory,
        gref: u32,
        mapper: u16,
        readonly: bool,
    ) -> Result<u64, Status> {
        let e = self.entry(mem, gref).ok_or(GNTST_BAD_GNTREF)?;
        if e.flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS || e.domid != mapper {
            return Err(GNTST_GENERAL_ERROR);
        }
        if !readonly && e.flags & GTF_READONLY != 0 {
            return Err(GNTST_GENERAL_ERROR);
        }
        Ok(u64::from(e.frame))
    }

    /// A mapping of `gref` by `mapper` begins: the entry shows it in use.
    /// An entry already mapped must be mapped by the same domain and frame.
    pub fn pin(
        &mut self,
        mem: &mut dyn FrameMemory,
        gref: u32,
        mapper: u16,
        mfn: Mfn,
        readonly: bool,
    ) -> Result<(), Status> {
        let a = self.active.entry(gref).or_insert(Active { mfn, mapper, readers: 0, writers: 0 });
        if a.mfn != mfn || a.mapper != mapper {
            return Err(GNTST_GENERAL_ERROR);
        }
        // The entry's in-use bits are set when the first mapping (of the
        // kind) begins; while mapped, Xen leaves what the granter wrote.
        let mut set = if a.readers + a.writers == 0 { GTF_READING } else { 0 };
        if readonly {
            a.readers += 1;
        } else {
            if a.writers == 0 {
                set |= GTF_WRITING;
            }
            a.writers += 1;
        }
        self.update_flags(mem, gref, set, 0);
        Ok(())
    }

    /// A mapping of `gref` ends; the in-use bits clear with the last one.
    pub fn unpin(&mut self, mem: &mut dyn FrameMemory, gref: u32, readonly: bool) {
        let Some(a) = self.active.get_mut(&gref) else { return };
        if readonly {
            a.readers = a.readers.saturating_sub(1);
        } else {
            a.writers = a.writers.saturating_sub(1);
        }
        let (readers, writers) = (a.readers, a.writers);
        if writers == 0 {
            self.update_flags(mem, gref, 0, GTF_WRITING);
        }
        if readers == 0 && writers == 0 {
            self.update_flags(mem, gref, 0, GTF_READING);
            self.active.remove(&gref);
        }
    }

    /// The frame of `gref` while it is mapped, if a mapping of this kind
    /// (read-only, or writable when a writable one exists) can reuse it: as
    /// on Xen, the entry is not read again while it is in use.
    pub fn mapped_frame(&self, gref: u32, mapper: u16, readonly: bool) -> Option<Mfn> {
        let a = self.active.get(&gref)?;
        (a.mapper == mapper && (readonly || a.writers > 0)).then_some(a.mfn)
    }

    /// Whether any grant of this table is mapped.
    pub fn any_in_use(&self) -> bool {
        !self.active.is_empty()
    }

    /// Whether any mapping uses `gref`.
    pub fn in_use(&self, gref: u32) -> bool {
        self.active.contains_key(&gref)
    }

    /// GNTTABOP_swap_grant_ref: exchanges two entries, neither in use.
    pub fn swap(&self, mem: &mut dyn FrameMemory, a: u32, b: u32) -> Result<(), Status> {
        let (Some((fa, ia)), Some((fb, ib))) = (self.slot(a), self.slot(b)) else {
            return Err(GNTST_BAD_GNTREF);
        };
        if self.in_use(a) || self.in_use(b) {
            return Err(GNTST_EAGAIN);
        }
        let (va, vb) = (mem.read_u64(fa, ia), mem.read_u64(fb, ib));
        mem.write_u64(fa, ia, vb);
        mem.write_u64(fb, ib, va);
        Ok(())
    }
}

impl Maptrack {
    /// Every mapping, by handle.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Mapping)> + '_ {
        self.maptrack.iter().enumerate().filter_map(|(h, m)| Some((h as u32, (*m)?)))
    }

    /// Records a mapping; returns its handle.
    pub fn track(&mut self, m: Mapping) -> Result<u32, Status> {
        if let Some(h) = self.maptrack.iter().position(Option::is_none) {
            self.maptrack[h] = Some(m);
            return Ok(h as u32);
        }
        if self.maptrack.len() >= MAX_MAPTRACK {
            return Err(GNTST_NO_SPACE);
        }
        self.maptrack.push(Some(m));
        Ok(self.maptrack.len() as u32 - 1)
    }

    pub fn mapping(&self, handle: u32) -> Result<Mapping, Status> {
        self.maptrack.get(handle as usize).copied().flatten().ok_or(GNTST_BAD_HANDLE)
    }

    pub fn untrack(&mut self, handle: u32) {
        if let Some(m) = self.maptrack.get_mut(handle as usize) {
            *m = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeMemory;

    fn table() -> (GrantTable, FakeMemory) {
        let mut mem = FakeMemory::default();
        mem.zero(Mfn(9));
        (GrantTable::new(alloc::vec![Mfn(9)]), mem)
    }

    fn put(mem: &mut FakeMemory, gref: usize, flags: u16, domid: u16, frame: u32) {
        mem.write_u64(Mfn(9), gref, u64::from(flags) | u64::from(domid) << 16 | u64::from(frame) << 32);
    }

    #[test]
    fn the_entry_protocol() {
        let (mut gt, mut mem) = table();
        put(&mut mem, 3, GTF_PERMIT_ACCESS, 1, 77);
        put(&mut mem, 4, GTF_PERMIT_ACCESS | GTF_READONLY, 1, 78);
        assert_eq!(gt.check(&mem, 3, 1, false), Ok(77));
        assert_eq!(gt.check(&mem, 3, 2, true), Err(GNTST_GENERAL_ERROR)); // granted to domain 1
        assert_eq!(gt.check(&mem, 4, 1, false), Err(GNTST_GENERAL_ERROR)); // read-only grant
        assert_eq!(gt.check(&mem, 4, 1, true), Ok(78));
        assert_eq!(gt.check(&mem, 5, 1, true), Err(GNTST_GENERAL_ERROR)); // not granted
        assert_eq!(gt.check(&mem, 512, 1, true), Err(GNTST_BAD_GNTREF)); // beyond the table
        // In use: reading/writing bits while mapped, cleared with the last mapping.
        gt.pin(&mut mem, 3, 1, Mfn(77), false).unwrap();
        gt.pin(&mut mem, 3, 1, Mfn(77), true).unwrap();
        assert_eq!(gt.entry(&mem, 3).unwrap().flags, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
        assert_eq!(gt.pin(&mut mem, 3, 2, Mfn(77), true), Err(GNTST_GENERAL_ERROR));
        gt.unpin(&mut mem, 3, false);
        assert_eq!(gt.entry(&mem, 3).unwrap().flags, GTF_PERMIT_ACCESS | GTF_READING);
        assert!(gt.in_use(3));
        gt.unpin(&mut mem, 3, true);
        assert_eq!(gt.entry(&mem, 3).unwrap().flags, GTF_PERMIT_ACCESS);
        assert!(!gt.in_use(3));
        // Flags cleared by the granter while mapped stay cleared.
        gt.pin(&mut mem, 3, 1, Mfn(77), true).unwrap();
        put(&mut mem, 3, 0, 1, 77);
        gt.pin(&mut mem, 3, 1, Mfn(77), true).unwrap();
        assert_eq!(gt.entry(&mem, 3).unwrap().flags, 0);
        // Swapping: not while in use; beyond the table.
        assert_eq!(gt.swap(&mut mem, 3, 4), Err(GNTST_EAGAIN));
        assert_eq!(gt.swap(&mut mem, 4, 5), Ok(()));
        assert_eq!(gt.entry(&mem, 5).unwrap().frame, 78);
        assert_eq!(gt.swap(&mut mem, 4, 512), Err(GNTST_BAD_GNTREF));
    }

    #[test]
    fn handles() {
        let mut gt = Maptrack::default();
        let m = Mapping {
            granter: 0,
            gref: 3,
            mfn: Mfn(7),
            readonly: true,
            pte: Some((Mfn(1), 2)),
            by_pte: false,
        };
        assert_eq!(gt.track(m), Ok(0));
        assert_eq!(gt.track(m), Ok(1));
        gt.untrack(0);
        assert_eq!(gt.mapping(0), Err(GNTST_BAD_HANDLE));
        assert_eq!(gt.track(m), Ok(0)); // reused
        assert_eq!(gt.mapping(1), Ok(m));
        assert_eq!(gt.mapping(99), Err(GNTST_BAD_HANDLE));
    }
}
