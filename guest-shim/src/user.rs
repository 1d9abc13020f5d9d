// SPDX-License-Identifier: MIT OR Apache-2.0
//! Guest user mode: a user address space, entering user mode with `HYPERVISOR_iret`
//! and coming back to the code that entered it.
//!
//! # The model (Xen's x86_64 PV rules)
//!
//! A 64-bit PV kernel and its user code both run in ring 3; Xen tells them apart by
//! which page tables are loaded. The user L4 is registered with
//! `MMUEXT_NEW_USER_BASEPTR`, and Xen switches between it and the kernel's (and swaps
//! the GS bases) on every kernel/user transition. Every way from user mode into the
//! kernel (the SYSCALL callback, trap-table entries, the event callback) starts on the
//! kernel stack named with `HYPERVISOR_stack_switch`; user mode is entered with
//! `HYPERVISOR_iret` and a frame whose CS has RPL 3.
//!
//! # What is here
//!
//! - [`UserSpace`]: a user tree (an [`mmu::Tree`] without kernel half) with a code
//!   page at [`CODE_VA`] holding a copy of the given user code, read-only, and a stack
//!   page at [`STACK_VA`], read-write and NX; [`UserSpace::map`] adds more, and
//!   [`UserSpace::activate`] pins it and makes it the user base.
//! - [`init`]: registers this module's kernel stack ([`kernel_stack_top`]) with
//!   `stack_switch` and finds the hypercall page's `HYPERVISOR_iret` stub.
//! - [`enter`]: saves the kernel's callee-saved registers and RSP and enters user mode
//!   with a given [`IretContext`] (see [`user_frame`]) and RDI/RSI. It returns when
//!   kernel code reached from user mode (an exception handler, a SYSCALL callback)
//!   calls or jumps to [`leave`], as from an ordinary call.
//! - For entry stubs written in assembly: [`leave`] (`jmp {leave}` with
//!   `leave = sym guest_shim::user::leave`) and [`iret`], which goes on to
//!   `HYPERVISOR_iret` with the frame on the stack and RAX, RCX, R11 as the stub
//!   pushes them (`jmp {iret}`, `iret = sym guest_shim::user::iret`).
//! - [`register_syscall`]: the SYSCALL callback.
//!
//! Single vCPU, one stay in user mode at a time: the saved kernel context is one
//! static.
//!
//! # Example: one SYSCALL from user mode
//!
//! ```ignore
//! use guest_shim::user::{self, UserSpace};
//!
//! core::arch::global_asm!(
//!     ".global my_syscall_entry",
//!     "my_syscall_entry:",
//!     "jmp {leave}", // back to `enter`'s caller
//!     ".global my_user_start",
//!     "my_user_start:",
//!     "syscall",
//!     ".global my_user_end",
//!     "my_user_end:",
//!     leave = sym user::leave,
//! );
//! unsafe extern "C" {
//!     fn my_syscall_entry();
//!     static my_user_start: u8;
//!     static my_user_end: u8;
//! }
//!
//! // SAFETY: the bytes between the labels are the assembled user code.
//! let code = unsafe { user::code_between(&raw const my_user_start, &raw const my_user_end) };
//! let mut space = UserSpace::new(code).expect("user tree");
//! space.activate().expect("pin, user base");
//! user::init().expect("kernel stack");
//! // SAFETY: the callback only leaves user mode.
//! unsafe { user::register_syscall(my_syscall_entry as *const () as u64, true) }.expect("callback");
//! let frame = user::user_frame(user::CODE_VA, user::STACK_TOP, user::RFLAGS_RESERVED);
//! // SAFETY: the callback comes back through `leave`; the user code touches no memory.
//! unsafe { user::enter(&frame, 0, 0) };
//! space.destroy().expect("tear down");
//! ```

use core::sync::atomic::{AtomicU64, Ordering};

use pv_abi::Errno;
use pv_abi::arch_x86::{FLAT_KERNEL_SS, FLAT_USER_CS, FLAT_USER_SS, IretContext};
use pv_abi::callback::{CALLBACKTYPE_SYSCALL, CallbackFlags, CallbackRegister};
use pv_abi::hypercall::{HYPERCALL_STUB_SIZE, HYPERVISOR_IRET};

use crate::mmu::{self, PAGE_SIZE, Page, Tree, USER_RO, USER_RW};
use crate::pt::PTE_NX;

/// The user code page.
pub const CODE_VA: u64 = 0x40_0000;
/// The user stack page (after the code page).
pub const STACK_VA: u64 = CODE_VA + PAGE_SIZE;
/// The initial user RSP: the top of the stack page.
pub const STACK_TOP: u64 = STACK_VA + PAGE_SIZE;
/// RFLAGS.IF: events unmasked in user mode.
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS bit 1, always set.
pub const RFLAGS_RESERVED: u64 = 1 << 1;
/// Size of the kernel stack for entries from user mode.
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(16))]
struct Stack([u8; KERNEL_STACK_SIZE]);

static mut KERNEL_STACK: Stack = Stack([0; KERNEL_STACK_SIZE]);
/// The hypercall page's `HYPERVISOR_iret` stub.
static IRET_STUB: AtomicU64 = AtomicU64::new(0);

/// A user address space: a user tree with a code page and a stack page.
pub struct UserSpace {
    tree: Tree,
    code: Page,
    stack: Page,
}

impl UserSpace {
    /// Builds the tree (not yet pinned nor in use): `code` (at most a page) copied to a
    /// page mapped read-only at [`CODE_VA`], a zeroed stack page at [`STACK_VA`]. On
    /// error, says which step failed.
    pub fn new(code: &[u8]) -> Result<Self, (&'static str, Errno)> {
        assert!(code.len() as u64 <= PAGE_SIZE, "user code is over a page");
        let code_page = mmu::alloc().map_err(|e| ("alloc", e))?;
        let stack = mmu::alloc().map_err(|e| ("alloc", e))?;
        // SAFETY: the page is ours, mapped writable at its kernel address and at least
        // `code.len()` bytes long.
        unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), code_page.va() as *mut u8, code.len()) };
        let mut tree = Tree::new(false).map_err(|e| ("tree", e))?;
        // SAFETY: the tree is not in use; it maps our own pages.
        unsafe {
            tree.map(CODE_VA, code_page.pte(USER_RO)).map_err(|e| ("map code", e))?;
            tree.map(STACK_VA, stack.pte(USER_RW | PTE_NX)).map_err(|e| ("map stack", e))?;
        }
        Ok(Self { tree, code: code_page, stack })
    }

    /// Maps `pte` at user address `va` ([`Tree::map`]).
    ///
    /// # Safety
    ///
    /// As for [`Tree::map`]: the frame must be one the user may see as `pte` says.
    pub unsafe fn map(&mut self, va: u64, pte: u64) -> Result<(), Errno> {
        // SAFETY: forwarded to the caller.
        unsafe { self.tree.map(va, pte) }
    }

    /// Pins the tree (Xen validates it) and makes it the user base
    /// (`MMUEXT_NEW_USER_BASEPTR`).
    pub fn activate(&mut self) -> Result<(), (&'static str, Errno)> {
        self.tree.pin().map_err(|e| ("pin", e))?;
        // SAFETY: the kernel never runs on the user tables.
        unsafe { mmu::new_user_baseptr(self.tree.l4().mfn) }.map_err(|e| ("new_user_baseptr", e))
    }

    /// The tree's L4.
    pub fn l4(&self) -> Page {
        self.tree.l4()
    }

    /// Unregisters the user base and gives the tables and pages back.
    pub fn destroy(self) -> Result<(), Errno> {
        // SAFETY: user mode is not entered any more.
        unsafe { mmu::new_user_baseptr(0) }?;
        self.tree.destroy()?;
        // SAFETY: the tree that mapped the pages is gone.
        unsafe { mmu::free(self.code).and(mmu::free(self.stack)) }
    }
}

/// The user code assembled between two labels of the image.
///
/// # Safety
///
/// `start..end` must be the bytes of the image between two labels, `start` first.
pub unsafe fn code_between(start: *const u8, end: *const u8) -> &'static [u8] {
    // SAFETY: the caller guarantees one range of the image's text, mapped for good.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// The top of the kernel stack for entries from user mode.
pub fn kernel_stack_top() -> u64 {
    (&raw const KERNEL_STACK) as u64 + KERNEL_STACK_SIZE as u64
}

/// Names [`kernel_stack_top`] with `stack_switch` and finds the `HYPERVISOR_iret`
/// stub; needed before [`enter`].
pub fn init() -> Result<(), Errno> {
    let xen = crate::hypercalls();
    IRET_STUB
        .store(xen.page() as u64 + (HYPERVISOR_IRET as usize * HYPERCALL_STUB_SIZE) as u64, Ordering::SeqCst);
    // SAFETY: the stack is this module's and used for nothing else.
    unsafe { xen.stack_switch(FLAT_KERNEL_SS as u64, kernel_stack_top()) }
}

/// Registers `entry` as the SYSCALL callback, masking events on entry or not.
///
/// # Safety
///
/// `entry` must take Xen's SYSCALL frame (`{RCX, R11, RIP, CS, RFLAGS, RSP, SS}` on the
/// kernel stack) and go back to user mode with `HYPERVISOR_iret` or [`leave`].
pub unsafe fn register_syscall(entry: u64, mask_events: bool) -> Result<(), Errno> {
    let flags = if mask_events { CallbackFlags::MASK_EVENTS } else { CallbackFlags::empty() };
    let cb = CallbackRegister::new(CALLBACKTYPE_SYSCALL, flags, entry);
    // SAFETY: forwarded to the caller.
    unsafe { crate::hypercalls().callback_register(&cb) }
}

/// A frame for [`enter`]: user code at `rip` with stack `rsp`, the flat user
/// selectors, `rflags` (with [`RFLAGS_IF`]: events unmasked), iret flags 0 and zero
/// RAX, RCX, R11.
pub fn user_frame(rip: u64, rsp: u64, rflags: u64) -> IretContext {
    IretContext {
        rax: 0,
        r11: 0,
        rcx: 0,
        flags: 0,
        rip,
        cs: FLAT_USER_CS as u64,
        rflags,
        rsp,
        ss: FLAT_USER_SS as u64,
    }
}

#[cfg(target_os = "none")]
mod imp {
    use super::*;

    /// Kernel RSP saved by `enter`, after its pushes (read by `leave`).
    static KERNEL_RSP: AtomicU64 = AtomicU64::new(0);

    unsafe extern "C" {
        /// Goes back to [`enter`]'s caller: restores the kernel context `enter`
        /// saved and returns from it. Called or jumped to from kernel code reached
        /// from user mode, on any stack.
        ///
        /// # Safety
        ///
        /// [`enter`] must be running (user mode was entered through it), and nothing
        /// on the stack since then may need dropping.
        #[link_name = "guest_shim_user_leave"]
        pub fn leave() -> !;

        /// Jumps to the `HYPERVISOR_iret` stub: for entry stubs going back to user
        /// mode with the iret frame (flags, RIP, CS, RFLAGS, RSP, SS) on the stack and
        /// RAX, RCX, R11 holding the frame's values. Not to be called.
        #[link_name = "guest_shim_user_iret"]
        pub fn iret() -> !;

        #[link_name = "guest_shim_user_enter"]
        fn enter_asm(frame: *const IretContext, rdi: u64, rsi: u64);
    }

    /// Enters user mode with `frame` (RAX, RCX, R11 from it), RDI = `rdi`, RSI = `rsi`
    /// and the other registers zero; returns when [`leave`] runs.
    ///
    /// # Safety
    ///
    /// [`init`] has run, a user base is active, and every way back from user mode
    /// goes through [`leave`] (or back to user mode).
    pub unsafe fn enter(frame: &IretContext, rdi: u64, rsi: u64) {
        // SAFETY: `enter_asm` saves the callee-saved registers and RSP and enters user
        // mode; `leave` restores exactly those and returns here as from a call.
        unsafe { enter_asm(frame, rdi, rsi) }
    }

    core::arch::global_asm!(
        ".pushsection .text.guest_shim_user, \"ax\"",
        // iret to user mode; Xen's hypercall-page stub pushes RCX, R11, RAX itself.
        ".balign 16",
        ".global guest_shim_user_iret",
        "guest_shim_user_iret:",
        "jmp qword ptr [rip + {iret}]",
        // leave: restore what enter saved, return to enter's caller.
        ".balign 16",
        ".global guest_shim_user_leave",
        "guest_shim_user_leave:",
        "mov rsp, [rip + {ksp}]",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "ret",
        // enter(frame, rdi, rsi): save the kernel context, iret to user mode with
        // nothing of the kernel's left in the registers.
        ".balign 16",
        ".global guest_shim_user_enter",
        "guest_shim_user_enter:",
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rip + {ksp}], rsp",
        "mov rbx, rdi",
        "push qword ptr [rbx + {o_ss}]",
        "push qword ptr [rbx + {o_rsp}]",
        "push qword ptr [rbx + {o_rflags}]",
        "push qword ptr [rbx + {o_cs}]",
        "push qword ptr [rbx + {o_rip}]",
        "push qword ptr [rbx + {o_flags}]",
        "mov rdi, rsi",
        "mov rsi, rdx",
        "xor edx, edx",
        "xor ebp, ebp",
        "xor r8d, r8d",
        "xor r9d, r9d",
        "xor r10d, r10d",
        "xor r12d, r12d",
        "xor r13d, r13d",
        "xor r14d, r14d",
        "xor r15d, r15d",
        "mov rax, [rbx + {o_rax}]",
        "mov r11, [rbx + {o_r11}]",
        "mov rcx, [rbx + {o_rcx}]",
        "xor ebx, ebx",
        "jmp qword ptr [rip + {iret}]",
        ".popsection",
        iret = sym IRET_STUB,
        ksp = sym KERNEL_RSP,
        o_ss = const core::mem::offset_of!(IretContext, ss),
        o_rsp = const core::mem::offset_of!(IretContext, rsp),
        o_rflags = const core::mem::offset_of!(IretContext, rflags),
        o_cs = const core::mem::offset_of!(IretContext, cs),
        o_rip = const core::mem::offset_of!(IretContext, rip),
        o_flags = const core::mem::offset_of!(IretContext, flags),
        o_rax = const core::mem::offset_of!(IretContext, rax),
        o_r11 = const core::mem::offset_of!(IretContext, r11),
        o_rcx = const core::mem::offset_of!(IretContext, rcx),
    );
}

#[cfg(target_os = "none")]
pub use imp::{enter, iret, leave};

#[cfg(not(target_os = "none"))]
mod host {
    use super::*;
    use crate::host::unavailable;

    /// Goes back to [`enter`]'s caller (only in a guest).
    ///
    /// # Safety
    ///
    /// As in a guest.
    pub unsafe extern "C" fn leave() -> ! {
        unavailable("user::leave")
    }

    /// The `HYPERVISOR_iret` jump (only in a guest).
    ///
    /// # Safety
    ///
    /// As in a guest.
    pub unsafe extern "C" fn iret() -> ! {
        unavailable("user::iret")
    }

    /// Enters user mode (only in a guest).
    ///
    /// # Safety
    ///
    /// As in a guest.
    pub unsafe fn enter(_frame: &IretContext, _rdi: u64, _rsi: u64) {
        unavailable("user::enter")
    }
}

#[cfg(not(target_os = "none"))]
pub use host::{enter, iret, leave};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(STACK_VA, CODE_VA + 4096);
        assert_eq!(STACK_TOP % 16, 0);
        let f = user_frame(CODE_VA, STACK_TOP, RFLAGS_IF | RFLAGS_RESERVED);
        assert_eq!(f.cs & 3, 3, "user CS has RPL 3");
        assert_eq!(f.ss & 3, 3);
        assert_eq!((f.rip, f.rsp, f.flags), (CODE_VA, STACK_TOP, 0));
    }
}
