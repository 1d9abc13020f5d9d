// SPDX-License-Identifier: MIT OR Apache-2.0
//! `grant_table_op`: grant tables v1 (the rules are `crate::gnttab`'s and
//! `guest_pt`'s). One domain exists, so the granting domain is the caller
//! itself, named by its id; cross-domain grants come with the domains issue.

use super::{Args, Caller, Outcome, int};
use crate::gnttab::{MAX_FRAMES, Mapping, Status};
use crate::hal::{Guest, guest_range_ok};
use crate::mm::frame::Mfn;
use crate::mm::frame_table::{Owner, PageType};
use crate::mm::guest_pt::l1_slot;
use pv_abi::Errno;
use pv_abi::grant_table::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP,
    GNTMAP_READONLY, GNTST_BAD_COPY_ARG, GNTST_BAD_DEV_ADDR, GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF,
    GNTST_BAD_PAGE, GNTST_BAD_VIRT_ADDR, GNTST_GENERAL_ERROR, GNTST_OKAY, GNTST_PERMISSION_DENIED,
    GNTTABOP_CACHE_FLUSH, GNTTABOP_COPY, GNTTABOP_GET_STATUS_FRAMES, GNTTABOP_GET_VERSION,
    GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SET_VERSION, GNTTABOP_SETUP_TABLE,
    GNTTABOP_SWAP_GRANT_REF, GNTTABOP_TRANSFER, GNTTABOP_UNMAP_AND_REPLACE, GNTTABOP_UNMAP_GRANT_REF,
    GTF_TYPE_MASK, GnttabCacheFlush, GnttabCopy, GnttabCopyPtr, GnttabGetStatusFrames, GnttabGetVersion,
    GnttabMapGrantRef, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable, GnttabSwapGrantRef,
    GnttabTransfer, GnttabUnmapAndReplace, GnttabUnmapGrantRef,
};
use pv_abi::xen::DOMID_SELF;
use zerocopy::{FromBytes, IntoBytes};

/// Bits of the command above this are a continuation's (which the ops here
/// never need): a guest setting them gets -EINVAL.
const GNTTABOP_CMD_MASK: u32 = (1 << 12) - 1;

pub fn grant_table_op(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let (uop, count) = (args[1], int(args[2]).unwrap_or(0));
    let cmd = int(args[0]).unwrap_or(u32::MAX);
    // A negative count is refused; the table ops take exactly one structure.
    let single = matches!(
        cmd,
        GNTTABOP_SETUP_TABLE
            | GNTTABOP_QUERY_SIZE
            | GNTTABOP_SET_VERSION
            | GNTTABOP_GET_VERSION
            | GNTTABOP_GET_STATUS_FRAMES
    );
    if cmd & !GNTTABOP_CMD_MASK != 0 || (count as i32) < 0 || (single && count != 1) {
        return Outcome::Return(Errno::EINVAL.to_ret());
    }
    let r = match cmd {
        GNTTABOP_SETUP_TABLE => {
            each::<GnttabSetupTable>(guest, uop, count, |g, op| setup_table(caller, g, op))
        }
        GNTTABOP_QUERY_SIZE => each::<GnttabQuerySize>(guest, uop, count, |g, op| {
            op.status = match own(caller, op.dom) {
                Ok(()) => {
                    op.nr_frames = g.gnttab().0.frames.len() as u32;
                    op.max_nr_frames = MAX_FRAMES;
                    GNTST_OKAY
                }
                Err(s) => s,
            };
            Ok(())
        }),
        GNTTABOP_MAP_GRANT_REF => each::<GnttabMapGrantRef>(guest, uop, count, |g, op| {
            match map(caller, g, op) {
                Ok((handle, mfn)) => {
                    (op.status, op.handle, op.dev_bus_addr) = (GNTST_OKAY, handle, mfn.addr());
                }
                Err(s) => op.status = s,
            }
            Ok(())
        }),
        GNTTABOP_UNMAP_GRANT_REF => each::<GnttabUnmapGrantRef>(guest, uop, count, |g, op| {
            op.status = unmap(g, op).err().unwrap_or(GNTST_OKAY);
            Ok(())
        }),
        GNTTABOP_UNMAP_AND_REPLACE => each::<GnttabUnmapAndReplace>(guest, uop, count, |g, op| {
            op.status = unmap_and_replace(g, op).err().unwrap_or(GNTST_OKAY);
            Ok(())
        }),
        GNTTABOP_TRANSFER => each::<GnttabTransfer>(guest, uop, count, |g, op| {
            op.status = transfer(caller, g, op).err().unwrap_or(GNTST_OKAY);
            Ok(())
        }),
        GNTTABOP_SWAP_GRANT_REF => each::<GnttabSwapGrantRef>(guest, uop, count, |g, op| {
            let (gt, mmu) = g.gnttab();
            op.status = gt.swap(mmu.mem, op.ref_a, op.ref_b).err().unwrap_or(GNTST_OKAY);
            Ok(())
        }),
        GNTTABOP_CACHE_FLUSH => {
            each::<GnttabCacheFlush>(guest, uop, count, |g, op| cache_flush(caller, g, op))
        }
        GNTTABOP_COPY => each::<GnttabCopy>(guest, uop, count, |g, op| {
            op.status = copy(caller, g, op).err().unwrap_or(GNTST_OKAY);
            Ok(())
        }),
        // Version 1 is the only one here; a refusal writes the version in use back.
        GNTTABOP_SET_VERSION => {
            let r = each::<GnttabSetVersion>(guest, uop, 1, |g, op| {
                let asked = op.version;
                op.version = 1;
                match asked {
                    1 => Ok(()),
                    // A change while grants are mapped is refused first, as on Xen.
                    2 if g.gnttab().0.any_in_use() => Err(Errno::EBUSY),
                    _ => Err(Errno::EINVAL),
                }
            });
            if r.is_err() {
                let _ = guest.copy_to(uop, &1u32.to_le_bytes());
            }
            r.map(|_| 1)
        }
        // Status frames exist in version 2 only: none may be asked for.
        GNTTABOP_GET_STATUS_FRAMES => each::<GnttabGetStatusFrames>(guest, uop, 1, |_, op| {
            op.status = match own(caller, op.dom) {
                Ok(()) if op.nr_frames == 0 => GNTST_OKAY,
                Ok(()) => GNTST_GENERAL_ERROR,
                Err(s) => s,
            };
            Ok(())
        }),
        GNTTABOP_GET_VERSION => each::<GnttabGetVersion>(guest, uop, 1, |_, op| {
            own(caller, op.dom).map_err(|_| Errno::ESRCH)?;
            op.version = 1;
            Ok(())
        }),
        _ => Err(Errno::ENOSYS),
    };
    Outcome::from(r)
}

/// Runs `f` on each of `count` ops of type `T` at `uop`, writing each back.
fn each<T: FromBytes + IntoBytes + zerocopy::Immutable>(
    guest: &mut dyn Guest,
    uop: u64,
    count: u32,
    mut f: impl FnMut(&mut dyn Guest, &mut T) -> Result<(), Errno>,
) -> Result<i64, Errno> {
    let size = core::mem::size_of::<T>() as u64;
    for i in 0..u64::from(count) {
        let at = uop.wrapping_add(i * size);
        let mut op: T = super::read(guest, at)?;
        let r = f(guest, &mut op);
        guest.copy_to(at, op.as_bytes())?;
        r?;
    }
    Ok(0)
}

/// The granting domain must be the caller (DOMID_SELF or its own id).
fn own(caller: &Caller<'_>, dom: u16) -> Result<(), Status> {
    if dom == DOMID_SELF || dom == caller.domid { Ok(()) } else { Err(GNTST_BAD_DOMAIN) }
}

/// GNTTABOP_setup_table: grows the table to `nr_frames` shared frames and
/// lists them (the guest maps them to write its entries).
fn setup_table(caller: &Caller<'_>, guest: &mut dyn Guest, op: &mut GnttabSetupTable) -> Result<(), Errno> {
    if let Err(s) = own(caller, op.dom) {
        op.status = s;
        return Ok(());
    }
    if op.nr_frames > MAX_FRAMES {
        op.status = GNTST_GENERAL_ERROR;
        return Ok(());
    }
    while guest.gnttab().0.frames.len() < op.nr_frames as usize {
        let Some(mfn) = guest.alloc_shared_page() else {
            op.status = GNTST_GENERAL_ERROR;
            return Ok(());
        };
        guest.gnttab().0.frames.push(mfn);
    }
    // A list in the hypervisor's hole fails the call; an unmapped one the op.
    if op.nr_frames > 0 && !guest_range_ok(op.frame_list.addr(), 8 * op.nr_frames as usize) {
        return Err(Errno::EFAULT);
    }
    let frames = guest.gnttab().0.frames.clone();
    for (i, f) in frames.iter().take(op.nr_frames as usize).enumerate() {
        let at = op.frame_list.addr().wrapping_add(8 * i as u64);
        if guest.copy_to(at, &f.0.to_le_bytes()).is_err() {
            op.status = GNTST_BAD_VIRT_ADDR;
            return Ok(());
        }
    }
    op.status = GNTST_OKAY;
    Ok(())
}

/// Where a grant mapping's PTE is: with GNTMAP_contains_pte, `host_addr` is
/// its machine address; else it is the virtual address whose L1 entry it is.
fn pte_slot(guest: &mut dyn Guest, host_addr: u64, contains_pte: bool) -> Result<(Mfn, usize), Status> {
    if contains_pte {
        if !host_addr.is_multiple_of(8) {
            return Err(GNTST_GENERAL_ERROR);
        }
        return Ok((Mfn(host_addr >> 12), (host_addr & 0xfff) as usize / 8));
    }
    if !guest_range_ok(host_addr, 1) {
        return Err(GNTST_GENERAL_ERROR);
    }
    let l4 = guest.baseptr(false).ok_or(GNTST_GENERAL_ERROR)?;
    l1_slot(&*guest.mmu().mem, l4, host_addr).map_err(|_| GNTST_GENERAL_ERROR)
}

/// GNTTABOP_map_grant_ref: checks the entry (unless the grant is mapped
/// already: Xen does not read it again then), writes the PTE for a host
/// mapping, marks the entry in use; returns the handle and the frame.
fn map(caller: &Caller<'_>, guest: &mut dyn Guest, op: &GnttabMapGrantRef) -> Result<(u32, Mfn), Status> {
    let host = op.flags & GNTMAP_HOST_MAP != 0;
    if !host && op.flags & GNTMAP_DEVICE_MAP == 0 {
        return Err(GNTST_BAD_GNTREF);
    }
    // The granter by its real id (DOMID_SELF is not one): the caller or
    // another domain.
    let readonly = op.flags & GNTMAP_READONLY != 0;
    let mfn = {
        let (gt, _, mmu) = guest.gnttab_of(op.dom).ok_or(GNTST_BAD_DOMAIN)?;
        if op.ref_ >= gt.nr_entries() {
            return Err(GNTST_BAD_GNTREF);
        }
        match gt.mapped_frame(op.ref_, caller.domid, readonly) {
            Some(mfn) => mfn,
            None => Mfn(gt.check(&*mmu.mem, op.ref_, caller.domid, readonly)?),
        }
    };
    let by_pte = op.flags & GNTMAP_CONTAINS_PTE != 0;
    let pte = if host { Some(pte_slot(guest, op.host_addr, by_pte)?) } else { None };
    let (gt, maptrack, mut mmu) = guest.gnttab_of(op.dom).ok_or(GNTST_BAD_DOMAIN)?;
    if mmu.ft.get(mfn.0).map(|p| p.owner) != Some(Owner::Domain(op.dom)) {
        return Err(GNTST_BAD_PAGE);
    }
    match pte {
        Some((table, index)) => mmu
            .map_grant(table, index, mfn, op.dom, readonly, u64::from(op.flags >> 16))
            .map_err(|_| GNTST_GENERAL_ERROR)?,
        // A device mapping (no IOMMU here): the frame is only held.
        None => mmu.get_page_for(mfn, op.dom).map_err(|_| GNTST_BAD_PAGE)?,
    }
    let mapping = Mapping { granter: op.dom, gref: op.ref_, mfn, readonly, pte, by_pte };
    let tracked = gt.pin(mmu.mem, op.ref_, caller.domid, mfn, readonly).and_then(|()| {
        maptrack.track(mapping).inspect_err(|_| {
            gt.unpin(mmu.mem, op.ref_, readonly);
        })
    });
    match tracked {
        Ok(handle) => {
            guest.flush_tlb(None);
            Ok((handle, mfn))
        }
        Err(s) => {
            release(&mut mmu, &mapping);
            Err(s)
        }
    }
}

/// Drops what a mapping holds: its PTE (if the entry still maps the frame),
/// or for a device mapping the reference on the frame.
fn release(mmu: &mut crate::mm::guest_pt::Mmu<'_, '_>, m: &Mapping) -> bool {
    match m.pte {
        Some((table, index)) => mmu.unmap_grant(table, index, m.mfn).is_ok(),
        None => {
            mmu.put_page(m.mfn);
            true
        }
    }
}

/// GNTTABOP_unmap_grant_ref: the handle's mapping, named by the address it
/// is at (a virtual address, or the PTE's machine address for a
/// GNTMAP_contains_pte mapping) and/or its bus address. A host address of 0
/// with no bus address does nothing, as on Xen.
fn unmap(guest: &mut dyn Guest, op: &GnttabUnmapGrantRef) -> Result<(), Status> {
    let m = guest.maptrack().0.mapping(op.handle)?;
    if op.dev_bus_addr != 0 && op.dev_bus_addr != m.mfn.addr() {
        return Err(GNTST_BAD_DEV_ADDR);
    }
    // No address, or only a host address for a device mapping: nothing to do.
    if op.dev_bus_addr == 0 && (op.host_addr == 0 || m.pte.is_none()) {
        return Ok(());
    }
    if op.host_addr != 0 && pte_slot(guest, op.host_addr, m.by_pte).ok() != m.pte {
        return Err(GNTST_GENERAL_ERROR);
    }
    // If the guest rewrote the PTE meanwhile, its reference went with it;
    // the grant is unmapped all the same.
    let still_there = end_mapping(guest, op.handle, &m, None)?;
    guest.flush_tlb(None);
    if still_there { Ok(()) } else { Err(GNTST_GENERAL_ERROR) }
}

/// GNTTABOP_unmap_and_replace: the grant mapped at `host_addr` (a virtual
/// address; not a GNTMAP_contains_pte mapping) is replaced by the mapping at
/// `new_addr`, which goes (0: by nothing).
fn unmap_and_replace(guest: &mut dyn Guest, op: &GnttabUnmapAndReplace) -> Result<(), Status> {
    let m = guest.maptrack().0.mapping(op.handle)?;
    let (Some(at), false) = (m.pte, m.by_pte) else { return Err(GNTST_GENERAL_ERROR) };
    if pte_slot(guest, op.host_addr, false).ok() != Some(at) {
        return Err(GNTST_GENERAL_ERROR);
    }
    let from = if op.new_addr == 0 { None } else { Some(pte_slot(guest, op.new_addr, false)?) };
    {
        let (_, mut mmu) = guest.maptrack();
        mmu.replace_grant(at.0, at.1, m.mfn, from).map_err(|_| GNTST_GENERAL_ERROR)?;
    }
    end_mapping(guest, op.handle, &m, Some(()))?;
    guest.flush_tlb(None);
    Ok(())
}

/// Ends mapping `handle` (`m`): its PTE or device reference goes (unless
/// `replaced`, when the caller moved it already), the granter's entry is
/// unpinned if the granter is still there (a granter that went away left
/// the frame to the mappings), the handle is freed. Returns whether the
/// PTE still mapped the frame.
fn end_mapping(
    guest: &mut dyn Guest,
    handle: u32,
    m: &Mapping,
    replaced: Option<()>,
) -> Result<bool, Status> {
    let still_there = match guest.gnttab_of(m.granter) {
        Some((gt, maptrack, mut mmu)) => {
            let there = replaced.is_some() || release(&mut mmu, m);
            gt.unpin(mmu.mem, m.gref, m.readonly);
            maptrack.untrack(handle);
            there
        }
        None => {
            let (maptrack, mut mmu) = guest.maptrack();
            let there = replaced.is_some() || release(&mut mmu, m);
            maptrack.untrack(handle);
            there
        }
    };
    Ok(still_there)
}

/// GNTTABOP_transfer, to the caller itself (the only domain): an unmapped,
/// untyped frame of its own goes into its `accept_transfer` entry `ref`,
/// which records the frame; the M2P maps it to the pfn the entry named.
fn transfer(caller: &Caller<'_>, guest: &mut dyn Guest, op: &GnttabTransfer) -> Result<(), Status> {
    use pv_abi::grant_table::{GTF_ACCEPT_TRANSFER, GTF_TRANSFER_COMMITTED, GTF_TRANSFER_COMPLETED};
    let mfn = Mfn(op.mfn);
    {
        let (gt, mmu) = guest.gnttab();
        let info = mmu.ft.get(mfn.0).ok_or(GNTST_BAD_PAGE)?;
        // Only a frame held by nothing but its allocation can change hands.
        let stealable = info.owner == Owner::Domain(caller.domid) && info.allocated && info.count == 1;
        if !stealable || info.type_count > 0 || gt.frames.contains(&mfn) {
            return Err(GNTST_BAD_PAGE);
        }
    }
    if op.domid != caller.domid {
        return Err(GNTST_BAD_DOMAIN);
    }
    let (gt, mmu) = guest.gnttab();
    let e = gt.entry(&*mmu.mem, op.ref_).ok_or(GNTST_BAD_GNTREF)?;
    if e.flags & GTF_TYPE_MASK != GTF_ACCEPT_TRANSFER || e.domid != caller.domid {
        return Err(GNTST_GENERAL_ERROR);
    }
    let pfn = u64::from(e.frame);
    let flags = GTF_ACCEPT_TRANSFER | GTF_TRANSFER_COMMITTED | GTF_TRANSFER_COMPLETED;
    gt.set_entry(mmu.mem, op.ref_, crate::gnttab::Entry { flags, domid: e.domid, frame: mfn.0 as u32 });
    guest.set_m2p(mfn, pfn);
    Ok(())
}

/// GNTTABOP_cache_flush: caches are coherent on x86, so a clean of a frame
/// the caller owns does nothing; the checks are Xen's.
fn cache_flush(caller: &Caller<'_>, guest: &mut dyn Guest, op: &mut GnttabCacheFlush) -> Result<(), Errno> {
    use pv_abi::grant_table::{GNTTAB_CACHE_CLEAN, GNTTAB_CACHE_INVAL};
    if op.op & !(GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_INVAL) != 0
        || usize::from(op.offset) + usize::from(op.length) > 4096
    {
        return Err(Errno::EINVAL);
    }
    match guest.mmu().ft.get(op.a >> 12).map(|p| p.owner) {
        None | Some(Owner::Io) | Some(Owner::Free) => return Err(Errno::EINVAL),
        Some(Owner::Domain(d)) if d == caller.domid => {}
        Some(_) => return Err(Errno::EPERM),
    }
    if op.op == GNTTAB_CACHE_INVAL { Err(Errno::EOPNOTSUPP) } else { Ok(()) }
}

/// One end of a copy: a granted frame (read-only unless `write`) or one of
/// the caller's own frames; returns the frame and the byte offset.
fn copy_end(
    caller: &Caller<'_>,
    guest: &mut dyn Guest,
    p: &GnttabCopyPtr,
    gref: bool,
    write: bool,
) -> Result<Mfn, Status> {
    // The domain whose frame this end is: a grant's granter (the caller or
    // another), or the caller.
    let owner = if p.domid == DOMID_SELF { caller.domid } else { p.domid };
    let mfn = if gref {
        let (gt, _, mmu) = guest.gnttab_of(owner).ok_or(GNTST_BAD_DOMAIN)?;
        let gref = u32::try_from(p.u).map_err(|_| GNTST_BAD_GNTREF)?;
        if gref >= gt.nr_entries() {
            return Err(GNTST_BAD_GNTREF);
        }
        Mfn(gt.check(&*mmu.mem, gref, caller.domid, !write)?)
    } else {
        // A frame end names the caller as DOMID_SELF only.
        if p.domid != DOMID_SELF {
            return Err(GNTST_PERMISSION_DENIED);
        }
        Mfn(p.u)
    };
    let mmu = guest.mmu();
    let info = mmu.ft.get(mfn.0).ok_or(GNTST_BAD_PAGE)?;
    if info.owner != Owner::Domain(owner) {
        return Err(GNTST_BAD_PAGE);
    }
    // Nothing writes a page table or descriptor page behind the MMU's back.
    if write && info.type_count > 0 && info.ty != PageType::Writable {
        return Err(GNTST_GENERAL_ERROR);
    }
    Ok(mfn)
}

/// GNTTABOP_copy: `len` bytes, neither end crossing its page.
fn copy(caller: &Caller<'_>, guest: &mut dyn Guest, op: &GnttabCopy) -> Result<(), Status> {
    let len = usize::from(op.len);
    let (so, d_o) = (usize::from(op.source.offset), usize::from(op.dest.offset));
    if so + len > 4096 || d_o + len > 4096 {
        return Err(GNTST_BAD_COPY_ARG);
    }
    let src = copy_end(caller, guest, &op.source, op.flags & GNTCOPY_SOURCE_GREF != 0, false)?;
    let dst = copy_end(caller, guest, &op.dest, op.flags & GNTCOPY_DEST_GREF != 0, true)?;
    let mut buf = [0u8; 4096];
    let mmu = guest.mmu();
    mmu.mem.read(src, so, &mut buf[..len]);
    mmu.mem.write(dst, d_o, &buf[..len]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::FrameMemory;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0};
    use crate::mm::guest_pt::{PTE_P, PTE_RW};
    use pv_abi::grant_table::{GNTST_BAD_HANDLE, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING};

    const VA: u64 = 0xffff_ffff_8020_3000;

    /// A guest with tables 10 -> 11 -> 12 -> 13 (pinned, base pointer), a
    /// one-frame grant table (frame 20) and data frames from 150.
    fn guest() -> FakeGuest {
        let mut g = FakeGuest::new(BASE, 0x10000);
        let pte = |m: u64| (m << 12) | PTE_P | PTE_RW;
        g.frames.write_u64(Mfn(10), 511, pte(11));
        g.frames.write_u64(Mfn(11), 510, pte(12));
        g.frames.write_u64(Mfn(12), 1, pte(13));
        g.mmu().pin(Mfn(10), 4).unwrap();
        crate::hypercall::mm::new_baseptr(&mut g, false, Mfn(10)).unwrap();
        g.gnttab.frames.push(Mfn(20));
        g
    }

    fn grant(g: &mut FakeGuest, gref: usize, flags: u16, frame: u32) {
        g.frames.write_u64(Mfn(20), gref, u64::from(flags) | u64::from(frame) << 32);
    }

    fn op<T: IntoBytes + FromBytes + zerocopy::Immutable>(
        g: &mut FakeGuest,
        cmd: u32,
        v: &T,
    ) -> (Outcome, T) {
        let n = core::mem::size_of::<T>();
        g.mem[..n].copy_from_slice(v.as_bytes());
        let r = grant_table_op(&DOM0, g, &[u64::from(cmd), BASE, 1, 0, 0, 0]);
        (r, T::read_from_bytes(&g.mem[..n]).unwrap())
    }

    /// Domain 1 grants its frame 256 to the caller (domain 0).
    fn foreign_grant(g: &mut FakeGuest, gref: usize, flags: u16) {
        g.frames.zero(Mfn(21));
        g.frames.write_u64(Mfn(21), gref, u64::from(flags) | 256 << 32);
        g.foreign_gnttab.insert(1, crate::gnttab::GrantTable::new(alloc::vec![Mfn(21)]));
    }

    #[test]
    fn another_domains_grant() {
        let mut g = guest();
        foreign_grant(&mut g, 4, GTF_PERMIT_ACCESS);
        let before = g.ft.get(256).unwrap().count;
        let map = |g: &mut FakeGuest, dom, gref, flags| {
            let m = GnttabMapGrantRef {
                host_addr: VA,
                flags: GNTMAP_HOST_MAP | flags,
                ref_: gref,
                dom,
                ..Default::default()
            };
            op(g, GNTTABOP_MAP_GRANT_REF, &m).1
        };
        assert_eq!(map(&mut g, 7, 4, 0).status, GNTST_BAD_DOMAIN, "no such domain");
        assert_eq!(map(&mut g, 1, 5, 0).status, GNTST_GENERAL_ERROR, "not granted");
        let m = map(&mut g, 1, 4, 0);
        assert_eq!((m.status, m.dev_bus_addr), (GNTST_OKAY, 256 << 12));
        // The mapping holds the granter's frame; the granter sees it in use.
        assert_eq!(g.ft.get(256).unwrap().count, before + 1);
        assert_eq!(g.frames.read_u64(Mfn(21), 4) as u16, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
        assert_eq!(crate::mm::guest_pt::entry_mfn(g.frames.read_u64(Mfn(13), 3)), Mfn(256));
        // Copies from and to its grant, naming the granter.
        g.frames.write(Mfn(256), 0, b"granted");
        let end = |domid, u| GnttabCopyPtr { u, domid, offset: 0, ..Default::default() };
        let c = GnttabCopy {
            source: end(1, 4),
            dest: end(DOMID_SELF, 30),
            len: 7,
            flags: GNTCOPY_SOURCE_GREF,
            ..Default::default()
        };
        assert_eq!(op(&mut g, GNTTABOP_COPY, &c).1.status, GNTST_OKAY);
        let mut b = [0u8; 7];
        g.frames.read(Mfn(30), 0, &mut b);
        assert_eq!(&b, b"granted");
        let c = GnttabCopy {
            source: end(1, 4),
            dest: end(DOMID_SELF, 30),
            len: 7,
            flags: 0,
            ..Default::default()
        };
        assert_eq!(
            op(&mut g, GNTTABOP_COPY, &c).1.status,
            GNTST_PERMISSION_DENIED,
            "a frame end is the caller's"
        );
        let c = GnttabCopy {
            source: end(9, 4),
            dest: end(DOMID_SELF, 30),
            len: 7,
            flags: GNTCOPY_SOURCE_GREF,
            ..Default::default()
        };
        assert_eq!(op(&mut g, GNTTABOP_COPY, &c).1.status, GNTST_BAD_DOMAIN);
        // Unmapped: the reference and the in-use bits go.
        let u = GnttabUnmapGrantRef { host_addr: VA, handle: m.handle, ..Default::default() };
        assert_eq!(op(&mut g, GNTTABOP_UNMAP_GRANT_REF, &u).1.status, GNTST_OKAY);
        assert_eq!(g.ft.get(256).unwrap().count, before);
        assert_eq!(g.frames.read_u64(Mfn(21), 4) as u16, GTF_PERMIT_ACCESS);
        // A granter that went away: the mapping still unmaps (its frame was
        // left to it), without a grant table to update.
        let m = map(&mut g, 1, 4, GNTMAP_READONLY);
        assert_eq!(m.status, GNTST_OKAY);
        g.foreign_gnttab.clear();
        let u = GnttabUnmapGrantRef { host_addr: VA, handle: m.handle, ..Default::default() };
        assert_eq!(op(&mut g, GNTTABOP_UNMAP_GRANT_REF, &u).1.status, GNTST_OKAY);
        assert_eq!(g.ft.get(256).unwrap().count, before);
    }

    #[test]
    fn map_use_and_unmap() {
        let mut g = guest();
        grant(&mut g, 5, GTF_PERMIT_ACCESS, 150);
        grant(&mut g, 6, GTF_PERMIT_ACCESS | GTF_READONLY, 151);
        let map = |g: &mut FakeGuest, gref, flags| {
            let m = GnttabMapGrantRef {
                host_addr: VA,
                flags: GNTMAP_HOST_MAP | flags,
                ref_: gref,
                dom: 0,
                ..Default::default()
            };
            op(g, GNTTABOP_MAP_GRANT_REF, &m).1
        };
        let m = map(&mut g, 5, 3 << 16);
        assert_eq!((m.status, m.handle, m.dev_bus_addr), (GNTST_OKAY, 0, 150 << 12));
        let pte = g.frames.read_u64(Mfn(13), 3);
        assert_eq!(pte, (150 << 12) | 0x167 | (3 << 9) | (1 << 63)); // Xen's: a user mapping, global, NX
        assert_eq!(g.frames.read_u64(Mfn(20), 5) as u16, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
        // A read-only grant cannot be mapped writable; refs out of range; other domains.
        assert_eq!(map(&mut g, 6, 0).status, GNTST_GENERAL_ERROR);
        assert_eq!(map(&mut g, 600, GNTMAP_READONLY).status, GNTST_BAD_GNTREF);
        assert_eq!(map(&mut g, 7, GNTMAP_READONLY).status, GNTST_GENERAL_ERROR); // not granted
        let other = GnttabMapGrantRef {
            host_addr: VA,
            flags: GNTMAP_HOST_MAP,
            ref_: 5,
            dom: 3,
            ..Default::default()
        };
        assert_eq!(op(&mut g, GNTTABOP_MAP_GRANT_REF, &other).1.status, GNTST_BAD_DOMAIN);
        // Unmap: a bad handle, the wrong address, then the right one.
        let un = |g: &mut FakeGuest, host_addr, handle| {
            let u = GnttabUnmapGrantRef { host_addr, handle, ..Default::default() };
            op(g, GNTTABOP_UNMAP_GRANT_REF, &u).1.status
        };
        assert_eq!(un(&mut g, VA, 9), GNTST_BAD_HANDLE);
        assert_eq!(un(&mut g, VA + 4096, 0), GNTST_GENERAL_ERROR);
        assert_eq!(un(&mut g, 0, 0), GNTST_OKAY); // no address: nothing happens
        assert_ne!(g.frames.read_u64(Mfn(13), 3), 0);
        assert_eq!(un(&mut g, VA, 0), GNTST_OKAY);
        assert_eq!(g.frames.read_u64(Mfn(13), 3), 0);
        assert_eq!(g.frames.read_u64(Mfn(20), 5) as u16, GTF_PERMIT_ACCESS);
        assert_eq!(g.ft.get(150).unwrap().count, 1);
        assert_eq!(un(&mut g, VA, 0), GNTST_BAD_HANDLE);
    }

    #[test]
    fn copies_and_sizes() {
        let mut g = guest();
        grant(&mut g, 5, GTF_PERMIT_ACCESS | GTF_READONLY, 150);
        g.frames.write(Mfn(150), 100, b"granted bytes");
        // A grant end names the granter; a frame end the caller as DOMID_SELF.
        let end = |u: u64, offset: u16| {
            let domid = if u < 10 { 0 } else { DOMID_SELF };
            GnttabCopyPtr { u, domid, offset, ..Default::default() }
        };
        let c =
            |src, dst, len, flags| GnttabCopy { source: src, dest: dst, len, flags, ..Default::default() };
        let (r, out) = op(&mut g, GNTTABOP_COPY, &c(end(5, 100), end(151, 8), 13, GNTCOPY_SOURCE_GREF));
        assert_eq!((r, out.status), (Outcome::Return(0), GNTST_OKAY));
        let mut b = [0u8; 13];
        g.frames.read(Mfn(151), 8, &mut b);
        assert_eq!(&b, b"granted bytes");
        // The read-only grant as a destination; crossing a page; a page table.
        assert_eq!(
            op(&mut g, GNTTABOP_COPY, &c(end(151, 0), end(5, 0), 8, GNTCOPY_DEST_GREF)).1.status,
            GNTST_GENERAL_ERROR
        );
        assert_eq!(
            op(&mut g, GNTTABOP_COPY, &c(end(151, 4090), end(152, 0), 8, 0)).1.status,
            GNTST_BAD_COPY_ARG
        );
        assert_eq!(
            op(&mut g, GNTTABOP_COPY, &c(end(151, 0), end(13, 0), 8, 0)).1.status,
            GNTST_GENERAL_ERROR
        );
        assert_eq!(op(&mut g, GNTTABOP_COPY, &c(end(256, 0), end(152, 0), 8, 0)).1.status, GNTST_BAD_PAGE);
        let q = op(&mut g, GNTTABOP_QUERY_SIZE, &GnttabQuerySize { dom: DOMID_SELF, ..Default::default() }).1;
        assert_eq!((q.nr_frames, q.max_nr_frames, q.status), (1, MAX_FRAMES, GNTST_OKAY));
        let s = GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: 2,
            frame_list: pv_abi::xen::GuestHandle::new(BASE + 256),
            ..Default::default()
        };
        let (_, s) = op(&mut g, GNTTABOP_SETUP_TABLE, &s);
        assert_eq!(s.status, GNTST_OKAY);
        assert_eq!(u64::from_le_bytes(g.mem[256..264].try_into().unwrap()), 20);
        assert_eq!(g.gnttab.frames.len(), 2);
        assert_eq!(
            op(&mut g, GNTTABOP_SET_VERSION, &GnttabSetVersion { version: 2 }).0,
            Outcome::Return(-22)
        );
        assert_eq!(grant_table_op(&DOM0, &mut g, &[99, BASE, 1, 0, 0, 0]), Outcome::Return(-38));
        assert_eq!(
            grant_table_op(&DOM0, &mut g, &[u64::from(GNTTABOP_COPY), 8, 1, 0, 0, 0]),
            Outcome::Return(-14)
        );
    }
}
