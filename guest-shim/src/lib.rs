// SPDX-License-Identifier: MIT OR Apache-2.0
//! A `no_std` runtime for 64-bit PV guests written in Rust, for Xen's PV ABI (Xen 4.17
//! and this project's hypervisor).
//!
//! What it gives a guest:
//! - the Xen ELF notes the domain builder needs ([`notes`], [`xen_elfnote!`]) and a
//!   linker script that links the image at [`notes::VIRT_BASE`] with the right
//!   `p_paddr`s (`link.ld`, applied by `guest-build.rs`);
//! - the entry point: it saves the registers Xen started the guest with
//!   ([`boot_regs`]), zeroes `.bss`, switches to a 64 KiB stack with an unmapped guard
//!   page and calls the guest's `fn(&'static StartInfo)` named with [`entry!`];
//!   when that returns, the domain powers off;
//! - hypercalls through the hypercall page ([`hypercalls`], a
//!   [`pv_abi::guest::Hypercalls`]);
//! - a line-buffered console ([`print!`], [`println!`], [`console`]): `console_io` in
//!   dom0, the PV console ring ([`console::Ring`]) in any other domain, chosen at start;
//!   console input with [`console::read`];
//! - test reporting in the `RESULT`/`SUMMARY` format ([`Tests`]);
//! - a panic handler that prints the panic and crashes the domain (`SHUTDOWN_crash`);
//! - [`poweroff`], [`crash`], [`shutdown`]; the shared-info page ([`shared_info`]);
//!   read-only page-table walks and the bootstrap region ([`pt`]); unprivileged CPU
//!   reads ([`cpu`]); a bump allocator (module `heap`, feature `alloc`);
//! - exceptions ([`traps`]): a trap table whose handlers get a typed frame, per-vector
//!   handlers, [`traps::catch`] to run code and get the exception it raised, the event
//!   and failsafe callbacks. Until a guest calls [`traps::install`], an exception kills
//!   the domain.
//!
//! Event channels and time: [`events`]. Page tables the PV way (a pool of free pages,
//! `mmu_update`/`mmuext_op`, building, pinning and switching trees): [`mmu`]. Guest user
//! mode (a user tree, entering it and coming back): [`user`].
//!
//! # A minimal guest
//!
//! A guest is a binary crate built for `x86_64-unknown-none` (see
//! `guest-shim/guests/hello`). Its `Cargo.toml` depends on `guest-shim` and says
//! `build = "../../guest-build.rs"`; its `main.rs`:
//!
//! ```ignore
//! #![cfg_attr(target_os = "none", no_std, no_main)]
//!
//! use guest_shim::{StartInfo, println};
//!
//! guest_shim::entry!(start);
//!
//! fn start(si: &'static StartInfo) {
//!     println!("hello from a PV guest with {} pages", si.nr_pages);
//! } // returning powers the domain off
//!
//! // On the host (`cargo test --workspace`) the guest is an empty program.
//! #[cfg(not(target_os = "none"))]
//! fn main() {}
//! ```
//!
//! On the host the crate builds too, so its logic has unit tests and guests type-check;
//! the functions that need a hypervisor panic there.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod console;
pub mod cpu;
pub mod events;
pub mod gnttab;
#[cfg(any(feature = "alloc", test))]
pub mod heap;
pub mod mmu;
pub mod notes;
pub mod pt;
pub mod report;
#[cfg(target_os = "none")]
mod rt;
pub mod shared_info;
pub mod traps;
pub mod user;

pub use pv_abi;
pub use pv_abi::guest::Hypercalls;
pub use pv_abi::xen::StartInfo;
pub use report::{Counts, Outcome, Tests};

#[cfg(target_os = "none")]
pub use rt::{
    STACK_SIZE, boot_regs, crash, hypercalls, image_range, poweroff, shutdown, stack_guard, start_info,
};

/// The registers as the builder left them at the entry point, saved by `_start`
/// before anything else runs. Segment selectors are zero-extended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootRegs {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI: the virtual address of `start_info`.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RBP.
    pub rbp: u64,
    /// RSP: the top of the bootstrap stack.
    pub rsp: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CS.
    pub cs: u64,
    /// SS.
    pub ss: u64,
    /// DS.
    pub ds: u64,
    /// ES.
    pub es: u64,
    /// FS.
    pub fs: u64,
    /// GS.
    pub gs: u64,
}

impl BootRegs {
    /// The general-purpose registers other than RSI and RSP, with their names.
    pub fn other_gprs(&self) -> [(&'static str, u64); 14] {
        [
            ("rax", self.rax),
            ("rbx", self.rbx),
            ("rcx", self.rcx),
            ("rdx", self.rdx),
            ("rdi", self.rdi),
            ("rbp", self.rbp),
            ("r8", self.r8),
            ("r9", self.r9),
            ("r10", self.r10),
            ("r11", self.r11),
            ("r12", self.r12),
            ("r13", self.r13),
            ("r14", self.r14),
            ("r15", self.r15),
        ]
    }
}

/// Names the guest's main function, `fn(&'static StartInfo)`, and emits the
/// `GUEST_OS` and `GUEST_VERSION` notes (by default the crate's name and version).
///
/// ```ignore
/// guest_shim::entry!(start);
/// guest_shim::entry!(start, name = "my-os", version = "0.1");
/// ```
///
/// The runtime calls the function on its own stack once the guest is set up, and
/// powers the domain off when it returns. On the host the macro only type-checks it.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        $crate::entry!(
            $main,
            name = ::core::env!("CARGO_PKG_NAME"),
            version = ::core::env!("CARGO_PKG_VERSION")
        );
    };
    ($main:path, name = $name:expr, version = $version:expr) => {
        const _: fn(&'static $crate::StartInfo) = $main;

        #[cfg(target_os = "none")]
        #[doc(hidden)]
        extern "C" fn __guest_shim_main_trampoline(si: &'static $crate::StartInfo) {
            $main(si)
        }

        #[cfg(target_os = "none")]
        ::core::arch::global_asm!(
            ".pushsection .text.__guest_shim_main, \"ax\"",
            ".global __guest_shim_main",
            "__guest_shim_main:",
            "jmp {main}",
            ".popsection",
            main = sym __guest_shim_main_trampoline,
        );

        $crate::xen_elfnote!(
            $crate::pv_abi::elfnote::XEN_ELFNOTE_GUEST_OS,
            str $name
        );
        $crate::xen_elfnote!(
            $crate::pv_abi::elfnote::XEN_ELFNOTE_GUEST_VERSION,
            str $version
        );
    };
}

/// Host stand-ins: guests compile on the host (for `cargo test --workspace`) but never
/// run there.
#[cfg(not(target_os = "none"))]
mod host {
    use super::*;

    /// Panics: `what` needs a hypervisor.
    pub fn unavailable(what: &str) -> ! {
        panic!("guest_shim::{what} runs only in a PV guest (target x86_64-unknown-none)")
    }

    /// The hypercall page (only in a guest).
    pub fn hypercalls() -> Hypercalls {
        unavailable("hypercalls")
    }

    /// The registers at entry (only in a guest).
    pub fn boot_regs() -> &'static BootRegs {
        unavailable("boot_regs")
    }

    /// `start_info` (only in a guest).
    pub fn start_info() -> &'static StartInfo {
        unavailable("start_info")
    }

    /// The image's address range (only in a guest).
    pub fn image_range() -> core::ops::Range<u64> {
        unavailable("image_range")
    }

    /// The stack guard page (only in a guest).
    pub fn stack_guard() -> u64 {
        unavailable("stack_guard")
    }

    /// Shuts the domain down (only in a guest).
    pub fn shutdown(_reason: u32) -> ! {
        unavailable("shutdown")
    }

    /// Powers the domain off (only in a guest).
    pub fn poweroff() -> ! {
        unavailable("poweroff")
    }

    /// Crashes the domain (only in a guest).
    pub fn crash() -> ! {
        unavailable("crash")
    }

    /// Size of the runtime's stack.
    pub const STACK_SIZE: usize = 64 * 1024;
}

#[cfg(not(target_os = "none"))]
pub use host::{
    STACK_SIZE, boot_regs, crash, hypercalls, image_range, poweroff, shutdown, stack_guard, start_info,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_regs_layout_matches_entry_asm() {
        // `_start` stores RFLAGS at slot 16 and the selectors at 17..=22.
        assert_eq!(size_of::<BootRegs>(), 23 * 8);
        assert_eq!(core::mem::offset_of!(BootRegs, rsi), 4 * 8);
        assert_eq!(core::mem::offset_of!(BootRegs, rsp), 7 * 8);
        assert_eq!(core::mem::offset_of!(BootRegs, rflags), 16 * 8);
        assert_eq!(core::mem::offset_of!(BootRegs, cs), 17 * 8);
        assert_eq!(core::mem::offset_of!(BootRegs, gs), 22 * 8);
    }

    #[test]
    fn notes_constants() {
        assert_eq!(notes::VIRT_BASE % (1 << 21), 0);
        assert_eq!(notes::SUPPORTED_FEATURES, 1 << 11);
        assert!(!notes::FEATURES.contains('!'));
    }
}
