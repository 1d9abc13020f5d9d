// SPDX-License-Identifier: MIT OR Apache-2.0
//! Guest page tables, validated: Xen's PV MMU rules on top of the frame
//! table's counts.
//!
//! A frame becomes a page table of level N (type `LN`) only by validation:
//! every present entry must be acceptable, and each takes a reference on what
//! it points at (L2-L4: the next table, typed one level down; L1: the mapped
//! frame, typed `Writable` if the mapping is writable). The type holds while
//! anything references the table (an entry of a validated parent, a pin, a
//! base pointer); when the last type reference goes, the entries' references
//! are released. Every change to a validated table goes through
//! [`Mmu::mod_entry`], which keeps the references exact. The result: a guest
//! maps only frames it owns, never writes a page table except through us, and
//! the hypervisor's L4 slots are the hypervisor's.

use crate::hal::FrameMemory;
use crate::mm::frame::Mfn;
use crate::mm::frame_table::{FrameTable, Owner, PageType};
use crate::pv::descriptor::check_descriptor;
use pv_abi::Errno;

pub const PTE_P: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_USER: u64 = 1 << 2;
pub const PTE_PWT: u64 = 1 << 3;
pub const PTE_PCD: u64 = 1 << 4;
pub const PTE_A: u64 = 1 << 5;
pub const PTE_D: u64 = 1 << 6;
/// Large page (in L2/L3 entries); PAT in L1 entries.
pub const PTE_PS: u64 = 1 << 7;
pub const PTE_G: u64 = 1 << 8;
pub const PTE_NX: u64 = 1 << 63;
/// Machine-address bits of an entry (bits 12..51).
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Bits for the guest's own use: 9-11 and 52-62.
const PTE_AVAIL: u64 = (7 << 9) | (0x7ff << 52);
/// Marks a kernel mapping in a stored L1 entry (Xen's _PAGE_GUEST_KERNEL).
pub const PTE_GUEST_KERNEL: u64 = 1 << 52;
/// What a guest may set in any entry (Xen's `base_disallow_mask` inverted).
const PTE_ALLOWED: u64 = PTE_P | PTE_RW | PTE_USER | PTE_A | PTE_D | PTE_AVAIL | PTE_NX | PTE_ADDR;
/// L1 entries may also hold the cache attributes (a domain with I/O memory:
/// dom0) and the global bit (dropped: see `stored_l1e`).
const PTE_CACHE: u64 = PTE_PWT | PTE_PCD | PTE_PS;

/// The hypervisor's slots in every guest L4 (0xffff800000000000 to
/// 0xffff880000000000): written at validation, never by the guest.
pub const HV_SLOTS: core::ops::Range<usize> = 256..272;
/// The L4 slot of the read-only M2P (MACH2PHYS_VIRT_START).
const RO_MPT_SLOT: usize = 256;
/// The local APIC's frame: the hypervisor's even for dom0.
const APIC_MFN: u64 = 0xfee00;

/// The frame an entry points at.
pub fn entry_mfn(e: u64) -> Mfn {
    Mfn((e & PTE_ADDR) >> 12)
}

/// The frame and index of the L1 entry that maps `va` under the L4 at `l4`,
/// if L4, L3 and L2 entries are present and none is a large page.
pub fn l1_slot(mem: &(impl FrameMemory + ?Sized), l4: Mfn, va: u64) -> Result<(Mfn, usize), Errno> {
    let mut table = l4;
    for level in (1..4).rev() {
        let e = mem.read_u64(table, ((va >> (12 + 9 * level)) & 511) as usize);
        if e & PTE_P == 0 || e & PTE_PS != 0 {
            return Err(Errno::EINVAL);
        }
        table = entry_mfn(e);
    }
    Ok((table, ((va >> 12) & 511) as usize))
}

/// One domain's view of the page-table machinery, for the length of one
/// hypercall or fault.
pub struct Mmu<'a, 'f> {
    pub ft: &'a mut FrameTable<'f>,
    pub mem: &'a mut dyn FrameMemory,
    pub dom: u16,
    /// May map I/O memory (frames that are not RAM) and set cache attributes.
    pub io_mem: bool,
    /// The hypervisor's L4 entries for `HV_SLOTS`.
    pub hv_slots: &'a [u64; 16],
    /// One past the highest frame the machine can address (its physical
    /// address width): I/O mappings beyond it are refused.
    pub mfn_limit: u64,
    /// The request names DOMID_XEN: the M2P may be mapped read-only.
    pub foreign_xen: bool,
}

impl<'a, 'f> Mmu<'a, 'f> {
    pub fn new(
        ft: &'a mut FrameTable<'f>,
        mem: &'a mut dyn FrameMemory,
        dom: u16,
        io_mem: bool,
        hv_slots: &'a [u64; 16],
    ) -> Self {
        Mmu { ft, mem, dom, io_mem, hv_slots, mfn_limit: 1 << 40, foreign_xen: false }
    }

    pub fn get_page(&mut self, mfn: Mfn) -> Result<(), Errno> {
        self.ft.get_page(mfn.0, self.dom)
    }

    /// A reference on a frame of domain `owner` (a granted frame).
    pub fn get_page_for(&mut self, mfn: Mfn, owner: u16) -> Result<(), Errno> {
        self.ft.get_page(mfn.0, owner)
    }

    pub fn put_page(&mut self, mfn: Mfn) {
        self.ft.put_page(mfn.0);
    }

    /// Takes a type reference, validating the frame if the type is new.
    pub fn get_type(&mut self, mfn: Mfn, ty: PageType) -> Result<(), Errno> {
        if !self.ft.get_type(mfn.0, ty)? {
            return Ok(());
        }
        let r = match ty.level() {
            Some(level) => self.validate(mfn, level),
            None if ty == PageType::SegDesc => self.validate_descriptors(mfn),
            None => Ok(()),
        };
        if r.is_err() {
            self.ft.abandon_type(mfn.0);
        }
        r
    }

    pub fn put_type(&mut self, mfn: Mfn) {
        if let Some(level) = self.ft.put_type(mfn.0).and_then(PageType::level) {
            self.devalidate(mfn, level);
        }
    }

    pub fn get_page_and_type(&mut self, mfn: Mfn, ty: PageType) -> Result<(), Errno> {
        self.get_page(mfn)?;
        self.get_type(mfn, ty).inspect_err(|_| self.put_page(mfn))
    }

    pub fn put_page_and_type(&mut self, mfn: Mfn) {
        self.put_type(mfn);
        self.put_page(mfn);
    }

    /// Whether index `i` of a level-`level` table is the guest's to fill.
    fn guest_slot(level: u8, i: usize) -> bool {
        level != 4 || !HV_SLOTS.contains(&i)
    }

    /// Takes the references every present entry of a new table holds. On a
    /// bad entry, releases what it took and fails.
    fn validate(&mut self, table: Mfn, level: u8) -> Result<(), Errno> {
        for i in 0..512 {
            if !Self::guest_slot(level, i) {
                continue;
            }
            let e = self.mem.read_u64(table, i);
            let r = self.get_entry(level, e).map(|stored| {
                if stored != e {
                    self.mem.write_u64(table, i, stored);
                }
            });
            if let Err(err) = r {
                for j in 0..i {
                    if Self::guest_slot(level, j) {
                        let e = self.mem.read_u64(table, j);
                        self.put_entry(level, e);
                    }
                }
                return Err(err);
            }
        }
        if level == 4 {
            // The read-only M2P slot is filled when the L4 becomes a kernel
            // base pointer (as on Xen: user page tables do not show it).
            for (k, i) in HV_SLOTS.enumerate() {
                self.mem.write_u64(table, i, if i == RO_MPT_SLOT { 0 } else { self.hv_slots[k] });
            }
        }
        Ok(())
    }

    /// Maps the read-only M2P in a validated L4 that becomes a kernel base
    /// pointer.
    pub fn fill_ro_mpt(&mut self, l4: Mfn) {
        self.mem.write_u64(l4, RO_MPT_SLOT, self.hv_slots[RO_MPT_SLOT - HV_SLOTS.start]);
    }

    /// A descriptor page: every descriptor must be one a guest may hold
    /// (stored as fixed up). Descriptors hold no references.
    fn validate_descriptors(&mut self, page: Mfn) -> Result<(), Errno> {
        let mut fixed = [0u64; 512];
        for (i, f) in fixed.iter_mut().enumerate() {
            *f = check_descriptor(self.mem.read_u64(page, i)).ok_or(Errno::EINVAL)?;
        }
        for (i, f) in fixed.iter().enumerate() {
            self.mem.write_u64(page, i, *f);
        }
        Ok(())
    }

    fn devalidate(&mut self, table: Mfn, level: u8) {
        for i in 0..512 {
            if Self::guest_slot(level, i) {
                let e = self.mem.read_u64(table, i);
                self.put_entry(level, e);
            }
        }
    }

    /// Checks a new entry of a level-`level` table, takes the reference it
    /// holds, and returns it as stored.
    fn get_entry(&mut self, level: u8, e: u64) -> Result<u64, Errno> {
        if e & PTE_P == 0 {
            return Ok(e);
        }
        let allowed = match level {
            1 if self.io_mem => PTE_ALLOWED | PTE_G | PTE_CACHE,
            1 => PTE_ALLOWED | PTE_G,
            _ => PTE_ALLOWED,
        };
        if e & !allowed != 0 {
            return Err(Errno::EINVAL);
        }
        let mfn = entry_mfn(e);
        if level > 1 {
            self.get_page_and_type(mfn, PageType::table(level - 1))?;
            return Ok(e | PTE_USER);
        }
        // Xen's answers for L1 entries: -EBUSY for RAM the domain may not map
        // (or not writably), -EPERM for I/O memory it has no access to.
        match self.ft.get(mfn.0).map(|p| p.owner) {
            Some(Owner::Domain(d)) if d == self.dom => {
                let r = if e & PTE_RW != 0 {
                    self.get_page_and_type(mfn, PageType::Writable)
                } else {
                    self.get_page(mfn)
                };
                r.map_err(|_| Errno::EBUSY)?;
                Ok(stored_l1e(e))
            }
            // The M2P, read-only, for a privileged domain naming DOMID_XEN.
            Some(Owner::XenShared) if self.foreign_xen && e & PTE_RW == 0 => Ok(stored_l1e(e)),
            Some(Owner::Io) | None => self.io_entry(e),
            _ => Err(Errno::EBUSY),
        }
    }

    /// An L1 entry for memory that is not RAM: a domain with I/O memory
    /// (dom0) may map it, uncached, within the machine's physical address
    /// width, except the local APIC; Xen's INVALID_MFN is a plain error.
    fn io_entry(&self, e: u64) -> Result<u64, Errno> {
        let mfn = entry_mfn(e).0;
        if mfn == PTE_ADDR >> 12 {
            return Err(Errno::EINVAL);
        }
        if !self.io_mem || mfn >= self.mfn_limit || mfn == APIC_MFN {
            return Err(Errno::EPERM);
        }
        Ok(stored_l1e(e) | PTE_PCD | PTE_PWT)
    }

    /// Releases the reference a present entry holds.
    fn put_entry(&mut self, level: u8, e: u64) {
        if e & PTE_P == 0 {
            return;
        }
        let mfn = entry_mfn(e);
        if level > 1 {
            return self.put_page_and_type(mfn);
        }
        match self.ft.get(mfn.0) {
            Some(p) if matches!(p.owner, Owner::Domain(_)) => {
                if e & PTE_RW != 0 {
                    self.put_type(mfn);
                }
                self.put_page(mfn);
            }
            _ => {}
        }
    }

    /// The level of the validated page table in `mfn`, if it is one of ours.
    pub fn table_level(&self, mfn: Mfn) -> Option<u8> {
        let p = self.ft.get(mfn.0)?;
        if p.owner != Owner::Domain(self.dom) || p.type_count == 0 {
            return None;
        }
        p.ty.level()
    }

    /// Writes entry `index` of the validated table `table`: the new entry is
    /// checked and referenced before the old one is released.
    pub fn mod_entry(&mut self, table: Mfn, index: usize, new: u64, preserve_ad: bool) -> Result<(), Errno> {
        let level = self.table_level(table).ok_or(Errno::EINVAL)?;
        if index >= 512 || !Self::guest_slot(level, index) {
            return Err(Errno::EINVAL);
        }
        let old = self.mem.read_u64(table, index);
        let new = if preserve_ad { new | (old & (PTE_A | PTE_D)) } else { new };
        let stored = self.get_entry(level, new)?;
        self.mem.write_u64(table, index, stored);
        self.put_entry(level, old);
        Ok(())
    }

    /// Writes a grant mapping of `mfn` (a frame of domain `owner`) into entry
    /// `index` of the validated L1 `table`, releasing what the entry held.
    /// The entry is what a user mapping of the frame by the guest would be (it
    /// holds the same references: the frame, and its writable type unless
    /// read-only), never executable, with `avail` in the guest's bits 9-11;
    /// Xen writes exactly that.
    /// As on Xen, nothing marks it: overwriting it releases the frame like
    /// any mapping, and an L1 holding another domain's frame cannot be
    /// validated again.
    pub fn map_grant(
        &mut self,
        table: Mfn,
        index: usize,
        mfn: Mfn,
        owner: u16,
        readonly: bool,
        avail: u64,
    ) -> Result<(), Errno> {
        if self.table_level(table) != Some(1) || index >= 512 {
            return Err(Errno::EINVAL);
        }
        let old = self.mem.read_u64(table, index);
        self.ft.get_page(mfn.0, owner)?;
        if !readonly && let Err(e) = self.get_type(mfn, PageType::Writable) {
            self.put_page(mfn);
            return Err(e);
        }
        let rw = if readonly { 0 } else { PTE_RW };
        let e = stored_l1e(mfn.addr() | PTE_P | PTE_USER | PTE_A | PTE_D | rw | ((avail & 7) << 9)) | PTE_NX;
        self.mem.write_u64(table, index, e);
        self.put_entry(1, old);
        Ok(())
    }

    /// Removes the mapping of `mfn` from entry `index` of `table`, if the
    /// entry still maps it.
    pub fn unmap_grant(&mut self, table: Mfn, index: usize, mfn: Mfn) -> Result<(), Errno> {
        if self.table_level(table) != Some(1) || index >= 512 {
            return Err(Errno::EINVAL);
        }
        let old = self.mem.read_u64(table, index);
        if old & PTE_P == 0 || entry_mfn(old) != mfn {
            return Err(Errno::EINVAL);
        }
        self.mem.write_u64(table, index, 0);
        self.put_entry(1, old);
        Ok(())
    }

    /// GNTTABOP_unmap_and_replace: entry `index` of `table` must map `mfn`
    /// (a grant); it gets the entry at `from` (which becomes empty, its
    /// reference moving along), or nothing; the grant's reference goes.
    pub fn replace_grant(
        &mut self,
        table: Mfn,
        index: usize,
        mfn: Mfn,
        from: Option<(Mfn, usize)>,
    ) -> Result<(), Errno> {
        if self.table_level(table) != Some(1) || index >= 512 {
            return Err(Errno::EINVAL);
        }
        let old = self.mem.read_u64(table, index);
        if old & PTE_P == 0 || entry_mfn(old) != mfn {
            return Err(Errno::EINVAL);
        }
        let new = match from {
            Some((t, i)) if (t, i) != (table, index) => {
                if self.table_level(t) != Some(1) || i >= 512 {
                    return Err(Errno::EINVAL);
                }
                let e = self.mem.read_u64(t, i);
                self.mem.write_u64(t, i, 0);
                e
            }
            _ => 0,
        };
        self.mem.write_u64(table, index, new);
        self.put_entry(1, old);
        Ok(())
    }

    /// MMUEXT_PIN_Ln_TABLE.
    pub fn pin(&mut self, mfn: Mfn, level: u8) -> Result<(), Errno> {
        if self.ft.get(mfn.0).is_some_and(|p| p.pinned && p.owner == Owner::Domain(self.dom)) {
            return Err(Errno::EINVAL);
        }
        self.get_page_and_type(mfn, PageType::table(level))?;
        self.ft.set_pinned(mfn.0, true);
        Ok(())
    }

    /// A frame the domain gives back (`decrease_reservation`): unpinned, and
    /// its allocation reference dropped; it goes to the pool when nothing
    /// maps it any more.
    pub fn release(&mut self, mfn: Mfn) -> Result<(), Errno> {
        if !self.ft.take_allocated(mfn.0, self.dom) {
            return Err(Errno::EINVAL);
        }
        if self.ft.get(mfn.0).is_some_and(|p| p.pinned) {
            self.ft.set_pinned(mfn.0, false);
            self.put_page_and_type(mfn);
        }
        self.put_page(mfn);
        Ok(())
    }

    /// MMUEXT_UNPIN_TABLE.
    pub fn unpin(&mut self, mfn: Mfn) -> Result<(), Errno> {
        match self.ft.get(mfn.0) {
            Some(p) if p.pinned && p.owner == Owner::Domain(self.dom) => {
                self.ft.set_pinned(mfn.0, false);
                self.put_page_and_type(mfn);
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }
}

/// An L1 entry as the hypervisor stores it, as Xen does: a kernel mapping
/// (no USER from the guest) gets USER, because the guest kernel runs in ring
/// 3, and the guest-kernel mark, and is never GLOBAL, so that it leaves the
/// TLB when the vCPU switches to its user page tables; a user mapping
/// (visible in both modes) is made GLOBAL. Switches of address space flush
/// global entries too.
fn stored_l1e(e: u64) -> u64 {
    let kernel = e & PTE_USER == 0 || e & PTE_GUEST_KERNEL != 0;
    if e & PTE_P == 0 {
        e
    } else if kernel {
        (e | PTE_USER | PTE_GUEST_KERNEL) & !PTE_G
    } else {
        e | PTE_G
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeMemory;
    use crate::mm::frame_table::PageInfo;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const DOM: u16 = 1;
    /// Frames 0..NR are the domain's; NR..NR+4 another domain's; beyond: I/O.
    const NR: u64 = 24;
    const HV: [u64; 16] = [0xdead_0000 | PTE_P; 16];
    /// What a stored kernel mapping carries.
    const KERNEL: u64 = PTE_USER | PTE_GUEST_KERNEL;

    fn setup() -> (Vec<PageInfo>, FakeMemory) {
        let mut pages = vec![PageInfo::allocated(DOM); NR as usize];
        pages.extend([PageInfo::allocated(DOM + 1); 4]);
        pages.push(PageInfo::IO);
        let mut mem = FakeMemory::default();
        for f in 0..pages.len() as u64 {
            mem.zero(Mfn(f));
        }
        (pages, mem)
    }

    fn pte(mfn: u64, flags: u64) -> u64 {
        (mfn << 12) | PTE_P | flags
    }

    #[test]
    fn a_tree_is_validated_and_released() {
        let (mut pages, mut mem) = setup();
        let mut ft = FrameTable::new(&mut pages);
        // L4 0 -> L3 1 -> L2 2 -> L1 3 -> data 4 (rw) and 5 (ro), and the L1 itself (ro).
        mem.write_u64(Mfn(0), 0, pte(1, PTE_RW));
        mem.write_u64(Mfn(1), 0, pte(2, PTE_RW));
        mem.write_u64(Mfn(2), 0, pte(3, PTE_RW));
        mem.write_u64(Mfn(3), 0, pte(4, PTE_RW));
        mem.write_u64(Mfn(3), 1, pte(5, 0));
        mem.write_u64(Mfn(3), 2, pte(3, 0));
        mem.write_u64(Mfn(0), 270, 0x1234); // a guest value in a hypervisor slot
        let mut mmu = Mmu::new(&mut ft, &mut mem, DOM, false, &HV);
        assert_eq!(mmu.pin(Mfn(0), 4), Ok(()));
        assert_eq!(mmu.pin(Mfn(0), 4), Err(Errno::EINVAL)); // pinned already
        assert_eq!(mmu.mem.read_u64(Mfn(0), 256), 0); // the M2P: for kernel base pointers
        assert_eq!(mmu.mem.read_u64(Mfn(0), 257), HV[1]);
        assert_eq!(mmu.mem.read_u64(Mfn(0), 270), HV[270 - 256]);
        assert_eq!(mmu.mem.read_u64(Mfn(3), 0), pte(4, PTE_RW | KERNEL));
        let t = |mmu: &Mmu, f: u64| {
            let p = mmu.ft.get(f).unwrap();
            (p.ty, p.type_count, p.count)
        };
        assert_eq!(t(&mmu, 0), (PageType::L4, 1, 2));
        assert_eq!(t(&mmu, 3), (PageType::L1, 1, 3)); // allocation, L2 entry, its own ro mapping
        assert_eq!(t(&mmu, 4), (PageType::Writable, 1, 2));
        assert_eq!(t(&mmu, 5), (PageType::None, 0, 2));
        // The L1 cannot be mapped writable, nor made an L2, while it is an L1.
        assert_eq!(mmu.mod_entry(Mfn(3), 3, pte(3, PTE_RW), false), Err(Errno::EBUSY));
        assert_eq!(mmu.pin(Mfn(3), 2), Err(Errno::EINVAL));
        // Nor can a writable page become a table.
        assert_eq!(mmu.pin(Mfn(4), 1), Err(Errno::EINVAL));
        assert_eq!(mmu.unpin(Mfn(1)), Err(Errno::EINVAL)); // not pinned
        assert_eq!(mmu.mod_entry(Mfn(0), 256, 0, false), Err(Errno::EINVAL)); // hypervisor slot
        assert_eq!(mmu.mod_entry(Mfn(4), 0, 0, false), Err(Errno::EINVAL)); // not a table
        assert_eq!(mmu.unpin(Mfn(0)), Ok(()));
        for f in 0..6 {
            assert_eq!(t(&mmu, f), (PageType::None, 0, 1), "frame {f}");
        }
        assert!(mmu.ft.flush_needed && mmu.ft.freed.is_empty());
    }

    #[test]
    fn bad_entries_undo_what_validation_took() {
        let (mut pages, mut mem) = setup();
        let mut ft = FrameTable::new(&mut pages);
        mem.write_u64(Mfn(2), 0, pte(3, 0));
        mem.write_u64(Mfn(3), 0, pte(4, PTE_RW));
        mem.write_u64(Mfn(2), 1, pte(NR, 0)); // another domain's frame as an L1
        let mut mmu = Mmu::new(&mut ft, &mut mem, DOM, false, &HV);
        assert_eq!(mmu.pin(Mfn(2), 2), Err(Errno::EINVAL));
        for f in 2..5 {
            let p = mmu.ft.get(f).unwrap();
            assert_eq!((p.ty, p.type_count, p.count, p.pinned), (PageType::None, 0, 1, false));
        }
        // Entries a domain may not write: reserved bits, large pages, others' frames.
        for (level, e, err) in [
            (1, pte(5, 1 << 51), Errno::EPERM),  // address bit 51: not RAM
            (1, pte(5, PTE_PCD), Errno::EINVAL), // cache attributes: I/O domains only
            (2, pte(5, PTE_PS), Errno::EINVAL),
            (3, pte(5, PTE_G), Errno::EINVAL),
            (1, pte(NR, 0), Errno::EBUSY), // another domain's frame
            (2, pte(NR, 0), Errno::EINVAL),
            (1, pte(NR + 4, 0), Errno::EPERM),  // I/O memory
            (1, pte(1 << 30, 0), Errno::EPERM), // beyond RAM
        ] {
            assert_eq!(mmu.get_entry(level, e), Err(err), "level {level} entry {e:#x}");
        }
        mmu.io_mem = true;
        mmu.mfn_limit = 1 << 28; // a 40-bit machine
        let uc = PTE_PCD | PTE_PWT | KERNEL;
        assert_eq!(mmu.get_entry(1, pte(NR + 4, PTE_RW | PTE_PCD)), Ok(pte(NR + 4, PTE_RW | uc)));
        assert_eq!(mmu.get_entry(1, pte(1 << 20, 0)), Ok(pte(1 << 20, uc)));
        assert_eq!(mmu.get_entry(1, pte(APIC_MFN, 0)), Err(Errno::EPERM));
        assert_eq!(mmu.get_entry(1, pte(1 << 28, 0)), Err(Errno::EPERM)); // beyond the address width
        assert_eq!(mmu.get_entry(1, pte(PTE_ADDR >> 12, 0)), Err(Errno::EINVAL)); // INVALID_MFN
        assert_eq!(mmu.get_entry(1, pte(5, PTE_G)), Ok(pte(5, KERNEL))); // G dropped for a kernel mapping
        assert_eq!(mmu.get_entry(1, pte(6, PTE_USER)), Ok(pte(6, PTE_USER | PTE_G))); // user: global
        mmu.put_entry(1, pte(6, PTE_USER));
        mmu.put_entry(1, pte(5, PTE_G));
    }

    #[test]
    fn freed_frames_are_reported() {
        let (mut pages, mut mem) = setup();
        let mut ft = FrameTable::new(&mut pages);
        let mut mmu = Mmu::new(&mut ft, &mut mem, DOM, false, &HV);
        assert_eq!(mmu.pin(Mfn(3), 1), Ok(()));
        assert_eq!(mmu.mod_entry(Mfn(3), 0, pte(7, PTE_RW), false), Ok(()));
        // The domain lets frame 7 go (a balloon): its mapping keeps it alive.
        assert_eq!(mmu.release(Mfn(7)), Ok(()));
        assert_eq!(mmu.release(Mfn(7)), Err(Errno::EINVAL));
        assert!(mmu.ft.freed.is_empty());
        assert_eq!(mmu.mod_entry(Mfn(3), 0, 0, false), Ok(()));
        assert_eq!(mmu.ft.freed, [(7, 1)]);
        assert_eq!(mmu.ft.get(7).unwrap().owner, Owner::Free);
    }

    #[test]
    fn grant_mappings_hold_the_granted_frame() {
        let (mut pages, mut mem) = setup();
        let mut ft = FrameTable::new(&mut pages);
        let mut mmu = Mmu::new(&mut ft, &mut mem, DOM, false, &HV);
        mmu.pin(Mfn(3), 1).unwrap();
        // Another domain's frame NR, granted writable to us.
        assert_eq!(mmu.map_grant(Mfn(3), 0, Mfn(NR), DOM + 1, false, 5), Ok(()));
        let e = mmu.mem.read_u64(Mfn(3), 0);
        assert_eq!(e, pte(NR, PTE_RW | PTE_A | PTE_D | PTE_USER | PTE_G | (5 << 9)) | PTE_NX);
        let p = mmu.ft.get(NR).unwrap();
        assert_eq!((p.count, p.ty, p.type_count), (2, PageType::Writable, 1));
        // The frame is not the claimed owner's; a table that is not an L1.
        assert_eq!(mmu.map_grant(Mfn(3), 1, Mfn(NR), DOM, true, 0), Err(Errno::EINVAL));
        assert_eq!(mmu.map_grant(Mfn(4), 0, Mfn(NR), DOM + 1, true, 0), Err(Errno::EINVAL));
        assert_eq!(mmu.unmap_grant(Mfn(3), 0, Mfn(NR + 1)), Err(Errno::EINVAL));
        assert_eq!(mmu.unmap_grant(Mfn(3), 0, Mfn(NR)), Ok(()));
        let p = mmu.ft.get(NR).unwrap();
        assert_eq!((p.count, p.type_count), (1, 0));
        assert_eq!(mmu.unmap_grant(Mfn(3), 0, Mfn(NR)), Err(Errno::EINVAL));
        // Overwritten by the guest: the frame is released like any mapping.
        assert_eq!(mmu.map_grant(Mfn(3), 0, Mfn(NR), DOM + 1, true, 0), Ok(()));
        assert_eq!(mmu.mod_entry(Mfn(3), 0, 0, false), Ok(()));
        assert_eq!(mmu.ft.get(NR).unwrap().count, 1);
    }

    #[test]
    fn preserve_ad_keeps_the_hardware_bits() {
        let (mut pages, mut mem) = setup();
        let mut ft = FrameTable::new(&mut pages);
        let mut mmu = Mmu::new(&mut ft, &mut mem, DOM, false, &HV);
        mmu.pin(Mfn(3), 1).unwrap();
        mmu.mod_entry(Mfn(3), 0, pte(7, PTE_A | PTE_D), false).unwrap();
        mmu.mod_entry(Mfn(3), 0, pte(7, 0), true).unwrap();
        assert_eq!(mmu.mem.read_u64(Mfn(3), 0), pte(7, PTE_A | PTE_D | KERNEL));
        mmu.mod_entry(Mfn(3), 0, pte(7, 0), false).unwrap();
        assert_eq!(mmu.mem.read_u64(Mfn(3), 0), pte(7, KERNEL));
    }

    /// What a guest may try, over a small universe of frames.
    #[derive(Clone, Debug)]
    enum Op {
        Pin(u64, u8),
        Unpin(u64),
        Mod { table: u64, index: usize, target: u64, flags: u64 },
        Release(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let frame = 0..NR + 5;
        prop_oneof![
            (frame.clone(), 1u8..=4).prop_map(|(f, l)| Op::Pin(f, l)),
            frame.clone().prop_map(Op::Unpin),
            (
                frame.clone(),
                0usize..4,
                frame.clone(),
                prop_oneof![
                    Just(0u64),
                    Just(PTE_P),
                    Just(PTE_P | PTE_RW),
                    Just(PTE_P | PTE_PS),
                    Just(PTE_RW)
                ]
            )
                .prop_map(|(table, index, target, flags)| Op::Mod {
                    table,
                    index,
                    target,
                    flags
                }),
            (0..NR).prop_map(Op::Release),
        ]
    }

    /// Recounts every reference from the tables' contents and checks the
    /// frame table against it, and that no page table is writable.
    fn check_invariants(mmu: &Mmu, released: &[bool]) {
        let mut count: BTreeMap<u64, u32> = BTreeMap::new();
        let mut tcount: BTreeMap<u64, u32> = BTreeMap::new();
        for f in 0..NR + 4 {
            let p = mmu.ft.get(f).unwrap();
            if p.owner == Owner::Free {
                continue;
            }
            if f < NR {
                assert_eq!(p.allocated, !released[f as usize], "allocation mark of {f}");
            }
            if p.allocated {
                *count.entry(f).or_default() += 1;
            }
            if p.pinned {
                *count.entry(f).or_default() += 1;
                *tcount.entry(f).or_default() += 1;
            }
            let Some(level) = (p.type_count > 0).then_some(p.ty.level()).flatten() else { continue };
            assert_eq!(p.owner, Owner::Domain(DOM));
            for i in 0..512 {
                if !Mmu::guest_slot(level, i) {
                    continue;
                }
                let e = mmu.mem.read_u64(Mfn(f), i);
                if e & PTE_P == 0 {
                    continue;
                }
                let target = entry_mfn(e).0;
                let tp = mmu.ft.get(target).unwrap();
                assert_eq!(tp.owner, Owner::Domain(DOM), "entry {i} of {f} maps {target}");
                assert!(e & PTE_PS == 0 || level == 1);
                *count.entry(target).or_default() += 1;
                if level > 1 {
                    assert_eq!(tp.ty, PageType::table(level - 1));
                    *tcount.entry(target).or_default() += 1;
                } else if e & PTE_RW != 0 {
                    assert_eq!(tp.ty, PageType::Writable, "a writable mapping of {target} ({:?})", tp.ty);
                    *tcount.entry(target).or_default() += 1;
                }
            }
        }
        for f in 0..NR + 4 {
            let p = mmu.ft.get(f).unwrap();
            if p.owner == Owner::Free {
                continue;
            }
            assert_eq!(p.count, count.get(&f).copied().unwrap_or(0), "general count of {f}");
            assert_eq!(p.type_count, tcount.get(&f).copied().unwrap_or(0), "type count of {f}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Whatever a guest does, the counts stay exact, no page table is
        /// writable, nothing maps a frame the domain does not own, and
        /// unpinning everything returns every frame to its start.
        #[test]
        fn references_stay_exact(ops in proptest::collection::vec(op(), 1..80)) {
            let (mut pages, mut mem) = setup();
            let mut ft = FrameTable::new(&mut pages);
            let mut mmu = Mmu::new(&mut ft, &mut mem, DOM, false, &HV);
            let mut released = vec![false; NR as usize];
            for op in ops {
                match op {
                    Op::Pin(f, l) => { let _ = mmu.pin(Mfn(f), l); }
                    Op::Unpin(f) => { let _ = mmu.unpin(Mfn(f)); }
                    Op::Mod { table, index, target, flags } => {
                        let _ = mmu.mod_entry(Mfn(table), index, (target << 12) | flags, false);
                    }
                    Op::Release(f) => {
                        let r = mmu.release(Mfn(f));
                        prop_assert_eq!(r.is_ok(), !released[f as usize]);
                        released[f as usize] = true;
                    }
                }
                check_invariants(&mmu, &released);
            }
            for f in 0..NR {
                let _ = mmu.unpin(Mfn(f));
            }
            for f in 0..NR {
                let p = mmu.ft.get(f).unwrap();
                if released[f as usize] {
                    prop_assert_eq!(p.owner, Owner::Free);
                    prop_assert!(mmu.ft.freed.iter().any(|&(m, _)| m == f));
                } else {
                    prop_assert_eq!((p.ty, p.type_count, p.count), (PageType::None, 0, 1));
                }
            }
        }
    }
}
