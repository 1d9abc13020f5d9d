// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: the start-of-day state of a 64-bit PV dom0, as Xen documents it
//! (`xen/include/public/xen.h`, "Start-of-day memory layout" and `struct start_info`;
//! `arch-x86/xen-x86_64.h` for the flat selectors and the M2P), plus the answers of a
//! few hypercalls every PV kernel relies on. One `RESULT` line per check, then
//! `SUMMARY` and poweroff.
//!
//! Boot it as dom0 with the command line [`EXPECTED_CMDLINE`] (the `xen-boot-state`
//! scenario does); with another command line the `cmdline` check fails, with none it
//! is skipped.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::ptr::read_volatile;

use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::{
    FLAT_KERNEL_CS64, FLAT_KERNEL_DS64, FLAT_KERNEL_SS64, HYPERVISOR_VIRT_START, MACH2PHYS_VIRT_START,
};
use guest_shim::pv_abi::features::*;
use guest_shim::pv_abi::hypercall::{
    HYPERCALL_STUB_SIZE, HYPERVISOR_ARCH_7, HYPERVISOR_CONSOLE_IO, HYPERVISOR_IRET, HYPERVISOR_SCHED_OP,
};
use guest_shim::pv_abi::memory::XENMEM_CURRENT_RESERVATION;
use guest_shim::pv_abi::vcpu::RUNSTATE_RUNNING;
use guest_shim::pv_abi::xen::{CONSOLEIO_WRITE, DOMID_SELF, SIF_INITDOMAIN, SIF_PRIVILEGED};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, cpu, println};

guest_shim::entry!(start);

/// The command line the `xen-boot-state` scenario gives the module.
pub const EXPECTED_CMDLINE: &str = "boot-state first=1 second=two";

const PAGE: u64 = 4096;
/// `INVALID_P2M_ENTRY`.
const INVALID_MFN: u64 = !0;
/// Padding the builder guarantees after the last bootstrap element.
const MIN_PADDING: u64 = 512 * 1024;
/// A hypercall number Xen 4.17 does not define (between `hypfs_op` and `arch_0`).
const UNDEFINED_HYPERCALL: u32 = 43;
/// A hypercall number past Xen's table, still with a stub in the hypercall page.
const BEYOND_TABLE_HYPERCALL: u32 = 100;
/// A `SCHEDOP_*` command Xen does not define.
const BAD_SCHEDOP: u64 = 99;

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let si_va = si as *const StartInfo as u64;
    println!(
        "boot-state: start_info {si_va:#x} nr_pages {} mfn_list {:#x} pt_base {:#x} \
         nr_pt_frames {} shared_info {:#x} flags {:#x}",
        si.nr_pages, si.mfn_list, si.pt_base, si.nr_pt_frames, si.shared_info, si.flags
    );

    start_info_fields(&mut t, si);
    layout(&mut t, si);
    registers(&mut t, si);
    let p2m = p2m_and_m2p(&mut t, &xen, si);
    page_tables(&mut t, si, p2m);
    shared_info(&mut t, si, p2m);
    hypercall_page(&mut t, &xen);
    version(&mut t, &xen);
    hypercall_errors(&mut t, &xen);
    vcpu_and_memory(&mut t, &xen, si);
    t.finish()
}

/// start_info contents that need no hypercall.
fn start_info_fields(t: &mut Tests, si: &StartInfo) {
    let magic = si.magic_str();
    t.check(
        "magic",
        Outcome::ensure(magic.starts_with(b"xen-3.0-x86_64"), format_args!("magic is {:?}", text(magic))),
    );
    let si_va = si as *const StartInfo as u64;
    t.check(
        "start-info-aligned",
        Outcome::ensure(si_va.is_multiple_of(PAGE), format_args!("start_info at {si_va:#x}")),
    );
    t.check("rsi-start-info", Outcome::eq(guest_shim::boot_regs().rsi, si_va));
    let dom0 = SIF_INITDOMAIN | SIF_PRIVILEGED;
    t.check(
        "flags-dom0",
        Outcome::ensure(
            si.flags & dom0 == dom0,
            format_args!("flags {:#x} lack SIF_INITDOMAIN|SIF_PRIVILEGED", si.flags),
        ),
    );
    // dom0 has no xenstore at boot (no store page in its layout).
    t.check(
        "store-none",
        Outcome::ensure(
            si.store_mfn == 0 && si.store_evtchn == 0,
            format_args!("store_mfn {:#x} store_evtchn {}", si.store_mfn, si.store_evtchn),
        ),
    );
    // No second module was given: no initial ramdisk.
    t.check(
        "no-module",
        Outcome::ensure(
            si.mod_start == 0 && si.mod_len == 0,
            format_args!("mod_start {:#x} mod_len {:#x}", si.mod_start, si.mod_len),
        ),
    );
    let cmdline = si.cmdline();
    if cmdline.is_empty() {
        t.skip("cmdline", format_args!("no command line given (the scenario passes \"{EXPECTED_CMDLINE}\")"));
    } else {
        t.check(
            "cmdline",
            Outcome::ensure(
                cmdline == EXPECTED_CMDLINE.as_bytes(),
                format_args!("got {:?}, expected {EXPECTED_CMDLINE:?}", text(cmdline)),
            ),
        );
    }
}

/// The order and packing of the bootstrap region (xen.h "Start-of-day memory layout"):
/// kernel, (initrd), P2M list, start_info, page tables, stack, each element starting
/// at the page after the previous one, then at least 512 KiB of padding.
fn layout(t: &mut Tests, si: &StartInfo) {
    let image = guest_shim::image_range();
    let si_va = si as *const StartInfo as u64;
    let p2m_end = si.mfn_list + si.nr_pages * 8;
    let pt_end = si.pt_base + si.nr_pt_frames * PAGE;
    let rsp = guest_shim::boot_regs().rsp;

    t.check("image-at-virt-base", Outcome::eq(image.start, guest_shim::notes::VIRT_BASE));
    t.check("layout-p2m-after-kernel", Outcome::eq(si.mfn_list, image.end.next_multiple_of(PAGE)));
    t.check("layout-start-info-after-p2m", Outcome::eq(si_va, p2m_end.next_multiple_of(PAGE)));
    // dom0: no xenstore or console ring page between start_info and the page tables.
    t.check("layout-pt-after-start-info", Outcome::eq(si.pt_base, si_va + PAGE));
    t.check(
        "pt-base",
        Outcome::ensure(
            si.pt_base.is_multiple_of(PAGE) && si.nr_pt_frames >= 1,
            format_args!("pt_base {:#x} nr_pt_frames {}", si.pt_base, si.nr_pt_frames),
        ),
    );
    // One stack page after the page tables; RSP at its top.
    t.check("rsp-boot-stack-top", Outcome::eq(rsp, pt_end + PAGE));
    // The whole region, padding included, is within the domain's memory (pfn N is
    // mapped at VIRT_BASE + N pages).
    let region_pages = (rsp + MIN_PADDING - image.start) / PAGE;
    t.check(
        "nr-pages",
        Outcome::ensure(
            si.nr_pages >= region_pages,
            format_args!("nr_pages {} < {region_pages} pages of bootstrap region", si.nr_pages),
        ),
    );
    // Every page of the padding is mapped (a fault would crash the domain).
    let mut sum = 0u64;
    let mut va = rsp;
    while va < rsp + MIN_PADDING {
        // SAFETY: xen.h guarantees 512 KiB of mapped padding after the boot stack;
        // the bytes are read, not referenced.
        sum = sum.wrapping_add(unsafe { read_volatile(va as *const u8) } as u64);
        va += PAGE;
    }
    println!("boot-state: padding after the boot stack read (byte sum {sum})");
    t.pass("padding-mapped");
}

/// Registers at entry (xen.h: RSI = start_info; `xen-x86_64.h`: the guest kernel
/// runs in ring 3 on the flat selectors; the builder clears the other registers).
fn registers(t: &mut Tests, _si: &StartInfo) {
    let r = guest_shim::boot_regs();
    t.check("ring3", Outcome::ensure(r.cs & 3 == 3, format_args!("cs {:#x}", r.cs)));
    t.check("cs-flat-kernel", Outcome::eq(r.cs, FLAT_KERNEL_CS64 as u64));
    t.check("ss-flat-kernel", Outcome::eq(r.ss, FLAT_KERNEL_SS64 as u64));
    let data = [r.ds, r.es, r.fs, r.gs];
    t.check(
        "data-selectors",
        Outcome::ensure(
            data.iter().all(|&s| s == FLAT_KERNEL_DS64 as u64),
            format_args!("ds/es/fs/gs = {data:#x?}"),
        ),
    );
    // The selectors do not change while the guest runs.
    t.check("cs-now", Outcome::eq(cpu::cs() as u64, r.cs));
    let nonzero = r.other_gprs().into_iter().find(|&(_, v)| v != 0);
    t.check(
        "gprs-zero",
        match nonzero {
            None => Outcome::Pass,
            Some((name, v)) => Outcome::fail(format_args!("{name} = {v:#x} at entry")),
        },
    );
    t.check(
        "rflags-if",
        Outcome::ensure(
            r.rflags & cpu::RFLAGS_IF != 0 && r.rflags & cpu::RFLAGS_IOPL_MASK == 0,
            format_args!("rflags {:#x}", r.rflags),
        ),
    );
}

/// The P2M list: `nr_pages` MFNs at `mfn_list`, each valid; the M2P table Xen maps
/// read-only at `MACH2PHYS_VIRT_START` maps them back. Returns the list.
fn p2m_and_m2p(t: &mut Tests, xen: &Hypercalls, si: &StartInfo) -> &'static [u64] {
    // SAFETY: the P2M list is a bootstrap element: `nr_pages` entries at `mfn_list`,
    // mapped read-write for the guest; nothing writes it while this slice lives.
    let p2m: &'static [u64] =
        unsafe { core::slice::from_raw_parts(si.mfn_list as *const u64, si.nr_pages as usize) };
    let max_ram = xen.maximum_ram_page();
    println!("boot-state: maximum_ram_page {max_ram:?}");
    let limit = max_ram.unwrap_or(u64::MAX);
    let bad = p2m.iter().enumerate().find(|&(_, &mfn)| mfn == INVALID_MFN || mfn >= limit);
    t.check(
        "p2m-valid",
        match bad {
            None => Outcome::Pass,
            Some((pfn, mfn)) => Outcome::fail(format_args!("p2m[{pfn:#x}] = {mfn:#x}")),
        },
    );

    let mapping = xen.machphys_mapping();
    t.check(
        "machphys-mapping",
        match mapping {
            Ok(m) => Outcome::ensure(
                m.v_start == MACH2PHYS_VIRT_START && m.v_end > m.v_start,
                format_args!("v_start {:#x} v_end {:#x}", m.v_start, m.v_end),
            ),
            Err(e) => Outcome::fail(e),
        },
    );
    let m2p = mapping.map_or(MACH2PHYS_VIRT_START, |m| m.v_start) as *const u64;
    let wrong = p2m.iter().enumerate().find(|&(pfn, &mfn)| {
        // SAFETY: the M2P table is mapped read-only into every PV guest and covers
        // every MFN of RAM (checked just above: each is below maximum_ram_page).
        let back = unsafe { read_volatile(m2p.add(mfn as usize)) };
        back != pfn as u64
    });
    t.check(
        "m2p-consistent",
        match wrong {
            None => Outcome::Pass,
            Some((pfn, &mfn)) => {
                // SAFETY: as above.
                let back = unsafe { read_volatile(m2p.add(mfn as usize)) };
                Outcome::fail(format_args!("p2m[{pfn:#x}] = {mfn:#x} but m2p[{mfn:#x}] = {back:#x}"))
            }
        },
    );
    p2m
}

/// CR3 (read through Xen's emulation of `mov %cr3`) holds the MFN of pt_base.
fn page_tables(t: &mut Tests, si: &StartInfo, p2m: &[u64]) {
    let pfn = (si.pt_base - guest_shim::notes::VIRT_BASE) / PAGE;
    let Some(&mfn) = p2m.get(pfn as usize) else {
        t.fail("cr3-pt-base", format_args!("pt_base pfn {pfn:#x} beyond nr_pages"));
        return;
    };
    let cr3: u64;
    // SAFETY: a privileged instruction in ring 3: Xen emulates the read for PV
    // guests and returns the guest's page-table base; no memory is touched.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    t.check("cr3-pt-base", Outcome::eq(cr3, mfn * PAGE));

    // xen.h: the region maps pfn N at VIRT_BASE + N pages, read-write except the page
    // tables, which are read-only. (The runtime has already unmapped its stack guard
    // page; shared_info is not mapped yet.)
    let region = guest_shim::pt::bootstrap_region();
    let pt = si.pt_base..si.pt_base + si.nr_pt_frames * PAGE;
    let guard = guest_shim::stack_guard();
    let mut wrong_map = None;
    let mut wrong_rw = None;
    let mut pages = 0;
    for va in region.clone().step_by(PAGE as usize).filter(|&va| va != guard) {
        pages += 1;
        let pfn = ((va - region.start) / PAGE) as usize;
        let walk = guest_shim::pt::lookup(va);
        let Some(pte) = walk.pte() else {
            wrong_map.get_or_insert(Outcome::fail(format_args!("{va:#x}: {walk:x?}")));
            continue;
        };
        let mfn = guest_shim::pt::pte_mfn(pte);
        if p2m.get(pfn) != Some(&mfn) {
            wrong_map.get_or_insert(Outcome::fail(format_args!(
                "{va:#x} maps mfn {mfn:#x}, p2m[{pfn:#x}] = {:#x?}",
                p2m.get(pfn)
            )));
        }
        let writable = pte & guest_shim::pt::PTE_RW != 0;
        if writable == pt.contains(&va) {
            wrong_rw.get_or_insert(Outcome::fail(format_args!(
                "{va:#x} (pte {pte:#x}) is {}",
                if writable { "writable" } else { "read-only" }
            )));
        }
    }
    println!("boot-state: bootstrap region {region:#x?}, {pages} pages walked");
    t.check("region-mapped-1to1", wrong_map.unwrap_or(Outcome::Pass));
    t.check("region-pt-read-only", wrong_rw.unwrap_or(Outcome::Pass));
}

/// shared_info: a machine address (Xen's page, not in our P2M) that the guest maps
/// itself; events start masked and the time info is valid.
fn shared_info(t: &mut Tests, si: &StartInfo, p2m: &[u64]) {
    let ma = si.shared_info;
    t.check(
        "shared-info-maddr",
        Outcome::ensure(
            ma != 0 && ma.is_multiple_of(PAGE) && !p2m.contains(&(ma / PAGE)),
            format_args!("shared_info {ma:#x}"),
        ),
    );
    let page = match guest_shim::shared_info::map() {
        Ok(p) => {
            t.pass("shared-info-map");
            p
        }
        Err(e) => {
            t.fail("shared-info-map", format_args!("update_va_mapping: {e}"));
            return;
        }
    };
    let vcpu0 = page.vcpu_info(0);
    t.check("events-masked", Outcome::eq(vcpu0.evtchn_upcall_mask, 1));
    let time = page.vcpu_time(0);
    let now = time.system_time_at(cpu::rdtsc());
    println!(
        "boot-state: vcpu0 time version {} system_time {} mul {:#x} shift {} -> now {now} ns",
        time.version, time.system_time, time.tsc_to_system_mul, time.tsc_shift
    );
    t.check(
        "pvclock-valid",
        Outcome::ensure(
            time.version % 2 == 0 && time.tsc_to_system_mul != 0 && now >= time.system_time,
            format_args!(
                "version {} mul {:#x} system_time {} now {now}",
                time.version, time.tsc_to_system_mul, time.system_time
            ),
        ),
    );
    let (wc_version, wc_sec, wc_nsec) = page.wallclock();
    println!("boot-state: wallclock version {wc_version} {wc_sec}.{wc_nsec:09}");
    t.check(
        "wallclock-valid",
        Outcome::ensure(
            wc_version % 2 == 0 && wc_nsec < 1_000_000_000,
            format_args!("wc_version {wc_version} wc_nsec {wc_nsec}"),
        ),
    );
}

/// Every stub of the hypercall page but `iret`'s loads its number into EAX and
/// executes SYSCALL; `iret`'s is filled too.
fn hypercall_page(t: &mut Tests, xen: &Hypercalls) {
    // SAFETY: the hypercall page is a page of the image, mapped and never written by
    // the guest after the builder filled it.
    let page = unsafe { core::slice::from_raw_parts(xen.page(), PAGE as usize) };
    let stub = |nr: u32| &page[nr as usize * HYPERCALL_STUB_SIZE..][..HYPERCALL_STUB_SIZE];
    let bad = (0..=HYPERVISOR_ARCH_7)
        .filter(|&nr| nr != HYPERVISOR_IRET)
        .find(|&nr| !is_syscall_stub(stub(nr), nr));
    t.check(
        "hypercall-page-stubs",
        match bad {
            None => Outcome::Pass,
            Some(nr) => Outcome::fail(format_args!("stub {nr}: {:02x?}", stub(nr))),
        },
    );
    t.check(
        "hypercall-page-iret",
        Outcome::ensure(stub(HYPERVISOR_IRET).iter().any(|&b| b != 0), "the iret stub is all zeros"),
    );
}

/// Whether `stub` has `mov eax, nr` followed by `syscall`.
fn is_syscall_stub(stub: &[u8], nr: u32) -> bool {
    let n = nr.to_le_bytes();
    let mov_eax = [0xb8, n[0], n[1], n[2], n[3]];
    stub.windows(5)
        .position(|w| w == mov_eax)
        .is_some_and(|at| stub[at + 5..].windows(2).any(|w| w == [0x0f, 0x05]))
}

/// xen_version: version, capabilities, features, page size, hypervisor start.
fn version(t: &mut Tests, xen: &Hypercalls) {
    let (major, minor) = xen.xen_version();
    println!("boot-state: Xen {major}.{minor}");
    t.check("xen-version", Outcome::ensure(major >= 4, format_args!("version {major}.{minor}")));
    t.check(
        "xen-capabilities",
        match xen.xen_capabilities() {
            Ok(caps) => {
                let s = until_nul(&caps);
                Outcome::ensure(
                    s.windows(14).any(|w| w == b"xen-3.0-x86_64"),
                    format_args!("capabilities {:?}", text(s)),
                )
            }
            Err(e) => Outcome::fail(e),
        },
    );
    match xen.xen_get_features(0) {
        Ok(f) => {
            println!("boot-state: XENVER_get_features[0] = {f:#x}");
            let bit = |n: u32| f & (1 << n) != 0;
            // What Linux insists on (drivers/xen/features.c) ...
            t.check(
                "features-linux-required",
                Outcome::ensure(
                    bit(XENFEAT_MMU_PT_UPDATE_PRESERVE_AD) && bit(XENFEAT_GNTTAB_MAP_AVAIL_BITS),
                    format_args!("features {f:#x} lack mmu_pt_update_preserve_ad or gnttab_map_avail_bits"),
                ),
            );
            // ... what a PV guest must never see ...
            t.check(
                "features-not-translated",
                Outcome::ensure(
                    !bit(XENFEAT_AUTO_TRANSLATED_PHYSMAP) && !bit(XENFEAT_SUPERVISOR_MODE_KERNEL),
                    format_args!("features {f:#x}: auto_translated_physmap or supervisor_mode_kernel"),
                ),
            );
            // ... and dom0.
            t.check("features-dom0", Outcome::ensure(bit(XENFEAT_DOM0), format_args!("features {f:#x}")));
        }
        Err(e) => t.fail("features", format_args!("XENVER_get_features: {e}")),
    }
    t.check("xen-pagesize", Outcome::ok_eq(xen.xen_pagesize(), PAGE));
    t.check(
        "platform-parameters",
        match xen.xen_platform_parameters() {
            Ok(p) => Outcome::eq(p.virt_start, HYPERVISOR_VIRT_START),
            Err(e) => Outcome::fail(e),
        },
    );
}

/// Error codes of calls Linux's fallbacks test for exactly.
fn hypercall_errors(t: &mut Tests, xen: &Hypercalls) {
    // SAFETY: CONSOLEIO_write of 0 bytes reads nothing.
    let ret = unsafe { xen.call(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE as u64, 0, 0, 0, 0) };
    t.check("console-io-empty", Outcome::eq(ret, 0));
    for (name, nr) in [
        ("hypercall-undefined-enosys", UNDEFINED_HYPERCALL),
        ("hypercall-beyond-table-enosys", BEYOND_TABLE_HYPERCALL),
    ] {
        // SAFETY: an undefined hypercall does nothing; the arguments are not pointers
        // anyone reads.
        let ret = unsafe { xen.call(nr, 0, 0, 0, 0, 0) };
        t.check(name, Outcome::eq(ret, Errno::ENOSYS.to_ret()));
    }
    // SAFETY: an unknown SCHEDOP does nothing.
    let ret = unsafe { xen.call(HYPERVISOR_SCHED_OP, BAD_SCHEDOP, 0, 0, 0, 0) };
    t.check("sched-op-bad-cmd", Outcome::eq(ret, Errno::ENOSYS.to_ret()));
    t.check("sched-yield", xen.sched_yield());
}

/// vCPU 0 is up and running; the domain owns `nr_pages` pages.
fn vcpu_and_memory(t: &mut Tests, xen: &Hypercalls, si: &StartInfo) {
    t.check("vcpu0-up", Outcome::ok_eq(xen.vcpu_is_up(0), true));
    t.check(
        "vcpu0-running",
        match xen.vcpu_runstate_info(0) {
            Ok(r) => Outcome::eq(r.state, RUNSTATE_RUNNING),
            Err(e) => Outcome::fail(e),
        },
    );
    let reservation = xen.memory_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF);
    println!("boot-state: current_reservation {reservation:?}");
    t.check("current-reservation", Outcome::ok_eq(reservation, si.nr_pages));
}

/// `bytes` as text, for messages.
fn text(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("<not UTF-8>")
}

fn until_nul(s: &[u8]) -> &[u8] {
    s.split(|&b| b == 0).next().unwrap_or(s)
}

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_xen_stubs() {
        // push rcx; push r11; mov eax, 17; syscall; pop r11; pop rcx; ret
        let mut stub = [0xcc_u8; 32];
        stub[..11].copy_from_slice(&[0x51, 0x41, 0x53, 0xb8, 17, 0, 0, 0, 0x0f, 0x05, 0x41]);
        assert!(is_syscall_stub(&stub, 17));
        assert!(!is_syscall_stub(&stub, 18));
        assert!(!is_syscall_stub(&[0; 32], 0));
    }
}
