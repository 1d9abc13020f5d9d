// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: the privileged instructions a 64-bit PV kernel executes in ring 3, and
//! what the hypervisor does with each: emulate it (CPUID with the forced-emulation
//! prefix, `mov` to and from CR0/CR2/CR3/CR4 and the debug registers, RDMSR/WRMSR of
//! the MSRs it knows, port I/O once the kernel has a virtual IOPL, WBINVD, CLTS) or
//! refuse it with #GP (HLT, LGDT/LIDT, SWAPGS, unknown MSRs, port I/O and CLI/STI
//! without IOPL). Refusals are caught with guest-shim's trap table.
//!
//! One `RESULT` line per check, then `SUMMARY` and poweroff. Observed values are
//! printed as `privop: ...` lines.

#![cfg_attr(target_os = "none", no_std, no_main)]
// Probes return `Result<_, Trap>` (the whole saved context) by value, as
// `traps::catch` does.
#![allow(clippy::result_large_err)]

use core::arch::asm;

use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};
use guest_shim::report::no_trap;
use guest_shim::traps::{self, Trap, vector};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, catch_asm, cpu, println};

guest_shim::entry!(start);

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    if let Err(e) = traps::install() {
        t.fail("install", format_args!("traps::install: {e}"));
        t.finish()
    }
    t.pass("install");

    check_cpuid_forced(&mut t, &xen);
    check_cpuid_plain(&mut t);
    control_registers(&mut t, si);
    debug_registers(&mut t);
    msrs(&mut t);
    instructions(&mut t);
    port_io(&mut t, &xen);
    t.finish()
}

// ---- Helpers ----

/// Pass if `r` is a #GP(0) at `rip`.
fn is_gp0<T: core::fmt::Debug>(r: &Result<T, Trap>, rip: u64) -> Outcome {
    match r {
        Ok(v) => Outcome::fail(format_args!("no exception (result {v:#x?}), expected #GP(0)")),
        Err(trap) => Outcome::ensure(
            (trap.vector(), trap.error_code(), trap.rip()) == (vector::GP, 0, rip),
            format_args!("got {trap}, expected #GP(0) at rip {rip:#x}"),
        ),
    }
}

/// Pass if `r` is a #UD at `rip`.
fn is_ud<T: core::fmt::Debug>(r: &Result<T, Trap>, rip: u64) -> Outcome {
    match r {
        Ok(v) => Outcome::fail(format_args!("no exception (result {v:#x?}), expected #UD")),
        Err(trap) => Outcome::ensure(
            (trap.vector(), trap.rip()) == (vector::UD, rip),
            format_args!("got {trap}, expected #UD at rip {rip:#x}"),
        ),
    }
}

/// Pass if `r` is `Ok(expected)`.
fn ok_eq<T: PartialEq + core::fmt::Debug>(r: Result<T, Trap>, expected: T) -> Outcome {
    match r {
        Ok(v) => Outcome::eq(v, expected),
        Err(trap) => Outcome::fail(format_args!("unexpected {trap}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cpuid {
    eax: u32,
    ebx: u32,
    ecx: u32,
    edx: u32,
}

/// CPUID with Xen's forced-emulation prefix (`ud2; .ascii "xen"; cpuid`).
fn cpuid_forced(leaf: u32, subleaf: u32) -> Result<Cpuid, Trap> {
    let (mut a, mut b, mut c, mut d) = (leaf, 0u64, subleaf, 0u32);
    // SAFETY: the prefix is emulated by Xen for a PV kernel (else #UD, caught); CPUID
    // only writes the four registers (RBX is saved by hand: LLVM reserves it).
    let r = unsafe {
        traps::catch(|| {
            asm!(
                "mov {b:r}, rbx",
                "ud2",
                ".ascii \"xen\"",
                "cpuid",
                "xchg {b:r}, rbx",
                b = inout(reg) 0u64 => b,
                inout("eax") a,
                inout("ecx") c,
                out("edx") d,
            );
        })
    };
    r.map(|()| Cpuid { eax: a, ebx: b as u32, ecx: c, edx: d })
}

/// A plain CPUID (what the CPU, or Xen if it makes CPUID fault, returns).
fn cpuid_plain(leaf: u32, subleaf: u32) -> Result<Cpuid, Trap> {
    let (mut a, mut b, mut c, mut d) = (leaf, 0u64, subleaf, 0u32);
    // SAFETY: CPUID only writes the four registers; any exception is caught.
    let r = unsafe {
        traps::catch(|| {
            asm!(
                "mov {b:r}, rbx",
                "cpuid",
                "xchg {b:r}, rbx",
                b = inout(reg) 0u64 => b,
                inout("eax") a,
                inout("ecx") c,
                out("edx") d,
            );
        })
    };
    r.map(|()| Cpuid { eax: a, ebx: b as u32, ecx: c, edx: d })
}

fn bit(v: u32, n: u32) -> bool {
    v & (1 << n) != 0
}

/// The 12 bytes of EBX, ECX, EDX (a vendor or hypervisor signature).
fn signature(c: &Cpuid) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[..4].copy_from_slice(&c.ebx.to_le_bytes());
    s[4..8].copy_from_slice(&c.ecx.to_le_bytes());
    s[8..].copy_from_slice(&c.edx.to_le_bytes());
    s
}

fn text(b: &[u8]) -> &str {
    core::str::from_utf8(b).unwrap_or("?")
}

// ---- CPUID ----

fn check_cpuid_forced(t: &mut Tests, xen: &Hypercalls) {
    let Ok(base) = cpuid_forced(0x4000_0000, 0) else {
        t.fail("cpuid-forced", "the forced-emulation prefix raised an exception");
        return;
    };
    println!("privop: forced cpuid 0x40000000: eax {:#x} {:?}", base.eax, text(&signature(&base)));
    t.check("cpuid-forced-xen-signature", Outcome::eq(text(&signature(&base)), "XenVMMXenVMM"));
    // Xen 4.17 has 5 leaves after the base (XEN_CPUID_MAX_NUM_LEAVES).
    t.check("cpuid-forced-xen-max-leaf", Outcome::eq(base.eax, 0x4000_0005));
    let (major, minor) = xen.xen_version();
    let version = cpuid_forced(0x4000_0001, 0).map(|c| c.eax);
    t.check("cpuid-forced-xen-version", ok_eq(version, (major as u32) << 16 | minor as u32));
    t.check("cpuid-forced-xen-4.17", ok_eq(version, 4 << 16 | 17));
    // One hypercall page, Xen's MSRs at 0x40000000, no features in ECX/EDX for PV.
    let leaf2 = cpuid_forced(0x4000_0002, 0);
    println!("privop: forced cpuid 0x40000002: {leaf2:x?}");
    t.check("cpuid-forced-hypercall-page-leaf", ok_eq(leaf2.map(|c| (c.eax, c.ebx)), (1, 0x4000_0000)));
    // ECX: XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD.
    t.check("cpuid-forced-feat1-preserve-ad", ok_eq(leaf2.map(|c| c.ecx), 1));

    let Ok(leaf0) = cpuid_forced(0, 0) else {
        t.fail("cpuid-forced-leaf0", "exception");
        return;
    };
    let vendor = signature(&Cpuid { edx: leaf0.ecx, ecx: leaf0.edx, ..leaf0 });
    println!("privop: vendor {:?}, max leaf {:#x}", text(&vendor), leaf0.eax);
    let Ok(l1) = cpuid_forced(1, 0) else {
        t.fail("cpuid-forced-leaf1", "exception");
        return;
    };
    println!("privop: forced leaf 1: {l1:x?}");
    t.check(
        "cpuid-forced-hypervisor-bit",
        Outcome::ensure(bit(l1.ecx, 31), format_args!("ecx {:#x}", l1.ecx)),
    );
    // Features a PV guest must not see (cpufeatureset.h: not 'A').
    let hidden_ecx = [
        ("dtes64", 2),
        ("monitor", 3),
        ("dscpl", 4),
        ("vmx", 5),
        ("smx", 6),
        ("tm2", 8),
        ("pcid", 17),
        ("x2apic", 21),
        ("tsc-deadline", 24),
    ];
    let hidden_edx =
        [("vme", 1), ("pse", 3), ("pge", 13), ("pse36", 17), ("ds", 21), ("tm", 29), ("pbe", 31)];
    for (name, n) in hidden_ecx {
        t.check(
            concat_name("cpuid-forced-hides-", name).as_str(),
            Outcome::ensure(!bit(l1.ecx, n), format_args!("leaf 1 ecx {:#x}", l1.ecx)),
        );
    }
    for (name, n) in hidden_edx {
        t.check(
            concat_name("cpuid-forced-hides-", name).as_str(),
            Outcome::ensure(!bit(l1.edx, n), format_args!("leaf 1 edx {:#x}", l1.edx)),
        );
    }
    // MTRR is 'S' (HVM only) in Xen's featureset, yet Xen 4.17 shows it to its PV
    // hardware domain (and still refuses the MTRR MSRs, see `msrs`).
    t.check(
        "cpuid-forced-mtrr-shown-to-dom0",
        Outcome::ensure(bit(l1.edx, 12), format_args!("leaf 1 edx {:#x}", l1.edx)),
    );
    // Of those, what the CPU itself has and Xen takes away (plain CPUID is the CPU's
    // here, see `check_cpuid_plain`).
    if let Ok(native) = cpuid_plain(1, 0) {
        let taken: [(&str, bool, bool); 5] = [
            ("monitor", bit(native.ecx, 3), bit(l1.ecx, 3)),
            ("pse", bit(native.edx, 3), bit(l1.edx, 3)),
            ("sep", bit(native.edx, 11), bit(l1.edx, 11)),
            ("pge", bit(native.edx, 13), bit(l1.edx, 13)),
            ("pse36", bit(native.edx, 17), bit(l1.edx, 17)),
        ];
        println!("privop: (feature, CPU has it, Xen shows it): {taken:?}");
        let shown = taken.iter().find(|&&(_, cpu, xen)| cpu && xen);
        let hidden = taken.iter().filter(|&&(_, cpu, xen)| cpu && !xen).count();
        t.check(
            "cpuid-forced-hides-cpu-features",
            match shown {
                Some((name, _, _)) => Outcome::fail(format_args!("{name} shown")),
                None => Outcome::ensure(hidden == 5, format_args!("{taken:?}")),
            },
        );
    }
    // What a 64-bit PV kernel needs is there.
    let needed_edx = [
        ("fpu", 0),
        ("tsc", 4),
        ("msr", 5),
        ("pae", 6),
        ("cx8", 8),
        ("cmov", 15),
        ("fxsr", 24),
        ("sse", 25),
        ("sse2", 26),
    ];
    let missing = needed_edx.iter().find(|&&(_, n)| !bit(l1.edx, n));
    t.check(
        "cpuid-forced-basic-features",
        match missing {
            None => Outcome::Pass,
            Some((name, _)) => Outcome::fail(format_args!("{name} missing: edx {:#x}", l1.edx)),
        },
    );
    if leaf0.eax >= 7 {
        match cpuid_forced(7, 0) {
            Ok(l7) => {
                println!("privop: forced leaf 7: {l7:x?}");
                for (name, reg, n) in [
                    ("smep", l7.ebx, 7),
                    ("invpcid", l7.ebx, 10),
                    ("smap", l7.ebx, 20),
                    ("umip", l7.ecx, 2),
                    ("pku", l7.ecx, 3),
                    ("la57", l7.ecx, 16),
                ] {
                    t.check(
                        concat_name("cpuid-forced-hides-", name).as_str(),
                        Outcome::ensure(!bit(reg, n), format_args!("leaf 7 {l7:x?}")),
                    );
                }
            }
            Err(e) => t.fail("cpuid-forced-leaf7", e),
        }
    }
    match cpuid_forced(0x8000_0001, 0) {
        Ok(e1) => {
            println!("privop: forced leaf 0x80000001: {e1:x?}");
            t.check(
                "cpuid-forced-hides-svm",
                Outcome::ensure(!bit(e1.ecx, 2), format_args!("ecx {:#x}", e1.ecx)),
            );
            t.check(
                "cpuid-forced-long-mode-nx-syscall",
                Outcome::ensure(
                    bit(e1.edx, 29) && bit(e1.edx, 20) && bit(e1.edx, 11),
                    format_args!("edx {:#x}", e1.edx),
                ),
            );
        }
        Err(e) => t.fail("cpuid-forced-leaf-80000001", e),
    }
    // The prefix followed by something other than CPUID is just a #UD at the ud2.
    // SAFETY: as in `cpuid_forced`; NOP changes nothing.
    let (r, at) = unsafe { catch_asm!("ud2", ".ascii \"xen\"", "nop") };
    t.check("forced-prefix-without-cpuid-ud", is_ud(&r, at));
}

/// `prefix` + `name` as a test name.
fn concat_name(prefix: &str, name: &str) -> guest_shim::report::FixedStr<64> {
    guest_shim::report::FixedStr::format(format_args!("{prefix}{name}"))
}

fn check_cpuid_plain(t: &mut Tests) {
    let gp_before = traps::count(vector::GP);
    let base = cpuid_plain(0x4000_0000, 0);
    let l1 = cpuid_plain(1, 0);
    let forced_l1 = cpuid_forced(1, 0);
    println!("privop: plain cpuid 0x40000000: {base:x?}; leaf 1: {l1:x?}");
    t.check("cpuid-plain-no-guest-exception", no_trap(&base).and_then_ok(no_trap(&l1)));
    t.check("cpuid-plain-not-seen-by-guest", Outcome::eq(traps::count(vector::GP), gp_before));
    if let (Ok(base), Ok(l1), Ok(f1)) = (base, l1, forced_l1) {
        let xen = text(&signature(&base)) == "XenVMMXenVMM";
        println!(
            "privop: plain CPUID {} Xen's policy: leaf 0x40000000 {:?}, hypervisor bit {}",
            if xen { "follows" } else { "bypasses" },
            text(&signature(&base)),
            bit(l1.ecx, 31)
        );
        t.check("cpuid-plain-bypasses-xen", Outcome::eq(!xen, !PLAIN_CPUID_FAULTS));
        if PLAIN_CPUID_FAULTS {
            t.check("cpuid-plain-leaf1-as-forced", Outcome::eq(l1, f1));
        } else {
            t.check(
                "cpuid-plain-leaf1-raw",
                Outcome::ensure(l1 != f1, format_args!("plain {l1:x?} == forced")),
            );
        }
    }
}

/// What Xen 4.17 does with a plain CPUID on this CPU (QEMU TCG, AMD vendor): no CPUID
/// faulting, so the guest kernel sees the CPU's own answers.
const PLAIN_CPUID_FAULTS: bool = false;

trait AndThenOk {
    fn and_then_ok(self, other: Outcome) -> Outcome;
}

impl AndThenOk for Outcome {
    fn and_then_ok(self, other: Outcome) -> Outcome {
        if self.passed() { other } else { self }
    }
}

// ---- Control and debug registers ----

macro_rules! read_cr {
    ($cr:literal) => {{
        let mut v = 0u64;
        // SAFETY: Xen emulates reads of this control register (or raises #GP, caught).
        let r = unsafe { catch_asm!(concat!("mov {}, ", $cr), inout(reg) v) };
        r.0.map(|()| v)
    }};
}

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_TS: u64 = 1 << 3;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_AM: u64 = 1 << 18;
const CR0_PG: u64 = 1 << 31;
const CR4_TSD: u64 = 1 << 2;
const CR4_PAE: u64 = 1 << 5;
const CR4_PGE: u64 = 1 << 7;
const CR4_VMXE: u64 = 1 << 13;
const CR4_SMEP: u64 = 1 << 20;

fn control_registers(t: &mut Tests, si: &StartInfo) {
    let cr0 = read_cr!("cr0");
    println!("privop: cr0 {cr0:x?}");
    // Xen's own CR0 with TS from the guest's virtual TS (clear at boot).
    t.check("cr0-read", ok_eq(cr0, CR0_PG | CR0_AM | CR0_WP | CR0_NE | CR0_ET | CR0_MP | CR0_PE));
    let cr0 = cr0.unwrap_or(0);
    // Writing the same value, or toggling TS, is allowed.
    // SAFETY: writes CR0 unchanged.
    let (r, _) = unsafe { catch_asm!("mov cr0, {}", in(reg) cr0) };
    t.check("cr0-write-same", no_trap(&r));
    // SAFETY: sets TS only (the virtual TS); the next FPU use would raise #NM.
    let (r, _) = unsafe { catch_asm!("mov cr0, {}", in(reg) cr0 | CR0_TS) };
    t.check("cr0-write-ts", no_trap(&r).and_then_ok(ok_eq(read_cr!("cr0"), cr0 | CR0_TS)));
    // SAFETY: CLTS clears the virtual TS.
    let (r, _) = unsafe { catch_asm!("clts") };
    t.check("clts", no_trap(&r).and_then_ok(ok_eq(read_cr!("cr0"), cr0)));
    // SAFETY: refused with #GP (PG cannot be cleared); if not, paging would stop —
    // but Xen never lets a PV guest do that.
    let (r, at) = unsafe { catch_asm!("mov cr0, {}", in(reg) cr0 & !CR0_PE) };
    t.check("cr0-write-pe-gp", is_gp0(&r, at));

    // CR3: the machine address of the current L4 (the bootstrap tables).
    let l4_pfn = (si.pt_base - guest_shim::notes::VIRT_BASE) / 4096;
    // SAFETY: the P2M list covers nr_pages entries; l4_pfn is inside the region.
    let l4_mfn = unsafe { (si.mfn_list as *const u64).add(l4_pfn as usize).read() };
    let cr3 = read_cr!("cr3");
    t.check("cr3-read-l4-maddr", ok_eq(cr3, l4_mfn << 12));
    // SAFETY: reloads the current page tables (a TLB flush).
    let (r, _) = unsafe { catch_asm!("mov cr3, {}", in(reg) l4_mfn << 12) };
    t.check("cr3-write-same", no_trap(&r).and_then_ok(ok_eq(read_cr!("cr3"), l4_mfn << 12)));

    // CR2: a guest-writable copy of the fault address.
    // SAFETY: CR2 only records a fault address.
    let (r, _) = unsafe { catch_asm!("mov cr2, {}", in(reg) 0x1234_5000u64) };
    t.check("cr2-write-read", no_trap(&r).and_then_ok(ok_eq(read_cr!("cr2"), 0x1234_5000)));

    // CR4: Xen's PAE/MCE/OSFXSR/OSXMMEXCPT plus the guest's own TSD/DE/FSGSBASE/OSXSAVE.
    let cr4 = read_cr!("cr4");
    println!("privop: cr4 {cr4:x?}");
    let cr4 = match cr4 {
        Ok(v) => {
            t.check(
                "cr4-read",
                Outcome::ensure(
                    v & CR4_PAE != 0 && v & (CR4_PGE | CR4_VMXE | CR4_SMEP) == 0,
                    format_args!("cr4 {v:#x}"),
                ),
            );
            v
        }
        Err(e) => {
            t.fail("cr4-read", e);
            return;
        }
    };
    // SAFETY: writes CR4 unchanged.
    let (r, _) = unsafe { catch_asm!("mov cr4, {}", in(reg) cr4) };
    t.check("cr4-write-same", no_trap(&r).and_then_ok(ok_eq(read_cr!("cr4"), cr4)));
    // Bits the guest may not control are dropped, without a fault.
    // SAFETY: Xen filters the value; nothing the guest controls changes.
    let (r, _) = unsafe { catch_asm!("mov cr4, {}", in(reg) cr4 | CR4_PGE | CR4_VMXE | CR4_SMEP) };
    t.check("cr4-write-filtered", no_trap(&r).and_then_ok(ok_eq(read_cr!("cr4"), cr4)));
    // TSD is the guest's: RDTSC then faults in guest *user* mode; the kernel's is
    // emulated.
    // SAFETY: sets CR4.TSD, cleared again below.
    let (r, _) = unsafe { catch_asm!("mov cr4, {}", in(reg) cr4 | CR4_TSD) };
    let with_tsd = read_cr!("cr4");
    let mut tsc = 0u64;
    // SAFETY: RDTSC writes EDX:EAX only.
    let (rdtsc, _) = unsafe {
        catch_asm!("rdtsc", "shl rdx, 32", "or rax, rdx", "mov {}, rax", inout(reg) tsc, out("rax") _, out("rdx") _)
    };
    // SAFETY: back to the value read at the start.
    let (back, _) = unsafe { catch_asm!("mov cr4, {}", in(reg) cr4) };
    t.check("cr4-write-tsd", no_trap(&r).and_then_ok(ok_eq(with_tsd, cr4 | CR4_TSD)));
    t.check("cr4-tsd-kernel-rdtsc-emulated", no_trap(&rdtsc).and_then_ok(Outcome::ensure(tsc != 0, "tsc 0")));
    t.check("cr4-restored", no_trap(&back).and_then_ok(ok_eq(read_cr!("cr4"), cr4)));

    // CR8 (the TPR) is not emulated for PV.
    // SAFETY: refused with #GP.
    let (r, at) = unsafe { catch_asm!("mov {}, cr8", out(reg) _) };
    t.check("cr8-read-gp", is_gp0(&r, at));
}

fn debug_registers(t: &mut Tests) {
    macro_rules! read_dr {
        ($dr:literal) => {{
            let mut v = 0u64;
            // SAFETY: Xen emulates reads of the debug registers.
            let r = unsafe { catch_asm!(concat!("mov {}, ", $dr), inout(reg) v) };
            r.0.map(|()| v)
        }};
    }
    let dr7 = read_dr!("dr7");
    let dr6 = read_dr!("dr6");
    println!("privop: dr6 {dr6:x?} dr7 {dr7:x?}");
    t.check("dr7-read-default", ok_eq(dr7, 0x400));
    t.check("dr6-read-default", ok_eq(dr6, 0xffff_0ff0));
    // A breakpoint address that is never enabled.
    // SAFETY: DR0 is not enabled in DR7, so no breakpoint fires.
    let (r, _) = unsafe { catch_asm!("mov dr0, {}", in(reg) 0xffff_ffff_8000_0000u64) };
    t.check("dr0-write-read", no_trap(&r).and_then_ok(ok_eq(read_dr!("dr0"), 0xffff_ffff_8000_0000)));
    // SAFETY: clears DR0 again.
    let (r, _) = unsafe { catch_asm!("mov dr0, {}", in(reg) 0u64) };
    t.check("dr0-clear", no_trap(&r));
    // A breakpoint on an address in the hypervisor's range is refused.
    // SAFETY: refused (else never enabled).
    let (r, at) = unsafe { catch_asm!("mov dr1, {}", in(reg) HYPERVISOR_VIRT_START) };
    t.check("dr1-xen-address-gp", is_gp0(&r, at));
}

// ---- MSRs ----

const MSR_EFER: u32 = 0xc000_0080;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_TSC_AUX: u32 = 0xc000_0103;
const MSR_PAT: u32 = 0x277;
const MSR_APIC_BASE: u32 = 0x1b;
const MSR_TSC: u32 = 0x10;
/// Xen's PAT (XEN_MSR_PAT), which it reports to PV guests.
const XEN_PAT: u64 = 0x0000_0501_0007_0406;
const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

/// RDMSR; returns the value and the instruction's address.
fn rdmsr(msr: u32) -> (Result<u64, Trap>, u64) {
    let (mut lo, mut hi) = (0u32, 0u32);
    // SAFETY: RDMSR writes EDX:EAX; Xen emulates it or raises #GP (caught).
    let (r, at) = unsafe { catch_asm!("rdmsr", in("ecx") msr, inout("eax") lo, inout("edx") hi) };
    (r.map(|()| (hi as u64) << 32 | lo as u64), at)
}

/// WRMSR; returns the outcome and the instruction's address.
///
/// # Safety
///
/// The write must not break what the guest relies on (segment bases in use, ...).
unsafe fn wrmsr(msr: u32, value: u64) -> (Result<(), Trap>, u64) {
    // SAFETY: forwarded to the caller; #GP is caught.
    unsafe {
        catch_asm!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
        )
    }
}

static GS_TARGET: u64 = 0x6773_6261_7365_2121;
static FS_TARGET: u64 = 0x6673_6261_7365_2121;

fn msrs(t: &mut Tests) {
    // GS base: the raw WRMSR Linux's startup_xen executes first.
    let (old_gs, _) = rdmsr(MSR_GS_BASE);
    println!("privop: gs base at boot {old_gs:x?}");
    t.check("rdmsr-gs-base-boot", ok_eq(old_gs, 0));
    let gs = (&raw const GS_TARGET) as u64;
    // SAFETY: nothing here uses GS-relative data; the base is restored below.
    let (r, _) = unsafe { wrmsr(MSR_GS_BASE, gs) };
    t.check("wrmsr-gs-base", no_trap(&r).and_then_ok(ok_eq(rdmsr(MSR_GS_BASE).0, gs)));
    let mut via_gs = 0u64;
    // SAFETY: reads the word at the GS base, GS_TARGET.
    unsafe { asm!("mov {}, gs:[0]", out(reg) via_gs, options(readonly, nostack)) };
    t.check("wrmsr-gs-base-effective", Outcome::eq(via_gs, GS_TARGET));
    // SAFETY: back to the boot value.
    let (r, _) = unsafe { wrmsr(MSR_GS_BASE, old_gs.unwrap_or(0)) };
    t.check("wrmsr-gs-base-restore", no_trap(&r));

    let (old_fs, _) = rdmsr(MSR_FS_BASE);
    let fs = (&raw const FS_TARGET) as u64;
    // SAFETY: nothing here uses FS-relative data; the base is restored below.
    let (r, _) = unsafe { wrmsr(MSR_FS_BASE, fs) };
    t.check("wrmsr-fs-base", no_trap(&r).and_then_ok(ok_eq(rdmsr(MSR_FS_BASE).0, fs)));
    let mut via_fs = 0u64;
    // SAFETY: reads the word at the FS base, FS_TARGET.
    unsafe { asm!("mov {}, fs:[0]", out(reg) via_fs, options(readonly, nostack)) };
    t.check("wrmsr-fs-base-effective", Outcome::eq(via_fs, FS_TARGET));
    // A non-canonical base is refused.
    // SAFETY: refused with #GP.
    let (r, at) = unsafe { wrmsr(MSR_FS_BASE, 0x0000_8000_0000_0000) };
    t.check("wrmsr-fs-base-non-canonical-gp", is_gp0(&r, at));
    // SAFETY: back to the boot value.
    let (r, _) = unsafe { wrmsr(MSR_FS_BASE, old_fs.unwrap_or(0)) };
    t.check("wrmsr-fs-base-restore", no_trap(&r));

    // The user GS base (what SWAPGS would swap in).
    let (old_kgs, _) = rdmsr(MSR_KERNEL_GS_BASE);
    // SAFETY: the user GS base is unused (no user mode).
    let (r, _) = unsafe { wrmsr(MSR_KERNEL_GS_BASE, 0xffff_ffff_8123_4000) };
    t.check(
        "wrmsr-kernel-gs-base",
        no_trap(&r).and_then_ok(ok_eq(rdmsr(MSR_KERNEL_GS_BASE).0, 0xffff_ffff_8123_4000)),
    );
    // The kernel's GS base is a different register.
    t.check("kernel-gs-base-separate", ok_eq(rdmsr(MSR_GS_BASE).0, old_gs.unwrap_or(0)));
    // SAFETY: restores the user GS base.
    let (r, _) = unsafe { wrmsr(MSR_KERNEL_GS_BASE, old_kgs.unwrap_or(0)) };
    t.check("wrmsr-kernel-gs-base-restore", no_trap(&r));

    let (pat, _) = rdmsr(MSR_PAT);
    t.check("rdmsr-pat", ok_eq(pat, XEN_PAT));
    // The PAT is Xen's: a PV kernel may not write it, not even with Xen's own value.
    // SAFETY: refused (else the value would not change anything).
    let (r, at) = unsafe { wrmsr(MSR_PAT, XEN_PAT) };
    t.check("wrmsr-pat-same-gp", is_gp0(&r, at));
    // SAFETY: refused (else the PAT would change, which nothing here depends on).
    let (r, at) = unsafe { wrmsr(MSR_PAT, 0x0606_0606_0606_0606) };
    t.check("wrmsr-pat-other-gp", is_gp0(&r, at));

    let (efer, _) = rdmsr(MSR_EFER);
    println!("privop: efer {efer:x?}");
    t.check("rdmsr-efer", ok_eq(efer, EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE));
    let efer = efer.unwrap_or(0);
    // SAFETY: the same value: no change.
    let (r, _) = unsafe { wrmsr(MSR_EFER, efer) };
    t.check("wrmsr-efer-same", no_trap(&r));
    // SAFETY: refused (clearing NX would be dangerous, but Xen never allows it).
    let (r, at) = unsafe { wrmsr(MSR_EFER, efer & !EFER_NXE) };
    t.check("wrmsr-efer-change-gp", is_gp0(&r, at));

    // MSRs Xen does not know, or does not give PV guests: #GP, through our handler.
    let gp_before = traps::count(vector::GP);
    let (r, at) = rdmsr(0x1234);
    t.check("rdmsr-unknown-gp", is_gp0(&r, at));
    // SAFETY: refused with #GP.
    let (r, at) = unsafe { wrmsr(0x1234, 0) };
    t.check("wrmsr-unknown-gp", is_gp0(&r, at));
    t.check("gp-delivered-to-handler", Outcome::eq(traps::count(vector::GP), gp_before + 2));
    // The TSC MSR reads the TSC (as RDTSC does).
    let before = cpu::rdtsc();
    let (tsc, _) = rdmsr(MSR_TSC);
    let after = cpu::rdtsc();
    t.check(
        "rdmsr-tsc",
        match tsc {
            Ok(v) => Outcome::ensure(before <= v && v <= after, format_args!("{before} <= {v} <= {after}")),
            Err(e) => Outcome::fail(e),
        },
    );
    // TSC_AUX (what RDTSCP returns in ECX) is 0 for vCPU 0.
    t.check("rdmsr-tsc-aux", ok_eq(rdmsr(MSR_TSC_AUX).0, 0));
    // PLATFORM_INFO is Xen's virtual one, with CPUID faulting clear: this CPU cannot
    // make CPUID fault, so neither can Xen for its guests.
    t.check("rdmsr-platform-info-no-cpuid-faulting", ok_eq(rdmsr(0xce).0, 0));
    // MSRs Xen does not handle itself read the CPU's value for dom0 (observed on QEMU's
    // TCG `max` CPU): the APIC base (enabled, BSP) and MISC_ENABLE as Xen adjusts it.
    let (apic, _) = rdmsr(MSR_APIC_BASE);
    println!("privop: rdmsr APIC_BASE {apic:x?}");
    t.check("rdmsr-apic-base", ok_eq(apic, 0xfee0_0900));
    let (misc, _) = rdmsr(0x1a0);
    println!("privop: rdmsr MISC_ENABLE {misc:x?}");
    t.check("rdmsr-misc-enable", ok_eq(misc, 0x80_1801));
    // ... but the MTRRs, although CPUID shows MTRR to dom0, are refused.
    let (r, at) = rdmsr(0xfe);
    t.check("rdmsr-mtrr-cap-gp", is_gp0(&r, at));
}

// ---- Other instructions ----

fn instructions(t: &mut Tests) {
    // HLT: not emulated (Linux blocks with SCHEDOP_block instead).
    // SAFETY: (as every probe here) one instruction, emulated or refused with an
    // exception that `catch` returns; the closure owns nothing. HLT would only wait.
    let (r, at) = unsafe { catch_asm!("hlt") };
    t.check("hlt-gp", is_gp0(&r, at));
    // WBINVD is emulated (a no-op for a guest without cache control).
    // SAFETY: writes back caches.
    let (r, _) = unsafe { catch_asm!("wbinvd") };
    t.check("wbinvd-emulated", no_trap(&r));
    // SAFETY: INVD would drop dirty cache lines; Xen refuses or emulates as WBINVD.
    let (r, at) = unsafe { catch_asm!("invd") };
    t.check("invd-gp", is_gp0(&r, at));
    // SAFETY: INVLPG of our own code page, if it ran at all.
    let (r, at) = unsafe { catch_asm!("invlpg [{}]", in(reg) 0xffff_ffff_8000_0000u64) };
    t.check("invlpg-gp", is_gp0(&r, at));
    // RDTSC is allowed in ring 3 (CR4.TSD clear).
    let (a, b) = (cpu::rdtsc(), cpu::rdtsc());
    t.check("rdtsc", Outcome::ensure(a != 0 && b >= a, format_args!("{a} then {b}")));
    // RDTSCP if CPUID says so; ECX is TSC_AUX.
    let has_rdtscp = cpuid_forced(0x8000_0001, 0).map(|c| bit(c.edx, 27)).unwrap_or(false);
    let mut aux = u64::MAX;
    // SAFETY: RDTSCP writes EDX:EAX and ECX.
    let (r, at) = unsafe {
        catch_asm!("rdtscp", "mov {:e}, ecx", inout(reg) aux, out("eax") _, out("edx") _, out("ecx") _)
    };
    println!("privop: rdtscp (cpuid says {has_rdtscp}): {r:x?}, aux {aux:#x}");
    if has_rdtscp {
        t.check("rdtscp", no_trap(&r).and_then_ok(Outcome::eq(aux, 0)));
    } else {
        t.check("rdtscp-ud", is_ud(&r, at));
    }
    // SAFETY: RDPMC reads a counter or faults.
    let (r, at) = unsafe { catch_asm!("rdpmc", in("ecx") 0u32, out("eax") _, out("edx") _) };
    t.check("rdpmc-gp", is_gp0(&r, at));
    // SAFETY: SWAPGS would swap the GS bases; it is refused at CPL 3.
    let (r, at) = unsafe { catch_asm!("swapgs") };
    t.check("swapgs-gp", is_gp0(&r, at));
    let desc = [0u64; 2];
    // SAFETY: refused; would load a descriptor-table register from `desc`.
    let (r, at) = unsafe { catch_asm!("lgdt [{}]", in(reg) &desc) };
    t.check("lgdt-gp", is_gp0(&r, at));
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("lidt [{}]", in(reg) &desc) };
    t.check("lidt-gp", is_gp0(&r, at));
    // SAFETY: refused; would load the LDT register.
    let (r, at) = unsafe { catch_asm!("lldt {:x}", in(reg) 0u16) };
    t.check("lldt-gp", is_gp0(&r, at));
    // SAFETY: refused; would load the task register.
    let (r, at) = unsafe { catch_asm!("ltr {:x}", in(reg) 0x28u16) };
    t.check("ltr-gp", is_gp0(&r, at));
    // SGDT/SIDT are not privileged (no UMIP): they show Xen's tables, in its range.
    let mut gdt = [0u8; 10];
    let mut idt = [0u8; 10];
    // SAFETY: store 10 bytes into the arrays.
    let (r1, _) = unsafe { catch_asm!("sgdt [{}]", in(reg) &raw mut gdt) };
    // SAFETY: as above.
    let (r2, _) = unsafe { catch_asm!("sidt [{}]", in(reg) &raw mut idt) };
    let base = |d: &[u8; 10]| u64::from_le_bytes(d[2..].try_into().unwrap_or([0; 8]));
    let limit = |d: &[u8; 10]| u16::from_le_bytes([d[0], d[1]]);
    println!(
        "privop: sgdt {:#x}/{:#x} {r1:x?}, sidt {:#x}/{:#x} {r2:x?}",
        base(&gdt),
        limit(&gdt),
        base(&idt),
        limit(&idt)
    );
    let in_xen = |a: u64| (HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&a);
    t.check(
        "sgdt-xen-gdt",
        no_trap(&r1).and_then_ok(Outcome::ensure(in_xen(base(&gdt)), format_args!("base {:#x}", base(&gdt)))),
    );
    t.check(
        "sidt-xen-idt",
        no_trap(&r2).and_then_ok(Outcome::ensure(in_xen(base(&idt)), format_args!("base {:#x}", base(&idt)))),
    );
    // CLI/STI with IOPL 0: #GP. POPF cannot clear IF either, silently.
    // SAFETY: refused.
    let (r, at) = unsafe { catch_asm!("cli") };
    t.check("cli-iopl0-gp", is_gp0(&r, at));
    // SAFETY: refused.
    let (r, at) = unsafe { catch_asm!("sti") };
    t.check("sti-iopl0-gp", is_gp0(&r, at));
    let mut after = 0u64;
    // SAFETY: POPF with IF clear, then PUSHF: only RFLAGS and the stack slot change.
    unsafe {
        asm!(
            "pushfq",
            "and qword ptr [rsp], {not_if}",
            "popfq",
            "pushfq",
            "pop {after}",
            not_if = const !cpu::RFLAGS_IF,
            after = out(reg) after,
        )
    };
    t.check(
        "popf-cannot-clear-if",
        Outcome::ensure(after & cpu::RFLAGS_IF != 0, format_args!("rflags {after:#x}")),
    );
    xsave(t);
}

const CR4_OSXSAVE: u64 = 1 << 18;

/// XGETBV/XSETBV. Forced CPUID shows OSXSAVE whenever Xen's own CR4 has it, but the
/// guest's virtual CR4.OSXSAVE decides what the emulated XSETBV accepts.
fn xsave(t: &mut Tests) {
    let osxsave = cpuid_forced(1, 0).map(|c| bit(c.ecx, 27)).unwrap_or(false);
    let (mut lo, mut hi) = (0u32, 0u32);
    // SAFETY: XGETBV reads XCR0 (#UD without CR4.OSXSAVE, caught).
    let (r, _) = unsafe { catch_asm!("xgetbv", in("ecx") 0u32, inout("eax") lo, inout("edx") hi) };
    let xcr0 = (hi as u64) << 32 | lo as u64;
    println!("privop: cpuid osxsave {osxsave}, xgetbv(0): {r:x?} {xcr0:#x}");
    t.check("cpuid-forced-osxsave", Outcome::ensure(osxsave, "OSXSAVE clear"));
    // XGETBV is not intercepted: it works in ring 3 with the real CR4.OSXSAVE.
    t.check(
        "xgetbv",
        no_trap(&r).and_then_ok(Outcome::ensure(xcr0 & 3 == 3, format_args!("xcr0 {xcr0:#x}"))),
    );
    let xsetbv = || {
        // SAFETY: writes XCR0 unchanged if Xen emulates it; #UD/#GP are caught.
        unsafe { catch_asm!("xsetbv", in("ecx") 0u32, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32) }
    };
    let Ok(cr4) = read_cr!("cr4") else {
        t.fail("xsetbv", "cannot read cr4");
        return;
    };
    let (r, at) = xsetbv();
    t.check("xsetbv-ud-without-guest-cr4-osxsave", is_ud(&r, at));
    // SAFETY: sets the guest's CR4.OSXSAVE (restored below).
    let (r, _) = unsafe { catch_asm!("mov cr4, {}", in(reg) cr4 | CR4_OSXSAVE) };
    t.check("cr4-write-osxsave", no_trap(&r).and_then_ok(ok_eq(read_cr!("cr4"), cr4 | CR4_OSXSAVE)));
    let (r, _) = xsetbv();
    t.check("xsetbv-same-emulated", no_trap(&r));
    // SAFETY: back to the value read before.
    let (r, _) = unsafe { catch_asm!("mov cr4, {}", in(reg) cr4) };
    t.check("cr4-osxsave-cleared", no_trap(&r).and_then_ok(ok_eq(read_cr!("cr4"), cr4)));
}

// ---- Port I/O ----

/// IN AL from `port`.
fn inb(port: u16) -> (Result<u8, Trap>, u64) {
    let mut v = 0u8;
    // SAFETY: a port read: Xen emulates it for a kernel with IOPL, else #GP (caught).
    // The ports read here have no read side effects.
    let (r, at) = unsafe { catch_asm!("in al, dx", in("dx") port, inout("al") v) };
    (r.map(|()| v), at)
}

/// IN EAX from `port`.
fn inl(port: u16) -> (Result<u32, Trap>, u64) {
    let mut v = 0u32;
    // SAFETY: as in `inb`.
    let (r, at) = unsafe { catch_asm!("in eax, dx", in("dx") port, inout("eax") v) };
    (r.map(|()| v), at)
}

/// OUT `v` to `port`.
///
/// # Safety
///
/// The write must be harmless to the machine.
unsafe fn outb(port: u16, v: u8) -> (Result<(), Trap>, u64) {
    // SAFETY: forwarded to the caller.
    unsafe { catch_asm!("out dx, al", in("dx") port, in("al") v) }
}

/// OUT `v` (32 bits) to `port`.
///
/// # Safety
///
/// As for [`outb`].
unsafe fn outl(port: u16, v: u32) -> (Result<(), Trap>, u64) {
    // SAFETY: forwarded to the caller.
    unsafe { catch_asm!("out dx, eax", in("dx") port, in("eax") v) }
}

/// The POST diagnostic port: harmless to read and write.
const PORT_POST: u16 = 0x80;

fn port_io(t: &mut Tests, xen: &Hypercalls) {
    let shared = guest_shim::shared_info::map().expect("install mapped it");
    // No virtual IOPL yet: port I/O is #GP(0).
    let (r, at) = inb(PORT_POST);
    t.check("in-iopl0-gp", is_gp0(&r, at));
    // SAFETY: POST codes are harmless.
    let (r, at) = unsafe { outb(PORT_POST, 0x42) };
    t.check("out-iopl0-gp", is_gp0(&r, at));

    t.check("set-iopl-4-einval", Outcome::eq(xen.physdev_set_iopl(4), Err(Errno::EINVAL)));
    t.check("set-iopl-1", xen.physdev_set_iopl(1));
    // IOPL is virtual: RFLAGS still says 0.
    t.check(
        "iopl-not-in-rflags",
        Outcome::ensure(
            cpu::rflags() & cpu::RFLAGS_IOPL_MASK == 0,
            format_args!("rflags {:#x}", cpu::rflags()),
        ),
    );
    let (r, _) = inb(PORT_POST);
    t.check("in-post-port", no_trap(&r));
    // SAFETY: as above.
    let (r, _) = unsafe { outb(PORT_POST, 0x42) };
    t.check("out-post-port", no_trap(&r));
    // Ports Xen keeps for itself read as all ones: the PIC, the PIT, the serial port
    // Xen's console uses.
    for (name, port) in [("in-pic-denied-ff", 0x21), ("in-pit-denied-ff", 0x40), ("in-com1-denied-ff", 0x3fd)]
    {
        let (r, _) = inb(port);
        println!("privop: in {port:#x}: {r:x?}");
        t.check(name, ok_eq(r, 0xff));
    }
    // Port 0x61 (speaker/PIT gate) is emulated for dom0.
    let (r, _) = inb(0x61);
    println!("privop: in 0x61: {r:x?}");
    t.check("in-port-61", no_trap(&r));
    // The RTC index/data ports go through Xen's RTC lock to the real RTC: status
    // register D reads 0x80 (valid RAM and time).
    // SAFETY: selects RTC register 0x0d (read-only status), NMI stays enabled.
    let (r, _) = unsafe { outb(0x70, 0x0d) };
    let (d, _) = inb(0x71);
    t.check("rtc-status-d", no_trap(&r).and_then_ok(ok_eq(d, 0x80)));
    // PCI configuration mechanism 1: Xen keeps the guest's 0xcf8 and reads 0xcfc for it.
    // SAFETY: selects bus 0 device 0 function 0 register 0 (a read follows).
    let (r, _) = unsafe { outl(0xcf8, 0x8000_0000) };
    t.check("pci-cf8-write", no_trap(&r));
    t.check("pci-cf8-readback", ok_eq(inl(0xcf8).0, 0x8000_0000));
    let (id, _) = inl(0xcfc);
    println!("privop: pci 00:00.0 id {id:x?}");
    // QEMU's `pc` machine: the i440FX host bridge.
    t.check("pci-host-bridge-id", ok_eq(id, 0x1237_8086));
    // CLI/STI are accepted with IOPL and do nothing (events stay as they are).
    let mask = shared.upcall_mask(0);
    // SAFETY: emulated as no-ops.
    let (r1, _) = unsafe { catch_asm!("cli") };
    // SAFETY: as above.
    let (r2, _) = unsafe { catch_asm!("sti") };
    t.check("cli-sti-with-iopl", no_trap(&r1).and_then_ok(no_trap(&r2)));
    t.check("cli-sti-leave-event-mask", Outcome::eq(shared.upcall_mask(0), mask));

    t.check("set-iopl-0", xen.physdev_set_iopl(0));
    let (r, at) = inb(PORT_POST);
    t.check("in-iopl0-again-gp", is_gp0(&r, at));
}

#[cfg(not(target_os = "none"))]
fn main() {}
