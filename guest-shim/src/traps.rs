// SPDX-License-Identifier: MIT OR Apache-2.0
//! Exceptions and event upcalls for the guest kernel: a virtual IDT
//! (`HYPERVISOR_set_trap_table`), the event and failsafe callbacks (`callback_op`),
//! typed frames, per-vector handlers and [`catch`].
//!
//! # How Xen delivers an exception to a 64-bit PV kernel
//!
//! The guest kernel runs in ring 3, so every exception enters Xen first. Xen then
//! *bounces* it to the handler named in the guest's trap table, on the guest kernel
//! stack (the current RSP when the guest was already in kernel mode, rounded down to
//! 16 bytes), with this frame, lowest address first:
//!
//! ```text
//! RCX, R11, [ERRCODE], RIP, CS, RFLAGS, RSP, SS
//! ```
//!
//! - the error code is there only for the exceptions that have one
//!   ([`has_error_code`]) and never for software interrupts (`int n`);
//! - the saved CS of an interrupted *kernel* context has its RPL cleared to 0 (0xe030
//!   for `FLAT_KERNEL_CS`) and carries the saved `evtchn_upcall_mask` in bits 32-39;
//! - the saved RFLAGS.IF is the inverse of that saved mask (not the real IF, which is
//!   always set) and IOPL reads as 0;
//! - for #PF the faulting address is in `vcpu_info.arch.cr2` of the shared-info page,
//!   not in a register.
//!
//! Each entry stub here pops RCX and R11 (so they hold the interrupted values again),
//! pushes the vector (and a zero error code where the CPU pushes none), saves every
//! other general register and calls the Rust dispatcher with a [`TrapFrame`]. The
//! return goes through `HYPERVISOR_iret` (the hypercall page's iret stub, `flags` 0),
//! which restores RIP, CS, RFLAGS, RSP, SS, RAX, RCX and R11 from the frame and the
//! event mask from the frame's RFLAGS.IF.
//!
//! # What happens to an exception
//!
//! 1. If a [`Handler`] is registered for the vector ([`set_handler`]) it runs first
//!    and may resume the interrupted code ([`Action::Resume`], or somewhere else with
//!    [`Action::resume_at`] / [`Action::resume_with`]) or pass ([`Action::Unhandled`]).
//! 2. Otherwise, inside [`catch`], the exception ends the closure and `catch` returns
//!    it as a [`Trap`].
//! 3. Otherwise the exception is printed with the registers and the domain crashes
//!    (`SHUTDOWN_crash`).
//!
//! Handlers and `catch` nest: an exception inside a handler is delivered the same way,
//! on the same stack, below the first frame. [`catch_asm!`](crate::catch_asm) runs
//! a few instructions under `catch` and also returns where they start, which is what
//! a test comparing the saved RIP needs.
//!
//! `int n` is delivered only if the trap-table entry's DPL allows it (the guest
//! kernel counts as ring 1); otherwise the CPU raises #GP with `n` in the error code,
//! from which Xen takes the vector it checks. QEMU's TCG reports `n * 16 + 2` there
//! instead of `n * 8 + 2`, so under TCG Xen checks (and delivers) vector `2n mod 256`.
//!
//! # Example
//!
//! ```no_run
//! use guest_shim::traps::{self, Action, Trap, vector};
//!
//! fn start(_si: &'static guest_shim::StartInfo) {
//!     traps::install().expect("trap table");
//!
//!     // An exception raised by a closure, as a value:
//!     // SAFETY: the closure holds no lock or guard when it faults (nothing to drop).
//!     let r = unsafe { traps::catch(|| core::arch::asm!("ud2")) };
//!     assert!(matches!(r, Err(t) if t.vector() == vector::UD));
//!
//!     // A #PF with its error code and address:
//!     // SAFETY: as above; the read faults, its value is never used.
//!     let r = unsafe { traps::catch(|| core::ptr::read_volatile(8 as *const u64)) };
//!     let t = r.unwrap_err();
//!     assert_eq!((t.vector(), t.error_code(), t.cr2), (vector::PF, 0, 8));
//!
//!     // A handler that skips every `ud2` (two bytes):
//!     fn skip_ud2(t: &Trap) -> Action {
//!         // SAFETY: only used around code that expects execution to go on after ud2.
//!         unsafe { Action::resume_at(t.frame.rip + 2) }
//!     }
//!     traps::set_handler(vector::UD, Some(skip_ud2));
//!     // SAFETY: the handler resumes after the instruction.
//!     unsafe { core::arch::asm!("ud2") };
//!     traps::set_handler(vector::UD, None);
//! }
//! ```
//!
//! Events: the event callback clears `evtchn_upcall_pending`, takes the pending and
//! unmasked ports of the 2-level ABI, clears each one's pending bit and calls the
//! [`EventHandler`] set with [`set_event_handler`] for it (with none set, the events
//! are dropped; [`event_upcalls`] counts the upcalls). The failsafe callback (Xen
//! could not reload a data segment on return to the guest) prints its frame and
//! crashes the domain. There is no SYSCALL callback: these guests have no user mode.
//!
//! Only vCPU 0 is supported (the `vcpu_info` read for CR2 and events is vCPU 0's).

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use pv_abi::arch_x86::TrapInfo;

/// Exception vectors.
pub mod vector {
    /// Divide error.
    pub const DE: u8 = 0;
    /// Debug.
    pub const DB: u8 = 1;
    /// Non-maskable interrupt.
    pub const NMI: u8 = 2;
    /// Breakpoint (`int3`).
    pub const BP: u8 = 3;
    /// Overflow (`into`; in 64-bit mode only `int $4`).
    pub const OF: u8 = 4;
    /// BOUND range exceeded (in 64-bit mode only `int $5`).
    pub const BR: u8 = 5;
    /// Invalid opcode.
    pub const UD: u8 = 6;
    /// Device not available (CR0.TS).
    pub const NM: u8 = 7;
    /// Double fault.
    pub const DF: u8 = 8;
    /// Invalid TSS.
    pub const TS: u8 = 10;
    /// Segment not present.
    pub const NP: u8 = 11;
    /// Stack-segment fault.
    pub const SS: u8 = 12;
    /// General protection.
    pub const GP: u8 = 13;
    /// Page fault.
    pub const PF: u8 = 14;
    /// x87 floating-point error.
    pub const MF: u8 = 16;
    /// Alignment check.
    pub const AC: u8 = 17;
    /// Machine check.
    pub const MC: u8 = 18;
    /// SIMD floating-point exception.
    pub const XM: u8 = 19;
    /// Virtualization exception.
    pub const VE: u8 = 20;
    /// Control-protection exception.
    pub const CP: u8 = 21;
    /// The legacy system-call vector, registered with DPL 3.
    pub const INT80: u8 = 0x80;
}

/// [`TrapFrame::vector`] of an event upcall (not an exception vector).
pub const EVENT_UPCALL: u64 = 0x100;

/// Vectors for which the CPU (and Xen's bounce frame) has an error code: #DF, #TS,
/// #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX.
const ERROR_CODE_VECTORS: u32 =
    1 << 8 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 14 | 1 << 17 | 1 << 21 | 1 << 29 | 1 << 30;

/// Whether exception `vector` comes with an error code (software interrupts never do).
pub const fn has_error_code(vector: u8) -> bool {
    vector < 32 && ERROR_CODE_VECTORS & (1 << vector) != 0
}

/// The mnemonic of `vector` (`"#PF"`), `"event"` for [`EVENT_UPCALL`], else `"int"`.
pub fn name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#MF-old", "#TS", "#NP", "#SS", "#GP",
        "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23", "#24", "#25", "#26", "#27",
        "#HV", "#VC", "#SX", "#31",
    ];
    match vector {
        0..32 => NAMES[vector as usize],
        EVENT_UPCALL => "event",
        _ => "int",
    }
}

/// Page-fault error code bits (as Xen passes them to a PV kernel: the user bit is
/// set only for faults in guest *user* mode).
pub mod pf {
    /// The page was present (a protection fault).
    pub const PRESENT: u64 = 1 << 0;
    /// A write.
    pub const WRITE: u64 = 1 << 1;
    /// Guest user mode.
    pub const USER: u64 = 1 << 2;
    /// A reserved bit was set in a paging entry.
    pub const RSVD: u64 = 1 << 3;
    /// An instruction fetch.
    pub const FETCH: u64 = 1 << 4;
}

/// The interrupted context as the entry stubs save it on the stack, lowest address
/// first: the general registers, the vector and error code, then Xen's bounce frame
/// (RIP, CS, RFLAGS, RSP, SS) minus RCX and R11, which are back in their fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapFrame {
    /// R15.
    pub r15: u64,
    /// R14.
    pub r14: u64,
    /// R13.
    pub r13: u64,
    /// R12.
    pub r12: u64,
    /// R11 (from the bounce frame).
    pub r11: u64,
    /// R10.
    pub r10: u64,
    /// R9.
    pub r9: u64,
    /// R8.
    pub r8: u64,
    /// RBP.
    pub rbp: u64,
    /// RDI.
    pub rdi: u64,
    /// RSI.
    pub rsi: u64,
    /// RDX.
    pub rdx: u64,
    /// RCX (from the bounce frame).
    pub rcx: u64,
    /// RBX.
    pub rbx: u64,
    /// RAX.
    pub rax: u64,
    /// Exception vector, or [`EVENT_UPCALL`].
    pub vector: u64,
    /// Error code; 0 for vectors without one.
    pub error_code: u64,
    /// Where to resume: the faulting instruction for faults, the next one for traps
    /// (`int3`, `int n`).
    pub rip: u64,
    /// Saved CS: bits 0-15 the selector (RPL 0 for a kernel context), bits 32-39 the
    /// saved `evtchn_upcall_mask`.
    pub cs: u64,
    /// Saved RFLAGS, with IF = !saved upcall mask.
    pub rflags: u64,
    /// RSP at the exception.
    pub rsp: u64,
    /// SS.
    pub ss: u64,
}

impl TrapFrame {
    /// The code selector (bits 0-15 of the saved CS).
    pub const fn cs_selector(&self) -> u16 {
        self.cs as u16
    }

    /// The event mask saved in bits 32-39 of CS.
    pub const fn saved_upcall_mask(&self) -> u8 {
        (self.cs >> 32) as u8
    }

    /// Whether the interrupted context was the guest kernel (CS RPL 0 in the frame).
    pub const fn from_kernel(&self) -> bool {
        self.cs & 3 == 0
    }
}

/// An exception as a handler or [`catch`] sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trap {
    /// The saved context.
    pub frame: TrapFrame,
    /// For #PF, the faulting address (`vcpu_info.arch.cr2`); else 0.
    pub cr2: u64,
    /// Where the frame was on the stack (the address of [`TrapFrame::rip`] is
    /// `frame_addr + offset_of!(TrapFrame, rip)`).
    pub frame_addr: u64,
}

impl Trap {
    /// The vector (an [`EVENT_UPCALL`] is never a `Trap`).
    pub const fn vector(&self) -> u8 {
        self.frame.vector as u8
    }

    /// The error code (0 if the vector has none).
    pub const fn error_code(&self) -> u64 {
        self.frame.error_code
    }

    /// The saved RIP.
    pub const fn rip(&self) -> u64 {
        self.frame.rip
    }

    /// The address of the saved RIP in the bounce frame Xen wrote.
    pub const fn rip_slot(&self) -> u64 {
        self.frame_addr + core::mem::offset_of!(TrapFrame, rip) as u64
    }
}

impl fmt::Display for Trap {
    /// `#PF error 0x2 at rip 0x... cr2 0x...` (error code and CR2 only when they apply).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.frame.vector;
        write!(f, "{} (vector {v:#x})", name(v))?;
        if v < 32 && has_error_code(v as u8) {
            write!(f, " error {:#x}", self.frame.error_code)?;
        }
        write!(f, " at rip {:#x}", self.frame.rip)?;
        if v == vector::PF as u64 {
            write!(f, " cr2 {:#x}", self.cr2)?;
        }
        Ok(())
    }
}

/// What a [`Handler`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return to the interrupted context as it was (for a fault: run the instruction
    /// again; for a trap: go on after it).
    Resume,
    /// Return to the interrupted context with this frame (see [`Action::resume_with`]).
    ResumeWith(Resumption),
    /// Not handled here: the innermost [`catch`] gets it, else the domain crashes.
    Unhandled,
}

/// A changed frame to resume with; only [`Action::resume_at`] and
/// [`Action::resume_with`] make one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumption(TrapFrame);

impl Action {
    /// Resume the interrupted context at `rip`, everything else unchanged.
    ///
    /// # Safety
    ///
    /// The interrupted code must be able to continue at `rip` with its registers and
    /// stack as they were (for example: `rip` is just after an instruction it expects
    /// to be skipped).
    pub unsafe fn resume_at(rip: u64) -> Self {
        let mut f = TrapFrame { rip, ..TrapFrame::default() };
        f.vector = RESUME_AT_MARK;
        Self::ResumeWith(Resumption(f))
    }

    /// Resume with `frame`: its general registers, RIP, RFLAGS and RSP replace the
    /// interrupted ones (CS and SS are kept; `vector` and `error_code` are ignored).
    ///
    /// # Safety
    ///
    /// The interrupted code must be able to continue in the state `frame` describes.
    pub unsafe fn resume_with(frame: TrapFrame) -> Self {
        let mut f = frame;
        f.vector = 0;
        Self::ResumeWith(Resumption(f))
    }
}

/// Runs `asm!` instructions inside [`catch`] and returns `(result, address)`: what
/// `catch` returned and the address of the first instruction given, which is where
/// RIP points if that instruction faults.
///
/// The arguments are those of `asm!`: template strings, then operands (positional,
/// named or explicit registers). Use it inside `unsafe`: the caller vouches for the
/// assembly and for [`catch`]'s contract. Don't define label `2` in the template.
/// Output operands must be initialised variables (the assembly runs in a closure).
/// The address goes through one global slot, so a `catch_asm!` nested in a handler
/// that interrupts another one's instructions overwrites the outer address.
///
/// ```no_run
/// use guest_shim::traps::vector;
///
/// let mut low = 0u32;
/// // SAFETY: RDMSR of an MSR the hypervisor does not know faults; nothing is owned.
/// let (r, at) = unsafe {
///     guest_shim::catch_asm!("rdmsr", in("ecx") 0x1234u32, out("eax") low, out("edx") _)
/// };
/// let t = r.unwrap_err();
/// assert_eq!((t.vector(), t.error_code(), t.rip()), (vector::GP, 0, at));
/// ```
#[macro_export]
macro_rules! catch_asm {
    ($($asm:tt)+) => {{
        let catch_asm_result = $crate::traps::catch(|| {
            ::core::arch::asm!(
                // Record where the given instructions start (no flags change).
                "push rax",
                "lea rax, [rip + 2f]",
                "mov [rip + __guest_shim_catch_asm_at], rax",
                "pop rax",
                "2:",
                $($asm)+
            )
        });
        (catch_asm_result, $crate::traps::catch_asm_at())
    }};
}

/// Where the last [`catch_asm!`] block started (the macro writes it from assembly).
#[unsafe(export_name = "__guest_shim_catch_asm_at")]
static CATCH_ASM_AT: AtomicU64 = AtomicU64::new(0);

/// The address the last [`catch_asm!`] recorded.
#[doc(hidden)]
pub fn catch_asm_at() -> u64 {
    CATCH_ASM_AT.load(Ordering::SeqCst)
}

/// Marks a [`Resumption`] that changes only RIP.
const RESUME_AT_MARK: u64 = u64::MAX;

/// A per-vector exception handler. It runs on the interrupted stack, with events
/// masked as they were at the exception (as for Linux's trap gates).
pub type Handler = fn(&Trap) -> Action;

/// Called by the event callback for each pending, unmasked event-channel port.
pub type EventHandler = fn(port: u32);

/// The trap-table entries [`install`] registers: every exception vector 0-31 (DPL 0,
/// but 3 for #BP and #OF as on hardware, so `int3` and `int $4` work) and 0x80
/// (DPL 3), each pointing at its stub ([`stub_address`]), then the terminating entry.
pub fn default_table(stub_address: impl Fn(u8) -> u64) -> [TrapInfo; 34] {
    use pv_abi::arch_x86::FLAT_KERNEL_CS;
    let mut table = [TrapInfo::new(0, 0, false, 0, 0); 34];
    for v in 0..32u8 {
        let dpl = if v == vector::BP || v == vector::OF { 3 } else { 0 };
        table[v as usize] = TrapInfo::new(v, dpl, false, FLAT_KERNEL_CS, stub_address(v));
    }
    table[32] = TrapInfo::new(vector::INT80, 3, false, FLAT_KERNEL_CS, stub_address(vector::INT80));
    table
}

/// Size of one entry stub (`stub_address(v) = stub_address(0) + v * STUB_SIZE`).
pub const STUB_SIZE: u64 = 16;

// ---- Handler registry (plain statics: works on the host too) ----

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static EVENT_HANDLER: AtomicUsize = AtomicUsize::new(0);
static COUNTS: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
static EVENT_UPCALLS: AtomicU64 = AtomicU64::new(0);

/// Sets (`Some`) or clears (`None`) the handler of `vector`; returns the previous one.
pub fn set_handler(vector: u8, handler: Option<Handler>) -> Option<Handler> {
    let new = handler.map_or(0, |h| h as usize);
    let old = HANDLERS[vector as usize].swap(new, Ordering::SeqCst);
    handler_from(old)
}

/// The handler of `vector`.
pub fn handler(vector: u8) -> Option<Handler> {
    handler_from(HANDLERS[vector as usize].load(Ordering::SeqCst))
}

fn handler_from(raw: usize) -> Option<Handler> {
    // SAFETY: non-zero values are only ever stored from a `Handler` (set_handler).
    (raw != 0).then(|| unsafe { core::mem::transmute::<usize, Handler>(raw) })
}

/// Sets or clears the event-channel handler; returns the previous one.
pub fn set_event_handler(handler: Option<EventHandler>) -> Option<EventHandler> {
    let new = handler.map_or(0, |h| h as usize);
    let old = EVENT_HANDLER.swap(new, Ordering::SeqCst);
    // SAFETY: non-zero values are only ever stored from an `EventHandler`.
    (old != 0).then(|| unsafe { core::mem::transmute::<usize, EventHandler>(old) })
}

/// How many times `vector` has been delivered since boot (handled or not).
pub fn count(vector: u8) -> u32 {
    COUNTS[vector as usize].load(Ordering::SeqCst)
}

/// How many event upcalls have been delivered since boot.
pub fn event_upcalls() -> u64 {
    EVENT_UPCALLS.load(Ordering::SeqCst)
}

#[cfg(target_os = "none")]
mod imp {
    use super::*;
    use core::mem::{MaybeUninit, offset_of};
    use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
    use core::sync::atomic::{AtomicPtr, compiler_fence};

    use pv_abi::XenError;
    use pv_abi::callback::{CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE, CallbackFlags, CallbackRegister};
    use pv_abi::hypercall::{HYPERCALL_STUB_SIZE, HYPERVISOR_IRET};
    use pv_abi::sched::SHUTDOWN_CRASH;
    use pv_abi::xen::SharedInfo;
    use spin::Once;

    /// The registers `catch` restores when an exception ends its closure.
    #[repr(C)]
    struct CatchCtx {
        rbx: u64,
        rbp: u64,
        r12: u64,
        r13: u64,
        r14: u64,
        r15: u64,
        /// RSP inside `__guest_shim_catch_call`, after its own adjustment.
        rsp: u64,
        /// The landing address in `__guest_shim_catch_call`.
        landing: u64,
        /// The enclosing `catch`, if any.
        prev: *mut CatchCtx,
        /// `evtchn_upcall_mask` when `catch` was entered, restored at the landing.
        upcall_mask: u8,
        trap: MaybeUninit<Trap>,
    }

    /// RFLAGS bits cleared when landing in `catch`: TF, DF, NT, AC.
    const LANDING_CLEAR_FLAGS: u64 = 1 << 8 | 1 << 10 | 1 << 14 | 1 << 18;
    const RFLAGS_IF: u64 = 1 << 9;

    core::arch::global_asm!(
        ".pushsection .text.guest_shim_traps, \"ax\"",
        // ---- 256 entry stubs, STUB_SIZE bytes apart ----
        ".balign 16",
        ".global __guest_shim_trap_stubs",
        "__guest_shim_trap_stubs:",
        ".set guest_shim_vec, 0",
        ".rept 256",
        "pop rcx",
        "pop r11",
        ".if guest_shim_vec >= 32 || (({ec_mask} >> guest_shim_vec) & 1) == 0",
        "push 0",
        ".endif",
        // push imm32 (the vector), sign-extended: vectors are below 0x80000000.
        ".byte 0x68",
        ".long guest_shim_vec",
        "jmp __guest_shim_trap_common",
        ".balign 16",
        ".set guest_shim_vec, guest_shim_vec + 1",
        ".endr",
        ".global __guest_shim_trap_stubs_end",
        "__guest_shim_trap_stubs_end:",
        // ---- The event callback: {RCX, R11, RIP, CS, RFLAGS, RSP, SS} ----
        ".balign 16",
        ".global __guest_shim_event_entry",
        "__guest_shim_event_entry:",
        "pop rcx",
        "pop r11",
        "push 0",
        ".byte 0x68",
        ".long {event}",
        "jmp __guest_shim_trap_common",
        // ---- Common path: save, dispatch, restore, HYPERVISOR_iret ----
        ".balign 16",
        "__guest_shim_trap_common:",
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rbp",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "cld",
        "mov rdi, rsp",
        "mov rbx, rsp",
        "and rsp, -16",
        "call {dispatch}",
        "mov rsp, rbx",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rbp",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rbx",
        "pop rax",
        // Drop vector and error code: RSP -> RIP, CS, RFLAGS, RSP, SS.
        "lea rsp, [rsp + 16]",
        // iret_context.flags = 0; the stub pushes RCX, R11 and RAX below it.
        "push 0",
        "jmp __guest_shim_hypercall_page + {iret}",
        // ---- The failsafe callback: {RCX, R11, DS, ES, FS, GS, RIP, CS, RFLAGS, RSP, SS} ----
        ".balign 16",
        ".global __guest_shim_failsafe_entry",
        "__guest_shim_failsafe_entry:",
        "cld",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {failsafe}",
        "ud2",
        // ---- catch: (ctx, f, data) -> 0 if f returned, 1 if an exception ended it ----
        ".balign 16",
        ".global __guest_shim_catch_call",
        "__guest_shim_catch_call:",
        "sub rsp, 8",
        "mov [rdi + {c_rbx}], rbx",
        "mov [rdi + {c_rbp}], rbp",
        "mov [rdi + {c_r12}], r12",
        "mov [rdi + {c_r13}], r13",
        "mov [rdi + {c_r14}], r14",
        "mov [rdi + {c_r15}], r15",
        "mov [rdi + {c_rsp}], rsp",
        "lea rax, [rip + __guest_shim_catch_landing]",
        "mov [rdi + {c_landing}], rax",
        "mov rdi, rdx",
        "call rsi",
        "add rsp, 8",
        "xor eax, eax",
        "ret",
        "__guest_shim_catch_landing:",
        "add rsp, 8",
        "mov eax, 1",
        "ret",
        ".popsection",
        ec_mask = const ERROR_CODE_VECTORS,
        event = const EVENT_UPCALL,
        dispatch = sym dispatch,
        failsafe = sym failsafe,
        iret = const HYPERVISOR_IRET as usize * HYPERCALL_STUB_SIZE,
        c_rbx = const offset_of!(CatchCtx, rbx),
        c_rbp = const offset_of!(CatchCtx, rbp),
        c_r12 = const offset_of!(CatchCtx, r12),
        c_r13 = const offset_of!(CatchCtx, r13),
        c_r14 = const offset_of!(CatchCtx, r14),
        c_r15 = const offset_of!(CatchCtx, r15),
        c_rsp = const offset_of!(CatchCtx, rsp),
        c_landing = const offset_of!(CatchCtx, landing),
    );

    unsafe extern "C" {
        static __guest_shim_trap_stubs: [u8; 256 * STUB_SIZE as usize];
        static __guest_shim_trap_stubs_end: u8;
        fn __guest_shim_event_entry();
        fn __guest_shim_failsafe_entry();
        fn __guest_shim_catch_call(
            ctx: *mut CatchCtx,
            f: unsafe extern "C" fn(*mut u8),
            data: *mut u8,
        ) -> u64;
    }

    /// The shared-info page (mapped by `install`).
    static SHARED: AtomicPtr<SharedInfo> = AtomicPtr::new(core::ptr::null_mut());
    /// The innermost active `catch`.
    static CURRENT: AtomicPtr<CatchCtx> = AtomicPtr::new(core::ptr::null_mut());
    static INSTALLED: Once<Result<(), XenError>> = Once::new();

    /// The entry stub of `vector` (what [`install`] puts in the trap table).
    pub fn stub_address(vector: u8) -> u64 {
        (&raw const __guest_shim_trap_stubs) as u64 + vector as u64 * STUB_SIZE
    }

    /// The event callback's entry point.
    pub fn event_entry() -> u64 {
        __guest_shim_event_entry as *const () as u64
    }

    /// The failsafe callback's entry point.
    pub fn failsafe_entry() -> u64 {
        __guest_shim_failsafe_entry as *const () as u64
    }

    /// Maps the shared-info page and registers the trap table ([`default_table`]), the
    /// event callback and the failsafe callback (events masked). The first call does
    /// the work; later ones return its result.
    pub fn install() -> Result<(), XenError> {
        *INSTALLED.call_once(|| {
            let stubs_len = (&raw const __guest_shim_trap_stubs_end) as u64 - stub_address(0);
            assert_eq!(stubs_len, 256 * STUB_SIZE, "trap stubs are not 16 bytes each");
            let page = crate::shared_info::map()?;
            SHARED.store(page.as_ptr(), Ordering::SeqCst);
            let xen = crate::hypercalls();
            let table = default_table(stub_address);
            // SAFETY: every entry points at its vector's stub, which saves the context,
            // dispatches and returns with HYPERVISOR_iret; the table ends with a zero
            // entry.
            unsafe { xen.set_trap_table(&table) }?;
            let event = CallbackRegister::new(CALLBACKTYPE_EVENT, CallbackFlags::empty(), event_entry());
            // SAFETY: the event entry takes Xen's event frame and returns with iret.
            unsafe { xen.callback_register(&event) }?;
            let failsafe =
                CallbackRegister::new(CALLBACKTYPE_FAILSAFE, CallbackFlags::MASK_EVENTS, failsafe_entry());
            // SAFETY: the failsafe entry takes Xen's failsafe frame and never returns.
            unsafe { xen.callback_register(&failsafe) }?;
            Ok(())
        })
    }

    /// Whether [`install`] has succeeded.
    pub fn installed() -> bool {
        matches!(INSTALLED.get(), Some(Ok(())))
    }

    /// Registers `vector` in the trap table with privilege `dpl` (who may raise it
    /// with `int n`: 0 = nobody, 1-2 = the guest kernel, 3 = also guest user mode)
    /// and `mask_events` (mask event upcalls on entry, like an interrupt gate),
    /// pointing at its stub. Exceptions are registered by [`install`].
    pub fn set_gate(vector: u8, dpl: u8, mask_events: bool) -> Result<(), XenError> {
        let entry =
            TrapInfo::new(vector, dpl, mask_events, pv_abi::arch_x86::FLAT_KERNEL_CS, stub_address(vector));
        let table = [entry, TrapInfo::new(0, 0, false, 0, 0)];
        // SAFETY: the entry points at the vector's stub (see `install`).
        unsafe { crate::hypercalls().set_trap_table(&table) }
    }

    /// The shared-info page, once `install` mapped it.
    fn shared() -> *mut SharedInfo {
        SHARED.load(Ordering::Relaxed)
    }

    /// vCPU 0's `evtchn_upcall_mask`.
    fn upcall_mask() -> u8 {
        let si = shared();
        if si.is_null() {
            return 1;
        }
        // SAFETY: the page is mapped for good by `install`; the byte is plain data.
        unsafe { read_volatile(addr_of!((*si).vcpu_info[0].evtchn_upcall_mask)) }
    }

    /// Runs `f`; an exception that no [`Handler`] resumes from ends it, and is returned.
    ///
    /// Calls [`install`] first (and panics if that fails). On an exception, execution
    /// continues inside `catch` with the stack and callee-saved registers it had when
    /// it called `f`, and the event mask it had then: what `f` was doing is abandoned,
    /// and the values it owned are leaked, not dropped.
    ///
    /// # Safety
    ///
    /// Wherever `f` can raise an exception, nothing it (or anything it called) holds
    /// may need its destructor to run: no lock guards, no borrowed `RefCell`s, no
    /// half-updated data structures outside `f`. The usual `f` is one `asm!` block or
    /// a volatile access.
    #[allow(
        clippy::result_large_err,
        reason = "a Trap is the whole saved context, returned by value: no allocator here"
    )]
    pub unsafe fn catch<R, F: FnOnce() -> R>(f: F) -> Result<R, Trap> {
        if let Err(e) = install() {
            panic!("traps::catch: install failed: {e}");
        }
        struct Data<F, R> {
            f: Option<F>,
            out: MaybeUninit<R>,
        }
        unsafe extern "C" fn run<F: FnOnce() -> R, R>(data: *mut u8) {
            // SAFETY: `catch` passes a pointer to its `Data<F, R>`, live for the call.
            let data = unsafe { &mut *data.cast::<Data<F, R>>() };
            if let Some(f) = data.f.take() {
                data.out.write(f());
            }
        }
        let mut data = Data { f: Some(f), out: MaybeUninit::<R>::uninit() };
        let mut ctx = CatchCtx {
            rbx: 0,
            rbp: 0,
            r12: 0,
            r13: 0,
            r14: 0,
            r15: 0,
            rsp: 0,
            landing: 0,
            prev: CURRENT.load(Ordering::SeqCst),
            upcall_mask: upcall_mask(),
            trap: MaybeUninit::uninit(),
        };
        let ctx_ptr = &raw mut ctx;
        CURRENT.store(ctx_ptr, Ordering::SeqCst);
        // SAFETY: `ctx` and `data` live across the call; the assembly saves the
        // callee-saved registers and RSP in `ctx` and calls `run`. If an exception
        // ends `f`, `dispatch` resumes at the landing with exactly those registers,
        // so the call returns (1) as an ordinary call would; the caller's contract
        // covers what `f` abandons.
        let trapped = unsafe { __guest_shim_catch_call(ctx_ptr, run::<F, R>, (&raw mut data).cast()) };
        compiler_fence(Ordering::SeqCst);
        // SAFETY: `ctx` is ours; `dispatch` may have written it during the call.
        let prev = unsafe { read_volatile(addr_of!((*ctx_ptr).prev)) };
        CURRENT.store(prev, Ordering::SeqCst);
        if trapped == 0 {
            // SAFETY: `run` wrote `out` before returning normally.
            Ok(unsafe { data.out.assume_init() })
        } else {
            // SAFETY: `dispatch` wrote the trap before sending execution to the landing.
            Err(unsafe { read_volatile(addr_of!((*ctx_ptr).trap)).assume_init() })
        }
    }

    /// Called by the entry stubs with the saved context.
    extern "C" fn dispatch(frame: *mut TrapFrame) {
        // SAFETY: the stub passes the frame it built on this stack, live until the
        // return to the stub.
        let frame = unsafe { &mut *frame };
        if frame.vector == EVENT_UPCALL {
            event_upcall();
            return;
        }
        let vector = frame.vector as u8;
        // CR2 first, before anything here can fault and overwrite it.
        let cr2 = if vector == super::vector::PF {
            let si = shared();
            // SAFETY: the page is mapped for good by `install` (without it the trap
            // table is not installed and nothing is delivered here).
            unsafe { read_volatile(addr_of!((*si).vcpu_info[0].arch.cr2)) }
        } else {
            0
        };
        COUNTS[vector as usize].fetch_add(1, Ordering::SeqCst);
        let trap = Trap { frame: *frame, cr2, frame_addr: frame as *mut TrapFrame as u64 };
        if let Some(h) = handler(vector) {
            match h(&trap) {
                Action::Resume => return,
                Action::ResumeWith(Resumption(new)) => {
                    if new.vector == RESUME_AT_MARK {
                        frame.rip = new.rip;
                    } else {
                        let (cs, ss) = (frame.cs, frame.ss);
                        *frame =
                            TrapFrame { vector: frame.vector, error_code: frame.error_code, cs, ss, ..new };
                    }
                    return;
                }
                Action::Unhandled => {}
            }
        }
        let ctx = CURRENT.load(Ordering::SeqCst);
        if !ctx.is_null() {
            // SAFETY: a non-null CURRENT is a live `CatchCtx` of an active `catch`
            // further up this stack (it unlinks itself before returning).
            unsafe {
                let c = &mut *ctx;
                CURRENT.store(c.prev, Ordering::SeqCst);
                write_volatile(addr_of_mut!(c.trap), MaybeUninit::new(trap));
                frame.rbx = c.rbx;
                frame.rbp = c.rbp;
                frame.r12 = c.r12;
                frame.r13 = c.r13;
                frame.r14 = c.r14;
                frame.r15 = c.r15;
                frame.rsp = c.rsp;
                frame.rip = c.landing;
                frame.rflags &= !(LANDING_CLEAR_FLAGS | RFLAGS_IF);
                if c.upcall_mask == 0 {
                    frame.rflags |= RFLAGS_IF;
                }
            }
            return;
        }
        report(&trap);
    }

    /// Prints an unhandled exception and crashes the domain.
    fn report(trap: &Trap) -> ! {
        let f = &trap.frame;
        crate::console::emergency(format_args!(
            "guest-shim: unhandled exception {trap}\n\
             cs {:#x} rflags {:#x} rsp {:#x} ss {:#x}\n\
             rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\n\
             rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}\n\
             r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}\n\
             r13 {:#018x} r14 {:#018x} r15 {:#018x}\n",
            f.cs,
            f.rflags,
            f.rsp,
            f.ss,
            f.rax,
            f.rbx,
            f.rcx,
            f.rdx,
            f.rsi,
            f.rdi,
            f.rbp,
            f.r8,
            f.r9,
            f.r10,
            f.r11,
            f.r12,
            f.r13,
            f.r14,
            f.r15,
        ));
        crash_now()
    }

    /// Crashes the domain without touching the console lock (the exception may have
    /// hit while it was held).
    fn crash_now() -> ! {
        let xen = crate::hypercalls();
        let _ = xen.sched_shutdown(SHUTDOWN_CRASH);
        loop {
            let _ = xen.sched_yield();
        }
    }

    /// The failsafe callback: print the frame and crash.
    extern "C" fn failsafe(frame: *const [u64; 11]) -> ! {
        // SAFETY: the entry passes RSP as Xen left it: the 11-word failsafe frame.
        let f = unsafe { *frame };
        crate::console::emergency(format_args!(
            "guest-shim: failsafe callback: ds {:#x} es {:#x} fs {:#x} gs {:#x} \
             rip {:#x} cs {:#x} rflags {:#x} rsp {:#x} ss {:#x}\n",
            f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]
        ));
        crash_now()
    }

    /// The event upcall: clear `evtchn_upcall_pending`, then take each pending and
    /// unmasked port (2-level ABI), clear its pending bit and hand it to the handler.
    fn event_upcall() {
        EVENT_UPCALLS.fetch_add(1, Ordering::SeqCst);
        let si = shared();
        if si.is_null() {
            return;
        }
        let handler = EVENT_HANDLER.load(Ordering::SeqCst);
        // SAFETY: the shared-info page is mapped for good; the words used atomically
        // are 8-byte aligned fields that Xen also updates with atomic operations.
        unsafe {
            write_volatile(addr_of_mut!((*si).vcpu_info[0].evtchn_upcall_pending), 0);
            let sel = AtomicU64::from_ptr(addr_of_mut!((*si).vcpu_info[0].evtchn_pending_sel));
            let mut words = sel.swap(0, Ordering::SeqCst);
            while words != 0 {
                let w = words.trailing_zeros() as usize;
                words &= words - 1;
                let pending = AtomicU64::from_ptr(addr_of_mut!((*si).evtchn_pending[w]));
                let mask = read_volatile(addr_of!((*si).evtchn_mask[w]));
                let mut bits = pending.load(Ordering::SeqCst) & !mask;
                while bits != 0 {
                    let b = bits.trailing_zeros();
                    bits &= bits - 1;
                    pending.fetch_and(!(1u64 << b), Ordering::SeqCst);
                    if handler != 0 {
                        let h = core::mem::transmute::<usize, EventHandler>(handler);
                        h(w as u32 * 64 + b);
                    }
                }
            }
        }
    }
}

#[cfg(target_os = "none")]
pub use imp::{catch, event_entry, failsafe_entry, install, installed, set_gate, stub_address};

#[cfg(not(target_os = "none"))]
mod host {
    use super::*;
    use crate::host::unavailable;
    use pv_abi::XenError;

    /// Installs the trap table (only in a guest).
    pub fn install() -> Result<(), XenError> {
        unavailable("traps::install")
    }

    /// Whether the trap table is installed (never on the host).
    pub fn installed() -> bool {
        false
    }

    /// Registers a gate (only in a guest).
    pub fn set_gate(_vector: u8, _dpl: u8, _mask_events: bool) -> Result<(), XenError> {
        unavailable("traps::set_gate")
    }

    /// The entry stub of a vector (only in a guest).
    pub fn stub_address(_vector: u8) -> u64 {
        unavailable("traps::stub_address")
    }

    /// The event callback (only in a guest).
    pub fn event_entry() -> u64 {
        unavailable("traps::event_entry")
    }

    /// The failsafe callback (only in a guest).
    pub fn failsafe_entry() -> u64 {
        unavailable("traps::failsafe_entry")
    }

    /// Runs `f`, catching exceptions (only in a guest).
    ///
    /// # Safety
    ///
    /// As in a guest.
    #[allow(
        clippy::result_large_err,
        reason = "a Trap is the whole saved context, returned by value: no allocator here"
    )]
    pub unsafe fn catch<R, F: FnOnce() -> R>(_f: F) -> Result<R, Trap> {
        unavailable("traps::catch")
    }
}

#[cfg(not(target_os = "none"))]
pub use host::{catch, event_entry, failsafe_entry, install, installed, set_gate, stub_address};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn frame_layout_matches_the_stubs() {
        // The common stub pushes RAX first and R15 last; the bounce frame follows.
        assert_eq!(size_of::<TrapFrame>(), 22 * 8);
        assert_eq!(offset_of!(TrapFrame, r15), 0);
        assert_eq!(offset_of!(TrapFrame, rax), 14 * 8);
        assert_eq!(offset_of!(TrapFrame, vector), 15 * 8);
        assert_eq!(offset_of!(TrapFrame, error_code), 16 * 8);
        assert_eq!(offset_of!(TrapFrame, rip), 17 * 8);
        assert_eq!(offset_of!(TrapFrame, ss), 21 * 8);
    }

    #[test]
    fn error_code_vectors() {
        let with: std::vec::Vec<u8> = (0..=255u8).filter(|&v| has_error_code(v)).collect();
        assert_eq!(with, [8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
        assert_eq!(name(14), "#PF");
        assert_eq!(name(0x80), "int");
        assert_eq!(name(EVENT_UPCALL), "event");
    }

    #[test]
    fn frame_accessors_and_display() {
        let t = Trap {
            frame: TrapFrame {
                vector: 14,
                error_code: 2,
                rip: 0xffff_ffff_8000_1000,
                cs: 1 << 32 | 0xe030,
                ..TrapFrame::default()
            },
            cr2: 0x10,
            frame_addr: 0x1000,
        };
        assert_eq!(t.frame.cs_selector(), 0xe030);
        assert_eq!(t.frame.saved_upcall_mask(), 1);
        assert!(t.frame.from_kernel());
        assert_eq!(t.rip_slot(), 0x1000 + 17 * 8);
        assert_eq!(std::format!("{t}"), "#PF (vector 0xe) error 0x2 at rip 0xffffffff80001000 cr2 0x10");
        let ud = Trap { frame: TrapFrame { vector: 6, rip: 5, ..TrapFrame::default() }, ..t };
        assert_eq!(std::format!("{ud}"), "#UD (vector 0x6) at rip 0x5");
    }

    #[test]
    fn handlers_register_and_clear() {
        fn resume(_: &Trap) -> Action {
            Action::Resume
        }
        let h: Handler = resume;
        assert!(set_handler(200, Some(h)).is_none());
        assert_eq!(handler(200).map(|f| f as usize), Some(h as usize));
        assert_eq!(set_handler(200, None).map(|f| f as usize), Some(h as usize));
        assert!(handler(200).is_none());
    }

    #[test]
    fn default_table_shape() {
        let t = default_table(|v| 0x1000 + v as u64 * STUB_SIZE);
        assert_eq!(t[3].dpl(), 3);
        assert_eq!(t[4].dpl(), 3);
        assert_eq!(t[14].dpl(), 0);
        assert_eq!((t[32].vector, t[32].dpl()), (0x80, 3));
        assert_eq!(t[14].address, 0x1000 + 14 * 16);
        assert_eq!(t[33].address, 0, "the table ends with a zero entry");
        assert!(t.iter().all(|e| !e.masks_events()));
    }
}
