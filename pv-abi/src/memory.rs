// SPDX-License-Identifier: MIT OR Apache-2.0
//! Memory reservations and the physical map. Mirrors `xen/include/public/memory.h`.
//!
//! `HYPERVISOR_memory_op(cmd, arg)`: grow and shrink a domain ([`XenMemoryReservation`]),
//! query its size, get the machine-to-phys mapping ([`XenMachphysMapping`]), the memory
//! map (e820 entries via [`XenMemoryMap`]), and add frames to the physmap
//! ([`XenAddToPhysmap`]). Toolstack-only parts (paging, sharing, access) are not
//! mirrored.

use crate::physdev::PhysdevPciDevice;
use crate::xen::{DomId, GuestHandle, XenPfn, XenUlong};

/// Give the domain more memory ([`XenMemoryReservation`]); returns extents done.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// Give frames back ([`XenMemoryReservation`]); returns extents done.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// Highest machine frame number of the host.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// Current pages of a domain (argument: `domid_t`).
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// Maximum pages of a domain (argument: `domid_t`).
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// MFNs of the M2P table's frames ([`XenMachphysMfnList`]).
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// Populate PFNs with new frames ([`XenMemoryReservation`]).
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// Map a special frame into the physmap ([`XenAddToPhysmap`]).
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// The domain's pseudo-physical memory map ([`XenMemoryMap`], e820 entries).
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// The host's memory map (dom0; [`XenMemoryMap`]).
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
/// Exchange frames for others with different constraints ([`XenMemoryExchange`]).
pub const XENMEM_EXCHANGE: u32 = 11;
/// Where the M2P table is mapped ([`XenMachphysMapping`]).
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
/// Set a domain's memory map (toolstack; [`XenForeignMemoryMap`]).
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// Highest PFN in use by a domain (argument: `domid_t`).
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// Remove a frame from the physmap ([`XenRemoveFromPhysmap`]).
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// Set the populate-on-demand target ([`XenPodTarget`]).
pub const XENMEM_SET_POD_TARGET: u32 = 16;
/// Get the populate-on-demand target ([`XenPodTarget`]).
pub const XENMEM_GET_POD_TARGET: u32 = 17;
/// Batched `add_to_physmap` ([`XenAddToPhysmapBatch`]).
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// Claim pages for a domain being built.
pub const XENMEM_CLAIM_PAGES: u32 = 24;
/// MFNs of the compat M2P table.
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;
/// vNUMA topology ([`XenVnumaTopologyInfo`]).
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
/// Reserved device memory ([`XenReservedDeviceMemoryMap`]).
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u32 = 27;
/// Map hypervisor resources of a domain ([`XenMemAcquireResource`]).
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// `mem_flags`: allocate populate-on-demand entries.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// `mem_flags`: the node request is exact.
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// `mem_flags`: the node is a virtual node.
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// Map the shared-info page.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// Map a grant-table frame.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// Move a frame to another PFN.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// Move a range of frames (`size` of them).
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// Map a foreign domain's frame.
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// Map device MMIO (Arm).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// `idx` flag for `XENMAPSPACE_grant_table`: a status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: XenUlong = 0x8000_0000;

/// `xen_reserved_device_memory_map.flags`: all devices.
pub const XENMEM_RDM_ALL: u32 = 1;
/// Acquire-resource type: an ioreq server's pages.
pub const XENMEM_RESOURCE_IOREQ_SERVER: u16 = 0;
/// Acquire-resource type: grant-table frames.
pub const XENMEM_RESOURCE_GRANT_TABLE: u16 = 1;
/// Acquire-resource type: vmtrace buffer.
pub const XENMEM_RESOURCE_VMTRACE_BUF: u16 = 2;
/// Grant-table resource id: the shared frames.
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED: u32 = 0;
/// Grant-table resource id: the status frames.
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_STATUS: u32 = 1;
/// Ioreq-server frame: the buffered ioreq page.
pub const XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ: u64 = 0;

/// `mem_flags` value asking for frames below 2^`bits` (`XENMEMF_address_bits`).
pub const fn xenmemf_address_bits(bits: u32) -> u32 {
    bits
}

/// `mem_flags` value asking for NUMA node `node` (`XENMEMF_node`).
pub const fn xenmemf_node(node: u32) -> u32 {
    (node + 1) << 8
}

xen_struct! {
    /// `XENMEM_increase_reservation`, `decrease_reservation`, `populate_physmap`
    /// (`struct xen_memory_reservation`).
    pub struct XenMemoryReservation: "struct xen_memory_reservation" {
        /// IN/OUT: frames (decrease), PFNs (populate) or OUT MFNs (increase).
        pub extent_start: GuestHandle<XenPfn>,
        /// Number of extents.
        pub nr_extents: XenUlong,
        /// Each extent is 2^order pages.
        pub extent_order: u32,
        /// `XENMEMF_*` (address bits, node).
        pub mem_flags: u32,
        /// Target domain.
        pub domid: DomId,
        /// Padding after `domid`.
        pub _pad: [u8; 6] as pad,
    }

    /// `XENMEM_exchange` (`struct xen_memory_exchange`).
    pub struct XenMemoryExchange: "struct xen_memory_exchange" {
        /// Frames given up.
        pub in_: XenMemoryReservation as "in",
        /// Frames wanted.
        pub out: XenMemoryReservation,
        /// OUT: extents exchanged so far.
        pub nr_exchanged: XenUlong,
    }

    /// A domain id argument (`struct xen_memory_domain`).
    pub struct XenMemoryDomain: "struct xen_memory_domain" {
        /// Domain.
        pub domid: DomId,
    }

    /// `XENMEM_machphys_mfn_list` (`struct xen_machphys_mfn_list`).
    pub struct XenMachphysMfnList: "struct xen_machphys_mfn_list" {
        /// IN: size of the array.
        pub max_extents: u32,
        /// Padding before `extent_start`.
        pub _pad0: u32 as pad,
        /// OUT: MFNs of 2 MiB extents of the M2P.
        pub extent_start: GuestHandle<XenPfn>,
        /// OUT: number written.
        pub nr_extents: u32,
        /// Padding after `nr_extents`.
        pub _pad1: u32 as pad,
    }

    /// `XENMEM_machphys_mapping` (`struct xen_machphys_mapping`).
    pub struct XenMachphysMapping: "struct xen_machphys_mapping" {
        /// Start of the M2P area.
        pub v_start: XenUlong,
        /// End of the M2P area.
        pub v_end: XenUlong,
        /// Highest MFN covered.
        pub max_mfn: XenUlong,
    }

    /// `XENMEM_add_to_physmap` (`struct xen_add_to_physmap`).
    pub struct XenAddToPhysmap: "struct xen_add_to_physmap" {
        /// Domain.
        pub domid: DomId,
        /// Frames for `XENMAPSPACE_gmfn_range`.
        pub size: u16,
        /// `XENMAPSPACE_*`.
        pub space: u32,
        /// Index in the space.
        pub idx: XenUlong,
        /// PFN to map it at.
        pub gpfn: XenPfn,
    }

    /// `XENMEM_add_to_physmap_batch` (`struct xen_add_to_physmap_batch`).
    pub struct XenAddToPhysmapBatch: "struct xen_add_to_physmap_batch" {
        /// Domain.
        pub domid: DomId,
        /// `XENMAPSPACE_*`.
        pub space: u16,
        /// Number of entries.
        pub size: u16,
        /// Foreign domain for `XENMAPSPACE_gmfn_foreign`, else zero.
        pub u: u16,
        /// Indexes.
        pub idxs: GuestHandle<XenUlong>,
        /// PFNs.
        pub gpfns: GuestHandle<XenPfn>,
        /// OUT: per-entry errors.
        pub errs: GuestHandle<i32>,
    }

    /// `XENMEM_remove_from_physmap` (`struct xen_remove_from_physmap`).
    pub struct XenRemoveFromPhysmap: "struct xen_remove_from_physmap" {
        /// Domain.
        pub domid: DomId,
        /// Padding before `gpfn`.
        pub _pad: [u8; 6] as pad,
        /// PFN to unmap.
        pub gpfn: XenPfn,
    }

    /// `XENMEM_memory_map` and `XENMEM_machine_memory_map` (`struct xen_memory_map`).
    pub struct XenMemoryMap: "struct xen_memory_map" {
        /// IN: capacity in entries; OUT: entries written.
        pub nr_entries: u32,
        /// Padding before `buffer`.
        pub _pad: u32 as pad,
        /// Array of e820 entries (8-byte address, 8-byte size, 4-byte type, packed).
        pub buffer: GuestHandle<u8>,
    }

    /// `XENMEM_set_memory_map` (`struct xen_foreign_memory_map`).
    pub struct XenForeignMemoryMap: "struct xen_foreign_memory_map" {
        /// Domain.
        pub domid: DomId,
        /// Padding before `map`.
        pub _pad: [u8; 6] as pad,
        /// The map.
        pub map: XenMemoryMap,
    }

    /// `XENMEM_set_pod_target`, `get_pod_target` (`struct xen_pod_target`).
    pub struct XenPodTarget: "struct xen_pod_target" {
        /// IN: target in pages.
        pub target_pages: u64,
        /// OUT: total pages.
        pub tot_pages: u64,
        /// OUT: pages in the PoD cache.
        pub pod_cache_pages: u64,
        /// OUT: PoD entries.
        pub pod_entries: u64,
        /// IN: domain.
        pub domid: DomId,
        /// Padding after `domid`.
        pub _pad: [u8; 6] as pad,
    }

    /// One reserved device memory range (`struct xen_reserved_device_memory`).
    pub struct XenReservedDeviceMemory: "struct xen_reserved_device_memory" {
        /// First frame.
        pub start_pfn: XenPfn,
        /// Number of frames.
        pub nr_pages: XenUlong,
    }

    /// `XENMEM_reserved_device_memory_map` (`struct xen_reserved_device_memory_map`).
    pub struct XenReservedDeviceMemoryMap: "struct xen_reserved_device_memory_map" {
        /// `XENMEM_RDM_ALL` or 0 for `dev` only.
        pub flags: u32,
        /// IN: capacity; OUT: entries.
        pub nr_entries: u32,
        /// OUT: ranges.
        pub buffer: GuestHandle<XenReservedDeviceMemory>,
        /// The PCI device (`dev.pci`).
        pub dev: PhysdevPciDevice,
        /// Padding after `dev`.
        pub _pad: u32 as pad,
    }

    /// `XENMEM_acquire_resource` (`struct xen_mem_acquire_resource`).
    pub struct XenMemAcquireResource: "struct xen_mem_acquire_resource" {
        /// Domain owning the resource.
        pub domid: DomId,
        /// `XENMEM_resource_*`.
        pub type_: u16 as "type",
        /// Resource instance.
        pub id: u32,
        /// IN: frames wanted (0: query the size); OUT: frames mapped.
        pub nr_frames: u32,
        /// Unused.
        pub pad: u32,
        /// First frame of the resource.
        pub frame: u64,
        /// IN: PFNs to map at (PV: OUT MFNs).
        pub frame_list: GuestHandle<XenPfn>,
    }

    /// One vNUMA memory range (`struct xen_vmemrange`).
    pub struct XenVmemrange: "struct xen_vmemrange" {
        /// Start address.
        pub start: u64,
        /// End address.
        pub end: u64,
        /// Unused.
        pub flags: u32,
        /// Virtual node.
        pub nid: u32,
    }

    /// `XENMEM_get_vnumainfo` (`struct xen_vnuma_topology_info`).
    pub struct XenVnumaTopologyInfo: "struct xen_vnuma_topology_info" {
        /// Domain.
        pub domid: DomId,
        /// Unused.
        pub pad: u16,
        /// IN/OUT: nodes.
        pub nr_vnodes: u32,
        /// IN/OUT: vCPUs.
        pub nr_vcpus: u32,
        /// IN/OUT: memory ranges.
        pub nr_vmemranges: u32,
        /// OUT: distance table (`nr_vnodes`^2 `u32`s).
        pub vdistance: GuestHandle<u32>,
        /// OUT: node of each vCPU.
        pub vcpu_to_vnode: GuestHandle<u32>,
        /// OUT: memory ranges.
        pub vmemrange: GuestHandle<XenVmemrange>,
    }
}
