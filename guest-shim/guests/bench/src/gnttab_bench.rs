// SPDX-License-Identifier: MIT OR Apache-2.0
//! Grant-table benchmarks, on grants this domain makes out to itself: a v1 table set up
//! with `GNTTABOP_setup_table`, its frame 0 mapped writable at a pool page's address.
//!
//! - `gnttab-copy-4k`: one `GNTTABOP_copy` of one page from a read-only grant
//!   (`GNTCOPY_source_gref`) into another own frame named by its gmfn (no
//!   `GNTCOPY_dest_gref`), per call; `gnttab-copy-4k-per-kib` is the same in
//!   cycles/KiB.
//! - `gnttab-copy-64k`: one `GNTTABOP_copy` of 16 such page-sized operations, from 16
//!   granted frames into 16 others, per call; and `gnttab-copy-64k-per-kib`.
//! - `gnttab-map-unmap`: `GNTTABOP_map_grant_ref` (`GNTMAP_host_map`, read-write) of a
//!   granted frame at a kernel address that maps nothing, then
//!   `GNTTABOP_unmap_grant_ref` of that mapping (two calls), per pair.
//!
//! Xen's rules for grants to oneself (what the gnttab-self guest found): the entry and a
//! map's `dom` name the real domain id (0: this guest runs as dom0), not `DOMID_SELF`,
//! which Xen refuses there; a copy end given as a frame must say `DOMID_SELF`.
//!
//! Every call's status is checked (a figure with a failed operation in it is void), and
//! so are the copied bytes and one write through a grant mapping.
//!
//! The timed parts take the granter's id and references as arguments: the interdomain
//! benchmarks ([`crate::interdomain`]) run the same code on grants of a domU.

use core::fmt;

use guest_shim::gnttab::GrantFrame;
use guest_shim::mmu::{self, KERNEL_RW, Page};
use guest_shim::pv_abi::XenError;
use guest_shim::pv_abi::grant_table::{
    GNTCOPY_SOURCE_GREF, GNTST_OKAY, GNTTAB_NR_RESERVED_ENTRIES, GNTTABOP_MAP_GRANT_REF,
    GNTTABOP_UNMAP_GRANT_REF, GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabUnmapGrantRef,
    GrantEntryV1, GrantHandle, GrantRef, gntst_message,
};
use guest_shim::pv_abi::xen::{DOMID_SELF, DomId, SIF_INITDOMAIN};
use guest_shim::{Hypercalls, StartInfo, println};

use crate::mmu_bench::timed;
use crate::{report, report_unit};

/// The `BENCH` names of the copy figures: per call and per KiB, 4 KiB then 64 KiB.
const COPY_NAMES: [[&str; 2]; 2] =
    [["gnttab-copy-4k", "gnttab-copy-4k-per-kib"], ["gnttab-copy-64k", "gnttab-copy-64k-per-kib"]];
/// The `BENCH` name of the map-unmap figure.
const MAP_NAME: &str = "gnttab-map-unmap";
/// Our domain id, which grants to ourselves must name: the bench runs as dom0.
const OWN_DOMID: DomId = 0;
/// Pages copied by one `gnttab-copy-64k` call (one operation each).
pub const COPY_PAGES: usize = 16;
/// KiB per page.
pub const KIB_PER_PAGE: u64 = mmu::PAGE_SIZE / 1024;
/// Read-only grants of the copy sources: `REF_COPY..REF_COPY + COPY_PAGES` (past the
/// entries the header reserves for the toolstack).
pub const REF_COPY: GrantRef = GNTTAB_NR_RESERVED_ENTRIES;
/// Read-write grant of the page `gnttab-map-unmap` maps.
pub const REF_MAP: GrantRef = REF_COPY + COPY_PAGES as GrantRef;
/// Calls per timed batch of `gnttab-copy-4k`.
const COPY_4K_OPS: u64 = 200;
/// Calls per timed batch of `gnttab-copy-64k`.
const COPY_64K_OPS: u64 = 20;
/// Map-unmap pairs per timed batch.
const MAP_UNMAP_OPS: u64 = 500;
/// What `gnttab-map-unmap` writes through the mapping and reads back from the frame.
const MAP_PROBE: u64 = 0x6772_616e_7421;

/// Why a figure is missing.
#[derive(Clone, Copy, Debug)]
pub enum Why {
    /// A call returned an error.
    Call(&'static str, XenError),
    /// A call succeeded but an operation's `status` is not `GNTST_okay`.
    Status(&'static str, i16),
    /// Something the hypervisor did is not what the figure assumes.
    Wrong(&'static str),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Call(step, e) => write!(f, "{step} failed: {e}"),
            Why::Status(step, st) => write!(f, "{step}: status {st} ({})", gntst_message(*st)),
            Why::Wrong(what) => f.write_str(what),
        }
    }
}

/// Runs the benchmarks and prints their `BENCH` (or `BENCH-SKIP`) lines.
pub fn run(si: &StartInfo) {
    if si.flags & SIF_INITDOMAIN == 0 {
        // Grants to ourselves must name our id, which only dom0 knows for sure.
        skip_all("not dom0: our domain id is unknown");
        return;
    }
    let xen = guest_shim::hypercalls();
    let table = match Table::setup(&xen) {
        Ok(t) => t,
        Err(why) => {
            skip_all(format_args!("grant table: {why}"));
            return;
        }
    };
    match copy_bench(&xen, table) {
        Ok((one, all)) => {
            report_copy(COPY_NAMES[0], one, KIB_PER_PAGE);
            report_copy(COPY_NAMES[1], all, KIB_PER_PAGE * COPY_PAGES as u64);
        }
        Err(why) => {
            for name in COPY_NAMES.as_flattened() {
                println!("BENCH-SKIP {name}: {why}");
            }
        }
    }
    match map_unmap(&xen, table) {
        Ok(figure) => report(MAP_NAME, figure),
        Err(why) => println!("BENCH-SKIP {MAP_NAME}: {why}"),
    }
    if let Err(why) = table.release() {
        println!("bench: grant table left as it was: {why}");
    }
}

/// A `BENCH-SKIP` line for every figure of this module.
fn skip_all(why: impl fmt::Display) {
    for name in COPY_NAMES.as_flattened().iter().chain([&MAP_NAME]) {
        println!("BENCH-SKIP {name}: {why}");
    }
}

/// A copy figure per call (`names[0]`) and per KiB (`names[1]`) of a call that copies
/// `kib` KiB.
pub fn report_copy(names: [&str; 2], per_call: u64, kib: u64) {
    report(names[0], per_call);
    report_unit(names[1], per_call / kib, "cycles/KiB");
}

/// Frame 0 of our grant table, mapped writable at the address of a pool page (whose own
/// frame is unmapped meanwhile).
#[derive(Clone, Copy)]
pub struct Table {
    page: Page,
    /// Its entries (see guest-shim's `gnttab`).
    pub frame: GrantFrame,
}

impl Table {
    /// `GNTTABOP_setup_table` for one frame, and that frame mapped at a pool page.
    pub fn setup(xen: &Hypercalls) -> Result<Table, Why> {
        let mut frames = [0u64; 1];
        let st = xen.gnttab_setup_table(DOMID_SELF, &mut frames).map_err(|e| Why::Call("setup_table", e))?;
        if st != GNTST_OKAY {
            return Err(Why::Status("setup_table", st));
        }
        let page = mmu::alloc().map_err(|e| Why::Call("mmu::alloc", e))?;
        // SAFETY: the page is fresh from the pool: nothing refers to its address, which
        // maps the table frame until `release` maps the page back.
        let mapped = unsafe { mmu::set_kernel_pte(page.va(), (frames[0] * mmu::PAGE_SIZE) | KERNEL_RW) };
        if let Err(e) = mapped {
            // SAFETY: nothing refers to the page.
            let _ = unsafe { mmu::free(page) };
            return Err(Why::Call("update_va_mapping of the table frame", e));
        }
        // SAFETY: mapped writable just above, until `release`.
        Ok(Table { page, frame: unsafe { GrantFrame::at(page.va()) } })
    }

    /// Maps the page's own frame back at its address and returns it to the pool.
    pub fn release(self) -> Result<(), Why> {
        mmu::make_writable(&self.page).map_err(|e| Why::Call("update_va_mapping of the page", e))?;
        // SAFETY: the table is not used any more.
        unsafe { mmu::free(self.page) }.map_err(|e| Why::Call("mmu::free", e))
    }
}

/// A pool page's word `i`.
pub fn word(p: &Page, i: u64) -> *mut u64 {
    (p.va() + i * 8) as *mut u64
}

/// The figures of `gnttab-copy-4k` and `gnttab-copy-64k` (per call), on grants to
/// ourselves.
fn copy_bench(xen: &Hypercalls, table: Table) -> Result<(u64, u64), Why> {
    let src = alloc_pages::<COPY_PAGES>()?;
    for (i, s) in src.iter().enumerate() {
        fill_pattern(s, i as u64);
        table
            .frame
            .grant(REF_COPY + i as GrantRef, GrantEntryV1::permit_access(OWN_DOMID, s.mfn as u32, true));
    }
    let result = copy_from_grants(xen, OWN_DOMID, REF_COPY);
    let ended = (0..COPY_PAGES).all(|i| table.frame.end_access(REF_COPY + i as GrantRef).is_ok());
    free(&src);
    let figures = result?;
    if !ended {
        return Err(Why::Wrong("a copy source grant is still marked in use"));
    }
    Ok(figures)
}

/// The timed copies: `granter`'s read-only grants `first..first + COPY_PAGES`, whose
/// page i holds [`pattern`]`(i, _)`, into as many frames of ours named by gmfn. One
/// page per call (the first grant), then all of them per call; the figures per call,
/// after the copied bytes are checked.
pub fn copy_from_grants(xen: &Hypercalls, granter: DomId, first: GrantRef) -> Result<(u64, u64), Why> {
    let dst = alloc_pages::<COPY_PAGES>()?;
    // Page i: grant i of the granter (named by its id) into destination i by frame
    // (which must say DOMID_SELF).
    let mut ops: [GnttabCopy; COPY_PAGES] = core::array::from_fn(|i| {
        let source = GnttabCopyPtr::gref(first + i as GrantRef, granter, 0);
        let dest = GnttabCopyPtr::gmfn(dst[i].mfn, DOMID_SELF, 0);
        GnttabCopy::new(source, dest, mmu::PAGE_SIZE as u16, GNTCOPY_SOURCE_GREF)
    });
    let mut copy = |n: usize| -> Result<(), Why> {
        let ops = &mut ops[..n];
        // SAFETY: the destinations are pool pages of ours that hold no Rust object.
        unsafe { xen.gnttab_copy(ops) }.map_err(|e| Why::Call("GNTTABOP_copy", e))?;
        match ops.iter().find(|op| op.status != GNTST_OKAY) {
            Some(op) => Err(Why::Status("GNTTABOP_copy", op.status)),
            None => Ok(()),
        }
    };
    // The 4 KiB copy first (page 0 only), then all 16 pages per call.
    let mut both = || -> Result<(u64, u64), Why> {
        let one = timed(COPY_4K_OPS, || copy(1))?;
        holds_pattern(&dst[..1])?;
        let all = timed(COPY_64K_OPS, || copy(COPY_PAGES))?;
        holds_pattern(&dst)?;
        Ok((one, all))
    };
    let result = both();
    free(&dst);
    result
}

/// `N` pool pages (mapped writable, zeroed).
pub fn alloc_pages<const N: usize>() -> Result<[Page; N], Why> {
    let mut pages = [Page { pfn: 0, mfn: 0 }; N];
    for i in 0..N {
        match mmu::alloc() {
            Ok(p) => pages[i] = p,
            Err(e) => {
                free(&pages[..i]);
                return Err(Why::Call("mmu::alloc", e));
            }
        }
    }
    Ok(pages)
}

/// The pattern of word `w` of source page `i`.
const fn pattern(i: u64, w: u64) -> u64 {
    (i << 32 | w) ^ 0x5a5a_0000_0000_a5a5
}

/// Fills pool page `p` with the pattern of source page `i`.
pub fn fill_pattern(p: &Page, i: u64) {
    for w in 0..mmu::PAGE_SIZE / 8 {
        // SAFETY: a pool page of the caller's, mapped writable; only volatile accesses
        // and the hypervisor's copies touch it.
        unsafe { word(p, w).write_volatile(pattern(i, w)) };
    }
}

/// Whether page i of `dst` holds the pattern of source page i, for every i.
fn holds_pattern(dst: &[Page]) -> Result<(), Why> {
    for (i, d) in dst.iter().enumerate() {
        for w in 0..mmu::PAGE_SIZE / 8 {
            // SAFETY: pool pages of ours, mapped; read with volatile loads only.
            if unsafe { word(d, w).read_volatile() } != pattern(i as u64, w) {
                return Err(Why::Wrong("the copied page differs from its source"));
            }
        }
    }
    Ok(())
}

/// Gives pool pages back (best effort: the guest powers off soon anyway).
pub fn free(pages: &[Page]) {
    for p in pages {
        // SAFETY: the callers are done with the pages.
        let _ = unsafe { mmu::free(*p) };
    }
}

/// `gnttab-map-unmap`: the figure per map-unmap pair.
fn map_unmap(xen: &Hypercalls, table: Table) -> Result<u64, Why> {
    let [g] = alloc_pages::<1>()?;
    table.frame.grant(REF_MAP, GrantEntryV1::permit_access(OWN_DOMID, g.mfn as u32, false));
    // Once untimed: a write through the mapping must land in the granted frame.
    let probe = |va: u64| {
        // SAFETY: `va` maps `g`'s frame writable now; `g` is a pool page of ours that
        // only volatile accesses touch.
        unsafe {
            (va as *mut u64).write_volatile(MAP_PROBE);
            word(&g, 0).read_volatile() == MAP_PROBE
        }
    };
    let result = at_free_va(|va| map_unmap_at(xen, va, OWN_DOMID, REF_MAP, probe));
    let ended = table.frame.end_access(REF_MAP).is_ok();
    free(&[g]);
    let figure = result?;
    if !ended {
        return Err(Why::Wrong("the grant is still marked in use after the unmaps"));
    }
    Ok(figure)
}

/// Runs `f` with the kernel address of a pool page whose mapping is removed
/// meanwhile: an address with an L1 entry but no mapping, where grants can be mapped.
pub fn at_free_va<T>(f: impl FnOnce(u64) -> Result<T, Why>) -> Result<T, Why> {
    let [slot] = alloc_pages::<1>()?;
    // SAFETY: `slot` is fresh from the pool: nothing refers to its address, which from
    // now on has no mapping but the grants' (until it is mapped back below).
    let result = unsafe { mmu::unmap(&slot) }
        .map_err(|e| Why::Call("update_va_mapping to unmap the slot", e))
        .and_then(|()| f(slot.va()));
    let restored = mmu::make_writable(&slot);
    free(&[slot]);
    let value = result?;
    restored.map_err(|e| Why::Call("update_va_mapping to map the slot back", e))?;
    Ok(value)
}

/// `GNTTABOP_map_grant_ref` of `granter`'s grant `gref` at `va` (`GNTMAP_host_map`,
/// read-write); returns the handle.
pub fn map_grant(xen: &Hypercalls, va: u64, granter: DomId, gref: GrantRef) -> Result<GrantHandle, Why> {
    let mut op = [GnttabMapGrantRef::host_map(va, granter, gref, false)];
    // SAFETY: nothing else is mapped at `va` (the callers' contract), and nothing but
    // the callers' accesses through the mapping use it.
    unsafe { xen.grant_table_op(GNTTABOP_MAP_GRANT_REF, &mut op) }
        .map_err(|e| Why::Call("GNTTABOP_map_grant_ref", e))?;
    match op[0].status {
        GNTST_OKAY => Ok(op[0].handle),
        st => Err(Why::Status("GNTTABOP_map_grant_ref", st)),
    }
}

/// `GNTTABOP_unmap_grant_ref` of mapping `handle` at `va`.
pub fn unmap_grant(xen: &Hypercalls, va: u64, handle: GrantHandle) -> Result<(), Why> {
    let mut op = [GnttabUnmapGrantRef::new(va, 0, handle)];
    // SAFETY: nothing refers to the mapping at `va` past here (the callers' contract).
    unsafe { xen.grant_table_op(GNTTABOP_UNMAP_GRANT_REF, &mut op) }
        .map_err(|e| Why::Call("GNTTABOP_unmap_grant_ref", e))?;
    match op[0].status {
        GNTST_OKAY => Ok(()),
        st => Err(Why::Status("GNTTABOP_unmap_grant_ref", st)),
    }
}

/// The timed part of a map-unmap figure: `granter`'s grant `gref` mapped at `va`, an
/// address with an L1 entry but no mapping, and unmapped again. Once first, untimed,
/// `probe(va)` must find the mapping is the granted frame.
pub fn map_unmap_at(
    xen: &Hypercalls,
    va: u64,
    granter: DomId,
    gref: GrantRef,
    probe: impl FnOnce(u64) -> bool,
) -> Result<u64, Why> {
    let handle = map_grant(xen, va, granter, gref)?;
    let seen = probe(va);
    unmap_grant(xen, va, handle)?;
    if !seen {
        return Err(Why::Wrong("an access through the grant mapping missed the granted frame"));
    }
    timed(MAP_UNMAP_OPS, || unmap_grant(xen, va, map_grant(xen, va, granter, gref)?))
}
