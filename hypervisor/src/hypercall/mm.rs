// SPDX-License-Identifier: MIT OR Apache-2.0
//! `update_va_mapping`: write one L1 entry of the guest's current address
//! space, checked, then flush as asked. (mmu_update, mmuext_op and the
//! reference-counted page types are the PV MMU issue.)

use super::{Args, Caller, Outcome};
use crate::hal::{Guest, guest_range_ok};
use crate::mm::guest_pt::{check_l1e, l1_slot};
use pv_abi::Errno;
use pv_abi::xen::{UVMF_FLUSHTYPE_MASK, UVMF_INVLPG, UVMF_TLB_FLUSH};

pub fn update_va_mapping(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let (va, val, flags) = (args[0], args[1], args[2]);
    let r = (|| {
        if !guest_range_ok(va, 1) {
            return Err(Errno::EINVAL);
        }
        let l4 = guest.l4();
        let (l1, index) = l1_slot(guest.frames(), l4, va)?;
        let stored = check_l1e(val, |m| guest.frame_kind(m))?;
        guest.frames().write_u64(l1, index, stored);
        match flags & UVMF_FLUSHTYPE_MASK {
            UVMF_INVLPG => guest.flush_tlb(Some(va)),
            UVMF_TLB_FLUSH => guest.flush_tlb(None),
            _ => {}
        }
        Ok(0)
    })();
    Outcome::from(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::FrameMemory;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::DOM0;
    use crate::mm::frame::Mfn;
    use crate::mm::guest_pt::{FrameKind, PTE_P, PTE_RW, PTE_USER};

    const VA: u64 = 0xffff_ffff_8020_3000;

    fn guest() -> FakeGuest {
        let mut g = FakeGuest::new(0, 0);
        for f in [10, 11, 12, 13] {
            g.frames.zero(Mfn(f));
            g.kinds.insert(f, FrameKind::PageTable);
        }
        g.kinds.insert(150, FrameKind::Own);
        g.frames.write_u64(Mfn(10), 511, (11 << 12) | PTE_P | PTE_RW);
        g.frames.write_u64(Mfn(11), 510, (12 << 12) | PTE_P | PTE_RW);
        g.frames.write_u64(Mfn(12), 1, (13 << 12) | PTE_P | PTE_RW);
        g.l4 = Mfn(10);
        g
    }

    #[test]
    fn maps_own_frames_and_refuses_the_rest() {
        let mut g = guest();
        let call =
            |g: &mut FakeGuest, va, val, flags| update_va_mapping(&DOM0, g, &[va, val, flags, 0, 0, 0]);
        let own = (150 << 12) | PTE_P | PTE_RW;
        assert_eq!(call(&mut g, VA, own, UVMF_INVLPG), Outcome::Return(0));
        assert_eq!(g.frames.read_u64(Mfn(13), 3), own | PTE_USER);
        assert_eq!(g.flushes, [Some(VA)]);
        assert_eq!(call(&mut g, VA, 0, UVMF_TLB_FLUSH), Outcome::Return(0));
        assert_eq!(g.frames.read_u64(Mfn(13), 3), 0);
        assert_eq!(g.flushes[1], None);
        // A page table writable, a frame of someone else, an unmapped region,
        // the hypervisor's hole: refused, nothing written.
        assert_eq!(call(&mut g, VA, (12 << 12) | PTE_P | PTE_RW, 0), Outcome::Return(-22));
        assert_eq!(call(&mut g, VA, (999 << 12) | PTE_P, 0), Outcome::Return(-22));
        assert_eq!(call(&mut g, 0x1000, own, 0), Outcome::Return(-22));
        assert_eq!(call(&mut g, 0xffff_8000_0000_0000, own, 0), Outcome::Return(-22));
        assert_eq!(g.frames.read_u64(Mfn(13), 3), 0);
    }
}
