// SPDX-License-Identifier: MIT OR Apache-2.0
//! Physical-device operations. Mirrors `xen/include/public/physdev.h`.
//!
//! `HYPERVISOR_physdev_op(cmd, arg)`: dom0's interface for interrupts (PIRQs, EOI,
//! GSI setup, MSI mapping), I/O privilege and PCI device registration.

use bitflags::bitflags;

use crate::layout::UnionBytes;
use crate::xen::{DomId, GuestHandle, XenPfn};

/// Query a PIRQ's flags ([`PhysdevIrqStatusQuery`]).
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u32 = 5;
/// Set the I/O privilege level of the kernel ([`PhysdevSetIopl`]).
pub const PHYSDEVOP_SET_IOPL: u32 = 6;
/// Set the I/O-port bitmap ([`PhysdevSetIobitmap`]).
pub const PHYSDEVOP_SET_IOBITMAP: u32 = 7;
/// Read an IO-APIC register ([`PhysdevApic`]).
pub const PHYSDEVOP_APIC_READ: u32 = 8;
/// Write an IO-APIC register ([`PhysdevApic`]).
pub const PHYSDEVOP_APIC_WRITE: u32 = 9;
/// Allocate a vector for an IRQ ([`PhysdevIrq`]).
pub const PHYSDEVOP_ALLOC_IRQ_VECTOR: u32 = 10;
/// Free it ([`PhysdevIrq`]).
pub const PHYSDEVOP_FREE_IRQ_VECTOR: u32 = 11;
/// End of interrupt for a PIRQ ([`PhysdevEoi`]).
pub const PHYSDEVOP_EOI: u32 = 12;
/// Map a GSI or MSI to a PIRQ ([`PhysdevMapPirq`]).
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
/// Unmap a PIRQ ([`PhysdevUnmapPirq`]).
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;
/// Register a PCI device ([`PhysdevManagePci`]).
pub const PHYSDEVOP_MANAGE_PCI_ADD: u32 = 15;
/// Unregister it ([`PhysdevManagePci`]).
pub const PHYSDEVOP_MANAGE_PCI_REMOVE: u32 = 16;
/// Register the PIRQ EOI bitmap frame, v1 semantics ([`PhysdevPirqEoiGmfn`]).
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V1: u32 = 17;
/// Restore a device's MSI state ([`PhysdevRestoreMsi`]).
pub const PHYSDEVOP_RESTORE_MSI: u32 = 19;
/// Register a PCI device with SR-IOV details ([`PhysdevManagePciExt`]).
pub const PHYSDEVOP_MANAGE_PCI_ADD_EXT: u32 = 20;
/// Set trigger mode and polarity of a GSI ([`PhysdevSetupGsi`]).
pub const PHYSDEVOP_SETUP_GSI: u32 = 21;
/// Get an unused PIRQ ([`PhysdevGetFreePirq`]).
pub const PHYSDEVOP_GET_FREE_PIRQ: u32 = 23;
/// Report an MMCONFIG area ([`PhysdevPciMmcfgReserved`]).
pub const PHYSDEVOP_PCI_MMCFG_RESERVED: u32 = 24;
/// Register a PCI device with segment ([`PhysdevPciDeviceAdd`]).
pub const PHYSDEVOP_PCI_DEVICE_ADD: u32 = 25;
/// Unregister it ([`PhysdevPciDevice`]).
pub const PHYSDEVOP_PCI_DEVICE_REMOVE: u32 = 26;
/// Restore MSI state, with segment ([`PhysdevPciDevice`]).
pub const PHYSDEVOP_RESTORE_MSI_EXT: u32 = 27;
/// Register the PIRQ EOI bitmap frame, v2 semantics ([`PhysdevPirqEoiGmfn`]).
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V2: u32 = 28;
/// USB debug-port operation ([`PhysdevDbgpOp`]).
pub const PHYSDEVOP_DBGP_OP: u32 = 29;
/// Prepare MSI-X ([`PhysdevPciDevice`]).
pub const PHYSDEVOP_PREPARE_MSIX: u32 = 30;
/// Release MSI-X ([`PhysdevPciDevice`]).
pub const PHYSDEVOP_RELEASE_MSIX: u32 = 31;
/// Obsolete command: tell the hypervisor an IRQ was unmasked (superseded by EOI).
pub const PHYSDEVOP_IRQ_UNMASK_NOTIFY: u32 = 4;

/// The PIRQ needs `PHYSDEVOP_eoi`.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
/// The PIRQ is shared.
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

/// `map_pirq` type: MSI.
pub const MAP_PIRQ_TYPE_MSI: i32 = 0x0;
/// `map_pirq` type: GSI.
pub const MAP_PIRQ_TYPE_GSI: i32 = 0x1;
/// `map_pirq` type: unknown.
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 0x2;
/// `map_pirq` type: MSI with segment in `bus` bits 16-31.
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 0x3;
/// `map_pirq` type: multi-vector MSI.
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 0x4;

/// The MMCONFIG area is reserved in the e820 map.
pub const XEN_PCI_MMCFG_RESERVED: u32 = 0x1;
/// `pci_device_add`: an extended function.
pub const XEN_PCI_DEV_EXTFN: u32 = 0x1;
/// `pci_device_add`: a virtual function (`physfn` is valid).
pub const XEN_PCI_DEV_VIRTFN: u32 = 0x2;
/// `pci_device_add`: `optarr[0]` is the proximity domain.
pub const XEN_PCI_DEV_PXM: u32 = 0x4;

/// Debug port: about to reset.
pub const PHYSDEVOP_DBGP_RESET_PREPARE: u8 = 1;
/// Debug port: reset done.
pub const PHYSDEVOP_DBGP_RESET_DONE: u8 = 2;
/// Debug port bus: unknown.
pub const PHYSDEVOP_DBGP_BUS_UNKNOWN: u8 = 0;
/// Debug port bus: PCI.
pub const PHYSDEVOP_DBGP_BUS_PCI: u8 = 1;

bitflags! {
    /// `physdev_irq_status_query.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct IrqStatusFlags: u32 {
        /// See [`XENIRQSTAT_NEEDS_EOI`].
        const NEEDS_EOI = XENIRQSTAT_NEEDS_EOI;
        /// See [`XENIRQSTAT_SHARED`].
        const SHARED = XENIRQSTAT_SHARED;
    }
}

xen_struct! {
    /// `PHYSDEVOP_eoi` (`struct physdev_eoi`).
    pub struct PhysdevEoi: "struct physdev_eoi" {
        /// PIRQ.
        pub irq: u32,
    }

    /// `PHYSDEVOP_pirq_eoi_gmfn_v1/v2` (`struct physdev_pirq_eoi_gmfn`).
    pub struct PhysdevPirqEoiGmfn: "struct physdev_pirq_eoi_gmfn" {
        /// Frame of the bitmap of PIRQs that need an EOI.
        pub gmfn: XenPfn,
    }

    /// `PHYSDEVOP_irq_status_query` (`struct physdev_irq_status_query`).
    pub struct PhysdevIrqStatusQuery: "struct physdev_irq_status_query" {
        /// IN: PIRQ.
        pub irq: u32,
        /// OUT: `XENIRQSTAT_*`.
        pub flags: u32,
    }

    /// `PHYSDEVOP_set_iopl` (`struct physdev_set_iopl`).
    pub struct PhysdevSetIopl: "struct physdev_set_iopl" {
        /// IOPL, 0-3.
        pub iopl: u32,
    }

    /// `PHYSDEVOP_set_iobitmap` (`struct physdev_set_iobitmap`).
    pub struct PhysdevSetIobitmap: "struct physdev_set_iobitmap" {
        /// Bitmap, one bit per port (set: trap).
        pub bitmap: GuestHandle<u8>,
        /// Ports covered.
        pub nr_ports: u32,
        /// Padding after `nr_ports`.
        pub _pad: u32 as pad,
    }

    /// `PHYSDEVOP_apic_read/write` (`struct physdev_apic`).
    pub struct PhysdevApic: "struct physdev_apic" {
        /// IO-APIC physical base.
        pub apic_physbase: u64,
        /// Register.
        pub reg: u32,
        /// Value.
        pub value: u32,
    }

    /// `PHYSDEVOP_alloc/free_irq_vector` (`struct physdev_irq`).
    pub struct PhysdevIrq: "struct physdev_irq" {
        /// IRQ.
        pub irq: u32,
        /// Vector.
        pub vector: u32,
    }

    /// `PHYSDEVOP_map_pirq` (`struct physdev_map_pirq`).
    pub struct PhysdevMapPirq: "struct physdev_map_pirq" {
        /// Domain.
        pub domid: DomId,
        /// Padding before `type`.
        pub _pad0: u16 as pad,
        /// `MAP_PIRQ_TYPE_*`.
        pub type_: i32 as "type",
        /// GSI, or MSI-X entry.
        pub index: i32,
        /// IN: wanted PIRQ (-1: any); OUT: the PIRQ.
        pub pirq: i32,
        /// PCI bus (MSI).
        pub bus: i32,
        /// PCI devfn (MSI).
        pub devfn: i32,
        /// MSI-X entry or multi-MSI count.
        pub entry_nr: i32,
        /// Padding before `table_base`.
        pub _pad1: u32 as pad,
        /// MSI-X table base.
        pub table_base: u64,
    }

    /// `PHYSDEVOP_unmap_pirq` (`struct physdev_unmap_pirq`).
    pub struct PhysdevUnmapPirq: "struct physdev_unmap_pirq" {
        /// Domain.
        pub domid: DomId,
        /// Padding before `pirq`.
        pub _pad: u16 as pad,
        /// PIRQ.
        pub pirq: i32,
    }

    /// `PHYSDEVOP_manage_pci_add/remove` (`struct physdev_manage_pci`).
    pub struct PhysdevManagePci: "struct physdev_manage_pci" {
        /// Bus.
        pub bus: u8,
        /// Device and function.
        pub devfn: u8,
    }

    /// `PHYSDEVOP_restore_msi` (`struct physdev_restore_msi`).
    pub struct PhysdevRestoreMsi: "struct physdev_restore_msi" {
        /// Bus.
        pub bus: u8,
        /// Device and function.
        pub devfn: u8,
    }

    /// The physical function of a virtual function (`physfn` members).
    pub struct PhysdevPhysfn: "__typeof__(((struct physdev_manage_pci_ext *)0)->physfn)" {
        /// Bus.
        pub bus: u8,
        /// Device and function.
        pub devfn: u8,
    }

    /// `PHYSDEVOP_manage_pci_add_ext` (`struct physdev_manage_pci_ext`).
    pub struct PhysdevManagePciExt: "struct physdev_manage_pci_ext" {
        /// Bus.
        pub bus: u8,
        /// Device and function.
        pub devfn: u8,
        /// Padding before `is_extfn`.
        pub _pad0: u16 as pad,
        /// Extended function.
        pub is_extfn: u32,
        /// Virtual function.
        pub is_virtfn: u32,
        /// Physical function of a virtual function.
        pub physfn: PhysdevPhysfn,
        /// Padding after `physfn`.
        pub _pad1: u16 as pad,
    }

    /// Argument of the deprecated `physdev_op_compat` (`struct physdev_op`).
    pub struct PhysdevOp: "struct physdev_op" {
        /// `PHYSDEVOP_*`.
        pub cmd: u32,
        /// Padding before `u`.
        pub _pad: u32 as pad,
        /// The command's structure.
        pub u: PhysdevOpArgs,
    }

    /// The argument union of [`PhysdevOp`].
    pub struct PhysdevOpArgs: "__typeof__(((struct physdev_op *)0)->u)" {
        /// Union storage.
        pub raw: [u64; 2] as raw,
    }

    /// `PHYSDEVOP_setup_gsi` (`struct physdev_setup_gsi`).
    pub struct PhysdevSetupGsi: "struct physdev_setup_gsi" {
        /// GSI.
        pub gsi: i32,
        /// 0 edge, 1 level.
        pub triggering: u8,
        /// 0 active high, 1 active low.
        pub polarity: u8,
        /// Padding after `polarity`.
        pub _pad: u16 as pad,
    }

    /// `PHYSDEVOP_get_free_pirq` (`struct physdev_get_free_pirq`).
    pub struct PhysdevGetFreePirq: "struct physdev_get_free_pirq" {
        /// IN: `MAP_PIRQ_TYPE_*`.
        pub type_: i32 as "type",
        /// OUT: PIRQ.
        pub pirq: u32,
    }

    /// `PHYSDEVOP_pci_mmcfg_reserved` (`struct physdev_pci_mmcfg_reserved`).
    pub struct PhysdevPciMmcfgReserved: "struct physdev_pci_mmcfg_reserved" {
        /// MMCONFIG base.
        pub address: u64,
        /// PCI segment.
        pub segment: u16,
        /// First bus.
        pub start_bus: u8,
        /// Last bus.
        pub end_bus: u8,
        /// `XEN_PCI_MMCFG_RESERVED`.
        pub flags: u32,
    }

    /// `PHYSDEVOP_pci_device_add` (`struct physdev_pci_device_add`); optional `u32`s
    /// (`optarr`) follow.
    pub struct PhysdevPciDeviceAdd: "struct physdev_pci_device_add" {
        /// Segment.
        pub seg: u16,
        /// Bus.
        pub bus: u8,
        /// Device and function.
        pub devfn: u8,
        /// `XEN_PCI_DEV_*`.
        pub flags: u32,
        /// Physical function for `XEN_PCI_DEV_VIRTFN`.
        pub physfn: PhysdevPhysfn,
        /// Padding before `optarr`.
        pub _pad: u16 as pad,
    }

    /// A PCI device by segment, bus and devfn (`struct physdev_pci_device`).
    pub struct PhysdevPciDevice: "struct physdev_pci_device" {
        /// Segment.
        pub seg: u16,
        /// Bus.
        pub bus: u8,
        /// Device and function.
        pub devfn: u8,
    }

    /// `PHYSDEVOP_dbgp_op` (`struct physdev_dbgp_op`).
    pub struct PhysdevDbgpOp: "struct physdev_dbgp_op" {
        /// `PHYSDEVOP_DBGP_RESET_*`.
        pub op: u8,
        /// `PHYSDEVOP_DBGP_BUS_*`.
        pub bus: u8,
        /// The device (`u.pci`).
        pub u: PhysdevPciDevice,
    }
}

impl UnionBytes for PhysdevOpArgs {}
