// SPDX-License-Identifier: MIT OR Apache-2.0
//! The frame table: one `PageInfo` per machine frame, Xen's `page_info` idea.
//! For now it records who owns each frame; the PV MMU adds types, type counts
//! and references on top of it.

/// Who a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// In the frame allocator's pool.
    Free,
    /// The hypervisor's own (image, tables, heap, boot modules).
    Hypervisor,
    /// Not RAM, or RAM that nobody may use (firmware, holes).
    Io,
    /// A domain, by ID (domains arrive with the PV execution issue).
    #[cfg_attr(target_os = "none", allow(dead_code))]
    Domain(u16),
}

#[derive(Clone, Copy, Debug)]
pub struct PageInfo {
    pub owner: Owner,
    /// Used as a page table by its owner (never mapped writable).
    pub pagetable: bool,
}

impl PageInfo {
    pub const IO: PageInfo = PageInfo { owner: Owner::Io, pagetable: false };
}

pub struct FrameTable<'a> {
    pages: &'a mut [PageInfo],
}

impl<'a> FrameTable<'a> {
    pub fn new(pages: &'a mut [PageInfo]) -> Self {
        FrameTable { pages }
    }

    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn get(&self, mfn: u64) -> Option<PageInfo> {
        self.pages.get(usize::try_from(mfn).ok()?).copied()
    }

    pub fn set_pagetable(&mut self, mfn: u64, pagetable: bool) {
        if let Some(p) = usize::try_from(mfn).ok().and_then(|i| self.pages.get_mut(i)) {
            p.pagetable = pagetable;
        }
    }

    pub fn set_owner(&mut self, mfn: u64, owner: Owner) {
        if let Some(p) = usize::try_from(mfn).ok().and_then(|i| self.pages.get_mut(i)) {
            p.owner = owner;
        }
    }

    /// Frames per owner kind: (free, hypervisor, io, domains).
    pub fn census(&self) -> (u64, u64, u64, u64) {
        let mut c = (0, 0, 0, 0);
        for p in self.pages.iter() {
            match p.owner {
                Owner::Free => c.0 += 1,
                Owner::Hypervisor => c.1 += 1,
                Owner::Io => c.2 += 1,
                Owner::Domain(_) => c.3 += 1,
            }
        }
        c
    }
}
