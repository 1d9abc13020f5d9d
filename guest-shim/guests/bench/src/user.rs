// SPDX-License-Identifier: MIT OR Apache-2.0
//! Guest user mode for the `syscall-bounce` benchmark: the minimal part of the
//! `user-mode` test guest's `um` module (see it for the model and the checks).
//!
//! A user L4/L3/L2/L1 (statics of the image, `_PAGE_USER` at every level) maps a code
//! page and a stack page at [`USER_CODE_VA`]; the tables are remapped read-only,
//! pinned and registered with `MMUEXT_NEW_USER_BASEPTR`. [`bounce`] enters user mode
//! with `HYPERVISOR_iret`; the user code makes `n` SYSCALLs with RAX = 1, each of
//! which the SYSCALL callback returns at once with `HYPERVISOR_iret` +
//! `VGCF_in_syscall` (four instructions of guest kernel), then one with RAX = 0, on
//! which the callback goes back to [`bounce`]'s caller. User mode runs with events
//! masked, so nothing else enters the kernel meanwhile.

use core::ptr::write_volatile;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_shim::notes::VIRT_BASE;
use guest_shim::pt::{PTE_ACCESSED, PTE_DIRTY, PTE_NX, PTE_PRESENT, PTE_RW, PTE_USER, table_index};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::{
    FLAT_KERNEL_SS, FLAT_USER_CS, FLAT_USER_SS, IretContext, VGCF_IN_SYSCALL,
};
use guest_shim::pv_abi::callback::{CALLBACKTYPE_SYSCALL, CallbackFlags, CallbackRegister};
use guest_shim::pv_abi::hypercall::{HYPERCALL_STUB_SIZE, HYPERVISOR_IRET};
use guest_shim::pv_abi::xen::{
    DOMID_SELF, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L4_TABLE, MmuextOp, UvmfFlags,
};

const PAGE: u64 = 4096;
/// The user code page; the stack page follows it.
const USER_CODE_VA: u64 = 0x40_0000;
const USER_STACK_VA: u64 = USER_CODE_VA + PAGE;
/// Size of the kernel stack for entries from user mode.
const KSTACK_SIZE: usize = 16 * 1024;

#[repr(C, align(4096))]
struct Page([u64; 512]);

#[repr(C, align(16))]
struct Stack([u8; KSTACK_SIZE]);

static mut USER_L4: Page = Page([0; 512]);
static mut USER_L3: Page = Page([0; 512]);
static mut USER_L2: Page = Page([0; 512]);
static mut USER_L1: Page = Page([0; 512]);
static mut USER_CODE: Page = Page([0; 512]);
static mut USER_STACK: Page = Page([0; 512]);
static mut KSTACK: Stack = Stack([0; KSTACK_SIZE]);

/// Kernel RSP saved by `bench_um_enter`.
static KERNEL_RSP: AtomicU64 = AtomicU64::new(0);
/// The hypercall page's `HYPERVISOR_iret` stub.
static IRET_STUB: AtomicU64 = AtomicU64::new(0);
/// The user's RDI when it left: the SYSCALLs it did not make (0 after a full batch).
static LEFT_RDI: AtomicU64 = AtomicU64::new(u64::MAX);

unsafe extern "C" {
    fn bench_um_syscall_entry();
    fn bench_um_enter(frame: *const IretContext, n: u64);
    static bench_um_user_start: u8;
    static bench_um_user_end: u8;
}

/// The machine frame behind an image address (through the P2M list).
fn mfn_of(va: u64) -> u64 {
    let si = guest_shim::start_info();
    let pfn = (va - VIRT_BASE) / PAGE;
    assert!(pfn < si.nr_pages, "{va:#x} is not in the image");
    // SAFETY: the P2M list holds `nr_pages` entries at `mfn_list` (xen.h), mapped for
    // the guest's lifetime; `pfn` is checked against it.
    unsafe { (si.mfn_list as *const u64).add(pfn as usize).read() }
}

/// Builds and registers the user address space, the SYSCALL callback and the kernel
/// stack. On error, says which step failed.
pub fn setup() -> Result<(), (&'static str, Errno)> {
    let xen = guest_shim::hypercalls();
    let start = &raw const bench_um_user_start;
    let len = (&raw const bench_um_user_end) as usize - start as usize;
    assert!(len as u64 <= PAGE, "user code is over a page");
    // SAFETY: the bytes between the labels are the assembled user code; the code page
    // is ours and not yet mapped for the user.
    unsafe { core::ptr::copy_nonoverlapping(start, (&raw mut USER_CODE).cast::<u8>(), len) };

    let tables = [
        (&raw mut USER_L4).cast::<u64>(),
        (&raw mut USER_L3).cast::<u64>(),
        (&raw mut USER_L2).cast::<u64>(),
        (&raw mut USER_L1).cast::<u64>(),
    ];
    let table_flags = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED;
    let code = mfn_of((&raw const USER_CODE) as u64) << 12 | PTE_PRESENT | PTE_USER | PTE_ACCESSED;
    let stack = mfn_of((&raw const USER_STACK) as u64) << 12
        | PTE_PRESENT
        | PTE_RW
        | PTE_USER
        | PTE_ACCESSED
        | PTE_DIRTY
        | PTE_NX;
    // SAFETY: the tables are our own zeroed statics, still mapped writable; every index
    // is below 512.
    unsafe {
        for level in 0..3 {
            let next = mfn_of(tables[level + 1] as u64) << 12 | table_flags;
            write_volatile(tables[level].add(table_index(USER_CODE_VA, 4 - level as u8)), next);
        }
        write_volatile(tables[3].add(table_index(USER_CODE_VA, 1)), code);
        write_volatile(tables[3].add(table_index(USER_STACK_VA, 1)), stack);
    }
    for table in tables {
        let va = table as u64;
        let pte = guest_shim::pt::lookup(va).pte().ok_or(("lookup", Errno::EFAULT))?;
        // SAFETY: nothing writes the tables from now on; reads still work.
        unsafe { xen.update_va_mapping(va, pte & !PTE_RW, UvmfFlags::INVLPG) }
            .map_err(|e| ("update_va_mapping", e))?;
    }
    let l4 = mfn_of(tables[0] as u64);
    let ops = [MmuextOp::new(MMUEXT_PIN_L4_TABLE, l4, 0), MmuextOp::new(MMUEXT_NEW_USER_BASEPTR, l4, 0)];
    // SAFETY: pinning and the user base change no mapping the kernel uses.
    unsafe { xen.mmuext_op(&ops, DOMID_SELF) }.map_err(|e| ("mmuext_op", e))?;

    IRET_STUB
        .store(xen.page() as u64 + (HYPERVISOR_IRET as usize * HYPERCALL_STUB_SIZE) as u64, Ordering::SeqCst);
    let cb = CallbackRegister::new(
        CALLBACKTYPE_SYSCALL,
        CallbackFlags::MASK_EVENTS,
        bench_um_syscall_entry as *const () as u64,
    );
    // SAFETY: the entry takes Xen's SYSCALL frame and returns with iret or unwinds.
    unsafe { xen.callback_register(&cb) }.map_err(|e| ("callback_register", e))?;
    let kstack_top = (&raw const KSTACK) as u64 + KSTACK_SIZE as u64;
    // SAFETY: the stack is ours and used for nothing else.
    unsafe { xen.stack_switch(FLAT_KERNEL_SS as u64, kstack_top) }.map_err(|e| ("stack_switch", e))
}

/// Enters user mode for `n` SYSCALL round trips; returns the SYSCALLs the user code
/// did not make (0 if all went through).
pub fn bounce(n: u64) -> u64 {
    // Events masked in user mode: RFLAGS.IF clear in the frame.
    let frame = IretContext {
        rax: 0,
        r11: 0,
        rcx: 0,
        flags: 0,
        rip: USER_CODE_VA,
        cs: FLAT_USER_CS as u64,
        rflags: 1 << 1,
        rsp: USER_STACK_VA + PAGE,
        ss: FLAT_USER_SS as u64,
    };
    LEFT_RDI.store(u64::MAX, Ordering::SeqCst);
    // SAFETY: `bench_um_enter` saves the callee-saved registers and RSP and enters user
    // mode; the SYSCALL callback's way out restores exactly those and returns here as
    // from an ordinary call. The user code touches nothing but its own registers.
    unsafe { bench_um_enter(&frame, n) };
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
    "jmp qword ptr [rip + {iret}]",
    "2:",
    "mov [rip + {left}], rdi",
    "mov rsp, [rip + {ksp}]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    // bench_um_enter(frame, n): save the kernel context, iret to user mode, RDI = n.
    ".balign 16",
    ".global bench_um_enter",
    "bench_um_enter:",
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
    "xor eax, eax",
    "xor ecx, ecx",
    "xor r11d, r11d",
    "mov rdi, rsi",
    "jmp qword ptr [rip + {iret}]",
    // The user code (position-independent, copied to USER_CODE_VA): RDI SYSCALLs with
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
    iret = sym IRET_STUB,
    ksp = sym KERNEL_RSP,
    left = sym LEFT_RDI,
    o_ss = const core::mem::offset_of!(IretContext, ss),
    o_rsp = const core::mem::offset_of!(IretContext, rsp),
    o_rflags = const core::mem::offset_of!(IretContext, rflags),
    o_cs = const core::mem::offset_of!(IretContext, cs),
    o_rip = const core::mem::offset_of!(IretContext, rip),
    o_flags = const core::mem::offset_of!(IretContext, flags),
);
