// SPDX-License-Identifier: MIT OR Apache-2.0
//! Read-only walks of x86_64 4-level page tables, and the bootstrap region.
//!
//! A PV guest's page tables hold *machine* frame numbers and are mapped read-only into
//! the guest. To follow an entry, the walker turns the MFN into a pseudo-physical frame
//! with the M2P table and reads the table where that frame is mapped. [`walk`] is the
//! pure walk over a [`TableReader`]; in a guest, [`lookup`] walks the bootstrap page
//! tables (`start_info.pt_base`), whose frames all lie in the bootstrap region that the
//! builder maps 1:1 at [`VIRT_BASE`](crate::notes::VIRT_BASE).
//!
//! Changing mappings is done with `update_va_mapping` / `mmu_update`
//! ([`Hypercalls`](crate::Hypercalls)); building, pinning and switching tables: [`mmu`](crate::mmu).

/// Entry flag: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Entry flag: writable.
pub const PTE_RW: u64 = 1 << 1;
/// Entry flag: user-accessible (Xen sets it on every guest entry).
pub const PTE_USER: u64 = 1 << 2;
/// Entry flag: accessed.
pub const PTE_ACCESSED: u64 = 1 << 5;
/// Entry flag: dirty.
pub const PTE_DIRTY: u64 = 1 << 6;
/// Entry flag in an L2/L3 entry: maps a large page.
pub const PTE_PSE: u64 = 1 << 7;
/// Entry flag: no execute.
pub const PTE_NX: u64 = 1 << 63;
/// The frame-address bits of an entry.
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Index of `va` in the table of `level` (4 = L4 ... 1 = L1).
pub const fn table_index(va: u64, level: u8) -> usize {
    ((va >> (12 + 9 * (level as u64 - 1))) & 511) as usize
}

/// The machine frame an entry points at.
pub const fn pte_mfn(pte: u64) -> u64 {
    (pte & PTE_ADDR_MASK) >> 12
}

/// Reads page-table entries by table MFN.
pub trait TableReader {
    /// Entry `index` of the table in machine frame `mfn`; `None` if that frame cannot
    /// be reached.
    fn entry(&self, mfn: u64, index: usize) -> Option<u64>;
}

/// The result of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// `va` is mapped by `pte`, found at `level` (1, or 2/3 for a large page).
    Mapped {
        /// The entry that maps the address.
        pte: u64,
        /// Its level.
        level: u8,
    },
    /// The entry at `level` is not present.
    NotPresent {
        /// The level of the empty entry.
        level: u8,
        /// The entry (present bit clear; other bits may be set).
        entry: u64,
    },
    /// The table at `level` (machine frame `mfn`) could not be read.
    Unreachable {
        /// The level of the table.
        level: u8,
        /// Its machine frame.
        mfn: u64,
    },
}

impl Walk {
    /// The mapping entry, if `va` is mapped.
    pub fn pte(self) -> Option<u64> {
        match self {
            Walk::Mapped { pte, .. } => Some(pte),
            _ => None,
        }
    }
}

/// Walks the tables rooted at the L4 in machine frame `root_mfn` for `va`.
pub fn walk(reader: &impl TableReader, root_mfn: u64, va: u64) -> Walk {
    let mut mfn = root_mfn;
    for level in (1..=4u8).rev() {
        let Some(entry) = reader.entry(mfn, table_index(va, level)) else {
            return Walk::Unreachable { level, mfn };
        };
        if entry & PTE_PRESENT == 0 {
            return Walk::NotPresent { level, entry };
        }
        if level == 1 || (level <= 3 && entry & PTE_PSE != 0) {
            return Walk::Mapped { pte: entry, level };
        }
        mfn = pte_mfn(entry);
    }
    unreachable!("level 1 always returns")
}

/// The bootstrap region for a boot stack whose top is `boot_rsp` (xen.h: the region
/// starts at the virtual base, ends on a 4 MiB boundary and has at least 512 KiB of
/// padding after the stack).
pub const fn bootstrap_region_end(boot_rsp: u64) -> u64 {
    const FOUR_MIB: u64 = 4 << 20;
    (boot_rsp + (512 << 10)).next_multiple_of(FOUR_MIB)
}

#[cfg(target_os = "none")]
mod imp {
    use super::*;
    use crate::notes::VIRT_BASE;
    use core::ops::Range;
    use pv_abi::arch_x86::MACH2PHYS_VIRT_START;

    /// The bootstrap region: `[VIRT_BASE, end)`, mapped 1:1 onto the first pfns.
    pub fn bootstrap_region() -> Range<u64> {
        VIRT_BASE..bootstrap_region_end(crate::boot_regs().rsp)
    }

    /// Reads tables whose frames are mapped in the bootstrap region, through the M2P.
    pub struct BootstrapTables {
        region: Range<u64>,
        m2p: *const u64,
    }

    impl BootstrapTables {
        /// A reader over the bootstrap region.
        pub fn new() -> Self {
            let m2p = crate::hypercalls().machphys_mapping().map_or(MACH2PHYS_VIRT_START, |m| m.v_start);
            Self { region: bootstrap_region(), m2p: m2p as *const u64 }
        }
    }

    impl Default for BootstrapTables {
        fn default() -> Self {
            Self::new()
        }
    }

    impl TableReader for BootstrapTables {
        fn entry(&self, mfn: u64, index: usize) -> Option<u64> {
            // SAFETY: the M2P table is mapped read-only into every PV guest; `mfn`
            // comes from a present page-table entry, so it is a RAM frame it covers.
            let pfn = unsafe { self.m2p.add(mfn as usize).read_volatile() };
            let va = VIRT_BASE.checked_add(pfn.checked_mul(4096)?)?;
            if !self.region.contains(&va) || index >= 512 {
                return None;
            }
            // SAFETY: `va` is inside the bootstrap region, mapped for the guest's
            // lifetime; page tables are readable (read-only) to the guest.
            Some(unsafe { (va as *const u64).add(index).read_volatile() })
        }
    }

    /// Walks the bootstrap page tables (`start_info.pt_base`) for `va`.
    ///
    /// Meaningful while the guest runs on those tables (it never switches away today).
    pub fn lookup(va: u64) -> Walk {
        let si = crate::start_info();
        let l4_pfn = (si.pt_base - VIRT_BASE) / 4096;
        // SAFETY: the P2M list holds `nr_pages` entries at `mfn_list` (xen.h), mapped
        // for the guest; `l4_pfn` is checked against it.
        let root = (l4_pfn < si.nr_pages)
            .then(|| unsafe { (si.mfn_list as *const u64).add(l4_pfn as usize).read() });
        match root {
            Some(root) => walk(&BootstrapTables::new(), root, va),
            None => Walk::Unreachable { level: 4, mfn: 0 },
        }
    }
}

#[cfg(target_os = "none")]
pub use imp::{BootstrapTables, bootstrap_region, lookup};

/// The bootstrap region (only in a guest; on the host this panics).
#[cfg(not(target_os = "none"))]
pub fn bootstrap_region() -> core::ops::Range<u64> {
    crate::host::unavailable("pt::bootstrap_region")
}

/// Walks the bootstrap page tables (only in a guest; on the host this panics).
#[cfg(not(target_os = "none"))]
pub fn lookup(_va: u64) -> Walk {
    crate::host::unavailable("pt::lookup")
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashMap;

    /// Tables as a map (mfn, index) -> entry.
    struct Fake(HashMap<(u64, usize), u64>);

    impl TableReader for Fake {
        fn entry(&self, mfn: u64, index: usize) -> Option<u64> {
            if mfn == 0xdead {
                return None;
            }
            Some(self.0.get(&(mfn, index)).copied().unwrap_or(0))
        }
    }

    const VA: u64 = 0xffff_ffff_8004_5000;

    fn tables() -> Fake {
        let p = PTE_PRESENT | PTE_RW;
        let mut m = HashMap::new();
        m.insert((10, table_index(VA, 4)), 11 << 12 | p);
        m.insert((11, table_index(VA, 3)), 12 << 12 | p);
        m.insert((12, table_index(VA, 2)), 13 << 12 | p);
        m.insert((13, table_index(VA, 1)), 0x1234 << 12 | PTE_PRESENT);
        Fake(m)
    }

    #[test]
    fn indices() {
        assert_eq!(table_index(VA, 4), 511);
        assert_eq!(table_index(VA, 3), 510);
        assert_eq!(table_index(VA, 2), 0);
        assert_eq!(table_index(VA, 1), 0x45);
        assert_eq!(pte_mfn(0x8000_0000_1234_5067), 0x12345);
    }

    #[test]
    fn walks() {
        let t = tables();
        assert_eq!(walk(&t, 10, VA), Walk::Mapped { pte: 0x1234 << 12 | PTE_PRESENT, level: 1 });
        assert_eq!(walk(&t, 10, VA + 4096), Walk::NotPresent { level: 1, entry: 0 });
        assert_eq!(walk(&t, 10, 0x1000), Walk::NotPresent { level: 4, entry: 0 });
        let mut t = t;
        t.0.insert((12, table_index(VA, 2)), 0xdead << 12 | PTE_PRESENT);
        assert_eq!(walk(&t, 10, VA), Walk::Unreachable { level: 1, mfn: 0xdead });
        t.0.insert((12, table_index(VA, 2)), 0x400 << 12 | PTE_PRESENT | PTE_PSE);
        assert_eq!(walk(&t, 10, VA).pte(), Some(0x400 << 12 | PTE_PRESENT | PTE_PSE));
    }

    #[test]
    fn region_end() {
        // Xen's hello run: boot stack top 0xffffffff80040000 -> region ends at 4 MiB.
        assert_eq!(bootstrap_region_end(0xffff_ffff_8004_0000), 0xffff_ffff_8040_0000);
        // Less than 512 KiB before the boundary: the region grows by 4 MiB.
        assert_eq!(bootstrap_region_end(0xffff_ffff_803c_0000), 0xffff_ffff_8080_0000);
    }
}
