// SPDX-License-Identifier: MIT OR Apache-2.0
//! The core interface. Mirrors `xen/include/public/xen.h`.
//!
//! Start-of-day information ([`StartInfo`]), the shared-info page ([`SharedInfo`],
//! [`VcpuInfo`], [`VcpuTimeInfo`]), page-table updates ([`MmuUpdate`], [`MmuextOp`]),
//! [`MulticallEntry`], VIRQ numbers, VM assists, `SIF_*` flags and the special domain
//! ids. Hypercall numbers are in [`crate::hypercall`]; x86 parts of this header's
//! structures (`arch_vcpu_info`, `arch_shared_info`) in [`crate::arch_x86`].

use core::fmt;
use core::marker::PhantomData;

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::arch_x86::{ArchSharedInfo, ArchVcpuInfo, XEN_LEGACY_MAX_VCPUS};
use crate::layout::UnionBytes;

/// A domain id (`domid_t`).
pub type DomId = u16;
/// A page frame number as the guest ABI carries it (`xen_pfn_t`, 64 bits on x86_64).
pub type XenPfn = u64;
/// Xen's native unsigned long (`xen_ulong_t`).
pub type XenUlong = u64;
/// A domain's 16-byte handle, usually a UUID (`xen_domain_handle_t`).
pub type DomainHandle = [u8; 16];

/// A guest virtual address of a `T` or of an array of `T` (`XEN_GUEST_HANDLE(T)`).
///
/// On x86_64 a guest handle is a 64-bit pointer. The type parameter only documents
/// what the guest points at; the hypervisor must still copy through a checked accessor.
#[repr(transparent)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct GuestHandle<T> {
    addr: u64,
    _points_to: PhantomData<fn() -> T>,
}

impl<T> GuestHandle<T> {
    /// The null handle.
    pub const NULL: Self = Self::new(0);

    /// A handle to guest virtual address `addr`.
    pub const fn new(addr: u64) -> Self {
        Self { addr, _points_to: PhantomData }
    }

    /// A handle to `ptr` (guest side: the guest's own virtual address).
    pub fn from_ptr(ptr: *const T) -> Self {
        Self::new(ptr as usize as u64)
    }

    /// The guest virtual address.
    pub const fn addr(self) -> u64 {
        self.addr
    }

    /// Whether the handle is null.
    pub const fn is_null(self) -> bool {
        self.addr == 0
    }
}

impl<T> Clone for GuestHandle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GuestHandle<T> {}
impl<T> PartialEq for GuestHandle<T> {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}
impl<T> Eq for GuestHandle<T> {}
impl<T> Default for GuestHandle<T> {
    fn default() -> Self {
        Self::NULL
    }
}
impl<T> fmt::Debug for GuestHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestHandle({:#x})", self.addr)
    }
}

/// The interface version these definitions follow (`__XEN_LATEST_INTERFACE_VERSION__`
/// of `xen-compat.h`, Xen 4.14 onwards through 4.17).
// C: __XEN_LATEST_INTERFACE_VERSION__
pub const XEN_LATEST_INTERFACE_VERSION: u32 = 0x0004_0e00;

// ---- Virtual interrupts (bind with EVTCHNOP_bind_virq) ----

/// Per-vCPU timer tick.
pub const VIRQ_TIMER: u32 = 0;
/// Debug request (the `q` key on the hypervisor console).
pub const VIRQ_DEBUG: u32 = 1;
/// Hypervisor console input (dom0).
pub const VIRQ_CONSOLE: u32 = 2;
/// A domain exited (dom0: reap it).
pub const VIRQ_DOM_EXC: u32 = 3;
/// Trace buffer has records.
pub const VIRQ_TBUF: u32 = 4;
/// A debugged guest stopped.
pub const VIRQ_DEBUGGER: u32 = 6;
/// Xenoprofile sample buffer.
pub const VIRQ_XENOPROF: u32 = 7;
/// Hypervisor console ring has data.
pub const VIRQ_CON_RING: u32 = 8;
/// A physical CPU changed state.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// A memory event is pending.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// Argo message arrived.
pub const VIRQ_ARGO: u32 = 11;
/// The hypervisor is low on free memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// PMU interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// Architecture-specific VIRQ 0 (x86: machine check, `VIRQ_MCA`).
pub const VIRQ_ARCH_0: u32 = 16;
/// Architecture-specific VIRQ 1.
pub const VIRQ_ARCH_1: u32 = 17;
/// Architecture-specific VIRQ 2.
pub const VIRQ_ARCH_2: u32 = 18;
/// Architecture-specific VIRQ 3.
pub const VIRQ_ARCH_3: u32 = 19;
/// Architecture-specific VIRQ 4.
pub const VIRQ_ARCH_4: u32 = 20;
/// Architecture-specific VIRQ 5.
pub const VIRQ_ARCH_5: u32 = 21;
/// Architecture-specific VIRQ 6.
pub const VIRQ_ARCH_6: u32 = 22;
/// Architecture-specific VIRQ 7.
pub const VIRQ_ARCH_7: u32 = 23;
/// Number of VIRQs.
pub const NR_VIRQS: u32 = 24;

// ---- mmu_update: the command is in the low 2 bits of `ptr` ----

/// `ptr` is the machine address of a PTE to write with `val` (checked, A/D may be set).
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `ptr` is a machine address whose M2P entry becomes `val` (a PFN).
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// Like `MMU_NORMAL_PT_UPDATE` but keeps the current A/D bits.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// Like `MMU_NORMAL_PT_UPDATE` without translating the frame (auto-translated guests).
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;

// ---- mmuext_op commands ----

/// Pin `arg1.mfn` as an L1 page table.
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// Pin `arg1.mfn` as an L2 page table.
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
/// Pin `arg1.mfn` as an L3 page table.
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
/// Pin `arg1.mfn` as an L4 page table.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// Unpin the table at `arg1.mfn`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// Switch the kernel page-table base to `arg1.mfn`.
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// Flush this vCPU's TLB.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// Invalidate `arg1.linear_addr` on this vCPU.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// Flush the TLBs of the vCPUs in `arg2.vcpumask`.
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
/// Invalidate `arg1.linear_addr` on the vCPUs in `arg2.vcpumask`.
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
/// Flush the TLBs of all the domain's vCPUs.
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
/// Invalidate `arg1.linear_addr` on all the domain's vCPUs.
pub const MMUEXT_INVLPG_ALL: u32 = 11;
/// Write back and invalidate this CPU's caches.
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
/// Set the LDT: base `arg1.linear_addr`, `arg2.nr_ents` entries.
pub const MMUEXT_SET_LDT: u32 = 13;
/// Switch the user page-table base to `arg1.mfn` (x86_64).
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
/// Zero the page at `arg1.mfn`.
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
/// Copy the page at `arg2.src_mfn` to `arg1.mfn`.
pub const MMUEXT_COPY_PAGE: u32 = 17;
/// Write back and invalidate caches on all CPUs.
pub const MMUEXT_FLUSH_CACHE_GLOBAL: u32 = 18;
/// Mark a superpage (obsolete; fails).
pub const MMUEXT_MARK_SUPER: u32 = 19;
/// Unmark a superpage (obsolete; fails).
pub const MMUEXT_UNMARK_SUPER: u32 = 20;

// ---- update_va_mapping flags ----

/// No TLB flush.
pub const UVMF_NONE: u64 = 0;
/// Flush the whole TLB.
pub const UVMF_TLB_FLUSH: u64 = 1;
/// Invalidate only the updated address.
pub const UVMF_INVLPG: u64 = 2;
/// Mask of the flush-type field.
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush on the vCPUs whose mask pointer is in the upper bits.
pub const UVMF_MULTI: u64 = 0;
/// Flush on this vCPU only.
pub const UVMF_LOCAL: u64 = 0;
/// Flush on all the domain's vCPUs.
pub const UVMF_ALL: u64 = 1 << 2;

// ---- console_io commands ----

/// Write a buffer to the hypervisor console.
pub const CONSOLEIO_WRITE: u32 = 0;
/// Read from the hypervisor console (dom0).
pub const CONSOLEIO_READ: u32 = 1;

// ---- vm_assist ----

/// Enable an assist.
pub const VMASST_CMD_ENABLE: u32 = 0;
/// Disable an assist.
pub const VMASST_CMD_DISABLE: u32 = 1;
/// x86_32: emulate 4GB segments (obsolete).
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// x86_32: notify on 4GB segment emulation (obsolete).
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// Writable page tables: writes to L1 tables are trapped and emulated.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// x86_32 PAE: CR3 above 4GB.
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// IOPL is taken from EFLAGS as on hardware instead of `PHYSDEVOP_set_iopl`.
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// The hypervisor sets `XEN_RUNSTATE_UPDATE` while it updates runstate info.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
/// The M2P table seen by the guest contains only its own frames.
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;

// ---- Special domain ids ----

/// First id that is not a real domain.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// The calling domain.
pub const DOMID_SELF: DomId = 0x7FF0;
/// I/O memory owner (dom0 maps device memory as this domain).
pub const DOMID_IO: DomId = 0x7FF1;
/// The hypervisor itself (owner of shared Xen pages).
pub const DOMID_XEN: DomId = 0x7FF2;
/// Copy-on-write shared pages.
pub const DOMID_COW: DomId = 0x7FF3;
/// Invalid domain.
pub const DOMID_INVALID: DomId = 0x7FF4;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7FFF;
/// Mask of valid domain id bits.
pub const DOMID_MASK: DomId = 0x7FFF;

// ---- vcpu_time_info flags ----

/// The TSC is stable across vCPUs.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// The guest was stopped (for watchdogs).
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

// ---- start_info ----

/// Length of `start_info.cmd_line`.
pub const MAX_GUEST_CMDLINE: usize = 1024;
/// The domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// The domain is the initial domain (dom0).
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `mod_start` points at a list of `xen_multiboot_mod_list`.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `mod_start` is a PFN, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// The P2M is virtually mapped for tools (`p2m_vaddr`).
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// Power-management flags field.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

// ---- dom0 VGA console ----

/// VGA text mode 3.
pub const XEN_VGATYPE_TEXT_MODE_3: u8 = 0x03;
/// VESA linear frame buffer.
pub const XEN_VGATYPE_VESA_LFB: u8 = 0x23;
/// EFI linear frame buffer.
pub const XEN_VGATYPE_EFI_LFB: u8 = 0x70;

bitflags! {
    /// `start_info.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SifFlags: u32 {
        /// See [`SIF_PRIVILEGED`].
        const PRIVILEGED = SIF_PRIVILEGED;
        /// See [`SIF_INITDOMAIN`].
        const INITDOMAIN = SIF_INITDOMAIN;
        /// See [`SIF_MULTIBOOT_MOD`].
        const MULTIBOOT_MOD = SIF_MULTIBOOT_MOD;
        /// See [`SIF_MOD_START_PFN`].
        const MOD_START_PFN = SIF_MOD_START_PFN;
        /// See [`SIF_VIRT_P2M_4TOOLS`].
        const VIRT_P2M_4TOOLS = SIF_VIRT_P2M_4TOOLS;
        /// See [`SIF_PM_MASK`].
        const PM_MASK = SIF_PM_MASK;
    }
}

bitflags! {
    /// `vcpu_time_info.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PvclockFlags: u8 {
        /// See [`XEN_PVCLOCK_TSC_STABLE_BIT`].
        const TSC_STABLE = XEN_PVCLOCK_TSC_STABLE_BIT;
        /// See [`XEN_PVCLOCK_GUEST_STOPPED`].
        const GUEST_STOPPED = XEN_PVCLOCK_GUEST_STOPPED;
    }
}

bitflags! {
    /// `update_va_mapping` flags: a flush type in bits 0-1 and a scope in bit 2;
    /// with `UVMF_MULTI` the upper bits carry a pointer to a vCPU mask.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct UvmfFlags: u64 {
        /// See [`UVMF_TLB_FLUSH`].
        const TLB_FLUSH = UVMF_TLB_FLUSH;
        /// See [`UVMF_INVLPG`].
        const INVLPG = UVMF_INVLPG;
        /// See [`UVMF_ALL`].
        const ALL = UVMF_ALL;
        /// The mask pointer and other bits are kept as given.
        const _ = !0;
    }
}

xen_struct! {
    /// One page-table or M2P update (`struct mmu_update`).
    pub struct MmuUpdate: "struct mmu_update" {
        /// Machine address of the entry, with an `MMU_*` command in bits 0-1.
        pub ptr: u64,
        /// New value of the entry.
        pub val: u64,
    }

    /// One extended MMU operation (`struct mmuext_op`).
    pub struct MmuextOp: "struct mmuext_op" {
        /// `MMUEXT_*` command.
        pub cmd: u32,
        /// Padding before `arg1`.
        pub _pad: u32 as pad,
        /// First argument: an MFN or a linear address.
        pub arg1: u64,
        /// Second argument: an entry count, a vCPU-mask handle or a source MFN.
        pub arg2: u64,
    }

    /// One call of a multicall batch (`struct multicall_entry`).
    pub struct MulticallEntry: "struct multicall_entry" {
        /// Hypercall number.
        pub op: XenUlong,
        /// Return value, written by the hypervisor.
        pub result: XenUlong,
        /// The arguments.
        pub args: [XenUlong; 6],
    }

    /// Per-vCPU system time parameters (`struct vcpu_time_info`).
    ///
    /// `system_time + ((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul >> 32`
    /// is the current system time in ns; read while `version` is even and unchanged.
    pub struct VcpuTimeInfo: "struct vcpu_time_info" {
        /// Odd while an update is in progress.
        pub version: u32,
        /// Unused.
        pub pad0: u32,
        /// TSC at the last update.
        pub tsc_timestamp: u64,
        /// System time (ns since boot) at the last update.
        pub system_time: u64,
        /// TSC-to-ns multiplier, a 32.32 fixed-point fraction.
        pub tsc_to_system_mul: u32,
        /// Shift applied to the TSC delta before multiplying.
        pub tsc_shift: i8,
        /// `XEN_PVCLOCK_*` flags.
        pub flags: u8,
        /// Unused.
        pub pad1: [u8; 2],
    }

    /// Per-vCPU part of the shared-info page (`struct vcpu_info`), 64 bytes.
    pub struct VcpuInfo: "struct vcpu_info" {
        /// Set by the hypervisor when an event is pending for the upcall.
        pub evtchn_upcall_pending: u8,
        /// Non-zero while the guest masks event upcalls.
        pub evtchn_upcall_mask: u8,
        /// Padding before `evtchn_pending_sel`.
        pub _pad: [u8; 6] as pad,
        /// Selector: which words of `shared_info.evtchn_pending` may have bits set.
        pub evtchn_pending_sel: XenUlong,
        /// x86 part (`cr2` of the last page fault).
        pub arch: ArchVcpuInfo,
        /// System time of this vCPU.
        pub time: VcpuTimeInfo,
    }

    /// The shared-info page (`struct shared_info`).
    pub struct SharedInfo: "struct shared_info" {
        /// The first 32 vCPUs' `vcpu_info`.
        pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
        /// 2-level event channels: pending bits.
        pub evtchn_pending: [XenUlong; 64],
        /// 2-level event channels: mask bits.
        pub evtchn_mask: [XenUlong; 64],
        /// Wallclock version; odd while being updated.
        pub wc_version: u32,
        /// Wallclock seconds at system time 0 (low 32 bits).
        pub wc_sec: u32,
        /// Wallclock nanoseconds at system time 0.
        pub wc_nsec: u32,
        /// Wallclock seconds, high 32 bits.
        pub wc_sec_hi: u32,
        /// x86 part.
        pub arch: ArchSharedInfo,
    }

    /// The `console` union of `start_info`: `domU` or `dom0`, see [`StartInfoConsole`].
    pub struct StartInfoConsole: "__typeof__(((struct start_info *)0)->console)" {
        /// Union storage.
        pub raw: [u64; 2] as raw,
    }

    /// `start_info.console.domU`: where an unprivileged domain's console ring is.
    pub struct ConsoleDomU: "__typeof__(((struct start_info *)0)->console.domU)" {
        /// MFN of the console ring page.
        pub mfn: XenPfn,
        /// Event channel of the console.
        pub evtchn: u32,
        /// Padding after `evtchn`.
        pub _pad: u32 as pad,
    }

    /// `start_info.console.dom0`: where dom0's `dom0_vga_console_info` is.
    pub struct ConsoleDom0: "__typeof__(((struct start_info *)0)->console.dom0)" {
        /// Offset of the console info from the start of `start_info`.
        pub info_off: u32,
        /// Size of the console info.
        pub info_size: u32,
    }

    /// Start-of-day information for a PV guest (`struct start_info`).
    pub struct StartInfo: "struct start_info" {
        /// `"xen-<version>-x86_64"`, NUL-padded.
        pub magic: [u8; 32],
        /// Number of pages of the domain.
        pub nr_pages: u64,
        /// Machine address of the shared-info page.
        pub shared_info: u64,
        /// `SIF_*` flags.
        pub flags: u32,
        /// Padding before `store_mfn`.
        pub _pad0: u32 as pad,
        /// MFN of the xenstore ring page.
        pub store_mfn: XenPfn,
        /// Event channel of xenstore.
        pub store_evtchn: u32,
        /// Padding before `console`.
        pub _pad1: u32 as pad,
        /// Console: `domU` for unprivileged domains, `dom0` for the initial domain.
        pub console: StartInfoConsole,
        /// Virtual address of the bootstrap page tables (L4).
        pub pt_base: u64,
        /// Number of bootstrap page-table frames.
        pub nr_pt_frames: u64,
        /// Virtual address of the P2M (the list of MFNs, indexed by PFN).
        pub mfn_list: u64,
        /// Virtual address (or PFN with `SIF_MOD_START_PFN`) of the initial module.
        pub mod_start: u64,
        /// Size of the initial module in bytes.
        pub mod_len: u64,
        /// Command line, NUL-terminated.
        pub cmd_line: [u8; MAX_GUEST_CMDLINE],
        /// First PFN of the P2M when it is not mapped (`XEN_ELFNOTE_INIT_P2M`).
        pub first_p2m_pfn: u64,
        /// Number of P2M frames in that case.
        pub nr_p2m_frames: u64,
    }

    /// One module of a multiboot list (`struct xen_multiboot_mod_list`).
    pub struct XenMultibootModList: "struct xen_multiboot_mod_list" {
        /// Start, as a physical address relative to the first module.
        pub mod_start: u32,
        /// End (exclusive).
        pub mod_end: u32,
        /// Offset of the module's command line.
        pub cmdline: u32,
        /// Unused.
        pub pad: u32,
    }

    /// dom0's boot console description (`dom0_vga_console_info_t`).
    pub struct Dom0VgaConsoleInfo: "dom0_vga_console_info_t" {
        /// `XEN_VGATYPE_*`.
        pub video_type: u8,
        /// Padding before `u`.
        pub _pad: [u8; 3] as pad,
        /// [`VgaTextMode3`] or [`VgaVesaLfb`], by `video_type`.
        pub u: Dom0VgaConsoleMode,
    }

    /// The mode union of [`Dom0VgaConsoleInfo`].
    pub struct Dom0VgaConsoleMode: "__typeof__(((dom0_vga_console_info_t *)0)->u)" {
        /// Union storage.
        pub raw: [u32; 9] as raw,
    }

    /// Text-mode console (`u.text_mode_3`).
    pub struct VgaTextMode3: "__typeof__(((dom0_vga_console_info_t *)0)->u.text_mode_3)" {
        /// Font height in pixels.
        pub font_height: u16,
        /// Cursor column.
        pub cursor_x: u16,
        /// Cursor row.
        pub cursor_y: u16,
        /// Rows.
        pub rows: u16,
        /// Columns.
        pub columns: u16,
    }

    /// Linear frame buffer (`u.vesa_lfb`).
    pub struct VgaVesaLfb: "__typeof__(((dom0_vga_console_info_t *)0)->u.vesa_lfb)" {
        /// Width in pixels.
        pub width: u16,
        /// Height in pixels.
        pub height: u16,
        /// Bytes per scan line.
        pub bytes_per_line: u16,
        /// Bits per pixel.
        pub bits_per_pixel: u16,
        /// Frame buffer physical address, low 32 bits.
        pub lfb_base: u32,
        /// Frame buffer size in 64 KiB units.
        pub lfb_size: u32,
        /// Red field position.
        pub red_pos: u8,
        /// Red field size.
        pub red_size: u8,
        /// Green field position.
        pub green_pos: u8,
        /// Green field size.
        pub green_size: u8,
        /// Blue field position.
        pub blue_pos: u8,
        /// Blue field size.
        pub blue_size: u8,
        /// Reserved field position.
        pub rsvd_pos: u8,
        /// Reserved field size.
        pub rsvd_size: u8,
        /// VBE capabilities.
        pub gbl_caps: u32,
        /// VBE mode attributes.
        pub mode_attrs: u16,
        /// Unused.
        pub pad: u16,
        /// Frame buffer physical address, high 32 bits.
        pub ext_lfb_base: u32,
    }

    /// A 16-byte UUID (`xen_uuid_t`).
    pub struct XenUuid: "xen_uuid_t" {
        /// The bytes, in the order printed.
        pub a: [u8; 16],
    }

    /// A bitmap in guest memory, for tools (`struct xenctl_bitmap`).
    pub struct XenctlBitmap: "struct xenctl_bitmap" {
        /// The bitmap bytes.
        pub bitmap: GuestHandle<u8>,
        /// Number of valid bits.
        pub nr_bits: u32,
        /// Padding after `nr_bits`.
        pub _pad: u32 as pad,
    }
}

impl UnionBytes for StartInfoConsole {}
impl UnionBytes for Dom0VgaConsoleMode {}

impl MmuUpdate {
    /// An update of the entry at machine address `ptr` (8-byte aligned) by command `cmd`.
    pub const fn new(ptr: u64, cmd: u64, val: u64) -> Self {
        Self { ptr: ptr | cmd, val }
    }

    /// The `MMU_*` command in the low bits of `ptr`.
    pub const fn cmd(&self) -> u64 {
        self.ptr & 3
    }

    /// The machine address without the command bits.
    pub const fn addr(&self) -> u64 {
        self.ptr & !7
    }
}

impl MmuextOp {
    /// An operation with both arguments.
    pub const fn new(cmd: u32, arg1: u64, arg2: u64) -> Self {
        Self { cmd, _pad: 0, arg1, arg2 }
    }
}

impl MulticallEntry {
    /// A call of hypercall `op` with `args` (unused ones zero).
    pub const fn new(op: u32, args: [XenUlong; 6]) -> Self {
        Self { op: op as XenUlong, result: 0, args }
    }
}

impl StartInfo {
    /// The `SIF_*` flags.
    pub const fn sif_flags(&self) -> SifFlags {
        SifFlags::from_bits_retain(self.flags)
    }

    /// The magic string up to its first NUL.
    pub fn magic_str(&self) -> &[u8] {
        until_nul(&self.magic)
    }

    /// The command line up to its first NUL.
    pub fn cmdline(&self) -> &[u8] {
        until_nul(&self.cmd_line)
    }

    /// The console of an unprivileged domain.
    pub fn console_domu(&self) -> ConsoleDomU {
        self.console.get()
    }

    /// The console description of dom0.
    pub fn console_dom0(&self) -> ConsoleDom0 {
        self.console.get()
    }
}

impl VcpuTimeInfo {
    /// The `XEN_PVCLOCK_*` flags.
    pub const fn pvclock_flags(&self) -> PvclockFlags {
        PvclockFlags::from_bits_retain(self.flags)
    }

    /// System time in ns at TSC value `tsc`, from this snapshot.
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let mut delta = tsc.wrapping_sub(self.tsc_timestamp);
        if self.tsc_shift >= 0 {
            delta <<= self.tsc_shift as u32;
        } else {
            delta >>= (-(self.tsc_shift as i32)) as u32;
        }
        let scaled = ((delta as u128 * self.tsc_to_system_mul as u128) >> 32) as u64;
        self.system_time.wrapping_add(scaled)
    }
}

/// The bytes of `s` before the first NUL.
fn until_nul(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(n) => &s[..n],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn sizes() {
        assert_eq!(size_of::<VcpuInfo>(), 64);
        assert_eq!(size_of::<StartInfo>(), 1168);
        assert_eq!(size_of::<SharedInfo>(), 3136);
        assert_eq!(size_of::<GuestHandle<u8>>(), 8);
    }

    #[test]
    fn start_info_console_union() {
        let mut si = StartInfo::new_zeroed();
        si.console.set(&ConsoleDom0 { info_off: 0x800, info_size: 40 });
        assert_eq!(si.console_dom0().info_off, 0x800);
        si.console = StartInfoConsole::from_member(&ConsoleDomU { mfn: 7, evtchn: 3, _pad: 0 });
        assert_eq!(si.console_domu().evtchn, 3);
    }

    #[test]
    fn pvclock_scaling() {
        let t = VcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5,
            tsc_to_system_mul: 1 << 31, // 0.5 ns per (shifted) tick
            tsc_shift: 1,
            ..Default::default()
        };
        assert_eq!(t.system_time_at(1000 + 10), 5 + 10);
    }
}
