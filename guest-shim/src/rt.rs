// SPDX-License-Identifier: MIT OR Apache-2.0
//! Start of day and the end of the guest: the entry point, the boot stack, the
//! hypercall page, the runtime's ELF notes and shutdown.
//!
//! Xen enters `_start` in ring 3 with RSI = the virtual address of `start_info`, RSP at
//! the top of the one-page bootstrap stack after the page tables, events masked and
//! every other register as the builder left it. `_start`
//! 1. saves every register into [`BootRegs`] (in `.data`, so step 2 keeps it),
//! 2. zeroes `.bss` (the builder already did; this makes it independent of the loader),
//! 3. switches to the 64 KiB stack in `.bss`, clears RBP (the end of frame-pointer
//!    walks) and calls the Rust start, which
//! 4. picks the console backend (`console_io` for dom0, the console ring for other
//!    domains: [`console::init`](crate::console::init)),
//! 5. unmaps the guard page below that stack, so an overflow faults instead of
//!    silently overwriting `.data`,
//! 6. calls the guest's main (declared with [`entry!`](crate::entry)) and powers off
//!    when it returns.

use pv_abi::elfnote::*;
use pv_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};
use pv_abi::xen::{StartInfo, UvmfFlags};

use crate::notes::{PADDR_OFFSET, SUPPORTED_FEATURES, VIRT_BASE, features_literal};
use crate::{BootRegs, Hypercalls};

/// Size of the runtime's stack.
pub const STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    // ---- The entry point ----
    ".pushsection .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "mov [rip + __guest_shim_boot_regs + 0*8], rax",
    "mov [rip + __guest_shim_boot_regs + 1*8], rbx",
    "mov [rip + __guest_shim_boot_regs + 2*8], rcx",
    "mov [rip + __guest_shim_boot_regs + 3*8], rdx",
    "mov [rip + __guest_shim_boot_regs + 4*8], rsi",
    "mov [rip + __guest_shim_boot_regs + 5*8], rdi",
    "mov [rip + __guest_shim_boot_regs + 6*8], rbp",
    "mov [rip + __guest_shim_boot_regs + 7*8], rsp",
    "mov [rip + __guest_shim_boot_regs + 8*8], r8",
    "mov [rip + __guest_shim_boot_regs + 9*8], r9",
    "mov [rip + __guest_shim_boot_regs + 10*8], r10",
    "mov [rip + __guest_shim_boot_regs + 11*8], r11",
    "mov [rip + __guest_shim_boot_regs + 12*8], r12",
    "mov [rip + __guest_shim_boot_regs + 13*8], r13",
    "mov [rip + __guest_shim_boot_regs + 14*8], r14",
    "mov [rip + __guest_shim_boot_regs + 15*8], r15",
    "pushfq",
    "pop rax",
    "mov [rip + __guest_shim_boot_regs + 16*8], rax",
    "mov word ptr [rip + __guest_shim_boot_regs + 17*8], cs",
    "mov word ptr [rip + __guest_shim_boot_regs + 18*8], ss",
    "mov word ptr [rip + __guest_shim_boot_regs + 19*8], ds",
    "mov word ptr [rip + __guest_shim_boot_regs + 20*8], es",
    "mov word ptr [rip + __guest_shim_boot_regs + 21*8], fs",
    "mov word ptr [rip + __guest_shim_boot_regs + 22*8], gs",
    // Zero .bss (RSI, the start_info pointer, is not touched).
    "cld",
    "lea rdi, [rip + __bss_start]",
    "lea rcx, [rip + __bss_end]",
    "sub rcx, rdi",
    "xor eax, eax",
    "rep stosb",
    // Our own stack; RBP = 0 ends backtraces.
    "lea rsp, [rip + __guest_shim_stack_top]",
    "xor ebp, ebp",
    "mov rdi, rsi",
    "call {rust_start}",
    "ud2",
    ".popsection",
    // ---- Registers at entry, in `BootRegs` order ----
    ".pushsection .data.guest_shim_boot_regs, \"aw\"",
    ".balign 8",
    ".global __guest_shim_boot_regs",
    "__guest_shim_boot_regs:",
    ".zero {boot_regs_size}",
    ".popsection",
    // ---- The stack, with a guard page below it ----
    ".pushsection .bss.guest_shim_stack, \"aw\", @nobits",
    ".balign 4096",
    ".global __guest_shim_stack_guard",
    "__guest_shim_stack_guard:",
    ".zero 4096",
    ".zero {stack_size}",
    ".global __guest_shim_stack_top",
    "__guest_shim_stack_top:",
    ".popsection",
    // ---- The hypercall page: zeros until the builder writes its stubs ----
    ".pushsection .hypercall_page, \"ax\", @progbits",
    ".balign 4096",
    ".global __guest_shim_hypercall_page",
    "__guest_shim_hypercall_page:",
    ".zero 4096",
    ".popsection",
    rust_start = sym rust_start,
    boot_regs_size = const size_of::<BootRegs>(),
    stack_size = const STACK_SIZE,
);

// The notes every guest carries (the guest's `entry!` adds GUEST_OS/GUEST_VERSION).
crate::xen_elfnote!(XEN_ELFNOTE_XEN_VERSION, str "xen-3.0");
crate::xen_elfnote!(XEN_ELFNOTE_LOADER, str "generic");
crate::xen_elfnote!(XEN_ELFNOTE_VIRT_BASE, u64 VIRT_BASE);
crate::xen_elfnote!(XEN_ELFNOTE_PADDR_OFFSET, u64 PADDR_OFFSET);
crate::xen_elfnote!(XEN_ELFNOTE_ENTRY, sym _start);
crate::xen_elfnote!(XEN_ELFNOTE_HYPERCALL_PAGE, sym __guest_shim_hypercall_page);
crate::xen_elfnote!(XEN_ELFNOTE_FEATURES, str features_literal!());
crate::xen_elfnote!(XEN_ELFNOTE_SUPPORTED_FEATURES, u32 SUPPORTED_FEATURES);

unsafe extern "C" {
    /// The entry point (assembly above).
    fn _start() -> !;
    /// The hypercall page (assembly above), filled by the builder.
    static __guest_shim_hypercall_page: [u8; 4096];
    /// The registers at entry (assembly above), written before any Rust code runs.
    static __guest_shim_boot_regs: BootRegs;
    /// The page below the stack, unmapped by [`rust_start`].
    static __guest_shim_stack_guard: [u8; 4096];
    /// The guest's main, defined by `entry!`.
    fn __guest_shim_main(start_info: &'static StartInfo);
    /// First byte of the image (linker script).
    static __image_start: u8;
    /// End of the image, `.bss` included (linker script).
    static __image_end: u8;
}

/// Called by `_start` on the runtime stack with the `start_info` pointer.
extern "C" fn rust_start(start_info: *const StartInfo) -> ! {
    let xen = hypercalls();
    // SAFETY: Xen passes the virtual address of start_info in RSI (xen.h "start of
    // day"); it is mapped read-write for the guest's lifetime and the hypervisor does
    // not change it after boot.
    let si = unsafe { &*start_info };
    // First, so that everything printed from here on reaches the right console.
    if let Err(e) = crate::console::init(si) {
        crate::println!("guest-shim: no console ring, using console_io: {e}");
    }
    let guard = (&raw const __guest_shim_stack_guard) as u64;
    // SAFETY: the guard page is reserved for this purpose in `.bss`; nothing refers to
    // it, so replacing its mapping with "not present" breaks no Rust object.
    if let Err(e) = unsafe { xen.update_va_mapping(guard, 0, UvmfFlags::INVLPG) } {
        crate::println!("guest-shim: cannot unmap the stack guard page: {e}");
    }
    // SAFETY: `entry!` defines `__guest_shim_main` as a trampoline to the guest's
    // `fn(&'static StartInfo)`; a guest without `entry!` does not link.
    unsafe { __guest_shim_main(si) };
    poweroff()
}

/// The hypercall page, filled with Xen's stubs by the domain builder.
pub fn hypercalls() -> Hypercalls {
    // SAFETY: XEN_ELFNOTE_HYPERCALL_PAGE names this page, so the builder filled it
    // with the hypercall stubs before entry; it is part of the image, mapped
    // executable for the guest's lifetime and never written by the guest.
    unsafe { Hypercalls::new((&raw const __guest_shim_hypercall_page).cast()) }
}

/// The registers at entry.
pub fn boot_regs() -> &'static BootRegs {
    // SAFETY: written once by `_start` before any Rust code runs, never after.
    unsafe { &__guest_shim_boot_regs }
}

/// `start_info`, as passed in RSI at entry.
pub fn start_info() -> &'static StartInfo {
    // SAFETY: as in `rust_start`: RSI holds start_info's address, mapped for good.
    unsafe { &*(boot_regs().rsi as *const StartInfo) }
}

/// The image's virtual address range `[start, end)`, `.bss` included.
pub fn image_range() -> core::ops::Range<u64> {
    (&raw const __image_start) as u64..(&raw const __image_end) as u64
}

/// The address of the runtime stack's guard page (unmapped).
pub fn stack_guard() -> u64 {
    (&raw const __guest_shim_stack_guard) as u64
}

/// How long [`shutdown`] waits for the console backend to take the ring's output.
const DRAIN_TIMEOUT_NS: u64 = 1_000_000_000;

/// Shuts the domain down with `reason` (`SHUTDOWN_*`). Pending console output is
/// flushed first (and, with a console ring, consumed by the backend, for at most a
/// second). Never returns: if the hypervisor refuses, the vCPU yields forever.
pub fn shutdown(reason: u32) -> ! {
    crate::console::flush();
    crate::console::drain(DRAIN_TIMEOUT_NS);
    let xen = hypercalls();
    let _ = xen.sched_shutdown(reason);
    loop {
        let _ = xen.sched_yield();
    }
}

/// Powers the domain off (`SHUTDOWN_poweroff`).
pub fn poweroff() -> ! {
    shutdown(SHUTDOWN_POWEROFF)
}

/// Crashes the domain (`SHUTDOWN_crash`).
pub fn crash() -> ! {
    shutdown(SHUTDOWN_CRASH)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::sync::atomic::{AtomicBool, Ordering};
    static PANICKING: AtomicBool = AtomicBool::new(false);
    if !PANICKING.swap(true, Ordering::Relaxed) {
        crate::console::emergency(format_args!("guest {info}\n"));
    }
    crash()
}
