// SPDX-License-Identifier: MIT OR Apache-2.0
//! Xen ELF notes: what the domain builder reads to load a PV kernel.
//!
//! Notes live in the `.note.Xen` section, which the linker script puts in the
//! read-only `PT_LOAD` segment and in a `PT_NOTE` segment. Each note is the usual ELF
//! note record with owner `"Xen"` and a type from `xen/include/public/elfnote.h`
//! ([`pv_abi::elfnote`]).
//!
//! The runtime emits the notes every guest needs ([`xen_elfnote!`](crate::xen_elfnote) calls in this
//! crate's entry code):
//!
//! | note | value |
//! |---|---|
//! | `XEN_VERSION` | `"xen-3.0"` (libelf rejects anything else) |
//! | `LOADER` | `"generic"` |
//! | `VIRT_BASE` | [`VIRT_BASE`] |
//! | `PADDR_OFFSET` | [`PADDR_OFFSET`] (0: segments are loaded at `p_paddr + VIRT_BASE`) |
//! | `ENTRY` | `_start` |
//! | `HYPERCALL_PAGE` | the page-aligned hypercall page inside the image |
//! | `FEATURES` | [`FEATURES`]: nothing required |
//! | `SUPPORTED_FEATURES` | [`SUPPORTED_FEATURES`]: `XENFEAT_dom0`, so Xen agrees to boot the guest as dom0 |
//!
//! [`entry!`](crate::entry) adds `GUEST_OS` and `GUEST_VERSION` (by default the
//! guest crate's name and version). A guest may add others with [`xen_elfnote!`](crate::xen_elfnote).
//!
//! # The initial P2M list apart: `XEN_ELFNOTE_INIT_P2M`
//!
//! `xen_elfnote!(XEN_ELFNOTE_INIT_P2M, u64 address)` (Linux gives
//! [`LINUX_INIT_P2M`]) asks the builder to map the P2M list at `address` instead of
//! in the bootstrap region (`xen/arch/x86/pv/dom0_build.c`, `setup_pv_physmap`):
//! - `start_info.mfn_list` is `address`, mapped writable (4 KiB pages for a list below
//!   2 MiB; Xen uses 2 MiB and 1 GiB pages for bigger, aligned lists);
//! - the pfns `first_p2m_pfn .. first_p2m_pfn + nr_p2m_frames` of `start_info`, the
//!   first ones after the bootstrap region, hold the list and the page tables that map
//!   it. Those tables are not in `nr_pt_frames` and are not mapped anywhere;
//! - the bootstrap region has no list: `start_info` follows the kernel (and initrd).
//!
//! The address must be outside the kernel and must not touch the bootstrap region
//! (Xen refuses either). The frames of the list are in use: [`mmu`](crate::mmu)'s page
//! pool, which takes every pfn after the boot stack, must not be used with this note.

/// Expands to the `FEATURES` string literal (a macro, so that assembly can use it).
macro_rules! features_literal {
    () => {
        ""
    };
}
#[cfg_attr(not(target_os = "none"), allow(unused_imports))]
pub(crate) use features_literal;

/// The virtual address the image is linked at (`XEN_ELFNOTE_VIRT_BASE`): Linux's
/// `__START_KERNEL_map`, the top 2 GiB. Must match `VIRT_BASE` in `link.ld`.
pub const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

/// `XEN_ELFNOTE_PADDR_OFFSET`: the ELF `p_paddr`s are `p_vaddr - VIRT_BASE`, so the
/// builder's `p_paddr + VIRT_BASE - PADDR_OFFSET` is the link address.
pub const PADDR_OFFSET: u64 = 0;

/// `XEN_ELFNOTE_FEATURES`: `|`-separated `XENFEAT_*` names, `!` marking required
/// ones. A guest-shim guest needs none: it never writes its page tables directly
/// (no `writable_page_tables`), keeps the hypervisor's descriptor tables and runs its
/// kernel in ring 3 (no `supervisor_mode_kernel`).
pub const FEATURES: &str = features_literal!();

/// `XEN_ELFNOTE_SUPPORTED_FEATURES`: a bitmap of `XENFEAT_*` the kernel supports.
/// Xen's dom0 builder refuses a kernel that does not claim `XENFEAT_dom0`.
pub const SUPPORTED_FEATURES: u32 = 1 << pv_abi::features::XENFEAT_DOM0;

/// `XEN_ELFNOTE_INIT_P2M` as Linux gives it (`__START_KERNEL_map`'s kernels):
/// 512 GiB, the start of L4 slot 1, far from the kernel and the hypervisor's hole.
pub const LINUX_INIT_P2M: u64 = 0x80_0000_0000;

/// Size of the note header (`namesz`, `descsz`, `type`) plus the padded owner name.
pub const NOTE_HEADER_SIZE: usize = 12 + 4;

/// Emits one Xen ELF note into `.note.Xen`.
///
/// The type is an expression (`pv_abi::elfnote::XEN_ELFNOTE_*`); the value is one of
/// - `str "literal"`: a NUL-terminated string (a literal or `env!`/`concat!` call),
/// - `u32 expr` / `u64 expr`: a constant number of that width,
/// - `sym path`: the 64-bit address of a Rust function or static.
///
/// On other targets than `x86_64-unknown-none` it expands to nothing.
///
/// ```ignore
/// // Ask the builder to map the initial P2M list at 512 GiB (L4 slot 1), as Linux does.
/// guest_shim::xen_elfnote!(
///     guest_shim::pv_abi::elfnote::XEN_ELFNOTE_INIT_P2M,
///     u64 guest_shim::notes::LINUX_INIT_P2M
/// );
/// ```
#[macro_export]
macro_rules! xen_elfnote {
    ($type:expr, str $value:expr) => {
        $crate::__xen_elfnote_asm!($type, concat!(".asciz \"", $value, "\""),);
    };
    ($type:expr, u32 $value:expr) => {
        $crate::__xen_elfnote_asm!($type, ".long {value}", value = const $value,);
    };
    ($type:expr, u64 $value:expr) => {
        $crate::__xen_elfnote_asm!($type, ".quad {value}", value = const $value,);
    };
    ($type:expr, sym $value:path) => {
        $crate::__xen_elfnote_asm!($type, ".quad {value}", value = sym $value,);
    };
}

/// The note record around a descriptor; an implementation detail of [`xen_elfnote!`](crate::xen_elfnote).
#[doc(hidden)]
#[macro_export]
macro_rules! __xen_elfnote_asm {
    ($type:expr, $desc:expr, $($operands:tt)*) => {
        #[cfg(target_os = "none")]
        ::core::arch::global_asm!(
            ".pushsection .note.Xen, \"a\", @note",
            ".balign 4",
            ".long 4",          // namesz: "Xen\0"
            ".long 3f - 2f",    // descsz
            ".long {type}",
            ".asciz \"Xen\"",
            "2:",
            $desc,
            "3:",
            ".balign 4",
            ".popsection",
            type = const $type,
            $($operands)*
        );
    };
}
