// SPDX-License-Identifier: MIT OR Apache-2.0
//! The frame table: one `PageInfo` per machine frame, Xen's `page_info` idea.
//!
//! Each frame a domain owns carries two counts. The general count (`count`)
//! is every use of the frame: its allocation, each mapping, each reference
//! from a page table, a pin, a base pointer. While it is non-zero the frame
//! cannot go back to the pool. The type count (`type_count`) counts uses of
//! the frame in its current type: writable mappings (`Writable`), references
//! as a page table of one level (`L1`..`L4`), use as descriptor table
//! (`SegDesc`). A frame changes type only when its type count is zero, so a
//! page table is never writable and a writable page is never a page table.
//! The counting rules live in `guest_pt`; this module stores them.

use alloc::vec::Vec;
use pv_abi::Errno;

/// Who a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// In the frame allocator's pool.
    Free,
    /// The hypervisor's own (image, tables, heap, boot modules).
    Hypervisor,
    /// The hypervisor's, and readable by every guest (the M2P table): dom0
    /// may map it read-only by naming DOMID_XEN.
    XenShared,
    /// Not RAM, or RAM that nobody may use (firmware, holes).
    Io,
    /// A domain, by ID.
    Domain(u16),
}

/// What a frame is used as, while its type count is non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageType {
    None,
    /// Mapped writable somewhere.
    Writable,
    L1,
    L2,
    L3,
    L4,
    /// A GDT or LDT frame (`set_gdt`, `update_descriptor`).
    SegDesc,
}

impl PageType {
    /// The page-table type of a level (1..=4).
    pub fn table(level: u8) -> PageType {
        match level {
            1 => PageType::L1,
            2 => PageType::L2,
            3 => PageType::L3,
            _ => PageType::L4,
        }
    }

    /// The level of a page-table type.
    pub fn level(self) -> Option<u8> {
        match self {
            PageType::L1 => Some(1),
            PageType::L2 => Some(2),
            PageType::L3 => Some(3),
            PageType::L4 => Some(4),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageInfo {
    pub owner: Owner,
    pub ty: PageType,
    pub type_count: u32,
    pub count: u32,
    /// Pinned by the guest (MMUEXT_PIN_Ln_TABLE): holds one type reference.
    pub pinned: bool,
    /// Part of the domain's memory (Xen's PGC_allocated): holds one general
    /// reference until the domain gives the frame back.
    pub allocated: bool,
}

impl PageInfo {
    pub const IO: PageInfo = PageInfo {
        owner: Owner::Io,
        ty: PageType::None,
        type_count: 0,
        count: 0,
        pinned: false,
        allocated: false,
    };

    /// A frame just given to a domain: one general reference, its allocation.
    pub fn allocated(dom: u16) -> PageInfo {
        PageInfo { owner: Owner::Domain(dom), count: 1, allocated: true, ..PageInfo::IO }
    }

    /// A frame the hypervisor shares with a domain (its shared-info page): the
    /// domain may map it, never give it away; the hypervisor holds it.
    pub fn shared(dom: u16) -> PageInfo {
        PageInfo { owner: Owner::Domain(dom), count: 1, ..PageInfo::IO }
    }
}

/// Counts stop well before they could wrap.
const COUNT_MAX: u32 = 1 << 30;

pub struct FrameTable<'a> {
    pages: &'a mut [PageInfo],
    /// Frames whose last reference went, with the domain that owned them:
    /// the owner of the table returns them to the pool.
    pub freed: Vec<(u64, u16)>,
    /// A type or a frame was released: the TLB may still hold a mapping the
    /// rules no longer allow, so it must be flushed before the guest runs.
    pub flush_needed: bool,
}

impl<'a> FrameTable<'a> {
    pub fn new(pages: &'a mut [PageInfo]) -> Self {
        FrameTable { pages, freed: Vec::new(), flush_needed: false }
    }

    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn get(&self, mfn: u64) -> Option<PageInfo> {
        self.pages.get(usize::try_from(mfn).ok()?).copied()
    }

    fn slot(&mut self, mfn: u64) -> Option<&mut PageInfo> {
        usize::try_from(mfn).ok().and_then(|i| self.pages.get_mut(i))
    }

    pub fn set(&mut self, mfn: u64, info: PageInfo) {
        if let Some(p) = self.slot(mfn) {
            *p = info;
        }
    }

    pub fn set_owner(&mut self, mfn: u64, owner: Owner) {
        if let Some(p) = self.slot(mfn) {
            p.owner = owner;
        }
    }

    /// Takes a general reference for `dom`: the frame must be its own.
    pub fn get_page(&mut self, mfn: u64, dom: u16) -> Result<(), Errno> {
        match self.slot(mfn) {
            Some(p) if p.owner == Owner::Domain(dom) && p.count > 0 && p.count < COUNT_MAX => {
                p.count += 1;
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Drops a general reference. After the last one the frame is free and
    /// listed in `freed`.
    pub fn put_page(&mut self, mfn: u64) {
        let Some(p) = self.slot(mfn) else { return };
        debug_assert!(p.count > 0, "put_page of mfn {mfn:#x} without a reference");
        p.count = p.count.saturating_sub(1);
        if p.count == 0 && matches!(p.owner, Owner::Domain(_)) {
            let dom = match p.owner {
                Owner::Domain(d) => d,
                _ => unreachable!("matched above"),
            };
            *p = PageInfo { owner: Owner::Free, ..PageInfo::IO };
            self.freed.push((mfn, dom));
            self.flush_needed = true;
        }
    }

    /// Takes a type reference of a type the frame already has (count > 0),
    /// or starts a new type on a frame whose type count is zero. Returns
    /// whether the frame needs validating (a new page-table or descriptor
    /// type): the caller validates and calls `abandon_type` if that fails.
    pub fn get_type(&mut self, mfn: u64, ty: PageType) -> Result<bool, Errno> {
        let p = self.slot(mfn).ok_or(Errno::EINVAL)?;
        if p.type_count == 0 {
            p.ty = ty;
            p.type_count = 1;
            return Ok(ty != PageType::Writable);
        }
        if p.ty != ty || p.type_count >= COUNT_MAX {
            return Err(Errno::EINVAL);
        }
        p.type_count += 1;
        Ok(false)
    }

    /// Undoes a `get_type` that started a type whose validation failed.
    pub fn abandon_type(&mut self, mfn: u64) {
        if let Some(p) = self.slot(mfn) {
            debug_assert_eq!(p.type_count, 1);
            p.type_count = 0;
            p.ty = PageType::None;
        }
    }

    /// Drops a type reference. Returns the type if this was the last one:
    /// page tables must then release what their entries hold.
    pub fn put_type(&mut self, mfn: u64) -> Option<PageType> {
        let p = self.slot(mfn)?;
        debug_assert!(p.type_count > 0, "put_type of mfn {mfn:#x} without a reference");
        p.type_count = p.type_count.saturating_sub(1);
        if p.type_count == 0 {
            let ty = p.ty;
            p.ty = PageType::None;
            self.flush_needed = true;
            return Some(ty);
        }
        None
    }

    /// Clears the allocation mark (the domain gave the frame back) and
    /// returns whether it was set: its reference is then the caller's to drop.
    pub fn take_allocated(&mut self, mfn: u64, dom: u16) -> bool {
        match self.slot(mfn) {
            Some(p) if p.owner == Owner::Domain(dom) && p.allocated => {
                p.allocated = false;
                true
            }
            _ => false,
        }
    }

    pub fn set_pinned(&mut self, mfn: u64, pinned: bool) {
        if let Some(p) = self.slot(mfn) {
            p.pinned = pinned;
        }
    }

    /// Frames per owner kind: (free, hypervisor, io, domains).
    pub fn census(&self) -> (u64, u64, u64, u64) {
        let mut c = (0, 0, 0, 0);
        for p in self.pages.iter() {
            match p.owner {
                Owner::Free => c.0 += 1,
                Owner::Hypervisor | Owner::XenShared => c.1 += 1,
                Owner::Io => c.2 += 1,
                Owner::Domain(_) => c.3 += 1,
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_references_belong_to_the_owner() {
        let mut pages = [PageInfo::IO, PageInfo::allocated(1), PageInfo::allocated(2)];
        let mut t = FrameTable::new(&mut pages);
        assert_eq!(t.get_page(1, 1), Ok(()));
        assert_eq!(t.get_page(2, 1), Err(Errno::EINVAL)); // someone else's
        assert_eq!(t.get_page(0, 1), Err(Errno::EINVAL)); // not RAM
        assert_eq!(t.get_page(9, 1), Err(Errno::EINVAL)); // beyond the table
        t.put_page(1);
        assert!(t.freed.is_empty());
        t.put_page(1); // the allocation reference: now free
        assert_eq!(t.get(1).unwrap().owner, Owner::Free);
        assert_eq!(t.freed, [(1, 1)]);
        assert_eq!(t.get_page(1, 1), Err(Errno::EINVAL));
    }

    #[test]
    fn a_frame_has_one_type_at_a_time() {
        let mut pages = [PageInfo::allocated(0)];
        let mut t = FrameTable::new(&mut pages);
        assert_eq!(t.get_type(0, PageType::Writable), Ok(false));
        assert_eq!(t.get_type(0, PageType::Writable), Ok(false));
        assert_eq!(t.get_type(0, PageType::L1), Err(Errno::EINVAL));
        assert_eq!(t.put_type(0), None);
        assert_eq!(t.put_type(0), Some(PageType::Writable));
        assert_eq!(t.get_type(0, PageType::L1), Ok(true)); // new type: validate
        assert_eq!(t.get_type(0, PageType::L1), Ok(false));
        assert_eq!(t.get_type(0, PageType::Writable), Err(Errno::EINVAL));
        t.put_type(0);
        t.put_type(0);
        assert_eq!(t.get_type(0, PageType::L2), Ok(true));
        t.abandon_type(0);
        assert_eq!(t.get(0).unwrap().ty, PageType::None);
    }
}
