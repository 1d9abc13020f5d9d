// SPDX-License-Identifier: MIT OR Apache-2.0
//! Running dom0: build it from the first module, enter it in ring 3, and
//! handle what brings it back to the hypervisor (hypercalls by SYSCALL,
//! exceptions). One vCPU, in guest kernel mode, for now.

use crate::arch::{self, guest::SYSCALL_VECTOR};
use crate::boot::BootInfo;
use crate::domain::builder::{self, BuildArgs};
use crate::domain::elfnotes;
use crate::hal::{Fault, Guest};
use crate::hypercall::{self, Caller, Outcome};
use crate::mm::frame::{FrameAllocator, Mfn};
use crate::mm::frame_table::{FrameTable, Owner};
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
}

static DOM0: spin::Mutex<Option<Domain>> = spin::Mutex::new(None);
static MAX_PAGE: spin::Once<u64> = spin::Once::new();
static HV_CMDLINE: spin::Once<heapless::String<{ crate::boot::CMDLINE_MAX }>> = spin::Once::new();

pub fn start_dom0(
    info: &BootInfo,
    opts: &cmdline::Options,
    frames: &mut FrameAllocator<'static>,
    table: &mut FrameTable<'static>,
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
    for (pfn, m) in p2m.iter().enumerate() {
        if let Some(e) = m2p.table.get_mut(m.0 as usize) {
            *e = pfn as u64;
        }
    }
    arch::mem::zero_frame(shared_info.addr());
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
        };
        let args = [
            frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
        ];
        let outcome = hypercall::dispatch(&caller, &mut Current { domid: 0 }, frame.rax, &args);
        // SYSCALL left the return address in RCX and the flags in R11.
        frame.rip = frame.rcx;
        frame.rflags = (frame.r11 & GUEST_RFLAGS) | RFLAGS_IF | 2;
        match outcome {
            Outcome::Return(v) => frame.rax = v as u64,
            Outcome::Shutdown(reason) => shutdown(reason),
        }
        return;
    }
    // No trap table yet: any exception ends the domain.
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
