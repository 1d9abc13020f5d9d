// SPDX-License-Identifier: MIT OR Apache-2.0
//! ELF note types of a PV kernel image. Mirrors `xen/include/public/elfnote.h`.
//!
//! The notes are in a `PT_NOTE` segment with owner name `"Xen"`; the domain builder
//! reads them to find the entry point, the virtual base, the hypercall page and the
//! features the kernel needs.

/// Owner name of Xen's ELF notes (the note's name field, NUL-terminated in the file).
// C: none (the note owner string is documented in elfnote.h's prose only)
pub const XEN_ELFNOTE_OWNER: &str = "Xen";

/// Free-form information (ignored).
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// Virtual address of the entry point (`usize`).
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// Virtual address of the page the builder fills with hypercall stubs.
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// Virtual base address the image is linked at.
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// Offset between virtual and physical addresses in the ELF headers.
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// Xen version the kernel was built for (string, `"xen-3.0"`).
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// Guest OS name (string).
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// Guest OS version (string).
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// Loader type (string, `"generic"`).
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// PAE mode (x86_32 only; string).
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// Features the kernel uses, `|`-separated names, `!` marks required ones (string).
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// BSD symbol table loading (string, `"yes"`).
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// Lowest hypervisor virtual address the kernel tolerates (x86_32).
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// Mask and value of PTE bits that mark a valid L1 MFN.
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// The kernel supports suspend cancellation.
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// Virtual address where the builder maps the initial P2M (instead of the default).
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// The kernel wants `mod_start` as a PFN (`SIF_MOD_START_PFN`).
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// Bitmap of supported `XENFEAT_*` (32-bit words).
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// 32-bit physical entry point for PVH.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Highest note type in the builder's range.
pub const XEN_ELFNOTE_MAX: u32 = XEN_ELFNOTE_PHYS32_ENTRY;
/// Crash dump: CPU info (in crash notes, not kernel images).
pub const XEN_ELFNOTE_CRASH_INFO: u32 = 0x100_0001;
/// Crash dump: registers.
pub const XEN_ELFNOTE_CRASH_REGS: u32 = 0x100_0002;
/// Core dump: empty note.
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x200_0000;
/// Core dump: header.
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x200_0001;
/// Core dump: Xen version.
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x200_0002;
/// Core dump: format version.
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x200_0003;
