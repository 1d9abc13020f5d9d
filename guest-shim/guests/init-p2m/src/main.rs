// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: a 64-bit PV dom0 that declares `XEN_ELFNOTE_INIT_P2M` (at
//! [`LINUX_INIT_P2M`], 512 GiB, as Linux does) gets its P2M list there, outside the
//! bootstrap region, as Xen 4.17's `xen/arch/x86/pv/dom0_build.c` builds it
//! (`setup_pv_physmap`), with the rest of the start of day (`xen.h`, "Start-of-day
//! memory layout") still in order. Boot it as dom0 with `dom0_mem=64M` (a 128 KiB list).
//!
//! Checked:
//! - `start_info.mfn_list` is the note's address; the list is outside the bootstrap
//!   region, which holds no list: start_info follows the kernel directly, then the page
//!   tables (only the region's own: `nr_pt_frames` is L4 + L3 + L2 + one L1 per 2 MiB),
//!   the boot stack and the padding; the region maps pfn N at `VIRT_BASE + N` pages,
//!   page tables read-only; CR3 is `pt_base`'s frame;
//! - the list: `nr_pages` valid MFNs that the M2P maps back to their pfns, and every
//!   page of it writable (an entry changed, read back and restored, under
//!   `traps::catch`);
//! - the frames behind it: `first_p2m_pfn` / `nr_p2m_frames` are the pfns right after
//!   the region, and they are exactly the list's pages plus the page tables that map
//!   it (an L3, an L2 and an L1 in L4 slot 1, walked by mapping each table read-only
//!   in a scratch page of the image); the tables are not bootstrap tables, every
//!   entry on the way is present and writable with no large page, and each table
//!   is a validated page table: mapping it writable is refused with -EBUSY;
//! - the domain's reservation is `nr_pages`: the list and its tables are the
//!   domain's own pages, not extra ones.
//!
//! What Xen does that may surprise: the P2M's page tables are not mapped anywhere
//! (not even read-only) and do not count in `nr_pt_frames`; only
//! `first_p2m_pfn`/`nr_p2m_frames` tell the guest where they are. Their frames come
//! out of the domain's `nr_pages`, right after the bootstrap region's (whose size Xen
//! rounds up to a power of two of pages when it allocates it). For a list of 2 MiB or
//! more Xen maps it with 2 MiB (or 1 GiB) pages: the exact frame counts are then not
//! checked here.
//!
//! `guest_shim::mmu`'s page pool must not be used with this note: it would hand out
//! the list's own frames.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::cell::Cell;
use core::ops::Range;
use core::ptr::{read_volatile, write_volatile};

use guest_shim::mmu::{KERNEL_RO, KERNEL_RW, mfn_to_pfn, pfn_to_mfn};
use guest_shim::notes::{LINUX_INIT_P2M, VIRT_BASE};
use guest_shim::pt::{PTE_PRESENT, PTE_PSE, PTE_RW, pte_mfn, table_index};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::memory::XENMEM_CURRENT_RESERVATION;
use guest_shim::pv_abi::xen::{DOMID_SELF, UvmfFlags};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, println, traps};

guest_shim::entry!(start);
// The note under test: the P2M list at 512 GiB, as Linux asks.
guest_shim::xen_elfnote!(guest_shim::pv_abi::elfnote::XEN_ELFNOTE_INIT_P2M, u64 LINUX_INIT_P2M);

const PAGE: u64 = 4096;
const TWO_MIB: u64 = 2 << 20;
/// `INVALID_P2M_ENTRY`.
const INVALID_MFN: u64 = !0;
/// Padding the builder guarantees after the boot stack.
const MIN_PADDING: u64 = 512 * 1024;
/// The most P2M frames the walk keeps track of.
const MAX_P2M_FRAMES: u64 = 64 * 64;

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let region = guest_shim::pt::bootstrap_region();
    println!(
        "init-p2m: start_info {:#x} nr_pages {} mfn_list {:#x} first_p2m_pfn {:#x} nr_p2m_frames {} \
         pt_base {:#x} nr_pt_frames {} region {region:#x?}",
        si as *const StartInfo as u64,
        si.nr_pages,
        si.mfn_list,
        si.first_p2m_pfn,
        si.nr_p2m_frames,
        si.pt_base,
        si.nr_pt_frames,
    );

    t.check("mfn-list-at-note", Outcome::eq(si.mfn_list, LINUX_INIT_P2M));
    layout(&mut t, si, &region);
    region_mappings(&mut t, si, &region);
    p2m_and_m2p(&mut t, &xen, si);
    p2m_writable(&mut t, si);
    p2m_frames(&mut t, si, &region);
    let reservation = xen.memory_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF);
    t.check("reservation-is-nr-pages", Outcome::ok_eq(reservation, si.nr_pages));
    t.finish()
}

/// Entry `pfn` of the P2M list.
fn p2m(si: &StartInfo, pfn: u64) -> u64 {
    debug_assert!(pfn < si.nr_pages);
    // SAFETY: the list holds `nr_pages` entries at `mfn_list`, mapped for the guest's
    // lifetime (checked by `mfn-list-at-note` and the walk); a volatile read of one.
    unsafe { read_volatile((si.mfn_list as *const u64).add(pfn as usize)) }
}

/// The bootstrap region without the list: kernel, start_info, page tables, stack,
/// padding, in that order (xen.h), and the list elsewhere.
fn layout(t: &mut Tests, si: &StartInfo, region: &Range<u64>) {
    let image = guest_shim::image_range();
    let si_va = si as *const StartInfo as u64;
    let pt_end = si.pt_base + si.nr_pt_frames * PAGE;
    let rsp = guest_shim::boot_regs().rsp;

    t.check("image-at-virt-base", Outcome::eq(image.start, VIRT_BASE));
    // No initrd was given, so nothing may sit between the kernel and start_info.
    t.check(
        "no-module",
        Outcome::ensure(
            si.mod_start == 0 && si.mod_len == 0,
            format_args!("mod_start {:#x} mod_len {:#x}", si.mod_start, si.mod_len),
        ),
    );
    t.check("layout-start-info-after-kernel", Outcome::eq(si_va, image.end.next_multiple_of(PAGE)));
    t.check("layout-pt-after-start-info", Outcome::eq(si.pt_base, si_va + PAGE));
    t.check("rsp-boot-stack-top", Outcome::eq(rsp, pt_end + PAGE));
    // The region's own tables only: L4, L3, L2 and one L1 per 2 MiB (it starts on a
    // 2 MiB boundary and stays within 1 GiB).
    let l1s = (region.end - region.start).div_ceil(TWO_MIB);
    t.check("nr-pt-frames-region-only", Outcome::eq(si.nr_pt_frames, 3 + l1s));
    let list = si.mfn_list..si.mfn_list + si.nr_pages * 8;
    t.check(
        "p2m-outside-region",
        Outcome::ensure(
            list.end <= region.start || list.start >= region.end,
            format_args!("list {list:#x?} region {region:#x?}"),
        ),
    );
    let region_pages = (region.end - region.start) / PAGE;
    t.check(
        "nr-pages",
        Outcome::ensure(
            si.nr_pages >= region_pages,
            format_args!("nr_pages {} < {region_pages} pages of bootstrap region", si.nr_pages),
        ),
    );
    let mut sum = 0u64;
    let mut va = rsp;
    while va < rsp + MIN_PADDING {
        // SAFETY: xen.h guarantees 512 KiB of mapped padding after the boot stack;
        // the bytes are read, not referenced.
        sum = sum.wrapping_add(u64::from(unsafe { read_volatile(va as *const u8) }));
        va += PAGE;
    }
    println!("init-p2m: padding after the boot stack read (byte sum {sum})");
    t.pass("padding-mapped");
}

/// CR3 is `pt_base`'s frame; the region maps pfn N at `VIRT_BASE + N` pages, the page
/// tables read-only, everything else writable.
fn region_mappings(t: &mut Tests, si: &StartInfo, region: &Range<u64>) {
    let pt_pfn = (si.pt_base - VIRT_BASE) / PAGE;
    let cr3: u64;
    // SAFETY: a privileged instruction in ring 3: Xen emulates the read for PV
    // guests and returns the guest's page-table base; no memory is touched.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    t.check("cr3-pt-base", Outcome::eq(Some(cr3 / PAGE), pfn_to_mfn(pt_pfn)));

    let pt = si.pt_base..si.pt_base + si.nr_pt_frames * PAGE;
    let guard = guest_shim::stack_guard();
    let (mut wrong_map, mut wrong_rw) = (None, None);
    for va in region.clone().step_by(PAGE as usize).filter(|&va| va != guard) {
        let pfn = (va - region.start) / PAGE;
        let walk = guest_shim::pt::lookup(va);
        let Some(pte) = walk.pte() else {
            wrong_map.get_or_insert(Outcome::fail(format_args!("{va:#x}: {walk:x?}")));
            continue;
        };
        if pfn_to_mfn(pfn) != Some(pte_mfn(pte)) {
            wrong_map.get_or_insert(Outcome::fail(format_args!(
                "{va:#x} maps mfn {:#x}, p2m[{pfn:#x}] = {:#x?}",
                pte_mfn(pte),
                pfn_to_mfn(pfn)
            )));
        }
        let writable = pte & PTE_RW != 0;
        if writable == pt.contains(&va) {
            wrong_rw
                .get_or_insert(Outcome::fail(format_args!("{va:#x} (pte {pte:#x}) writable: {writable}")));
        }
    }
    t.check("region-mapped-1to1", wrong_map.unwrap_or(Outcome::Pass));
    t.check("region-pt-read-only", wrong_rw.unwrap_or(Outcome::Pass));
}

/// `nr_pages` valid MFNs, each mapped back to its pfn by the M2P.
fn p2m_and_m2p(t: &mut Tests, xen: &Hypercalls, si: &StartInfo) {
    let limit = xen.maximum_ram_page().unwrap_or(u64::MAX);
    let bad = (0..si.nr_pages).map(|pfn| (pfn, p2m(si, pfn))).find(|&(_, m)| m == INVALID_MFN || m >= limit);
    t.check(
        "p2m-valid",
        match bad {
            None => Outcome::Pass,
            Some((pfn, mfn)) => Outcome::fail(format_args!("p2m[{pfn:#x}] = {mfn:#x}, limit {limit:#x}")),
        },
    );
    // Each pfn maps back, so no two pfns share a frame.
    let wrong = (0..si.nr_pages).map(|pfn| (pfn, p2m(si, pfn))).find(|&(pfn, m)| mfn_to_pfn(m) != Some(pfn));
    t.check(
        "m2p-consistent",
        match wrong {
            None => Outcome::Pass,
            Some((pfn, mfn)) => {
                Outcome::fail(format_args!("p2m[{pfn:#x}] = {mfn:#x} but m2p says {:#x?}", mfn_to_pfn(mfn)))
            }
        },
    );
}

/// Every page of the list takes a write: one entry of it changed, read back and
/// restored.
fn p2m_writable(t: &mut Tests, si: &StartInfo) {
    if let Err(e) = traps::install() {
        t.fail("p2m-writable", format_args!("no trap table: {e}"));
        return;
    }
    let list = si.mfn_list as *mut u64;
    let first_page = si.mfn_list / PAGE * PAGE;
    let end = si.mfn_list + si.nr_pages * 8;
    // SAFETY: the closure only makes volatile accesses to the list (mapped for the
    // guest's lifetime, used by nothing else meanwhile) and holds nothing that needs
    // dropping when a write faults. A faulting write changes nothing, so no entry
    // is left changed.
    let r = unsafe {
        traps::catch(|| {
            let mut page = first_page;
            while page < end {
                // The first entry that starts in this page.
                let pfn = (page.max(si.mfn_list) - si.mfn_list).div_ceil(8);
                if pfn < si.nr_pages {
                    let at = list.add(pfn as usize);
                    let v = read_volatile(at);
                    write_volatile(at, !v);
                    let back = read_volatile(at);
                    write_volatile(at, v);
                    if back != !v {
                        return Some((pfn, back));
                    }
                }
                page += PAGE;
            }
            None
        })
    };
    t.check(
        "p2m-writable",
        match r {
            Ok(None) => Outcome::Pass,
            Ok(Some((pfn, back))) => Outcome::fail(format_args!("p2m[{pfn:#x}] read back {back:#x}")),
            Err(trap) => Outcome::fail(format_args!(
                "{} at {:#x} (error code {:#x})",
                traps::name(u64::from(trap.vector())),
                trap.cr2,
                trap.error_code()
            )),
        },
    );
}

/// A page of the image remapped, one frame at a time, to read frames the guest does
/// not map: the P2M's page tables. Dropping it maps the page's own frame back.
struct Window {
    va: u64,
    own: u64,
    mapped: Cell<Option<u64>>,
}

#[repr(C, align(4096))]
struct ScratchPage([u8; PAGE as usize]);

/// The window's page: only ever accessed through raw pointers.
static mut SCRATCH: ScratchPage = ScratchPage([0; PAGE as usize]);

impl Window {
    fn open() -> Option<Window> {
        let va = (&raw mut SCRATCH) as u64;
        let own = guest_shim::pt::lookup(va).pte()?;
        Some(Window { va, own, mapped: Cell::new(None) })
    }

    /// Maps `pte` at the window.
    fn map(&self, pte: u64) -> Result<(), Errno> {
        // SAFETY: the scratch page is ours and Rust never reads or writes it except
        // through `read` below, so remapping it breaks no object.
        unsafe { guest_shim::hypercalls().update_va_mapping(self.va, pte, UvmfFlags::INVLPG) }
    }

    /// Entry `index` of frame `mfn`, which the window maps read-only.
    fn read(&self, mfn: u64, index: usize) -> Result<u64, Errno> {
        if self.mapped.get() != Some(mfn) {
            self.mapped.set(None);
            self.map((mfn * PAGE) | KERNEL_RO)?;
            self.mapped.set(Some(mfn));
        }
        // SAFETY: the window maps frame `mfn` read-only; `index` is below 512.
        Ok(unsafe { read_volatile((self.va as *const u64).add(index % 512)) })
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if let Err(e) = self.map(self.own) {
            println!("init-p2m: cannot map the scratch page back: {e}");
        }
    }
}

/// Entry `index` of the table in frame `mfn`: read where the region maps it, or
/// through the window.
fn entry(w: &Window, region_pages: u64, mfn: u64, index: usize) -> Result<u64, Errno> {
    match mfn_to_pfn(mfn) {
        Some(pfn) if pfn < region_pages && pfn_to_mfn(pfn) == Some(mfn) => {
            // SAFETY: pfn N of the region is mapped at VIRT_BASE + N pages for good
            // (checked by `region-mapped-1to1`); tables are readable.
            Ok(unsafe { read_volatile(((VIRT_BASE + pfn * PAGE) as *const u64).add(index % 512)) })
        }
        _ => w.read(mfn, index),
    }
}

/// The P2M frames found by the walk, as a bitmap over
/// `first_p2m_pfn..first_p2m_pfn + nr_p2m_frames`.
struct Frames {
    range: Range<u64>,
    seen: [u64; (MAX_P2M_FRAMES / 64) as usize],
    tables: [u64; 8],
    nr_tables: usize,
    data: u64,
}

impl Frames {
    /// Records frame `pfn`; false if it is outside the range or seen already.
    fn take(&mut self, pfn: u64) -> bool {
        if !self.range.contains(&pfn) {
            return false;
        }
        let i = pfn - self.range.start;
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        let new = self.seen[word] & bit == 0;
        self.seen[word] |= bit;
        new
    }
}

/// Page tables a mapping of the pages `[start, end)` needs beyond those of the
/// region `[region.start, region.end)`: an L3 per 512 GiB slot, an L2 per GiB, an
/// L1 per 2 MiB, unless the region's tables already cover it.
fn tables_needed(start: u64, end: u64, region: &Range<u64>) -> u64 {
    [39u32, 30, 21]
        .iter()
        .map(|&shift| {
            let own = (start >> shift)..=((end - 1) >> shift);
            let shared = (region.start >> shift)..=((region.end - 1) >> shift);
            own.filter(|i| !shared.contains(i)).count() as u64
        })
        .sum()
}

/// The frames behind the list: the pfns after the region, holding exactly the list's
/// pages and the tables that map them, none of them a bootstrap table.
fn p2m_frames(t: &mut Tests, si: &StartInfo, region: &Range<u64>) {
    let region_pages = (region.end - region.start) / PAGE;
    let frames = si.first_p2m_pfn..si.first_p2m_pfn.saturating_add(si.nr_p2m_frames);
    t.check(
        "p2m-frames-after-region",
        Outcome::ensure(
            frames.start >= region_pages && frames.end <= si.nr_pages && !frames.is_empty(),
            format_args!("frames {frames:#x?}, region {region_pages:#x} pages, nr_pages {:#x}", si.nr_pages),
        ),
    );
    let pages = si.mfn_list / PAGE * PAGE..(si.mfn_list + si.nr_pages * 8).next_multiple_of(PAGE);
    let nr_data = (pages.end - pages.start) / PAGE;
    if pages.end - pages.start >= TWO_MIB {
        let why = "a list of 2 MiB or more, which Xen maps with large pages: boot with dom0_mem=64M";
        for name in ["p2m-frames-count", "p2m-walk", "p2m-tables-own", "p2m-tables-typed"] {
            t.skip(name, why);
        }
        return;
    }
    let expected = nr_data + tables_needed(pages.start, pages.end, region);
    t.check("p2m-frames-count", Outcome::eq(si.nr_p2m_frames, expected));
    if frames.end - frames.start > MAX_P2M_FRAMES {
        for name in ["p2m-walk", "p2m-tables-own", "p2m-tables-typed"] {
            t.skip(name, format_args!("more than {MAX_P2M_FRAMES} P2M frames"));
        }
        return;
    }
    let Some(window) = Window::open() else {
        for name in ["p2m-walk", "p2m-tables-own", "p2m-tables-typed"] {
            t.fail(name, "the scratch page is not mapped");
        }
        return;
    };

    let pt_pfns = (si.pt_base - VIRT_BASE) / PAGE..(si.pt_base - VIRT_BASE) / PAGE + si.nr_pt_frames;
    let root = pfn_to_mfn(pt_pfns.start).unwrap_or(INVALID_MFN);
    let mut found = Frames { range: frames.clone(), seen: [0; 64], tables: [0; 8], nr_tables: 0, data: 0 };
    let mut walk = Outcome::Pass;
    let mut tables_own = Outcome::Pass;
    'pages: for va in pages.clone().step_by(PAGE as usize) {
        let mut table = root;
        for level in (1..=4u8).rev() {
            let e = match entry(&window, region_pages, table, table_index(va, level)) {
                Ok(e) => e,
                Err(err) => {
                    walk = Outcome::fail(format_args!("{va:#x}: level-{level} table {table:#x}: {err}"));
                    break 'pages;
                }
            };
            // (PSE is PAT in an L1 entry.)
            let large = matches!(level, 2 | 3) && e & PTE_PSE != 0;
            if e & PTE_PRESENT == 0 || e & PTE_RW == 0 || large {
                walk = Outcome::fail(format_args!("{va:#x}: level-{level} entry {e:#x}"));
                break 'pages;
            }
            let next = pte_mfn(e);
            let pfn = mfn_to_pfn(next).unwrap_or(INVALID_MFN);
            if level == 1 {
                // A page of the list: one of its frames, and none seen before.
                if !found.take(pfn) {
                    walk = Outcome::fail(format_args!("{va:#x} maps pfn {pfn:#x}, not a new P2M frame"));
                    break 'pages;
                }
                found.data += 1;
            } else if pt_pfns.contains(&pfn) {
                // A bootstrap table shared with the region (not in L4 slot 1).
            } else if found.take(pfn) {
                if let Some(slot) = found.tables.get_mut(found.nr_tables) {
                    *slot = next;
                }
                found.nr_tables += 1;
            } else if !found.tables[..found.nr_tables.min(8)].contains(&next) {
                tables_own = Outcome::fail(format_args!(
                    "the level-{} table for {va:#x} is pfn {pfn:#x}: no P2M or bootstrap frame",
                    level - 1
                ));
            }
            table = next;
        }
    }
    let seen = found.seen.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
    println!(
        "init-p2m: list pages {pages:#x?}: {} data frames, {} tables {:x?}, {seen} of {} P2M frames seen",
        found.data,
        found.nr_tables,
        &found.tables[..found.nr_tables.min(8)],
        si.nr_p2m_frames
    );
    if walk.passed() && seen != si.nr_p2m_frames {
        walk =
            Outcome::fail(format_args!("{seen} frames mapped or walked, nr_p2m_frames {}", si.nr_p2m_frames));
    }
    t.check("p2m-walk", walk);
    if tables_own.passed() && found.nr_tables == 0 {
        tables_own = Outcome::fail("no page table of the list's own");
    }
    t.check("p2m-tables-own", tables_own);

    // Each table is a validated page table: a writable mapping of it is refused.
    let mut typed = if found.nr_tables == 0 { Outcome::fail("no tables found") } else { Outcome::Pass };
    for &mfn in &found.tables[..found.nr_tables.min(8)] {
        window.mapped.set(None);
        match window.map((mfn * PAGE) | KERNEL_RW) {
            Err(Errno::EBUSY) => {}
            other => {
                typed = Outcome::fail(format_args!("mapping table {mfn:#x} writable: {other:?}, not -EBUSY"));
                break;
            }
        }
    }
    t.check("p2m-tables-typed", typed);
    drop(window);
}

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_for_a_list() {
        let region = VIRT_BASE..VIRT_BASE + (4 << 20);
        // Linux's place: an L3, an L2 and an L1 of its own.
        assert_eq!(tables_needed(LINUX_INIT_P2M, LINUX_INIT_P2M + 32 * PAGE, &region), 3);
        // Across a 2 MiB boundary: two L1s.
        assert_eq!(
            tables_needed(LINUX_INIT_P2M + TWO_MIB - PAGE, LINUX_INIT_P2M + TWO_MIB + PAGE, &region),
            4
        );
        // Next to the region, in its L2: one L1.
        assert_eq!(tables_needed(region.end + TWO_MIB, region.end + TWO_MIB + PAGE, &region), 1);
    }
}
