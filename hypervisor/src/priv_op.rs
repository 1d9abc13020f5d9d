// SPDX-License-Identifier: MIT OR Apache-2.0
//! The privileged instructions a PV kernel executes in ring 3 and the
//! hypervisor emulates (Xen's `pv/emul-priv-op.c` idea): a decoder for the
//! few encodings that matter, and the CPUID policy a PV guest sees. Anything
//! not decoded here gets the #GP a guest expects.

/// A decoded instruction the hypervisor emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `mov %crN, %reg`
    MovFromCr {
        cr: u8,
        gpr: u8,
    },
    /// `mov %reg, %crN`
    MovToCr {
        cr: u8,
        gpr: u8,
    },
    /// `mov %drN, %reg`
    MovFromDr {
        dr: u8,
        gpr: u8,
    },
    /// `mov %reg, %drN`
    MovToDr {
        dr: u8,
        gpr: u8,
    },
    Clts,
    /// `in` of 1, 2 or 4 bytes from an immediate port or DX.
    In {
        size: u8,
        port: Option<u8>,
    },
    /// `out` of 1, 2 or 4 bytes to an immediate port or DX.
    Out {
        size: u8,
        port: Option<u8>,
    },
    Cli,
    Sti,
    /// `xsetbv` (XCR0 from EDX:EAX, XCR number in ECX).
    Xsetbv,
    Rdmsr,
    Wrmsr,
    Wbinvd,
    /// `cpuid` (plain, or after the forced-emulation prefix).
    Cpuid,
}

/// An emulated instruction and its length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub op: Op,
    pub len: u8,
}

/// The forced-emulation prefix: `ud2; .ascii "xen"` before `cpuid`.
pub const FORCED_EMULATION: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];

/// Decodes the instruction at the start of `b` (up to 15 bytes read from the
/// guest), for the #GP path.
pub fn decode(b: &[u8]) -> Option<Insn> {
    // An operand-size prefix (16-bit port I/O), then a REX prefix.
    let opsize16 = b.first() == Some(&0x66);
    let mut at = usize::from(opsize16);
    let mut rex = 0u8;
    if let Some(&p) = b.get(at)
        && p & 0xf0 == 0x40
    {
        rex = p;
        at += 1;
    }
    let byte = |i: usize| b.get(at + i).copied();
    let wide = if opsize16 { 2 } else { 4 };
    let insn = |op, n: usize| Some(Insn { op, len: (at + n) as u8 });
    match (byte(0)?, byte(1)) {
        (0xe4, Some(p)) => insn(Op::In { size: 1, port: Some(p) }, 2),
        (0xe5, Some(p)) => insn(Op::In { size: wide, port: Some(p) }, 2),
        (0xec, _) => insn(Op::In { size: 1, port: None }, 1),
        (0xed, _) => insn(Op::In { size: wide, port: None }, 1),
        (0xe6, Some(p)) => insn(Op::Out { size: 1, port: Some(p) }, 2),
        (0xe7, Some(p)) => insn(Op::Out { size: wide, port: Some(p) }, 2),
        (0xee, _) => insn(Op::Out { size: 1, port: None }, 1),
        (0xef, _) => insn(Op::Out { size: wide, port: None }, 1),
        (0xfa, _) => insn(Op::Cli, 1),
        (0xfb, _) => insn(Op::Sti, 1),
        (0x0f, Some(0x06)) => insn(Op::Clts, 2),
        (0x0f, Some(0x01)) if byte(2) == Some(0xd1) => insn(Op::Xsetbv, 3),
        (0x0f, Some(0x09)) => insn(Op::Wbinvd, 2),
        (0x0f, Some(0x30)) => insn(Op::Wrmsr, 2),
        (0x0f, Some(0x32)) => insn(Op::Rdmsr, 2),
        (0x0f, Some(0xa2)) => insn(Op::Cpuid, 2),
        (0x0f, Some(opc @ 0x20..=0x23)) => {
            let modrm = byte(2)?;
            // Register form only (the CPU ignores mod for MOV CR/DR).
            let reg = ((modrm >> 3) & 7) | if rex & 0x4 != 0 { 8 } else { 0 };
            let gpr = (modrm & 7) | if rex & 0x1 != 0 { 8 } else { 0 };
            let op = match opc {
                0x20 => Op::MovFromCr { cr: reg, gpr },
                0x21 => Op::MovFromDr { dr: reg, gpr },
                0x22 => Op::MovToCr { cr: reg, gpr },
                _ => Op::MovToDr { dr: reg, gpr },
            };
            insn(op, 3)
        }
        _ => None,
    }
}

/// Ports dom0 may not touch, though it owns the machine's other devices: the
/// hypervisor's PICs, PIT and console UART, and QEMU's exit port. Reads of
/// them give all ones and writes are dropped, as Xen does.
pub fn dom0_port_allowed(port: u16, size: u8) -> bool {
    const DENIED: [(u16, u16); 5] = [(0x20, 0x21), (0x40, 0x43), (0xa0, 0xa1), (0x3f8, 0x3ff), (0xf4, 0xf7)];
    let last = port.saturating_add(u16::from(size.max(1)) - 1);
    !DENIED.iter().any(|&(lo, hi)| port <= hi && last >= lo)
}

/// Decodes the forced-emulation CPUID at the start of `b`, for the #UD path.
pub fn decode_forced_cpuid(b: &[u8]) -> Option<Insn> {
    (b.len() >= 7 && b[..5] == FORCED_EMULATION && b[5..7] == [0x0f, 0xa2])
        .then_some(Insn { op: Op::Cpuid, len: 7 })
}

/// What the hypervisor's own CPUID leaves report.
#[derive(Clone, Copy, Debug)]
pub struct XenLeaves {
    pub version: (u32, u32),
    pub tsc_khz: u32,
    pub tsc_mul: u32,
    pub tsc_shift: i8,
    /// Physical address bits of the machine.
    pub phys_bits: u8,
}

/// CPUID as a PV guest sees it: the host's values with what a ring-3 kernel
/// cannot use hidden, the HYPERVISOR bit set, and Xen's leaves at 0x40000000.
pub fn cpuid_policy(leaf: u32, sub: u32, host: [u32; 4], xen: &XenLeaves) -> [u32; 4] {
    let [mut a, mut b, mut c, mut d] = host;
    match leaf {
        1 => {
            // ecx: hide MONITOR(3) DS-CPL(4) VMX(5) SMX(6) EST(7) TM2(8) PCID(17)
            // X2APIC(21) TSC-DEADLINE(24); set HYPERVISOR(31). XSAVE and
            // OSXSAVE show the host's (the hypervisor sets CR4.OSXSAVE and
            // emulates XSETBV).
            c &= !((1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8))
                & !((1 << 17) | (1 << 21) | (1 << 24));
            c |= 1 << 31;
            // edx: hide VME(1) PSE(3) MCE(7) SEP(11) PGE(13) MCA(14) PSE36(17)
            // DS(21) ACPI(22) TM(29) PBE(31). MTRR stays visible, as Xen
            // shows it to dom0.
            d &= !((1 << 1) | (1 << 3) | (1 << 7) | (1 << 11) | (1 << 13) | (1 << 14) | (1 << 17))
                & !((1 << 21) | (1 << 22) | (1 << 29) | (1 << 31));
            // Initial APIC ID 0, one logical CPU.
            b &= 0x0000_ffff;
        }
        7 => {
            // ebx: hide FSGSBASE(0) TSC_ADJUST(1) SGX(2) HLE? no; SMEP(7) INVPCID(10)
            // RTM/PQM(11,12) MPX(14) PQE(15) SMAP(20) PT(25); ecx: UMIP(2) PKU(3)
            // OSPKE(4) LA57(16).
            b &= !((1 << 0) | (1 << 1) | (1 << 2) | (1 << 7) | (1 << 10) | (1 << 12) | (1 << 14) | (1 << 15))
                & !((1 << 20) | (1 << 25));
            c &= !((1 << 2) | (1 << 3) | (1 << 4) | (1 << 16));
        }
        0x4000_0000 => {
            a = 0x4000_0005;
            b = u32::from_le_bytes(*b"XenV");
            c = u32::from_le_bytes(*b"MMXe");
            d = u32::from_le_bytes(*b"nVMM");
        }
        0x4000_0001 => [a, b, c, d] = [(xen.version.0 << 16) | xen.version.1, 0, 0, 0],
        // One hypercall page, through MSR 0x40000000; MMU_PT_UPDATE_PRESERVE_AD.
        0x4000_0002 => [a, b, c, d] = [1, 0x4000_0000, 1, 0],
        // Time: no TSC emulation, default TSC mode, the TSC's frequency and
        // the scale pvclock uses.
        0x4000_0003 => {
            [a, b, c, d] = match sub {
                0 => [0, 0, xen.tsc_khz, 0],
                1 => [0, 0, xen.tsc_mul, xen.tsc_shift as u8 as u32],
                2 => [xen.tsc_khz, 0, 0, 0],
                _ => [0; 4],
            }
        }
        // Leaf 0x40000004 is HVM's; 0x40000005 sub-leaf 0 gives the machine
        // address width.
        0x4000_0005 if sub == 0 => [a, b, c, d] = [0, u32::from(xen.phys_bits), 0, 0],
        0x4000_0004..=0x4fff_ffff => [a, b, c, d] = [0; 4],
        0x8000_0001 => {
            // ecx: hide SVM(2) and the extended APIC space(3).
            c &= !((1 << 2) | (1 << 3));
        }
        _ => {}
    }
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_what_linux_executes() {
        assert_eq!(decode(&[0x0f, 0x20, 0xd8]), Some(Insn { op: Op::MovFromCr { cr: 3, gpr: 0 }, len: 3 }));
        assert_eq!(decode(&[0x0f, 0x20, 0xe6]), Some(Insn { op: Op::MovFromCr { cr: 4, gpr: 6 }, len: 3 }));
        assert_eq!(
            decode(&[0x41, 0x0f, 0x22, 0xe7]),
            Some(Insn { op: Op::MovToCr { cr: 4, gpr: 15 }, len: 4 })
        );
        assert_eq!(decode(&[0x0f, 0x32]), Some(Insn { op: Op::Rdmsr, len: 2 }));
        assert_eq!(decode(&[0x0f, 0x30]), Some(Insn { op: Op::Wrmsr, len: 2 }));
        assert_eq!(decode(&[0xf4]), None); // hlt: #GP, as on Xen
        assert_eq!(decode(&[0x0f, 0x09]), Some(Insn { op: Op::Wbinvd, len: 2 }));
        assert_eq!(decode(&[0xfa]), Some(Insn { op: Op::Cli, len: 1 }));
        assert_eq!(decode(&[0xe4, 0x80]), Some(Insn { op: Op::In { size: 1, port: Some(0x80) }, len: 2 }));
        assert_eq!(decode(&[0x66, 0xed]), Some(Insn { op: Op::In { size: 2, port: None }, len: 2 }));
        assert_eq!(decode(&[0xef]), Some(Insn { op: Op::Out { size: 4, port: None }, len: 1 }));
        assert_eq!(decode(&[0xe6]), None);
        assert_eq!(decode(&[0x0f, 0x01, 0xd1]), Some(Insn { op: Op::Xsetbv, len: 3 }));
        assert_eq!(decode(&[0x0f, 0x01, 0xd0]), None); // xgetbv runs natively
        assert_eq!(decode(&[0x0f, 0x06]), Some(Insn { op: Op::Clts, len: 2 }));
        assert_eq!(decode(&[0x0f, 0x21, 0xf8]), Some(Insn { op: Op::MovFromDr { dr: 7, gpr: 0 }, len: 3 }));
        assert_eq!(decode(&[0x0f, 0x23, 0xc1]), Some(Insn { op: Op::MovToDr { dr: 0, gpr: 1 }, len: 3 }));
        assert_eq!(decode(&[0x0f]), None);
        assert_eq!(decode(&[]), None);
        assert_eq!(
            decode_forced_cpuid(&[0x0f, 0x0b, b'x', b'e', b'n', 0x0f, 0xa2]),
            Some(Insn { op: Op::Cpuid, len: 7 })
        );
        assert_eq!(decode_forced_cpuid(&[0x0f, 0x0b, b'x', b'e', b'n', 0x0f]), None);
    }

    #[test]
    fn dom0_ports() {
        assert!(dom0_port_allowed(0x80, 1));
        assert!(dom0_port_allowed(0xcf8, 4));
        assert!(dom0_port_allowed(0x61, 1));
        assert!(!dom0_port_allowed(0x21, 1));
        assert!(!dom0_port_allowed(0x3fd, 1));
        assert!(!dom0_port_allowed(0x3f6, 4), "a wide access reaching into COM1");
        assert!(!dom0_port_allowed(0xf4, 4));
        assert!(dom0_port_allowed(0xffff, 4));
    }

    #[test]
    fn cpuid_leaves() {
        let v = &XenLeaves {
            version: (4, 17),
            tsc_khz: 2_400_000,
            tsc_mul: 0xd555_5555,
            tsc_shift: -1,
            phys_bits: 40,
        };
        let sig = cpuid_policy(0x4000_0000, 0, [0; 4], v);
        assert_eq!(sig[0], 0x4000_0005);
        assert_eq!(cpuid_policy(0x4000_0003, 0, [9; 4], v), [0, 0, 2_400_000, 0]);
        assert_eq!(cpuid_policy(0x4000_0003, 1, [9; 4], v), [0, 0, 0xd555_5555, 0xff]);
        assert_eq!(cpuid_policy(0x4000_0004, 0, [9; 4], v), [0; 4]);
        assert_eq!(cpuid_policy(0x4000_0005, 0, [9; 4], v), [0, 40, 0, 0]);
        let mut s = [0u8; 12];
        s[..4].copy_from_slice(&sig[1].to_le_bytes());
        s[4..8].copy_from_slice(&sig[2].to_le_bytes());
        s[8..].copy_from_slice(&sig[3].to_le_bytes());
        assert_eq!(&s, b"XenVMMXenVMM");
        assert_eq!(cpuid_policy(0x4000_0001, 0, [0; 4], v)[0], 0x4_0011);
        let l1 = cpuid_policy(1, 0, [0, 0x0102_0800, u32::MAX, u32::MAX], v);
        assert_ne!(l1[2] & (1 << 31), 0, "HYPERVISOR");
        assert_eq!(l1[2] & ((1 << 5) | (1 << 17) | (1 << 21)), 0, "VMX PCID X2APIC");
        assert_eq!(l1[3] & ((1 << 13) | (1 << 3) | (1 << 11)), 0, "PGE PSE SEP");
        assert_ne!(l1[3] & (1 << 12), 0, "MTRR shown to dom0");
        assert_eq!(l1[1] >> 24, 0, "APIC ID");
        let l7 = cpuid_policy(7, 0, [0, u32::MAX, u32::MAX, 0], v);
        assert_eq!(l7[1] & ((1 << 7) | (1 << 20) | (1 << 10)), 0, "SMEP SMAP INVPCID");
        assert_eq!(l7[2] & (1 << 16), 0, "LA57");
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
            if let Some(i) = decode(&bytes) {
                prop_assert!(usize::from(i.len) <= bytes.len());
            }
            let _ = decode_forced_cpuid(&bytes);
        }
    }
}
