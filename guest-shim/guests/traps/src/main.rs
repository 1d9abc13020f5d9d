// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: exceptions of the guest kernel, bounced by the hypervisor to the
//! handlers of its trap table (`HYPERVISOR_set_trap_table`), through guest-shim's
//! [`traps`] runtime. One `RESULT` line per check, then `SUMMARY` and poweroff.
//!
//! What is checked, against what Xen 4.17 does:
//! - each exception a kernel can raise arrives with the right vector, error code and
//!   RIP (the faulting instruction for faults, the next one for traps), and CR2 from
//!   `vcpu_info.arch.cr2` for #PF;
//! - the bounce frame: the saved CS of a kernel context has RPL 0 and the saved event
//!   mask in bits 32-39, RFLAGS.IF is the inverse of that mask, RSP and every general
//!   register are the interrupted ones, and the frame sits 16-byte aligned below the
//!   interrupted stack;
//! - handlers that resume (in place, after the instruction, with changed registers),
//!   exceptions nested in a handler, interrupt gates masking events;
//! - `int n` against the trap table's DPL, and what `set_trap_table` answers for bad
//!   entries and bad pointers;
//! - the event callback: an event sent to ourselves arrives once events are unmasked.

#![cfg_attr(target_os = "none", no_std, no_main)]
// Probes return `Result<_, Trap>` (the whole saved context) by value, as
// `traps::catch` does.
#![allow(clippy::result_large_err)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::{
    FLAT_KERNEL_CS, FLAT_KERNEL_DS, FLAT_KERNEL_SS, HYPERVISOR_VIRT_START, TrapInfo,
};
use guest_shim::pv_abi::callback::{
    CALLBACKOP_REGISTER, CALLBACKTYPE_EVENT, CALLBACKTYPE_SYSENTER_DEPRECATED, CallbackFlags,
    CallbackRegister,
};
use guest_shim::pv_abi::hypercall::{
    HYPERVISOR_CALLBACK_OP, HYPERVISOR_SET_CALLBACKS, HYPERVISOR_SET_TRAP_TABLE,
};
use guest_shim::pv_abi::xen::UvmfFlags;
use guest_shim::report::{is_trap, no_trap};
use guest_shim::traps::{self, Action, Trap, pf, vector};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, catch_asm, cpu, println, pt};

guest_shim::entry!(start);

/// Never mapped in a PV guest's lower half (nothing is, but this is clearly ours).
const UNMAPPED: u64 = 0x0000_1234_5678_9ab8;
/// The smallest non-canonical address above the lower half.
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;
/// Xen's direct map: in the hypervisor hole, present, supervisor-only.
const XEN_DIRECTMAP: u64 = 0xffff_8300_0000_0000;
/// RFLAGS bits.
const TF: u64 = 1 << 8;
const IF: u64 = 1 << 9;
const IOPL: u64 = 3 << 12;
const AC: u64 = 1 << 18;
/// CR0.AM.
const CR0_AM: u64 = 1 << 18;
/// The kernel code selector with RPL 0, as Xen writes it in a kernel bounce frame.
const KERNEL_CS_RPL0: u64 = FLAT_KERNEL_CS as u64 & !3;

fn start(_si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    if let Err(e) = traps::install() {
        t.fail("install", format_args!("traps::install: {e}"));
        t.finish()
    }
    t.pass("install");
    let shared = guest_shim::shared_info::map().expect("install mapped it");
    println!("traps: stubs at {:#x}, upcall mask {}", traps::stub_address(0), shared.upcall_mask(0));

    frame_layout(&mut t);
    let soft = SoftInt::probe(&mut t);
    faults(&mut t, &soft);
    page_faults(&mut t, &xen);
    fpu_and_simd(&mut t, &xen);
    alignment_check(&mut t);
    segments(&mut t, &xen);
    single_step(&mut t, &xen);
    handlers(&mut t);
    events_in_frames(&mut t);
    software_interrupts(&mut t, &soft);
    bad_trap_tables(&mut t, &xen, &soft);
    callbacks(&mut t, &xen);
    event_delivery(&mut t, &xen);
    t.finish()
}

// ---- Helpers ----

/// Reads CR0 (Xen emulates the read).
fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: Xen emulates `mov %cr0` for a PV kernel; no memory is touched.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}

/// A page of our own whose mapping the tests change.
#[repr(C, align(4096))]
struct Page([u64; 512]);

static mut SCRATCH: Page = Page([0; 512]);
static mut GDT: Page = Page([0; 512]);

/// The PTE that maps `va` now.
fn pte_of(va: u64) -> u64 {
    pt::lookup(va).pte().expect("our own page is mapped")
}

/// Remaps `va` to the same frame with `flags` (present, accessed and whatever else).
///
/// # Safety
///
/// Nothing may rely on the old permissions of the page while the new ones hold.
unsafe fn remap(xen: &Hypercalls, va: u64, flags: u64) -> Result<(), Errno> {
    let pte = (pte_of(va) & pt::PTE_ADDR_MASK) | flags;
    // SAFETY: forwarded to the caller.
    unsafe { xen.update_va_mapping(va, pte, UvmfFlags::INVLPG) }
}

const RW_FLAGS: u64 = pt::PTE_PRESENT | pt::PTE_RW | pt::PTE_ACCESSED | pt::PTE_DIRTY;
const RO_FLAGS: u64 = pt::PTE_PRESENT | pt::PTE_ACCESSED;

// ---- The bounce frame ----

/// What the interrupted code saw just before the faulting instruction.
#[repr(C)]
#[derive(Default)]
struct Before {
    rflags: u64,
    rip: u64,
    rsp: u64,
}

/// The frame of a `ud2` with every general register set to a known value.
fn frame_layout(t: &mut Tests) {
    let mut before = Before::default();
    let b = &raw mut before;
    // SAFETY: the asm saves RBX and RBP on the stack and sets every register before a
    // ud2; `catch` restores the callee-saved registers and the stack at the landing.
    // Nothing is owned by the closure.
    let r = unsafe {
        traps::catch(|| {
            core::arch::asm!(
                "push rbx",
                "push rbp",
                "pushfq",
                "pop rax",
                "mov [rdi], rax",
                "lea rax, [rip + 3f]",
                "mov [rdi + 8], rax",
                "mov [rdi + 16], rsp",
                "mov rax, 0x1010101010101010",
                "mov rbx, 0x2020202020202020",
                "mov rcx, 0x3030303030303030",
                "mov rdx, 0x4040404040404040",
                "mov rsi, 0x5050505050505050",
                "mov rbp, 0x6060606060606060",
                "mov r8, 0x8080808080808080",
                "mov r9, 0x9090909090909090",
                "mov r10, 0xa0a0a0a0a0a0a0a0",
                "mov r11, 0xb0b0b0b0b0b0b0b0",
                "mov r12, 0xc0c0c0c0c0c0c0c0",
                "mov r13, 0xd0d0d0d0d0d0d0d0",
                "mov r14, 0xe0e0e0e0e0e0e0e0",
                "mov r15, 0xf0f0f0f0f0f0f0f0",
                "mov rdi, 0x7070707070707070",
                "3:",
                "ud2",
                inout("rdi") b => _,
                out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            )
        })
    };
    let trap = match r {
        Err(trap) => trap,
        Ok(()) => {
            t.fail("frame-ud2", "ud2 raised no exception");
            return;
        }
    };
    let f = trap.frame;
    println!(
        "traps: ud2 frame at {:#x}: rip {:#x} cs {:#x} rflags {:#x} rsp {:#x} ss {:#x} \
         (before: rflags {:#x} rsp {:#x})",
        trap.frame_addr, f.rip, f.cs, f.rflags, f.rsp, f.ss, before.rflags, before.rsp
    );
    t.check("frame-ud2", is_trap::<()>(&Err(trap), vector::UD, 0, before.rip, None));
    // Xen clears the RPL of a kernel context's CS ("indicate kernel context") and puts
    // the saved evtchn_upcall_mask (1: events are masked since boot) in bits 32-39.
    t.check("frame-cs-kernel-rpl0", Outcome::eq(f.cs, 1 << 32 | KERNEL_CS_RPL0));
    t.check("frame-ss", Outcome::eq(f.ss, FLAT_KERNEL_SS as u64));
    // IF reads as !saved mask (0 here, although the real IF is set); IOPL reads 0.
    let expected_rflags = before.rflags & !(IF | IOPL);
    t.check("frame-rflags", Outcome::eq(f.rflags, expected_rflags));
    t.check("frame-rsp", Outcome::eq(f.rsp, before.rsp));
    // The frame ends at the interrupted RSP rounded down to 16 bytes: RIP, CS, RFLAGS,
    // RSP, SS are its last five words.
    t.check("frame-aligned-below-rsp", Outcome::eq(trap.rip_slot() + 5 * 8, before.rsp & !15));
    let gprs = [
        ("rax", f.rax, 0x1010101010101010),
        ("rbx", f.rbx, 0x2020202020202020),
        ("rcx", f.rcx, 0x3030303030303030),
        ("rdx", f.rdx, 0x4040404040404040),
        ("rsi", f.rsi, 0x5050505050505050),
        ("rbp", f.rbp, 0x6060606060606060),
        ("rdi", f.rdi, 0x7070707070707070),
        ("r8", f.r8, 0x8080808080808080),
        ("r9", f.r9, 0x9090909090909090),
        ("r10", f.r10, 0xa0a0a0a0a0a0a0a0),
        ("r11", f.r11, 0xb0b0b0b0b0b0b0b0),
        ("r12", f.r12, 0xc0c0c0c0c0c0c0c0),
        ("r13", f.r13, 0xd0d0d0d0d0d0d0d0),
        ("r14", f.r14, 0xe0e0e0e0e0e0e0e0),
        ("r15", f.r15, 0xf0f0f0f0f0f0f0f0),
    ];
    // RCX and R11 come from the bounce frame, the rest are still in the registers.
    let wrong = gprs.iter().find(|(_, got, want)| got != want);
    t.check(
        "frame-gprs",
        match wrong {
            None => Outcome::Pass,
            Some((name, got, want)) => Outcome::fail(format_args!("{name} {got:#x}, expected {want:#x}")),
        },
    );
    t.check_eq("frame-from-kernel", f.from_kernel(), true);
}

// ---- Faults and traps ----

fn faults(t: &mut Tests, soft: &SoftInt) {
    // SAFETY: (this and each catch_asm! below) one asm block that raises the exception
    // named in its check; `catch` restores the stack and callee-saved registers; the
    // closure owns nothing.
    let (r, at) = unsafe { catch_asm!("ud2") };
    t.check("ud-ud2", is_trap(&r, vector::UD, 0, at, None));
    // INTO does not exist in 64-bit mode.
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!(".byte 0xce") };
    t.check("ud-into-64bit", is_trap(&r, vector::UD, 0, at, None));

    // SAFETY: as above; EDX:EAX / ECX with ECX = 0.
    let (r, at) = unsafe {
        catch_asm!(
            "div ecx",
            inout("eax") 1u32 => _, inout("edx") 0u32 => _, in("ecx") 0u32,
        )
    };
    t.check("de-div-zero", is_trap(&r, vector::DE, 0, at, None));
    // SAFETY: as above. INT_MIN / -1 overflows the quotient: also #DE.
    let (r, at) = unsafe {
        catch_asm!(
            "idiv ecx",
            inout("eax") 0x8000_0000u32 => _, inout("edx") 0xffff_ffffu32 => _, in("ecx") -1i32,
        )
    };
    t.check("de-idiv-overflow", is_trap(&r, vector::DE, 0, at, None));

    // int3 is a trap: RIP is the next instruction.
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("int3") };
    t.check("bp-int3", is_trap(&r, vector::BP, 0, at + 1, None));
    // The two-byte `int $3` is a software interrupt through the DPL-3 gate.
    // (Spelled as bytes: assemblers turn `int 3` into the one-byte int3.)
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!(".byte 0xcd, 0x03") };
    t.check("bp-int-3", is_trap(&r, vector::BP, 0, at + 2, None));
    // #OF only as `int $4` in 64-bit mode; the gate has DPL 3.
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("int 4") };
    t.check("of-int-4", is_trap(&r, vector::OF, 0, at + 2, None));
    // #BR only as `int $5`; DPL 0, so the kernel (ring 3 really, 1 virtually) may not:
    // #GP with the IDT bit and the vector in the error code.
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("int 5") };
    t.check("br-int-5-dpl0-gp", is_trap(&r, vector::GP, soft.error_code(5), at, None));

    // Non-canonical addresses: #GP(0), or #SS(0) through the stack segment.
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("mov rax, [rcx]", in("rcx") NON_CANONICAL, out("rax") _) };
    t.check("gp-non-canonical-read", is_trap(&r, vector::GP, 0, at, None));
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("mov [rcx], rax", in("rcx") !NON_CANONICAL, in("rax") 0u64) };
    t.check("gp-non-canonical-write", is_trap(&r, vector::GP, 0, at, None));
    // Through RBP the access uses SS: architecturally #SS(0), but QEMU's TCG raises
    // #GP(0) for every non-canonical address. Either is bounced as it came.
    // SAFETY: as above; RBP is saved and `catch` restores it at the landing.
    let (r, _) = unsafe {
        catch_asm!(
            "push rbp",
            "mov rbp, rcx",
            "lea rax, [rip + 3f]",
            "mov [{at2}], rax",
            "3:",
            "mov rax, [rbp]",
            "pop rbp",
            in("rcx") NON_CANONICAL,
            at2 = in(reg) &raw const SS_AT,
            out("rax") _,
        )
    };
    let mov_at = SS_AT.load(Ordering::SeqCst);
    let ss = is_trap(&r, vector::SS, 0, mov_at, None);
    let gp = is_trap(&r, vector::GP, 0, mov_at, None);
    if let Err(trap) = r {
        println!("traps: non-canonical access through RBP: {trap}");
    }
    t.check("ss-or-gp-non-canonical-stack", if gp.passed() { gp } else { ss });
    // A privileged instruction Xen does not emulate.
    let desc = [0u64; 2];
    // SAFETY: as above; LIDT reads 10 bytes of `desc` if it runs at all.
    let (r, at) = unsafe { catch_asm!("lidt [{}]", in(reg) &desc) };
    t.check("gp-lidt", is_trap(&r, vector::GP, 0, at, None));
    // HLT in the guest kernel: not emulated by Xen (ring 3 really): #GP(0).
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("hlt") };
    t.check("gp-hlt", is_trap(&r, vector::GP, 0, at, None));
    // Changing CR0 bits other than TS: refused with #GP(0).
    let cr0 = read_cr0();
    // SAFETY: as above; if Xen accepted it, WP would be clear, which nothing here
    // depends on (and the next check would fail).
    let (r, at) = unsafe { catch_asm!("mov cr0, {}", in(reg) cr0 & !(1 << 16)) };
    t.check("gp-cr0-clear-wp", is_trap(&r, vector::GP, 0, at, None));
    t.skip(
        "ts",
        "#TS needs a task switch or a far transfer through a bad TSS: not reachable \
         from a 64-bit PV kernel",
    );
}

fn page_faults(t: &mut Tests, xen: &Hypercalls) {
    // SAFETY: (this and each catch_asm! below) one asm block that faults on the named
    // access; the closure owns nothing.
    let (r, at) = unsafe { catch_asm!("mov rax, [rcx]", in("rcx") UNMAPPED, out("rax") _) };
    t.check("pf-read-unmapped", is_trap(&r, vector::PF, 0, at, Some(UNMAPPED)));
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("mov [rcx], eax", in("rcx") UNMAPPED, in("eax") 7u32) };
    t.check("pf-write-unmapped", is_trap(&r, vector::PF, pf::WRITE, at, Some(UNMAPPED)));
    // The fault is reported for the guest kernel: no user bit although the CPU was in
    // ring 3. A fetch: RIP and CR2 are the target; the return address was pushed.
    let target = UNMAPPED & !0xfff;
    let mut sp = 0u64;
    traps::set_handler(vector::PF, Some(peek_return_address));
    // SAFETY: as above; the call pushes its return address and faults on the fetch.
    let (r, at) = unsafe {
        catch_asm!("mov [{sp}], rsp", "call {target}", sp = in(reg) &raw mut sp, target = in(reg) target)
    };
    traps::set_handler(vector::PF, None);
    t.check("pf-fetch-unmapped", is_trap(&r, vector::PF, pf::FETCH, target, Some(target)));
    // The frame's RSP points at the return address: the end of the `call` (the block
    // is `mov [reg], rsp` then `call reg`, at most 8 bytes).
    let ret = RETURN_ADDRESS.load(Ordering::SeqCst);
    if let Err(trap) = r {
        t.check(
            "pf-fetch-return-address",
            Outcome::ensure(
                trap.frame.rsp == sp - 8 && ret > at && ret <= at + 8,
                format_args!("rsp {:#x} (before {sp:#x}) -> {ret:#x}, block at {at:#x}", trap.frame.rsp),
            ),
        );
    }

    // A read-only page of ours: reading works, writing is a protection fault (3).
    let va = (&raw const SCRATCH) as u64;
    // SAFETY: nothing writes SCRATCH while it is read-only but the probe below.
    let remapped = unsafe { remap(xen, va, RO_FLAGS) };
    t.check("pf-remap-ro", remapped);
    // SAFETY: as above.
    let (r, _) = unsafe { catch_asm!("mov rax, [rcx]", in("rcx") va, out("rax") _) };
    t.check("pf-read-ro-ok", no_trap(&r));
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("mov [rcx], eax", in("rcx") va + 8, in("eax") 7u32) };
    t.check("pf-write-ro", is_trap(&r, vector::PF, pf::PRESENT | pf::WRITE, at, Some(va + 8)));
    // CR2 is also what an emulated `mov %cr2` reads after the fault.
    let cr2: u64;
    // SAFETY: Xen emulates the read of CR2 for a PV kernel.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    t.check("pf-mov-from-cr2", Outcome::eq(cr2, va + 8));
    // No-execute: a present page fetched with NX set.
    // SAFETY: the page holds no code and is only fetched by the probe below.
    let remapped = unsafe { remap(xen, va, RO_FLAGS | pt::PTE_NX) };
    t.check("pf-remap-nx", remapped);
    // SAFETY: as above; the call faults on the fetch.
    let (r, _) = unsafe { catch_asm!("call {}", in(reg) va) };
    t.check("pf-fetch-nx", is_trap(&r, vector::PF, pf::PRESENT | pf::FETCH, va, Some(va)));
    // SAFETY: back to the builder's permissions; nothing refers to the page.
    let restored = unsafe { remap(xen, va, RW_FLAGS) };
    t.check("pf-remap-rw", restored);

    // The M2P table Xen maps read-only (the hypervisor hole, user-readable): reads
    // work, writes are protection faults.
    let m2p = HYPERVISOR_VIRT_START;
    // SAFETY: as above.
    let (r, _) = unsafe { catch_asm!("mov rax, [rcx]", in("rcx") m2p, out("rax") _) };
    t.check("pf-m2p-read-ok", no_trap(&r));
    // SAFETY: as above; the write faults, so the M2P is not changed.
    let (r, at) = unsafe { catch_asm!("mov [rcx], rax", in("rcx") m2p, in("rax") 0u64) };
    t.check("pf-m2p-write", is_trap(&r, vector::PF, pf::PRESENT | pf::WRITE, at, Some(m2p)));
    // Xen's own memory (the direct map): present but supervisor-only.
    // SAFETY: as above; the read faults.
    let (r, at) = unsafe { catch_asm!("mov rax, [rcx]", in("rcx") XEN_DIRECTMAP, out("rax") _) };
    t.check("pf-xen-private-read", is_trap(&r, vector::PF, pf::PRESENT, at, Some(XEN_DIRECTMAP)));
    // The runtime's stack guard page (unmapped at start of day).
    let guard = guest_shim::stack_guard();
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("mov rax, [rcx]", in("rcx") guard + 0x10, out("rax") _) };
    t.check("pf-stack-guard", is_trap(&r, vector::PF, 0, at, Some(guard + 0x10)));
}

/// #NM (virtual CR0.TS), #MF (x87) and #XM (SSE).
fn fpu_and_simd(t: &mut Tests, xen: &Hypercalls) {
    const CR0_TS: u64 = 1 << 3;
    // SAFETY: sets the virtual CR0.TS; the next FPU instruction raises #NM, which the
    // probe below catches.
    let set = unsafe { xen.fpu_taskswitch(true) };
    t.check("nm-fpu-taskswitch", set);
    t.check(
        "nm-cr0-ts-set",
        Outcome::ensure(read_cr0() & CR0_TS != 0, format_args!("cr0 {:#x}", read_cr0())),
    );
    // SAFETY: as in `faults`.
    let (r, at) = unsafe { catch_asm!("fninit") };
    t.check("nm-fninit", is_trap(&r, vector::NM, 0, at, None));
    // Xen clears the virtual TS when it delivers #NM (Linux relies on it).
    t.check("nm-clears-ts", Outcome::ensure(read_cr0() & CR0_TS == 0, format_args!("cr0 {:#x}", read_cr0())));
    // SAFETY: as above; TS is clear now.
    let (r, _) = unsafe { catch_asm!("fninit") };
    t.check("nm-then-fpu-works", no_trap(&r));

    // x87 divide by zero with ZM unmasked: pending, raised by the next FWAIT.
    let cw: u16 = 0x037f & !(1 << 2);
    // SAFETY: as in `faults`; only the x87 state changes, and it is reset after.
    let (r, at) = unsafe {
        catch_asm!(
            "fninit",
            "fldcw [{cw}]",
            "fld1",
            "fldz",
            "fdivp st(1), st",
            "lea {t}, [rip + 3f]",
            "mov [{at2}], {t}",
            "3:",
            "fwait",
            cw = in(reg) &cw,
            t = out(reg) _,
            at2 = in(reg) &raw const MF_AT,
        )
    };
    let fwait_at = MF_AT.load(Ordering::SeqCst);
    t.check(
        "mf-x87-divide-by-zero",
        Outcome::ensure(fwait_at > at, "no fwait address").and(is_trap(&r, vector::MF, 0, fwait_at, None)),
    );
    // SAFETY: clears the pending x87 exception and resets the FPU.
    unsafe { core::arch::asm!("fnclex", "fninit", options(nomem, nostack)) };

    // SSE divide by zero with ZM unmasked in MXCSR: #XM at the DIVSS (CR4.OSXMMEXCPT
    // is set for PV guests). MXCSR is stored after, if the division completes.
    let mxcsr: u32 = 0x1f80 & !(1 << 9);
    let default_mxcsr: u32 = 0x1f80;
    let mut after = 0u32;
    // SAFETY: as in `faults`; XMM0/XMM1 are not used by this soft-float program, and
    // MXCSR is reset after.
    let (r, _) = unsafe {
        catch_asm!(
            "ldmxcsr [{m}]",
            "mov {t:e}, 0x3f800000",
            "movd xmm0, {t:e}",
            "xorps xmm1, xmm1",
            "lea {t}, [rip + 3f]",
            "mov [{at2}], {t}",
            "3:",
            "divss xmm0, xmm1",
            "stmxcsr [{after}]",
            m = in(reg) &mxcsr,
            t = out(reg) _,
            at2 = in(reg) &raw const XM_AT,
            after = in(reg) &raw mut after,
        )
    };
    let divss_at = XM_AT.load(Ordering::SeqCst);
    // SAFETY: restores the default MXCSR (all exceptions masked, flags clear).
    unsafe { core::arch::asm!("ldmxcsr [{}]", in(reg) &default_mxcsr, options(nostack)) };
    const MXCSR_ZE: u32 = 1 << 2;
    if r.is_ok() && after & MXCSR_ZE != 0 {
        // The CPU flagged the division but raised nothing although ZM was clear.
        t.skip(
            "xm-sse-divide-by-zero",
            format_args!(
                "the CPU does not raise unmasked SIMD exceptions (MXCSR after {after:#x}; \
                 QEMU's TCG does not implement #XM)"
            ),
        );
    } else {
        t.check("xm-sse-divide-by-zero", is_trap(&r, vector::XM, 0, divss_at, None));
    }
}

/// Where the probes with a second label store its address.
static MF_AT: AtomicU64 = AtomicU64::new(0);
static SS_AT: AtomicU64 = AtomicU64::new(0);
static RETURN_ADDRESS: AtomicU64 = AtomicU64::new(0);

/// Reads the RIP of the bounce frame ({RCX, R11, RIP, ...}) at the frame's RSP, then
/// passes.
fn peek_bounce_frame_rip(trap: &Trap) -> Action {
    // SAFETY: the interrupted RSP is our own stack, above this handler's frames, where
    // Xen wrote the bounce frame the interrupted handler never got to pop.
    let rip = unsafe { (trap.frame.rsp as *const u64).add(2).read_volatile() };
    RETURN_ADDRESS.store(rip, Ordering::SeqCst);
    Action::Unhandled
}

/// Reads the word at the frame's RSP (a return address just pushed), then passes.
fn peek_return_address(trap: &Trap) -> Action {
    // SAFETY: the interrupted RSP is our own stack, above this handler's frames.
    let ret = unsafe { (trap.frame.rsp as *const u64).read_volatile() };
    RETURN_ADDRESS.store(ret, Ordering::SeqCst);
    Action::Unhandled
}
static XM_AT: AtomicU64 = AtomicU64::new(0);

/// #AC: RFLAGS.AC can be set in ring 3; alignment checks then apply if CR0.AM is set.
fn alignment_check(t: &mut Tests) {
    let cr0 = read_cr0();
    let data = [0u64; 2];
    let misaligned = (&raw const data) as u64 + 1;
    // SAFETY: as in `faults`; AC is cleared by `catch` at the landing, and by the
    // popfq when the load does not fault.
    let (r, _) = unsafe {
        catch_asm!(
            "pushfq",
            "or qword ptr [rsp], {ac}",
            "popfq",
            "lea {t}, [rip + 3f]",
            "mov [{at2}], {t}",
            "3:",
            "mov {t}, [{p}]",
            "pushfq",
            "and qword ptr [rsp], {not_ac}",
            "popfq",
            ac = const AC,
            not_ac = const !AC,
            t = out(reg) _,
            p = in(reg) misaligned,
            at2 = in(reg) &raw const AC_AT,
        )
    };
    let mov_at = AC_AT.load(Ordering::SeqCst);
    println!("traps: cr0 {cr0:#x}, misaligned load with RFLAGS.AC: {r:x?}");
    if cr0 & CR0_AM != 0 && r.is_ok() {
        t.skip(
            "ac-misaligned-load",
            format_args!(
                "CR0.AM and RFLAGS.AC are set but the CPU did not check alignment \
                 (cr0 {cr0:#x}; QEMU's TCG does not implement #AC)"
            ),
        );
    } else if cr0 & CR0_AM != 0 {
        t.check("ac-misaligned-load", is_trap(&r, vector::AC, 0, mov_at, None));
    } else {
        t.check("ac-no-check-without-cr0-am", no_trap(&r));
        t.skip("ac-misaligned-load", format_args!("CR0.AM is clear (cr0 {cr0:#x}): no alignment checks"));
    }
    t.check(
        "ac-flag-cleared-after",
        Outcome::ensure(cpu::rflags() & AC == 0, format_args!("rflags {:#x}", cpu::rflags())),
    );
}

static AC_AT: AtomicU64 = AtomicU64::new(0);

/// #NP, #SS(selector) and #GP(selector) from segment loads, with a GDT page of ours.
fn segments(t: &mut Tests, xen: &Hypercalls) {
    // A null GDT slot: loading it is #GP(selector) (the guest has no GDT yet).
    // SAFETY: as in `faults`; DS is restored below if the load succeeds.
    let (r, at) = unsafe { catch_asm!("mov ds, {:x}", in(reg) 0x0bu16) };
    t.check("gp-load-null-descriptor", is_trap(&r, vector::GP, 0x08, at, None));

    // Entry 1: flat data, DPL 3, not present. Entry 2: the same, present.
    const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
    const PRESENT: u64 = 1 << 47;
    let gdt = (&raw mut GDT).cast::<u64>();
    // SAFETY: GDT is ours; nothing else refers to it.
    unsafe {
        gdt.add(1).write_volatile(DATA_DPL3 & !PRESENT);
        gdt.add(2).write_volatile(DATA_DPL3);
    }
    let va = gdt as u64;
    let mfn = pt::pte_mfn(pte_of(va));
    // A descriptor page must not be writable: map it read-only first.
    // SAFETY: nothing writes GDT while it is a descriptor page.
    let ro = unsafe { remap(xen, va, RO_FLAGS) };
    // SAFETY: the frame holds valid descriptors and the guest uses only Xen's flat
    // selectors, which are in Xen's reserved part of the GDT.
    let set = ro.and_then(|()| unsafe { xen.set_gdt(&[mfn], 512) });
    if !t.check("set-gdt", set) {
        return;
    }
    // SAFETY: as in `faults`.
    let (r, at) = unsafe { catch_asm!("mov ds, {:x}", in(reg) 0x0bu16) };
    t.check("np-load-ds", is_trap(&r, vector::NP, 0x08, at, None));
    // SAFETY: as in `faults`; the selector is restored right after.
    let (r, _) =
        unsafe { catch_asm!("mov ds, {:x}", "mov ds, {:x}", in(reg) 0x13u16, in(reg) FLAT_KERNEL_DS) };
    t.check("load-present-ds", no_trap(&r));
    // SAFETY: as in `faults`; SS is not changed if the load faults.
    let (r, at) = unsafe { catch_asm!("mov ss, {:x}", in(reg) 0x0bu16) };
    t.check("ss-load-not-present", is_trap(&r, vector::SS, 0x08, at, None));
    // SAFETY: as in `faults`.
    let (r, at) = unsafe { catch_asm!("mov ds, {:x}", in(reg) 0x1bu16) };
    t.check("gp-load-null-slot", is_trap(&r, vector::GP, 0x18, at, None));
    t.check("ds-unchanged", Outcome::eq(cpu::ds(), FLAT_KERNEL_DS));
    // SAFETY: no selector of ours is loaded; the frame goes back to being ordinary RAM.
    let unset = unsafe { xen.set_gdt(&[], 0) };
    t.check("set-gdt-empty", unset);
    // SAFETY: the page is no descriptor page any more.
    let rw = unsafe { remap(xen, va, RW_FLAGS) };
    t.check("gdt-page-writable-again", rw);
}

/// #DB: RFLAGS.TF single-steps one instruction; DR6.BS says why.
fn single_step(t: &mut Tests, xen: &Hypercalls) {
    // POPF sets TF; the instruction after it (a nop) runs with TF set and the trap
    // comes after it, so RIP is the second nop.
    // SAFETY: as in `faults`; `catch` clears TF at the landing.
    let (r, _) = unsafe {
        catch_asm!(
            "lea {t}, [rip + 4f]",
            "mov [{at2}], {t}",
            "pushfq",
            "or qword ptr [rsp], {tf}",
            "popfq",
            "nop",
            "4:",
            "nop",
            tf = const TF,
            t = out(reg) _,
            at2 = in(reg) &raw const DB_AT,
        )
    };
    let second_nop = DB_AT.load(Ordering::SeqCst);
    t.check("db-single-step", is_trap(&r, vector::DB, 0, second_nop, None));
    if let Err(trap) = r {
        t.check(
            "db-frame-tf-set",
            Outcome::ensure(trap.frame.rflags & TF != 0, format_args!("rflags {:#x}", trap.frame.rflags)),
        );
    }
    let dr6 = xen.get_debugreg(6);
    println!("traps: dr6 after single-step {dr6:x?}");
    t.check(
        "db-dr6-bs",
        match dr6 {
            Ok(v) => Outcome::ensure(v & (1 << 14) != 0, format_args!("dr6 {v:#x}")),
            Err(e) => Outcome::fail(e),
        },
    );
    t.check(
        "db-tf-cleared-after",
        Outcome::ensure(cpu::rflags() & TF == 0, format_args!("rflags {:#x}", cpu::rflags())),
    );
}

static DB_AT: AtomicU64 = AtomicU64::new(0);

trait AndOutcome {
    fn and(self, other: Outcome) -> Outcome;
}

impl AndOutcome for Outcome {
    /// The first failure of the two.
    fn and(self, other: Outcome) -> Outcome {
        if self.passed() { other } else { self }
    }
}

// ---- Handlers ----

static UD_SEEN: AtomicU32 = AtomicU32::new(0);
static BP_SEEN: AtomicU32 = AtomicU32::new(0);
static BP_RSP: AtomicU64 = AtomicU64::new(0);
static UD_FRAME: AtomicU64 = AtomicU64::new(0);
static NESTED_PF_CR2: AtomicU64 = AtomicU64::new(0);
static HANDLER_MASK: AtomicU32 = AtomicU32::new(0xff);
static HANDLER_CS: AtomicU32 = AtomicU32::new(0);

/// Skips a `ud2`.
fn skip_ud2(trap: &Trap) -> Action {
    UD_SEEN.fetch_add(1, Ordering::SeqCst);
    // SAFETY: installed only around code that expects to go on after its ud2.
    unsafe { Action::resume_at(trap.rip() + 2) }
}

/// Records an int3 and goes on after it.
fn note_int3(trap: &Trap) -> Action {
    BP_SEEN.fetch_add(1, Ordering::SeqCst);
    BP_RSP.store(trap.frame_addr, Ordering::SeqCst);
    Action::Resume
}

/// A #UD handler that raises two more exceptions before skipping the ud2: an int3
/// (handled by `note_int3`) and a page fault (caught with `catch`).
fn nesting_ud(trap: &Trap) -> Action {
    UD_FRAME.store(trap.frame_addr, Ordering::SeqCst);
    // SAFETY: int3 is handled by `note_int3`, which resumes after it.
    unsafe { core::arch::asm!("int3") };
    // SAFETY: a volatile read that faults; nothing is owned by the closure.
    let r = unsafe { traps::catch(|| core::ptr::read_volatile(UNMAPPED as *const u64)) };
    if let Err(pf) = r {
        NESTED_PF_CR2.store(pf.cr2, Ordering::SeqCst);
    }
    skip_ud2(trap)
}

/// #DE handler: make the divisor (RCX) 1 and run the division again.
fn fix_divisor(trap: &Trap) -> Action {
    let mut f = trap.frame;
    f.rcx = 1;
    // SAFETY: installed only around a `div rcx` whose divisor may be replaced.
    unsafe { Action::resume_with(f) }
}

/// Passes everything on.
fn decline(_trap: &Trap) -> Action {
    Action::Unhandled
}

/// Records the event mask and CS seen inside the handler.
fn note_mask(_trap: &Trap) -> Action {
    let shared = guest_shim::shared_info::map().expect("mapped");
    HANDLER_MASK.store(shared.upcall_mask(0) as u32, Ordering::SeqCst);
    HANDLER_CS.store(cpu::cs() as u32, Ordering::SeqCst);
    Action::Resume
}

fn handlers(t: &mut Tests) {
    // Resume after the faulting instruction.
    traps::set_handler(vector::UD, Some(skip_ud2));
    let before = traps::count(vector::UD);
    let mut after_ud2 = 0u64;
    // SAFETY: the handler skips the ud2; the asm then sets its output.
    unsafe { core::arch::asm!("ud2", "mov {}, 1", inout(reg) after_ud2) };
    t.check("handler-resume-after-ud2", Outcome::eq(after_ud2, 1));
    t.check("handler-called-once", Outcome::eq(UD_SEEN.load(Ordering::SeqCst), 1));
    t.check("handler-count", Outcome::eq(traps::count(vector::UD), before + 1));

    // Resume in place (a trap): int3 goes on after itself.
    traps::set_handler(vector::BP, Some(note_int3));
    let mut after_int3 = 0u64;
    // SAFETY: the handler resumes after the int3.
    unsafe { core::arch::asm!("int3", "mov {}, 1", inout(reg) after_int3) };
    t.check("handler-resume-int3", Outcome::eq(after_int3, 1));

    // Resume with changed registers: the division is retried with RCX = 1.
    traps::set_handler(vector::DE, Some(fix_divisor));
    let mut quotient = 0u64;
    // SAFETY: the handler makes RCX 1; the division then completes.
    unsafe {
        core::arch::asm!(
            "xor edx, edx",
            "div rcx",
            inout("rax") 1234u64 => quotient, inout("rcx") 0u64 => _, out("rdx") _,
        )
    };
    t.check("handler-resume-with-registers", Outcome::eq(quotient, 1234));
    traps::set_handler(vector::DE, None);

    // Exceptions nested inside a handler: an int3 handled by its own handler and a
    // #PF caught by `catch`, both on the stack below the #UD frame.
    traps::set_handler(vector::UD, Some(nesting_ud));
    BP_SEEN.store(0, Ordering::SeqCst);
    let mut after = 0u64;
    // SAFETY: the handler skips the ud2 after its nested exceptions.
    unsafe { core::arch::asm!("ud2", "mov {}, 1", inout(reg) after) };
    let (ud_frame, bp_frame) = (UD_FRAME.load(Ordering::SeqCst), BP_RSP.load(Ordering::SeqCst));
    t.check("nested-resumed", Outcome::eq(after, 1));
    t.check("nested-int3-in-handler", Outcome::eq(BP_SEEN.load(Ordering::SeqCst), 1));
    t.check(
        "nested-frame-below",
        Outcome::ensure(
            bp_frame != 0 && bp_frame < ud_frame,
            format_args!("int3 frame {bp_frame:#x}, #UD frame {ud_frame:#x}"),
        ),
    );
    t.check("nested-pf-caught", Outcome::eq(NESTED_PF_CR2.load(Ordering::SeqCst), UNMAPPED));
    traps::set_handler(vector::BP, None);

    // A handler that declines: the exception goes to `catch`.
    traps::set_handler(vector::UD, Some(decline));
    // SAFETY: as in `faults`.
    let (r, at) = unsafe { catch_asm!("ud2") };
    t.check("handler-unhandled-to-catch", is_trap(&r, vector::UD, 0, at, None));
    traps::set_handler(vector::UD, None);
}

/// Skips a `ud2` and records the event mask and CS inside the handler.
fn skip_ud2_note_mask(trap: &Trap) -> Action {
    note_mask(trap);
    skip_ud2(trap)
}

/// The bounce frame with events unmasked, and trap versus interrupt gates.
fn events_in_frames(t: &mut Tests) {
    let shared = guest_shim::shared_info::map().expect("mapped");
    let old = shared.set_upcall_mask(0, 0);
    let mut rflags = 0u64;
    // SAFETY: as in `faults`.
    let (r, _) = unsafe {
        catch_asm!("pushfq", "pop {f}", "mov [{p}], {f}", "ud2", f = out(reg) _, p = in(reg) &raw mut rflags)
    };
    let mask_after = shared.upcall_mask(0);
    // #UD as an interrupt gate (mask events on entry), then as a trap gate again.
    traps::set_handler(vector::UD, Some(skip_ud2_note_mask));
    let gate = traps::set_gate(vector::UD, 0, true);
    // SAFETY: the handler skips the ud2.
    unsafe { core::arch::asm!("ud2") };
    let masked_in_interrupt_gate = HANDLER_MASK.swap(0xff, Ordering::SeqCst);
    let mask_after_iret = shared.upcall_mask(0);
    let trap_gate = traps::set_gate(vector::UD, 0, false);
    // SAFETY: the handler skips the ud2.
    unsafe { core::arch::asm!("ud2") };
    let masked_in_trap_gate = HANDLER_MASK.swap(0xff, Ordering::SeqCst);
    traps::set_handler(vector::UD, None);
    shared.set_upcall_mask(0, old);

    match r {
        Err(trap) => {
            t.check("unmasked-frame-cs", Outcome::eq(trap.frame.cs, KERNEL_CS_RPL0));
            t.check("unmasked-frame-rflags-if", Outcome::eq(trap.frame.rflags, (rflags & !IOPL) | IF));
        }
        Ok(()) => t.fail("unmasked-frame-cs", "ud2 raised no exception"),
    }
    t.check("catch-restores-unmasked", Outcome::eq(mask_after, 0));
    t.check("interrupt-gate-set", gate);
    t.check("interrupt-gate-masks-events", Outcome::eq(masked_in_interrupt_gate, 1));
    t.check("iret-restores-mask-from-if", Outcome::eq(mask_after_iret, 0));
    t.check("trap-gate-set", trap_gate);
    t.check("trap-gate-leaves-events", Outcome::eq(masked_in_trap_gate, 0));
    t.check(
        "handler-runs-in-kernel-cs",
        Outcome::eq(HANDLER_CS.load(Ordering::SeqCst), FLAT_KERNEL_CS as u32),
    );
}

/// How a refused `int n` is reported. Architecturally the #GP error code is
/// `n << 3 | 2` (IDT bit); QEMU's TCG reports `n << 4 | 2` in long mode (it scales by
/// the 16-byte gate size). Xen takes the vector of an `int n` from that error code
/// (`error_code >> 3`), so under TCG it looks up, and delivers, vector `2n mod 256`.
struct SoftInt {
    /// 8 (architectural) or 16 (QEMU TCG).
    scale: u64,
}

impl SoftInt {
    /// Finds the scale with an `int` no gate allows (0x50; 0xa0 has no gate either).
    fn probe(t: &mut Tests) -> SoftInt {
        // SAFETY: as in `faults`.
        let (r, at) = unsafe { catch_asm!("int 0x50") };
        let scale = match r {
            Err(trap) if trap.vector() == vector::GP && trap.error_code() == 0x50 << 4 | 2 => 16,
            _ => 8,
        };
        println!(
            "traps: a refused int 0x50 has #GP error code {:#x}: vector scaled by {scale}{}",
            r.err().map_or(0, |t| t.error_code()),
            if scale == 16 { " (QEMU TCG), so Xen decodes vector 2n" } else { "" }
        );
        let soft = SoftInt { scale };
        t.check("int-refused-gp", is_trap(&r, vector::GP, soft.error_code(0x50), at, None));
        soft
    }

    /// The #GP error code of a refused `int n`.
    fn error_code(&self, n: u8) -> u64 {
        (n as u64 * self.scale) | 2
    }

    /// The vector Xen looks up (and delivers) for `int n`.
    fn xen_vector(&self, n: u8) -> u8 {
        (self.error_code(n) >> 3) as u8
    }
}

/// `int n` against the trap table's DPL (gates set at the vector Xen looks up).
fn software_interrupts(t: &mut Tests, soft: &SoftInt) {
    let (v40, v41, v42) = (soft.xen_vector(0x40), soft.xen_vector(0x41), soft.xen_vector(0x42));
    let gates = traps::set_gate(v40, 0, false)
        .and_then(|()| traps::set_gate(v41, 3, false))
        .and_then(|()| traps::set_gate(v42, 1, false));
    t.check("set-gates", gates);
    // SAFETY: as in `faults`.
    let (r, at) = unsafe { catch_asm!("int 0x40") };
    t.check("int-dpl0-gp", is_trap(&r, vector::GP, soft.error_code(0x40), at, None));
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("int 0x41") };
    t.check("int-dpl3-delivered", is_trap(&r, v41, 0, at + 2, None));
    // The guest kernel counts as ring 1 for the DPL check.
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("int 0x42") };
    t.check("int-dpl1-delivered", is_trap(&r, v42, 0, at + 2, None));
    // 0x80 has a DPL-3 gate in Xen's own IDT too: no #GP, no error-code decoding.
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("int 0x80") };
    t.check("int80-delivered", is_trap(&r, vector::INT80, 0, at + 2, None));
    // `int $14` hits a DPL-0 gate (or #GP's under TCG): refused, so a handler expecting
    // an error code never sees a software #PF.
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("int 14") };
    t.check("int-14-gp", is_trap(&r, vector::GP, soft.error_code(14), at, None));
    let cleared = traps::set_gate(v40, 0, false)
        .and_then(|()| traps::set_gate(v41, 0, false))
        .and_then(|()| traps::set_gate(v42, 0, false));
    t.check("gates-closed", cleared);
}

/// Skips a `ud2` and records the CS the handler runs with.
fn skip_ud2_note_cs(trap: &Trap) -> Action {
    HANDLER_CS.store(cpu::cs() as u32, Ordering::SeqCst);
    skip_ud2(trap)
}

/// What set_trap_table says about bad tables (probed with hardware exceptions, so
/// the `int n` decoding plays no part).
fn bad_trap_tables(t: &mut Tests, xen: &Hypercalls, soft: &SoftInt) {
    let end = TrapInfo::new(0, 0, false, 0, 0);
    let cs = FLAT_KERNEL_CS;
    // A non-canonical handler: -EINVAL, after installing the entries before it. #DE
    // is pointed at vector 0x44's stub, so a division by zero reports vector 0x44.
    let table = [
        TrapInfo::new(vector::DE, 0, false, cs, traps::stub_address(0x44)),
        TrapInfo::new(vector::UD, 0, false, cs, NON_CANONICAL),
        end,
    ];
    // SAFETY: the first entry is a valid stub; the second is refused.
    let r = unsafe { xen.set_trap_table(&table) };
    t.check("trap-table-non-canonical-einval", Outcome::eq(r, Err(Errno::EINVAL)));
    // SAFETY: as in `faults`.
    let (r, at) =
        unsafe { catch_asm!("div ecx", inout("eax") 1u32 => _, inout("edx") 0u32 => _, in("ecx") 0u32) };
    t.check("trap-table-entries-before-kept", is_trap(&r, 0x44, 0, at, None));
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("ud2") };
    t.check("trap-table-bad-entry-not-kept", is_trap(&r, vector::UD, 0, at, None));

    // A handler in the hypervisor hole is accepted (it is canonical) ...
    let table = [TrapInfo::new(vector::UD, 0, false, cs, XEN_DIRECTMAP), end];
    // SAFETY: a #UD now jumps into Xen's memory, where the fetch faults; the probe
    // below catches that #PF, and the entry is replaced right after.
    let r = unsafe { xen.set_trap_table(&table) };
    t.check("trap-table-hole-accepted", Outcome::eq(r, Ok(())));
    // ... and a #UD then faults on the first fetch there: a #PF at the handler address,
    // with the #UD bounce frame (no error code) at the top of the stack.
    traps::set_handler(vector::PF, Some(peek_bounce_frame_rip));
    // SAFETY: as in `faults`.
    let (r, at) = unsafe { catch_asm!("ud2") };
    traps::set_handler(vector::PF, None);
    t.check(
        "trap-table-hole-fetch-pf",
        is_trap(&r, vector::PF, pf::PRESENT | pf::FETCH, XEN_DIRECTMAP, Some(XEN_DIRECTMAP)),
    );
    t.check("trap-table-hole-ud-frame", Outcome::eq(RETURN_ADDRESS.load(Ordering::SeqCst), at));
    let table = traps::default_table(traps::stub_address);
    // SAFETY: the runtime's table, as `traps::install` registers it.
    let back = unsafe { xen.set_trap_table(&table) };
    t.check("trap-table-restored", back);

    // A code selector with RPL 0 is made RPL 3 (the kernel runs in ring 3).
    let table = [TrapInfo::new(vector::UD, 0, false, cs & !3, traps::stub_address(vector::UD)), end];
    // SAFETY: the runtime's #UD stub.
    let r = unsafe { xen.set_trap_table(&table) };
    t.check("trap-table-cs-rpl0-accepted", r);
    traps::set_handler(vector::UD, Some(skip_ud2_note_cs));
    HANDLER_CS.store(0, Ordering::SeqCst);
    // SAFETY: the handler skips the ud2.
    unsafe { core::arch::asm!("ud2") };
    traps::set_handler(vector::UD, None);
    t.check("trap-table-cs-rpl-fixed", Outcome::eq(HANDLER_CS.load(Ordering::SeqCst), FLAT_KERNEL_CS as u32));

    // Bad table pointers: -EFAULT (unmapped; Xen's own memory).
    for (name, ptr) in
        [("trap-table-unmapped-efault", UNMAPPED & !0xfff), ("trap-table-xen-memory-efault", XEN_DIRECTMAP)]
    {
        // SAFETY: Xen cannot read the table, so nothing is installed.
        let ret = unsafe { xen.call(HYPERVISOR_SET_TRAP_TABLE, ptr, 0, 0, 0, 0) };
        t.check(name, Outcome::eq(ret, Errno::EFAULT.to_ret()));
    }
    // A null table clears the whole virtual IDT; then reinstall ours. A gate set
    // before the clear (DPL 3, for `int 0x41`) is gone after it.
    let v41 = soft.xen_vector(0x41);
    let gate = traps::set_gate(v41, 3, false);
    // SAFETY: no exception is raised until the table is back.
    let ret = unsafe { xen.call(HYPERVISOR_SET_TRAP_TABLE, 0, 0, 0, 0, 0) };
    // SAFETY: the runtime's table, as `traps::install` registers it.
    let back = unsafe { xen.set_trap_table(&traps::default_table(traps::stub_address)) };
    t.check("trap-table-null-clears", Outcome::eq(ret, 0));
    t.check("trap-table-reinstalled", gate.and(back));
    // SAFETY: as in `faults`.
    let (r, at) = unsafe { catch_asm!("int 0x41") };
    t.check("trap-table-null-cleared-gates", is_trap(&r, vector::GP, soft.error_code(0x41), at, None));
    // SAFETY: as above.
    let (r, at) = unsafe { catch_asm!("ud2") };
    t.check("trap-table-works-again", is_trap(&r, vector::UD, 0, at, None));
}

/// callback_op and set_callbacks answers.
fn callbacks(t: &mut Tests, xen: &Hypercalls) {
    let cb = |type_, address| CallbackRegister::new(type_, CallbackFlags::empty(), address);
    // SAFETY: re-registers the runtime's own event entry.
    let r = unsafe { xen.callback_register(&cb(CALLBACKTYPE_EVENT, traps::event_entry())) };
    t.check("callback-register-event", r);
    // SAFETY: refused, so nothing changes.
    let r = unsafe { xen.callback_register(&cb(CALLBACKTYPE_EVENT, NON_CANONICAL)) };
    t.check("callback-non-canonical-einval", Outcome::eq(r, Err(Errno::EINVAL)));
    // SAFETY: refused, so nothing changes.
    let r = unsafe { xen.callback_register(&cb(CALLBACKTYPE_SYSENTER_DEPRECATED, traps::event_entry())) };
    t.check("callback-type-3-enosys", Outcome::eq(r, Err(Errno::ENOSYS)));
    // SAFETY: refused, so nothing changes.
    let r = unsafe { xen.callback_register(&cb(99, traps::event_entry())) };
    t.check("callback-type-unknown-enosys", Outcome::eq(r, Err(Errno::ENOSYS)));
    let r = xen.callback_unregister(CALLBACKTYPE_EVENT);
    t.check("callback-unregister-event-einval", Outcome::eq(r, Err(Errno::EINVAL)));
    // SAFETY: a bad pointer: Xen cannot read the argument.
    let ret = unsafe { xen.call(HYPERVISOR_CALLBACK_OP, CALLBACKOP_REGISTER as u64, UNMAPPED, 0, 0, 0) };
    t.check("callback-op-efault", Outcome::eq(ret, Errno::EFAULT.to_ret()));
    // The older set_callbacks(event, failsafe, syscall): the same entries, no syscall.
    // SAFETY: the runtime's entries; no SYSCALL callback (no user mode here).
    let ret =
        unsafe { xen.call(HYPERVISOR_SET_CALLBACKS, traps::event_entry(), traps::failsafe_entry(), 0, 0, 0) };
    t.check("set-callbacks", Outcome::eq(ret, 0));
    // set_callbacks ignores what each registration says: a non-canonical event
    // address is refused (the event callback stays ours, as `event_delivery` shows),
    // yet the call returns 0.
    // SAFETY: the event registration is refused; the failsafe one is the runtime's.
    let ret = unsafe { xen.call(HYPERVISOR_SET_CALLBACKS, NON_CANONICAL, traps::failsafe_entry(), 0, 0, 0) };
    t.check("set-callbacks-ignores-errors", Outcome::eq(ret, 0));
    // stack_switch only records the kernel stack for the next user->kernel entry.
    static mut KSTACK: Page = Page([0; 512]);
    let top = (&raw const KSTACK) as u64 + 4096;
    // SAFETY: the stack is only used on an entry from user mode, which never happens.
    let r = unsafe { xen.stack_switch(FLAT_KERNEL_SS as u64, top) };
    t.check("stack-switch", r);
}

static EVENT_PORT: AtomicU32 = AtomicU32::new(u32::MAX);
static EVENT_CALLS: AtomicU32 = AtomicU32::new(0);
static EVENT_MASK: AtomicU32 = AtomicU32::new(0xff);

fn on_event(port: u32) {
    EVENT_PORT.store(port, Ordering::SeqCst);
    EVENT_CALLS.fetch_add(1, Ordering::SeqCst);
    let shared = guest_shim::shared_info::map().expect("mapped");
    EVENT_MASK.store(shared.upcall_mask(0) as u32, Ordering::SeqCst);
}

/// An IPI to ourselves: pending while events are masked, delivered to the event
/// callback once they are not.
fn event_delivery(t: &mut Tests, xen: &Hypercalls) {
    let shared = guest_shim::shared_info::map().expect("mapped");
    traps::set_event_handler(Some(on_event));
    let port = match xen.evtchn_bind_ipi(0) {
        Ok(p) => p,
        Err(e) => {
            t.fail("event-bind-ipi", e);
            return;
        }
    };
    t.pass("event-bind-ipi");
    let upcalls = traps::event_upcalls();
    let sent = xen.evtchn_unmask(port).and_then(|()| xen.evtchn_send(port));
    t.check("event-send", sent);
    t.check(
        "event-pending-while-masked",
        Outcome::eq((shared.vcpu_info(0).evtchn_upcall_pending, traps::event_upcalls()), (1, upcalls)),
    );
    shared.set_upcall_mask(0, 0);
    // Any return from Xen delivers pending events once unmasked.
    let _ = xen.xen_version();
    let mask_after = shared.set_upcall_mask(0, 1);
    t.check("event-delivered", Outcome::eq(traps::event_upcalls(), upcalls + 1));
    t.check(
        "event-port",
        Outcome::eq((EVENT_PORT.load(Ordering::SeqCst), EVENT_CALLS.load(Ordering::SeqCst)), (port, 1)),
    );
    t.check("event-callback-masked", Outcome::eq(EVENT_MASK.load(Ordering::SeqCst), 1));
    t.check("event-iret-unmasks", Outcome::eq(mask_after, 0));
    t.check("event-pending-cleared", Outcome::eq(shared.vcpu_info(0).evtchn_upcall_pending, 0));
    t.check("event-close", xen.evtchn_close(port));
    traps::set_event_handler(None);
}

#[cfg(not(target_os = "none"))]
fn main() {}
