// SPDX-License-Identifier: MIT OR Apache-2.0
//! Boot of the hypervisor proper, in order: command line and console, CPU,
//! memory (map, frame allocator, page tables, heap, frame table), modules,
//! time, then dom0.

use crate::arch::{self, cpu::CpuInfo, layout, mem::PAGE_SIZE};
use crate::boot::BootInfo;
use crate::mm::frame::FrameAllocator;
use crate::mm::frame_table::{FrameTable, Owner, PageInfo};
use crate::mm::memmap::{self, Range, RangeSet};
use crate::{cmdline, exit_code, println, time};
use core::sync::atomic::Ordering;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const MIB: u64 = 1 << 20;

/// The TSC at boot and its scale: system time is nanoseconds since then.
static CLOCK: spin::Once<(u64, time::TscScale)> = spin::Once::new();
/// The APIC timer's frequency.
static APIC_HZ: spin::Once<u64> = spin::Once::new();

/// Arms the APIC one-shot timer for system time `deadline` (ns); a deadline
/// beyond the counter's range fires early and the handler re-arms.
pub fn arm_timer_at(deadline: u64) {
    let Some(&hz) = APIC_HZ.get() else { return };
    let delta = deadline.saturating_sub(system_time_ns());
    arch::apic::arm_oneshot(time::ns_to_ticks(delta, hz).clamp(1, u64::from(u32::MAX)) as u32);
}

/// Nanoseconds since the hypervisor calibrated its clock (0 before).
pub fn system_time_ns() -> u64 {
    CLOCK.get().map_or(0, |(tsc0, scale)| scale.ticks_to_ns(arch::cpu::rdtsc().wrapping_sub(*tsc0)))
}

/// The TSC's frequency in kHz (0 before calibration).
pub fn tsc_khz() -> u32 {
    TSC_HZ.get().map_or(0, |hz| (hz / 1000) as u32)
}

static TSC_HZ: spin::Once<u64> = spin::Once::new();

/// The clock, for guests' vcpu_time_info.
pub fn clock() -> Option<(u64, time::TscScale)> {
    CLOCK.get().copied()
}

static SYMBOLS: spin::Once<(&'static [u8], &'static [u8])> = spin::Once::new();

/// The image's symbol and string tables, when the loader provided them.
pub fn symbol_tables() -> Option<(&'static [u8], &'static [u8])> {
    SYMBOLS.get().copied()
}

/// Ends the run because the boot configuration cannot work.
pub fn refuse(args: core::fmt::Arguments<'_>) -> ! {
    println!("{args}");
    println!("halting: bad boot configuration (exit code {})", exit_code::BAD_CONFIG);
    arch::exit::exit(exit_code::BAD_CONFIG)
}

pub fn hv_main(info: Result<BootInfo, &'static str>) -> ! {
    let info = match info {
        Ok(info) => info,
        Err(why) => refuse(format_args!("boot: {why}")),
    };
    let parsed = cmdline::parse(&info.cmdline);
    let opts = parsed.options;
    crate::console::configure(opts.serial_console, opts.com1_baud, opts.loglvl);

    println!("hypervisor {VERSION} (Xen 4.17 x86_64 PV ABI)");
    println!("loader: {}", info.loader);
    println!("cmdline: {}", info.cmdline);
    if info.cmdline_truncated {
        log::warn!("cmdline: longer than {} bytes, the rest is ignored", crate::boot::CMDLINE_MAX);
    }
    for d in parsed.diags.iter() {
        log::warn!("{d}");
    }

    let cpu = CpuInfo::read();
    report_cpu(&cpu);
    arch::cpu::enable_protections(&cpu);
    arch::cpu::enable_fpu_sse();
    arch::cpu::enable_xsave(&cpu);
    arch::fpu::init(cpu.xsave);

    let (ram, frames, table, m2p) = setup_memory(&info);
    report_modules(&info, &ram);
    setup_time(&cpu);

    if opts.debug.fault {
        println!("debug=fault: taking a page fault on purpose");
        arch::trigger_fault();
    }

    if let Some(amount) = opts.dom0_mem.amount {
        println!("dom0_mem: {} MiB of {} MiB", amount.resolve(ram.total()) / MIB, ram.total() / MIB);
    }
    crate::pv::start(&info, &opts, frames, table, m2p)
}

fn report_cpu(cpu: &CpuInfo) {
    println!(
        "cpu: {} family {:#x} model {:#x} stepping {} \"{}\"",
        cpu.vendor_str(),
        cpu.family,
        cpu.model,
        cpu.stepping,
        cpu.brand_str()
    );
    let flag = |on: bool, name: &'static str| if on { name } else { "" };
    let missing = |on: bool, name: &'static str| if on { "" } else { name };
    let feats = [
        (cpu.nx, "nx"),
        (cpu.syscall, "syscall"),
        (cpu.xsave, "xsave"),
        (cpu.pcid, "pcid"),
        (cpu.invpcid, "invpcid"),
        (cpu.smep, "smep"),
        (cpu.smap, "smap"),
        (cpu.fsgsbase, "fsgsbase"),
        (cpu.pdpe1gb, "pdpe1gb"),
        (cpu.tsc_deadline, "tsc-deadline"),
        (cpu.invariant_tsc, "invariant-tsc"),
    ];
    let mut have = heapless::String::<160>::new();
    let mut lack = heapless::String::<160>::new();
    for (on, name) in feats {
        for (s, part) in [(&mut have, flag(on, name)), (&mut lack, missing(on, name))] {
            if !part.is_empty() {
                let _ = s.push_str(" ");
                let _ = s.push_str(part);
            }
        }
    }
    println!("cpu features:{have}");
    println!("cpu lacks:{lack}");
}

/// Memory map → frame allocator → page tables → heap → frame table.
/// The machine-to-phys table: one u64 per machine frame, the pfn a domain
/// gave it (or INVALID); read-only for every guest at MACH2PHYS_VIRT_START.
pub struct M2p {
    pub table: &'static mut [u64],
    /// Where it lives: contiguous frames (XENMEM_machphys_mfn_list).
    pub first_mfn: u64,
    pub frames: u64,
}

fn setup_memory(info: &BootInfo) -> (RangeSet, FrameAllocator<'static>, FrameTable<'static>, M2p) {
    let areas = info.areas.iter().map(|a| (a.base, a.len, a.typ));
    println!("memory map ({} entries):", info.areas.len());
    for a in info.areas.iter() {
        let kind = match a.typ {
            1 => "usable",
            2 => "reserved",
            3 => "ACPI reclaimable",
            4 => "ACPI NVS",
            5 => "defective",
            _ => "other",
        };
        println!("  {:#018x}-{:#018x} {kind}", a.base, a.base.saturating_add(a.len));
    }
    let (ram, report) = memmap::usable_ram(areas);
    if info.areas_dropped > 0 {
        log::warn!(
            "memory map: {} entries beyond the first {} ignored",
            info.areas_dropped,
            info.areas.len()
        );
    }
    if report.empty > 0 || report.wrapped > 0 || report.overlaps > 0 {
        log::warn!(
            "memory map: {} empty entries, {} wrapping entries, {} reserved entries overlapping RAM (reserved wins)",
            report.empty,
            report.wrapped,
            report.overlaps
        );
    }
    if ram.lost > 0 {
        log::warn!("memory map: too fragmented, {} KiB of RAM unused", ram.lost / 1024);
    }
    let usable = ram.total();
    let Some(top) = ram.ranges().last().map(|r| r.end) else {
        refuse(format_args!("memory map: no usable RAM"));
    };
    if usable < 16 * MIB {
        refuse(format_args!("memory map: {} KiB of RAM is too little (16 MiB needed)", usable / 1024));
    }

    // What is already in use: the first MiB (firmware), the image, the boot
    // information, the modules and the symbol table.
    let mut free = ram.clone();
    free.remove(Range::new(0, MIB));
    let (img_start, img_end) = arch::paging::image_phys();
    free.remove(Range::new(img_start, img_end));
    free.remove(page_range(info.mbi.0, info.mbi.1));
    for (i, m) in info.modules.iter().enumerate() {
        let Some(_) = m.len() else {
            refuse(format_args!("module {i}: end {:#x} before start {:#x}", m.end, m.start));
        };
        if !ram.contains(Range::new(m.start, m.end)) {
            refuse(format_args!("module {i}: {:#x}-{:#x} is not in RAM", m.start, m.end));
        }
        free.remove(page_range(m.start, m.end));
    }
    if let Some(s) = info.symbols {
        let (sym, str) = (s.symtab, s.strtab);
        let sym_r = Range::new(sym.0, sym.0.saturating_add(sym.1));
        let str_r = Range::new(str.0, str.0.saturating_add(str.1));
        if ram.contains(sym_r) && ram.contains(str_r) {
            free.remove(page_range(sym_r.start, sym_r.end));
            free.remove(page_range(str_r.start, str_r.end));
            if let (Some(a), Some(b)) =
                (arch::mem::boot_bytes(sym.0, sym.1), arch::mem::boot_bytes(str.0, str.1))
            {
                SYMBOLS.call_once(|| (a, b));
            }
        }
    }
    if symbol_tables().is_none() {
        log::warn!("no symbol table from the loader: backtraces will show addresses only");
    }

    let nframes = top / PAGE_SIZE;
    let bitmap_bytes = FrameAllocator::bitmap_bytes(nframes).next_multiple_of(PAGE_SIZE);
    let Some(bitmap_pa) = free.take(bitmap_bytes, PAGE_SIZE, layout::EARLY_WINDOW_SIZE) else {
        refuse(format_args!("memory: no room for the frame bitmap ({} KiB)", bitmap_bytes / 1024));
    };
    let bitmap = arch::mem::static_array(bitmap_pa, (bitmap_bytes / 8) as usize, 0u64);
    let mut frames = FrameAllocator::new(bitmap, nframes);
    for r in free.ranges() {
        frames.add_free(*r);
    }

    let ram_pairs: heapless::Vec<(u64, u64), { memmap::MAX_RANGES }> =
        ram.ranges().iter().map(|r| (r.start, r.end)).collect();
    let mut alloc = || frames.alloc().map(|m| m.addr()).filter(|&pa| pa < layout::EARLY_WINDOW_SIZE);
    if arch::paging::build_and_switch(&ram_pairs, arch::apic::phys_base(), &mut alloc).is_err() {
        refuse(format_args!("memory: out of frames while building the page tables"));
    }

    let heap_bytes = (usable / 32).clamp(4 * MIB, 64 * MIB).next_multiple_of(2 * MIB);
    let Some(heap) = frames.alloc_contiguous(heap_bytes / PAGE_SIZE, 1) else {
        refuse(format_args!("memory: no room for a {} MiB heap", heap_bytes / MIB));
    };
    arch::heap::init(heap.addr(), heap_bytes);

    let table_bytes = (nframes as usize * core::mem::size_of::<PageInfo>()) as u64;
    let Some(table) = frames.alloc_contiguous(table_bytes.div_ceil(PAGE_SIZE), 1) else {
        refuse(format_args!("memory: no room for the frame table ({} KiB)", table_bytes / 1024));
    };
    let mut table = FrameTable::new(arch::mem::static_array(table.addr(), nframes as usize, PageInfo::IO));
    for r in ram.ranges() {
        for mfn in r.start / PAGE_SIZE..r.end / PAGE_SIZE {
            table.set_owner(mfn, if frames.is_free(mfn) { Owner::Free } else { Owner::Hypervisor });
        }
    }
    let (n_free, n_hv, n_io, _) = table.census();
    println!("RAM: {} MiB usable, {} MiB free", usable / MIB, frames.free_frames() * PAGE_SIZE / MIB);
    println!(
        "memory: top {:#x}, {} frames ({} free, {} hypervisor, {} not RAM), heap {} MiB, frame table {} KiB",
        top,
        table.len(),
        n_free,
        n_hv,
        n_io,
        heap_bytes / MIB,
        table_bytes / 1024
    );
    // The M2P, mapped for guests before any guest L4 copies the hole's slots.
    let m2p_bytes = (nframes * 8).next_multiple_of(PAGE_SIZE);
    let Some(m2p_mfn) = frames.alloc_contiguous(m2p_bytes / PAGE_SIZE, 1) else {
        refuse(format_args!("memory: no room for the M2P table ({} KiB)", m2p_bytes / 1024));
    };
    let m2p = M2p {
        table: arch::mem::static_array(m2p_mfn.addr(), (m2p_bytes / 8) as usize, u64::MAX),
        first_mfn: m2p_mfn.0,
        frames: m2p_bytes / PAGE_SIZE,
    };
    for mfn in m2p_mfn.0..m2p_mfn.0 + m2p.frames {
        table.set_owner(mfn, Owner::XenShared);
    }
    let mut alloc = || {
        let m = frames.alloc()?;
        table.set_owner(m.0, Owner::Hypervisor);
        Some(m.addr())
    };
    if arch::paging::map_for_guests_readonly(
        pv_abi::arch_x86::MACH2PHYS_VIRT_START,
        m2p_mfn.addr(),
        m2p_bytes,
        &mut alloc,
    )
    .is_err()
    {
        refuse(format_args!("memory: out of frames while mapping the M2P table"));
    }
    if arch::paging::prepare_ldt_window(&mut alloc).is_err() {
        refuse(format_args!("memory: out of frames for the LDT window"));
    }
    (ram, frames, table, m2p)
}

/// The page-aligned range covering `[start, end)`.
fn page_range(start: u64, end: u64) -> Range {
    Range::new(start / PAGE_SIZE * PAGE_SIZE, end.saturating_add(PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE)
}

fn report_modules(info: &BootInfo, _ram: &RangeSet) {
    for (i, m) in info.modules.iter().enumerate() {
        let len = m.len().unwrap_or(0);
        println!("module {i}: {:#x}-{:#x} ({} bytes) \"{}\"", m.start, m.end, len, m.cmdline);
        if m.cmdline_truncated {
            log::warn!("module {i}: command line longer than {} bytes, cut", crate::boot::MODULE_CMDLINE_MAX);
        }
    }
    if info.modules_dropped > 0 {
        log::warn!("{} modules beyond the first {} ignored", info.modules_dropped, info.modules.len());
    }
}

fn setup_time(cpu: &CpuInfo) {
    let apic_id = arch::apic::init();
    const CALIBRATION_MS: u32 = 20;
    let (tsc_ticks, apic_ticks) = arch::apic::calibrate(CALIBRATION_MS);
    let l15 = arch::cpu::cpuid(0x15, 0);
    let (tsc_hz, source) = match time::tsc_hz_from_cpuid15(l15.eax, l15.ebx, l15.ecx) {
        Some(hz) if cpu.vendor_str() == "GenuineIntel" => (hz, "CPUID 0x15"),
        _ => (time::hz_from_calibration(tsc_ticks, CALIBRATION_MS), "calibrated against the PIT"),
    };
    let apic_hz = time::hz_from_calibration(apic_ticks, CALIBRATION_MS);
    println!(
        "time: TSC {}.{:03} MHz ({source}{}), APIC {apic_id} timer {} kHz",
        tsc_hz / 1_000_000,
        tsc_hz / 1000 % 1000,
        if cpu.invariant_tsc { ", invariant" } else { "" },
        apic_hz / 1000
    );
    if tsc_hz == 0 || apic_hz == 0 {
        log::warn!("time: calibration failed, timers are unavailable");
        return;
    }
    let scale = time::TscScale::from_hz(tsc_hz);
    CLOCK.call_once(|| (arch::cpu::rdtsc(), scale));
    APIC_HZ.call_once(|| apic_hz);
    TSC_HZ.call_once(|| tsc_hz);

    // The one-shot timer that the scheduler will drive: check that it fires.
    const ASK_NS: u64 = 2_000_000;
    let before = crate::trap::TIMER_TICKS.load(Ordering::Relaxed);
    let start = arch::cpu::rdtsc();
    arch::apic::arm_oneshot(time::ns_to_ticks(ASK_NS, apic_hz).clamp(1, u64::from(u32::MAX)) as u32);
    while crate::trap::TIMER_TICKS.load(Ordering::Relaxed) == before
        && scale.ticks_to_ns(arch::cpu::rdtsc() - start) < 1_000_000_000
    {
        arch::wait_for_interrupt();
    }
    let waited = scale.ticks_to_ns(arch::cpu::rdtsc() - start);
    if crate::trap::TIMER_TICKS.load(Ordering::Relaxed) == before {
        log::warn!("time: the APIC one-shot timer did not fire within 1 s");
    } else {
        println!("time: one-shot timer tick after {} us (asked {} us)", waited / 1000, ASK_NS / 1000);
    }
}
