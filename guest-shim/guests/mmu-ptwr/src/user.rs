// SPDX-License-Identifier: MIT OR Apache-2.0
//! Just enough guest user mode to make one write from it: a small part of what the
//! `user-mode` guest's `um` module does (see it for the model), on guest-shim's
//! [`mmu::Tree`] and trap handlers.
//!
//! A user tree maps a code page at [`USER_CODE_VA`], a stack page after it, and a
//! given frame read-only at [`USER_TABLE_VA`]; it is pinned and registered with
//! `MMUEXT_NEW_USER_BASEPTR`, and `stack_switch` names a kernel stack for entries from
//! user mode. [`write_from_user`] enters user mode with `HYPERVISOR_iret` at code that
//! does `mov [rdi], rsi; ud2`; the first exception from user mode (a #PF, or the #UD
//! if the write went through) is recorded by a handler that then unwinds to the
//! caller of `ptwr_um_enter`, as if it had returned.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_shim::mmu::{self, Page, Tree, USER_RO, USER_RW};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::{FLAT_KERNEL_SS, FLAT_USER_CS, FLAT_USER_SS, IretContext};
use guest_shim::pv_abi::hypercall::{HYPERCALL_STUB_SIZE, HYPERVISOR_IRET};
use guest_shim::traps::{self, Action, Trap, vector};

/// The user code page.
pub const USER_CODE_VA: u64 = 0x40_0000;
/// The user stack page.
const USER_STACK_VA: u64 = 0x40_1000;
/// Where the user sees the frame given to [`UserSpace::new`], read-only.
pub const USER_TABLE_VA: u64 = 0x40_2000;
/// Size of the kernel stack for entries from user mode.
const KSTACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; KSTACK_SIZE]);

static mut KSTACK: Stack = Stack([0; KSTACK_SIZE]);
/// Kernel RSP saved by `ptwr_um_enter`.
static KERNEL_RSP: AtomicU64 = AtomicU64::new(0);
/// The hypercall page's `HYPERVISOR_iret` stub.
static IRET_STUB: AtomicU64 = AtomicU64::new(0);
/// What ended the last stay in user mode: vector, error code, CR2, RIP.
static LAST: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

unsafe extern "C" {
    fn ptwr_um_enter(frame: *const IretContext, rdi: u64, rsi: u64);
    fn ptwr_um_leave() -> !;
    static ptwr_um_user_start: u8;
    static ptwr_um_user_end: u8;
}

/// An exception taken in user mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserFault {
    /// Its vector.
    pub vector: u8,
    /// Its error code.
    pub error_code: u64,
    /// CR2 (for a #PF).
    pub cr2: u64,
    /// The user RIP.
    pub rip: u64,
}

/// The user address space and what it holds.
pub struct UserSpace {
    tree: Tree,
    code: Page,
    stack: Page,
}

impl UserSpace {
    /// Builds, pins and registers the user tree, with frame `table_mfn` read-only at
    /// [`USER_TABLE_VA`]. On error, says which step failed.
    pub fn new(table_mfn: u64) -> Result<Self, (&'static str, Errno)> {
        let xen = guest_shim::hypercalls();
        let code = mmu::alloc().map_err(|e| ("alloc", e))?;
        let stack = mmu::alloc().map_err(|e| ("alloc", e))?;
        let start = &raw const ptwr_um_user_start;
        let len = (&raw const ptwr_um_user_end) as usize - start as usize;
        // SAFETY: the bytes between the labels are the assembled user code (a few
        // bytes); the code page is ours, mapped writable at its kernel address.
        unsafe { core::ptr::copy_nonoverlapping(start, code.va() as *mut u8, len) };
        let mut tree = Tree::new(false).map_err(|e| ("tree", e))?;
        // SAFETY: the tree is not in use; it maps our own pages (the table read-only).
        unsafe {
            tree.map(USER_CODE_VA, code.pte(USER_RO)).map_err(|e| ("map code", e))?;
            tree.map(USER_STACK_VA, stack.pte(USER_RW)).map_err(|e| ("map stack", e))?;
            tree.map(USER_TABLE_VA, (table_mfn << 12) | USER_RO).map_err(|e| ("map table", e))?;
        }
        tree.pin().map_err(|e| ("pin", e))?;
        // SAFETY: the kernel never runs on the user tables.
        unsafe { mmu::new_user_baseptr(tree.l4().mfn) }.map_err(|e| ("new_user_baseptr", e))?;
        let kstack_top = (&raw const KSTACK) as u64 + KSTACK_SIZE as u64;
        // SAFETY: the stack is ours and used for nothing else.
        unsafe { xen.stack_switch(FLAT_KERNEL_SS as u64, kstack_top) }.map_err(|e| ("stack_switch", e))?;
        IRET_STUB.store(
            xen.page() as u64 + (HYPERVISOR_IRET as usize * HYPERCALL_STUB_SIZE) as u64,
            Ordering::SeqCst,
        );
        Ok(Self { tree, code, stack })
    }

    /// Unregisters the tree and gives its pages back.
    pub fn destroy(self) -> Result<(), Errno> {
        // SAFETY: user mode is not entered any more.
        unsafe { mmu::new_user_baseptr(0) }?;
        self.tree.destroy()?;
        // SAFETY: the tree that mapped the pages is gone.
        unsafe { mmu::free(self.code).and(mmu::free(self.stack)) }
    }
}

/// Records an exception from user mode and unwinds to `ptwr_um_enter`'s caller;
/// kernel-mode exceptions go on to `catch` as usual.
fn leave_user(t: &Trap) -> Action {
    if t.frame.from_kernel() {
        return Action::Unhandled;
    }
    for (slot, v) in LAST.iter().zip([t.vector() as u64, t.error_code(), t.cr2, t.rip()]) {
        slot.store(v, Ordering::SeqCst);
    }
    // SAFETY: `ptwr_um_enter` saved the kernel context this returns to; the frames on
    // the kernel stack of this entry (this handler, guest-shim's dispatcher) hold
    // nothing that needs dropping.
    unsafe { ptwr_um_leave() }
}

/// Runs `mov [addr], val` in user mode and returns the exception that ended it.
pub fn write_from_user(addr: u64, val: u64) -> UserFault {
    let shared = guest_shim::shared_info::map().ok();
    let mask = shared.as_ref().map(|s| s.upcall_mask(0));
    let handled = [vector::PF, vector::UD, vector::GP];
    let old = handled.map(|v| traps::set_handler(v, Some(leave_user)));
    LAST[0].store(u64::MAX, Ordering::SeqCst);
    // Events masked in user mode: RFLAGS.IF clear.
    let frame = IretContext {
        rax: 0,
        r11: 0,
        rcx: 0,
        flags: 0,
        rip: USER_CODE_VA,
        cs: FLAT_USER_CS as u64,
        rflags: 1 << 1,
        rsp: USER_STACK_VA + 4096,
        ss: FLAT_USER_SS as u64,
    };
    // SAFETY: `ptwr_um_enter` saves the callee-saved registers and RSP and enters user
    // mode; `leave_user` restores exactly those and returns here as from an ordinary
    // call. The user code touches nothing but `addr`, read-only for it.
    unsafe { ptwr_um_enter(&frame, addr, val) };
    for (v, h) in handled.into_iter().zip(old) {
        traps::set_handler(v, h);
    }
    if let (Some(s), Some(m)) = (shared, mask) {
        s.set_upcall_mask(0, m);
    }
    let [v, e, c, r] = LAST.each_ref().map(|a| a.load(Ordering::SeqCst));
    UserFault { vector: v as u8, error_code: e, cr2: c, rip: r }
}

core::arch::global_asm!(
    ".pushsection .text.ptwr_user_mode, \"ax\"",
    // ptwr_um_enter(frame, rdi, rsi): save the kernel context, iret to user mode with
    // the user's RDI and RSI set.
    ".balign 16",
    ".global ptwr_um_enter",
    "ptwr_um_enter:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rip + {ksp}], rsp",
    "push qword ptr [rdi + {o_ss}]",
    "push qword ptr [rdi + {o_rsp}]",
    "push qword ptr [rdi + {o_rflags}]",
    "push qword ptr [rdi + {o_cs}]",
    "push qword ptr [rdi + {o_rip}]",
    "push qword ptr [rdi + {o_flags}]",
    "mov rdi, rsi",
    "mov rsi, rdx",
    "xor eax, eax",
    "xor ecx, ecx",
    "xor r11d, r11d",
    "jmp qword ptr [rip + {iret}]",
    // ptwr_um_leave: back to ptwr_um_enter's caller.
    ".balign 16",
    ".global ptwr_um_leave",
    "ptwr_um_leave:",
    "mov rsp, [rip + {ksp}]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    // The user code, copied to USER_CODE_VA.
    ".global ptwr_um_user_start",
    "ptwr_um_user_start:",
    "mov qword ptr [rdi], rsi",
    "ud2",
    ".global ptwr_um_user_end",
    "ptwr_um_user_end:",
    ".popsection",
    iret = sym IRET_STUB,
    ksp = sym KERNEL_RSP,
    o_ss = const core::mem::offset_of!(IretContext, ss),
    o_rsp = const core::mem::offset_of!(IretContext, rsp),
    o_rflags = const core::mem::offset_of!(IretContext, rflags),
    o_cs = const core::mem::offset_of!(IretContext, cs),
    o_rip = const core::mem::offset_of!(IretContext, rip),
    o_flags = const core::mem::offset_of!(IretContext, flags),
);
