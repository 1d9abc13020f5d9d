// SPDX-License-Identifier: MIT OR Apache-2.0
//! The x86 part of the interface. Mirrors `xen/include/public/arch-x86/xen.h` and
//! `xen/include/public/arch-x86/xen-x86_64.h`.
//!
//! Flat segment selectors, the guest-virtual layout (the hypervisor hole and the
//! read-only M2P table), the register frame [`CpuUserRegs`], the full vCPU state
//! [`VcpuGuestContext`], the virtual IDT entry [`TrapInfo`] and the stack frame
//! `HYPERVISOR_iret` consumes ([`IretContext`]).

use bitflags::bitflags;

/// A callback address (`xen_callback_t`): a plain RIP on x86_64.
pub type XenCallback = u64;

// ---- Flat segment selectors (x86_64 PV: kernel and user both run in ring 3) ----

/// Ring-3 32-bit code selector.
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// Ring-3 64-bit code selector.
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// Ring-3 32-bit data selector.
pub const FLAT_RING3_DS32: u16 = 0xe02b;
/// Ring-3 64-bit data selector (null).
pub const FLAT_RING3_DS64: u16 = 0x0000;
/// Ring-3 32-bit stack selector.
pub const FLAT_RING3_SS32: u16 = 0xe02b;
/// Ring-3 64-bit stack selector.
pub const FLAT_RING3_SS64: u16 = 0xe02b;
/// Guest-kernel 64-bit data selector.
pub const FLAT_KERNEL_DS64: u16 = FLAT_RING3_DS64;
/// Guest-kernel 32-bit data selector.
pub const FLAT_KERNEL_DS32: u16 = FLAT_RING3_DS32;
/// Guest-kernel data selector.
pub const FLAT_KERNEL_DS: u16 = FLAT_KERNEL_DS64;
/// Guest-kernel 64-bit code selector.
pub const FLAT_KERNEL_CS64: u16 = FLAT_RING3_CS64;
/// Guest-kernel 32-bit code selector.
pub const FLAT_KERNEL_CS32: u16 = FLAT_RING3_CS32;
/// Guest-kernel code selector.
pub const FLAT_KERNEL_CS: u16 = FLAT_KERNEL_CS64;
/// Guest-kernel 64-bit stack selector.
pub const FLAT_KERNEL_SS64: u16 = FLAT_RING3_SS64;
/// Guest-kernel 32-bit stack selector.
pub const FLAT_KERNEL_SS32: u16 = FLAT_RING3_SS32;
/// Guest-kernel stack selector.
pub const FLAT_KERNEL_SS: u16 = FLAT_KERNEL_SS64;
/// Guest-user 64-bit data selector.
pub const FLAT_USER_DS64: u16 = FLAT_RING3_DS64;
/// Guest-user 32-bit data selector.
pub const FLAT_USER_DS32: u16 = FLAT_RING3_DS32;
/// Guest-user data selector.
pub const FLAT_USER_DS: u16 = FLAT_USER_DS64;
/// Guest-user 64-bit code selector.
pub const FLAT_USER_CS64: u16 = FLAT_RING3_CS64;
/// Guest-user 32-bit code selector.
pub const FLAT_USER_CS32: u16 = FLAT_RING3_CS32;
/// Guest-user code selector.
pub const FLAT_USER_CS: u16 = FLAT_USER_CS64;
/// Guest-user 64-bit stack selector.
pub const FLAT_USER_SS64: u16 = FLAT_RING3_SS64;
/// Guest-user 32-bit stack selector.
pub const FLAT_USER_SS32: u16 = FLAT_RING3_SS32;
/// Guest-user stack selector.
pub const FLAT_USER_SS: u16 = FLAT_USER_SS64;

// ---- Guest-virtual layout ----

/// Start of the hypervisor-owned hole in every guest address space (L4 slot 256).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End of the hypervisor hole (exclusive; L4 slots 256-271).
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// Start of the read-only machine-to-phys table mapped into every PV guest.
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End of the machine-to-phys table (exclusive).
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
/// Number of 8-byte entries the machine-to-phys area can hold.
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3;

// ---- set_segment_base ----

/// Set the FS base.
pub const SEGBASE_FS: u32 = 0;
/// Set the user GS base.
pub const SEGBASE_GS_USER: u32 = 1;
/// Set the kernel GS base.
pub const SEGBASE_GS_KERNEL: u32 = 2;
/// Load the user GS selector (value = selector).
pub const SEGBASE_GS_USER_SEL: u32 = 3;

// ---- vcpu_guest_context.flags ----

/// The FPU context is valid.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// The vCPU is in guest-kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// Entering the failsafe callback masks events.
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
/// Entering the syscall callback masks events.
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
/// The vCPU is online.
pub const VGCF_ONLINE: u64 = 1 << 5;
/// HYPERVISOR_iret flag: return to a SYSCALL frame (RCX/R11 are not restored).
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

// ---- GDT ----

/// First GDT page reserved for the hypervisor's descriptors.
pub const FIRST_RESERVED_GDT_PAGE: u32 = 14;
/// First reserved GDT byte.
pub const FIRST_RESERVED_GDT_BYTE: u32 = FIRST_RESERVED_GDT_PAGE * 4096;
/// First reserved GDT entry; guests may use entries below it.
pub const FIRST_RESERVED_GDT_ENTRY: u32 = FIRST_RESERVED_GDT_BYTE / 8;

/// Number of `vcpu_info` slots inside the shared-info page.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

// ---- Domain creation: emulated devices (xen_arch_domainconfig) ----

/// Emulated local APIC.
pub const XEN_X86_EMU_LAPIC: u32 = 1 << 0;
/// Emulated HPET.
pub const XEN_X86_EMU_HPET: u32 = 1 << 1;
/// Emulated ACPI PM timer and registers.
pub const XEN_X86_EMU_PM: u32 = 1 << 2;
/// Emulated RTC.
pub const XEN_X86_EMU_RTC: u32 = 1 << 3;
/// Emulated IO-APIC.
pub const XEN_X86_EMU_IOAPIC: u32 = 1 << 4;
/// Emulated PIC.
pub const XEN_X86_EMU_PIC: u32 = 1 << 5;
/// Emulated VGA.
pub const XEN_X86_EMU_VGA: u32 = 1 << 6;
/// Emulated IOMMU.
pub const XEN_X86_EMU_IOMMU: u32 = 1 << 7;
/// Emulated PIT.
pub const XEN_X86_EMU_PIT: u32 = 1 << 8;
/// Route interrupts through PIRQs.
pub const XEN_X86_EMU_USE_PIRQ: u32 = 1 << 9;
/// Virtual PCI.
pub const XEN_X86_EMU_VPCI: u32 = 1 << 10;
/// All emulated devices.
pub const XEN_X86_EMU_ALL: u32 = 0x7ff;
/// Unknown MSRs read as zero and ignore writes instead of faulting.
pub const XEN_X86_MSR_RELAXED: u32 = 1 << 0;
/// Highest `misc_flags` bit.
pub const XEN_X86_MISC_FLAGS_MAX: u32 = XEN_X86_MSR_RELAXED;
/// `xen_cpuid_leaf.subleaf` for leaves without subleaves.
pub const XEN_CPUID_NO_SUBLEAF: u32 = 0xffff_ffff;
/// I/O port of the HVM debug console.
pub const XEN_HVM_DEBUGCONS_IOPORT: u16 = 0xe9;

bitflags! {
    /// `vcpu_guest_context.flags` (and the `flags` word of an iret frame).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VgcfFlags: u64 {
        /// See [`VGCF_I387_VALID`].
        const I387_VALID = VGCF_I387_VALID;
        /// See [`VGCF_IN_KERNEL`].
        const IN_KERNEL = VGCF_IN_KERNEL;
        /// See [`VGCF_FAILSAFE_DISABLES_EVENTS`].
        const FAILSAFE_DISABLES_EVENTS = VGCF_FAILSAFE_DISABLES_EVENTS;
        /// See [`VGCF_SYSCALL_DISABLES_EVENTS`].
        const SYSCALL_DISABLES_EVENTS = VGCF_SYSCALL_DISABLES_EVENTS;
        /// See [`VGCF_ONLINE`].
        const ONLINE = VGCF_ONLINE;
        /// See [`VGCF_IN_SYSCALL`].
        const IN_SYSCALL = VGCF_IN_SYSCALL;
    }
}

bitflags! {
    /// `xen_arch_domainconfig.emulation_flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct X86EmuFlags: u32 {
        /// See [`XEN_X86_EMU_LAPIC`].
        const LAPIC = XEN_X86_EMU_LAPIC;
        /// See [`XEN_X86_EMU_HPET`].
        const HPET = XEN_X86_EMU_HPET;
        /// See [`XEN_X86_EMU_PM`].
        const PM = XEN_X86_EMU_PM;
        /// See [`XEN_X86_EMU_RTC`].
        const RTC = XEN_X86_EMU_RTC;
        /// See [`XEN_X86_EMU_IOAPIC`].
        const IOAPIC = XEN_X86_EMU_IOAPIC;
        /// See [`XEN_X86_EMU_PIC`].
        const PIC = XEN_X86_EMU_PIC;
        /// See [`XEN_X86_EMU_VGA`].
        const VGA = XEN_X86_EMU_VGA;
        /// See [`XEN_X86_EMU_IOMMU`].
        const IOMMU = XEN_X86_EMU_IOMMU;
        /// See [`XEN_X86_EMU_PIT`].
        const PIT = XEN_X86_EMU_PIT;
        /// See [`XEN_X86_EMU_USE_PIRQ`].
        const USE_PIRQ = XEN_X86_EMU_USE_PIRQ;
        /// See [`XEN_X86_EMU_VPCI`].
        const VPCI = XEN_X86_EMU_VPCI;
    }
}

xen_struct! {
    /// One virtual IDT entry (`struct trap_info`); a zero `address` ends a table.
    pub struct TrapInfo: "struct trap_info" {
        /// Exception vector.
        pub vector: u8,
        /// Bits 0-1: the lowest privilege allowed to raise it with INT (DPL);
        /// bit 2: mask events on entry (like an interrupt gate).
        pub flags: u8,
        /// Code selector of the handler.
        pub cs: u16,
        /// Padding before `address`.
        pub _pad: u32 as pad,
        /// Handler address.
        pub address: u64,
    }

    /// Guest registers as Xen saves them (`struct cpu_user_regs`).
    ///
    /// The 32/16/8-bit views Xen declares in unions are the low parts of these fields.
    pub struct CpuUserRegs: "struct cpu_user_regs" {
        /// R15.
        pub r15: u64,
        /// R14.
        pub r14: u64,
        /// R13.
        pub r13: u64,
        /// R12.
        pub r12: u64,
        /// RBP.
        pub rbp: u64,
        /// RBX.
        pub rbx: u64,
        /// R11.
        pub r11: u64,
        /// R10.
        pub r10: u64,
        /// R9.
        pub r9: u64,
        /// R8.
        pub r8: u64,
        /// RAX.
        pub rax: u64,
        /// RCX.
        pub rcx: u64,
        /// RDX.
        pub rdx: u64,
        /// RSI.
        pub rsi: u64,
        /// RDI.
        pub rdi: u64,
        /// Exception error code.
        pub error_code: u32,
        /// Exception vector (Xen internal).
        pub entry_vector: u32,
        /// RIP.
        pub rip: u64,
        /// CS.
        pub cs: u16,
        /// Unused.
        pub _pad0: [u16; 1],
        /// The guest's event mask saved on a callback (x86_64 stores it in CS bits 32-39).
        pub saved_upcall_mask: u8,
        /// Unused.
        pub _pad1: [u8; 3],
        /// RFLAGS.
        pub rflags: u64,
        /// RSP.
        pub rsp: u64,
        /// SS.
        pub ss: u16,
        /// Unused.
        pub _pad2: [u16; 3],
        /// ES.
        pub es: u16,
        /// Unused.
        pub _pad3: [u16; 3],
        /// DS.
        pub ds: u16,
        /// Unused.
        pub _pad4: [u16; 3],
        /// FS.
        pub fs: u16,
        /// Unused.
        pub _pad5: [u16; 3],
        /// GS.
        pub gs: u16,
        /// Unused.
        pub _pad6: [u16; 3],
    }

    /// The FXSAVE area of a vCPU context (`vcpu_guest_context.fpu_ctxt`).
    pub struct FpuContext: "__typeof__(((struct vcpu_guest_context *)0)->fpu_ctxt)" {
        /// FXSAVE image.
        pub x: [u8; 512],
    }

    /// A vCPU's full state, for `VCPUOP_initialise` and the set/getvcpucontext domctls
    /// (`struct vcpu_guest_context`).
    pub struct VcpuGuestContext: "struct vcpu_guest_context" {
        /// FPU/SSE state (FXSAVE layout).
        pub fpu_ctxt: FpuContext,
        /// `VGCF_*` flags.
        pub flags: u64,
        /// General registers.
        pub user_regs: CpuUserRegs,
        /// The virtual IDT.
        pub trap_ctxt: [TrapInfo; 256],
        /// LDT base (linear address).
        pub ldt_base: u64,
        /// LDT entries.
        pub ldt_ents: u64,
        /// GDT frames (MFNs).
        pub gdt_frames: [u64; 16],
        /// GDT entries.
        pub gdt_ents: u64,
        /// Kernel stack selector.
        pub kernel_ss: u64,
        /// Kernel stack pointer.
        pub kernel_sp: u64,
        /// CR0-CR7 (CR3 as `xen_pfn_to_cr3(mfn)`).
        pub ctrlreg: [u64; 8],
        /// DR0-DR7.
        pub debugreg: [u64; 8],
        /// Event callback address.
        pub event_callback_eip: u64,
        /// Failsafe callback address.
        pub failsafe_callback_eip: u64,
        /// SYSCALL callback address.
        pub syscall_callback_eip: u64,
        /// Enabled VM assists (bit per `VMASST_TYPE_*`).
        pub vm_assist: u64,
        /// FS base.
        pub fs_base: u64,
        /// Kernel GS base.
        pub gs_base_kernel: u64,
        /// User GS base.
        pub gs_base_user: u64,
    }

    /// x86 part of `shared_info` (`struct arch_shared_info`).
    pub struct ArchSharedInfo: "struct arch_shared_info" {
        /// Highest PFN + 1 the P2M covers.
        pub max_pfn: u64,
        /// MFN of the list of frames listing the P2M's frame list (for save/restore).
        pub pfn_to_mfn_frame_list_list: u64,
        /// NMI reason bits.
        pub nmi_reason: u64,
        /// CR3 of the page tables mapping the virtual P2M (0: none).
        pub p2m_cr3: u64,
        /// Virtual address of the P2M in those tables.
        pub p2m_vaddr: u64,
        /// Incremented around P2M changes.
        pub p2m_generation: u64,
    }

    /// x86 part of `vcpu_info` (`struct arch_vcpu_info`).
    pub struct ArchVcpuInfo: "struct arch_vcpu_info" {
        /// Faulting address of the last page fault delivered.
        pub cr2: u64,
        /// Unused.
        pub pad: u64,
    }

    /// The stack frame `HYPERVISOR_iret` pops (`struct iret_context`), lowest address
    /// first: the stub pushes RCX, R11 and RAX below the guest's part.
    pub struct IretContext: "struct iret_context" {
        /// RAX to restore.
        pub rax: u64,
        /// R11 to restore.
        pub r11: u64,
        /// RCX to restore.
        pub rcx: u64,
        /// `VGCF_IN_SYSCALL` or 0.
        pub flags: u64,
        /// Return RIP.
        pub rip: u64,
        /// Return CS.
        pub cs: u64,
        /// Return RFLAGS.
        pub rflags: u64,
        /// Return RSP.
        pub rsp: u64,
        /// Return SS.
        pub ss: u64,
    }

    /// Architecture configuration at domain creation (`struct xen_arch_domainconfig`).
    pub struct XenArchDomainconfig: "struct xen_arch_domainconfig" {
        /// `XEN_X86_EMU_*` devices to emulate (0 for a PV guest).
        pub emulation_flags: u32,
        /// `XEN_X86_MSR_RELAXED`.
        pub misc_flags: u32,
    }

    /// One CPUID leaf of a policy (`xen_cpuid_leaf_t`).
    pub struct XenCpuidLeaf: "xen_cpuid_leaf_t" {
        /// Leaf.
        pub leaf: u32,
        /// Subleaf or `XEN_CPUID_NO_SUBLEAF`.
        pub subleaf: u32,
        /// EAX.
        pub a: u32,
        /// EBX.
        pub b: u32,
        /// ECX.
        pub c: u32,
        /// EDX.
        pub d: u32,
    }

    /// One MSR of a policy (`xen_msr_entry_t`).
    pub struct XenMsrEntry: "xen_msr_entry_t" {
        /// MSR index.
        pub idx: u32,
        /// Reserved, zero.
        pub flags: u32,
        /// Value.
        pub val: u64,
    }
}

impl TrapInfo {
    /// A handler for `vector` at `address`; `dpl` is who may raise it with INT,
    /// `mask_events` masks event upcalls on entry.
    pub const fn new(vector: u8, dpl: u8, mask_events: bool, cs: u16, address: u64) -> Self {
        let flags = (dpl & 3) | if mask_events { 4 } else { 0 };
        Self { vector, flags, cs, _pad: 0, address }
    }

    /// The DPL (`TI_GET_DPL`).
    pub const fn dpl(&self) -> u8 {
        self.flags & 3
    }

    /// Whether entry masks events (`TI_GET_IF`).
    pub const fn masks_events(&self) -> bool {
        self.flags & 4 != 0
    }
}

impl VcpuGuestContext {
    /// The `VGCF_*` flags.
    pub const fn vgcf_flags(&self) -> VgcfFlags {
        VgcfFlags::from_bits_retain(self.flags)
    }
}

/// CR3 value for page-table base `pfn` (`xen_pfn_to_cr3`).
pub const fn xen_pfn_to_cr3(pfn: u64) -> u64 {
    pfn << 12
}

/// Page-table base frame of a CR3 value (`xen_cr3_to_pfn`).
pub const fn xen_cr3_to_pfn(cr3: u64) -> u64 {
    cr3 >> 12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_values() {
        assert_eq!(size_of::<CpuUserRegs>(), 200);
        assert_eq!(size_of::<TrapInfo>(), 16);
        assert_eq!(FLAT_KERNEL_CS, 0xe033);
        assert_eq!(FLAT_KERNEL_SS, 0xe02b);
        assert_eq!(HYPERVISOR_VIRT_START >> 39 & 0x1ff, 256);
        assert_eq!(MACH2PHYS_NR_ENTRIES, 1 << 35);
        let t = TrapInfo::new(14, 0, true, FLAT_KERNEL_CS, 0x1000);
        assert_eq!((t.dpl(), t.masks_events()), (0, true));
    }
}
