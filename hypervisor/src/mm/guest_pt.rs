// SPDX-License-Identifier: MIT OR Apache-2.0
//! Guest page-table entries, as the hypervisor checks them before writing
//! them for a guest (`update_va_mapping`). The rule enforced now: a guest maps
//! only its own frames, and never a page-table frame writably. Type counts,
//! pinning and references arrive with the PV MMU issue, which generalises
//! this to every level.

use crate::hal::FrameMemory;
use crate::mm::frame::Mfn;
use pv_abi::Errno;

pub const PTE_P: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_USER: u64 = 1 << 2;
/// Large page (in L2/L3 entries).
pub const PTE_PS: u64 = 1 << 7;
/// Machine-address bits of an entry (bits 12..51).
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// What a frame is to the domain asking to map it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// Ordinary memory of the domain (including its shared-info page).
    Own,
    /// One of the domain's page tables: readable, never writable.
    PageTable,
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
        table = Mfn((e & PTE_ADDR) >> 12);
    }
    Ok((table, ((va >> 12) & 511) as usize))
}

/// Checks a new L1 entry and returns it as the hypervisor stores it (USER
/// set, because the guest kernel runs in ring 3).
pub fn check_l1e(new: u64, kind_of: impl Fn(Mfn) -> Option<FrameKind>) -> Result<u64, Errno> {
    if new & PTE_P == 0 {
        return Ok(new);
    }
    match kind_of(Mfn((new & PTE_ADDR) >> 12)) {
        None => Err(Errno::EINVAL),
        Some(FrameKind::PageTable) if new & PTE_RW != 0 => Err(Errno::EINVAL),
        Some(_) => Ok(new | PTE_USER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeMemory;
    use proptest::prelude::*;

    const VA: u64 = 0xffff_ffff_8020_3000;

    fn tables() -> FakeMemory {
        let mut m = FakeMemory::default();
        for f in [10, 11, 12, 13] {
            m.zero(Mfn(f));
        }
        m.write_u64(Mfn(10), 511, (11 << 12) | PTE_P | PTE_RW);
        m.write_u64(Mfn(11), 510, (12 << 12) | PTE_P | PTE_RW);
        m.write_u64(Mfn(12), 1, (13 << 12) | PTE_P | PTE_RW);
        m
    }

    fn kind(m: Mfn) -> Option<FrameKind> {
        match m.0 {
            10..=13 => Some(FrameKind::PageTable),
            100..=199 => Some(FrameKind::Own),
            _ => None,
        }
    }

    #[test]
    fn walk_finds_the_l1_slot() {
        let m = tables();
        assert_eq!(l1_slot(&m, Mfn(10), VA), Ok((Mfn(13), 3)));
        assert_eq!(l1_slot(&m, Mfn(10), 0x1000), Err(Errno::EINVAL));
        let mut big = tables();
        big.write_u64(Mfn(12), 1, (13 << 12) | PTE_P | PTE_PS);
        assert_eq!(l1_slot(&big, Mfn(10), VA), Err(Errno::EINVAL));
    }

    #[test]
    fn entries_are_checked() {
        assert_eq!(
            check_l1e((150 << 12) | PTE_P | PTE_RW, kind),
            Ok((150 << 12) | PTE_P | PTE_RW | PTE_USER)
        );
        assert_eq!(check_l1e((12 << 12) | PTE_P, kind), Ok((12 << 12) | PTE_P | PTE_USER));
        assert_eq!(check_l1e((12 << 12) | PTE_P | PTE_RW, kind), Err(Errno::EINVAL));
        assert_eq!(check_l1e((500 << 12) | PTE_P, kind), Err(Errno::EINVAL));
        assert_eq!(check_l1e(0xdead_0000, kind), Ok(0xdead_0000)); // not present: anything
    }

    proptest! {
        /// No accepted present entry maps a foreign frame or a writable page table.
        #[test]
        fn accepted_entries_are_safe(e in any::<u64>()) {
            if let Ok(stored) = check_l1e(e, kind)
                && stored & PTE_P != 0 {
                    let k = kind(Mfn((stored & PTE_ADDR) >> 12));
                    prop_assert!(k.is_some());
                    prop_assert!(!(k == Some(FrameKind::PageTable) && stored & PTE_RW != 0));
                }
        }
    }
}
