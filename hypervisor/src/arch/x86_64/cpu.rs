// SPDX-License-Identifier: MIT OR Apache-2.0
//! CPU identification and control registers.

use core::arch::x86_64::{__cpuid_count, CpuidResult};

/// CPUID leaf `leaf`, sub-leaf `sub`.
pub fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
    __cpuid_count(leaf, sub)
}

/// What the banner reports and later code branches on.
#[derive(Clone, Copy, Debug)]
pub struct CpuInfo {
    pub vendor: [u8; 12],
    pub brand: [u8; 48],
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    pub nx: bool,
    pub syscall: bool,
    pub xsave: bool,
    pub pcid: bool,
    pub invpcid: bool,
    pub smep: bool,
    pub smap: bool,
    pub fsgsbase: bool,
    pub pdpe1gb: bool,
    pub tsc_deadline: bool,
    pub invariant_tsc: bool,
}

impl CpuInfo {
    pub fn read() -> Self {
        let mut info = CpuInfo {
            vendor: [0; 12],
            brand: [0; 48],
            family: 0,
            model: 0,
            stepping: 0,
            nx: false,
            syscall: false,
            xsave: false,
            pcid: false,
            invpcid: false,
            smep: false,
            smap: false,
            fsgsbase: false,
            pdpe1gb: false,
            tsc_deadline: false,
            invariant_tsc: false,
        };
        let l0 = cpuid(0, 0);
        info.vendor[0..4].copy_from_slice(&l0.ebx.to_le_bytes());
        info.vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        info.vendor[8..12].copy_from_slice(&l0.ecx.to_le_bytes());
        let l1 = cpuid(1, 0);
        let base_family = (l1.eax >> 8) & 0xf;
        let base_model = (l1.eax >> 4) & 0xf;
        info.family = if base_family == 0xf { base_family + ((l1.eax >> 20) & 0xff) } else { base_family };
        info.model = if base_family == 0xf || base_family == 6 {
            base_model | (((l1.eax >> 16) & 0xf) << 4)
        } else {
            base_model
        };
        info.stepping = l1.eax & 0xf;
        info.pcid = l1.ecx & (1 << 17) != 0;
        info.xsave = l1.ecx & (1 << 26) != 0;
        info.tsc_deadline = l1.ecx & (1 << 24) != 0;
        if l0.eax >= 7 {
            let l7 = cpuid(7, 0);
            info.fsgsbase = l7.ebx & 1 != 0;
            info.smep = l7.ebx & (1 << 7) != 0;
            info.invpcid = l7.ebx & (1 << 10) != 0;
            info.smap = l7.ebx & (1 << 20) != 0;
        }
        let max_ext = cpuid(0x8000_0000, 0).eax;
        if max_ext >= 0x8000_0001 {
            let e1 = cpuid(0x8000_0001, 0);
            info.syscall = e1.edx & (1 << 11) != 0;
            info.nx = e1.edx & (1 << 20) != 0;
            info.pdpe1gb = e1.edx & (1 << 26) != 0;
        }
        if max_ext >= 0x8000_0004 {
            for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
                let r = cpuid(leaf, 0);
                for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].iter().enumerate() {
                    let at = i * 16 + j * 4;
                    info.brand[at..at + 4].copy_from_slice(&reg.to_le_bytes());
                }
            }
        }
        if max_ext >= 0x8000_0007 {
            info.invariant_tsc = cpuid(0x8000_0007, 0).edx & (1 << 8) != 0;
        }
        info
    }

    pub fn vendor_str(&self) -> &str {
        core::str::from_utf8(&self.vendor).unwrap_or("?")
    }

    pub fn brand_str(&self) -> &str {
        let end = self.brand.iter().position(|&b| b == 0).unwrap_or(self.brand.len());
        core::str::from_utf8(&self.brand[..end]).unwrap_or("?").trim()
    }
}

pub fn read_cr2() -> u64 {
    ::x86_64::registers::control::Cr2::read_raw()
}

/// Sets CR2: a page fault the hypervisor raises for a guest (its LDT) reports
/// the address like one the CPU raised.
pub fn write_cr2(value: u64) {
    // SAFETY: CR2 only holds the last page-fault address; nothing else reads it.
    unsafe { core::arch::asm!("mov cr2, {}", in(reg) value, options(nomem, nostack, preserves_flags)) }
}

pub fn read_cr0() -> u64 {
    ::x86_64::registers::control::Cr0::read_raw()
}

pub fn read_cr4() -> u64 {
    ::x86_64::registers::control::Cr4::read_raw()
}

pub fn read_cr3() -> u64 {
    ::x86_64::registers::control::Cr3::read_raw().0.start_address().as_u64()
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn rdmsr(msr: u32) -> u64 {
    // SAFETY: callers pass architectural MSRs that exist on every x86_64 CPU
    // we run on (checked through CPUID where optional).
    unsafe { ::x86_64::registers::model_specific::Msr::new(msr).read() }
}

/// # Safety
/// Writing an MSR can change the machine's behaviour arbitrarily; the caller
/// knows what the MSR does.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { ::x86_64::registers::model_specific::Msr::new(msr).write(value) }
}

/// Enables the protections the hypervisor relies on: SMEP (ring 0 never runs
/// guest code) and global pages.
pub fn enable_protections(info: &CpuInfo) {
    use ::x86_64::registers::control::{Cr4, Cr4Flags};
    let mut flags = Cr4::read() | Cr4Flags::PAGE_GLOBAL;
    if info.smep {
        flags |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
    }
    // SAFETY: global pages and SMEP only restrict what ring 0 may execute or
    // when TLB entries are flushed; the hypervisor runs from its own
    // supervisor mappings.
    unsafe { Cr4::write(flags) }
}

/// FPU and SSE for guests: the hypervisor itself is soft-float, so the
/// live x87/SSE state always belongs to the running guest. CR0.NE gives
/// native #MF reporting; OSFXSR/OSXMMEXCPT enable SSE and #XM.
pub fn enable_fpu_sse() {
    use ::x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
    // AM too, as Xen sets it: alignment checks in ring 3 when RFLAGS.AC asks.
    let cr0 =
        (Cr0::read() | Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR | Cr0Flags::ALIGNMENT_MASK)
            - Cr0Flags::EMULATE_COPROCESSOR
            - Cr0Flags::TASK_SWITCHED;
    let cr4 = Cr4::read() | Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE;
    // SAFETY: enables the FPU and SSE, which the hypervisor's own code never
    // uses; nothing else in CR0/CR4 changes.
    unsafe {
        Cr0::write(cr0);
        Cr4::write(cr4);
        core::arch::asm!("fninit", options(nomem, nostack));
    }
}

/// XCR0 bits the hypervisor offers guests: x87, SSE and AVX where present.
static XCR0_SUPPORTED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Turns on XSAVE (CR4.OSXSAVE) with XCR0 = x87|SSE[|AVX], so guests can use
/// XGETBV and the hypervisor can emulate their XSETBV.
pub fn enable_xsave(info: &CpuInfo) {
    use ::x86_64::registers::control::{Cr4, Cr4Flags};
    if !info.xsave {
        return;
    }
    let l0 = cpuid(0xd, 0);
    let host = u64::from(l0.eax) | (u64::from(l0.edx) << 32);
    let supported = host & 0b111; // x87, SSE, AVX: state the guests' FPU use needs
    // SAFETY: the CPU has XSAVE (CPUID); enabling it changes nothing for the
    // soft-float hypervisor, and XCR0 holds only x87/SSE(/AVX), which the
    // CPU reports as supported.
    unsafe {
        Cr4::write(Cr4::read() | Cr4Flags::OSXSAVE);
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") supported as u32, in("edx") 0u32, options(nomem, nostack));
    }
    XCR0_SUPPORTED.store(supported, core::sync::atomic::Ordering::Relaxed);
}

/// A guest's XSETBV of XCR0: x87 always, AVX only with SSE, nothing the
/// hypervisor does not offer.
pub fn write_xcr0(value: u64) -> Result<(), ()> {
    let supported = XCR0_SUPPORTED.load(core::sync::atomic::Ordering::Relaxed);
    if supported == 0 || value & 1 == 0 || value & !supported != 0 || (value & 4 != 0 && value & 2 == 0) {
        return Err(());
    }
    // SAFETY: a valid XCR0 (checked above) for the running guest's FPU state;
    // the hypervisor never uses extended state itself.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack));
    }
    Ok(())
}

/// XCR0 now (0 without XSAVE).
pub fn xcr0() -> u64 {
    if XCR0_SUPPORTED.load(core::sync::atomic::Ordering::Relaxed) == 0 {
        return 0;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV of XCR0 once the hypervisor enabled CR4.OSXSAVE.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    u64::from(lo) | (u64::from(hi) << 32)
}

pub fn halt_forever() -> ! {
    loop {
        ::x86_64::instructions::interrupts::disable();
        ::x86_64::instructions::hlt();
    }
}
