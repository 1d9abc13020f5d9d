// SPDX-License-Identifier: MIT OR Apache-2.0
//! Segment descriptors a 64-bit PV guest may put in its GDT (`set_gdt`,
//! `update_descriptor`), with Xen's rules: a not-present descriptor is
//! harmless; code and data segments are fine once their DPL is raised to 3
//! (the guest kernel runs in ring 3, so no descriptor may grant more); an
//! empty system descriptor (type 0) is harmless (it is also the upper half of
//! a 16-byte gate); a call gate to a guest code selector is stored with DPL 0
//! (so using it faults, as on Xen, which emulates gates for 32-bit guests
//! only) and the DPL it asked for, raised to 3, in the target's RPL; every
//! other system descriptor (TSS, LDT, interrupt/trap gates) is refused.

const P: u64 = 1 << 47;
const S: u64 = 1 << 44;
const DPL: u64 = 3 << 45;
const TYPE: u64 = 0xf << 40;
const CALL_GATE: u64 = 0xc << 40;
/// The first GDT byte the hypervisor keeps: selectors from there on are not
/// the guest's, except Xen's flat ones.
const FIRST_RESERVED_GDT_BYTE: u64 = 0xe000;

/// The descriptor as stored, or `None` if a guest may not have it.
pub fn check_descriptor(d: u64) -> Option<u64> {
    if d & P == 0 {
        return Some(d);
    }
    if d & S != 0 {
        return Some(d | DPL);
    }
    match d & TYPE {
        0 => Some(d),
        CALL_GATE => {
            let target = (d >> 16) & 0xffff;
            let flat = [0xe023, 0xe02b, 0xe033].contains(&(target | 3));
            // Reserved bits (the parameter count and what follows it) must be 0.
            if (target & 4 == 0 && target >= FIRST_RESERVED_GDT_BYTE && !flat) || d & (0xff << 32) != 0 {
                return None;
            }
            let target = (target & !3) | 3;
            Some((d & !DPL & !(0xffff << 16)) | (target << 16))
        }
        _ => None,
    }
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
        // A call gate to 0x14 with DPL 3: DPL 0, the DPL in the target's RPL.
        assert_eq!(check_descriptor(0x0000_ec00_0014_0000), Some(0x0000_8c00_0017_0000));
        assert_eq!(check_descriptor(0x0000_ec00_e008_0000), None); // to the hypervisor's code
        assert_eq!(check_descriptor(0x0000_ec01_0014_0000), None); // a parameter count
        assert_eq!(check_descriptor(P | DPL), Some(P | DPL)); // system type 0
    }

    proptest! {
        /// Nothing a guest installs is present with a DPL below 3, or a
        /// present system descriptor of a real type.
        #[test]
        fn accepted_descriptors_grant_nothing(d in any::<u64>()) {
            if let Some(s) = check_descriptor(d) && s & P != 0 {
                prop_assert!(s & S == 0 || s & DPL == DPL);
                prop_assert!(s & S != 0 || s & TYPE == 0 || (s & TYPE == CALL_GATE && s & DPL == 0));
            }
        }
    }
}
