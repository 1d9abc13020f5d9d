// SPDX-License-Identifier: MIT OR Apache-2.0
//! Running dom0: build it from the first module, enter it in ring 3, and
//! handle what brings it back to the hypervisor (hypercalls by SYSCALL,
//! exceptions). One vCPU, in guest kernel mode, for now.

use crate::arch::guest::SegmentBase;
use crate::arch::{self, guest::SYSCALL_VECTOR};
use crate::boot::BootInfo;
use crate::domain::builder::{self, BuildArgs};
use crate::domain::elfnotes;
use crate::hal::{Fault, Guest};
use crate::hypercall::{self, Caller, Outcome};
use crate::mm::frame::{FrameAllocator, Mfn};
use crate::mm::frame_table::{FrameTable, Owner};
use crate::mm::guest_pt::FrameKind;
use crate::setup::refuse;
use crate::trap::TrapFrame;
use crate::{cmdline, elf, exit_code, println};
use alloc::vec::Vec;
use pv_abi::arch_x86::{FLAT_KERNEL_CS, FLAT_KERNEL_SS};
use pv_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_WATCHDOG};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// dom0's memory when `dom0_mem=` does not say.
const DEFAULT_DOM0_MEM: u64 = 128 * MIB;
/// RFLAGS bits a guest controls: CF PF AF ZF SF TF DF OF AC ID.
const GUEST_RFLAGS: u64 = 0x24_0dd5;
const RFLAGS_IF: u64 = 1 << 9;

/// A running domain (fields are used as the PV issues grow: the MMU
/// validates against `p2m`, events live in `shared_info`).
#[allow(dead_code)]
pub struct Domain {
    pub id: u16,
    pub privileged: bool,
    pub p2m: Vec<Mfn>,
    pub shared_info: Mfn,
    /// Machine address of the guest kernel's L4 (what CR3 reads return).
    pub cr3: u64,
    /// CR4 as the guest sees it.
    pub cr4: u64,
    /// The user-mode GS base (MSR_SHADOW_GS_BASE while the kernel runs).
    pub gs_base_user: u64,
}

static DOM0: spin::Mutex<Option<Domain>> = spin::Mutex::new(None);
static FRAME_TABLE: spin::Mutex<Option<FrameTable<'static>>> = spin::Mutex::new(None);
static MAX_PAGE: spin::Once<u64> = spin::Once::new();
static HV_CMDLINE: spin::Once<heapless::String<{ crate::boot::CMDLINE_MAX }>> = spin::Once::new();

pub fn start_dom0(
    info: &BootInfo,
    opts: &cmdline::Options,
    frames: &mut FrameAllocator<'static>,
    mut table: FrameTable<'static>,
    m2p: &mut crate::setup::M2p,
) -> ! {
    MAX_PAGE.call_once(|| m2p.table.len() as u64);
    HV_CMDLINE.call_once(|| info.cmdline.clone());
    let Some(module) = info.modules.first() else {
        refuse(format_args!(
            "no dom0 module: nothing to run (give the dom0 kernel as the first module)"
        ));
    };
    let bytes = arch::mem::boot_bytes(module.start, module.len().unwrap_or(0)).unwrap_or(&[]);
    let image = match elf::Elf::parse(bytes) {
        Ok(image) => image,
        Err(e) => refuse(format_args!("dom0 module: {e}")),
    };
    let notes = match elfnotes::parse(image.note_segments()) {
        Ok(n) => n,
        Err(e) => refuse(format_args!("dom0 module: {e}")),
    };
    let initrd = match info.modules.get(1) {
        Some(m) => arch::mem::boot_bytes(m.start, m.len().unwrap_or(0)).unwrap_or(&[]),
        None => &[],
    };

    let free = frames.free_frames() * PAGE;
    let want = opts
        .dom0_mem
        .amount
        .map(|a| a.resolve(free))
        .unwrap_or(DEFAULT_DOM0_MEM.min(free / 2));
    let nr_pages = want / PAGE;
    let layout = match builder::plan(&image, &notes, nr_pages, initrd.len() as u64) {
        Ok(l) => l,
        Err(e) => refuse(format_args!("dom0: cannot build: {e}")),
    };
    let mut p2m = Vec::with_capacity(nr_pages as usize);
    for _ in 0..nr_pages {
        match frames.alloc() {
            Some(m) => p2m.push(m),
            None => refuse(format_args!("dom0: out of memory for {} MiB", want / MIB)),
        }
    }
    let Some(shared_info) = frames.alloc() else {
        refuse(format_args!("dom0: out of memory"))
    };
    for m in p2m.iter().chain([&shared_info]) {
        table.set_owner(m.0, Owner::Domain(0));
    }
    for va in (layout.page_tables.0..layout.page_tables.1).step_by(PAGE as usize) {
        table.set_pagetable(p2m[layout.pfn(va) as usize].0, true);
    }
    *FRAME_TABLE.lock() = Some(table);
    for (pfn, m) in p2m.iter().enumerate() {
        if let Some(e) = m2p.table.get_mut(m.0 as usize) {
            *e = pfn as u64;
        }
    }
    write_shared_info(shared_info);
    let hv_l4 = arch::guest::hypervisor_l4();
    let sod = builder::build(
        &mut arch::guest::DirectMap,
        &layout,
        &BuildArgs {
            elf: &image,
            initrd,
            cmdline: &module.cmdline,
            p2m: &p2m,
            shared_info,
            privileged: true,
            hypervisor_l4: &hv_l4,
            hypercall_page: hypercall::write_hypercall_page,
        },
    );
    println!(
        "dom0: {} MiB, kernel {:#x}-{:#x}, entry {:#x}, start_info {:#x}, {} page-table frames, \"{}\"",
        nr_pages * PAGE / MIB,
        layout.kernel.0,
        layout.kernel.1,
        layout.entry,
        layout.start_info,
        layout.nr_pt_frames(),
        notes.guest_os.unwrap_or("?"),
    );
    *DOM0.lock() = Some(Domain {
        id: 0,
        privileged: true,
        p2m,
        shared_info,
        cr3: sod.cr3.addr(),
        cr4: arch::cpu::read_cr4() & CR4_GUEST_VISIBLE,
        gs_base_user: 0,
    });

    arch::guest::init();
    let frame = TrapFrame {
        rip: sod.rip,
        cs: u64::from(FLAT_KERNEL_CS),
        rflags: RFLAGS_IF | 2,
        rsp: sod.rsp,
        ss: u64::from(FLAT_KERNEL_SS),
        rsi: sod.rsi,
        ..TrapFrame::default()
    };
    arch::guest::enter(&frame, sod.cr3.addr())
}

/// The running guest's memory and the console, for hypercall handlers.
struct Current {
    domid: u16,
    mem: arch::guest::DirectMap,
}

impl Guest for Current {
    fn copy_from(&mut self, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        arch::guest::copy_from_guest(buf, va).map_err(|_| Fault)
    }
    fn copy_to(&mut self, va: u64, data: &[u8]) -> Result<(), Fault> {
        arch::guest::copy_to_guest(va, data).map_err(|_| Fault)
    }
    fn console_write(&mut self, bytes: &[u8]) {
        // dom0's console_io output goes to the serial line as it is.
        let _ = self.domid;
        crate::console::print(format_args!("{}", Utf8Lossy(bytes)));
    }
    fn l4(&self) -> Mfn {
        Mfn(DOM0.lock().as_ref().map_or(0, |d| d.cr3) >> 12)
    }
    fn frame_kind(&self, mfn: Mfn) -> Option<FrameKind> {
        let info = FRAME_TABLE.lock().as_ref()?.get(mfn.0)?;
        match info.owner {
            Owner::Domain(id) if id == self.domid => Some(if info.pagetable {
                FrameKind::PageTable
            } else {
                FrameKind::Own
            }),
            _ => None,
        }
    }
    fn frames(&mut self) -> &mut dyn crate::hal::FrameMemory {
        &mut self.mem
    }
    fn flush_tlb(&mut self, va: Option<u64>) {
        arch::guest::flush_tlb(va);
    }
}

struct Utf8Lossy<'a>(&'a [u8]);

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

/// A trap or SYSCALL from ring 3: the guest's state is `frame`.
pub fn from_guest(frame: &mut TrapFrame) {
    if frame.vector == SYSCALL_VECTOR {
        let caller = Caller {
            domid: 0,
            privileged: true,
            hv_cmdline: HV_CMDLINE.get().map_or("", |s| s.as_str()),
            max_page: MAX_PAGE.get().copied().unwrap_or(0),
            nr_pages: DOM0.lock().as_ref().map_or(0, |d| d.p2m.len() as u64),
            now_ns: crate::setup::system_time_ns(),
        };
        let args = [
            frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
        ];
        let outcome = hypercall::dispatch(
            &caller,
            &mut Current {
                domid: 0,
                mem: arch::guest::DirectMap,
            },
            frame.rax,
            &args,
        );
        // SYSCALL left the return address in RCX and the flags in R11.
        frame.rip = frame.rcx;
        frame.rflags = (frame.r11 & GUEST_RFLAGS) | RFLAGS_IF | 2;
        match outcome {
            Outcome::Return(v) => frame.rax = v as u64,
            Outcome::Shutdown(reason) => shutdown(reason),
        }
        return;
    }
    if (frame.vector == 13 || frame.vector == 6) && emulate(frame) {
        return;
    }
    // No trap table yet: any other exception ends the domain.
    println!(
        "(d0) unhandled exception {} at rip {:#x} (error code {:#x}, cr2 {:#x}, rsp {:#x}): domain crashed",
        frame.vector,
        frame.rip,
        frame.error_code,
        arch::cpu::read_cr2(),
        frame.rsp
    );
    shutdown(SHUTDOWN_CRASH)
}

/// dom0 shutting down ends the run (DESIGN 4.6).
fn shutdown(reason: u32) -> ! {
    let (what, code) = match reason {
        SHUTDOWN_POWEROFF => ("powered off", exit_code::POWEROFF),
        SHUTDOWN_REBOOT => ("rebooted", exit_code::REBOOT),
        SHUTDOWN_CRASH | SHUTDOWN_WATCHDOG => ("crashed", exit_code::CRASH),
        _ => ("shut down (suspend is not supported)", exit_code::CRASH),
    };
    println!("dom0 {what} (reason {reason}): ending the run with exit code {code}");
    arch::exit::exit(code)
}

/// CR4 bits a PV guest sees set (and may set): PAE, OSFXSR, OSXMMEXCPT.
const CR4_GUEST_VISIBLE: u64 = (1 << 5) | (1 << 9) | (1 << 10);
const MSR_EFER: u32 = 0xc000_0080;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
const MSR_PAT: u32 = 0x277;
const MSR_TSC: u32 = 0x10;
/// The PAT Xen programs and reports to PV guests.
const XEN_PAT: u64 = 0x0000_0501_0007_0406;
/// EFER bits a guest sees: SCE, LME, LMA, NXE.
const EFER_GUEST_VISIBLE: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);

fn canonical(v: u64) -> bool {
    let top = (v as i64) >> 47;
    top == 0 || top == -1
}

/// Emulates the privileged instruction at the guest's RIP (#GP), or a
/// forced-emulation CPUID (#UD). Returns false when the guest gets the fault.
fn emulate(frame: &mut TrapFrame) -> bool {
    use crate::priv_op::{Op, cpuid_policy, decode, decode_forced_cpuid};
    let mut bytes = [0u8; 15];
    // The instruction may end near the end of a mapping: take what reads.
    let mut n = bytes.len();
    while n > 0 && arch::guest::copy_from_guest(&mut bytes[..n], frame.rip).is_err() {
        n -= 1;
    }
    let insn = if frame.vector == 6 {
        decode_forced_cpuid(&bytes[..n])
    } else {
        decode(&bytes[..n])
    };
    let Some(insn) = insn else { return false };
    let mut guard = DOM0.lock();
    let Some(d) = guard.as_mut() else {
        return false;
    };
    let ecx = frame.rcx as u32;
    let ok = match insn.op {
        Op::Cpuid => {
            let h = arch::cpu::cpuid(frame.rax as u32, ecx);
            let r = cpuid_policy(frame.rax as u32, ecx, [h.eax, h.ebx, h.ecx, h.edx], (4, 17));
            (frame.rax, frame.rbx, frame.rcx, frame.rdx) = (
                u64::from(r[0]),
                u64::from(r[1]),
                u64::from(r[2]),
                u64::from(r[3]),
            );
            true
        }
        Op::MovFromCr { cr, gpr } => {
            let v = match cr {
                0 => Some(arch::cpu::read_cr0()),
                2 => Some(0),
                3 => Some(d.cr3),
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
        Op::MovToCr { cr: 0, gpr } => frame.gpr(gpr) == arch::cpu::read_cr0(),
        Op::MovToCr { .. } => false,
        Op::Rdmsr => {
            let v = match ecx {
                MSR_FS_BASE => Some(arch::guest::read_segment_base(SegmentBase::Fs)),
                MSR_GS_BASE => Some(arch::guest::read_segment_base(SegmentBase::GsKernel)),
                MSR_SHADOW_GS_BASE => Some(d.gs_base_user),
                MSR_EFER => Some(arch::cpu::rdmsr(MSR_EFER) & EFER_GUEST_VISIBLE),
                MSR_PAT => Some(XEN_PAT),
                MSR_TSC => Some(arch::cpu::rdtsc()),
                _ => None,
            };
            v.map(|v| (frame.rax, frame.rdx) = (v & 0xffff_ffff, v >> 32))
                .is_some()
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
                // Writes of the values the guest already sees are harmless.
                MSR_PAT => v == XEN_PAT,
                MSR_EFER => v == arch::cpu::rdmsr(MSR_EFER) & EFER_GUEST_VISIBLE,
                _ => false,
            }
        }
        // Without events to wait for, HLT returns at once, like SCHEDOP_block.
        Op::Hlt | Op::Wbinvd => true,
    };
    if ok {
        frame.rip = frame.rip.wrapping_add(u64::from(insn.len));
    }
    ok
}

/// The shared-info page at the start of day: events masked on vCPU 0 ("the
/// guest starts with interrupts off"), a valid pvclock in its
/// `vcpu_time_info`, and the wall clock from the RTC.
fn write_shared_info(frame: Mfn) {
    use crate::hal::FrameMemory;
    use pv_abi::xen::SharedInfo;
    use zerocopy::IntoBytes;
    let mut si = SharedInfo::default();
    si.vcpu_info[0].evtchn_upcall_mask = 1;
    if let Some((tsc0, scale)) = crate::setup::clock() {
        let now = arch::cpu::rdtsc();
        let t = &mut si.vcpu_info[0].time;
        t.version = 2;
        t.tsc_timestamp = now;
        t.system_time = scale.ticks_to_ns(now.wrapping_sub(tsc0));
        t.tsc_to_system_mul = scale.mul;
        t.tsc_shift = scale.shift;
        // The wall clock at system time 0: the RTC now, less the time since boot.
        let (y, mo, d, h, mi, s) = arch::rtc::read_date();
        if let Some(unix) = crate::time::unix_time(y, mo, d, h, mi, s) {
            let boot_ns =
                (u128::from(unix) * 1_000_000_000).saturating_sub(u128::from(t.system_time));
            si.wc_version = 2;
            si.wc_sec = (boot_ns / 1_000_000_000) as u32;
            si.wc_sec_hi = ((boot_ns / 1_000_000_000) >> 32) as u32;
            si.wc_nsec = (boot_ns % 1_000_000_000) as u32;
        } else {
            log::warn!(
                "time: the RTC holds no valid date ({y}-{mo}-{d} {h}:{mi}:{s}); wall clock 0"
            );
        }
    }
    let mut mem = arch::guest::DirectMap;
    mem.zero(frame);
    mem.write(frame, 0, si.as_bytes());
}
