// SPDX-License-Identifier: MIT OR Apache-2.0
//! Domain control for the toolstack. Mirrors the parts of Xen 4.17's
//! `xen/include/public/domctl.h` that a domain builder needs.
//!
//! `HYPERVISOR_domctl(&mut XenDomctl)`: `cmd` is an `XEN_DOMCTL_*`,
//! `interface_version` must be [`XEN_DOMCTL_INTERFACE_VERSION`], `domain` is the
//! target and `u` holds the command's structure (read and write it with
//! [`XenDomctl::new`], [`UnionBytes::get`] and [`UnionBytes::set`]). All command numbers
//! are listed; structures are mirrored for creating, inspecting, building, pausing and
//! destroying PV domains.

use bitflags::bitflags;

use crate::arch_x86::{VcpuGuestContext, XenArchDomainconfig};
use crate::layout::UnionBytes;
use crate::xen::{DomId, DomainHandle, GuestHandle, XenPfn, XenctlBitmap};

/// Interface version of this header (Xen 4.17).
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x0000_0015;

/// Create a domain ([`XenDomctlCreatedomain`]); `domain` 0 means any free id.
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
/// Destroy a domain (no argument; preemptible).
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
/// Pause a domain (no argument).
pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
/// Unpause a domain (no argument).
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// Information on a domain ([`XenDomctlGetdomaininfo`]).
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// Set a vCPU's affinity ([`XenDomctlVcpuaffinity`]).
pub const XEN_DOMCTL_SETVCPUAFFINITY: u32 = 9;
/// Shadow paging control.
pub const XEN_DOMCTL_SHADOW_OP: u32 = 10;
/// Set the memory limit ([`XenDomctlMaxMem`]).
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
/// Set a vCPU's state ([`XenDomctlVcpucontext`]).
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = 12;
/// Get a vCPU's state ([`XenDomctlVcpucontext`]).
pub const XEN_DOMCTL_GETVCPUCONTEXT: u32 = 13;
/// Information on a vCPU ([`XenDomctlGetvcpuinfo`]).
pub const XEN_DOMCTL_GETVCPUINFO: u32 = 14;
/// Set the number of vCPUs ([`XenDomctlMaxVcpus`]).
pub const XEN_DOMCTL_MAX_VCPUS: u32 = 15;
/// Scheduler parameters.
pub const XEN_DOMCTL_SCHEDULER_OP: u32 = 16;
/// Set the domain handle ([`XenDomctlSetdomainhandle`]).
pub const XEN_DOMCTL_SETDOMAINHANDLE: u32 = 17;
/// Enable debugging ([`XenDomctlSetdebugging`]).
pub const XEN_DOMCTL_SETDEBUGGING: u32 = 18;
/// Grant or revoke access to a PIRQ ([`XenDomctlIrqPermission`]).
pub const XEN_DOMCTL_IRQ_PERMISSION: u32 = 19;
/// Grant or revoke access to machine frames ([`XenDomctlIomemPermission`]).
pub const XEN_DOMCTL_IOMEM_PERMISSION: u32 = 20;
/// Grant or revoke access to I/O ports ([`XenDomctlIoportPermission`]).
pub const XEN_DOMCTL_IOPORT_PERMISSION: u32 = 21;
/// Write hypercall stubs into a frame of the domain ([`XenDomctlHypercallInit`]).
pub const XEN_DOMCTL_HYPERCALL_INIT: u32 = 22;
/// Set the wallclock offset ([`XenDomctlSettimeoffset`]).
pub const XEN_DOMCTL_SETTIMEOFFSET: u32 = 24;
/// Get a vCPU's affinity ([`XenDomctlVcpuaffinity`]).
pub const XEN_DOMCTL_GETVCPUAFFINITY: u32 = 25;
/// Real-mode area (obsolete).
pub const XEN_DOMCTL_REAL_MODE_AREA: u32 = 26;
/// Resume a suspended domain.
pub const XEN_DOMCTL_RESUMEDOMAIN: u32 = 27;
/// Send a virtual trigger (NMI, reset, ...).
pub const XEN_DOMCTL_SENDTRIGGER: u32 = 28;
/// Subscribe to suspend notifications.
pub const XEN_DOMCTL_SUBSCRIBE: u32 = 29;
/// Get HVM context.
pub const XEN_DOMCTL_GETHVMCONTEXT: u32 = 33;
/// Set HVM context.
pub const XEN_DOMCTL_SETHVMCONTEXT: u32 = 34;
/// Set the guest's address size ([`XenDomctlAddressSize`]).
pub const XEN_DOMCTL_SET_ADDRESS_SIZE: u32 = 35;
/// Get the guest's address size ([`XenDomctlAddressSize`]).
pub const XEN_DOMCTL_GET_ADDRESS_SIZE: u32 = 36;
/// Assign a PCI device.
pub const XEN_DOMCTL_ASSIGN_DEVICE: u32 = 37;
/// Bind a passthrough IRQ.
pub const XEN_DOMCTL_BIND_PT_IRQ: u32 = 38;
/// Map machine memory into the physmap.
pub const XEN_DOMCTL_MEMORY_MAPPING: u32 = 39;
/// Map I/O ports.
pub const XEN_DOMCTL_IOPORT_MAPPING: u32 = 40;
/// Set extended vCPU state.
pub const XEN_DOMCTL_SET_EXT_VCPUCONTEXT: u32 = 42;
/// Get extended vCPU state.
pub const XEN_DOMCTL_GET_EXT_VCPUCONTEXT: u32 = 43;
/// Set an optional feature.
pub const XEN_DOMCTL_SET_OPT_FEATURE: u32 = 44;
/// Test whether a device can be assigned.
pub const XEN_DOMCTL_TEST_ASSIGN_DEVICE: u32 = 45;
/// Set the target domain (device models).
pub const XEN_DOMCTL_SET_TARGET: u32 = 46;
/// Deassign a PCI device.
pub const XEN_DOMCTL_DEASSIGN_DEVICE: u32 = 47;
/// Unbind a passthrough IRQ.
pub const XEN_DOMCTL_UNBIND_PT_IRQ: u32 = 48;
/// Devices sharing an IOMMU context.
pub const XEN_DOMCTL_GET_DEVICE_GROUP: u32 = 50;
/// Debugger single-step control.
pub const XEN_DOMCTL_DEBUG_OP: u32 = 54;
/// Get part of the HVM context.
pub const XEN_DOMCTL_GETHVMCONTEXT_PARTIAL: u32 = 55;
/// VM event control.
pub const XEN_DOMCTL_VM_EVENT_OP: u32 = 56;
/// Memory sharing control.
pub const XEN_DOMCTL_MEM_SHARING_OP: u32 = 57;
/// Get TSC parameters ([`XenDomctlTscInfo`]).
pub const XEN_DOMCTL_GETTSCINFO: u32 = 59;
/// Set TSC parameters ([`XenDomctlTscInfo`]).
pub const XEN_DOMCTL_SETTSCINFO: u32 = 60;
/// Page types of a list of frames ([`XenDomctlGetpageframeinfo3`]).
pub const XEN_DOMCTL_GETPAGEFRAMEINFO3: u32 = 61;
/// Set extended FPU state.
pub const XEN_DOMCTL_SETVCPUEXTSTATE: u32 = 62;
/// Get extended FPU state.
pub const XEN_DOMCTL_GETVCPUEXTSTATE: u32 = 63;
/// Require a memory-access listener.
pub const XEN_DOMCTL_SET_ACCESS_REQUIRED: u32 = 64;
/// Audit the P2M.
pub const XEN_DOMCTL_AUDIT_P2M: u32 = 65;
/// Route a global VIRQ to this domain.
pub const XEN_DOMCTL_SET_VIRQ_HANDLER: u32 = 66;
/// Mark a P2M entry broken.
pub const XEN_DOMCTL_SET_BROKEN_PAGE_P2M: u32 = 67;
/// Set NUMA node affinity.
pub const XEN_DOMCTL_SETNODEAFFINITY: u32 = 68;
/// Get NUMA node affinity.
pub const XEN_DOMCTL_GETNODEAFFINITY: u32 = 69;
/// Cache flush of a frame range.
pub const XEN_DOMCTL_CACHEFLUSH: u32 = 71;
/// Get vCPU MSRs.
pub const XEN_DOMCTL_GET_VCPU_MSRS: u32 = 72;
/// Set vCPU MSRs.
pub const XEN_DOMCTL_SET_VCPU_MSRS: u32 = 73;
/// Set vNUMA information.
pub const XEN_DOMCTL_SETVNUMAINFO: u32 = 74;
/// Cache-monitoring control.
pub const XEN_DOMCTL_PSR_CMT_OP: u32 = 75;
/// Monitor control.
pub const XEN_DOMCTL_MONITOR_OP: u32 = 77;
/// Cache allocation control.
pub const XEN_DOMCTL_PSR_ALLOC: u32 = 78;
/// Soft reset.
pub const XEN_DOMCTL_SOFT_RESET: u32 = 79;
/// Virtual UART control.
pub const XEN_DOMCTL_VUART_OP: u32 = 81;
/// Get the CPUID/MSR policy.
pub const XEN_DOMCTL_GET_CPU_POLICY: u32 = 82;
/// Set the CPUID/MSR policy.
pub const XEN_DOMCTL_SET_CPU_POLICY: u32 = 83;
/// Processor-trace control.
pub const XEN_DOMCTL_VMTRACE_OP: u32 = 84;
/// Get the paging memory pool size.
pub const XEN_DOMCTL_GET_PAGING_MEMPOOL_SIZE: u32 = 85;
/// Set the paging memory pool size.
pub const XEN_DOMCTL_SET_PAGING_MEMPOOL_SIZE: u32 = 86;
/// gdbsx: guest memory access.
pub const XEN_DOMCTL_GDBSX_GUESTMEMIO: u32 = 1000;
/// gdbsx: pause a vCPU.
pub const XEN_DOMCTL_GDBSX_PAUSEVCPU: u32 = 1001;
/// gdbsx: unpause a vCPU.
pub const XEN_DOMCTL_GDBSX_UNPAUSEVCPU: u32 = 1002;
/// gdbsx: domain status.
pub const XEN_DOMCTL_GDBSX_DOMSTATUS: u32 = 1003;

// ---- createdomain flags ----

/// HVM domain (else PV).
pub const XEN_DOMCTL_CDF_HVM: u32 = 1 << 0;
/// Use hardware-assisted paging (HVM).
pub const XEN_DOMCTL_CDF_HAP: u32 = 1 << 1;
/// Integrity-protect across S3.
pub const XEN_DOMCTL_CDF_S3_INTEGRITY: u32 = 1 << 2;
/// Disable out-of-sync shadow page tables.
pub const XEN_DOMCTL_CDF_OOS_OFF: u32 = 1 << 3;
/// The domain is the xenstore domain.
pub const XEN_DOMCTL_CDF_XS_DOMAIN: u32 = 1 << 4;
/// Give the domain an IOMMU context.
pub const XEN_DOMCTL_CDF_IOMMU: u32 = 1 << 5;
/// Nested virtualisation.
pub const XEN_DOMCTL_CDF_NESTED_VIRT: u32 = 1 << 6;
/// Virtual PMU.
pub const XEN_DOMCTL_CDF_VPMU: u32 = 1 << 7;
/// Highest flag.
pub const XEN_DOMCTL_CDF_MAX: u32 = XEN_DOMCTL_CDF_VPMU;
/// IOMMU option: do not share page tables with the P2M.
pub const XEN_DOMCTL_IOMMU_NO_SHAREPT: u32 = 1 << 0;
/// Highest IOMMU option.
pub const XEN_DOMCTL_IOMMU_MAX: u32 = XEN_DOMCTL_IOMMU_NO_SHAREPT;
/// `grant_opts`: mask of the highest grant-table version allowed.
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xf;

// ---- getdomaininfo flags ----

/// The domain is being destroyed.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// HVM guest.
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
/// The domain has shut down (reason in the shutdown field).
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// Paused by the toolstack.
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// All vCPUs blocked.
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
/// Some vCPU running.
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// Being debugged.
pub const XEN_DOMINF_DEBUGGED: u32 = 1 << 6;
/// The xenstore domain.
pub const XEN_DOMINF_XS_DOMAIN: u32 = 1 << 7;
/// Uses hardware-assisted paging.
pub const XEN_DOMINF_HAP: u32 = 1 << 8;
/// Mask of the shutdown reason field (after shifting).
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;
/// Shift of the shutdown reason field.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;
/// `max_vcpu_id` of a domain without vCPUs.
pub const XEN_INVALID_MAX_VCPU_ID: u32 = !0;

// ---- getpageframeinfo3 types (top 4 bits of each entry) ----

/// Shift of the type field.
pub const XEN_DOMCTL_PFINFO_LTAB_SHIFT: u32 = 28;
/// Not a page table.
pub const XEN_DOMCTL_PFINFO_NOTAB: u32 = 0x0 << 28;
/// L1 page table.
pub const XEN_DOMCTL_PFINFO_L1TAB: u32 = 0x1 << 28;
/// L2 page table.
pub const XEN_DOMCTL_PFINFO_L2TAB: u32 = 0x2 << 28;
/// L3 page table.
pub const XEN_DOMCTL_PFINFO_L3TAB: u32 = 0x3 << 28;
/// L4 page table.
pub const XEN_DOMCTL_PFINFO_L4TAB: u32 = 0x4 << 28;
/// Mask of the table level.
pub const XEN_DOMCTL_PFINFO_LTABTYPE_MASK: u32 = 0x7 << 28;
/// The table is pinned.
pub const XEN_DOMCTL_PFINFO_LPINTAB: u32 = 0x1 << 31;
/// Invalid frame.
pub const XEN_DOMCTL_PFINFO_XTAB: u32 = 0xf << 28;
/// Allocated but not yet populated (save/restore).
pub const XEN_DOMCTL_PFINFO_XALLOC: u32 = 0xe << 28;
/// Broken frame.
pub const XEN_DOMCTL_PFINFO_BROKEN: u32 = 0xd << 28;
/// Mask of the whole type field.
pub const XEN_DOMCTL_PFINFO_LTAB_MASK: u32 = 0xf << 28;

// ---- vcpuaffinity flags, schedulers ----

/// Hard affinity.
pub const XEN_VCPUAFFINITY_HARD: u32 = 1 << 0;
/// Soft affinity.
pub const XEN_VCPUAFFINITY_SOFT: u32 = 1 << 1;
/// Force (override a temporary pin).
pub const XEN_VCPUAFFINITY_FORCE: u32 = 1 << 2;
/// Credit scheduler.
pub const XEN_SCHEDULER_CREDIT: u32 = 5;
/// Credit2 scheduler.
pub const XEN_SCHEDULER_CREDIT2: u32 = 6;
/// ARINC 653 scheduler.
pub const XEN_SCHEDULER_ARINC653: u32 = 7;
/// RTDS scheduler.
pub const XEN_SCHEDULER_RTDS: u32 = 8;
/// Null scheduler.
pub const XEN_SCHEDULER_NULL: u32 = 9;

bitflags! {
    /// `xen_domctl_createdomain.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct CdfFlags: u32 {
        /// See [`XEN_DOMCTL_CDF_HVM`].
        const HVM = XEN_DOMCTL_CDF_HVM;
        /// See [`XEN_DOMCTL_CDF_HAP`].
        const HAP = XEN_DOMCTL_CDF_HAP;
        /// See [`XEN_DOMCTL_CDF_S3_INTEGRITY`].
        const S3_INTEGRITY = XEN_DOMCTL_CDF_S3_INTEGRITY;
        /// See [`XEN_DOMCTL_CDF_OOS_OFF`].
        const OOS_OFF = XEN_DOMCTL_CDF_OOS_OFF;
        /// See [`XEN_DOMCTL_CDF_XS_DOMAIN`].
        const XS_DOMAIN = XEN_DOMCTL_CDF_XS_DOMAIN;
        /// See [`XEN_DOMCTL_CDF_IOMMU`].
        const IOMMU = XEN_DOMCTL_CDF_IOMMU;
        /// See [`XEN_DOMCTL_CDF_NESTED_VIRT`].
        const NESTED_VIRT = XEN_DOMCTL_CDF_NESTED_VIRT;
        /// See [`XEN_DOMCTL_CDF_VPMU`].
        const VPMU = XEN_DOMCTL_CDF_VPMU;
    }
}

bitflags! {
    /// `xen_domctl_getdomaininfo.flags`, without the shutdown-reason field.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct DominfFlags: u32 {
        /// See [`XEN_DOMINF_DYING`].
        const DYING = XEN_DOMINF_DYING;
        /// See [`XEN_DOMINF_HVM_GUEST`].
        const HVM_GUEST = XEN_DOMINF_HVM_GUEST;
        /// See [`XEN_DOMINF_SHUTDOWN`].
        const SHUTDOWN = XEN_DOMINF_SHUTDOWN;
        /// See [`XEN_DOMINF_PAUSED`].
        const PAUSED = XEN_DOMINF_PAUSED;
        /// See [`XEN_DOMINF_BLOCKED`].
        const BLOCKED = XEN_DOMINF_BLOCKED;
        /// See [`XEN_DOMINF_RUNNING`].
        const RUNNING = XEN_DOMINF_RUNNING;
        /// See [`XEN_DOMINF_DEBUGGED`].
        const DEBUGGED = XEN_DOMINF_DEBUGGED;
        /// See [`XEN_DOMINF_XS_DOMAIN`].
        const XS_DOMAIN = XEN_DOMINF_XS_DOMAIN;
        /// See [`XEN_DOMINF_HAP`].
        const HAP = XEN_DOMINF_HAP;
        /// The shutdown reason field.
        const _ = XEN_DOMINF_SHUTDOWNMASK << XEN_DOMINF_SHUTDOWNSHIFT;
    }
}

xen_struct! {
    /// `XEN_DOMCTL_createdomain` (`struct xen_domctl_createdomain`).
    pub struct XenDomctlCreatedomain: "struct xen_domctl_createdomain" {
        /// Security label.
        pub ssidref: u32,
        /// Domain handle (UUID).
        pub handle: DomainHandle,
        /// `XEN_DOMCTL_CDF_*`.
        pub flags: u32,
        /// `XEN_DOMCTL_IOMMU_*`.
        pub iommu_opts: u32,
        /// Maximum vCPUs.
        pub max_vcpus: u32,
        /// Highest event-channel port.
        pub max_evtchn_port: u32,
        /// Maximum grant-table frames (-1: default).
        pub max_grant_frames: i32,
        /// Maximum maptrack frames (-1: default).
        pub max_maptrack_frames: i32,
        /// Grant options (`XEN_DOMCTL_GRANT_version`).
        pub grant_opts: u32,
        /// Processor-trace buffer size.
        pub vmtrace_size: u32,
        /// CPU pool.
        pub cpupool_id: u32,
        /// x86 configuration.
        pub arch: XenArchDomainconfig,
    }

    /// `XEN_DOMCTL_getdomaininfo` (`struct xen_domctl_getdomaininfo`); also the entries
    /// of `XEN_SYSCTL_getdomaininfolist`.
    pub struct XenDomctlGetdomaininfo: "struct xen_domctl_getdomaininfo" {
        /// Domain id.
        pub domain: DomId,
        /// Unused.
        pub pad1: u16,
        /// `XEN_DOMINF_*` and the shutdown reason.
        pub flags: u32,
        /// Pages allocated.
        pub tot_pages: u64,
        /// Page limit.
        pub max_pages: u64,
        /// Claimed but not allocated pages.
        pub outstanding_pages: u64,
        /// Shared pages.
        pub shr_pages: u64,
        /// Paged-out pages.
        pub paged_pages: u64,
        /// MFN of the shared-info page.
        pub shared_info_frame: u64,
        /// CPU time used, ns.
        pub cpu_time: u64,
        /// vCPUs online.
        pub nr_online_vcpus: u32,
        /// Highest vCPU id.
        pub max_vcpu_id: u32,
        /// Security label.
        pub ssidref: u32,
        /// Domain handle.
        pub handle: DomainHandle,
        /// CPU pool.
        pub cpupool: u32,
        /// Guest physical address bits.
        pub gpaddr_bits: u8,
        /// Unused.
        pub pad2: [u8; 7],
        /// x86 configuration.
        pub arch_config: XenArchDomainconfig,
    }

    /// `XEN_DOMCTL_getpageframeinfo3` (`struct xen_domctl_getpageframeinfo3`).
    pub struct XenDomctlGetpageframeinfo3: "struct xen_domctl_getpageframeinfo3" {
        /// Entries.
        pub num: u64,
        /// IN: frames; OUT: each with `XEN_DOMCTL_PFINFO_*` in the top bits.
        pub array: GuestHandle<XenPfn>,
    }

    /// `XEN_DOMCTL_max_mem` (`struct xen_domctl_max_mem`).
    pub struct XenDomctlMaxMem: "struct xen_domctl_max_mem" {
        /// Limit in KiB.
        pub max_memkb: u64,
    }

    /// `XEN_DOMCTL_setvcpucontext`, `getvcpucontext` (`struct xen_domctl_vcpucontext`).
    pub struct XenDomctlVcpucontext: "struct xen_domctl_vcpucontext" {
        /// vCPU.
        pub vcpu: u32,
        /// Padding before `ctxt`.
        pub _pad: u32 as pad,
        /// The context.
        pub ctxt: GuestHandle<VcpuGuestContext>,
    }

    /// `XEN_DOMCTL_getvcpuinfo` (`struct xen_domctl_getvcpuinfo`).
    pub struct XenDomctlGetvcpuinfo: "struct xen_domctl_getvcpuinfo" {
        /// IN: vCPU.
        pub vcpu: u32,
        /// OUT: online.
        pub online: u8,
        /// OUT: blocked.
        pub blocked: u8,
        /// OUT: running.
        pub running: u8,
        /// Padding before `cpu_time`.
        pub _pad0: u8 as pad,
        /// OUT: CPU time, ns.
        pub cpu_time: u64,
        /// OUT: physical CPU.
        pub cpu: u32,
        /// Padding at the end.
        pub _pad1: u32 as pad,
    }

    /// `XEN_DOMCTL_setvcpuaffinity`, `getvcpuaffinity` (`struct xen_domctl_vcpuaffinity`).
    pub struct XenDomctlVcpuaffinity: "struct xen_domctl_vcpuaffinity" {
        /// vCPU.
        pub vcpu: u32,
        /// `XEN_VCPUAFFINITY_*`.
        pub flags: u32,
        /// Hard affinity map.
        pub cpumap_hard: XenctlBitmap,
        /// Soft affinity map.
        pub cpumap_soft: XenctlBitmap,
    }

    /// `XEN_DOMCTL_max_vcpus` (`struct xen_domctl_max_vcpus`).
    pub struct XenDomctlMaxVcpus: "struct xen_domctl_max_vcpus" {
        /// Number of vCPUs.
        pub max: u32,
    }

    /// `XEN_DOMCTL_setdomainhandle` (`struct xen_domctl_setdomainhandle`).
    pub struct XenDomctlSetdomainhandle: "struct xen_domctl_setdomainhandle" {
        /// New handle.
        pub handle: DomainHandle,
    }

    /// `XEN_DOMCTL_setdebugging` (`struct xen_domctl_setdebugging`).
    pub struct XenDomctlSetdebugging: "struct xen_domctl_setdebugging" {
        /// Non-zero to enable.
        pub enable: u8,
    }

    /// `XEN_DOMCTL_irq_permission` (`struct xen_domctl_irq_permission`).
    pub struct XenDomctlIrqPermission: "struct xen_domctl_irq_permission" {
        /// PIRQ.
        pub pirq: u32,
        /// Non-zero to allow.
        pub allow_access: u8,
        /// Unused.
        pub pad: [u8; 3],
    }

    /// `XEN_DOMCTL_iomem_permission` (`struct xen_domctl_iomem_permission`).
    pub struct XenDomctlIomemPermission: "struct xen_domctl_iomem_permission" {
        /// First machine frame.
        pub first_mfn: u64,
        /// Frames.
        pub nr_mfns: u64,
        /// Non-zero to allow.
        pub allow_access: u8,
        /// Padding at the end.
        pub _pad: [u8; 7] as pad,
    }

    /// `XEN_DOMCTL_ioport_permission` (`struct xen_domctl_ioport_permission`).
    pub struct XenDomctlIoportPermission: "struct xen_domctl_ioport_permission" {
        /// First port.
        pub first_port: u32,
        /// Ports.
        pub nr_ports: u32,
        /// Non-zero to allow.
        pub allow_access: u8,
        /// Padding at the end.
        pub _pad: [u8; 3] as pad,
    }

    /// `XEN_DOMCTL_hypercall_init` (`struct xen_domctl_hypercall_init`).
    pub struct XenDomctlHypercallInit: "struct xen_domctl_hypercall_init" {
        /// Guest frame to fill with hypercall stubs.
        pub gmfn: u64,
    }

    /// `XEN_DOMCTL_settimeoffset` (`struct xen_domctl_settimeoffset`).
    pub struct XenDomctlSettimeoffset: "struct xen_domctl_settimeoffset" {
        /// Offset of the domain's wallclock from the host's, seconds.
        pub time_offset_seconds: i64,
    }

    /// `XEN_DOMCTL_settscinfo`, `gettscinfo` (`struct xen_domctl_tsc_info`).
    pub struct XenDomctlTscInfo: "struct xen_domctl_tsc_info" {
        /// TSC mode (0 default, 1 always emulate, 2 never emulate).
        pub tsc_mode: u32,
        /// Guest TSC frequency in kHz.
        pub gtsc_khz: u32,
        /// Incremented on each migration.
        pub incarnation: u32,
        /// Unused.
        pub pad: u32,
        /// Elapsed ns offset.
        pub elapsed_nsec: u64,
    }

    /// `XEN_DOMCTL_set_address_size`, `get_address_size` (`struct xen_domctl_address_size`).
    pub struct XenDomctlAddressSize: "struct xen_domctl_address_size" {
        /// 32 or 64.
        pub size: u32,
    }

    /// The argument of `HYPERVISOR_domctl` (`struct xen_domctl`).
    pub struct XenDomctl: "struct xen_domctl" {
        /// `XEN_DOMCTL_*`.
        pub cmd: u32,
        /// [`XEN_DOMCTL_INTERFACE_VERSION`].
        pub interface_version: u32,
        /// Target domain.
        pub domain: DomId,
        /// Unused.
        pub _pad: [u16; 3],
        /// The command's structure.
        pub u: XenDomctlArgs,
    }

    /// The argument union of [`XenDomctl`] (128 bytes).
    pub struct XenDomctlArgs: "__typeof__(((struct xen_domctl *)0)->u)" {
        /// Union storage.
        pub raw: [u64; 16] as raw,
    }
}

impl UnionBytes for XenDomctlArgs {}

impl XenDomctl {
    /// Command `cmd` on `domain` with argument `arg`, at the current interface version.
    pub fn new<T: zerocopy::IntoBytes + zerocopy::Immutable>(cmd: u32, domain: DomId, arg: &T) -> Self {
        Self {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            _pad: [0; 3],
            u: XenDomctlArgs::from_member(arg),
        }
    }

    /// A command without argument (pause, unpause, destroy).
    pub fn without_arg(cmd: u32, domain: DomId) -> Self {
        Self::new(cmd, domain, &())
    }
}

impl XenDomctlGetdomaininfo {
    /// The `XEN_DOMINF_*` flags.
    pub const fn dominf_flags(&self) -> DominfFlags {
        DominfFlags::from_bits_retain(self.flags)
    }

    /// The `SHUTDOWN_*` reason, meaningful when `XEN_DOMINF_shutdown` is set.
    pub const fn shutdown_reason(&self) -> u32 {
        (self.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK
    }
}
