// SPDX-License-Identifier: MIT OR Apache-2.0
//! Segment descriptors a 64-bit PV guest may put in its GDT (`set_gdt`,
//! `update_descriptor`), with Xen's rules: a not-present descriptor is
//! harmless; code and data segments are fine once their DPL is raised to 3
//! (the guest kernel runs in ring 3, so no descriptor may grant more); an
//! empty system descriptor (type 0) is harmless; every other system
//! descriptor (TSS, LDT, interrupt/trap gates) is refused. Call gates, which
//! Xen accepts and emulates, are refused here: 64-bit guests do not use them.

const P: u64 = 1 << 47;
const S: u64 = 1 << 44;
const DPL: u64 = 3 << 45;
const TYPE: u64 = 0xf << 40;

/// The descriptor as stored, or `None` if a guest may not have it.
pub fn check_descriptor(d: u64) -> Option<u64> {
    if d & P == 0 {
        return Some(d);
    }
    if d & S != 0 {
        return Some(d | DPL);
    }
    (d & TYPE == 0).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn descriptors() {
        const FLAT_DATA_DPL0: u64 = 0x00cf_9200_0000_ffff;
        const CODE64_DPL3: u64 = 0x00af_fa00_0000_ffff;
        assert_eq!(check_descriptor(FLAT_DATA_DPL0), Some(FLAT_DATA_DPL0 | DPL));
        assert_eq!(check_descriptor(CODE64_DPL3), Some(CODE64_DPL3));
        assert_eq!(check_descriptor(0x1234 & !P), Some(0x1234)); // not present
        assert_eq!(check_descriptor(0x0000_8900_0000_0067), None); // an available TSS
        assert_eq!(check_descriptor(0x0000_8200_0000_0fff), None); // an LDT
        assert_eq!(check_descriptor(0x0000_ec00_0000_0000), None); // a call gate
        assert_eq!(check_descriptor(P | DPL), Some(P | DPL)); // system type 0
    }

    proptest! {
        /// Nothing a guest installs is present with a DPL below 3, or a
        /// present system descriptor of a real type.
        #[test]
        fn accepted_descriptors_grant_nothing(d in any::<u64>()) {
            if let Some(s) = check_descriptor(d) && s & P != 0 {
                prop_assert!(s & S == 0 || s & DPL == DPL);
                prop_assert!(s & S != 0 || s & TYPE == 0);
            }
        }
    }
}
