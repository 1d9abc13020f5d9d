// SPDX-License-Identifier: MIT OR Apache-2.0
//! Hypercall numbers. Mirrors the `__HYPERVISOR_*` list of `xen/include/public/xen.h`.
//!
//! A 64-bit PV guest puts the number in RAX and the arguments in RDI, RSI, RDX, R10,
//! R8 and R9, and calls the stub at `hypercall_page + 32 * number` (see
//! [`HYPERCALL_STUB_SIZE`]), which executes SYSCALL. The Rust names drop Xen's leading
//! `__` and are upper case: `__HYPERVISOR_mmu_update` is [`HYPERVISOR_MMU_UPDATE`].

/// Installs the virtual IDT (an array of `trap_info`).
pub const HYPERVISOR_SET_TRAP_TABLE: u32 = 0;
/// Batched page-table and machine-to-phys updates (`mmu_update`).
pub const HYPERVISOR_MMU_UPDATE: u32 = 1;
/// Installs a GDT from a list of frames.
pub const HYPERVISOR_SET_GDT: u32 = 2;
/// Sets the kernel stack (SS:RSP) used on the next guest-kernel entry.
pub const HYPERVISOR_STACK_SWITCH: u32 = 3;
/// Sets the event and failsafe callback addresses (x86_64: plus syscall).
pub const HYPERVISOR_SET_CALLBACKS: u32 = 4;
/// Sets or clears CR0.TS for the vCPU.
pub const HYPERVISOR_FPU_TASKSWITCH: u32 = 5;
/// Deprecated scheduler operation (pre-3.0.2 ABI).
pub const HYPERVISOR_SCHED_OP_COMPAT: u32 = 6;
/// Platform (host) operation, dom0 only (`xen_platform_op`).
pub const HYPERVISOR_PLATFORM_OP: u32 = 7;
/// Writes a debug register.
pub const HYPERVISOR_SET_DEBUGREG: u32 = 8;
/// Reads a debug register.
pub const HYPERVISOR_GET_DEBUGREG: u32 = 9;
/// Writes one GDT/LDT descriptor (machine address, 8 bytes).
pub const HYPERVISOR_UPDATE_DESCRIPTOR: u32 = 10;
/// Memory reservation and physmap operations (`XENMEM_*`).
pub const HYPERVISOR_MEMORY_OP: u32 = 12;
/// Runs a batch of hypercalls (`multicall_entry`).
pub const HYPERVISOR_MULTICALL: u32 = 13;
/// Writes the PTE that maps one virtual address of the current address space.
pub const HYPERVISOR_UPDATE_VA_MAPPING: u32 = 14;
/// Sets the one-shot timer (absolute system time in ns).
pub const HYPERVISOR_SET_TIMER_OP: u32 = 15;
/// Deprecated event-channel operation (`evtchn_op` wrapper).
pub const HYPERVISOR_EVENT_CHANNEL_OP_COMPAT: u32 = 16;
/// Version and feature queries (`XENVER_*`).
pub const HYPERVISOR_XEN_VERSION: u32 = 17;
/// Hypervisor console read and write.
pub const HYPERVISOR_CONSOLE_IO: u32 = 18;
/// Deprecated physical-device operation (`physdev_op` wrapper).
pub const HYPERVISOR_PHYSDEV_OP_COMPAT: u32 = 19;
/// Grant-table operations (`GNTTABOP_*`).
pub const HYPERVISOR_GRANT_TABLE_OP: u32 = 20;
/// Enables or disables a VM assist (`VMASST_*`).
pub const HYPERVISOR_VM_ASSIST: u32 = 21;
/// Like `update_va_mapping`, for a foreign domain's frame.
pub const HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN: u32 = 22;
/// Returns from a guest exception or event frame; called through its own stub.
pub const HYPERVISOR_IRET: u32 = 23;
/// Per-vCPU operations (`VCPUOP_*`).
pub const HYPERVISOR_VCPU_OP: u32 = 24;
/// Sets FS or GS base (`SEGBASE_*`).
pub const HYPERVISOR_SET_SEGMENT_BASE: u32 = 25;
/// Extended MMU operations: pin, unpin, new base pointer, flushes (`mmuext_op`).
pub const HYPERVISOR_MMUEXT_OP: u32 = 26;
/// Security-module operation.
pub const HYPERVISOR_XSM_OP: u32 = 27;
/// NMI callback registration.
pub const HYPERVISOR_NMI_OP: u32 = 28;
/// Scheduler operations (`SCHEDOP_*`).
pub const HYPERVISOR_SCHED_OP: u32 = 29;
/// Callback registration (`CALLBACKOP_*`).
pub const HYPERVISOR_CALLBACK_OP: u32 = 30;
/// Profiling operation.
pub const HYPERVISOR_XENOPROF_OP: u32 = 31;
/// Event-channel operations (`EVTCHNOP_*`).
pub const HYPERVISOR_EVENT_CHANNEL_OP: u32 = 32;
/// Physical-device operations (`PHYSDEVOP_*`).
pub const HYPERVISOR_PHYSDEV_OP: u32 = 33;
/// HVM operations.
pub const HYPERVISOR_HVM_OP: u32 = 34;
/// System control for the toolstack (`xen_sysctl`).
pub const HYPERVISOR_SYSCTL: u32 = 35;
/// Domain control for the toolstack (`xen_domctl`).
pub const HYPERVISOR_DOMCTL: u32 = 36;
/// Kexec operation.
pub const HYPERVISOR_KEXEC_OP: u32 = 37;
/// Transcendent-memory operation (removed; always fails).
pub const HYPERVISOR_TMEM_OP: u32 = 38;
/// Argo inter-domain messaging.
pub const HYPERVISOR_ARGO_OP: u32 = 39;
/// Performance-monitoring-unit operation.
pub const HYPERVISOR_XENPMU_OP: u32 = 40;
/// Device-model operation.
pub const HYPERVISOR_DM_OP: u32 = 41;
/// Hypervisor file-system operation.
pub const HYPERVISOR_HYPFS_OP: u32 = 42;
/// Architecture-specific hypercall 0 (x86: machine-check `mca`).
pub const HYPERVISOR_ARCH_0: u32 = 48;
/// Architecture-specific hypercall 1.
pub const HYPERVISOR_ARCH_1: u32 = 49;
/// Architecture-specific hypercall 2 (x86: `arch_2`).
pub const HYPERVISOR_ARCH_2: u32 = 50;
/// Architecture-specific hypercall 3 (x86: `arch_3`).
pub const HYPERVISOR_ARCH_3: u32 = 51;
/// Architecture-specific hypercall 4 (x86: `arch_4`).
pub const HYPERVISOR_ARCH_4: u32 = 52;
/// Architecture-specific hypercall 5 (x86: `arch_5`).
pub const HYPERVISOR_ARCH_5: u32 = 53;
/// Architecture-specific hypercall 6 (x86: `arch_6`).
pub const HYPERVISOR_ARCH_6: u32 = 54;
/// Architecture-specific hypercall 7 (x86: `arch_7`).
pub const HYPERVISOR_ARCH_7: u32 = 55;

/// Size of each stub in the hypercall page, in bytes (Xen writes one per number).
// C: none (the stub spacing is fixed by Xen's hypercall-page writer, not a header)
pub const HYPERCALL_STUB_SIZE: usize = 32;

/// Every hypercall number Xen 4.17 defines, in increasing order.
pub static ALL: &[u32] = &[
    HYPERVISOR_SET_TRAP_TABLE,
    HYPERVISOR_MMU_UPDATE,
    HYPERVISOR_SET_GDT,
    HYPERVISOR_STACK_SWITCH,
    HYPERVISOR_SET_CALLBACKS,
    HYPERVISOR_FPU_TASKSWITCH,
    HYPERVISOR_SCHED_OP_COMPAT,
    HYPERVISOR_PLATFORM_OP,
    HYPERVISOR_SET_DEBUGREG,
    HYPERVISOR_GET_DEBUGREG,
    HYPERVISOR_UPDATE_DESCRIPTOR,
    HYPERVISOR_MEMORY_OP,
    HYPERVISOR_MULTICALL,
    HYPERVISOR_UPDATE_VA_MAPPING,
    HYPERVISOR_SET_TIMER_OP,
    HYPERVISOR_EVENT_CHANNEL_OP_COMPAT,
    HYPERVISOR_XEN_VERSION,
    HYPERVISOR_CONSOLE_IO,
    HYPERVISOR_PHYSDEV_OP_COMPAT,
    HYPERVISOR_GRANT_TABLE_OP,
    HYPERVISOR_VM_ASSIST,
    HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN,
    HYPERVISOR_IRET,
    HYPERVISOR_VCPU_OP,
    HYPERVISOR_SET_SEGMENT_BASE,
    HYPERVISOR_MMUEXT_OP,
    HYPERVISOR_XSM_OP,
    HYPERVISOR_NMI_OP,
    HYPERVISOR_SCHED_OP,
    HYPERVISOR_CALLBACK_OP,
    HYPERVISOR_XENOPROF_OP,
    HYPERVISOR_EVENT_CHANNEL_OP,
    HYPERVISOR_PHYSDEV_OP,
    HYPERVISOR_HVM_OP,
    HYPERVISOR_SYSCTL,
    HYPERVISOR_DOMCTL,
    HYPERVISOR_KEXEC_OP,
    HYPERVISOR_TMEM_OP,
    HYPERVISOR_ARGO_OP,
    HYPERVISOR_XENPMU_OP,
    HYPERVISOR_DM_OP,
    HYPERVISOR_HYPFS_OP,
    HYPERVISOR_ARCH_0,
    HYPERVISOR_ARCH_1,
    HYPERVISOR_ARCH_2,
    HYPERVISOR_ARCH_3,
    HYPERVISOR_ARCH_4,
    HYPERVISOR_ARCH_5,
    HYPERVISOR_ARCH_6,
    HYPERVISOR_ARCH_7,
];

/// Xen's short name of hypercall `nr` (`"mmu_update"`), for logs.
pub const fn name(nr: u32) -> Option<&'static str> {
    Some(match nr {
        HYPERVISOR_SET_TRAP_TABLE => "set_trap_table",
        HYPERVISOR_MMU_UPDATE => "mmu_update",
        HYPERVISOR_SET_GDT => "set_gdt",
        HYPERVISOR_STACK_SWITCH => "stack_switch",
        HYPERVISOR_SET_CALLBACKS => "set_callbacks",
        HYPERVISOR_FPU_TASKSWITCH => "fpu_taskswitch",
        HYPERVISOR_SCHED_OP_COMPAT => "sched_op_compat",
        HYPERVISOR_PLATFORM_OP => "platform_op",
        HYPERVISOR_SET_DEBUGREG => "set_debugreg",
        HYPERVISOR_GET_DEBUGREG => "get_debugreg",
        HYPERVISOR_UPDATE_DESCRIPTOR => "update_descriptor",
        HYPERVISOR_MEMORY_OP => "memory_op",
        HYPERVISOR_MULTICALL => "multicall",
        HYPERVISOR_UPDATE_VA_MAPPING => "update_va_mapping",
        HYPERVISOR_SET_TIMER_OP => "set_timer_op",
        HYPERVISOR_EVENT_CHANNEL_OP_COMPAT => "event_channel_op_compat",
        HYPERVISOR_XEN_VERSION => "xen_version",
        HYPERVISOR_CONSOLE_IO => "console_io",
        HYPERVISOR_PHYSDEV_OP_COMPAT => "physdev_op_compat",
        HYPERVISOR_GRANT_TABLE_OP => "grant_table_op",
        HYPERVISOR_VM_ASSIST => "vm_assist",
        HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN => "update_va_mapping_otherdomain",
        HYPERVISOR_IRET => "iret",
        HYPERVISOR_VCPU_OP => "vcpu_op",
        HYPERVISOR_SET_SEGMENT_BASE => "set_segment_base",
        HYPERVISOR_MMUEXT_OP => "mmuext_op",
        HYPERVISOR_XSM_OP => "xsm_op",
        HYPERVISOR_NMI_OP => "nmi_op",
        HYPERVISOR_SCHED_OP => "sched_op",
        HYPERVISOR_CALLBACK_OP => "callback_op",
        HYPERVISOR_XENOPROF_OP => "xenoprof_op",
        HYPERVISOR_EVENT_CHANNEL_OP => "event_channel_op",
        HYPERVISOR_PHYSDEV_OP => "physdev_op",
        HYPERVISOR_HVM_OP => "hvm_op",
        HYPERVISOR_SYSCTL => "sysctl",
        HYPERVISOR_DOMCTL => "domctl",
        HYPERVISOR_KEXEC_OP => "kexec_op",
        HYPERVISOR_TMEM_OP => "tmem_op",
        HYPERVISOR_ARGO_OP => "argo_op",
        HYPERVISOR_XENPMU_OP => "xenpmu_op",
        HYPERVISOR_DM_OP => "dm_op",
        HYPERVISOR_HYPFS_OP => "hypfs_op",
        HYPERVISOR_ARCH_0 => "arch_0",
        HYPERVISOR_ARCH_1 => "arch_1",
        HYPERVISOR_ARCH_2 => "arch_2",
        HYPERVISOR_ARCH_3 => "arch_3",
        HYPERVISOR_ARCH_4 => "arch_4",
        HYPERVISOR_ARCH_5 => "arch_5",
        HYPERVISOR_ARCH_6 => "arch_6",
        HYPERVISOR_ARCH_7 => "arch_7",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(HYPERVISOR_MMU_UPDATE, 1);
        assert_eq!(HYPERVISOR_IRET, 23);
        assert_eq!(HYPERVISOR_EVENT_CHANNEL_OP, 32);
        assert_eq!(name(HYPERVISOR_SCHED_OP), Some("sched_op"));
        assert_eq!(name(11), None);
        assert!(ALL.windows(2).all(|w| w[0] < w[1]));
        assert!(ALL.iter().all(|&nr| (nr as usize + 1) * HYPERCALL_STUB_SIZE <= 4096));
    }
}
