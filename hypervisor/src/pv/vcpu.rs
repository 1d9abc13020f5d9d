// SPDX-License-Identifier: MIT OR Apache-2.0
//! What brings a guest's vCPU back to the hypervisor: hypercalls (by
//! SYSCALL), exceptions and its system calls from user mode, and the way
//! back: bounces to the guest kernel's handlers, event upcalls, `iret`, and
//! the privileged instructions and page-table writes emulated for it.

use super::domain::{self, DOMAINS, Domain, Domains, FACTS, FRAME_TABLE, FRAMES, HV_SLOTS, M2P, MFN_LIMIT};
use super::domain::{CR4_GUEST_VISIBLE, CR4_OSXSAVE};
use crate::arch::guest::SegmentBase;
use crate::arch::{self, guest::SYSCALL_VECTOR};
use crate::evtchn::{Bits2l, EventChannels, deliver_2l, unmask_2l};
use crate::hal::{Fault, Guest};
use crate::hal::{FrameMemory, canonical};
use crate::hypercall::{self, Caller, Outcome};
use crate::mm::frame::Mfn;
use crate::mm::frame_table::{FrameTable, PageInfo};
use crate::mm::guest_pt::Mmu;
use crate::println;
use crate::pv::traps::{Regs, TI_MASK_EVENTS, VcpuTraps, bounce, has_error_code, iret as pv_iret};
use crate::trap::TrapFrame;
use pv_abi::arch_x86::{ArchVcpuInfo, IretContext};
use pv_abi::sched::SHUTDOWN_CRASH;
use pv_abi::xen::{DOMID_XEN, SharedInfo, VcpuInfo};
use zerocopy::IntoBytes;

/// RFLAGS bits a guest controls: CF PF AF ZF SF TF DF OF AC ID.
const GUEST_RFLAGS: u64 = 0x24_0dd5;
const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_DF: u64 = 1 << 10;
/// The system-call vector guests may raise with `int` (a DPL-3 gate).
pub const INT80: u8 = 0x80;
/// #PF error code: the access came from user mode.
const PFEC_USER: u64 = 1 << 2;

/// The running guest, for hypercall handlers: every domain (locked for the
/// duration of the call), which one calls, its memory and the console.
pub(super) struct Current<'a> {
    ds: &'a mut Domains,
    id: u16,
    mem: arch::guest::DirectMap,
    /// The frame table, locked the first time a handler needs it (most
    /// hypercalls do not).
    ft: Option<spin::MutexGuard<'static, Option<FrameTable<'static>>>>,
}

/// The frame table of a `Current`, locked on first use.
fn frame_table<'g>(
    ft: &'g mut Option<spin::MutexGuard<'static, Option<FrameTable<'static>>>>,
) -> &'g mut FrameTable<'static> {
    ft.get_or_insert_with(|| FRAME_TABLE.lock()).as_mut().expect("the frame table exists once a domain runs")
}

impl<'a> Current<'a> {
    pub(super) fn new(ds: &'a mut Domains, id: u16) -> Self {
        Current { ds, id, mem: arch::guest::DirectMap, ft: None }
    }

    fn d(&mut self) -> &mut Domain {
        self.ds.get_mut(self.id).expect("the calling domain exists while it calls")
    }

    fn dr(&self) -> &Domain {
        self.ds.get(self.id).expect("the calling domain exists while it calls")
    }

    /// What the MMU rules left to do: frames back to the pool, and a TLB
    /// flush if a mapping the rules no longer allow may be cached.
    pub(super) fn finish(mut self) {
        let Some(ft) = self.ft.as_mut().and_then(|g| g.as_mut()) else { return };
        if ft.flush_needed {
            ft.flush_needed = false;
            arch::guest::flush_tlb(None);
        }
        domain::return_freed(self.ds, ft);
    }
}

impl Guest for Current<'_> {
    fn copy_from(&mut self, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        arch::guest::copy_from_guest(buf, va).map_err(|_| Fault)
    }
    fn copy_to(&mut self, va: u64, data: &[u8]) -> Result<(), Fault> {
        arch::guest::copy_to_guest(va, data).map_err(|_| Fault)
    }
    fn console_read(&mut self, buf: &mut [u8]) -> usize {
        crate::console::read_input(buf)
    }
    fn console_write(&mut self, bytes: &[u8]) {
        // dom0's console_io output goes to the serial line as it is.
        crate::console::print(format_args!("{}", Utf8Lossy(bytes)));
    }
    fn mmu(&mut self) -> Mmu<'_, 'static> {
        let ft = frame_table(&mut self.ft);
        let hv = HV_SLOTS.get().expect("set with the frame table");
        let d = self.ds.get(self.id).expect("the calling domain exists while it calls");
        let mut mmu = Mmu::new(ft, &mut self.mem, d.id, d.privileged, hv);
        mmu.mfn_limit = MFN_LIMIT.get().copied().unwrap_or(1 << 24);
        mmu
    }
    fn alloc_shared_page(&mut self) -> Option<Mfn> {
        let mfn = FRAMES.lock().as_mut()?.alloc()?;
        self.mem.zero(mfn);
        let id = self.id;
        frame_table(&mut self.ft).set(mfn.0, PageInfo::shared(id));
        Some(mfn)
    }
    fn gnttab(&mut self) -> (&mut crate::gnttab::GrantTable, Mmu<'_, 'static>) {
        let ft = frame_table(&mut self.ft);
        let hv = HV_SLOTS.get().expect("set with the frame table");
        let d = self.ds.get_mut(self.id).expect("the calling domain exists while it calls");
        let mut mmu = Mmu::new(ft, &mut self.mem, d.id, d.privileged, hv);
        mmu.mfn_limit = MFN_LIMIT.get().copied().unwrap_or(1 << 24);
        (&mut d.gnttab, mmu)
    }
    fn gnttab_of(
        &mut self,
        granter: u16,
    ) -> Option<(&mut crate::gnttab::GrantTable, &mut crate::gnttab::Maptrack, Mmu<'_, 'static>)> {
        let ft = frame_table(&mut self.ft);
        let hv = HV_SLOTS.get().expect("set with the frame table");
        let (id, privileged, maptrack, gt) = if granter == self.id {
            let d = self.ds.get_mut(self.id)?;
            (d.id, d.privileged, &mut d.maptrack, &mut d.gnttab)
        } else {
            let (d, g) = self.ds.pair_mut(self.id, granter)?;
            (d.id, d.privileged, &mut d.maptrack, &mut g.gnttab)
        };
        let mut mmu = Mmu::new(ft, &mut self.mem, id, privileged, hv);
        mmu.mfn_limit = MFN_LIMIT.get().copied().unwrap_or(1 << 24);
        Some((gt, maptrack, mmu))
    }
    fn maptrack(&mut self) -> (&mut crate::gnttab::Maptrack, Mmu<'_, 'static>) {
        let ft = frame_table(&mut self.ft);
        let hv = HV_SLOTS.get().expect("set with the frame table");
        let d = self.ds.get_mut(self.id).expect("the calling domain exists while it calls");
        let mut mmu = Mmu::new(ft, &mut self.mem, d.id, d.privileged, hv);
        mmu.mfn_limit = MFN_LIMIT.get().copied().unwrap_or(1 << 24);
        (&mut d.maptrack, mmu)
    }
    fn page_counts(&self) -> (u64, u64) {
        let free = FRAMES.lock().as_ref().map_or(0, |f| f.free_frames());
        let count = |ft: &FrameTable<'_>| ft.len() as u64 - ft.census().2;
        let total = match self.ft.as_ref() {
            Some(g) => g.as_ref().map_or(0, count),
            None => FRAME_TABLE.lock().as_ref().map_or(0, count),
        };
        (total, free)
    }
    fn baseptr(&self, user: bool) -> Option<Mfn> {
        self.dr().baseptr[usize::from(user)]
    }
    fn set_baseptr(&mut self, user: bool, mfn: Option<Mfn>) {
        self.d().baseptr[usize::from(user)] = mfn;
        if let (false, Some(l4)) = (user, mfn) {
            // Another address space: the old one's global user mappings go too.
            arch::guest::load_cr3(l4.addr());
            arch::guest::flush_tlb(None);
        }
    }
    fn set_m2p(&mut self, mfn: Mfn, pfn: u64) {
        if let Some(e) = M2P.lock().as_mut().and_then(|m| m.table.get_mut(mfn.0 as usize)) {
            *e = pfn;
        }
    }
    fn reservation(&self) -> (u64, u64) {
        (self.dr().tot_pages, self.dr().max_pages)
    }
    fn alloc_page(&mut self) -> Option<Mfn> {
        if self.d().tot_pages >= self.d().max_pages {
            return None;
        }
        let mfn = FRAMES.lock().as_mut()?.alloc()?;
        // Nothing of the frame's last owner may leak.
        self.mem.zero(mfn);
        let id = self.id;
        frame_table(&mut self.ft).set(mfn.0, PageInfo::allocated(id));
        self.d().tot_pages += 1;
        Some(mfn)
    }
    fn flush_tlb(&mut self, va: Option<u64>) {
        arch::guest::flush_tlb(va);
    }
    fn traps(&mut self) -> &mut VcpuTraps {
        &mut self.d().traps
    }
    fn set_fpu_ts(&mut self, on: bool) {
        self.d().traps.fpu_ts = on;
        arch::guest::set_fpu_ts(on);
    }
    fn event_channels(&mut self) -> &mut EventChannels {
        &mut self.d().evtchn
    }
    fn deliver_event(&mut self, port: u32) {
        deliver_2l(&mut SharedBits::of(self.d()), port);
    }
    fn unmask_event(&mut self, port: u32) {
        unmask_2l(&mut SharedBits::of(self.d()), port);
    }
    fn close_event(&mut self, port: u32) -> Result<(), pv_abi::Errno> {
        let peer = self.d().evtchn.close(port)?;
        SharedBits::of(self.d()).clear_pending(port);
        if let Some((dom, peer_port)) = peer
            && let Some(other) = self.ds.get_mut(dom)
        {
            other.evtchn.peer_closed(peer_port, self.id);
        }
        Ok(())
    }
    fn set_timer(&mut self, deadline: Option<u64>) {
        self.d().timer = deadline;
        domain::rearm(self.ds);
    }
    fn write_gdt_entry(&mut self, index: usize, value: u64) {
        arch::desc::write_guest_gdt_entry(index, value);
        // The domain's copy, for when it runs again after another.
        let gdt = &mut self.d().gdt;
        if index >= gdt.len() && value != 0 {
            gdt.resize(index + 1, 0);
        }
        if let Some(e) = gdt.get_mut(index) {
            *e = value;
        }
    }
    fn map_ldt_page(&mut self, k: usize, frame: Option<Mfn>) {
        arch::paging::set_ldt_page(k as u64, frame.map(Mfn::addr));
    }
    fn load_ldt(&mut self, entries: usize) {
        arch::desc::load_guest_ldt(entries);
    }
    fn sched(&mut self) -> &mut crate::hypercall::SchedState {
        &mut self.d().sched
    }
    fn watchdogs_changed(&mut self) {
        domain::rearm(self.ds);
    }
    fn events_due(&self) -> bool {
        upcall_pending(self.dr()) && !upcall_mask(self.dr())
    }
    fn event_pending(&self, port: u32) -> bool {
        use crate::evtchn::Bits2l;
        SharedBits::of(self.dr()).pending(port)
    }
    fn set_segment_base(&mut self, which: u32, value: u64) -> Result<(), pv_abi::Errno> {
        use pv_abi::arch_x86::{SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER, SEGBASE_GS_USER_SEL};
        if which == SEGBASE_GS_USER_SEL {
            // The user's %gs selector (RPL 3 unless null), loaded as Xen does
            // between two SWAPGS: the base it gives becomes the user GS base;
            // the kernel's stays active. A refused selector loads null.
            let sel = value as u16;
            let sel = if sel > 3 { sel | 3 } else { sel };
            let kernel = arch::guest::read_segment_base(SegmentBase::GsKernel);
            self.d().gs_base_user = arch::guest::load_gs_selector(sel);
            // Canonical: it was the active base.
            let _ = arch::guest::write_segment_base(SegmentBase::GsKernel, kernel);
            return Ok(());
        }
        if !canonical(value) {
            return Err(pv_abi::Errno::EINVAL);
        }
        match which {
            SEGBASE_FS => {
                arch::guest::write_segment_base(SegmentBase::Fs, value).map_err(|_| pv_abi::Errno::EINVAL)
            }
            SEGBASE_GS_KERNEL => arch::guest::write_segment_base(SegmentBase::GsKernel, value)
                .map_err(|_| pv_abi::Errno::EINVAL),
            SEGBASE_GS_USER => {
                self.d().gs_base_user = value;
                Ok(())
            }
            _ => Err(pv_abi::Errno::EINVAL),
        }
    }
    fn domain_exists(&self, dom: u16) -> bool {
        self.ds.get(dom).is_some()
    }
    fn event_channels_of(&mut self, dom: u16) -> Option<&mut EventChannels> {
        self.ds.get_mut(dom).map(|d| &mut d.evtchn)
    }
    fn event_channels_with(&mut self, dom: u16) -> Option<(&mut EventChannels, &mut EventChannels)> {
        self.ds.pair_mut(self.id, dom).map(|(a, b)| (&mut a.evtchn, &mut b.evtchn))
    }
    fn deliver_event_to(&mut self, dom: u16, port: u32) {
        if dom == DOMID_XEN {
            domain::service_console(self.ds, self.id);
        } else {
            domain::deliver(self.ds, dom, port);
        }
    }
    fn domain_info(&self, dom: u16) -> Option<crate::hal::DomainInfo> {
        domain::domain_info(self.ds, dom)
    }
    fn pause_domain(&mut self, dom: u16, pause: bool) -> Result<(), pv_abi::Errno> {
        let now = crate::setup::system_time_ns();
        let s = &mut self.ds.sched;
        if if pause { s.pause(dom, now)? } else { s.unpause(dom, now)? } {
            self.ds.need_resched = true;
        }
        if !pause {
            domain::maybe_wake(self.ds, dom);
        }
        Ok(())
    }
    fn register_vcpu_info(&mut self, mfn: Mfn, offset: usize) -> Result<(), pv_abi::Errno> {
        let shared_info = self.dr().shared_info;
        if self.dr().vcpu_info.0 != shared_info {
            return Err(pv_abi::Errno::EINVAL);
        }
        // The frame stays the domain's and never a page table while used.
        self.mmu().get_page_and_type(mfn, crate::mm::frame_table::PageType::Writable)?;
        let (old, at) = self.dr().vcpu_info;
        let mut info = [0u8; core::mem::size_of::<VcpuInfo>()];
        self.mem.read(old, at, &mut info);
        self.mem.write(mfn, offset, &info);
        self.d().vcpu_info = (mfn, offset);
        // As Xen: everything may be pending at the new place; the guest looks.
        let d = self.dr();
        let mut bits = SharedBits::of(d);
        (0..64).for_each(|w| {
            bits.test_and_set_selector(w);
        });
        bits.set_upcall_pending();
        Ok(())
    }
    fn set_runstate_area(&mut self, va: u64) {
        let d = self.d();
        d.runstate_va = va;
        domain::update_runstate(d, pv_abi::vcpu::RUNSTATE_RUNNING);
    }
    fn shutdown_domain(&mut self, dom: u16, reason: u32) -> Result<(), pv_abi::Errno> {
        domain::shutdown(self.ds, Some(frame_table(&mut self.ft)), dom, reason);
        Ok(())
    }
    fn destroy_domain(&mut self, dom: u16) -> Result<(), pv_abi::Errno> {
        let ft = frame_table(&mut self.ft);
        let n = domain::destroy(self.ds, ft, dom)?;
        println!("(d{dom}) destroyed by d{}: {n} frames returned", self.id);
        Ok(())
    }
}

pub(super) struct Utf8Lossy<'a>(pub &'a [u8]);

impl core::fmt::Display for Utf8Lossy<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

/// Offsets in a `vcpu_info` of the event mask and CR2.
const UPCALL_MASK: usize = core::mem::offset_of!(VcpuInfo, evtchn_upcall_mask);
const CR2: usize = core::mem::offset_of!(VcpuInfo, arch) + core::mem::offset_of!(ArchVcpuInfo, cr2);

fn upcall_mask(d: &Domain) -> bool {
    let mut b = [0u8];
    arch::guest::DirectMap.read(d.vcpu_info.0, d.vcpu_info.1 + UPCALL_MASK, &mut b);
    b[0] != 0
}

pub(super) fn set_upcall_mask(d: &Domain, masked: bool) {
    arch::guest::DirectMap.write(d.vcpu_info.0, d.vcpu_info.1 + UPCALL_MASK, &[u8::from(masked)]);
}

fn regs_of(frame: &TrapFrame) -> Regs {
    Regs {
        rip: frame.rip,
        cs: frame.cs,
        rflags: frame.rflags,
        rsp: frame.rsp,
        ss: frame.ss,
        rcx: frame.rcx,
        r11: frame.r11,
    }
}

fn set_regs(frame: &mut TrapFrame, r: &Regs) {
    (frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss) = (r.rip, r.cs, r.rflags, r.rsp, r.ss);
    (frame.rcx, frame.r11) = (r.rcx, r.r11);
}

/// Ends dom0 after something it did that the hypervisor cannot resume.
/// Ends the running domain after something it did that the hypervisor
/// cannot resume; another vCPU's state is in `frame` afterwards (or the run
/// ends, for dom0): the caller must not touch `frame` or guest memory again.
fn crash(frame: &mut TrapFrame, why: core::fmt::Arguments<'_>) {
    let mut guard = DOMAINS.lock();
    let Some(ds) = guard.as_mut() else { return };
    let Some(id) = ds.current else { return };
    println!(
        "(d{id}) {why} at rip {:#x} (vector {}, error code {:#x}, cr2 {:#x}, rsp {:#x}): domain crashed",
        frame.rip,
        frame.vector,
        frame.error_code,
        arch::cpu::read_cr2(),
        frame.rsp
    );
    domain::shutdown(ds, None, id, SHUTDOWN_CRASH);
    drop(guard);
    domain::schedule(frame);
}

/// The way back to the guest: another vCPU first if the scheduler says so,
/// then the event upcall if one is due.
pub(super) fn return_to_guest(frame: &mut TrapFrame, resched: bool) {
    deliver_upcall_or_reschedule(frame, resched);
}

/// A trap or SYSCALL from ring 3: the running guest's state is `frame`.
pub fn from_guest(frame: &mut TrapFrame) {
    let mut guard = DOMAINS.lock();
    let Some(ds) = guard.as_mut() else { return };
    let Some(id) = ds.current else { return };
    let Some(d) = ds.get_mut(id) else { return };
    let user_mode = d.user_mode;
    if frame.vector == SYSCALL_VECTOR && user_mode {
        drop(guard);
        syscall_bounce(frame);
    } else if frame.vector == SYSCALL_VECTOR {
        if frame.rax == u64::from(pv_abi::hypercall::HYPERVISOR_IRET) {
            drop(guard);
            do_iret(frame);
            // The iret may have unmasked events that are pending.
            return deliver_upcall(frame);
        }
        let facts = FACTS.get().expect("set before a domain runs");
        let caller = Caller {
            domid: id,
            privileged: d.privileged,
            hv_cmdline: facts.hv_cmdline,
            max_page: facts.max_page,
            tsc_khz: facts.tsc_khz,
            m2p_frames: facts.m2p_frames,
            build_id: facts.build_id,
            host_memory_map: facts.host_memory_map,
            now: crate::setup::system_time_ns,
        };
        let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9];
        let mut current = Current::new(ds, id);
        let outcome = hypercall::dispatch(&caller, &mut current, frame.rax, &args);
        current.finish();
        // SYSCALL left the return address in RCX and the flags in R11.
        frame.rip = frame.rcx;
        frame.rflags = (frame.r11 & GUEST_RFLAGS) | RFLAGS_IF | 2;
        frame.rax = match outcome {
            Outcome::Return(v) => v as u64,
            _ => 0,
        };
        match outcome {
            Outcome::Return(_) => {
                // The common case, under the lock already taken: nothing to do.
                let resched = ds.need_resched;
                if let Some(d) = ds.get(id)
                    && !resched
                    && (d.traps.event_callback == 0 || !upcall_pending(d) || upcall_mask(d))
                {
                    return;
                }
            }
            Outcome::Shutdown(reason) => {
                domain::shutdown(ds, None, id, reason);
                drop(guard);
                // Someone else runs now, if anyone.
                return return_to_guest(frame, true);
            }
            Outcome::Block => domain::block(ds, None),
            Outcome::Poll(wait) => domain::block(ds, Some(wait)),
            Outcome::Yield => domain::yield_now(ds),
            Outcome::Iret { result_at } => {
                drop(guard);
                if do_iret(frame) {
                    // The entry gets the frame's RAX; the multicall's own
                    // return value is an int (as in Xen).
                    let _ = arch::guest::copy_to_guest(result_at, &frame.rax.to_le_bytes());
                    frame.rax = frame.rax as i32 as i64 as u64;
                }
                return return_to_guest(frame, false);
            }
        }
        let resched = ds.need_resched;
        drop(guard);
        return return_to_guest(frame, resched);
    } else if frame.vector == 13 && frame.error_code & 7 == 4 {
        // A #GP on an LDT selector: its page may not be in use yet.
        let mut current = Current::new(ds, id);
        let fault = hypercall::ldt_fault(&mut current, (frame.error_code >> 3) as u32);
        current.finish();
        drop(guard);
        match fault {
            hypercall::LdtFault::Retry => {}
            hypercall::LdtFault::PageFault(addr) => {
                arch::cpu::write_cr2(addr);
                (frame.vector, frame.error_code) = (14, 0);
                bounce_exception(frame);
            }
            hypercall::LdtFault::Guest => bounce_exception(frame),
        }
    } else {
        drop(guard);
        // Privileged instructions and page-table writes are emulated for the
        // guest kernel only.
        let emulated = !user_mode
            && match frame.vector {
                6 | 13 => emulate(frame),
                14 => page_table_write(frame),
                _ => false,
            };
        if !emulated {
            bounce_exception(frame);
        }
    }
    return_to_guest(frame, false);
}

/// Switches the vCPU between its kernel and user mode: page tables and GS
/// bases (the active one is in the CPU, the other in the domain).
fn set_mode(d: &mut Domain, user: bool) {
    if d.user_mode == user {
        return;
    }
    if let Some(l4) = d.baseptr[usize::from(user)] {
        arch::guest::load_cr3(l4.addr());
    }
    let active = arch::guest::read_segment_base(SegmentBase::GsKernel);
    let next = if user { d.gs_base_user } else { d.gs_base_kernel };
    // Both bases were canonical when the guest set them.
    let _ = arch::guest::write_segment_base(SegmentBase::GsKernel, next);
    if user {
        d.gs_base_kernel = active;
    } else {
        d.gs_base_user = active;
    }
    d.user_mode = user;
}

/// Before a bounce: from user mode, switch to kernel mode and return the
/// guest kernel's stack (`stack_switch`) for the frame.
fn enter_kernel_mode(d: &mut Domain) -> Option<u64> {
    if !d.user_mode {
        return None;
    }
    set_mode(d, false);
    Some(d.traps.kernel_sp)
}

/// SYSCALL from guest user mode: not a hypercall, a bounce to the guest
/// kernel's syscall callback with the user's context in the frame.
fn syscall_bounce(frame: &mut TrapFrame) {
    let mut guard = DOMAINS.lock();
    let Some(d) = guard.as_mut().and_then(Domains::running) else { return };
    let regs = regs_of(frame);
    let (handler, mask) = (d.traps.syscall_callback, d.traps.syscall_masks_events);
    if handler == 0 {
        // No syscall entry point: the guest gets the #UD of a missing
        // SYSCALL, at the instruction (2 bytes before the return address).
        drop(guard);
        frame.vector = 6;
        frame.error_code = 0;
        frame.rip = frame.rcx.wrapping_sub(2);
        return bounce_exception(frame);
    }
    let upcall_mask = upcall_mask(d);
    let stack = enter_kernel_mode(d);
    let Some(mut b) = bounce(handler, mask, None, &regs, upcall_mask, stack) else { return };
    // The syscall handler starts with DF clear, as after SYSCALL natively.
    b.resume.rflags &= !RFLAGS_DF;
    if enter_bounce(d, frame, &b).is_err() {
        drop(guard);
        crash(frame, format_args!("syscall: the guest kernel stack is not writable"));
    }
}

/// The 2-level event bits of a domain: pending and mask words in its
/// shared-info frame, vCPU 0's selector and upcall flag in its `vcpu_info`
/// (in shared info, or where VCPUOP_register_vcpu_info put it; 8-byte
/// aligned). The guest does not run while the hypervisor updates them (one
/// CPU).
pub(super) struct SharedBits {
    shared: Mfn,
    vcpu: (Mfn, usize),
}

impl SharedBits {
    pub(super) fn of(d: &Domain) -> Self {
        SharedBits { shared: d.shared_info, vcpu: d.vcpu_info }
    }
    fn word(&self, offset: usize) -> u64 {
        arch::guest::DirectMap.read_u64(self.shared, offset / 8)
    }
    fn set_word(&mut self, offset: usize, v: u64) {
        arch::guest::DirectMap.write_u64(self.shared, offset / 8, v);
    }
    fn test_and_set(&mut self, offset: usize, bit: u32) -> bool {
        let w = self.word(offset);
        self.set_word(offset, w | (1 << bit));
        w & (1 << bit) != 0
    }
}

const PENDING: usize = core::mem::offset_of!(SharedInfo, evtchn_pending);
const MASK: usize = core::mem::offset_of!(SharedInfo, evtchn_mask);
const SELECTOR: usize = core::mem::offset_of!(VcpuInfo, evtchn_pending_sel);
const UPCALL_PENDING: usize = core::mem::offset_of!(VcpuInfo, evtchn_upcall_pending);

impl Bits2l for SharedBits {
    fn test_and_set_pending(&mut self, port: u32) -> bool {
        self.test_and_set(PENDING + 8 * (port / 64) as usize, port % 64)
    }
    fn pending(&self, port: u32) -> bool {
        self.word(PENDING + 8 * (port / 64) as usize) & (1 << (port % 64)) != 0
    }
    fn masked(&self, port: u32) -> bool {
        self.word(MASK + 8 * (port / 64) as usize) & (1 << (port % 64)) != 0
    }
    fn clear_mask(&mut self, port: u32) {
        let at = MASK + 8 * (port / 64) as usize;
        let w = self.word(at);
        self.set_word(at, w & !(1 << (port % 64)));
    }
    fn clear_pending(&mut self, port: u32) {
        let at = PENDING + 8 * (port / 64) as usize;
        let w = self.word(at);
        self.set_word(at, w & !(1 << (port % 64)));
    }
    fn test_and_set_selector(&mut self, word: u32) -> bool {
        let (mfn, at) = self.vcpu;
        let i = (at + SELECTOR) / 8;
        let w = arch::guest::DirectMap.read_u64(mfn, i);
        arch::guest::DirectMap.write_u64(mfn, i, w | (1 << word));
        w & (1 << word) != 0
    }
    fn set_upcall_pending(&mut self) {
        arch::guest::DirectMap.write(self.vcpu.0, self.vcpu.1 + UPCALL_PENDING, &[1]);
    }
}

pub(super) fn upcall_pending(d: &Domain) -> bool {
    let mut b = [0u8];
    arch::guest::DirectMap.read(d.vcpu_info.0, d.vcpu_info.1 + UPCALL_PENDING, &mut b);
    b[0] != 0
}

/// On the way back to the guest: run its event callback if an event is
/// pending and events are not masked.
fn deliver_upcall(frame: &mut TrapFrame) {
    deliver_upcall_or_reschedule(frame, false);
}

/// The way back to the guest: another vCPU first if the scheduler asks (or
/// `resched`), then the event upcall if one is due. One lock in the common
/// case.
fn deliver_upcall_or_reschedule(frame: &mut TrapFrame, resched: bool) {
    let mut guard = DOMAINS.lock();
    if resched || guard.as_ref().is_some_and(|ds| ds.need_resched) {
        drop(guard);
        domain::schedule(frame);
        guard = DOMAINS.lock();
    }
    let Some(d) = guard.as_mut().and_then(Domains::running) else { return };
    if d.traps.event_callback == 0 || !upcall_pending(d) || upcall_mask(d) {
        return;
    }
    let stack = enter_kernel_mode(d);
    let Some(b) = bounce(d.traps.event_callback, true, None, &regs_of(frame), false, stack) else {
        return;
    };
    if enter_bounce(d, frame, &b).is_err() {
        drop(guard);
        crash(frame, format_args!("event upcall: the guest stack is not writable"));
    }
}

/// Writes a bounce frame to the guest's stack and switches `frame` to the
/// handler; an unwritable stack is the caller's to report.
fn enter_bounce(d: &Domain, frame: &mut TrapFrame, b: &crate::pv::traps::Bounce) -> Result<(), Fault> {
    let (bytes, len) = b.bytes();
    arch::guest::copy_to_guest(b.frame_rsp, &bytes[..len]).map_err(|_| Fault)?;
    if b.mask_events {
        set_upcall_mask(d, true);
    }
    set_regs(frame, &b.resume);
    Ok(())
}

/// Delivers an exception to the guest kernel's handler from its trap table.
fn bounce_exception(frame: &mut TrapFrame) {
    let mut vector = frame.vector as u8;
    let mut code = has_error_code(vector).then_some(frame.error_code);
    let mut guard = DOMAINS.lock();
    let Some(d) = guard.as_mut().and_then(Domains::running) else { return };
    // The guest kernel counts as ring 1 for its trap table's DPLs, user mode as 3.
    let min_dpl = if d.user_mode { 3 } else { 1 };
    // `int $n` meets a DPL-0 gate: #GP with the IDT bit. The guest's trap
    // table decides whether its kernel may raise that vector (DPL >= 1).
    // The vector is read from the instruction (`cd nn`): QEMU's TCG encodes
    // the error code of a 64-bit IDT differently from hardware.
    if vector == 13 && frame.error_code & 3 == 2 {
        let mut insn = [0u8; 2];
        if arch::guest::copy_from_guest(&mut insn, frame.rip).is_ok() && insn[0] == 0xcd {
            if d.traps.table[usize::from(insn[1])].flags & 3 >= min_dpl {
                vector = insn[1];
                code = None;
                frame.rip = frame.rip.wrapping_add(2);
            } else {
                code = Some((u64::from(insn[1]) << 3) | 2);
            }
        }
    }
    // `int $0x80` arrives through a DPL-3 gate (as in Xen, for system calls):
    // delivered to the guest's handler whatever its DPL; without a handler,
    // the #GP a DPL-0 gate would give.
    if vector == INT80 && d.traps.table[usize::from(INT80)].address == 0 {
        vector = 13;
        code = Some((u64::from(INT80) << 3) | 2);
        frame.rip = frame.rip.wrapping_sub(2);
    }
    if vector == 1 {
        // What the CPU says of this #DB becomes the guest's DR6.
        d.traps.debugreg[6] |= arch::guest::take_dr6();
    }
    if vector == 7 && d.traps.fpu_ts {
        // The guest's lazy FPU switch: clear TS for it and tell it.
        d.traps.fpu_ts = false;
        arch::guest::set_fpu_ts(false);
    }
    if vector == 14 {
        d.cr2 = arch::cpu::read_cr2();
        arch::guest::DirectMap.write(d.vcpu_info.0, d.vcpu_info.1 + CR2, &d.cr2.to_le_bytes());
        // The guest kernel runs in ring 3 but must see supervisor faults.
        if !d.user_mode {
            code = code.map(|c| c & !PFEC_USER);
        }
    }
    let entry = d.traps.table[usize::from(vector)];
    let mask = upcall_mask(d);
    let stack = enter_kernel_mode(d);
    let masks = entry.flags & TI_MASK_EVENTS != 0;
    let Some(b) = bounce(entry.address, masks, code, &regs_of(frame), mask, stack) else {
        drop(guard);
        return crash(frame, format_args!("unhandled exception {vector} (no trap handler)"));
    };
    if enter_bounce(d, frame, &b).is_err() {
        drop(guard);
        crash(
            frame,
            format_args!("exception {vector}: the guest stack is not writable for the bounce frame"),
        );
    }
}

/// `HYPERVISOR_iret`: the guest's stack holds an `iret_context`. False if
/// the domain crashed on it (`frame` is then another vCPU's).
fn do_iret(frame: &mut TrapFrame) -> bool {
    let mut ctx = IretContext::default();
    if arch::guest::copy_from_guest(ctx.as_mut_bytes(), frame.rsp).is_err() {
        crash(frame, format_args!("iret with an unreadable frame"));
        return false;
    }
    let r = {
        let guard = DOMAINS.lock();
        let gdt = guard.as_ref().and_then(|ds| ds.get(ds.current?)).map_or(&[][..], |d| &d.gdt[..]);
        pv_iret(&ctx, gdt)
    };
    let r = match r {
        Ok(r) => r,
        Err(_) => {
            let why = format_args!(
                "iret to an invalid context (rip {:#x} cs {:#x} ss {:#x})",
                ctx.rip, ctx.cs, ctx.ss
            );
            crash(frame, why);
            return false;
        }
    };
    {
        let mut guard = DOMAINS.lock();
        let Some(d) = guard.as_mut().and_then(Domains::running) else { return false };
        if r.to_user && d.baseptr[1].is_none() {
            drop(guard);
            crash(frame, format_args!("iret to user mode without user page tables"));
            return false;
        }
        set_upcall_mask(d, r.upcall_mask);
        set_mode(d, r.to_user);
    }
    set_regs(frame, &r.regs);
    frame.rax = r.rax;
    if let Some(code) = r.gp {
        // The IRETQ to these user selectors would fault: the guest kernel
        // gets that #GP, from the user context it tried to enter.
        frame.vector = 13;
        frame.error_code = code;
        bounce_exception(frame);
    }
    true
}

const MSR_EFER: u32 = 0xc000_0080;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
const MSR_PAT: u32 = 0x277;
const MSR_TSC: u32 = 0x10;
const MSR_TSC_AUX: u32 = 0xc000_0103;
const MSR_PLATFORM_INFO: u32 = 0xce;
const MSR_APIC_BASE: u32 = 0x1b;
const MSR_MISC_ENABLE: u32 = 0x1a0;
const CR0_TS: u64 = 1 << 3;
/// The PAT Xen programs and reports to PV guests.
const XEN_PAT: u64 = 0x0000_0501_0007_0406;
/// EFER bits a guest sees: SCE, LME, LMA, NXE.
const EFER_GUEST_VISIBLE: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);

/// Emulates the privileged instruction at the guest's RIP (#GP), or a
/// forced-emulation CPUID (#UD). Returns false when the guest gets the fault.
fn emulate(frame: &mut TrapFrame) -> bool {
    use crate::priv_op::{Op, XenLeaves, cpuid_policy, decode, decode_forced_cpuid};
    let mut bytes = [0u8; 15];
    // The instruction may end near the end of a mapping: take what reads.
    let mut n = bytes.len();
    while n > 0 && arch::guest::copy_from_guest(&mut bytes[..n], frame.rip).is_err() {
        n -= 1;
    }
    let insn = if frame.vector == 6 { decode_forced_cpuid(&bytes[..n]) } else { decode(&bytes[..n]) };
    let Some(insn) = insn else { return false };
    let mut guard = DOMAINS.lock();
    let Some(ds) = guard.as_mut() else { return false };
    let Some(id) = ds.current else { return false };
    let Some(d) = ds.get_mut(id) else { return false };
    let ecx = frame.rcx as u32;
    let ok = match insn.op {
        Op::Cpuid => {
            let h = arch::cpu::cpuid(frame.rax as u32, ecx);
            let (mul, shift, khz) =
                crate::setup::clock().map_or((0, 0, 0), |(_, s)| (s.mul, s.shift, crate::setup::tsc_khz()));
            let phys_bits = (arch::cpu::cpuid(0x8000_0008, 0).eax & 0xff) as u8;
            let xen = XenLeaves { version: (4, 17), tsc_khz: khz, tsc_mul: mul, tsc_shift: shift, phys_bits };
            let r = cpuid_policy(frame.rax as u32, ecx, [h.eax, h.ebx, h.ecx, h.edx], &xen);
            (frame.rax, frame.rbx, frame.rcx, frame.rdx) =
                (u64::from(r[0]), u64::from(r[1]), u64::from(r[2]), u64::from(r[3]));
            true
        }
        Op::MovFromCr { cr, gpr } => {
            let v = match cr {
                0 => Some(arch::cpu::read_cr0()),
                2 => Some(d.cr2),
                3 => Some(d.baseptr[0].map_or(0, Mfn::addr)),
                4 => Some(d.cr4),
                _ => None,
            };
            v.map(|v| frame.set_gpr(gpr, v)).is_some()
        }
        Op::MovToCr { cr: 4, gpr } => {
            // Accepted as Xen does, filtered to what a PV guest may hold.
            d.cr4 = frame.gpr(gpr) & CR4_GUEST_VISIBLE;
            true
        }
        // CR0: only TS may change (the guest's lazy FPU switch).
        Op::MovToCr { cr: 0, gpr } if (frame.gpr(gpr) ^ arch::cpu::read_cr0()) & !CR0_TS == 0 => {
            let ts = frame.gpr(gpr) & CR0_TS != 0;
            d.traps.fpu_ts = ts;
            arch::guest::set_fpu_ts(ts);
            true
        }
        Op::Clts => {
            d.traps.fpu_ts = false;
            arch::guest::set_fpu_ts(false);
            true
        }
        Op::MovToCr { cr: 2, gpr } => {
            d.cr2 = frame.gpr(gpr);
            true
        }
        // A CR3 write is NEW_BASEPTR (reloading the current one flushes).
        Op::MovToCr { cr: 3, gpr } => {
            let mut current = Current::new(ds, id);
            let ok =
                hypercall::new_baseptr(&mut current, false, crate::mm::guest_pt::entry_mfn(frame.gpr(gpr)))
                    .is_ok();
            current.finish();
            arch::guest::flush_tlb(None);
            ok
        }
        Op::MovToCr { .. } => false,
        Op::MovFromDr { dr, gpr } => match d.traps.get_debugreg(u64::from(dr)) {
            Ok(v) => {
                frame.set_gpr(gpr, v);
                true
            }
            Err(_) => false,
        },
        Op::MovToDr { dr, gpr } => d.traps.set_debugreg(u64::from(dr), frame.gpr(gpr)).is_ok(),
        Op::Rdmsr => {
            let v = match ecx {
                MSR_FS_BASE => Some(arch::guest::read_segment_base(SegmentBase::Fs)),
                MSR_GS_BASE => Some(arch::guest::read_segment_base(SegmentBase::GsKernel)),
                MSR_SHADOW_GS_BASE => Some(d.gs_base_user),
                MSR_EFER => Some(arch::cpu::rdmsr(MSR_EFER) & EFER_GUEST_VISIBLE),
                MSR_PAT => Some(XEN_PAT),
                MSR_TSC => Some(arch::cpu::rdtsc()),
                MSR_TSC_AUX | MSR_PLATFORM_INFO => Some(0),
                // The boot CPU's enabled xAPIC at its usual base.
                MSR_APIC_BASE => Some(0xfee0_0900),
                // Fast strings; BTS and PEBS unavailable; xTPR messages off.
                MSR_MISC_ENABLE => Some((1 << 0) | (1 << 11) | (1 << 12) | (1 << 23)),
                _ => None,
            };
            v.map(|v| (frame.rax, frame.rdx) = (v & 0xffff_ffff, v >> 32)).is_some()
        }
        Op::Wrmsr => {
            let v = (frame.rdx << 32) | (frame.rax & 0xffff_ffff);
            match ecx {
                MSR_FS_BASE => arch::guest::write_segment_base(SegmentBase::Fs, v).is_ok(),
                MSR_GS_BASE => arch::guest::write_segment_base(SegmentBase::GsKernel, v).is_ok(),
                MSR_SHADOW_GS_BASE if canonical(v) => {
                    d.gs_base_user = v;
                    true
                }
                // EFER as the guest already sees it is harmless; PAT is never
                // written (#GP, even with Xen's own value, as on Xen).
                MSR_EFER => v == arch::cpu::rdmsr(MSR_EFER) & EFER_GUEST_VISIBLE,
                _ => false,
            }
        }
        Op::Wbinvd => true,
        Op::Xsetbv if d.cr4 & CR4_OSXSAVE == 0 => {
            // As on hardware (and Xen) before the OS enables XSAVE: #UD.
            frame.vector = 6;
            frame.error_code = 0;
            false
        }
        Op::Xsetbv => {
            frame.rcx as u32 == 0
                && arch::cpu::write_xcr0((frame.rdx << 32) | (frame.rax & 0xffff_ffff)).is_ok()
        }
        // Port I/O and CLI/STI need the virtual IOPL (the guest kernel is ring 1
        // to Xen); CLI/STI then do nothing: events are masked through
        // vcpu_info, not RFLAGS.IF.
        _ if d.traps.iopl < 1 => false,
        Op::Cli | Op::Sti => true,
        Op::In { size, port } => {
            let port = port.map_or(frame.rdx as u16, u16::from);
            // Only dom0 has I/O ports: as on Xen, another domain's read of
            // a port it has no permission for gives all ones, its write is
            // dropped (Linux probes PCI at 0xcf8 this way).
            let v = match d.privileged {
                true => u64::from(arch::guest::dom0_port_in(port, size)),
                false => u64::from(u32::MAX >> (32 - 8 * u32::from(size))),
            };
            frame.rax = match size {
                1 => (frame.rax & !0xff) | v,
                2 => (frame.rax & !0xffff) | v,
                _ => v,
            };
            true
        }
        Op::Out { size, port } => {
            let port = port.map_or(frame.rdx as u16, u16::from);
            if d.privileged {
                arch::guest::dom0_port_out(port, size, frame.rax as u32);
            }
            true
        }
    };
    if ok {
        frame.rip = frame.rip.wrapping_add(u64::from(insn.len));
    }
    ok
}

/// A write fault of the guest kernel on one of its own L1 tables (mapped
/// read-only, as they must be): the write is emulated as a checked update of
/// that entry, as Xen does for the direct PTE writes of 64-bit Linux. Any
/// other write fault, or an update the rules refuse, is the guest's #PF.
fn page_table_write(frame: &mut TrapFrame) -> bool {
    use crate::mm::guest_pt::{entry_mfn, l1_slot};
    use crate::pv::ptwr::{Src, apply, decode};
    // Present, write, not a reserved-bit or instruction-fetch fault.
    const PFEC_P_W: u64 = 0b11;
    const PFEC_RSVD_FETCH: u64 = (1 << 3) | (1 << 4);
    if frame.error_code & (PFEC_P_W | PFEC_RSVD_FETCH) != PFEC_P_W {
        return false;
    }
    let va = arch::cpu::read_cr2();
    let mut bytes = [0u8; 15];
    let mut n = bytes.len();
    while n > 0 && arch::guest::copy_from_guest(&mut bytes[..n], frame.rip).is_err() {
        n -= 1;
    }
    let Some(w) = decode(&bytes[..n]) else { return false };
    // MOVS's element comes from guest memory at RSI (a read that may fault).
    let mut element = [0u8; 8];
    if w.src == Src::AtRsi
        && arch::guest::copy_from_guest(&mut element[..usize::from(w.size)], frame.rsi).is_err()
    {
        return false;
    }
    let mut guard = DOMAINS.lock();
    let Some(ds) = guard.as_mut() else { return false };
    let Some(id) = ds.current else { return false };
    let Some(l4) = ds.get(id).and_then(|d| d.baseptr[0]) else { return false };
    let mut current = Current::new(ds, id);
    let done = (|| {
        let mut mmu = current.mmu();
        let (l1, index) = l1_slot(&*mmu.mem, l4, va).ok()?;
        let table = entry_mfn(mmu.mem.read_u64(l1, index));
        if mmu.table_level(table) != Some(1) {
            return None;
        }
        let slot = ((va & 0xfff) / 8) as usize;
        let old = mmu.mem.read_u64(table, slot);
        let src = match w.src {
            Src::Reg(r) => frame.gpr(r),
            Src::HighByte(r) => frame.gpr(r) >> 8,
            Src::Imm(i) => i,
            Src::AtRsi => u64::from_le_bytes(element),
        };
        let e = apply(&w, old, (va & 7) as usize, src, frame.rax)?;
        mmu.mod_entry(table, slot, e.entry, false).ok()?;
        Some(e)
    })();
    current.finish();
    let Some(e) = done else { return false };
    if let Some((r, v)) = e.reg {
        // A 4-byte register write zero-extends, as on hardware.
        frame.set_gpr(r, if w.size == 4 { v & 0xffff_ffff } else { v });
    }
    frame.rflags = (frame.rflags & !e.flags_clear) | e.flags_set;
    if let Some(s) = w.string {
        // One element: the pointers move by its size (down with DF).
        let size = u64::from(w.size);
        let step = if frame.rflags & RFLAGS_DF != 0 { size.wrapping_neg() } else { size };
        frame.rdi = frame.rdi.wrapping_add(step);
        if s.movs {
            frame.rsi = frame.rsi.wrapping_add(step);
        }
        if s.rep {
            frame.rcx = frame.rcx.wrapping_sub(1);
            if frame.rcx != 0 {
                // Not finished: the instruction runs again for the next element.
                return true;
            }
        }
    }
    frame.rip = frame.rip.wrapping_add(u64::from(w.len));
    true
}
