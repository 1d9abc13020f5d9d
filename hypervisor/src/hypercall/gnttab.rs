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
    GNTMAP_READONLY, GNTST_BAD_COPY_ARG, GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF, GNTST_BAD_PAGE,
    GNTST_BAD_VIRT_ADDR, GNTST_GENERAL_ERROR, GNTST_OKAY, GNTTABOP_COPY, GNTTABOP_GET_VERSION,
    GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SET_VERSION, GNTTABOP_SETUP_TABLE,
    GNTTABOP_UNMAP_GRANT_REF, GnttabCopy, GnttabCopyPtr, GnttabGetVersion, GnttabMapGrantRef,
    GnttabQuerySize, GnttabSetVersion, GnttabSetupTable, GnttabUnmapGrantRef,
};
use pv_abi::xen::DOMID_SELF;
use zerocopy::{FromBytes, IntoBytes};

pub fn grant_table_op(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let (uop, count) = (args[1], int(args[2]).unwrap_or(0));
    let r = match int(args[0]).unwrap_or(u32::MAX) {
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
                Ok(handle) => (op.status, op.handle) = (GNTST_OKAY, handle),
                Err(s) => op.status = s,
            }
            Ok(())
        }),
        GNTTABOP_UNMAP_GRANT_REF => each::<GnttabUnmapGrantRef>(guest, uop, count, |g, op| {
            op.status = unmap(g, op).err().unwrap_or(GNTST_OKAY);
            Ok(())
        }),
        GNTTABOP_COPY => each::<GnttabCopy>(guest, uop, count, |g, op| {
            op.status = copy(caller, g, op).err().unwrap_or(GNTST_OKAY);
            Ok(())
        }),
        // Version 1 is the only one here.
        GNTTABOP_SET_VERSION => each::<GnttabSetVersion>(guest, uop, 1, |_, op| match op.version {
            1 => Ok(()),
            _ => Err(Errno::EINVAL),
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
        let mut op = T::new_zeroed();
        guest.copy_from(at, op.as_mut_bytes())?;
        f(guest, &mut op)?;
        guest.copy_to(at, op.as_bytes())?;
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

/// GNTTABOP_map_grant_ref (host mappings): checks the entry, writes the
/// PTE, marks the entry in use, returns the handle.
fn map(caller: &Caller<'_>, guest: &mut dyn Guest, op: &GnttabMapGrantRef) -> Result<u32, Status> {
    if op.flags & GNTMAP_HOST_MAP == 0 {
        // Device mappings need an IOMMU; PV guests here have none.
        return Err(if op.flags & GNTMAP_DEVICE_MAP == 0 { GNTST_BAD_GNTREF } else { GNTST_GENERAL_ERROR });
    }
    if op.dom != caller.domid {
        return Err(GNTST_BAD_DOMAIN);
    }
    let readonly = op.flags & GNTMAP_READONLY != 0;
    let frame = {
        let (gt, mmu) = guest.gnttab();
        gt.check(&*mmu.mem, op.ref_, caller.domid, readonly)?
    };
    let mfn = Mfn(frame);
    let pte = pte_slot(guest, op.host_addr, op.flags & GNTMAP_CONTAINS_PTE != 0)?;
    let (gt, mut mmu) = guest.gnttab();
    mmu.map_grant(pte.0, pte.1, mfn, op.dom, readonly, u64::from(op.flags >> 16))
        .map_err(|_| GNTST_GENERAL_ERROR)?;
    let tracked = gt.pin(mmu.mem, op.ref_, caller.domid, mfn, readonly).and_then(|()| {
        gt.track(Mapping { granter: op.dom, gref: op.ref_, mfn, readonly, pte }).inspect_err(|_| {
            gt.unpin(mmu.mem, op.ref_, readonly);
        })
    });
    match tracked {
        Ok(handle) => {
            guest.flush_tlb(None);
            Ok(handle)
        }
        Err(s) => {
            let _ = mmu.unmap_grant(pte.0, pte.1, mfn);
            Err(s)
        }
    }
}

/// GNTTABOP_unmap_grant_ref: the handle's mapping must be at `host_addr`
/// (as a virtual address or a PTE's machine address).
fn unmap(guest: &mut dyn Guest, op: &GnttabUnmapGrantRef) -> Result<(), Status> {
    let m = guest.gnttab().0.mapping(op.handle)?;
    let at = [pte_slot(guest, op.host_addr, false).ok(), pte_slot(guest, op.host_addr, true).ok()];
    if op.host_addr != 0 && !at.contains(&Some(m.pte)) {
        return Err(GNTST_GENERAL_ERROR);
    }
    let (gt, mut mmu) = guest.gnttab();
    // If the guest's table lost its type meanwhile, the PTE's reference went
    // with it; the grant is unmapped all the same.
    let r = mmu.unmap_grant(m.pte.0, m.pte.1, m.mfn);
    gt.unpin(mmu.mem, m.gref, m.readonly);
    gt.untrack(op.handle);
    guest.flush_tlb(None);
    r.map_err(|_| GNTST_GENERAL_ERROR)
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
    let mfn = if gref {
        if p.domid != caller.domid && p.domid != DOMID_SELF {
            return Err(GNTST_BAD_DOMAIN);
        }
        let (gt, mmu) = guest.gnttab();
        let gref = u32::try_from(p.u).map_err(|_| GNTST_BAD_GNTREF)?;
        if gref >= gt.nr_entries() {
            return Err(GNTST_BAD_GNTREF);
        }
        Mfn(gt.check(&*mmu.mem, gref, caller.domid, !write)?)
    } else {
        Mfn(p.u)
    };
    let mmu = guest.mmu();
    let info = mmu.ft.get(mfn.0).ok_or(GNTST_BAD_PAGE)?;
    if info.owner != Owner::Domain(caller.domid) {
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
    use crate::mm::guest_pt::{PTE_GNTTAB, PTE_P, PTE_RW};
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
        assert_eq!((m.status, m.handle), (GNTST_OKAY, 0));
        let pte = g.frames.read_u64(Mfn(13), 3);
        assert_eq!((pte >> 12 & 0xff_ffff_ffff, pte & PTE_GNTTAB != 0, (pte >> 9) & 7), (150, true, 3));
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
        let end = |u: u64, offset: u16| GnttabCopyPtr { u, domid: 0, offset, ..Default::default() };
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
