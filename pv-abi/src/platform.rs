// SPDX-License-Identifier: MIT OR Apache-2.0
//! Platform operations for dom0. Mirrors the parts of
//! `xen/include/public/platform.h` that a Linux dom0 uses.
//!
//! `HYPERVISOR_platform_op(&mut XenPlatformOp)`: setting the wallclock, firmware
//! information (EDD, VBE DDC, EFI), ACPI sleep, physical CPU information and hotplug,
//! memory hotplug, MSR access and symbol lookup. EFI runtime calls and processor
//! power-management registration (`set_processor_pminfo`, which uses C bitfields) are
//! not mirrored.

use crate::layout::UnionBytes;
use crate::xen::{GuestHandle, XenPfn};

/// `xen_platform_op.interface_version` to pass.
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;

/// Set the wallclock, 32-bit seconds ([`XenpfSettime32`]).
pub const XENPF_SETTIME32: u32 = 17;
/// Add an MTRR ([`XenpfAddMemtype`]).
pub const XENPF_ADD_MEMTYPE: u32 = 31;
/// Delete an MTRR ([`XenpfDelMemtype`]).
pub const XENPF_DEL_MEMTYPE: u32 = 32;
/// Read an MTRR ([`XenpfReadMemtype`]).
pub const XENPF_READ_MEMTYPE: u32 = 33;
/// Load CPU microcode ([`XenpfMicrocodeUpdate`]).
pub const XENPF_MICROCODE_UPDATE: u32 = 35;
/// Platform quirk ([`XenpfPlatformQuirk`]).
pub const XENPF_PLATFORM_QUIRK: u32 = 39;
/// Physical CPU version ([`XenpfPcpuVersion`]).
pub const XENPF_GET_CPU_VERSION: u32 = 48;
/// EFI runtime service call (not mirrored).
pub const XENPF_EFI_RUNTIME_CALL: u32 = 49;
/// Firmware information ([`XenpfFirmwareInfo`]).
pub const XENPF_FIRMWARE_INFO: u32 = 50;
/// Enter an ACPI sleep state ([`XenpfEnterAcpiSleep`]).
pub const XENPF_ENTER_ACPI_SLEEP: u32 = 51;
/// Change CPU frequency ([`XenpfChangeFreq`]).
pub const XENPF_CHANGE_FREQ: u32 = 52;
/// Idle time per CPU ([`XenpfGetidletime`]).
pub const XENPF_GETIDLETIME: u32 = 53;
/// Register processor power-management data (not mirrored).
pub const XENPF_SET_PROCESSOR_PMINFO: u32 = 54;
/// Physical CPU information ([`XenpfPcpuinfo`]).
pub const XENPF_GET_CPUINFO: u32 = 55;
/// Bring a physical CPU online ([`XenpfCpuOl`]).
pub const XENPF_CPU_ONLINE: u32 = 56;
/// Take a physical CPU offline ([`XenpfCpuOl`]).
pub const XENPF_CPU_OFFLINE: u32 = 57;
/// Hot-add a CPU ([`XenpfCpuHotadd`]).
pub const XENPF_CPU_HOTADD: u32 = 58;
/// Hot-add memory ([`XenpfMemHotadd`]).
pub const XENPF_MEM_HOTADD: u32 = 59;
/// Core parking ([`XenpfCoreParking`]).
pub const XENPF_CORE_PARKING: u32 = 60;
/// Batched MSR access ([`XenpfResourceOp`]).
pub const XENPF_RESOURCE_OP: u32 = 61;
/// Set the wallclock, 64-bit seconds ([`XenpfSettime64`]).
pub const XENPF_SETTIME64: u32 = 62;
/// Look up a hypervisor symbol ([`XenpfSymdata`]).
pub const XENPF_GET_SYMBOL: u32 = 63;
/// `XENPF_settime` of the current interface: the 64-bit one.
// C: XENPF_settime
pub const XENPF_SETTIME: u32 = XENPF_SETTIME64;

/// Quirk: no IRQ balancing.
pub const QUIRK_NOIRQBALANCING: u32 = 1;
/// Quirk: IO-APIC register select is broken.
pub const QUIRK_IOAPIC_BAD_REGSEL: u32 = 2;
/// Quirk: IO-APIC register select works.
pub const QUIRK_IOAPIC_GOOD_REGSEL: u32 = 3;

/// Firmware info: EDD disk information.
pub const XEN_FW_DISK_INFO: u32 = 1;
/// Firmware info: MBR signature of a disk.
pub const XEN_FW_DISK_MBR_SIGNATURE: u32 = 2;
/// Firmware info: VBE DDC (EDID).
pub const XEN_FW_VBEDDC_INFO: u32 = 3;
/// Firmware info: EFI (`index` is an `XEN_FW_EFI_*`).
pub const XEN_FW_EFI_INFO: u32 = 4;
/// EFI info: version.
pub const XEN_FW_EFI_VERSION: u32 = 0;
/// EFI info: configuration table.
pub const XEN_FW_EFI_CONFIG_TABLE: u32 = 1;
/// EFI info: vendor.
pub const XEN_FW_EFI_VENDOR: u32 = 2;
/// EFI info: memory map entry.
pub const XEN_FW_EFI_MEM_INFO: u32 = 3;
/// EFI info: runtime services version.
pub const XEN_FW_EFI_RT_VERSION: u32 = 4;
/// EFI info: PCI option ROM.
pub const XEN_FW_EFI_PCI_ROM: u32 = 5;
/// EFI info: Apple properties.
pub const XEN_FW_EFI_APPLE_PROPERTIES: u32 = 6;
/// Firmware info: keyboard shift flags.
pub const XEN_FW_KBD_SHIFT_FLAGS: u32 = 5;

/// ACPI sleep: extended sleep registers.
pub const XENPF_ACPI_SLEEP_EXTENDED: u32 = 0x1;
/// `xenpf_pcpuinfo.flags`: online.
pub const XEN_PCPU_FLAGS_ONLINE: u32 = 1;
/// `xenpf_pcpuinfo.flags`: not present.
pub const XEN_PCPU_FLAGS_INVALID: u32 = 2;
/// Core parking: set.
pub const XEN_CORE_PARKING_SET: u32 = 1;
/// Core parking: get.
pub const XEN_CORE_PARKING_GET: u32 = 2;
/// Resource op: read an MSR.
pub const XEN_RESOURCE_OP_MSR_READ: u32 = 0;
/// Resource op: write an MSR.
pub const XEN_RESOURCE_OP_MSR_WRITE: u32 = 1;

xen_struct! {
    /// `XENPF_settime32` (`struct xenpf_settime32`).
    pub struct XenpfSettime32: "struct xenpf_settime32" {
        /// Seconds since the epoch.
        pub secs: u32,
        /// Nanoseconds.
        pub nsecs: u32,
        /// System time the wallclock corresponds to.
        pub system_time: u64,
    }

    /// `XENPF_settime64` (`struct xenpf_settime64`).
    pub struct XenpfSettime64: "struct xenpf_settime64" {
        /// Seconds since the epoch.
        pub secs: u64,
        /// Nanoseconds.
        pub nsecs: u32,
        /// Must be zero.
        pub mbz: u32,
        /// System time the wallclock corresponds to.
        pub system_time: u64,
    }

    /// `XENPF_add_memtype` (`struct xenpf_add_memtype`).
    pub struct XenpfAddMemtype: "struct xenpf_add_memtype" {
        /// First frame.
        pub mfn: XenPfn,
        /// Frames.
        pub nr_mfns: u64,
        /// Memory type.
        pub type_: u32 as "type",
        /// OUT: handle.
        pub handle: u32,
        /// OUT: MTRR register.
        pub reg: u32,
        /// Padding at the end.
        pub _pad: u32 as pad,
    }

    /// `XENPF_del_memtype` (`struct xenpf_del_memtype`).
    pub struct XenpfDelMemtype: "struct xenpf_del_memtype" {
        /// Handle.
        pub handle: u32,
        /// Register.
        pub reg: u32,
    }

    /// `XENPF_read_memtype` (`struct xenpf_read_memtype`).
    pub struct XenpfReadMemtype: "struct xenpf_read_memtype" {
        /// IN: register.
        pub reg: u32,
        /// Padding before `mfn`.
        pub _pad0: u32 as pad,
        /// OUT: first frame.
        pub mfn: XenPfn,
        /// OUT: frames.
        pub nr_mfns: u64,
        /// OUT: type.
        pub type_: u32 as "type",
        /// Padding at the end.
        pub _pad1: u32 as pad,
    }

    /// `XENPF_microcode_update` (`struct xenpf_microcode_update`).
    pub struct XenpfMicrocodeUpdate: "struct xenpf_microcode_update" {
        /// Microcode blob.
        pub data: GuestHandle<u8>,
        /// Its length.
        pub length: u32,
        /// Padding at the end.
        pub _pad: u32 as pad,
    }

    /// `XENPF_platform_quirk` (`struct xenpf_platform_quirk`).
    pub struct XenpfPlatformQuirk: "struct xenpf_platform_quirk" {
        /// `QUIRK_*`.
        pub quirk_id: u32,
    }

    /// `XENPF_firmware_info` (`struct xenpf_firmware_info`).
    pub struct XenpfFirmwareInfo: "struct xenpf_firmware_info" {
        /// `XEN_FW_*`.
        pub type_: u32 as "type",
        /// Which item (disk number, EFI info kind, ...).
        pub index: u32,
        /// OUT: the information, by type.
        pub u: XenpfFirmwareInfoU,
    }

    /// The result union of [`XenpfFirmwareInfo`].
    pub struct XenpfFirmwareInfoU: "__typeof__(((struct xenpf_firmware_info *)0)->u)" {
        /// Union storage.
        pub raw: [u64; 4] as raw,
    }

    /// EDD disk information (`u.disk_info`).
    pub struct XenpfDiskInfo: "__typeof__(((struct xenpf_firmware_info *)0)->u.disk_info)" {
        /// BIOS drive number.
        pub device: u8,
        /// EDD version.
        pub version: u8,
        /// EDD interface support bits.
        pub interface_support: u16,
        /// Legacy maximum cylinder.
        pub legacy_max_cylinder: u16,
        /// Legacy maximum head.
        pub legacy_max_head: u8,
        /// Legacy sectors per track.
        pub legacy_sectors_per_track: u8,
        /// EDD parameter buffer (first word: its size).
        pub edd_params: GuestHandle<u8>,
    }

    /// MBR signature (`u.disk_mbr_signature`).
    pub struct XenpfDiskMbrSignature: "__typeof__(((struct xenpf_firmware_info *)0)->u.disk_mbr_signature)" {
        /// BIOS drive number.
        pub device: u8,
        /// Padding before `mbr_signature`.
        pub _pad: [u8; 3] as pad,
        /// Signature.
        pub mbr_signature: u32,
    }

    /// VBE DDC information (`u.vbeddc_info`).
    pub struct XenpfVbeddcInfo: "__typeof__(((struct xenpf_firmware_info *)0)->u.vbeddc_info)" {
        /// DDC capabilities.
        pub capabilities: u8,
        /// EDID transfer time.
        pub edid_transfer_time: u8,
        /// Padding before `edid`.
        pub _pad: [u8; 6] as pad,
        /// 128-byte EDID buffer.
        pub edid: GuestHandle<u8>,
    }

    /// `XENPF_enter_acpi_sleep` (`struct xenpf_enter_acpi_sleep`).
    pub struct XenpfEnterAcpiSleep: "struct xenpf_enter_acpi_sleep" {
        /// PM1a control value (or extended sleep control).
        pub val_a: u16,
        /// PM1b control value.
        pub val_b: u16,
        /// Sleep state (S1-S5).
        pub sleep_state: u32,
        /// `XENPF_ACPI_SLEEP_*`.
        pub flags: u32,
    }

    /// `XENPF_change_freq` (`struct xenpf_change_freq`).
    pub struct XenpfChangeFreq: "struct xenpf_change_freq" {
        /// Unused.
        pub flags: u32,
        /// Physical CPU.
        pub cpu: u32,
        /// Frequency in Hz.
        pub freq: u64,
    }

    /// `XENPF_getidletime` (`struct xenpf_getidletime`).
    pub struct XenpfGetidletime: "struct xenpf_getidletime" {
        /// IN/OUT: CPUs to query / CPUs reported.
        pub cpumap_bitmap: GuestHandle<u8>,
        /// Bits in the map.
        pub cpumap_nr_cpus: u32,
        /// Padding before `idletime`.
        pub _pad: u32 as pad,
        /// OUT: idle ns per CPU.
        pub idletime: GuestHandle<u64>,
        /// OUT: system time of the snapshot.
        pub now: u64,
    }

    /// `XENPF_get_cpuinfo` (`struct xenpf_pcpuinfo`).
    pub struct XenpfPcpuinfo: "struct xenpf_pcpuinfo" {
        /// IN: CPU number.
        pub xen_cpuid: u32,
        /// OUT: highest present CPU.
        pub max_present: u32,
        /// OUT: `XEN_PCPU_FLAGS_*`.
        pub flags: u32,
        /// OUT: APIC id.
        pub apic_id: u32,
        /// OUT: ACPI id.
        pub acpi_id: u32,
    }

    /// `XENPF_get_cpu_version` (`struct xenpf_pcpu_version`).
    pub struct XenpfPcpuVersion: "struct xenpf_pcpu_version" {
        /// IN: CPU number.
        pub xen_cpuid: u32,
        /// OUT: highest present CPU.
        pub max_present: u32,
        /// OUT: CPUID vendor string.
        pub vendor_id: [u8; 12],
        /// OUT: family.
        pub family: u32,
        /// OUT: model.
        pub model: u32,
        /// OUT: stepping.
        pub stepping: u32,
    }

    /// `XENPF_cpu_online/offline` (`struct xenpf_cpu_ol`).
    pub struct XenpfCpuOl: "struct xenpf_cpu_ol" {
        /// CPU number.
        pub cpuid: u32,
    }

    /// `XENPF_cpu_hotadd` (`struct xenpf_cpu_hotadd`).
    pub struct XenpfCpuHotadd: "struct xenpf_cpu_hotadd" {
        /// APIC id.
        pub apic_id: u32,
        /// ACPI id.
        pub acpi_id: u32,
        /// Proximity domain.
        pub pxm: u32,
    }

    /// `XENPF_mem_hotadd` (`struct xenpf_mem_hotadd`).
    pub struct XenpfMemHotadd: "struct xenpf_mem_hotadd" {
        /// First frame.
        pub spfn: u64,
        /// End frame (exclusive).
        pub epfn: u64,
        /// Proximity domain.
        pub pxm: u32,
        /// Flags.
        pub flags: u32,
    }

    /// `XENPF_core_parking` (`struct xenpf_core_parking`).
    pub struct XenpfCoreParking: "struct xenpf_core_parking" {
        /// `XEN_CORE_PARKING_*`.
        pub type_: u32 as "type",
        /// Idle CPUs wanted / reported.
        pub idle_nums: u32,
    }

    /// One MSR access of `XENPF_resource_op` (`struct xenpf_resource_entry`).
    pub struct XenpfResourceEntry: "struct xenpf_resource_entry" {
        /// IN: `XEN_RESOURCE_OP_*`; OUT: result (negative errno).
        pub u: u32,
        /// Reserved.
        pub rsvd: u32,
        /// MSR index.
        pub idx: u64,
        /// Value.
        pub val: u64,
    }

    /// `XENPF_resource_op` (`struct xenpf_resource_op`).
    pub struct XenpfResourceOp: "struct xenpf_resource_op" {
        /// Entries.
        pub nr_entries: u32,
        /// Physical CPU to run on.
        pub cpu: u32,
        /// The entries.
        pub entries: GuestHandle<XenpfResourceEntry>,
    }

    /// `XENPF_get_symbol` (`struct xenpf_symdata`).
    pub struct XenpfSymdata: "struct xenpf_symdata" {
        /// IN: buffer size; OUT: name length.
        pub namelen: u32,
        /// IN/OUT: symbol index (iterates).
        pub symnum: u32,
        /// OUT: name.
        pub name: GuestHandle<u8>,
        /// OUT: address.
        pub address: u64,
        /// OUT: symbol type letter.
        pub type_: u8 as "type",
        /// Padding at the end.
        pub _pad: [u8; 7] as pad,
    }

    /// The argument of `HYPERVISOR_platform_op` (`struct xen_platform_op`).
    pub struct XenPlatformOp: "struct xen_platform_op" {
        /// `XENPF_*`.
        pub cmd: u32,
        /// `XENPF_INTERFACE_VERSION`.
        pub interface_version: u32,
        /// The command's structure.
        pub u: XenPlatformOpArgs,
    }

    /// The argument union of [`XenPlatformOp`] (128 bytes).
    pub struct XenPlatformOpArgs: "__typeof__(((struct xen_platform_op *)0)->u)" {
        /// Union storage.
        pub raw: [u64; 16] as raw,
    }
}

impl UnionBytes for XenpfFirmwareInfoU {}
impl UnionBytes for XenPlatformOpArgs {}

impl XenPlatformOp {
    /// Command `cmd` with argument `arg`, at the current interface version.
    pub fn new<T: zerocopy::IntoBytes + zerocopy::Immutable>(cmd: u32, arg: &T) -> Self {
        Self { cmd, interface_version: XENPF_INTERFACE_VERSION, u: XenPlatformOpArgs::from_member(arg) }
    }
}
