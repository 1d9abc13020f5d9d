// SPDX-License-Identifier: MIT OR Apache-2.0
//! The PV MMU hypercalls: `mmu_update`, `mmuext_op`, `update_va_mapping`.
//! The rules are `mm::guest_pt`'s; these handlers decode requests, apply
//! them in order and report how many were done.

use super::{Args, Caller, Outcome, int};
use crate::hal::{Guest, guest_range_ok};
use crate::mm::frame::Mfn;
use crate::mm::frame_table::{Owner, PageType};
use crate::mm::guest_pt::{Mmu, PTE_P, entry_mfn, l1_slot};
use crate::pv::traps::LDT_FRAMES;
use pv_abi::Errno;
use pv_abi::xen::{
    DOMID_IO, DOMID_SELF, DOMID_XEN, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_NO_TRANSLATE,
    MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE, MMUEXT_FLUSH_CACHE,
    MMUEXT_FLUSH_CACHE_GLOBAL, MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI,
    MMUEXT_MARK_SUPER, MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L4_TABLE,
    MMUEXT_SET_LDT, MMUEXT_TLB_FLUSH_ALL, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI,
    MMUEXT_UNMARK_SUPER, MMUEXT_UNPIN_TABLE, MmuUpdate, MmuextOp, UVMF_FLUSHTYPE_MASK, UVMF_INVLPG,
    UVMF_TLB_FLUSH,
};
use zerocopy::IntoBytes;

/// Set in a batch count by a preempted call that resumes (Xen's
/// continuation marker); we never preempt, but a guest may pass it.
const PREEMPTED: u32 = 1 << 31;
/// The most LDT entries a guest may install.
const LDT_ENTRIES_MAX: u64 = 8192;

/// Whose frames a batch works on (Xen's `get_pg_owner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PgOwner {
    /// DOMID_SELF: the caller's own.
    Own,
    /// DOMID_XEN (privileged): the hypervisor's frames guests may read.
    Xen,
    /// DOMID_IO (privileged): I/O memory.
    Io,
}

/// The foreign domain of a batch: DOMID_SELF means the caller; naming its own
/// id is refused (as Xen does); DOMID_XEN and DOMID_IO need privilege; no
/// other domain exists yet. Bits 16-31 name the page-table owner plus one.
fn pg_owner(caller: &Caller<'_>, foreigndom: u64) -> Result<PgOwner, Errno> {
    let pt_owner = (foreigndom as u32) >> 16;
    if pt_owner != 0 && pt_owner - 1 != u32::from(DOMID_SELF) {
        return Err(Errno::ESRCH);
    }
    match foreigndom as u16 {
        DOMID_SELF => Ok(PgOwner::Own),
        d if (d == DOMID_XEN || d == DOMID_IO) && !caller.privileged => Err(Errno::EPERM),
        DOMID_XEN => Ok(PgOwner::Xen),
        DOMID_IO => Ok(PgOwner::Io),
        _ => Err(Errno::ESRCH),
    }
}

/// Runs `count` requests of type `T` from `list`, stopping at the first
/// error; writes the number done to `pdone` (if not null).
fn batch<T: zerocopy::FromBytes + IntoBytes>(
    guest: &mut dyn Guest,
    list: u64,
    count: u64,
    pdone: u64,
    mut op: impl FnMut(&mut dyn Guest, &T) -> Result<(), Errno>,
) -> Result<i64, Errno> {
    let count = int(count).unwrap_or(0) & !PREEMPTED;
    let size = core::mem::size_of::<T>() as u64;
    // A list in the hypervisor's hole fails before anything is done or counted.
    if !guest_range_ok(list, 1) {
        return Err(Errno::EFAULT);
    }
    let mut done = 0u32;
    let mut r = Ok(());
    while done < count {
        let mut req = T::new_zeroed();
        let at = list.wrapping_add(u64::from(done) * size);
        r = if guest_range_ok(at, size as usize) {
            guest.copy_from(at, req.as_mut_bytes()).map_err(Errno::from).and_then(|()| op(guest, &req))
        } else {
            Err(Errno::EFAULT)
        };
        if r.is_err() {
            break;
        }
        done += 1;
    }
    if pdone != 0 {
        // As Xen: a bad `pdone` does not change the result.
        let _ = guest.copy_to(pdone, &done.to_le_bytes());
    }
    r.map(|_| 0)
}

pub fn mmu_update(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = pg_owner(caller, args[3]).and_then(|owner| {
        batch::<MmuUpdate>(guest, args[0], args[1], args[2], |g, req| update_one(g, req, owner))
    });
    Outcome::from(r)
}

fn update_one(guest: &mut dyn Guest, req: &MmuUpdate, owner: PgOwner) -> Result<(), Errno> {
    let mfn = Mfn(req.ptr >> 12);
    let index = ((req.ptr & 0xfff) >> 3) as usize;
    match req.ptr & 7 {
        // For a PV guest, NO_TRANSLATE is a normal update (frames are machine frames).
        cmd @ (MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_PRESERVE_AD | MMU_PT_UPDATE_NO_TRANSLATE) => {
            let mut mmu = guest.mmu();
            mmu.foreign_xen = owner == PgOwner::Xen;
            if mmu.table_level(mfn).is_some() {
                return mmu.mod_entry(mfn, index, req.val, cmd == MMU_PT_UPDATE_PRESERVE_AD);
            }
            // Not a page table: an ordinary write to a frame the domain
            // could map writable (as Xen allows).
            mmu.get_page_and_type(mfn, PageType::Writable)?;
            mmu.mem.write_u64(mfn, index, req.val);
            mmu.put_page_and_type(mfn);
            Ok(())
        }
        MMU_MACHPHYS_UPDATE if owner != PgOwner::Own => Err(Errno::EINVAL),
        MMU_MACHPHYS_UPDATE => {
            let dom = guest.mmu().dom;
            match guest.mmu().ft.get(mfn.0) {
                Some(p) if p.owner == Owner::Domain(dom) => {
                    guest.set_m2p(mfn, req.val);
                    Ok(())
                }
                _ => Err(Errno::EINVAL),
            }
        }
        _ => Err(Errno::ENOSYS),
    }
}

pub fn mmuext_op(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = pg_owner(caller, args[3]).and_then(|owner| {
        batch::<MmuextOp>(guest, args[0], args[1], args[2], |g, op| {
            // No extended op works on another owner's frames here.
            if owner != PgOwner::Own {
                return Err(Errno::EPERM);
            }
            ext_one(caller, g, op)
        })
    });
    Outcome::from(r)
}

fn ext_one(caller: &Caller<'_>, guest: &mut dyn Guest, op: &MmuextOp) -> Result<(), Errno> {
    let mfn = Mfn(op.arg1);
    match op.cmd {
        c @ MMUEXT_PIN_L1_TABLE..=MMUEXT_PIN_L4_TABLE => {
            guest.mmu().pin(mfn, (c - MMUEXT_PIN_L1_TABLE + 1) as u8)
        }
        MMUEXT_UNPIN_TABLE => guest.mmu().unpin(mfn),
        MMUEXT_NEW_BASEPTR => new_baseptr(guest, false, mfn),
        MMUEXT_NEW_USER_BASEPTR => new_baseptr(guest, true, mfn),
        MMUEXT_TLB_FLUSH_LOCAL | MMUEXT_TLB_FLUSH_ALL => {
            guest.flush_tlb(None);
            Ok(())
        }
        MMUEXT_INVLPG_LOCAL | MMUEXT_INVLPG_ALL => {
            guest.flush_tlb(Some(op.arg1));
            Ok(())
        }
        c @ (MMUEXT_TLB_FLUSH_MULTI | MMUEXT_INVLPG_MULTI) => {
            // arg2 points to the vCPU mask; with one vCPU any mask means us.
            let mut mask = [0u8; 8];
            guest.copy_from(op.arg2, &mut mask)?;
            guest.flush_tlb((c == MMUEXT_INVLPG_MULTI).then_some(op.arg1));
            Ok(())
        }
        MMUEXT_FLUSH_CACHE | MMUEXT_FLUSH_CACHE_GLOBAL if caller.privileged => Ok(()),
        MMUEXT_FLUSH_CACHE | MMUEXT_FLUSH_CACHE_GLOBAL => Err(Errno::EACCES),
        MMUEXT_SET_LDT => set_ldt(guest, op.arg1, op.arg2),
        // Superpage marking is gone from Xen: it answers -EOPNOTSUPP.
        MMUEXT_MARK_SUPER | MMUEXT_UNMARK_SUPER => Err(Errno::EOPNOTSUPP),
        MMUEXT_CLEAR_PAGE => with_writable(&mut guest.mmu(), mfn, |mmu| mmu.mem.zero(mfn)),
        MMUEXT_COPY_PAGE => {
            let src = Mfn(op.arg2);
            let mut mmu = guest.mmu();
            mmu.get_page(src)?;
            let r = with_writable(&mut mmu, mfn, |mmu| {
                let mut page = [0u8; 4096];
                mmu.mem.read(src, 0, &mut page);
                mmu.mem.write(mfn, 0, &page);
            });
            mmu.put_page(src);
            r
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Runs `f` on a frame the domain could map writable.
fn with_writable(mmu: &mut Mmu<'_, '_>, mfn: Mfn, f: impl FnOnce(&mut Mmu<'_, '_>)) -> Result<(), Errno> {
    mmu.get_page_and_type(mfn, PageType::Writable)?;
    f(mmu);
    mmu.put_page_and_type(mfn);
    Ok(())
}

/// MMUEXT_NEW_BASEPTR / NEW_USER_BASEPTR: the new L4 is referenced before
/// the old one is released. A user base pointer of 0 means none.
pub fn new_baseptr(guest: &mut dyn Guest, user: bool, mfn: Mfn) -> Result<(), Errno> {
    let new = (!user || mfn.0 != 0).then_some(mfn);
    if let Some(new) = new {
        let mut mmu = guest.mmu();
        mmu.get_page_and_type(new, PageType::L4)?;
        if !user {
            mmu.fill_ro_mpt(new);
        }
    }
    if !user {
        invalidate_ldt(guest);
    }
    if let Some(old) = guest.baseptr(user) {
        guest.mmu().put_page_and_type(old);
    }
    guest.set_baseptr(user, new);
    Ok(())
}

/// MMUEXT_SET_LDT(va, entries): records the LDT, as Xen does; its pages are
/// checked and locked (descriptor page type) on their first use by a segment
/// load (`ldt_fault`), then mapped where the CPU's LDT is. Only the base is range-checked; the count is 32 bits;
/// the same LDT again changes nothing.
fn set_ldt(guest: &mut dyn Guest, va: u64, entries: u64) -> Result<(), Errno> {
    let entries = entries as u32;
    if u64::from(entries) > LDT_ENTRIES_MAX || (entries != 0 && (va & 0xfff != 0 || !guest_range_ok(va, 1))) {
        return Err(Errno::EINVAL);
    }
    let va = if entries == 0 { 0 } else { va };
    let t = guest.traps();
    if (t.ldt_base, t.ldt_entries) == (va, entries) {
        return Ok(());
    }
    invalidate_ldt(guest);
    let t = guest.traps();
    (t.ldt_base, t.ldt_entries) = (va, entries);
    t.ldt.clear();
    for _ in 0..(u64::from(entries) * 8).div_ceil(4096) {
        let _ = t.ldt.push(None);
    }
    guest.load_ldt(entries as usize);
    Ok(())
}

/// Drops the LDT pages in use (their type goes, their copy is emptied); the
/// next use of each checks it again. Xen does this on every address-space
/// switch too.
pub fn invalidate_ldt(guest: &mut dyn Guest) {
    let pages: heapless::Vec<Option<Mfn>, LDT_FRAMES> = guest.traps().ldt.clone();
    for (k, frame) in pages.iter().enumerate() {
        if let Some(f) = frame {
            guest.map_ldt_page(k, None);
            guest.mmu().put_page_and_type(*f);
            guest.traps().ldt[k] = None;
        }
    }
}

/// What a #GP on an LDT selector means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LdtFault {
    /// The page holding the entry was not in use yet: it is now; retry.
    Retry,
    /// The page cannot be used (not mapped, not valid descriptors, mapped
    /// writable): the guest gets a #PF at this linear address, as on Xen.
    PageFault(u64),
    /// A real #GP for the guest.
    Guest,
}

/// A #GP whose error code names LDT entry `index`: brings the entry's page
/// into use if it is not yet.
pub fn ldt_fault(guest: &mut dyn Guest, index: u32) -> LdtFault {
    let (base, entries) = (guest.traps().ldt_base, guest.traps().ldt_entries);
    let k = (index / 512) as usize;
    if index >= entries || guest.traps().ldt.get(k).is_none_or(Option::is_some) {
        return LdtFault::Guest;
    }
    let Some(l4) = guest.baseptr(false) else { return LdtFault::Guest };
    let page_va = base.wrapping_add(4096 * k as u64);
    // An LDT running past the lower half: the CPU's #GP stands (as on Xen).
    if !guest_range_ok(page_va, 4096) {
        return LdtFault::Guest;
    }
    let frame = {
        let mut mmu = guest.mmu();
        l1_slot(&*mmu.mem, l4, page_va)
            .ok()
            .map(|(l1, i)| mmu.mem.read_u64(l1, i))
            .filter(|pte| pte & PTE_P != 0)
            .map(entry_mfn)
            .filter(|&mfn| mmu.get_page_and_type(mfn, PageType::SegDesc).is_ok())
    };
    let Some(mfn) = frame else { return LdtFault::PageFault(base + 8 * u64::from(index)) };
    guest.map_ldt_page(k, Some(mfn));
    guest.traps().ldt[k] = Some(mfn);
    LdtFault::Retry
}

/// `update_va_mapping(va, val, flags)`: writes the L1 entry mapping `va` in
/// the current kernel page tables, then flushes as asked.
pub fn update_va_mapping(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    Outcome::from(update_va(guest, args[0], args[1], args[2], PgOwner::Own))
}

/// `update_va_mapping_otherdomain(va, val, flags, domid)`: the same, for a
/// frame of the domain `domid` names (as mmu_update's foreign domain).
pub fn update_va_mapping_otherdomain(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = pg_owner(caller, args[3]).and_then(|owner| update_va(guest, args[0], args[1], args[2], owner));
    Outcome::from(r)
}

fn update_va(guest: &mut dyn Guest, va: u64, val: u64, flags: u64, owner: PgOwner) -> Result<i64, Errno> {
    if !guest_range_ok(va, 1) {
        return Err(Errno::EINVAL);
    }
    let l4 = guest.baseptr(false).ok_or(Errno::EINVAL)?;
    {
        let mut mmu = guest.mmu();
        mmu.foreign_xen = owner == PgOwner::Xen;
        let (l1, index) = l1_slot(&*mmu.mem, l4, va)?;
        if mmu.table_level(l1) != Some(1) {
            return Err(Errno::EINVAL);
        }
        mmu.mod_entry(l1, index, val, false)?;
    }
    // UVMF_MULTI: the bits above the flush type point to a vCPU mask; with
    // one vCPU any mask means this one, but it must be readable.
    let mask_at = flags & !7;
    if flags & UVMF_FLUSHTYPE_MASK != 0 && mask_at != 0 {
        let mut mask = [0u8; 8];
        guest.copy_from(mask_at, &mut mask)?;
    }
    match flags & UVMF_FLUSHTYPE_MASK {
        UVMF_INVLPG => guest.flush_tlb(Some(va)),
        UVMF_TLB_FLUSH => guest.flush_tlb(None),
        _ => {}
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::FrameMemory;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::DOM0;
    use crate::mm::guest_pt::{PTE_GUEST_KERNEL, PTE_P, PTE_RW, PTE_USER};
    use zerocopy::FromZeros;

    const VA: u64 = 0xffff_ffff_8020_3000;
    /// Where the fake guest keeps request arrays.
    const LIST: u64 = 0x10_0000;

    fn pte(mfn: u64, flags: u64) -> u64 {
        (mfn << 12) | PTE_P | flags
    }

    /// A guest with a pinned tree 10 -> 11 -> 12 -> 13 as its base pointer.
    fn guest() -> FakeGuest {
        let mut g = FakeGuest::new(LIST, 0x10000);
        g.frames.write_u64(Mfn(10), 511, pte(11, PTE_RW));
        g.frames.write_u64(Mfn(11), 510, pte(12, PTE_RW));
        g.frames.write_u64(Mfn(12), 1, pte(13, PTE_RW));
        g.mmu().pin(Mfn(10), 4).unwrap();
        assert_eq!(new_baseptr(&mut g, false, Mfn(10)), Ok(()));
        g
    }

    fn ext(g: &mut FakeGuest, cmd: u32, arg1: u64) -> i64 {
        ext2(g, cmd, arg1, 0)
    }

    fn ext2(g: &mut FakeGuest, cmd: u32, arg1: u64, arg2: u64) -> i64 {
        let op = MmuextOp { cmd, arg1, arg2, ..MmuextOp::new_zeroed() };
        g.copy_to(LIST, op.as_bytes()).unwrap();
        match mmuext_op(&DOM0, g, &[LIST, 1, 0, u64::from(DOMID_SELF), 0, 0]) {
            Outcome::Return(v) => v,
            o => panic!("{o:?}"),
        }
    }

    fn update(g: &mut FakeGuest, reqs: &[(u64, u64)]) -> (i64, u32) {
        for (i, &(ptr, val)) in reqs.iter().enumerate() {
            g.copy_to(LIST + 16 * i as u64, MmuUpdate { ptr, val }.as_bytes()).unwrap();
        }
        let done = LIST + 0x8000;
        let Outcome::Return(v) = mmu_update(&DOM0, g, &[LIST, reqs.len() as u64, done, 0x7ff0, 0, 0]) else {
            panic!()
        };
        let mut d = [0u8; 4];
        g.copy_from(done, &mut d).unwrap();
        (v, u32::from_le_bytes(d))
    }

    #[test]
    fn update_va_mapping_maps_own_frames_and_refuses_the_rest() {
        let mut g = guest();
        let call =
            |g: &mut FakeGuest, va, val, flags| update_va_mapping(&DOM0, g, &[va, val, flags, 0, 0, 0]);
        let own = pte(150, PTE_RW);
        assert_eq!(call(&mut g, VA, own, UVMF_INVLPG), Outcome::Return(0));
        assert_eq!(g.frames.read_u64(Mfn(13), 3), own | PTE_USER | PTE_GUEST_KERNEL);
        assert_eq!(g.flushes, [Some(VA)]);
        assert_eq!(call(&mut g, VA, 0, UVMF_TLB_FLUSH), Outcome::Return(0));
        assert_eq!(g.frames.read_u64(Mfn(13), 3), 0);
        assert_eq!(g.flushes[1], None);
        // A page table writable, a frame of someone else, an unmapped region,
        // the hypervisor's hole: refused, nothing written.
        assert_eq!(call(&mut g, VA, pte(12, PTE_RW), 0), Outcome::Return(-16));
        assert_eq!(call(&mut g, VA, pte(256, 0), 0), Outcome::Return(-16));
        assert_eq!(call(&mut g, 0x1000, own, 0), Outcome::Return(-22));
        assert_eq!(call(&mut g, 0xffff_8000_0000_0000, own, 0), Outcome::Return(-22));
        // A vCPU mask that cannot be read; the other-domain form.
        assert_eq!(call(&mut g, VA, own, UVMF_INVLPG | 0xdead_0000), Outcome::Return(-14));
        let other =
            |g: &mut FakeGuest, dom: u64| update_va_mapping_otherdomain(&DOM0, g, &[VA, own, 0, dom, 0, 0]);
        assert_eq!(other(&mut g, u64::from(DOMID_SELF)), Outcome::Return(0));
        assert_eq!(other(&mut g, 0), Outcome::Return(-3)); // naming itself
        assert_eq!(other(&mut g, 5), Outcome::Return(-3));
        // The entry was written before the mask was read (as on Xen).
        assert_eq!(g.frames.read_u64(Mfn(13), 3), own | PTE_USER | PTE_GUEST_KERNEL);
    }

    #[test]
    fn mmu_update_applies_in_order_and_counts() {
        let mut g = guest();
        let slot = |i: u64| (13 << 12) | (i * 8);
        assert_eq!(update(&mut g, &[(slot(0), pte(150, PTE_RW)), (slot(1), pte(151, 0))]), (0, 2));
        assert_eq!(g.frames.read_u64(Mfn(13), 1), pte(151, PTE_USER | PTE_GUEST_KERNEL));
        // The second request maps a table writable: it fails, the first stays done.
        assert_eq!(update(&mut g, &[(slot(2), pte(152, 0)), (slot(3), pte(12, PTE_RW))]), (-16, 1));
        assert_eq!(g.frames.read_u64(Mfn(13), 2), pte(152, PTE_USER | PTE_GUEST_KERNEL));
        // Not a page table: an ordinary write.
        assert_eq!(update(&mut g, &[((40 << 12) | 8, 0x1234)]), (0, 1));
        assert_eq!(g.frames.read_u64(Mfn(40), 1), 0x1234);
        // Unknown command, another domain's frame, the hypervisor's L4 slots.
        assert_eq!(update(&mut g, &[(slot(0) | 5, 0)]), (-38, 0));
        assert_eq!(update(&mut g, &[(slot(0) | 3, 0)]), (0, 1)); // NO_TRANSLATE: normal for PV
        assert_eq!(update(&mut g, &[(256 << 12, 0)]), (-22, 0));
        assert_eq!(update(&mut g, &[((10 << 12) | (270 * 8), 0)]), (-22, 0));
        // The machine-to-phys table, for own frames only.
        assert_eq!(update(&mut g, &[((150 << 12) | MMU_MACHPHYS_UPDATE, 7)]), (0, 1));
        assert_eq!(g.m2p.get(&150), Some(&7));
        assert_eq!(update(&mut g, &[((256 << 12) | MMU_MACHPHYS_UPDATE, 7)]), (-22, 0));
        // An unreadable list; a foreign domain.
        let Outcome::Return(v) = mmu_update(&DOM0, &mut g, &[0xdead_0000, 1, 0, 0x7ff0, 0, 0]) else {
            panic!()
        };
        assert_eq!(v, -14);
        let Outcome::Return(v) = mmu_update(&DOM0, &mut g, &[LIST, 1, 0, 5, 0, 0]) else { panic!() };
        assert_eq!(v, -3);
        // Naming itself is refused; DOMID_XEN is for the privileged.
        let Outcome::Return(v) = mmu_update(&DOM0, &mut g, &[LIST, 1, 0, 0, 0, 0]) else { panic!() };
        assert_eq!(v, -3);
        let xen = u64::from(DOMID_XEN);
        let Outcome::Return(v) = mmu_update(&crate::hypercall::tests::DOMU, &mut g, &[LIST, 1, 0, xen, 0, 0])
        else {
            panic!()
        };
        assert_eq!(v, -1);
    }

    #[test]
    fn set_ldt_and_first_use() {
        let mut g = guest();
        const DATA_DPL0: u64 = 0x00cf_9200_0000_ffff;
        g.frames.write_u64(Mfn(150), 1, DATA_DPL0);
        let map = |g: &mut FakeGuest, val| update_va_mapping(&DOM0, g, &[VA, val, 0, 0, 0, 0]);
        assert_eq!(map(&mut g, pte(150, PTE_RW)), Outcome::Return(0));
        assert_eq!(ext2(&mut g, MMUEXT_SET_LDT, VA, 16 | 1 << 32), 0); // the count is 32 bits
        assert_eq!(g.ldt_loaded, 16);
        assert!(g.ldt.is_empty()); // nothing checked yet
        // First use while the page is writable: a #PF at the entry.
        assert_eq!(ldt_fault(&mut g, 1), LdtFault::PageFault(VA + 8));
        assert_eq!(map(&mut g, pte(150, 0)), Outcome::Return(0));
        assert_eq!(ldt_fault(&mut g, 1), LdtFault::Retry);
        assert_eq!(g.ldt.get(&0), Some(&Mfn(150)));
        assert_eq!(g.frames.read_u64(Mfn(150), 1), DATA_DPL0 | 3 << 45); // checked in place
        assert_eq!(g.ft.get(150).unwrap().ty, PageType::SegDesc);
        assert_eq!(ldt_fault(&mut g, 1), LdtFault::Guest); // in use: a real #GP
        assert_eq!(ldt_fault(&mut g, 16), LdtFault::Guest); // past the count
        // Now a descriptor page: no writable mapping of it.
        assert_eq!(map(&mut g, pte(150, PTE_RW)), Outcome::Return(-16));
        assert_eq!(ext2(&mut g, MMUEXT_SET_LDT, VA + 8, 16), -22); // unaligned
        assert_eq!(ext2(&mut g, MMUEXT_SET_LDT, VA, 8193), -22);
        assert_eq!(ext2(&mut g, MMUEXT_SET_LDT, 0xffff_8000_0000_0000, 1), -22);
        assert_eq!(ext2(&mut g, MMUEXT_SET_LDT, VA, 16), 0); // the same: nothing changes
        assert_eq!(g.ft.get(150).unwrap().ty, PageType::SegDesc);
        // Removed: the page is ordinary memory again, the copy empty.
        assert_eq!(ext2(&mut g, MMUEXT_SET_LDT, 0x1234, 0), 0);
        assert_eq!((g.ft.get(150).unwrap().type_count, g.ldt_loaded, g.ldt.len()), (0, 0, 0));
        assert_eq!(map(&mut g, pte(150, PTE_RW)), Outcome::Return(0));
    }

    #[test]
    fn pins_and_base_pointers() {
        let mut g = guest();
        assert_eq!(ext(&mut g, MMUEXT_PIN_L4_TABLE, 10), -22); // pinned already
        assert_eq!(ext(&mut g, MMUEXT_NEW_BASEPTR, 13), -22); // an L1, not an L4
        assert_eq!(ext(&mut g, MMUEXT_PIN_L1_TABLE, 20), 0);
        assert_eq!(ext(&mut g, MMUEXT_PIN_L1_TABLE, 20), -22);
        assert_eq!(ext(&mut g, MMUEXT_UNPIN_TABLE, 20), 0);
        assert_eq!(ext(&mut g, MMUEXT_UNPIN_TABLE, 20), -22);
        // A second address space: new L4 30, switched to and back.
        assert_eq!(ext(&mut g, MMUEXT_PIN_L4_TABLE, 30), 0);
        assert_eq!(ext(&mut g, MMUEXT_NEW_BASEPTR, 30), 0);
        assert_eq!(g.baseptrs[0], Some(Mfn(30)));
        assert_eq!(ext(&mut g, MMUEXT_UNPIN_TABLE, 30), 0); // still the base pointer
        assert_eq!(g.ft.get(30).unwrap().ty, PageType::L4);
        assert_eq!(ext(&mut g, MMUEXT_NEW_BASEPTR, 10), 0);
        assert_eq!(g.ft.get(30).unwrap().ty, PageType::None);
        assert_eq!(ext(&mut g, MMUEXT_NEW_USER_BASEPTR, 10), 0);
        assert_eq!(ext(&mut g, MMUEXT_NEW_USER_BASEPTR, 0), 0);
        assert_eq!(g.baseptrs, [Some(Mfn(10)), None]);
        assert_eq!(g.ft.get(10).unwrap().type_count, 2); // pin + kernel base pointer
        // Page operations on own ordinary frames only.
        g.frames.write_u64(Mfn(40), 0, 99);
        assert_eq!(ext(&mut g, MMUEXT_CLEAR_PAGE, 40), 0);
        assert_eq!(g.frames.read_u64(Mfn(40), 0), 0);
        assert_eq!(ext(&mut g, MMUEXT_CLEAR_PAGE, 13), -22);
        assert_eq!(ext(&mut g, 99, 0), -38);
        assert_eq!(ext(&mut g, MMUEXT_MARK_SUPER, 0), -95);
        assert_eq!(ext(&mut g, MMUEXT_TLB_FLUSH_LOCAL, 0), 0);
        assert_eq!(ext(&mut g, MMUEXT_INVLPG_LOCAL, VA), 0);
        assert_eq!(g.flushes, [None, Some(VA)]);
    }
}
