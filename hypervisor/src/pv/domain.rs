// SPDX-License-Identifier: MIT OR Apache-2.0
//! The domains on the machine (Xen's `common/domain.c` and the scheduler's
//! glue): dom0 and the boot-time domUs built from modules, the table that
//! holds them by id, the switch between their vCPUs on the one physical CPU
//! (the credit policy of `crate::sched` decides, the APIC one-shot timer
//! ends slices), their timers, the PV console rings of domUs, and teardown.
//!
//! One vCPU per domain for now; the vCPU's state lives in its `Domain`.

use super::vcpu::{Current, SharedBits, set_upcall_mask, upcall_pending};
use crate::arch::guest::SegmentBase;
use crate::arch::{self, fpu::FpuState};
use crate::boot::BootInfo;
use crate::domain::builder::{self, BuildArgs};
use crate::domain::{config, elfnotes};
use crate::evtchn::{Bits2l, EventChannels, NR_PORTS_2L, deliver_2l};
use crate::hal::FrameMemory;
use crate::hypercall::{self, PollWait};
use crate::mm::frame::{FrameAllocator, Mfn};
use crate::mm::frame_table::{FrameTable, Owner, PageInfo, PageType};
use crate::mm::guest_pt::Mmu;
use crate::sched::{Params, Scheduler, VcpuId};
use crate::setup::{refuse, system_time_ns};
use crate::trap::TrapFrame;
use crate::{cmdline, elf, exit_code, println};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use pv_abi::arch_x86::{FLAT_KERNEL_CS, FLAT_KERNEL_SS};
use pv_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_WATCHDOG};
use pv_abi::vcpu::{RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING};
use pv_abi::xen::{DOMID_XEN, VIRQ_DOM_EXC, VIRQ_TIMER};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// dom0's memory when `dom0_mem=` does not say.
const DEFAULT_DOM0_MEM: u64 = 128 * MIB;
const RFLAGS_IF: u64 = 1 << 9;
/// CR4 bits a PV guest may hold (see `vcpu`), as the guest starts with them.
pub(super) const CR4_GUEST_VISIBLE: u64 = (1 << 2) | (1 << 5) | (1 << 6) | (1 << 9) | (1 << 10) | CR4_OSXSAVE;
pub(super) const CR4_OSXSAVE: u64 = 1 << 18;
/// The longest console line a domU may print before it is broken.
const LINE_MAX: usize = 256;

/// A domain, with the state of its one vCPU.
pub struct Domain {
    pub id: u16,
    pub name: String,
    pub privileged: bool,
    pub p2m: Vec<Mfn>,
    pub shared_info: Mfn,
    /// Where vCPU 0's `vcpu_info` is: in shared info, or (frame, offset)
    /// after VCPUOP_register_vcpu_info.
    pub vcpu_info: (Mfn, usize),
    /// The vCPU's L4s: the kernel's (what CR3 reads return) and the user's.
    pub baseptr: [Option<Mfn>; 2],
    /// CR4 as the guest sees it.
    pub cr4: u64,
    /// The user-mode GS base (MSR_SHADOW_GS_BASE while the kernel runs).
    pub gs_base_user: u64,
    /// The kernel-mode GS base, kept here while user mode runs.
    pub gs_base_kernel: u64,
    /// The vCPU runs its user mode (user page tables, user GS base).
    pub user_mode: bool,
    /// The vCPU's virtual IDT and callbacks.
    pub traps: crate::pv::traps::VcpuTraps,
    /// The guest's CR2: the address of its last page fault.
    pub cr2: u64,
    pub evtchn: EventChannels,
    /// The vCPU's one-shot timer (system time, ns).
    pub timer: Option<u64>,
    /// Grant table v1 (its frames are shared with the domain).
    pub gnttab: crate::gnttab::GrantTable,
    /// The grant mappings it holds (of its own grants or other domains').
    pub maptrack: crate::gnttab::Maptrack,
    /// Shutdown code, watchdogs, pin override.
    pub sched: crate::hypercall::SchedState,
    /// An event set `evtchn_upcall_pending` since the vCPU last looked: it
    /// wakes a poll (Xen's vcpu_kick).
    pub kicked: bool,
    /// Frames the domain holds (allocated, or given back but still mapped)
    /// and the most it may hold.
    pub tot_pages: u64,
    pub max_pages: u64,
    /// What the vCPU waits for, while blocked.
    pub wait: Option<Wait>,
    /// The guest's part of the GDT as checked (the CPU's copy while it runs).
    pub gdt: Vec<u64>,
    /// The vCPU's machine state while another runs.
    saved: Saved,
    /// CPU time used, ns.
    pub cpu_time: u64,
    /// Where the guest keeps its `vcpu_runstate_info` (0: nowhere).
    pub runstate_va: u64,
    /// A domU's console ring and its port, and the line being printed.
    console: Option<ConsoleRing>,
    line: heapless::Vec<u8, LINE_MAX>,
    /// What a boot-time domU was built from, to build it again when it
    /// reboots.
    origin: Option<Origin>,
}

/// A boot-time domU's module, command line, size and scheduling.
struct Origin {
    kernel: &'static [u8],
    initrd: &'static [u8],
    cmdline: String,
    nr_pages: u64,
    params: Params,
}

/// What a blocked vCPU waits for.
pub enum Wait {
    /// SCHEDOP_block: any event.
    Block,
    /// SCHEDOP_poll: a listed port, a kick or the deadline.
    Poll(Box<PollWait>),
}

/// A vCPU's machine state while it does not run.
struct Saved {
    frame: TrapFrame,
    fs_base: u64,
    gs_base: u64,
    selectors: [u16; 4],
    xcr0: u64,
    fpu: FpuState,
}

struct ConsoleRing {
    mfn: Mfn,
    port: u32,
}

/// Every domain, the one running and the scheduler.
pub struct Domains {
    /// By domain id (ids are not reused: a slot stays empty after its
    /// domain; boxed, so that an empty one costs a word).
    slots: Vec<Option<Box<Domain>>>,
    /// The domain whose vCPU the CPU runs (none while idle).
    pub current: Option<u16>,
    pub sched: Scheduler,
    /// The scheduler must decide before the guest runs on.
    pub need_resched: bool,
    /// When the scheduler must decide again (slice end, tick).
    until: u64,
    /// When the running vCPU started.
    ran_since: u64,
    /// Entries of the guest GDT part the CPU holds.
    cpu_gdt_len: usize,
    /// The domain serial input goes to.
    focus: u16,
}

impl Domains {
    pub fn get(&self, id: u16) -> Option<&Domain> {
        self.slots.get(usize::from(id)).and_then(Option::as_deref)
    }
    pub fn get_mut(&mut self, id: u16) -> Option<&mut Domain> {
        self.slots.get_mut(usize::from(id)).and_then(Option::as_deref_mut)
    }
    /// The domain whose vCPU is running.
    pub fn running(&mut self) -> Option<&mut Domain> {
        let id = self.current?;
        self.get_mut(id)
    }
    /// Two different domains at once.
    pub fn pair_mut(&mut self, a: u16, b: u16) -> Option<(&mut Domain, &mut Domain)> {
        let (a, b) = (usize::from(a), usize::from(b));
        if a == b || a >= self.slots.len() || b >= self.slots.len() {
            return None;
        }
        let (lo, hi) = self.slots.split_at_mut(a.max(b));
        let (x, y) = (lo[a.min(b)].as_deref_mut()?, hi[0].as_deref_mut()?);
        Some(if a < b { (x, y) } else { (y, x) })
    }
    /// The ids of the domains, in order.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots.iter().enumerate().filter(|(_, d)| d.is_some()).map(|(i, _)| i as u16)
    }
}

pub static DOMAINS: spin::Mutex<Option<Domains>> = spin::Mutex::new(None);
pub static FRAME_TABLE: spin::Mutex<Option<FrameTable<'static>>> = spin::Mutex::new(None);
/// The pool frames come from and go back to.
pub static FRAMES: spin::Mutex<Option<FrameAllocator<'static>>> = spin::Mutex::new(None);
pub static M2P: spin::Mutex<Option<crate::setup::M2p>> = spin::Mutex::new(None);
/// One past the highest frame the CPU can address.
pub static MFN_LIMIT: spin::Once<u64> = spin::Once::new();
/// The hypervisor's entries for the hypervisor slots of every guest L4.
pub static HV_SLOTS: spin::Once<[u64; 16]> = spin::Once::new();
/// The machine's memory map as the boot loader gave it (dom0 reads it).
static HOST_MEMORY_MAP: spin::Once<heapless::Vec<crate::boot::RawArea, { crate::boot::MAX_AREAS }>> =
    spin::Once::new();
static HV_CMDLINE: spin::Once<heapless::String<{ crate::boot::CMDLINE_MAX }>> = spin::Once::new();

/// What hypercalls may ask about the machine, gathered once at boot so that
/// the hypercall path only copies it.
pub struct Facts {
    pub hv_cmdline: &'static str,
    pub max_page: u64,
    pub tsc_khz: u32,
    pub m2p_frames: (u64, u64),
    pub build_id: &'static [u8],
    pub host_memory_map: &'static [crate::boot::RawArea],
}
pub static FACTS: spin::Once<Facts> = spin::Once::new();

/// What `build_domain` builds.
struct Spec<'a> {
    id: u16,
    name: &'a str,
    privileged: bool,
    kernel: &'static [u8],
    initrd: &'static [u8],
    cmdline: &'a str,
    nr_pages: u64,
    params: Params,
}

/// The memory a domain is built from.
struct Pool<'a> {
    frames: &'a mut FrameAllocator<'static>,
    table: &'a mut FrameTable<'static>,
    m2p: &'a mut crate::setup::M2p,
}

/// The bytes of boot module `i`.
fn module_bytes(info: &BootInfo, i: usize) -> &'static [u8] {
    info.modules.get(i).and_then(|m| arch::mem::boot_bytes(m.start, m.len().unwrap_or(0))).unwrap_or(&[])
}

/// Builds dom0 and the boot-time domUs from the modules, then runs the
/// first vCPU the scheduler picks.
pub fn start(
    info: &BootInfo,
    opts: &cmdline::Options,
    mut frames: FrameAllocator<'static>,
    mut table: FrameTable<'static>,
    mut m2p: crate::setup::M2p,
) -> ! {
    MFN_LIMIT.call_once(|| 1 << ((arch::cpu::cpuid(0x8000_0008, 0).eax & 0xff).max(36) - 12));
    HV_CMDLINE.call_once(|| info.cmdline.clone());
    HOST_MEMORY_MAP.call_once(|| info.areas.clone());
    HV_SLOTS.call_once(arch::guest::hypervisor_l4);
    let Some(module) = info.modules.first() else {
        refuse(format_args!("no dom0 module: nothing to run (give the dom0 kernel as the first module)"));
    };
    // The second module is dom0's initrd unless it describes a domU.
    let has_initrd = info.modules.get(1).is_some_and(|m| !config::is_domu(&m.cmdline));
    let free = frames.free_frames() * PAGE;
    let want = opts.dom0_mem.amount.map(|a| a.resolve(free)).unwrap_or(DEFAULT_DOM0_MEM.min(free / 2));
    let mut pool = Pool { frames: &mut frames, table: &mut table, m2p: &mut m2p };
    let dom0 = Spec {
        id: 0,
        name: "dom0",
        privileged: true,
        kernel: module_bytes(info, 0),
        initrd: if has_initrd { module_bytes(info, 1) } else { &[] },
        cmdline: &module.cmdline,
        nr_pages: want / PAGE,
        params: Params::default(),
    };
    let mut slots = Vec::new();
    match build_domain(&mut pool, &dom0) {
        Ok(d) => slots.push(Some(Box::new(d))),
        Err(e) => refuse(format_args!("dom0{e}")),
    }
    let mut params = alloc::vec![Params::default()];
    // Modules a domU names as its initrd are used, not stray.
    let initrds: Vec<u32> =
        info.modules.iter().filter_map(|m| config::parse(&m.cmdline).ok().and_then(|c| c.initrd)).collect();
    for (i, m) in info.modules.iter().enumerate().skip(1) {
        if !config::is_domu(&m.cmdline) {
            if (i > 1 || !has_initrd) && !initrds.contains(&(i as u32)) {
                println!("module {i}: not a domU (its command line does not start with 'domu'): ignored");
            }
            continue;
        }
        let id = slots.len() as u16;
        let c = match config::parse(&m.cmdline) {
            Ok(c) => c,
            Err(e) => refuse(format_args!("module {i}: {e}")),
        };
        let initrd: &'static [u8] = match c.initrd {
            None => &[],
            Some(k) if k == 0 || k as usize == i || k as usize >= info.modules.len() => {
                refuse(format_args!("module {i}: domu initrd={k} is not another module"))
            }
            Some(k) => module_bytes(info, k as usize),
        };
        if c.vcpus > 1 {
            println!("(d{id}) vcpus={}: one vCPU per domain for now, it gets one", c.vcpus);
        }
        let spec = Spec {
            id,
            name: &c.name,
            privileged: false,
            kernel: module_bytes(info, i),
            initrd,
            cmdline: &c.cmdline,
            nr_pages: u64::from(c.mem_mib) * MIB / PAGE,
            params: Params { weight: c.weight, cap: c.cap },
        };
        match build_domain(&mut pool, &spec) {
            Ok(d) => slots.push(Some(Box::new(d))),
            Err(e) => refuse(format_args!("module {i}: domain '{}'{e}", c.name)),
        }
        params.push(Params { weight: c.weight, cap: c.cap });
    }
    FACTS.call_once(|| Facts {
        hv_cmdline: HV_CMDLINE.get().map_or("", |s| s.as_str()),
        max_page: m2p.table.len() as u64,
        tsc_khz: crate::setup::tsc_khz(),
        m2p_frames: (m2p.first_mfn, m2p.frames),
        build_id: build_id(),
        host_memory_map: HOST_MEMORY_MAP.get().map_or(&[], |m| m.as_slice()),
    });
    table.flush_needed = false;
    *FRAME_TABLE.lock() = Some(table);
    *FRAMES.lock() = Some(frames);
    *M2P.lock() = Some(m2p);

    let now = system_time_ns();
    let mut sched = Scheduler::new(crate::sched::TICK_NS, crate::sched::SLICE_NS);
    for (id, p) in params.iter().enumerate() {
        let v = VcpuId { dom: id as u16, vcpu: 0 };
        // Fresh ids of valid parameters (the domU parser checked them).
        let _ = sched
            .add_domain(id as u16, *p)
            .and_then(|()| sched.add_vcpu(v))
            .and_then(|()| sched.wake(v, now));
    }
    *DOMAINS.lock() = Some(Domains {
        slots,
        current: None,
        sched,
        need_resched: false,
        until: u64::MAX,
        ran_since: now,
        cpu_gdt_len: 0,
        focus: 0,
    });

    arch::guest::init();
    crate::console::enable_input();
    arch::apic::unmask_serial_irq();
    let mut frame = TrapFrame::default();
    let mut guard = DOMAINS.lock();
    let ds = guard.as_mut().expect("set above");
    let next = ds.sched.pick_next(now);
    ds.until = next.until;
    switch_in(ds, next.next.map_or(0, |v| v.dom), &mut frame);
    rearm(ds);
    let cr3 = ds.running().and_then(|d| d.baseptr[0]).map_or(0, Mfn::addr);
    drop(guard);
    arch::guest::enter(&frame, cr3)
}

/// Builds a domain: its frames from the pool, the start of day of its
/// kernel, its initial page tables validated and pinned.
fn build_domain(pool: &mut Pool<'_>, s: &Spec<'_>) -> Result<Domain, String> {
    // Errors say what is wrong with the module, or why it cannot be built.
    let image = elf::Elf::parse(s.kernel).map_err(|e| alloc::format!(" module: {e}"))?;
    let notes = elfnotes::parse(image.note_segments()).map_err(|e| alloc::format!(" module: {e}"))?;
    let layout = builder::plan_for(&image, &notes, s.nr_pages, s.initrd.len() as u64, s.privileged)
        .map_err(|e| alloc::format!(": cannot build: {e}"))?;
    // Its memory, the shared-info page and one grant-table frame (as on Xen).
    let mut p2m = Vec::with_capacity(s.nr_pages as usize + 2);
    while p2m.len() < s.nr_pages as usize + 2 {
        match pool.frames.alloc() {
            Some(m) => p2m.push(m),
            None => {
                for m in p2m {
                    let _ = pool.frames.free(m);
                }
                return Err(alloc::format!(": out of memory for {} MiB", s.nr_pages * PAGE / MIB));
            }
        }
    }
    let (gnttab_frame, shared_info) = (p2m.pop().expect("allocated"), p2m.pop().expect("allocated"));
    for m in &p2m {
        pool.table.set(m.0, PageInfo::allocated(s.id));
    }
    pool.table.set(shared_info.0, PageInfo::shared(s.id));
    pool.table.set(gnttab_frame.0, PageInfo::shared(s.id));
    arch::guest::DirectMap.zero(gnttab_frame);
    for (pfn, m) in p2m.iter().enumerate() {
        if let Some(e) = pool.m2p.table.get_mut(m.0 as usize) {
            *e = pfn as u64;
        }
    }
    write_shared_info(shared_info);
    let mut evtchn = EventChannels::new(s.id, NR_PORTS_2L);
    // A domU's console ring: its other end is the hypervisor.
    let console = match layout.console {
        Some(va) => Some(ConsoleRing {
            mfn: p2m[layout.pfn(va) as usize],
            port: evtchn.bind_backend(DOMID_XEN).map_err(|_| ": no port for the console".to_string())?,
        }),
        None => None,
    };
    let hv_l4 = HV_SLOTS.get().expect("set at start");
    let sod = builder::build(
        &mut arch::guest::DirectMap,
        &layout,
        &BuildArgs {
            elf: &image,
            initrd: s.initrd,
            cmdline: s.cmdline,
            p2m: &p2m,
            shared_info,
            privileged: s.privileged,
            console_evtchn: console.as_ref().map(|c| c.port),
            hypervisor_l4: hv_l4,
            hypercall_page: hypercall::write_hypercall_page,
        },
    );
    // As Xen does: the initial L4 is pinned, and referenced as the base pointer.
    let l4 = Mfn(sod.cr3.addr() >> 12);
    let mut mem = arch::guest::DirectMap;
    let mut mmu = Mmu::new(pool.table, &mut mem, s.id, s.privileged, hv_l4);
    if let Err(e) = mmu.pin(l4, 4).and_then(|()| mmu.get_page_and_type(l4, PageType::L4)) {
        return Err(alloc::format!(": its initial page tables do not validate ({e:?})"));
    }
    mmu.fill_ro_mpt(l4);
    println!(
        "(d{}) {}: {} MiB, kernel {:#x}-{:#x}, entry {:#x}, start_info {:#x}, {} page-table frames, \"{}\"",
        s.id,
        s.name,
        s.nr_pages * PAGE / MIB,
        layout.kernel.0,
        layout.kernel.1,
        layout.entry,
        layout.start_info,
        layout.nr_pt_frames(),
        notes.guest_os.unwrap_or("?"),
    );
    let frame = TrapFrame {
        rip: sod.rip,
        cs: u64::from(FLAT_KERNEL_CS),
        rflags: RFLAGS_IF | 2,
        rsp: sod.rsp,
        ss: u64::from(FLAT_KERNEL_SS),
        rsi: sod.rsi,
        ..TrapFrame::default()
    };
    Ok(Domain {
        id: s.id,
        name: s.name.into(),
        privileged: s.privileged,
        p2m,
        shared_info,
        vcpu_info: (shared_info, core::mem::offset_of!(pv_abi::xen::SharedInfo, vcpu_info)),
        baseptr: [Some(l4), None],
        cr4: arch::cpu::read_cr4() & CR4_GUEST_VISIBLE & !CR4_OSXSAVE,
        gs_base_user: 0,
        gs_base_kernel: 0,
        user_mode: false,
        traps: Default::default(),
        cr2: 0,
        evtchn,
        timer: None,
        sched: Default::default(),
        gnttab: crate::gnttab::GrantTable::new(alloc::vec![gnttab_frame]),
        maptrack: Default::default(),
        kicked: false,
        tot_pages: s.nr_pages,
        max_pages: s.nr_pages,
        wait: None,
        gdt: Vec::new(),
        saved: Saved {
            frame,
            fs_base: 0,
            gs_base: 0,
            selectors: [0; 4],
            xcr0: arch::cpu::xcr0(),
            fpu: FpuState::new(),
        },
        cpu_time: 0,
        runstate_va: 0,
        console,
        line: heapless::Vec::new(),
        origin: (!s.privileged).then(|| Origin {
            kernel: s.kernel,
            initrd: s.initrd,
            cmdline: s.cmdline.into(),
            nr_pages: s.nr_pages,
            params: s.params,
        }),
    })
}

/// Saves the running vCPU's state (the guest's registers are in `frame`)
/// and leaves the CPU to nobody.
fn switch_out(ds: &mut Domains, frame: &TrapFrame) {
    let Some(id) = ds.current.take() else { return };
    let ran = system_time_ns().saturating_sub(ds.ran_since);
    let Some(d) = ds.get_mut(id) else { return };
    d.cpu_time += ran;
    let state = if d.wait.is_some() { RUNSTATE_BLOCKED } else { RUNSTATE_RUNNABLE };
    update_runstate(d, state);
    d.saved.frame = frame.clone();
    d.saved.fs_base = arch::guest::read_segment_base(SegmentBase::Fs);
    d.saved.gs_base = arch::guest::read_segment_base(SegmentBase::GsKernel);
    d.saved.selectors = arch::guest::save_selectors();
    d.saved.xcr0 = arch::cpu::xcr0();
    arch::guest::set_fpu_ts(false);
    d.saved.fpu.save();
    // The LDT window shows the running domain's pages: they are released
    // as on a base switch, and fault in again when it next runs.
    let mut current = Current::new(ds, id);
    hypercall::invalidate_ldt(&mut current);
    current.finish();
}

/// Loads domain `id`'s vCPU onto the CPU; `frame` becomes its registers.
fn switch_in(ds: &mut Domains, id: u16, frame: &mut TrapFrame) {
    let cpu_gdt_len = ds.cpu_gdt_len;
    let Some(d) = ds.get_mut(id) else { return };
    if let Some(l4) = d.baseptr[usize::from(d.user_mode)] {
        arch::guest::load_cr3(l4.addr());
    }
    // Another domain's user mappings are global: they must all go.
    arch::guest::flush_tlb(None);
    for i in 0..d.gdt.len().max(cpu_gdt_len) {
        arch::desc::write_guest_gdt_entry(i, d.gdt.get(i).copied().unwrap_or(0));
    }
    let gdt_len = d.gdt.len();
    arch::desc::load_guest_ldt(d.traps.ldt_entries as usize);
    arch::guest::load_selectors(d.saved.selectors);
    // Both were canonical when saved.
    let _ = arch::guest::write_segment_base(SegmentBase::Fs, d.saved.fs_base);
    let _ = arch::guest::write_segment_base(SegmentBase::GsKernel, d.saved.gs_base);
    arch::guest::set_fpu_ts(false);
    // A value the guest set through the checked XSETBV, or the boot value.
    let _ = arch::cpu::write_xcr0(d.saved.xcr0);
    d.saved.fpu.restore();
    arch::guest::set_fpu_ts(d.traps.fpu_ts);
    *frame = d.saved.frame.clone();
    update_runstate(d, RUNSTATE_RUNNING);
    ds.cpu_gdt_len = gdt_len;
    ds.current = Some(id);
    ds.ran_since = system_time_ns();
}

/// Writes the vCPU's runstate (entering `state` now) to its registered
/// area, if any, in its address space (which must be the one loaded). Best
/// effort, as Xen: while the vCPU is in user mode the kernel's address is
/// not mapped, and the update waits for the next switch.
pub(super) fn update_runstate(d: &Domain, state: i32) {
    if d.runstate_va == 0 || d.user_mode {
        return;
    }
    let now = system_time_ns();
    let info = pv_abi::vcpu::VcpuRunstateInfo {
        state,
        state_entry_time: now,
        // Running and not running: runnable time is not told apart yet.
        time: [d.cpu_time, 0, now.saturating_sub(d.cpu_time), 0],
        ..Default::default()
    };
    let _ = arch::guest::copy_to_guest(d.runstate_va, zerocopy::IntoBytes::as_bytes(&info));
}

/// Lets the scheduler choose what runs next and switches to it; with
/// nothing to run the CPU halts (the idle vCPU) until an interrupt makes
/// something runnable. `frame` holds the running guest's registers, and
/// then the next one's.
pub(super) fn schedule(frame: &mut TrapFrame) {
    loop {
        let mut guard = DOMAINS.lock();
        let Some(ds) = guard.as_mut() else { return };
        let now = system_time_ns();
        fire_timers(ds, now);
        ds.need_resched = false;
        let decision = ds.sched.pick_next(now);
        ds.until = decision.until;
        if let Some(v) = decision.next {
            if ds.current != Some(v.dom) {
                switch_out(ds, frame);
                switch_in(ds, v.dom, frame);
            }
            rearm(ds);
            return;
        }
        if ds.current.is_some() {
            switch_out(ds, frame);
            // Nothing of a guest stays mapped while idle: it may be destroyed.
            arch::guest::load_idle_cr3();
        }
        // Halt only until a deadline still ahead: one already passed (a cap
        // refill while deciding) is handled now, by deciding again.
        if rearm(ds) <= system_time_ns() {
            continue;
        }
        drop(guard);
        arch::wait_for_interrupt();
    }
}

/// Marks `port` of domain `id` pending and wakes its vCPU if that is what
/// it waits for.
pub(super) fn deliver(ds: &mut Domains, id: u16, port: u32) {
    let Some(d) = ds.get_mut(id) else { return };
    if deliver_2l(&mut SharedBits::of(d), port) {
        d.kicked = true;
    }
    maybe_wake(ds, id);
}

/// Wakes domain `id`'s vCPU if what it waits for has happened.
pub(super) fn maybe_wake(ds: &mut Domains, id: u16) {
    let Some(d) = ds.get_mut(id) else { return };
    let woken = match &d.wait {
        None => false,
        Some(Wait::Block) => upcall_pending(d),
        Some(Wait::Poll(p)) => {
            let bits = SharedBits::of(d);
            d.kicked
                || p.ports().iter().any(|&port| bits.pending(port))
                || p.deadline.is_some_and(|t| t <= system_time_ns())
        }
    };
    if woken {
        d.wait = None;
        if ds.sched.wake(VcpuId { dom: id, vcpu: 0 }, system_time_ns()).unwrap_or(false) {
            ds.need_resched = true;
        }
    }
}

/// SCHEDOP_block (`poll` is None): events are enabled (it implies
/// local_irq_enable) and the vCPU waits until one is pending. SCHEDOP_poll:
/// events stay as they are; the vCPU waits until a listed port is pending,
/// an event kicks it, or the timeout passes. Another vCPU runs meanwhile
/// (the caller reschedules).
pub(super) fn block(ds: &mut Domains, poll: Option<Box<PollWait>>) {
    let Some(id) = ds.current else { return };
    let Some(d) = ds.get_mut(id) else { return };
    if poll.is_none() {
        set_upcall_mask(d, false);
    }
    d.kicked = false;
    d.wait = Some(match poll {
        None => Wait::Block,
        Some(p) => Wait::Poll(p),
    });
    let now = system_time_ns();
    if ds.sched.block(VcpuId { dom: id, vcpu: 0 }, now).unwrap_or(true) {
        ds.need_resched = true;
    }
    // Already woken (an event is there): runnable again at once.
    maybe_wake(ds, id);
}

/// SCHEDOP_yield.
pub(super) fn yield_now(ds: &mut Domains) {
    let Some(id) = ds.current else { return };
    if ds.sched.yield_vcpu(VcpuId { dom: id, vcpu: 0 }, system_time_ns()).unwrap_or(false) {
        ds.need_resched = true;
    }
}

/// Arms the one-shot timer for the earliest deadline of all: the
/// scheduler's, every vCPU's timer, watchdogs and poll timeouts. Returns it
/// (`u64::MAX`: none).
pub(super) fn rearm(ds: &Domains) -> u64 {
    let mut earliest = ds.until;
    for d in ds.slots.iter().flatten() {
        let poll = match &d.wait {
            Some(Wait::Poll(p)) => p.deadline,
            _ => None,
        };
        for t in [d.timer, poll].into_iter().chain(d.sched.watchdogs).flatten() {
            earliest = earliest.min(t);
        }
    }
    if earliest != u64::MAX {
        crate::setup::arm_timer_at(earliest);
    }
    earliest
}

/// Fires what is due: vCPU timers (VIRQ_TIMER), poll timeouts, watchdogs
/// (which shut their domain down, as Xen's do).
fn fire_timers(ds: &mut Domains, now: u64) {
    let ids: heapless::Vec<u16, 64> = ds.ids().take(64).collect();
    for &id in &ids {
        let Some(d) = ds.get_mut(id) else { continue };
        if d.sched.watchdogs.iter().flatten().any(|&t| t <= now) {
            println!("(d{id}) watchdog expired: shutting the domain down");
            shutdown(ds, None, id, SHUTDOWN_WATCHDOG);
            continue;
        }
        if let Some(t) = d.timer
            && t <= now
        {
            d.timer = None;
            if let Some(port) = d.evtchn.virq_port(VIRQ_TIMER) {
                deliver(ds, id, port);
            }
        }
        maybe_wake(ds, id);
    }
}

/// The timer interrupt, from a guest or from the idle loop.
pub fn on_timer(frame: &mut TrapFrame) {
    let resched = {
        let mut guard = DOMAINS.lock();
        let Some(ds) = guard.as_mut() else { return };
        let now = system_time_ns();
        fire_timers(ds, now);
        if now >= ds.until {
            ds.need_resched = true;
        }
        // From the idle loop, which decides and arms the timer itself: armed
        // here for a deadline already passed, the timer would fire again
        // before the loop could run (an interrupt livelock).
        if frame.cs & 3 == 3 {
            rearm(ds);
        }
        ds.need_resched
    };
    if frame.cs & 3 == 3 {
        super::vcpu::return_to_guest(frame, resched);
    }
}

/// Serial input: Ctrl-A three times moves it to the next domain (dom0 ->
/// d1 -> ... -> dom0), as Xen's switch between itself and dom0; otherwise it
/// goes to the domain that has it: VIRQ_CONSOLE for dom0 (which reads it
/// with CONSOLEIO_read), the console ring for a domU.
pub fn on_console_input(frame: &mut TrapFrame) {
    let resched = {
        let mut guard = DOMAINS.lock();
        let Some(ds) = guard.as_mut() else { return };
        if crate::console::take_switch_request() {
            let ids: heapless::Vec<u16, 64> = ds.ids().take(64).collect();
            let at = ids.iter().position(|&i| i == ds.focus).map_or(0, |p| (p + 1) % ids.len());
            ds.focus = ids.get(at).copied().unwrap_or(0);
            println!("(serial input now goes to d{}; Ctrl-A three times switches)", ds.focus);
        }
        let focus = ds.focus;
        match ds.get_mut(focus) {
            Some(d) if d.console.is_none() => {
                if let Some(port) = d.evtchn.virq_port(pv_abi::xen::VIRQ_CONSOLE) {
                    deliver(ds, focus, port);
                }
            }
            Some(d) => {
                let ring = d.console.as_ref().map(|c| (c.mfn, c.port));
                let mut buf = [0u8; 64];
                let n = crate::console::peek_input(&mut buf);
                if let Some((mfn, port)) = ring {
                    let taken = crate::pv::xencons::push_in(&mut arch::guest::DirectMap, mfn, &buf[..n]);
                    crate::console::drop_input(taken);
                    if taken > 0 {
                        deliver(ds, focus, port);
                    }
                }
            }
            None => ds.focus = 0,
        }
        ds.need_resched
    };
    if frame.cs & 3 == 3 {
        super::vcpu::return_to_guest(frame, resched);
    }
}

/// A domU notified its console port: print what it wrote, a line at a
/// time, prefixed with its id.
pub(super) fn service_console(ds: &mut Domains, id: u16) {
    let Some(d) = ds.get_mut(id) else { return };
    let Some(ring) = d.console.as_ref().map(|c| c.mfn) else { return };
    let line = &mut d.line;
    crate::pv::xencons::drain_out(&mut arch::guest::DirectMap, ring, &mut |b| {
        if b != b'\n' && line.push(b).is_ok() {
            return;
        }
        println!("(d{id}) {}", super::vcpu::Utf8Lossy(line));
        line.clear();
        if b != b'\n' {
            let _ = line.push(b);
        }
    });
}

/// The domain shut itself down, crashed, or its watchdog fired. dom0's end
/// is the run's (DESIGN 4.6); a domU is destroyed at once (no toolstack
/// reaps boot-time domains here) and dom0 is told by VIRQ_DOM_EXC.
/// `ft` is the frame table if the caller holds it.
pub(super) fn shutdown(ds: &mut Domains, ft: Option<&mut FrameTable<'static>>, id: u16, reason: u32) {
    let Some(d) = ds.get_mut(id) else { return };
    let code = d.sched.shutdown_code.unwrap_or(reason);
    let what = match code {
        SHUTDOWN_POWEROFF => "powered off",
        SHUTDOWN_REBOOT => "rebooted",
        SHUTDOWN_CRASH => "crashed",
        SHUTDOWN_WATCHDOG => "stopped by its watchdog",
        _ => "shut down (suspend is not supported)",
    };
    if id == 0 {
        let exit = match code {
            SHUTDOWN_POWEROFF => exit_code::POWEROFF,
            SHUTDOWN_REBOOT => exit_code::REBOOT,
            _ => exit_code::CRASH,
        };
        println!("dom0 {what} (reason {code}): ending the run with exit code {exit}");
        arch::exit::exit(exit)
    }
    let name = core::mem::take(&mut d.name);
    let origin = if code == SHUTDOWN_REBOOT { d.origin.take() } else { None };
    // A domain that will be built again keeps its scheduling state under
    // the new id (see `Scheduler::renumber_domain`).
    let new_id = ds.slots.len() as u16;
    let origin = origin.filter(|_| {
        new_id < pv_abi::xen::DOMID_FIRST_RESERVED
            && ds
                .sched
                .renumber_domain(id, new_id, system_time_ns())
                .map(|running| {
                    ds.need_resched |= running;
                })
                .is_ok()
    });
    let mut guard = None;
    let ft = match ft {
        Some(ft) => ft,
        None => guard.insert(FRAME_TABLE.lock()).as_mut().expect("set at start"),
    };
    let freed = destroy(ds, ft, id).unwrap_or(0);
    println!("(d{id}) domain '{name}' {what} (reason {code}): destroyed, {freed} frames returned");
    // As xl's default on_reboot=restart: built again, under a new id.
    if let Some(o) = origin {
        restart(ds, ft, new_id, &name, o);
    }
}

/// Builds a rebooted boot-time domU again from its module, as domain `id`
/// (the scheduler knows it under that id already).
fn restart(ds: &mut Domains, ft: &mut FrameTable<'static>, id: u16, name: &str, o: Origin) {
    let spec = Spec {
        id,
        name,
        privileged: false,
        kernel: o.kernel,
        initrd: o.initrd,
        cmdline: &o.cmdline,
        nr_pages: o.nr_pages,
        params: o.params,
    };
    let built = {
        let (mut frames, mut m2p) = (FRAMES.lock(), M2P.lock());
        let (Some(frames), Some(m2p)) = (frames.as_mut(), m2p.as_mut()) else { return };
        build_domain(&mut Pool { frames, table: ft, m2p }, &spec)
    };
    let now = system_time_ns();
    match built {
        Ok(d) => {
            // Runnable already: the scheduler carried it on under this id.
            ds.slots.resize_with(usize::from(id), || None);
            ds.slots.push(Some(Box::new(d)));
        }
        Err(e) => {
            println!("domain '{name}': cannot restart it{e}");
            let _ = ds.sched.remove_domain(id, now);
        }
    }
}

/// Tears domain `id` down: off the CPU and the scheduler, its ports closed
/// (their peers left unbound, as in Xen), every frame it owns back to the
/// pool, and dom0 told. Returns the frames returned.
///
/// Nothing outside the domain holds references to its frames: grants
/// between domains are not mapped yet (they will need revoking first).
pub(super) fn destroy(ds: &mut Domains, ft: &mut FrameTable<'static>, id: u16) -> Result<u64, pv_abi::Errno> {
    let mut d = ds.slots.get_mut(usize::from(id)).and_then(Option::take).ok_or(pv_abi::Errno::ESRCH)?;
    if ds.current == Some(id) {
        ds.current = None;
        arch::guest::load_idle_cr3();
        for k in 0..crate::pv::traps::LDT_FRAMES {
            arch::paging::set_ldt_page(k as u64, None);
        }
        arch::desc::load_guest_ldt(0);
    }
    if ds.sched.remove_domain(id, system_time_ns()).unwrap_or(false) {
        ds.need_resched = true;
    }
    if ds.focus == id {
        ds.focus = 0;
    }
    for (dom, port) in d.evtchn.close_all() {
        if let Some(peer) = ds.get_mut(dom) {
            peer.evtchn.peer_closed(port, id);
        }
    }
    // Its mappings of other domains' grants end: the references they hold
    // go, and the granters' entries are no longer in use.
    let hv = HV_SLOTS.get().expect("set at start");
    let mut mem = arch::guest::DirectMap;
    {
        let mut mmu = Mmu::new(ft, &mut mem, id, d.privileged, hv);
        for (_, m) in d.maptrack.iter().filter(|(_, m)| m.granter != id) {
            match m.pte {
                Some((table, index)) => {
                    let _ = mmu.unmap_grant(table, index, m.mfn);
                }
                None => mmu.put_page(m.mfn),
            }
            if let Some(granter) = ds.get_mut(m.granter) {
                granter.gnttab.unpin(mmu.mem, m.gref, m.readonly);
            }
        }
    }
    // Its frames that other domains map through its grants stay theirs until
    // unmapped: they keep exactly the references those mappings hold, and
    // go back to the pool with the last one.
    let mut held = alloc::collections::BTreeMap::<u64, (u32, u32)>::new();
    for other in ds.slots.iter().flatten() {
        for (_, m) in other.maptrack.iter().filter(|(_, m)| m.granter == id) {
            let (live, writable) = match m.pte {
                Some((t, i)) => {
                    let e = mem.read_u64(t, i);
                    (e & 1 != 0 && crate::mm::guest_pt::entry_mfn(e) == m.mfn, !m.readonly)
                }
                None => (true, false),
            };
            if live {
                let h = held.entry(m.mfn.0).or_default();
                h.0 += 1;
                h.1 += u32::from(writable);
            }
        }
    }
    // No mapping of its frames may stay cached once they are free.
    arch::guest::flush_tlb(None);
    let mut returned = 0;
    {
        let mut frames = FRAMES.lock();
        let mut m2p = M2P.lock();
        for mfn in 0..ft.len() as u64 {
            if !ft.get(mfn).is_some_and(|p| p.owner == Owner::Domain(id)) {
                continue;
            }
            if let Some(&(count, writable)) = held.get(&mfn) {
                let ty = if writable > 0 { PageType::Writable } else { PageType::None };
                let kept =
                    PageInfo { owner: Owner::Domain(id), ty, type_count: writable, count, ..PageInfo::IO };
                ft.set(mfn, kept);
                continue;
            }
            ft.set(mfn, PageInfo { owner: Owner::Free, ..PageInfo::IO });
            if let Some(e) = m2p.as_mut().and_then(|m| m.table.get_mut(mfn as usize)) {
                *e = u64::MAX;
            }
            if let Some(f) = frames.as_mut()
                && f.free(Mfn(mfn)).is_ok()
            {
                returned += 1;
            }
        }
    }
    return_freed(ds, ft);
    d.p2m.clear();
    if let Some(port) = ds.get(0).and_then(|d0| d0.evtchn.virq_port(VIRQ_DOM_EXC)) {
        deliver(ds, 0, port);
    }
    Ok(returned)
}

/// Frames whose last reference went back to the pool, each an entry less
/// in its owner's M2P and page count.
pub(super) fn return_freed(ds: &mut Domains, ft: &mut FrameTable<'static>) {
    if ft.freed.is_empty() {
        return;
    }
    let mut frames = FRAMES.lock();
    let mut m2p = M2P.lock();
    for (mfn, owner) in ft.freed.drain(..) {
        if let Some(e) = m2p.as_mut().and_then(|m| m.table.get_mut(mfn as usize)) {
            *e = u64::MAX;
        }
        if let Some(f) = frames.as_mut() {
            let _ = f.free(Mfn(mfn));
        }
        // Its owner may be another domain (a grant it mapped), or gone.
        if let Some(d) = ds.get_mut(owner) {
            d.tot_pages = d.tot_pages.saturating_sub(1);
        }
    }
}

/// What XEN_DOMCTL_getdomaininfo says of the first domain from `from` on.
pub(super) fn domain_info(ds: &Domains, from: u16) -> Option<crate::hal::DomainInfo> {
    use pv_abi::domctl::{XEN_DOMINF_BLOCKED, XEN_DOMINF_PAUSED, XEN_DOMINF_RUNNING};
    let id = ds.ids().find(|&i| i >= from)?;
    let d = ds.get(id)?;
    let mut flags = 0;
    if ds.sched.is_paused(id) {
        flags |= XEN_DOMINF_PAUSED;
    }
    flags |= if d.wait.is_some() { XEN_DOMINF_BLOCKED } else { XEN_DOMINF_RUNNING };
    let ran = if ds.current == Some(id) { system_time_ns().saturating_sub(ds.ran_since) } else { 0 };
    Some(crate::hal::DomainInfo {
        domid: id,
        flags,
        tot_pages: d.tot_pages,
        max_pages: d.max_pages,
        shared_info_frame: d.shared_info.0,
        cpu_time: d.cpu_time + ran,
        nr_online_vcpus: 1,
    })
}

/// The build id from the linker's note (namesz, descsz, type, "GNU\0", id).
fn build_id() -> &'static [u8] {
    let note = arch::paging::build_id_note();
    let field =
        |i: usize| note.get(i..i + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let (namesz, descsz) = (field(0), field(4));
    let start = 12 + namesz.next_multiple_of(4);
    note.get(start..start + descsz).unwrap_or(&[])
}

/// The shared-info page at the start of day: events masked on vCPU 0 ("the
/// guest starts with interrupts off"), a valid pvclock in its
/// `vcpu_time_info`, and the wall clock from the RTC.
fn write_shared_info(frame: Mfn) {
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
            let boot_ns = (u128::from(unix) * 1_000_000_000).saturating_sub(u128::from(t.system_time));
            si.wc_version = 2;
            si.wc_sec = (boot_ns / 1_000_000_000) as u32;
            si.wc_sec_hi = ((boot_ns / 1_000_000_000) >> 32) as u32;
            si.wc_nsec = (boot_ns % 1_000_000_000) as u32;
        } else {
            log::warn!("time: the RTC holds no valid date ({y}-{mo}-{d} {h}:{mi}:{s}); wall clock 0");
        }
    }
    let mut mem = arch::guest::DirectMap;
    mem.zero(frame);
    mem.write(frame, 0, si.as_bytes());
}
