// SPDX-License-Identifier: MIT OR Apache-2.0
//! The guest kernel's virtual IDT and entry points: `set_trap_table`,
//! `set_callbacks`, `callback_op`, `stack_switch`, `fpu_taskswitch`,
//! `set_segment_base`. (`iret` changes the whole context and is handled by
//! the caller, see `pv::traps::iret`.)

use super::{Args, Caller, Outcome, read};
use crate::hal::{Guest, canonical};
use crate::mm::frame::Mfn;
use crate::mm::frame_table::PageType;
use crate::pv::descriptor::check_descriptor;
use crate::pv::traps::GDT_FRAMES;
use pv_abi::Errno;
use pv_abi::arch_x86::{SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER, SEGBASE_GS_USER_SEL, TrapInfo};
use pv_abi::callback::{
    CALLBACKF_MASK_EVENTS, CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER, CALLBACKTYPE_EVENT,
    CALLBACKTYPE_FAILSAFE, CALLBACKTYPE_NMI, CALLBACKTYPE_SYSCALL, CALLBACKTYPE_SYSCALL32,
    CALLBACKTYPE_SYSENTER, CallbackRegister, CallbackUnregister,
};
use zerocopy::IntoBytes;

/// Entries read from one `set_trap_table` list (the IDT has 256).
const MAX_TRAP_ENTRIES: usize = 256;

pub fn set_trap_table(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let list = args[0];
    let r = (|| {
        if list == 0 {
            guest.traps().clear_table();
            return Ok(0);
        }
        for i in 0..MAX_TRAP_ENTRIES {
            let ti: TrapInfo = read(guest, list.wrapping_add(16 * i as u64))?;
            if ti.address == 0 {
                return Ok(0);
            }
            guest.traps().set_entry(&ti)?;
        }
        Err(Errno::E2BIG)
    })();
    Outcome::from(r)
}

pub fn stack_switch(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let t = guest.traps();
    t.kernel_ss = (args[0] & 0xffff) | 3;
    t.kernel_sp = args[1];
    Outcome::Return(0)
}

/// set_callbacks(event, failsafe, syscall): each is registered on its own
/// and a non-canonical one is skipped, yet the call returns 0 (as Xen does).
pub fn set_callbacks(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let t = guest.traps();
    for (slot, address) in [
        (&mut t.event_callback, args[0]),
        (&mut t.failsafe_callback, args[1]),
        (&mut t.syscall_callback, args[2]),
    ] {
        if canonical(address) {
            *slot = address;
        }
    }
    t.syscall_masks_events = false;
    Outcome::Return(0)
}

pub fn callback_op(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = (|| match super::int(args[0]) {
        Ok(CALLBACKOP_REGISTER) => {
            let cb: CallbackRegister = read(guest, args[1])?;
            if !canonical(cb.address) {
                return Err(Errno::EINVAL);
            }
            let t = guest.traps();
            let slot = match cb.type_ {
                CALLBACKTYPE_EVENT => &mut t.event_callback,
                CALLBACKTYPE_FAILSAFE => &mut t.failsafe_callback,
                CALLBACKTYPE_SYSCALL => &mut t.syscall_callback,
                // 32-bit entry points and the NMI callback are accepted and
                // unused: this hypervisor runs 64-bit guests only and sends no NMIs.
                CALLBACKTYPE_SYSCALL32 | CALLBACKTYPE_SYSENTER | CALLBACKTYPE_NMI => return Ok(0),
                _ => return Err(Errno::ENOSYS),
            };
            *slot = cb.address;
            if cb.type_ == CALLBACKTYPE_SYSCALL {
                t.syscall_masks_events = cb.flags & CALLBACKF_MASK_EVENTS != 0;
            }
            Ok(0)
        }
        Ok(CALLBACKOP_UNREGISTER) => {
            // Xen lets only the NMI callback be unregistered; we have none.
            let _: CallbackUnregister = read(guest, args[1])?;
            Err(Errno::EINVAL)
        }
        _ => Err(Errno::ENOSYS),
    })();
    Outcome::from(r)
}

/// `set_gdt(frame_list, entries)`: the guest's GDT becomes these frames, each
/// typed as a descriptor page (validated, then read-only to the guest); the
/// old frames are released. 0 entries means no GDT.
pub fn set_gdt(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = (|| {
        let entries = super::int(args[1]).unwrap_or(0) as usize;
        if entries > GDT_FRAMES * 512 {
            return Err(Errno::EINVAL);
        }
        let mut frames = heapless::Vec::<Mfn, GDT_FRAMES>::new();
        for i in 0..entries.div_ceil(512) {
            let mut b = [0u8; 8];
            guest.copy_from(args[0].wrapping_add(8 * i as u64), &mut b)?;
            let _ = frames.push(Mfn(u64::from_le_bytes(b)));
        }
        let mut mmu = guest.mmu();
        for (i, &f) in frames.iter().enumerate() {
            if let Err(e) = mmu.get_page_and_type(f, PageType::SegDesc) {
                frames[..i].iter().for_each(|&g| mmu.put_page_and_type(g));
                return Err(e);
            }
        }
        let mut shadow = [0u64; 512];
        let old = core::mem::replace(&mut guest.traps().gdt, frames.clone());
        for k in 0..GDT_FRAMES {
            match frames.get(k) {
                Some(&f) => guest.mmu().mem.read(f, 0, shadow.as_mut_bytes()),
                None => shadow.fill(0),
            }
            for (i, &d) in shadow.iter().enumerate() {
                guest.write_gdt_entry(k * 512 + i, d);
            }
        }
        old.iter().for_each(|&f| guest.mmu().put_page_and_type(f));
        Ok(0)
    })();
    Outcome::from(r)
}

/// `update_descriptor(ma, desc)`: one descriptor, checked, written to a
/// descriptor page or to a frame the guest could map writable.
pub fn update_descriptor(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let (ma, desc) = (args[0], args[1]);
    let r = (|| {
        let fixed = check_descriptor(desc).filter(|_| ma % 8 == 0).ok_or(Errno::EINVAL)?;
        let (mfn, index) = (Mfn(ma >> 12), (ma & 0xfff) as usize / 8);
        let mut mmu = guest.mmu();
        let in_use = mmu.ft.get(mfn.0).is_some_and(|p| p.ty == PageType::SegDesc && p.type_count > 0);
        let ty = if in_use { PageType::SegDesc } else { PageType::Writable };
        mmu.get_page_and_type(mfn, ty)?;
        mmu.mem.write_u64(mfn, index, fixed);
        mmu.put_page_and_type(mfn);
        if let Some(k) = guest.traps().gdt.iter().position(|&f| f == mfn) {
            guest.write_gdt_entry(k * 512 + index, fixed);
        }
        Ok(0)
    })();
    Outcome::from(r)
}

pub fn fpu_taskswitch(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    guest.set_fpu_ts(args[0] as u32 != 0);
    Outcome::Return(0)
}

pub fn set_segment_base(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = match super::int(args[0]) {
        Ok(which @ (SEGBASE_FS | SEGBASE_GS_USER | SEGBASE_GS_KERNEL | SEGBASE_GS_USER_SEL)) => {
            guest.set_segment_base(which, args[1]).map(|_| 0)
        }
        _ => Err(Errno::EINVAL),
    };
    Outcome::from(r)
}

pub fn set_debugreg(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    Outcome::from(guest.traps().set_debugreg(u64::from(args[0] as u32), args[1]).map(|()| 0))
}

pub fn get_debugreg(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    // The value is the result: Xen returns it in RAX as an unsigned long.
    Outcome::from(guest.traps().get_debugreg(u64::from(args[0] as u32)).map(|v| v as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0};

    fn put_trap(g: &mut FakeGuest, i: usize, vector: u8, address: u64) {
        let ti = TrapInfo { vector, flags: 0, cs: 0xe030, address, ..Default::default() };
        g.mem[i * 16..i * 16 + 16].copy_from_slice(ti.as_bytes());
    }

    #[test]
    fn gdt_frames_are_typed_checked_and_shadowed() {
        use crate::hal::FrameMemory;
        let mut g = FakeGuest::new(BASE, 8192);
        const DATA_DPL0: u64 = 0x00cf_9200_0000_ffff;
        g.frames.write_u64(Mfn(50), 2, DATA_DPL0);
        g.mem[..8].copy_from_slice(&50u64.to_le_bytes());
        let gdt = |g: &mut FakeGuest, entries| set_gdt(&DOM0, g, &[BASE, entries, 0, 0, 0, 0]);
        assert_eq!(gdt(&mut g, 512), Outcome::Return(0));
        // The DPL is raised to 3, in the frame and in the CPU's copy.
        assert_eq!(g.frames.read_u64(Mfn(50), 2), DATA_DPL0 | 3 << 45);
        assert_eq!(g.gdt.get(&2), Some(&(DATA_DPL0 | 3 << 45)));
        assert_eq!(g.ft.get(50).unwrap().ty, PageType::SegDesc);
        // A descriptor page cannot be mapped writable or become a page table.
        assert_eq!(g.mmu().get_page_and_type(Mfn(50), PageType::Writable), Err(Errno::EINVAL));
        // update_descriptor: checked, written through to the CPU's copy.
        let upd = |g: &mut FakeGuest, ma: u64, d| update_descriptor(&DOM0, g, &[ma, d, 0, 0, 0, 0]);
        assert_eq!(upd(&mut g, (50 << 12) | 24, DATA_DPL0), Outcome::Return(0));
        assert_eq!(g.gdt.get(&3), Some(&(DATA_DPL0 | 3 << 45)));
        assert_eq!(upd(&mut g, (50 << 12) | 24, 0x0000_8900_0000_0067), Outcome::Return(-22)); // a TSS
        assert_eq!(upd(&mut g, (50 << 12) | 4, DATA_DPL0), Outcome::Return(-22)); // misaligned
        assert_eq!(upd(&mut g, 256 << 12, DATA_DPL0), Outcome::Return(-22)); // not ours
        assert_eq!(upd(&mut g, 60 << 12, DATA_DPL0), Outcome::Return(0)); // an ordinary frame
        // Too many entries; a bad descriptor in a new frame; a bad list.
        assert_eq!(gdt(&mut g, 14 * 512 + 1), Outcome::Return(-22));
        g.frames.write_u64(Mfn(51), 0, 0x0000_8900_0000_0067);
        g.mem[..8].copy_from_slice(&51u64.to_le_bytes());
        assert_eq!(gdt(&mut g, 1), Outcome::Return(-22));
        assert_eq!(set_gdt(&DOM0, &mut g, &[0x10, 1, 0, 0, 0, 0]), Outcome::Return(-14));
        assert_eq!(g.traps.gdt, [Mfn(50)]); // unchanged by the failures
        // No GDT: the frame is ordinary memory again and the copy is empty.
        assert_eq!(gdt(&mut g, 0), Outcome::Return(0));
        assert_eq!(g.ft.get(50).unwrap().type_count, 0);
        assert!(g.gdt.is_empty());
    }

    #[test]
    fn trap_table_until_the_terminator() {
        let mut g = FakeGuest::new(BASE, 8192);
        put_trap(&mut g, 0, 14, 0xffff_ffff_8000_1000);
        put_trap(&mut g, 1, 3, 0xffff_ffff_8000_2000);
        put_trap(&mut g, 2, 0, 0);
        put_trap(&mut g, 3, 6, 0xffff_ffff_8000_3000); // after the end: ignored
        assert_eq!(set_trap_table(&DOM0, &mut g, &[BASE, 0, 0, 0, 0, 0]), Outcome::Return(0));
        assert_eq!(g.traps.table[14].address, 0xffff_ffff_8000_1000);
        assert_eq!(g.traps.table[3].cs, 0xe033);
        assert_eq!(g.traps.table[6].address, 0);
        // A bad pointer, a non-canonical handler (entries before it stay set).
        assert_eq!(set_trap_table(&DOM0, &mut g, &[0x10, 0, 0, 0, 0, 0]), Outcome::Return(-14));
        put_trap(&mut g, 0, 13, 0xffff_ffff_8000_4000);
        put_trap(&mut g, 1, 12, 0x0000_8000_0000_0000);
        assert_eq!(set_trap_table(&DOM0, &mut g, &[BASE, 0, 0, 0, 0, 0]), Outcome::Return(-22));
        assert_eq!(g.traps.table[13].address, 0xffff_ffff_8000_4000);
        // A list without a terminator.
        for i in 0..300 {
            put_trap(&mut g, i, 1, 0x1000);
        }
        assert_eq!(set_trap_table(&DOM0, &mut g, &[BASE, 0, 0, 0, 0, 0]), Outcome::Return(-7));
        assert_eq!(set_trap_table(&DOM0, &mut g, &[0; 6]), Outcome::Return(0));
        assert!(g.traps.table.iter().all(|e| e.address == 0));
    }

    #[test]
    fn callbacks_and_stack() {
        let mut g = FakeGuest::new(BASE, 4096);
        assert_eq!(set_callbacks(&DOM0, &mut g, &[1, 2, 3, 0, 0, 0]), Outcome::Return(0));
        assert_eq!((g.traps.event_callback, g.traps.failsafe_callback, g.traps.syscall_callback), (1, 2, 3));
        let cb =
            CallbackRegister { type_: CALLBACKTYPE_EVENT, flags: 0, address: 0x55, ..Default::default() };
        g.mem[..16].copy_from_slice(cb.as_bytes());
        let reg = u64::from(CALLBACKOP_REGISTER);
        assert_eq!(callback_op(&DOM0, &mut g, &[reg, BASE, 0, 0, 0, 0]), Outcome::Return(0));
        assert_eq!(g.traps.event_callback, 0x55);
        g.mem[0] = 99;
        assert_eq!(callback_op(&DOM0, &mut g, &[reg, BASE, 0, 0, 0, 0]), Outcome::Return(-38));
        g.mem[0] = 3; // the deprecated SYSENTER type
        assert_eq!(callback_op(&DOM0, &mut g, &[reg, BASE, 0, 0, 0, 0]), Outcome::Return(-38));
        let bad =
            CallbackRegister { type_: CALLBACKTYPE_EVENT, flags: 0, address: 1 << 47, ..Default::default() };
        g.mem[..16].copy_from_slice(bad.as_bytes());
        assert_eq!(callback_op(&DOM0, &mut g, &[reg, BASE, 0, 0, 0, 0]), Outcome::Return(-22));
        assert_eq!(g.traps.event_callback, 0x55);
        assert_eq!(set_callbacks(&DOM0, &mut g, &[1 << 47, 9, 0, 0, 0, 0]), Outcome::Return(0));
        assert_eq!((g.traps.event_callback, g.traps.failsafe_callback), (0x55, 9));
        assert_eq!(callback_op(&DOM0, &mut g, &[reg, 8, 0, 0, 0, 0]), Outcome::Return(-14));
        assert_eq!(stack_switch(&DOM0, &mut g, &[0xe028, 0x1234, 0, 0, 0, 0]), Outcome::Return(0));
        assert_eq!((g.traps.kernel_ss, g.traps.kernel_sp), (0xe02b, 0x1234));
        assert_eq!(set_segment_base(&DOM0, &mut g, &[9, 0, 0, 0, 0, 0]), Outcome::Return(-22));
    }
}
