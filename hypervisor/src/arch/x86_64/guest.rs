// SPDX-License-Identifier: MIT OR Apache-2.0
//! Running PV guests in ring 3: the SYSCALL entry, the entry stack that
//! interrupts from ring 3 and SYSCALL share (so both build the same
//! `TrapFrame` at the same place), the first entry into a guest, and copies
//! to and from guest virtual addresses that turn faults into errors.

use super::cpu::wrmsr;
use super::desc::{FLAT_RING3_CS32, FLAT_RING3_CS64, FLAT_RING3_DS, HYPERVISOR_CS};
use crate::hal::guest_range_ok;
use crate::trap::TrapFrame;

/// The `vector` of a frame built by the SYSCALL entry.
pub const SYSCALL_VECTOR: u64 = 0x100;
const ENTRY_STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(16))]
struct EntryStack([u8; ENTRY_STACK_SIZE]);

#[unsafe(no_mangle)]
static mut GUEST_ENTRY_STACK: EntryStack = EntryStack([0; ENTRY_STACK_SIZE]);
/// The guest's RSP while the SYSCALL entry switches stacks (one CPU for now).
#[unsafe(no_mangle)]
static mut SYSCALL_SAVED_RSP: u64 = 0;

core::arch::global_asm!(
    r#"
    .section .text.guest, "ax"
    .global syscall_entry
syscall_entry:
    mov [rip + SYSCALL_SAVED_RSP], rsp
    lea rsp, [rip + GUEST_ENTRY_STACK + {size}]
    push {ss}
    push qword ptr [rip + SYSCALL_SAVED_RSP]
    push r11
    push {cs}
    push rcx
    push 0
    push {vector}
    jmp trap_common

    // hv_copy(dst, src, len) -> bytes left uncopied (0 on success).
    .global hv_copy
hv_copy:
    mov rcx, rdx
    .global hv_copy_insn
hv_copy_insn:
    rep movsb
    xor eax, eax
    ret
    .global hv_copy_fixup
hv_copy_fixup:
    mov rax, rcx
    ret

    // hv_load_ds/es/fs/gs(selector) -> 1, or 0 if the load faulted (the
    // fault handler resumes at hv_sel_fixup).
    .global hv_load_ds
hv_load_ds:
    mov eax, 1
    .global hv_load_ds_insn
hv_load_ds_insn:
    mov ds, di
    ret
    .global hv_load_es
hv_load_es:
    mov eax, 1
    .global hv_load_es_insn
hv_load_es_insn:
    mov es, di
    ret
    .global hv_load_fs
hv_load_fs:
    mov eax, 1
    .global hv_load_fs_insn
hv_load_fs_insn:
    mov fs, di
    ret
    .global hv_load_gs
hv_load_gs:
    mov eax, 1
    .global hv_load_gs_insn
hv_load_gs_insn:
    mov gs, di
    ret
    .global hv_sel_fixup
hv_sel_fixup:
    xor eax, eax
    ret

    // enter_frame(frame): iretq through the common trap return path.
    .global enter_frame
enter_frame:
    mov rsp, rdi
    jmp trap_return
    .text
"#,
    size = const ENTRY_STACK_SIZE,
    ss = const FLAT_RING3_DS as u64,
    cs = const FLAT_RING3_CS64 as u64,
    vector = const SYSCALL_VECTOR,
);

unsafe extern "C" {
    fn syscall_entry();
    fn hv_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    static hv_copy_insn: u8;
    static hv_copy_fixup: u8;
    fn hv_load_ds(sel: u16) -> u32;
    fn hv_load_es(sel: u16) -> u32;
    fn hv_load_fs(sel: u16) -> u32;
    fn hv_load_gs(sel: u16) -> u32;
    static hv_load_ds_insn: u8;
    static hv_load_es_insn: u8;
    static hv_load_fs_insn: u8;
    static hv_load_gs_insn: u8;
    static hv_sel_fixup: u8;
    fn enter_frame(frame: *const TrapFrame) -> !;
}

fn entry_stack_top() -> u64 {
    core::ptr::addr_of!(GUEST_ENTRY_STACK) as u64 + ENTRY_STACK_SIZE as u64
}

/// SYSCALL/SYSRET selectors and entry points, and the ring-3 entry stack.
pub fn init() {
    const EFER: u32 = 0xc000_0080;
    const STAR: u32 = 0xc000_0081;
    const LSTAR: u32 = 0xc000_0082;
    const CSTAR: u32 = 0xc000_0083;
    const SFMASK: u32 = 0xc000_0084;
    // Cleared on entry: TF, IF, DF, IOPL, NT, AC.
    const MASK: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (3 << 12) | (1 << 14) | (1 << 18);
    let efer = super::cpu::rdmsr(EFER);
    // SAFETY: enables SYSCALL and points it at `syscall_entry`, which switches
    // to the entry stack before touching memory; the selectors are the GDT's.
    unsafe {
        wrmsr(EFER, efer | 1);
        wrmsr(STAR, (u64::from(FLAT_RING3_CS32 & !3) << 48) | (u64::from(HYPERVISOR_CS) << 32));
        wrmsr(LSTAR, syscall_entry as *const () as u64);
        // 32-bit compatibility-mode SYSCALL lands in the same place; the frame's
        // CS tells it apart and such guests are refused.
        wrmsr(CSTAR, syscall_entry as *const () as u64);
        wrmsr(SFMASK, MASK);
    }
    super::desc::set_rsp0(entry_stack_top());
    IDLE_CR3.call_once(super::cpu::read_cr3);
}

/// The segment bases a PV guest sets with WRMSR or `set_segment_base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentBase {
    Fs,
    /// GS as the guest kernel sees it (the live GS base while it runs).
    GsKernel,
}

const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;

/// Loads a guest segment base; a non-canonical value is refused (the CPU
/// would raise #GP in ring 0).
pub fn write_segment_base(which: SegmentBase, value: u64) -> Result<(), Fault> {
    if !crate::hal::canonical(value) {
        return Err(Fault);
    }
    let msr = match which {
        SegmentBase::Fs => MSR_FS_BASE,
        SegmentBase::GsKernel => MSR_GS_BASE,
    };
    // SAFETY: the hypervisor itself never uses FS or GS, so their bases
    // belong to the running guest; the value is canonical (checked).
    unsafe { wrmsr(msr, value) };
    Ok(())
}

pub fn read_segment_base(which: SegmentBase) -> u64 {
    super::cpu::rdmsr(match which {
        SegmentBase::Fs => MSR_FS_BASE,
        SegmentBase::GsKernel => MSR_GS_BASE,
    })
}

/// If a fault (`vector`) at `rip` hit a guest copy (#PF) or a selector
/// load (#GP, #NP), where to resume.
pub fn copy_fixup(rip: u64, vector: u64) -> Option<u64> {
    if vector == 14 && rip == core::ptr::addr_of!(hv_copy_insn) as u64 {
        return Some(core::ptr::addr_of!(hv_copy_fixup) as u64);
    }
    let loads = [
        core::ptr::addr_of!(hv_load_ds_insn),
        core::ptr::addr_of!(hv_load_es_insn),
        core::ptr::addr_of!(hv_load_fs_insn),
        core::ptr::addr_of!(hv_load_gs_insn),
    ];
    let selector_fault = vector == 11 || vector == 13;
    (selector_fault && loads.iter().any(|&l| l as u64 == rip))
        .then_some(core::ptr::addr_of!(hv_sel_fixup) as u64)
}

/// The data segment selectors DS, ES, FS, GS of the running guest.
pub fn save_selectors() -> [u16; 4] {
    let (ds, es, fs, gs): (u16, u16, u16, u16);
    // SAFETY: reading segment registers has no effect.
    unsafe {
        core::arch::asm!("mov {0:x}, ds", "mov {1:x}, es", "mov {2:x}, fs", "mov {3:x}, gs",
            out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs, options(nomem, nostack, preserves_flags));
    }
    [ds, es, fs, gs]
}

/// Loads a guest's data segment selectors (then its FS/GS bases must be
/// written: a load changes them). A selector its descriptor tables no
/// longer accept becomes null instead of faulting in the hypervisor.
pub fn load_selectors(sel: [u16; 4]) {
    // SAFETY: the loaders change only DS/ES/FS/GS, which the hypervisor does
    // not use in 64-bit mode; a faulting load resumes at hv_sel_fixup, and a
    // null selector never faults.
    unsafe {
        for (f, s) in [hv_load_ds as unsafe extern "C" fn(u16) -> u32, hv_load_es, hv_load_fs, hv_load_gs]
            .into_iter()
            .zip(sel)
        {
            if f(s) == 0 {
                f(0);
            }
        }
    }
}

/// Loads the guest's GS selector (null if its descriptor tables refuse it)
/// and returns the GS base the load gave (its descriptor's base).
pub fn load_gs_selector(sel: u16) -> u64 {
    // SAFETY: as in `load_selectors`: only GS changes; a faulting load
    // resumes at hv_sel_fixup and the null selector is loaded instead.
    unsafe {
        if hv_load_gs(sel) == 0 {
            hv_load_gs(0);
        }
    }
    read_segment_base(SegmentBase::GsKernel)
}

/// The hypervisor's own page table, for when no guest runs (idle) and the
/// last guest's tables may be freed.
static IDLE_CR3: spin::Once<u64> = spin::Once::new();

/// Switches to the hypervisor's own page table.
pub fn load_idle_cr3() {
    let cr3 = *IDLE_CR3.call_once(super::cpu::read_cr3);
    // SAFETY: the hypervisor's own L4, which maps all of it.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags)) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// Copies from the running guest's address space.
pub fn copy_from_guest(dst: &mut [u8], va: u64) -> Result<(), Fault> {
    if !guest_range_ok(va, dst.len()) {
        return Err(Fault);
    }
    // SAFETY: `dst` is a valid buffer; the source lies in the guest's part of
    // the current address space (checked above), and a fault on it resumes at
    // `hv_copy_fixup`, which reports the uncopied rest.
    let left = unsafe { hv_copy(dst.as_mut_ptr(), va as *const u8, dst.len()) };
    if left == 0 { Ok(()) } else { Err(Fault) }
}

/// Copies into the running guest's address space.
pub fn copy_to_guest(va: u64, src: &[u8]) -> Result<(), Fault> {
    if !guest_range_ok(va, src.len()) {
        return Err(Fault);
    }
    // SAFETY: as in `copy_from_guest`; the destination is guest memory, and a
    // write to a page the guest may not write faults (CR0.WP) into the fixup.
    let left = unsafe { hv_copy(va as *mut u8, src.as_ptr(), src.len()) };
    if left == 0 { Ok(()) } else { Err(Fault) }
}

/// Switches to the guest's page table and enters it with `frame`.
pub fn enter(frame: &TrapFrame, cr3: u64) -> ! {
    let top = entry_stack_top() - core::mem::size_of::<TrapFrame>() as u64;
    // SAFETY: the new page table maps the hypervisor (its L4 slots were
    // copied in by the builder); the frame goes to the top of the entry
    // stack, which nothing uses while the hypervisor runs on the boot stack
    // and which the return path unwinds into IRETQ to ring 3.
    unsafe {
        core::ptr::write(top as *mut TrapFrame, core::ptr::read(frame));
        core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack));
        enter_frame(top as *const TrapFrame)
    }
}

/// Reads the hypervisor's own L4 entries for the hole (slots 256..272), to be
/// copied into every guest L4.
pub fn hypervisor_l4() -> [u64; 16] {
    let l4 = super::cpu::read_cr3();
    let mut out = [0u64; 16];
    let va = super::mem::phys_to_virt(l4, 4096).expect("the L4 is in the direct map");
    for (i, e) in out.iter_mut().enumerate() {
        // SAFETY: reads an entry of the live L4 through the direct map.
        *e = unsafe { core::ptr::read_volatile((va as *const u64).add(256 + i)) };
    }
    out
}

/// Sets or clears CR0.TS for the guest's lazy FPU switching: the hypervisor
/// itself never touches the FPU (soft-float), so the live FPU state is the
/// running guest's.
pub fn set_fpu_ts(on: bool) {
    use ::x86_64::registers::control::{Cr0, Cr0Flags};
    let cr0 = Cr0::read();
    let new = if on { cr0 | Cr0Flags::TASK_SWITCHED } else { cr0 - Cr0Flags::TASK_SWITCHED };
    // SAFETY: only TS changes, which affects nothing but the guest's FPU use.
    unsafe { Cr0::write(new) };
}

/// Port input for dom0; ports the hypervisor keeps read as all ones.
pub fn dom0_port_in(port: u16, size: u8) -> u32 {
    if !crate::priv_op::dom0_port_allowed(port, size) {
        return u32::MAX >> (32 - 8 * u32::from(size));
    }
    // SAFETY: a port of a device dom0 owns (the hypervisor's own are refused
    // above); reading it affects only that device.
    unsafe {
        match size {
            1 => u32::from(::x86_64::instructions::port::Port::<u8>::new(port).read()),
            2 => u32::from(::x86_64::instructions::port::Port::<u16>::new(port).read()),
            _ => ::x86_64::instructions::port::Port::<u32>::new(port).read(),
        }
    }
}

/// Port output for dom0; writes to the hypervisor's ports are dropped.
pub fn dom0_port_out(port: u16, size: u8, value: u32) {
    if !crate::priv_op::dom0_port_allowed(port, size) {
        return;
    }
    // SAFETY: as in `dom0_port_in`: only devices dom0 owns.
    unsafe {
        match size {
            1 => ::x86_64::instructions::port::Port::<u8>::new(port).write(value as u8),
            2 => ::x86_64::instructions::port::Port::<u16>::new(port).write(value as u16),
            _ => ::x86_64::instructions::port::Port::<u32>::new(port).write(value),
        }
    }
}

/// Reads DR6 after a #DB and resets it (the CPU never clears it).
pub fn take_dr6() -> u64 {
    let dr6: u64;
    // SAFETY: DR6 only reports debug conditions; resetting it to its default
    // value has no other effect.
    unsafe {
        core::arch::asm!("mov {}, dr6", out(reg) dr6, options(nomem, nostack));
        core::arch::asm!("mov dr6, {}", in(reg) 0xffff_0ff0u64, options(nomem, nostack));
    }
    dr6
}

/// Switches to a guest's address space: `l4` is a validated guest L4, which
/// maps the hypervisor's slots like the hypervisor's own L4.
pub fn load_cr3(l4: u64) {
    // SAFETY: validation copied the hypervisor's L4 slots into every guest L4,
    // so the hypervisor's code, stacks and data stay mapped after the switch.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) l4, options(nostack, preserves_flags)) }
}

/// Flushes the TLB entry of `va`, or every entry, global ones included (a
/// guest's user mappings are global, as on Xen: a guest's TLB flush and an
/// address-space switch must drop them too).
pub fn flush_tlb(va: Option<u64>) {
    use ::x86_64::registers::control::{Cr4, Cr4Flags};
    match va {
        Some(va) => ::x86_64::instructions::tlb::flush(::x86_64::VirtAddr::new_truncate(va)),
        None => {
            let cr4 = Cr4::read();
            // SAFETY: clearing and restoring CR4.PGE only flushes the TLB.
            unsafe {
                Cr4::write(cr4 - Cr4Flags::PAGE_GLOBAL);
                Cr4::write(cr4);
            }
        }
    }
}

/// Machine frames through the direct map: the builder's `FrameMemory`.
pub struct DirectMap;

impl crate::hal::FrameMemory for DirectMap {
    fn read(&self, mfn: crate::mm::frame::Mfn, offset: usize, buf: &mut [u8]) {
        assert!(offset + buf.len() <= 4096);
        let va = super::mem::phys_to_virt(mfn.addr(), 4096).expect("frame in the direct map");
        // SAFETY: inside one mapped frame (checked); the caller owns the frame.
        unsafe {
            core::ptr::copy_nonoverlapping((va as usize + offset) as *const u8, buf.as_mut_ptr(), buf.len())
        }
    }
    fn write(&mut self, mfn: crate::mm::frame::Mfn, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= 4096);
        let va = super::mem::phys_to_virt(mfn.addr(), 4096).expect("frame in the direct map");
        // SAFETY: inside one mapped frame (checked); the caller owns the frame
        // and no guest runs on it while the hypervisor writes.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), (va as usize + offset) as *mut u8, data.len())
        }
    }
    fn zero(&mut self, mfn: crate::mm::frame::Mfn) {
        super::mem::zero_frame(mfn.addr());
    }
    // Page-table entries are read and written one at a time during
    // validation: one aligned access each, without the byte copy.
    fn read_u64(&self, mfn: crate::mm::frame::Mfn, index: usize) -> u64 {
        assert!(index < 512);
        let va = super::mem::phys_to_virt(mfn.addr(), 4096).expect("frame in the direct map");
        // SAFETY: an aligned u64 inside one mapped frame (checked above).
        unsafe { core::ptr::read_volatile((va as *const u64).add(index)) }
    }
    fn write_u64(&mut self, mfn: crate::mm::frame::Mfn, index: usize, value: u64) {
        assert!(index < 512);
        let va = super::mem::phys_to_virt(mfn.addr(), 4096).expect("frame in the direct map");
        // SAFETY: as in read_u64; the caller owns the frame and no guest runs
        // on it while the hypervisor writes.
        unsafe { core::ptr::write_volatile((va as *mut u64).add(index), value) }
    }
}
