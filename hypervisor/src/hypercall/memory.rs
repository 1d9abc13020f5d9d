// SPDX-License-Identifier: MIT OR Apache-2.0
//! `memory_op`: the sub-ops that describe machine memory to a PV guest.
//! Reservations and the physmap arrive with the PV MMU issue (-ENOSYS now).

use super::{Args, Caller, Outcome};
use crate::hal::Guest;
use pv_abi::Errno;
use pv_abi::arch_x86::{MACH2PHYS_NR_ENTRIES, MACH2PHYS_VIRT_END, MACH2PHYS_VIRT_START};
use pv_abi::memory::{
    XENMEM_CURRENT_RESERVATION, XENMEM_MACHPHYS_MAPPING, XENMEM_MAXIMUM_RAM_PAGE, XENMEM_MAXIMUM_RESERVATION,
    XenMachphysMapping,
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
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => {
            // The argument points to a domid_t; other domains come with domctl.
            let mut id = [0u8; 2];
            match guest.copy_from(args[1], &mut id) {
                Err(f) => Err(f.into()),
                Ok(()) => match u16::from_le_bytes(id) {
                    d if d == DOMID_SELF || d == caller.domid => Ok(caller.nr_pages as i64),
                    _ if !caller.privileged => Err(Errno::EPERM),
                    _ => Err(Errno::ESRCH),
                },
            }
        }
        _ => Err(Errno::ENOSYS),
    };
    Outcome::from(r)
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
        assert_eq!(op(&mut g, XENMEM_CURRENT_RESERVATION, BASE), Outcome::Return(4096));
        g.mem[..2].copy_from_slice(&7u16.to_le_bytes());
        assert_eq!(op(&mut g, XENMEM_MAXIMUM_RESERVATION, BASE), Outcome::Return(-3));
        assert_eq!(op(&mut g, XENMEM_CURRENT_RESERVATION, 4), Outcome::Return(-14));
    }
}
