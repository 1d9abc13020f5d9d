// SPDX-License-Identifier: MIT OR Apache-2.0
//! A PV vCPU's virtual IDT and callbacks, and the two ways control crosses
//! between hypervisor and guest kernel in Xen's x86_64 PV ABI:
//!
//! - a *bounce*: an exception (or later an event) is delivered to the
//!   guest's handler through a frame on the guest kernel stack, laid out
//!   `{RCX, R11, [error code], RIP, CS, RFLAGS, RSP, SS}` (lowest address
//!   first), 16-byte aligned below the interrupted RSP. From kernel mode the
//!   saved CS has RPL 0 ("kernel context"); bits 32..39 of the saved CS hold
//!   the saved event mask, and the saved RFLAGS.IF is its inverse.
//! - `HYPERVISOR_iret`: the guest hands back `{RAX, R11, RCX, flags, RIP,
//!   CS, RFLAGS, RSP, SS}` to resume a context.

use crate::hal::canonical;
use pv_abi::Errno;
use pv_abi::arch_x86::{
    FLAT_KERNEL_CS, FLAT_KERNEL_SS, FLAT_USER_CS, FLAT_USER_SS, IretContext, TrapInfo, VGCF_IN_SYSCALL,
};

const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_IOPL: u64 = 3 << 12;
const RFLAGS_NT: u64 = 1 << 14;
const RFLAGS_RF: u64 = 1 << 16;
const RFLAGS_VM: u64 = 1 << 17;
const RFLAGS_AC: u64 = 1 << 18;
/// Trap-table flag: mask events on entry, like an interrupt gate.
pub const TI_MASK_EVENTS: u8 = 4;

/// Vectors for which the CPU pushes an error code.
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapEntry {
    pub address: u64,
    pub cs: u16,
    pub flags: u8,
}

/// The trap-related state of one vCPU.
#[derive(Clone, Debug)]
pub struct VcpuTraps {
    pub table: [TrapEntry; 256],
    pub event_callback: u64,
    pub failsafe_callback: u64,
    pub syscall_callback: u64,
    /// The syscall callback runs with events masked (CALLBACKF_mask_events).
    pub syscall_masks_events: bool,
    /// Guest kernel stack for bounces from user mode (`stack_switch`).
    pub kernel_ss: u64,
    pub kernel_sp: u64,
    /// The guest asked for CR0.TS (`fpu_taskswitch`): its next FPU use traps.
    pub fpu_ts: bool,
    /// Virtual DR0..DR7 (DR4/DR5 unused). DR6 collects what the CPU reports
    /// on a #DB from the guest; breakpoints are not programmed into the CPU
    /// yet, so DR0-3 and DR7 are only stored.
    pub debugreg: [u64; 8],
    /// VMASST_TYPE_* bits the guest turned on (`vm_assist`).
    pub vm_assist: u64,
    /// Virtual I/O privilege level (`PHYSDEVOP_set_iopl`): the guest kernel
    /// may do port I/O and CLI/STI from 1 on.
    pub iopl: u8,
    /// The frames of the guest's GDT (`set_gdt`), each typed as descriptors.
    pub gdt: heapless::Vec<crate::mm::frame::Mfn, GDT_FRAMES>,
    /// The guest's LDT (`MMUEXT_SET_LDT`): its linear address, its entry
    /// count and, per page, the frame once a segment load has used it (Xen
    /// checks and locks LDT pages on first use: None until then).
    pub ldt_base: u64,
    pub ldt_entries: u32,
    pub ldt: heapless::Vec<Option<crate::mm::frame::Mfn>, LDT_FRAMES>,
}

/// Pages of the largest LDT (8192 entries).
pub const LDT_FRAMES: usize = 16;

/// The guest's part of the GDT: 14 frames, entries 0..7168 (Xen's
/// FIRST_RESERVED_GDT_ENTRY); the hypervisor's descriptors follow.
pub const GDT_FRAMES: usize = 14;

pub const DR6_DEFAULT: u64 = 0xffff_0ff0;
pub const DR7_DEFAULT: u64 = 0x400;
/// DR7.GD: general detect, which would trap the hypervisor's own DR accesses.
const DR7_GD: u64 = 1 << 13;

impl VcpuTraps {
    /// `set_debugreg`: addresses must be guest addresses; DR7 may not set GD.
    pub fn set_debugreg(&mut self, reg: u64, value: u64) -> Result<(), Errno> {
        // DR4/DR5 alias DR6/DR7 (CR4.DE is clear); others do not exist.
        let reg = match reg {
            4 => 6,
            5 => 7,
            r => r,
        };
        match reg {
            0..=3 if crate::hal::guest_range_ok(value, 1) => self.debugreg[reg as usize] = value,
            0..=3 => return Err(Errno::EPERM),
            6 => self.debugreg[6] = (value & 0xffff_ffff) | DR6_DEFAULT,
            7 if value & DR7_GD != 0 || value >> 32 != 0 => return Err(Errno::EPERM),
            7 => self.debugreg[7] = value | DR7_DEFAULT,
            _ => return Err(Errno::ENODEV),
        }
        Ok(())
    }

    pub fn get_debugreg(&self, reg: u64) -> Result<u64, Errno> {
        match reg {
            0..=3 | 6 | 7 => Ok(self.debugreg[reg as usize]),
            4 | 5 => Ok(self.debugreg[reg as usize + 2]),
            _ => Err(Errno::ENODEV),
        }
    }
}

impl Default for VcpuTraps {
    fn default() -> Self {
        VcpuTraps {
            table: [TrapEntry::default(); 256],
            event_callback: 0,
            failsafe_callback: 0,
            syscall_callback: 0,
            syscall_masks_events: false,
            kernel_ss: 0,
            kernel_sp: 0,
            fpu_ts: false,
            debugreg: [0, 0, 0, 0, 0, 0, DR6_DEFAULT, DR7_DEFAULT],
            iopl: 0,
            vm_assist: 0,
            gdt: heapless::Vec::new(),
            ldt_base: 0,
            ldt_entries: 0,
            ldt: heapless::Vec::new(),
        }
    }
}

impl VcpuTraps {
    /// One `trap_info` of `set_trap_table` (the caller stops at address 0).
    pub fn set_entry(&mut self, ti: &TrapInfo) -> Result<(), Errno> {
        if !canonical(ti.address) {
            return Err(Errno::EINVAL);
        }
        // The handler runs in ring 3: its selector's RPL is forced to 3.
        self.table[usize::from(ti.vector)] =
            TrapEntry { address: ti.address, cs: ti.cs | 3, flags: ti.flags };
        Ok(())
    }

    pub fn clear_table(&mut self) {
        self.table = [TrapEntry::default(); 256];
    }
}

/// The interrupted guest context a bounce starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub rcx: u64,
    pub r11: u64,
}

/// A bounce, computed: the words to write at `frame_rsp` and where the guest
/// resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounce {
    pub words: [u64; 8],
    pub len: usize,
    pub frame_rsp: u64,
    pub resume: Regs,
    /// Mask events (the handler runs like an interrupt gate).
    pub mask_events: bool,
}

impl Bounce {
    /// The frame as the bytes to write at `frame_rsp`.
    pub fn bytes(&self) -> ([u8; 64], usize) {
        let mut bytes = [0u8; 64];
        for (i, w) in self.words[..self.len].iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        (bytes, self.len * 8)
    }
}

/// The bounce of `vector` to the guest kernel's handler at `handler`. From
/// kernel mode the frame goes on the current stack and the saved CS has RPL 0;
/// from user mode (`kernel_stack` is the guest kernel's `stack_switch` stack)
/// it goes on that stack and the saved CS keeps RPL 3. `None` without a handler.
pub fn bounce(
    handler: u64,
    mask_events: bool,
    error_code: Option<u64>,
    from: &Regs,
    upcall_mask: bool,
    kernel_stack: Option<u64>,
) -> Option<Bounce> {
    if handler == 0 {
        return None;
    }
    let rpl = if kernel_stack.is_some() { 3 } else { 0 };
    let saved_cs = (from.cs & 0xffff & !3) | rpl | (u64::from(upcall_mask) << 32);
    let saved_rflags = (from.rflags & !RFLAGS_IF) | if upcall_mask { 0 } else { RFLAGS_IF };
    let mut words = [0u64; 8];
    let mut n = 0;
    let mut push = |w: u64| {
        words[n] = w;
        n += 1;
    };
    push(from.rcx);
    push(from.r11);
    if let Some(code) = error_code {
        push(code);
    }
    for w in [from.rip, saved_cs, saved_rflags, from.rsp, from.ss] {
        push(w);
    }
    let frame_rsp = (kernel_stack.unwrap_or(from.rsp) & !15).wrapping_sub(8 * n as u64);
    let resume = Regs {
        rip: handler,
        cs: u64::from(FLAT_KERNEL_CS),
        rflags: (from.rflags & !(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM | RFLAGS_AC)) | RFLAGS_IF,
        rsp: frame_rsp,
        ss: u64::from(FLAT_KERNEL_SS),
        rcx: from.rcx,
        r11: from.r11,
    };
    Some(Bounce { words, len: n, frame_rsp, resume, mask_events })
}

/// What `HYPERVISOR_iret` resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IretResume {
    pub regs: Regs,
    pub rax: u64,
    /// The context is user mode (CS RPL 3 in the frame).
    pub to_user: bool,
    /// The event mask to restore (from RFLAGS.IF).
    pub upcall_mask: bool,
    /// A user-mode context whose selectors the CPU would refuse: its IRETQ
    /// would fault, so the guest kernel gets that #GP (this error code) from
    /// the user context instead, as Xen's fix-up delivers it.
    pub gp: Option<u64>,
}

/// Decodes an iret frame: selectors get RPL 3, IOPL and VM are cleared and
/// IF is forced on (the guest's "IF" is its event mask). Only Xen's flat
/// selectors exist until guests can load descriptor tables, and RIP and RSP
/// must be canonical: an IRETQ that faults would fault in the hypervisor.
/// A return to user mode with `VGCF_in_syscall` ignores CS and SS (Xen
/// returns with SYSRET, whose selectors are fixed); without it, bad user
/// selectors become the #GP the guest's IRETQ would get.
/// `gdt` is the guest's part of the GDT as the CPU holds it (checked
/// descriptors): user selectors there (Linux's `__USER_CS`/`__USER_DS`) are
/// taken when they name a present 64-bit DPL-3 code segment and a present
/// writable DPL-3 data segment, which the IRETQ then cannot refuse.
pub fn iret(ctx: &IretContext, gdt: &[u64]) -> Result<IretResume, Errno> {
    let to_user = ctx.cs & 3 == 3;
    let in_syscall = ctx.flags & VGCF_IN_SYSCALL != 0;
    let (mut cs, mut ss) = ((ctx.cs & 0xffff) as u16 | 3, (ctx.ss & 0xffff) as u16 | 3);
    let mut gp = None;
    if !canonical(ctx.rip) || !canonical(ctx.rsp) {
        return Err(Errno::EINVAL);
    }
    if to_user && in_syscall {
        (cs, ss) = (FLAT_USER_CS, FLAT_USER_SS);
    } else if cs != FLAT_KERNEL_CS || ss != FLAT_KERNEL_SS {
        if !to_user {
            return Err(Errno::EINVAL);
        }
        (cs, ss) = ((ctx.cs & 0xffff) as u16, (ctx.ss & 0xffff) as u16);
        if !(cs & 3 == 3 && ss & 3 == 3 && user_code_ok(gdt, cs) && user_data_ok(gdt, ss)) {
            // The CPU checks CS first; a null SS faults with error code 0.
            let bad = if !(cs & 3 == 3 && user_code_ok(gdt, cs)) { cs } else { ss };
            gp = Some(u64::from(bad & !3));
        }
    }
    let regs = Regs {
        rip: ctx.rip,
        cs: u64::from(cs),
        rflags: (ctx.rflags & !(RFLAGS_IOPL | RFLAGS_VM)) | RFLAGS_IF | 2,
        rsp: ctx.rsp,
        ss: u64::from(ss),
        // After a syscall bounce RCX and R11 are the guest's to clobber.
        rcx: if in_syscall { ctx.rip } else { ctx.rcx },
        r11: if in_syscall { ctx.rflags } else { ctx.r11 },
    };
    Ok(IretResume { regs, rax: ctx.rax, to_user, upcall_mask: ctx.rflags & RFLAGS_IF == 0, gp })
}

/// The descriptor a selector names in the guest's GDT part, if any (LDT
/// selectors are not taken: their pages fault in lazily).
fn guest_descriptor(gdt: &[u64], sel: u16) -> Option<u64> {
    (sel & 4 == 0).then(|| gdt.get(usize::from(sel >> 3)).copied()).flatten()
}

const DESC_P: u64 = 1 << 47;
const DESC_S: u64 = 1 << 44;
const DESC_CODE: u64 = 1 << 43;
const DESC_WRITABLE: u64 = 1 << 41;
const DESC_L: u64 = 1 << 53;
const DESC_D: u64 = 1 << 54;

/// A present 64-bit DPL-3 code segment (or the flat one Xen provides).
fn user_code_ok(gdt: &[u64], sel: u16) -> bool {
    sel == FLAT_USER_CS
        || guest_descriptor(gdt, sel).is_some_and(|d| {
            d & (DESC_P | DESC_S | DESC_CODE | DESC_L | DESC_D) == DESC_P | DESC_S | DESC_CODE | DESC_L
                && (d >> 45) & 3 == 3
        })
}

/// A present writable DPL-3 data segment (or the flat one Xen provides).
fn user_data_ok(gdt: &[u64], sel: u16) -> bool {
    sel == FLAT_USER_SS
        || guest_descriptor(gdt, sel).is_some_and(|d| {
            d & (DESC_P | DESC_S | DESC_CODE | DESC_WRITABLE) == DESC_P | DESC_S | DESC_WRITABLE
                && (d >> 45) & 3 == 3
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iret_to_guest_gdt_user_selectors() {
        // Linux's GDT: 5 = __USER_DS (0x2b), 6 = __USER_CS (0x33), 4 = __USER32_CS.
        let mut gdt = [0u64; 16];
        gdt[4] = 0x00cf_fb00_0000_ffff; // 32-bit code, DPL 3
        gdt[5] = 0x00cf_f300_0000_ffff; // data, DPL 3
        gdt[6] = 0x00af_fb00_0000_ffff; // 64-bit code, DPL 3
        gdt[7] = 0x00af_9b00_0000_ffff; // 64-bit code, DPL 0
        let ctx = |cs: u64, ss: u64| IretContext {
            rip: 0x40_1000,
            cs,
            rflags: 0x202,
            rsp: 0x7fff_0000,
            ss,
            ..Default::default()
        };
        let r = iret(&ctx(0x33, 0x2b), &gdt).unwrap();
        assert_eq!((r.regs.cs, r.regs.ss, r.gp, r.to_user), (0x33, 0x2b, None, true));
        // What the IRETQ would refuse is the guest's #GP, selector as the code.
        assert_eq!(iret(&ctx(0x23, 0x2b), &gdt).unwrap().gp, Some(0x20), "compat mode is not taken");
        assert_eq!(iret(&ctx(0x3b, 0x2b), &gdt).unwrap().gp, Some(0x38), "DPL 0");
        assert_eq!(iret(&ctx(0x33, 0x33), &gdt).unwrap().gp, Some(0x30), "code as stack");
        assert_eq!(iret(&ctx(0x33, 0x2f), &gdt).unwrap().gp, Some(0x2c), "an LDT selector (TI in the code)");
        assert_eq!(iret(&ctx(0x83, 0x2b), &gdt).unwrap().gp, Some(0x80), "beyond the guest's GDT");
        assert_eq!(iret(&ctx(0x33, 0x2b), &[]).unwrap().gp, Some(0x30), "no GDT");
        gdt[6] &= !DESC_P;
        assert_eq!(iret(&ctx(0x33, 0x2b), &gdt).unwrap().gp, Some(0x30), "not present");
    }

    fn kernel_regs() -> Regs {
        Regs {
            rip: 0xffff_ffff_8000_1234,
            cs: 0xe033,
            rflags: 0x246,
            rsp: 0xffff_ffff_8004_9ff8,
            ss: 0xe02b,
            rcx: 1,
            r11: 2,
        }
    }

    #[test]
    fn page_fault_frame_layout() {
        let b = bounce(0xffff_ffff_8000_5000, false, Some(2), &kernel_regs(), false, None).unwrap();
        assert_eq!(b.len, 8);
        assert_eq!(b.frame_rsp, 0xffff_ffff_8004_9ff0 - 64);
        assert_eq!(b.words, [1, 2, 2, 0xffff_ffff_8000_1234, 0xe030, 0x246, 0xffff_ffff_8004_9ff8, 0xe02b]);
        assert_eq!(b.resume.rip, 0xffff_ffff_8000_5000);
        assert_eq!((b.resume.cs, b.resume.ss, b.resume.rsp), (0xe033, 0xe02b, b.frame_rsp));
        assert_ne!(b.resume.rflags & RFLAGS_IF, 0);
    }

    #[test]
    fn masked_events_show_in_cs_and_if() {
        let b = bounce(0x1000, true, None, &kernel_regs(), true, None).unwrap();
        assert_eq!(b.len, 7);
        assert_eq!(b.words[3], 0xe030 | (1 << 32));
        assert_eq!(b.words[4] & RFLAGS_IF, 0);
        assert!(b.mask_events);
        assert_eq!(bounce(0, false, None, &kernel_regs(), false, None), None);
    }

    #[test]
    fn user_mode_bounces_go_to_the_kernel_stack() {
        let user = Regs { rip: 0x40_1000, rsp: 0x7fff_0000_1008, ..kernel_regs() };
        let stack = 0xffff_ffff_8004_a008;
        let b = bounce(0xffff_ffff_8000_6000, true, None, &user, false, Some(stack)).unwrap();
        assert_eq!(b.frame_rsp, 0xffff_ffff_8004_a000 - 7 * 8);
        assert_eq!(b.words, [1, 2, 0x40_1000, 0xe033, 0x246, 0x7fff_0000_1008, 0xe02b, 0]);
        assert_eq!((b.resume.rip, b.resume.rsp), (0xffff_ffff_8000_6000, b.frame_rsp));
    }

    #[test]
    fn iret_round_trip() {
        let b = bounce(0x1000, false, Some(0), &kernel_regs(), false, None).unwrap();
        // What the guest's handler hands back after popping the error code.
        let w = b.words;
        let ctx = IretContext {
            rax: 7,
            r11: w[1],
            rcx: w[0],
            flags: 0,
            rip: w[3],
            cs: w[4],
            rflags: w[5],
            rsp: w[6],
            ss: w[7],
        };
        let r = iret(&ctx, &[]).unwrap();
        assert_eq!(r.regs, kernel_regs());
        assert_eq!(r.rax, 7);
        assert!(!r.to_user);
        assert!(!r.upcall_mask);
        let user = IretContext { cs: 0xe033, rflags: 0x3002, ..ctx };
        let r = iret(&user, &[]).unwrap();
        assert!(r.to_user);
        assert!(r.upcall_mask);
        assert_eq!(r.regs.rflags & RFLAGS_IOPL, 0);
        assert!(iret(&IretContext { rip: 0x8000_0000_0000, ..ctx }, &[]).is_err());
        assert!(iret(&IretContext { rsp: 0x8000_0000_0000, ..ctx }, &[]).is_err());
        assert!(iret(&IretContext { cs: 0x10, ..ctx }, &[]).is_err());
        assert!(iret(&IretContext { ss: 0, ..ctx }, &[]).is_err());
        // User mode: SYSRET ignores the selectors; without it they fault.
        let sysret = iret(&IretContext { cs: 0x33, ss: 0, flags: VGCF_IN_SYSCALL, ..user }, &[]).unwrap();
        assert_eq!((sysret.regs.cs, sysret.regs.ss, sysret.gp), (0xe033, 0xe02b, None));
        assert_eq!(iret(&IretContext { cs: 0x33, ..user }, &[]).unwrap().gp, Some(0x30));
        assert_eq!(iret(&IretContext { ss: 3, ..user }, &[]).unwrap().gp, Some(0));
        assert_eq!(r.gp, None);
    }

    #[test]
    fn debug_registers() {
        let mut t = VcpuTraps::default();
        assert_eq!(t.get_debugreg(6), Ok(DR6_DEFAULT));
        assert_eq!(t.set_debugreg(0, 0x40_0000), Ok(()));
        assert_eq!(t.set_debugreg(1, 0xffff_8300_0000_0000), Err(Errno::EPERM));
        assert_eq!(t.set_debugreg(7, 1 << 13), Err(Errno::EPERM));
        assert_eq!(t.set_debugreg(7, 1), Ok(()));
        assert_eq!(t.get_debugreg(7), Ok(1 | DR7_DEFAULT));
        assert_eq!(t.set_debugreg(8, 0), Err(Errno::ENODEV));
        assert_eq!(t.get_debugreg(9), Err(Errno::ENODEV));
        assert_eq!(t.get_debugreg(5), Ok(1 | DR7_DEFAULT), "DR5 aliases DR7");
    }

    #[test]
    fn trap_entries() {
        let mut t = VcpuTraps::default();
        let ti = TrapInfo {
            vector: 14,
            flags: 0,
            cs: 0xe030,
            address: 0xffff_ffff_8000_0100,
            ..Default::default()
        };
        assert_eq!(t.set_entry(&ti), Ok(()));
        assert_eq!(t.table[14], TrapEntry { address: 0xffff_ffff_8000_0100, cs: 0xe033, flags: 0 });
        let bad = TrapInfo { address: 0x0000_8000_0000_0000, ..ti };
        assert_eq!(t.set_entry(&bad), Err(Errno::EINVAL));
        t.clear_table();
        assert_eq!(t.table[14].address, 0);
    }

    proptest! {
        /// Whatever the guest hands to iret, it resumes in ring 3 with IF on
        /// and IOPL 0.
        #[test]
        fn iret_never_grants_privilege(cs in any::<u64>(), ss in any::<u64>(), rflags in any::<u64>(), rip in any::<u64>()) {
            let ctx = IretContext { cs, ss, rflags, rip, ..Default::default() };
            if let Ok(r) = iret(&ctx, &[]) && r.gp.is_none() {
                prop_assert_eq!(r.regs.cs & 3, 3);
                prop_assert_eq!(r.regs.ss & 3, 3);
                prop_assert_eq!(r.regs.rflags & RFLAGS_IOPL, 0);
                prop_assert_ne!(r.regs.rflags & RFLAGS_IF, 0);
            }
        }
    }
}
