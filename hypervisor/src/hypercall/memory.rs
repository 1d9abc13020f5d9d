// SPDX-License-Identifier: MIT OR Apache-2.0
//! `memory_op`: the sub-ops that describe machine memory to a PV guest, and
//! the reservation ops that grow and shrink a domain (a balloon driver).

use super::{Args, Caller, Outcome, read};
use crate::hal::Guest;
use crate::mm::frame::Mfn;
use pv_abi::Errno;
use pv_abi::arch_x86::{MACH2PHYS_NR_ENTRIES, MACH2PHYS_VIRT_END, MACH2PHYS_VIRT_START};
use pv_abi::memory::{
    XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION, XENMEM_INCREASE_RESERVATION,
    XENMEM_MACHINE_MEMORY_MAP, XENMEM_MACHPHYS_MAPPING, XENMEM_MACHPHYS_MFN_LIST, XENMEM_MAXIMUM_RAM_PAGE,
    XENMEM_MAXIMUM_RESERVATION, XENMEM_POPULATE_PHYSMAP, XenMachphysMapping, XenMachphysMfnList,
    XenMemoryMap, XenMemoryReservation,
};
use pv_abi::xen::DOMID_SELF;
use zerocopy::IntoBytes;

pub fn memory_op(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    // The low 6 bits carry the sub-op (MEMOP_CMD_MASK); the rest is a
    // continuation's start extent.
    let r = match (args[0] & 0x3f) as u32 {
        XENMEM_MAXIMUM_RAM_PAGE => Ok(caller.max_page as i64),
        XENMEM_MACHPHYS_MAPPING => {
            let m = XenMachphysMapping {
                v_start: MACH2PHYS_VIRT_START,
                v_end: MACH2PHYS_VIRT_END,
                max_mfn: MACH2PHYS_NR_ENTRIES - 1,
            };
            guest.copy_to(args[1], m.as_bytes()).map(|_| 0).map_err(Errno::from)
        }
        cmd @ (XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION) => {
            // The argument points to a domid_t; other domains come with domctl.
            let mut id = [0u8; 2];
            guest.copy_from(args[1], &mut id).map_err(Errno::from).and_then(|()| {
                own_domain(caller, u16::from_le_bytes(id))?;
                let (current, max) = guest.reservation();
                Ok(if cmd == XENMEM_CURRENT_RESERVATION { current } else { max } as i64)
            })
        }
        cmd @ (XENMEM_INCREASE_RESERVATION | XENMEM_DECREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP) => {
            reservation(caller, guest, cmd, args[0] >> MEMOP_EXTENT_SHIFT, args[1])
        }
        XENMEM_MACHPHYS_MFN_LIST => machphys_mfn_list(caller, guest, args[1]),
        XENMEM_MACHINE_MEMORY_MAP if !caller.privileged => Err(Errno::EPERM),
        XENMEM_MACHINE_MEMORY_MAP => machine_memory_map(caller, guest, args[1]),
        _ => Err(Errno::ENOSYS),
    };
    Outcome::from(r)
}

/// The start extent of a continuation sits above the sub-op's 6 bits.
const MEMOP_EXTENT_SHIFT: u32 = 6;

/// Reservation ops act on the caller's own domain until domains can be
/// named (a privileged caller naming another gets -ESRCH).
fn own_domain(caller: &Caller<'_>, id: u16) -> Result<(), Errno> {
    match id {
        d if d == DOMID_SELF || d == caller.domid => Ok(()),
        _ if !caller.privileged => Err(Errno::EPERM),
        _ => Err(Errno::ESRCH),
    }
}

/// increase_reservation, decrease_reservation, populate_physmap: returns
/// the number of extents done (from `start`); stops at the first that
/// cannot be (no memory, a frame not the domain's, an unreadable list).
/// Single pages only: a larger extent order does nothing, as on Xen when
/// multi-page extents are not permitted.
fn reservation(
    caller: &Caller<'_>,
    guest: &mut dyn Guest,
    cmd: u32,
    start: u64,
    arg: u64,
) -> Result<i64, Errno> {
    let r: XenMemoryReservation = read(guest, arg)?;
    own_domain(caller, r.domid)?;
    if start > r.nr_extents {
        return Err(Errno::EINVAL);
    }
    if r.extent_order != 0 {
        return Ok(start as i64);
    }
    let list = r.extent_start.addr();
    let mut done = start;
    while done < r.nr_extents {
        let at = list.wrapping_add(done.wrapping_mul(8));
        let ok = match cmd {
            XENMEM_DECREASE_RESERVATION => {
                read::<u64>(guest, at).is_ok_and(|mfn| guest.mmu().release(Mfn(mfn)).is_ok())
            }
            XENMEM_INCREASE_RESERVATION => guest
                .alloc_page()
                .is_some_and(|mfn| list == 0 || guest.copy_to(at, &mfn.0.to_le_bytes()).is_ok()),
            // populate_physmap: the list holds PFNs; a PV guest gets the MFNs back.
            _ => read::<u64>(guest, at).is_ok_and(|pfn| {
                guest.alloc_page().is_some_and(|mfn| {
                    guest.set_m2p(mfn, pfn);
                    guest.copy_to(at, &mfn.0.to_le_bytes()).is_ok()
                })
            }),
        };
        if !ok {
            break;
        }
        done += 1;
    }
    Ok(done as i64)
}

/// XENMEM_machine_memory_map (dom0): the machine's memory map, as e820
/// entries (20 bytes each), as many as the guest's buffer holds.
fn machine_memory_map(caller: &Caller<'_>, guest: &mut dyn Guest, arg: u64) -> Result<i64, Errno> {
    let mut map: XenMemoryMap = read(guest, arg)?;
    let n = caller.host_memory_map.len().min(map.nr_entries as usize);
    for (i, a) in caller.host_memory_map[..n].iter().enumerate() {
        let mut e = [0u8; 20];
        e[..8].copy_from_slice(&a.base.to_le_bytes());
        e[8..16].copy_from_slice(&a.len.to_le_bytes());
        e[16..].copy_from_slice(&a.typ.to_le_bytes());
        guest.copy_to(map.buffer.addr().wrapping_add(20 * i as u64), &e)?;
    }
    map.nr_entries = n as u32;
    guest.copy_to(arg, map.as_bytes())?;
    Ok(0)
}

/// XENMEM_machphys_mfn_list: the frame at the start of each 2 MiB of the
/// M2P table, as many as the guest asks for.
fn machphys_mfn_list(caller: &Caller<'_>, guest: &mut dyn Guest, arg: u64) -> Result<i64, Errno> {
    let mut list: XenMachphysMfnList = read(guest, arg)?;
    let (first, frames) = caller.m2p_frames;
    let n = frames.div_ceil(512).min(u64::from(list.max_extents));
    for i in 0..n {
        guest.copy_to(list.extent_start.addr().wrapping_add(8 * i), &(first + 512 * i).to_le_bytes())?;
    }
    list.nr_extents = n as u32;
    guest.copy_to(arg, list.as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0};

    #[test]
    fn machphys_mapping_and_max_page() {
        let mut g = FakeGuest::new(BASE, 4096);
        let op = |g: &mut FakeGuest, cmd: u32, arg| memory_op(&DOM0, g, &[u64::from(cmd), arg, 0, 0, 0, 0]);
        assert_eq!(op(&mut g, XENMEM_MAXIMUM_RAM_PAGE, 0), Outcome::Return(0x8000));
        assert_eq!(op(&mut g, XENMEM_MACHPHYS_MAPPING, BASE), Outcome::Return(0));
        assert_eq!(u64::from_le_bytes(g.mem[..8].try_into().unwrap()), MACH2PHYS_VIRT_START);
        assert_eq!(op(&mut g, XENMEM_MACHPHYS_MAPPING, 8), Outcome::Return(-14));
        assert_eq!(op(&mut g, 9999, BASE), Outcome::Return(-38));
        g.mem[..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
        assert_eq!(op(&mut g, XENMEM_CURRENT_RESERVATION, BASE), Outcome::Return(256));
        assert_eq!(op(&mut g, XENMEM_MAXIMUM_RESERVATION, BASE), Outcome::Return(260));
        g.mem[..2].copy_from_slice(&7u16.to_le_bytes());
        assert_eq!(op(&mut g, XENMEM_MAXIMUM_RESERVATION, BASE), Outcome::Return(-3));
        assert_eq!(op(&mut g, XENMEM_CURRENT_RESERVATION, 4), Outcome::Return(-14));
    }

    #[test]
    fn balloon_down_and_up() {
        use crate::hal::fake::FAKE_FRAMES;
        let mut g = FakeGuest::new(BASE, 8192);
        let list = BASE + 4096;
        let res = |g: &mut FakeGuest, cmd: u32, n: u64, order: u32| {
            let r = XenMemoryReservation {
                extent_start: pv_abi::xen::GuestHandle::new(list),
                nr_extents: n,
                extent_order: order,
                domid: DOMID_SELF,
                ..Default::default()
            };
            g.mem[..32].copy_from_slice(r.as_bytes());
            memory_op(&DOM0, g, &[u64::from(cmd), BASE, 0, 0, 0, 0])
        };
        let put = |g: &mut FakeGuest, i: usize, v: u64| {
            g.mem[4096 + 8 * i..4104 + 8 * i].copy_from_slice(&v.to_le_bytes())
        };
        let get = |g: &FakeGuest, i: usize| {
            u64::from_le_bytes(g.mem[4096 + 8 * i..4104 + 8 * i].try_into().unwrap())
        };
        // Give back frames 40 and 41; 41 again and another domain's frame stop the batch.
        for (i, m) in [40, 41, 41, FAKE_FRAMES.end].into_iter().enumerate() {
            put(&mut g, i, m);
        }
        assert_eq!(res(&mut g, XENMEM_DECREASE_RESERVATION, 4, 0), Outcome::Return(2));
        assert_eq!(g.ft.freed, [(40, 0), (41, 0)]);
        assert_eq!(g.reservation().0, 254);
        // Populate pfns 7 and 8: new frames, M2P set, MFNs written back; up to the maximum.
        put(&mut g, 0, 7);
        put(&mut g, 1, 8);
        assert_eq!(res(&mut g, XENMEM_POPULATE_PHYSMAP, 2, 0), Outcome::Return(2));
        let (a, b) = (get(&g, 0), get(&g, 1));
        assert!(a > FAKE_FRAMES.end && b > FAKE_FRAMES.end && a != b);
        assert_eq!((g.m2p.get(&a), g.m2p.get(&b)), (Some(&7), Some(&8)));
        assert_eq!(res(&mut g, XENMEM_INCREASE_RESERVATION, 5, 0), Outcome::Return(4)); // max 260
        assert_eq!(g.reservation().0, 260);
        // Larger extents do nothing; a start beyond the count; a bad list.
        assert_eq!(res(&mut g, XENMEM_DECREASE_RESERVATION, 1, 1), Outcome::Return(0));
        assert_eq!(
            memory_op(&DOM0, &mut g, &[u64::from(XENMEM_DECREASE_RESERVATION) | (9 << 6), BASE, 0, 0, 0, 0]),
            Outcome::Return(-22)
        );
        assert_eq!(
            memory_op(&DOM0, &mut g, &[u64::from(XENMEM_POPULATE_PHYSMAP), 8, 0, 0, 0, 0]),
            Outcome::Return(-14)
        );
    }
}
