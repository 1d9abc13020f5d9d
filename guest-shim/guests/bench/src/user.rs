// SPDX-License-Identifier: MIT OR Apache-2.0
//! Guest user mode for the `syscall-bounce` benchmark, on guest-shim's [`user`] module
//! (see it for the model).
//!
//! [`setup`] builds the user tree (the code below at [`user::CODE_VA`], a stack after
//! it) and registers the SYSCALL callback and the kernel stack. [`bounce`] enters user
//! mode; the user code makes `n` SYSCALLs with RAX = 1, each of which the SYSCALL
//! callback returns at once with `HYPERVISOR_iret` + `VGCF_in_syscall` (four
//! instructions of guest kernel), then one with RAX = 0, on which the callback goes
//! back to [`bounce`]'s caller through [`user::leave`]. User mode runs with events
//! masked, so nothing else enters the kernel meanwhile.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::VGCF_IN_SYSCALL;
use guest_shim::user::{self, RFLAGS_RESERVED, UserSpace};

/// The user's RDI when it left: the SYSCALLs it did not make (0 after a full batch).
static LEFT_RDI: AtomicU64 = AtomicU64::new(u64::MAX);

unsafe extern "C" {
    fn bench_um_syscall_entry();
    static bench_um_user_start: u8;
    static bench_um_user_end: u8;
}

/// Builds and registers the user address space, the SYSCALL callback and the kernel
/// stack; the address space stays in use (the caller keeps it). On error, says which
/// step failed.
pub fn setup() -> Result<UserSpace, (&'static str, Errno)> {
    // SAFETY: the labels delimit the assembled user code below.
    let code = unsafe { user::code_between(&raw const bench_um_user_start, &raw const bench_um_user_end) };
    let mut space = UserSpace::new(code)?;
    space.activate()?;
    // SAFETY: the entry takes Xen's SYSCALL frame and returns with iret or `leave`.
    unsafe { user::register_syscall(bench_um_syscall_entry as *const () as u64, true) }
        .map_err(|e| ("callback_register", e))?;
    user::init().map_err(|e| ("stack_switch", e))?;
    Ok(space)
}

/// Enters user mode for `n` SYSCALL round trips; returns the SYSCALLs the user code
/// did not make (0 if all went through).
pub fn bounce(n: u64) -> u64 {
    // Events masked in user mode: RFLAGS.IF clear in the frame.
    let frame = user::user_frame(user::CODE_VA, user::STACK_TOP, RFLAGS_RESERVED);
    LEFT_RDI.store(u64::MAX, Ordering::SeqCst);
    // SAFETY: `setup` ran `user::init` and set the user base; the SYSCALL callback's
    // way out is `user::leave`. The user code touches nothing but its own registers.
    unsafe { user::enter(&frame, n, 0) };
    LEFT_RDI.load(Ordering::SeqCst)
}

core::arch::global_asm!(
    ".pushsection .text.bench_user_mode, \"ax\"",
    // SYSCALL callback, frame {RCX, R11, RIP, CS, RFLAGS, RSP, SS}. RAX != 0: back to
    // user mode at once (VGCF_in_syscall: RAX, RIP, RFLAGS, RSP come from the frame and
    // the registers; RCX, R11 are SYSRET's). RAX = 0: leave user mode.
    ".balign 16",
    ".global bench_um_syscall_entry",
    "bench_um_syscall_entry:",
    "test eax, eax",
    "jz 2f",
    "add rsp, 16",
    "push {in_syscall}",
    "jmp {iret}",
    "2:",
    "mov [rip + {left}], rdi",
    "jmp {leave}",
    // The user code (position-independent, copied to user::CODE_VA): RDI SYSCALLs with
    // RAX = 1, then one with RAX = 0.
    ".balign 16",
    ".global bench_um_user_start",
    "bench_um_user_start:",
    "test rdi, rdi",
    "jz 2f",
    "1:",
    "mov eax, 1",
    "syscall",
    "dec rdi",
    "jnz 1b",
    "2:",
    "xor eax, eax",
    "syscall",
    "ud2",
    ".global bench_um_user_end",
    "bench_um_user_end:",
    ".popsection",
    in_syscall = const VGCF_IN_SYSCALL,
    iret = sym user::iret,
    leave = sym user::leave,
    left = sym LEFT_RDI,
);
