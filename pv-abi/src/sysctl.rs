// SPDX-License-Identifier: MIT OR Apache-2.0
//! System control for the toolstack. Mirrors the parts of Xen 4.17's
//! `xen/include/public/sysctl.h` that a toolstack needs to list domains and size the
//! host.
//!
//! `HYPERVISOR_sysctl(&mut XenSysctl)`: `cmd` is an `XEN_SYSCTL_*`,
//! `interface_version` must be [`XEN_SYSCTL_INTERFACE_VERSION`] and `u` holds the
//! command's structure.

use bitflags::bitflags;

use crate::domctl::XenDomctlGetdomaininfo;
use crate::layout::UnionBytes;
use crate::xen::{DomId, GuestHandle};

/// Interface version of this header (Xen 4.17).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x0000_0015;

/// Read the hypervisor console ring ([`XenSysctlReadconsole`]).
pub const XEN_SYSCTL_READCONSOLE: u32 = 1;
/// Trace-buffer control.
pub const XEN_SYSCTL_TBUF_OP: u32 = 2;
/// Host information ([`XenSysctlPhysinfo`]).
pub const XEN_SYSCTL_PHYSINFO: u32 = 3;
/// Default scheduler ([`XenSysctlSchedId`]).
pub const XEN_SYSCTL_SCHED_ID: u32 = 4;
/// Performance counters.
pub const XEN_SYSCTL_PERFC_OP: u32 = 5;
/// Information on several domains ([`XenSysctlGetdomaininfolist`]).
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;
/// Inject debug keys.
pub const XEN_SYSCTL_DEBUG_KEYS: u32 = 7;
/// Per-CPU idle time.
pub const XEN_SYSCTL_GETCPUINFO: u32 = 8;
/// Free heap memory.
pub const XEN_SYSCTL_AVAILHEAP: u32 = 9;
/// Power-management statistics.
pub const XEN_SYSCTL_GET_PMSTAT: u32 = 10;
/// CPU hotplug.
pub const XEN_SYSCTL_CPU_HOTPLUG: u32 = 11;
/// Power-management control.
pub const XEN_SYSCTL_PM_OP: u32 = 12;
/// Page offlining.
pub const XEN_SYSCTL_PAGE_OFFLINE_OP: u32 = 14;
/// Lock profiling.
pub const XEN_SYSCTL_LOCKPROF_OP: u32 = 15;
/// CPU topology.
pub const XEN_SYSCTL_CPUTOPOINFO: u32 = 16;
/// NUMA information.
pub const XEN_SYSCTL_NUMAINFO: u32 = 17;
/// CPU pool control.
pub const XEN_SYSCTL_CPUPOOL_OP: u32 = 18;
/// Scheduler control.
pub const XEN_SYSCTL_SCHEDULER_OP: u32 = 19;
/// Coverage data.
pub const XEN_SYSCTL_COVERAGE_OP: u32 = 20;
/// Cache monitoring.
pub const XEN_SYSCTL_PSR_CMT_OP: u32 = 21;
/// PCI topology.
pub const XEN_SYSCTL_PCITOPOINFO: u32 = 22;
/// Cache allocation.
pub const XEN_SYSCTL_PSR_ALLOC: u32 = 23;
/// CPU levelling capabilities.
pub const XEN_SYSCTL_GET_CPU_LEVELLING_CAPS: u32 = 25;
/// CPU feature sets.
pub const XEN_SYSCTL_GET_CPU_FEATURESET: u32 = 26;
/// Live patching.
pub const XEN_SYSCTL_LIVEPATCH_OP: u32 = 27;
/// CPUID/MSR policies.
pub const XEN_SYSCTL_GET_CPU_POLICY: u32 = 29;

/// Host can run HVM guests.
pub const XEN_SYSCTL_PHYSCAP_HVM: u32 = 1 << 0;
/// Host can run PV guests.
pub const XEN_SYSCTL_PHYSCAP_PV: u32 = 1 << 1;
/// Host has an IOMMU for device passthrough.
pub const XEN_SYSCTL_PHYSCAP_DIRECTIO: u32 = 1 << 2;
/// Hardware-assisted paging.
pub const XEN_SYSCTL_PHYSCAP_HAP: u32 = 1 << 3;
/// Shadow paging.
pub const XEN_SYSCTL_PHYSCAP_SHADOW: u32 = 1 << 4;
/// IOMMU can share HAP page tables.
pub const XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE: u32 = 1 << 5;
/// Processor trace.
pub const XEN_SYSCTL_PHYSCAP_VMTRACE: u32 = 1 << 6;
/// Virtual PMU.
pub const XEN_SYSCTL_PHYSCAP_VPMU: u32 = 1 << 7;
/// Grant tables v1.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V1: u32 = 1 << 8;
/// Grant tables v2.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V2: u32 = 1 << 9;
/// Highest capability.
pub const XEN_SYSCTL_PHYSCAP_MAX: u32 = XEN_SYSCTL_PHYSCAP_GNTTAB_V2;

bitflags! {
    /// `xen_sysctl_physinfo.capabilities`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PhyscapFlags: u32 {
        /// See [`XEN_SYSCTL_PHYSCAP_HVM`].
        const HVM = XEN_SYSCTL_PHYSCAP_HVM;
        /// See [`XEN_SYSCTL_PHYSCAP_PV`].
        const PV = XEN_SYSCTL_PHYSCAP_PV;
        /// See [`XEN_SYSCTL_PHYSCAP_DIRECTIO`].
        const DIRECTIO = XEN_SYSCTL_PHYSCAP_DIRECTIO;
        /// See [`XEN_SYSCTL_PHYSCAP_HAP`].
        const HAP = XEN_SYSCTL_PHYSCAP_HAP;
        /// See [`XEN_SYSCTL_PHYSCAP_SHADOW`].
        const SHADOW = XEN_SYSCTL_PHYSCAP_SHADOW;
        /// See [`XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE`].
        const IOMMU_HAP_PT_SHARE = XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE;
        /// See [`XEN_SYSCTL_PHYSCAP_VMTRACE`].
        const VMTRACE = XEN_SYSCTL_PHYSCAP_VMTRACE;
        /// See [`XEN_SYSCTL_PHYSCAP_VPMU`].
        const VPMU = XEN_SYSCTL_PHYSCAP_VPMU;
        /// See [`XEN_SYSCTL_PHYSCAP_GNTTAB_V1`].
        const GNTTAB_V1 = XEN_SYSCTL_PHYSCAP_GNTTAB_V1;
        /// See [`XEN_SYSCTL_PHYSCAP_GNTTAB_V2`].
        const GNTTAB_V2 = XEN_SYSCTL_PHYSCAP_GNTTAB_V2;
    }
}

xen_struct! {
    /// `XEN_SYSCTL_readconsole` (`struct xen_sysctl_readconsole`).
    pub struct XenSysctlReadconsole: "struct xen_sysctl_readconsole" {
        /// Clear the ring after reading.
        pub clear: u8,
        /// Read from `index` on.
        pub incremental: u8,
        /// Unused.
        pub pad0: u8,
        /// Unused.
        pub pad1: u8,
        /// IN/OUT: read position.
        pub index: u32,
        /// OUT: the text.
        pub buffer: GuestHandle<u8>,
        /// IN: buffer size; OUT: bytes read.
        pub count: u32,
        /// Padding at the end.
        pub _pad: u32 as pad,
    }

    /// `XEN_SYSCTL_physinfo` (`struct xen_sysctl_physinfo`).
    pub struct XenSysctlPhysinfo: "struct xen_sysctl_physinfo" {
        /// Threads per core.
        pub threads_per_core: u32,
        /// Cores per socket.
        pub cores_per_socket: u32,
        /// Online CPUs.
        pub nr_cpus: u32,
        /// Highest CPU id.
        pub max_cpu_id: u32,
        /// NUMA nodes.
        pub nr_nodes: u32,
        /// Highest node id.
        pub max_node_id: u32,
        /// CPU frequency, kHz.
        pub cpu_khz: u32,
        /// `XEN_SYSCTL_PHYSCAP_*`.
        pub capabilities: u32,
        /// Architecture capabilities.
        pub arch_capabilities: u32,
        /// Unused.
        pub pad: u32,
        /// Host pages.
        pub total_pages: u64,
        /// Free pages.
        pub free_pages: u64,
        /// Pages waiting to be scrubbed.
        pub scrub_pages: u64,
        /// Claimed pages.
        pub outstanding_pages: u64,
        /// Highest machine frame.
        pub max_mfn: u64,
        /// CPU feature words.
        pub hw_cap: [u32; 8],
    }

    /// `XEN_SYSCTL_sched_id` (`struct xen_sysctl_sched_id`).
    pub struct XenSysctlSchedId: "struct xen_sysctl_sched_id" {
        /// `XEN_SCHEDULER_*`.
        pub sched_id: u32,
    }

    /// `XEN_SYSCTL_getdomaininfolist` (`struct xen_sysctl_getdomaininfolist`).
    pub struct XenSysctlGetdomaininfolist: "struct xen_sysctl_getdomaininfolist" {
        /// IN: first domain id to report.
        pub first_domain: DomId,
        /// Padding before `max_domains`.
        pub _pad0: u16 as pad,
        /// IN: capacity of `buffer`.
        pub max_domains: u32,
        /// OUT: the entries.
        pub buffer: GuestHandle<XenDomctlGetdomaininfo>,
        /// OUT: entries written.
        pub num_domains: u32,
        /// Padding at the end.
        pub _pad1: u32 as pad,
    }

    /// The argument of `HYPERVISOR_sysctl` (`struct xen_sysctl`).
    pub struct XenSysctl: "struct xen_sysctl" {
        /// `XEN_SYSCTL_*`.
        pub cmd: u32,
        /// [`XEN_SYSCTL_INTERFACE_VERSION`].
        pub interface_version: u32,
        /// The command's structure.
        pub u: XenSysctlArgs,
    }

    /// The argument union of [`XenSysctl`] (128 bytes).
    pub struct XenSysctlArgs: "__typeof__(((struct xen_sysctl *)0)->u)" {
        /// Union storage.
        pub raw: [u64; 16] as raw,
    }
}

impl UnionBytes for XenSysctlArgs {}

impl XenSysctl {
    /// Command `cmd` with argument `arg`, at the current interface version.
    pub fn new<T: zerocopy::IntoBytes + zerocopy::Immutable>(cmd: u32, arg: &T) -> Self {
        Self { cmd, interface_version: XEN_SYSCTL_INTERFACE_VERSION, u: XenSysctlArgs::from_member(arg) }
    }
}
