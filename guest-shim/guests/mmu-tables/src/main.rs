// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: the PV MMU as dom0, through guest-shim's [`mmu`] module. One `RESULT`
//! line per check, then `SUMMARY` and poweroff.
//!
//! What is checked, against what Xen 4.17 does (`arch/x86/mm.c`: `get_page_from_l1e`,
//! `mod_l*_entry`, `promote_l*_table`, `do_mmu_update`, `do_mmuext_op`;
//! `arch/x86/pv/mm.c`; `common/memory.c`):
//! - the page pool: pages after the boot stack, mapped at `VIRT_BASE + pfn * 4096`,
//!   including ones past the bootstrap region (the pool maps them with an L1 of its own);
//! - a process-like address space: an L4 holding the kernel half of the current one,
//!   fresh L3/L2/L1 tables (zeroed, read-only first) mapping pages at 4 MiB; pinning the
//!   L4 validates the tree; `NEW_BASEPTR` to it and back; entries changed with
//!   `mmu_update` in the pinned tree (`INVLPG_LOCAL`, `MMU_PT_UPDATE_PRESERVE_AD`); an
//!   unpinned L1 hooked into the pinned L2 gets its type on the spot and loses it when
//!   unhooked; `NEW_USER_BASEPTR`; unpin, after which the tables can be made writable;
//! - a fork: the user half of one pinned tree copied into another (private pages with
//!   `MMUEXT_COPY_PAGE`, a shared one read-only), both pinned, read through each;
//! - refusals, with the guest running on: mappings of frames the domain may not map,
//!   writable mappings of page tables (`mmu_update` and `update_va_mapping`), pins of
//!   writable pages and of tables with bad entries, unpin of an unpinned frame, double
//!   pin, `NEW_BASEPTR` to frames that are no L4, updates of Xen's L4 slots, bad
//!   commands, unreadable request arrays, the `done` count after a partial failure,
//!   foreign domains;
//! - `MMUEXT_CLEAR_PAGE`, `MMUEXT_COPY_PAGE`, `MMU_MACHPHYS_UPDATE`, the TLB flushes;
//! - `memory_op`: reservations, `maximum_ram_page`, `machphys_mapping`,
//!   `machphys_mfn_list`, the memory maps, and a balloon down and up of a few pages
//!   (`decrease_reservation`, then `populate_physmap` of the same pfns);
//! - frames are conserved: 1000 small trees (L4+L3+L2+L1) built, pinned, unpinned and
//!   given back leave the pool, the reservation and the host's `free_pages`
//!   (`XEN_SYSCTL_physinfo`) as they were; so does the balloon round trip.
//!
//! What Xen 4.17 does that one might not expect (each is checked as found):
//! - `mmu_update` on a frame that is not a page table is a plain write of the value
//!   (the frame takes the writable type for the moment); so is an update of an
//!   unpinned table that nothing references, since it has no table type yet.
//! - Writable mappings of page tables and mappings of frames the domain does not own
//!   (an M2P frame, a frame given back) fail with -EBUSY, not -EINVAL
//!   (`get_page_from_l1e`'s "could not pin"), through both `mmu_update` and
//!   `update_va_mapping`.
//! - dom0 may map frames past the end of RAM: they are I/O memory it is allowed, and
//!   Xen makes the mapping uncacheable (PCD|PWT) for it. Only frames beyond the
//!   physical address width are refused (-EPERM), and Xen's INVALID_MFN with -EINVAL.
//! - The low bits 0-2 of `ptr` are the command, so a "misaligned" pointer is another
//!   command: 1 is `MMU_MACHPHYS_UPDATE`, 3 (`MMU_PT_UPDATE_NO_TRANSLATE`) works like
//!   a normal update for PV, 4-7 are -ENOSYS.
//! - Naming our own domain id as the foreign domain is -ESRCH (only `DOMID_SELF`
//!   means us); `DOMID_XEN` lets dom0 map the M2P's frames read-only, not writable.
//! - An unreadable request array outside the guest's part of the address space is
//!   -EFAULT before anything is done and `done` is not written at all; an array that
//!   runs into an unmapped page fails at that entry with `done` counting the ones before.
//! - Slots 256-271 of an L4 are filled by Xen when it validates the L4, whatever the
//!   guest left there; `mmu_update` of them in a validated L4 is -EINVAL.
//! - `XENMEM_memory_map` has no map for a PV dom0 (-ENOSYS); the machine map works.
//!   dom0's maximum reservation is `UINT_MAX` pages (no limit), not its size.
//! - `free_pages` is exact: frames a live domain gives back go to the heap at once
//!   (`free_domheap_pages` scrubs only a dying domain's frames, or with
//!   `scrub_domheap`), so it moves by exactly the count; page-table validation, pins
//!   and base-pointer switches allocate nothing, so 1000 trees leave it unchanged.
//! - A table in a pinned tree can be pinned again at its own level (pins are per
//!   frame), but not at another one.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::fmt::Debug;

use guest_shim::mmu::{
    self, Batch, BatchError, KERNEL_RO, Level, Page, TABLE, Tree, USER_RO, USER_RW, pt_update,
};
use guest_shim::pt::{PTE_ACCESSED, PTE_ADDR_MASK, PTE_DIRTY, PTE_PRESENT, PTE_PSE, PTE_RW, PTE_USER};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::MACH2PHYS_VIRT_START;
use guest_shim::pv_abi::memory::{
    XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION, XENMEM_MACHPHYS_MFN_LIST,
    XENMEM_MAXIMUM_RESERVATION, XENMEM_POPULATE_PHYSMAP, XenMachphysMfnList,
};
use guest_shim::pv_abi::xen::{
    DOMID_SELF, DOMID_XEN, DomId, GuestHandle, MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_TLB_FLUSH_ALL,
    MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE, MmuUpdate, MmuextOp,
};
use guest_shim::report::{all, expect_err, need};
use guest_shim::traps::{self, Trap, vector};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, println};

guest_shim::entry!(start);

/// Where the test trees map user pages (L4 0, L3 0, L2 2).
const USER_VA: u64 = 0x40_0000;
/// The next 2 MiB: an L1 of its own.
const USER_VA2: u64 = 0x60_0000;
/// Scratch mappings for refused updates, in the same L1 as `USER_VA`.
const SCRATCH_VA: u64 = 0x48_0000;
/// Start of the hypervisor's hole: not guest memory.
const HOLE: u64 = 0xffff_8000_0000_0000;
/// Trees built and destroyed for the conservation check.
const TREES: usize = 1000;
/// Pages ballooned down and up.
const BALLOON: usize = 8;
/// Our domain id: these tests run as dom0.
const OWN_DOMID: DomId = 0;
/// A domain id no domain has at boot.
const NO_SUCH_DOMID: DomId = 7;

/// Everything the sections share.
struct Env {
    t: Tests,
    xen: Hypercalls,
    si: &'static StartInfo,
    /// A frame Xen owns: the first frame of the M2P table.
    xen_frame: u64,
    /// `XENMEM_maximum_ram_page`.
    max_ram_page: u64,
}

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let installed = traps::install();
    need(&mut t, "traps-install", installed);
    let stats = need(&mut t, "pool-init", mmu::init());
    println!(
        "mmu-tables: nr_pages {} pt_base {:#x} nr_pt_frames {} pool {:?}",
        si.nr_pages, si.pt_base, si.nr_pt_frames, stats
    );
    let region_end = (guest_shim::pt::bootstrap_region().end - guest_shim::notes::VIRT_BASE) / 4096;
    t.check(
        "pool-init",
        Outcome::ensure(
            stats.first >= (si.pt_base - guest_shim::notes::VIRT_BASE) / 4096 + si.nr_pt_frames
                && stats.mapped_end == region_end
                && stats.free > 64,
            format_args!("{stats:?}, region ends at pfn {region_end:#x}"),
        ),
    );
    let max_ram_page = need(&mut t, "maximum-ram-page", xen.maximum_ram_page());
    // A frame Xen owns and shares read-only with dom0; without the list (not Xen), the
    // last frame of RAM stands in (some frame that is not ours).
    let xen_frame = match machphys_mfn_list(&xen) {
        Ok((frames, _)) => frames[0],
        Err(e) => {
            println!("mmu-tables: XENMEM_machphys_mfn_list: {e}; using frame {:#x}", max_ram_page - 1);
            max_ram_page - 1
        }
    };
    let mut env = Env { t, xen, si, xen_frame, max_ram_page };

    pool(&mut env);
    process(&mut env);
    fork(&mut env);
    pages(&mut env);
    memory(&mut env);
    conservation(&mut env);
    // Last: a hypervisor that accepts what Xen refuses may not survive it.
    refusals(&mut env);
    let s = mmu::stats();
    env.t.check("pool-nothing-leaked", Outcome::ensure(s.in_use == 0, format_args!("{s:?}")));
    env.t.finish()
}

// ---- Helpers ----

/// A check that a batch stopped with `want` after `done` requests.
fn expect_batch(r: Batch, want: Errno, done: u32) -> Outcome {
    let expected = BatchError { errno: want, done };
    match r {
        Err(e) if e == expected => Outcome::Pass,
        Err(e) => Outcome::fail(format_args!("got {e}, expected {expected}")),
        Ok(n) => Outcome::fail(format_args!("succeeded ({n} done), expected {expected}")),
    }
}

/// A result a section needs: on error the check fails and the section ends (`None`).
fn want<T, E: core::fmt::Display>(t: &mut Tests, name: &str, r: Result<T, E>) -> Option<T> {
    r.map_err(|e| t.fail(name, e)).ok()
}

/// The value word `i` of a page tagged `tag` holds.
const fn word(tag: u64, i: usize) -> u64 {
    tag << 32 | i as u64
}

/// Fills `page` (mapped writable) with `tag`'s words.
fn fill(page: &Page, tag: u64) {
    let p = page.va() as *mut u64;
    for i in 0..512 {
        // SAFETY: the page is ours, from the pool, mapped writable; no Rust object
        // lives there.
        unsafe { p.add(i).write_volatile(word(tag, i)) };
    }
}

/// What an access that raised an exception got (a `Trap` is too big to pass around).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fault {
    vector: u8,
    error_code: u64,
    cr2: u64,
}

impl From<Trap> for Fault {
    fn from(t: Trap) -> Self {
        Self { vector: t.vector(), error_code: t.error_code(), cr2: t.cr2 }
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} error {:#x} cr2 {:#x}", traps::name(self.vector as u64), self.error_code, self.cr2)
    }
}

/// Word `i` of the page at `va`, or the exception reading it raised.
fn peek(va: u64, i: usize) -> Result<u64, Fault> {
    // SAFETY: a read has no side effect; if `va` is not mapped the #PF ends the closure.
    unsafe { traps::catch(|| (va as *const u64).add(i).read_volatile()) }.map_err(Fault::from)
}

/// Writes word `i` of the page at `va`, or returns the exception it raised.
fn poke(va: u64, i: usize, v: u64) -> Result<(), Fault> {
    // SAFETY: callers only write test pages they own (or expect the write to fault).
    unsafe { traps::catch(|| (va as *mut u64).add(i).write_volatile(v)) }.map_err(Fault::from)
}

/// Whether the page at `va` holds `tag`'s words 0 and 511.
fn holds(va: u64, tag: u64) -> Outcome {
    match (peek(va, 0), peek(va, 511)) {
        (Ok(a), Ok(b)) if a == word(tag, 0) && b == word(tag, 511) => Outcome::Pass,
        (Ok(a), Ok(b)) => Outcome::fail(format_args!("{va:#x} holds {a:#x}..{b:#x}, expected tag {tag:#x}")),
        (Err(e), _) | (_, Err(e)) => Outcome::fail(format_args!("reading {va:#x}: {e}")),
    }
}

/// Whether reading `va` raises a #PF.
fn faults(va: u64) -> Outcome {
    match peek(va, 0) {
        Err(f) if f.vector == vector::PF && f.cr2 == va => Outcome::Pass,
        Err(f) => Outcome::fail(f),
        Ok(v) => Outcome::fail(format_args!("{va:#x} is readable ({v:#x})")),
    }
}

/// Whether the kernel mapping of `page` is read-only (present, RW clear).
fn kernel_readonly(page: &Page) -> Outcome {
    match mmu::lookup(page.va()).pte() {
        Some(pte) if pte & PTE_RW == 0 => Outcome::Pass,
        r => Outcome::fail(format_args!("pfn {:#x} maps as {r:#x?}", page.pfn)),
    }
}

/// Allocates a page or ends the run.
fn page(t: &mut Tests, name: &str) -> Page {
    need(t, name, mmu::alloc())
}

/// A data page from the pool filled with `tag`.
fn data_page(t: &mut Tests, tag: u64) -> Page {
    let p = page(t, "alloc-data-page");
    fill(&p, tag);
    p
}

/// Gives `page` back, failing `name` if the pool refuses.
fn give_back(t: &mut Tests, name: &str, page: Page) {
    // SAFETY: callers are done with the page.
    if let Err(e) = unsafe { mmu::free(page) } {
        t.fail(name, format_args!("free of pfn {:#x}: {e}", page.pfn));
    }
}

/// The L1 index of `va`.
const fn l1_index(va: u64) -> usize {
    ((va >> 12) & 511) as usize
}

/// The `XENMEM_machphys_mfn_list` extents (up to 64) and their count.
fn machphys_mfn_list(xen: &Hypercalls) -> Result<([u64; 64], u32), Errno> {
    let mut frames = [0u64; 64];
    let mut arg = XenMachphysMfnList {
        max_extents: frames.len() as u32,
        extent_start: GuestHandle::from_ptr(frames.as_mut_ptr()),
        ..Default::default()
    };
    // SAFETY: the hypervisor writes at most `max_extents` MFNs into `frames`.
    unsafe { xen.memory_op(XENMEM_MACHPHYS_MFN_LIST, &mut arg) }?;
    if arg.nr_extents == 0 {
        return Err(Errno::ENOENT);
    }
    Ok((frames, arg.nr_extents))
}

/// Switches the kernel to `l4`, runs `f`, and switches back to the start-of-day tables.
fn on_tables<R>(l4: u64, f: impl FnOnce() -> R) -> Result<R, Errno> {
    // SAFETY: every tree switched to here was made with `Tree::new(true)`: it maps the
    // kernel half exactly as the start-of-day L4 does.
    unsafe { mmu::new_baseptr(l4) }?;
    let r = f();
    // SAFETY: back to the start-of-day tables the guest started on.
    unsafe { mmu::new_baseptr(mmu::bootstrap_l4().mfn) }?;
    Ok(r)
}

// ---- The page pool ----

fn pool(env: &mut Env) {
    let t = &mut env.t;
    let before = mmu::stats();
    let a = page(t, "pool-alloc");
    let b = page(t, "pool-alloc");
    fill(&a, 0xa);
    let ok = [
        Outcome::ensure(a.pfn != b.pfn && a.mfn != b.mfn, format_args!("{a:?} {b:?}")),
        Outcome::eq(mmu::pfn_to_mfn(a.pfn), Some(a.mfn)),
        Outcome::eq(mmu::mfn_to_pfn(b.mfn), Some(b.pfn)),
        Outcome::eq(peek(b.va(), 100).ok(), Some(0)),
        holds(a.va(), 0xa),
        Outcome::eq(mmu::stats().in_use, before.in_use + 2),
    ];
    t.check("pool-alloc", all(ok));
    give_back(t, "pool-free", a);
    give_back(t, "pool-free", b);
    t.check("pool-free", Outcome::eq(mmu::stats(), before));
    // SAFETY: the pool refuses a page it does not have out.
    t.check("pool-double-free", expect_err(unsafe { mmu::free(a) }, Errno::EINVAL));

    // Past the bootstrap region: the pool maps its next 2 MiB with an L1 of its own.
    let mut taken = [0u64; 2048];
    let mut n = 0;
    let mut beyond = None;
    while n < taken.len() {
        let Ok(p) = mmu::alloc() else { break };
        taken[n] = p.pfn;
        n += 1;
        if p.pfn >= before.mapped_end {
            beyond = Some(p);
            break;
        }
    }
    let outcome = match beyond {
        Some(p) => {
            fill(&p, 0xb);
            let s = mmu::stats();
            all([
                holds(p.va(), 0xb),
                Outcome::eq(
                    mmu::lookup(p.va()).pte().map(|e| e & (PTE_ADDR_MASK | PTE_RW)),
                    Some(p.pte(PTE_RW)),
                ),
                Outcome::ensure(
                    s.map_tables == before.map_tables + 1 && s.mapped_end >= before.mapped_end + 512,
                    format_args!("{s:?}"),
                ),
            ])
        }
        None if n == taken.len() => {
            Outcome::skip(format_args!("more than {n} free pages before pfn {:#x}", before.mapped_end))
        }
        None => Outcome::fail(format_args!("no page past pfn {:#x} after {n}", before.mapped_end)),
    };
    t.check("pool-beyond-region", outcome);
    for &pfn in &taken[..n] {
        give_back(t, "pool-beyond-region-free", Page { pfn, mfn: 0 });
    }
    let after = mmu::stats();
    t.check(
        "pool-beyond-region-free",
        Outcome::ensure(
            after.in_use == before.in_use && after.free + after.map_tables == before.free + before.map_tables,
            format_args!("{after:?} vs {before:?}"),
        ),
    );
}

// ---- A process-like address space ----

fn process(env: &mut Env) {
    let t = &mut env.t;
    let data: [Page; 4] = core::array::from_fn(|i| data_page(t, 0x10 + i as u64));
    let Some(mut tree) = want(t, "tree-new", Tree::<16>::new(true)) else { return };
    t.check("tree-new", kernel_readonly(&tree.l4()));
    let mapped = (0..4).try_for_each(|i| {
        // SAFETY: the tree is not in use.
        unsafe { tree.map(USER_VA + i as u64 * 4096, data[i].pte(USER_RW)) }
    });
    if want(t, "tree-map-user", mapped).is_none() {
        return;
    }
    let [l3, l2, l1] = [tree.tables()[0], tree.tables()[1], tree.tables()[2]];
    t.check(
        "tree-map-user",
        all([
            Outcome::eq(tree.tables().len(), 3),
            kernel_readonly(&l3),
            kernel_readonly(&l1),
            Outcome::eq(tree.walk(USER_VA + 4096).pte().map(|e| e & PTE_ADDR_MASK), Some(data[1].maddr())),
        ]),
    );
    t.check("pin-l4", tree.pin());
    t.check("pinned-table-writable-uvm", expect_err(mmu::make_writable(&l1), Errno::EBUSY));
    t.check("double-pin", expect_err(mmu::pin(Level::L4, tree.l4().mfn), Errno::EINVAL));
    t.check("pin-wrong-level", expect_err(mmu::pin(Level::L2, l1.mfn), Errno::EINVAL));
    t.check("pin-table-inside-pinned-tree", mmu::pin(Level::L1, l1.mfn).and_then(|()| mmu::unpin(l1.mfn)));

    // Run on the tree: the user pages are there, the kernel still runs.
    let seen = on_tables(tree.l4().mfn, || {
        let reads = all((0..4).map(|i| holds(USER_VA + i * 4096, 0x10 + i)));
        let write = poke(USER_VA + 4096, 7, 0x5eed);
        (reads, write, peek(MACH2PHYS_VIRT_START, 0).ok())
    });
    match seen {
        Ok((reads, write, m2p)) => {
            t.check("baseptr-switch-read", reads);
            // Xen puts the read-only M2P into an L4 that becomes the kernel's base.
            t.check("baseptr-m2p-mapped", Outcome::eq(m2p, peek(MACH2PHYS_VIRT_START, 0).ok()));
            t.check(
                "baseptr-switch-write",
                all([
                    Outcome::eq(write.ok(), Some(())),
                    Outcome::eq(peek(data[1].va(), 7).ok(), Some(0x5eed)),
                ]),
            );
        }
        Err(e) => t.fail("baseptr-switch-read", e),
    }
    t.check("baseptr-switched-back", faults(USER_VA));

    // Change entries of the pinned tree while it is in use.
    let slot = l1_index(USER_VA);
    let changed = on_tables(tree.l4().mfn, || {
        // SAFETY: the user address maps test pages only.
        let set = unsafe { mmu::set_entry(l1.mfn, slot, data[2].pte(USER_RW)) }
            .and_then(|()| mmu::invlpg_local(USER_VA));
        let read = holds(USER_VA, 0x12);
        // SAFETY: as above.
        let back = unsafe { mmu::set_entry(l1.mfn, slot, data[0].pte(USER_RW)) }
            .and_then(|()| mmu::invlpg_local(USER_VA));
        (set, read, back, holds(USER_VA, 0x10))
    });
    t.check(
        "mmu-update-in-use",
        match changed {
            Ok((set, read, back, reread)) => {
                all([Outcome::eq(set, Ok(())), read, Outcome::eq(back, Ok(())), reread])
            }
            Err(e) => Outcome::fail(e),
        },
    );

    // Accessed and dirty bits: the CPU set them; PRESERVE_AD keeps them.
    let ad = PTE_ACCESSED | PTE_DIRTY;
    let va = USER_VA + 2 * 4096;
    let touched = on_tables(tree.l4().mfn, || poke(va, 3, 3).is_ok());
    let slot = l1_index(va);
    let before = mmu::read_entry(l1.mfn, slot).unwrap_or(0);
    let bare = data[2].pte(PTE_PRESENT | PTE_RW | PTE_USER);
    // SAFETY: the tree is not in use.
    let kept = unsafe { mmu::set_entry_preserve_ad(l1.mfn, slot, bare) };
    let after_keep = mmu::read_entry(l1.mfn, slot).unwrap_or(0);
    // SAFETY: as above.
    let cleared = unsafe { mmu::set_entry(l1.mfn, slot, bare) };
    let after_clear = mmu::read_entry(l1.mfn, slot).unwrap_or(0);
    t.check(
        "preserve-ad",
        all([
            Outcome::eq(touched, Ok(true)),
            Outcome::ensure(before & ad == ad, format_args!("entry {before:#x} after a write lacks A/D")),
            Outcome::eq(kept, Ok(())),
            Outcome::eq(after_keep & (PTE_ADDR_MASK | ad), data[2].maddr() | ad),
            Outcome::eq(cleared, Ok(())),
            Outcome::eq(after_clear & (PTE_ADDR_MASK | ad), data[2].maddr()),
        ]),
    );

    // An unpinned L1 hooked into the pinned L2 is validated on the spot.
    let Some(new_l1) = want(t, "alloc-table", mmu::alloc_table()) else { return };
    // SAFETY: the new L1 is in no tree: this is a plain write into it.
    let raw = unsafe { mmu::set_entry(new_l1.mfn, l1_index(USER_VA2), data[3].pte(USER_RO)) };
    t.check(
        "mmu-update-untyped-table-plain-write",
        all([
            Outcome::eq(raw, Ok(())),
            Outcome::eq(peek(new_l1.va(), l1_index(USER_VA2)).ok(), Some(data[3].pte(USER_RO))),
        ]),
    );
    let l2_slot = ((USER_VA2 >> 21) & 511) as usize;
    // SAFETY: the tree is not in use; the new L1 maps a test page only.
    t.check("hook-unpinned-l1", unsafe { mmu::set_entry(l2.mfn, l2_slot, new_l1.pte(TABLE)) });
    t.check("hooked-l1-typed", expect_err(mmu::make_writable(&new_l1), Errno::EBUSY));
    t.check(
        "hooked-l1-read",
        on_tables(tree.l4().mfn, || holds(USER_VA2, 0x13)).unwrap_or_else(Outcome::fail),
    );
    // SAFETY: as above.
    let unhooked = unsafe { mmu::set_entry(l2.mfn, l2_slot, 0) };
    t.check("unhook-l1-untyped", unhooked.and_then(|()| mmu::make_writable(&new_l1)));
    give_back(t, "unhook-l1-untyped", new_l1);
    // A page still mapped writable cannot become an L1.
    let w = page(t, "alloc-page");
    // SAFETY: refused; and the tree is not in use.
    let r = unsafe { mmu::set_entry(l2.mfn, l2_slot, w.pte(TABLE)) };
    t.check("hook-writable-page-refused", expect_err(r, Errno::EINVAL));

    // The user base pointer takes a validated L4 and 0, not a writable page.
    // SAFETY: the guest never enters user mode.
    let user = unsafe { mmu::new_user_baseptr(tree.l4().mfn).and_then(|()| mmu::new_user_baseptr(0)) };
    t.check("user-baseptr", user);
    // SAFETY: as above; refused.
    t.check("user-baseptr-writable-page", expect_err(unsafe { mmu::new_user_baseptr(w.mfn) }, Errno::EINVAL));
    give_back(t, "alloc-page", w);

    // Teardown: unpinned, every table may be writable again.
    t.check("unpin-l4", tree.unpin());
    let writable =
        all(tree.tables().iter().chain([&tree.l4()]).map(|p| Outcome::eq(mmu::make_writable(p), Ok(()))));
    t.check("tables-writable-after-unpin", writable);
    t.check("tree-destroy", tree.destroy());
    for p in data {
        give_back(t, "tree-destroy", p);
    }
}

// ---- A fork ----

fn fork(env: &mut Env) {
    let t = &mut env.t;
    let private = [data_page(t, 0x20), data_page(t, 0x21)];
    let shared = data_page(t, 0x22);
    let Some(mut parent) = want(t, "fork-parent", Tree::<16>::new(true)) else { return };
    let built = (|| {
        for (i, p) in private.iter().enumerate() {
            // SAFETY: the tree is not in use.
            unsafe { parent.map(USER_VA + i as u64 * 4096, p.pte(USER_RW)) }?;
        }
        // SAFETY: as above.
        unsafe { parent.map(USER_VA + 2 * 4096, shared.pte(USER_RO)) }?;
        parent.pin()
    })();
    if want(t, "fork-parent", built).is_none() {
        return;
    }

    // Copy the user half: private pages copied, read-only ones shared.
    let Some(mut child) = want(t, "fork-child", Tree::<16>::new(true)) else { return };
    let mut leaves = [(0u64, 0u64); 8];
    let mut n = 0;
    parent.for_each_user_page(0..1 << 47, &mut |va, pte| {
        if n < leaves.len() {
            leaves[n] = (va, pte);
            n += 1;
        }
    });
    let mut copies = [None::<Page>; 8];
    let mut copied = Ok(());
    for (i, &(va, pte)) in leaves[..n].iter().enumerate() {
        let flags = pte & !PTE_ADDR_MASK & !(PTE_ACCESSED | PTE_DIRTY);
        let r = if pte & PTE_RW != 0 {
            mmu::alloc().and_then(|c| {
                copies[i] = Some(c);
                // SAFETY: `c` is a fresh pool page nothing refers to; the child is
                // not in use.
                unsafe {
                    mmu::copy_page(c.mfn, (pte & PTE_ADDR_MASK) >> 12)
                        .and_then(|()| child.map(va, c.pte(flags)))
                }
            })
        } else {
            // SAFETY: the child is not in use.
            unsafe { child.map(va, pte & PTE_ADDR_MASK | flags) }
        };
        copied = copied.and(r);
    }
    t.check(
        "fork-copy-user-half",
        all([Outcome::eq(n, 3), Outcome::eq(copied, Ok(())), Outcome::eq(child.tables().len(), 3)]),
    );
    t.check("fork-pin-both", child.pin());

    let in_parent = on_tables(parent.l4().mfn, || all((0..3).map(|i| holds(USER_VA + i * 4096, 0x20 + i))));
    t.check("fork-read-parent", in_parent.unwrap_or_else(Outcome::fail));
    let in_child = on_tables(child.l4().mfn, || {
        let reads = all((0..3).map(|i| holds(USER_VA + i * 4096, 0x20 + i)));
        let write = poke(USER_VA, 0, 0xc41d);
        let ro = poke(USER_VA + 2 * 4096, 0, 1);
        (reads, write, ro, peek(USER_VA, 0).ok())
    });
    match in_child {
        Ok((reads, write, ro, now)) => {
            t.check("fork-read-child", reads);
            t.check(
                "fork-child-write",
                all([Outcome::eq(write.ok(), Some(())), Outcome::eq(now, Some(0xc41d))]),
            );
            t.check(
                "fork-shared-read-only",
                match ro {
                    Err(e) if e.vector == vector::PF && e.error_code & 2 != 0 => Outcome::Pass,
                    r => Outcome::fail(format_args!("write to the shared page: {r:?}")),
                },
            );
        }
        Err(e) => t.fail("fork-read-child", e),
    }
    let parent_kept = on_tables(parent.l4().mfn, || holds(USER_VA, 0x20));
    t.check("fork-parent-unchanged", parent_kept.unwrap_or_else(Outcome::fail));
    let frame = |tree: &Tree, va| tree.walk(va).pte().map(|e| e & PTE_ADDR_MASK);
    t.check(
        "fork-frames",
        all([
            Outcome::eq(frame(&parent, USER_VA + 2 * 4096), frame(&child, USER_VA + 2 * 4096)),
            Outcome::ensure(
                frame(&parent, USER_VA) != frame(&child, USER_VA),
                "the private page is the same frame in both",
            ),
        ]),
    );
    t.check("fork-teardown", parent.destroy().and_then(|()| child.destroy()));
    for p in copies.into_iter().flatten().chain(private).chain([shared]) {
        give_back(t, "fork-teardown", p);
    }
}

// ---- Refusals ----

fn refusals(env: &mut Env) {
    let Env { t, xen_frame, max_ram_page, .. } = env;
    let (xen_frame, max_ram_page) = (*xen_frame, *max_ram_page);
    let d = data_page(t, 0x30);
    let w = page(t, "alloc-page");
    let Some(mut tree) = want(t, "refusals-tree", Tree::<16>::new(true)) else { return };
    // SAFETY: the tree is not in use.
    let built = unsafe { tree.map(USER_VA, d.pte(USER_RW)) }.and_then(|()| tree.pin());
    if want(t, "refusals-tree", built).is_none() {
        return;
    }
    let l1 = tree.tables()[2];
    let l3 = tree.tables()[0];
    let scratch = l1_index(SCRATCH_VA);
    let set_as = |val: u64, dom: DomId| {
        let req = pt_update(l1.entry_maddr(scratch), val);
        // SAFETY: the scratch slot of a tree not in use: nothing running sees it.
        unsafe { mmu::mmu_update(&[req], dom) }
    };
    let set = |val: u64| set_as(val, DOMID_SELF).map(drop).map_err(Errno::from);

    // Writable mappings of page tables.
    t.check(
        "map-table-rw-mmu-update",
        all([
            expect_err(set(l1.pte(USER_RW)), Errno::EBUSY),
            expect_err(set(tree.l4().pte(USER_RW)), Errno::EBUSY),
        ]),
    );
    t.check(
        "map-table-ro-allowed",
        all([Outcome::eq(set(l1.pte(USER_RO)), Ok(())), Outcome::eq(set(0), Ok(()))]),
    );
    t.check(
        "map-table-rw-update-va-mapping",
        all([
            expect_err(mmu::make_writable(&l1), Errno::EBUSY),
            expect_err(mmu::make_writable(&tree.l4()), Errno::EBUSY),
        ]),
    );

    // Frames the domain does not own or may not map.
    t.check("map-xen-frame", expect_err(set(xen_frame << 12 | USER_RO), Errno::EBUSY));
    t.check("map-xen-frame-domid-xen-ro", Outcome::eq(set_as(xen_frame << 12 | USER_RO, DOMID_XEN), Ok(1)));
    // The M2P's first frame holds M2P[0..512].
    let via_tree = on_tables(tree.l4().mfn, || [peek(SCRATCH_VA, 0).ok(), peek(SCRATCH_VA, 511).ok()]);
    let m2p = [peek(MACH2PHYS_VIRT_START, 0).ok(), peek(MACH2PHYS_VIRT_START, 511).ok()];
    t.check("map-xen-frame-domid-xen-read", Outcome::eq(via_tree.ok(), Some(m2p)));
    t.check(
        "map-xen-frame-domid-xen-rw",
        expect_batch(set_as(xen_frame << 12 | USER_RW, DOMID_XEN), Errno::EBUSY, 0),
    );
    t.check("map-clear", set(0));
    let mmio = max_ram_page + 0x1000;
    let r = set(mmio << 12 | USER_RO);
    let e = mmu::read_entry(l1.mfn, scratch).unwrap_or(0);
    t.check(
        "map-mmio-past-ram-uncached",
        all([Outcome::eq(r, Ok(())), Outcome::eq(e & (PTE_ADDR_MASK | 0x18), mmio << 12 | 0x18)]),
    );
    t.check("map-clear", set(0));
    t.check("map-beyond-address-width", expect_err(set(1 << 51 | USER_RO), Errno::EPERM));
    t.check("map-xen-invalid-mfn", expect_err(set(0xff_ffff_ffff << 12 | USER_RO), Errno::EINVAL));

    // Pins of writable pages and of tables with bad entries.
    t.check(
        "pin-writable-page",
        all([
            expect_err(mmu::pin(Level::L1, w.mfn), Errno::EINVAL),
            expect_err(mmu::pin(Level::L4, w.mfn), Errno::EINVAL),
        ]),
    );
    let Some(empty) = want(t, "alloc-table", mmu::alloc_table()) else { return };
    let bad_tables: [(&str, Level, u64, Errno); 7] = [
        ("pin-l1-maps-table-rw", Level::L1, l1.pte(USER_RW), Errno::EBUSY),
        ("pin-l1-address-beyond-width", Level::L1, 1 << 51 | USER_RO, Errno::EPERM),
        ("pin-l1-maps-xen-frame", Level::L1, xen_frame << 12 | USER_RO, Errno::EBUSY),
        ("pin-l2-superpage-bit", Level::L2, empty.pte(TABLE | PTE_PSE), Errno::EINVAL),
        ("pin-l2-cache-bits", Level::L2, empty.pte(TABLE | 0x10), Errno::EINVAL),
        ("pin-l2-to-writable-page", Level::L2, w.pte(TABLE), Errno::EINVAL),
        ("pin-l2-to-xen-frame", Level::L2, xen_frame << 12 | TABLE, Errno::EINVAL),
    ];
    for (name, level, entry, want) in bad_tables {
        let table = page(t, "alloc-page");
        // SAFETY: the page is ours and writable; no Rust object lives there.
        unsafe { (table.va() as *mut u64).add(5).write_volatile(entry) };
        let r = mmu::make_readonly(&table).and_then(|()| mmu::pin(level, table.mfn));
        if r.is_ok() {
            let _ = mmu::unpin(table.mfn);
        }
        t.check(name, expect_err(r, want));
        give_back(t, name, table);
    }
    t.check(
        "unpin-not-pinned",
        all([expect_err(mmu::unpin(w.mfn), Errno::EINVAL), expect_err(mmu::unpin(l1.mfn), Errno::EINVAL)]),
    );
    t.check("unpin-xen-frame", expect_err(mmu::unpin(xen_frame), Errno::EINVAL));
    t.check("pin-xen-frame", expect_err(mmu::pin(Level::L1, xen_frame), Errno::EINVAL));

    // Xen fills its slots of an L4 it validates, whatever was there.
    let l4 = page(t, "alloc-page");
    let junk = empty.pte(TABLE);
    // SAFETY: as above.
    unsafe { (l4.va() as *mut u64).add(260).write_volatile(junk) };
    let pinned = mmu::make_readonly(&l4).and_then(|()| mmu::pin(Level::L4, l4.mfn));
    let slot260 = mmu::read_entry(l4.mfn, 260);
    t.check(
        "pin-l4-xen-slots-overwritten",
        all([
            Outcome::eq(pinned, Ok(())),
            Outcome::ensure(slot260 != Some(junk), format_args!("slot 260 kept {junk:#x}")),
        ]),
    );
    let _ = mmu::unpin(l4.mfn);
    give_back(t, "pin-l4-xen-slots-overwritten", l4);

    // Base pointers that are no L4.
    let not_l4: [(&str, u64); 3] = [("writable-page", w.mfn), ("l3", l3.mfn), ("xen-frame", xen_frame)];
    for (what, mfn) in not_l4 {
        // SAFETY: each is refused, so the tables stay as they are.
        let r = unsafe { mmu::new_baseptr(mfn) };
        t.check(concat_name("baseptr-", what).as_str(), expect_err(r, Errno::EINVAL));
    }

    // mmu_update pointers.
    // SAFETY: `w` is a plain page of ours: the update writes its word 7.
    let plain = unsafe { mmu::set_entry(w.mfn, 7, 0xdead_beef) };
    t.check(
        "mmu-update-non-table-plain-write",
        all([Outcome::eq(plain, Ok(())), Outcome::eq(peek(w.va(), 7).ok(), Some(0xdead_beef))]),
    );
    // SAFETY: refused.
    t.check(
        "mmu-update-ptr-xen-frame",
        expect_err(unsafe { mmu::set_entry(xen_frame, 0, 0) }, Errno::EINVAL),
    );
    // SAFETY: refused.
    let past = unsafe { mmu::set_entry(max_ram_page + 0x100, 0, 0) };
    t.check("mmu-update-ptr-past-ram", expect_err(past, Errno::EINVAL));
    let l4m = tree.l4().mfn;
    // SAFETY: slots 255 and 272 of the tree are empty and stay so; 256/271 are refused.
    let slots = unsafe {
        [
            mmu::set_entry(l4m, 256, 0),
            mmu::set_entry(l4m, 271, 0),
            mmu::set_entry(l4m, 255, 0),
            mmu::set_entry(l4m, 272, 0),
        ]
    };
    t.check(
        "mmu-update-xen-l4-slots",
        all([
            expect_err(slots[0], Errno::EINVAL),
            expect_err(slots[1], Errno::EINVAL),
            Outcome::eq(slots[2], Ok(())),
            Outcome::eq(slots[3], Ok(())),
        ]),
    );
    let entry = l1.entry_maddr(scratch);
    let bad_cmds = (4..8u64).map(|cmd| {
        let req = MmuUpdate { ptr: entry | cmd, val: 0 };
        // SAFETY: refused.
        expect_batch(unsafe { mmu::mmu_update(&[req], DOMID_SELF) }, Errno::ENOSYS, 0)
    });
    t.check("mmu-update-cmd-4-to-7", all(bad_cmds));
    let req = MmuUpdate { ptr: entry | 3, val: d.pte(USER_RO) };
    // SAFETY: the tree is not in use.
    let r = unsafe { mmu::mmu_update(&[req], DOMID_SELF) };
    t.check(
        "mmu-update-cmd-3-normal-for-pv",
        all([
            Outcome::eq(r, Ok(1)),
            Outcome::eq(mmu::read_entry(l1.mfn, scratch).map(|e| e & PTE_ADDR_MASK), Some(d.maddr())),
            Outcome::eq(set(0), Ok(())),
        ]),
    );

    // Unreadable request arrays and `done`.
    let mut done = 0xdead_u32;
    // SAFETY: the array is in the hypervisor's hole: refused before anything is read.
    let r = unsafe { mmu::mmu_update_raw(HOLE, 1, &mut done, DOMID_SELF as u32) };
    t.check(
        "mmu-update-efault-hole",
        all([Outcome::eq(Errno::check(r), Err(Errno::EFAULT)), Outcome::eq(done, 0xdead)]),
    );
    done = 0xdead;
    // SAFETY: as above.
    let r = unsafe { mmu::mmuext_op_raw(HOLE, 1, &mut done, DOMID_SELF as u32) };
    t.check(
        "mmuext-efault-hole",
        all([Outcome::eq(Errno::check(r), Err(Errno::EFAULT)), Outcome::eq(done, 0xdead)]),
    );
    efault_across_pages(t, &l1, &d);
    let reqs = [
        pt_update(l1.entry_maddr(scratch), d.pte(USER_RO)),
        pt_update(l1.entry_maddr(scratch + 1), d.pte(USER_RO)),
        pt_update(tree.l4().entry_maddr(256), 0),
        pt_update(l1.entry_maddr(scratch + 2), d.pte(USER_RO)),
    ];
    // SAFETY: the tree is not in use; the entries map a test page read-only.
    let r = unsafe { mmu::mmu_update(&reqs, DOMID_SELF) };
    let present = |i: usize| mmu::read_entry(l1.mfn, scratch + i).map(|e| e & PTE_PRESENT != 0);
    t.check(
        "mmu-update-partial-done",
        all([
            expect_batch(r, Errno::EINVAL, 2),
            Outcome::eq([present(0), present(1), present(2)], [Some(true), Some(true), Some(false)]),
        ]),
    );
    let clear = [pt_update(l1.entry_maddr(scratch), 0), pt_update(l1.entry_maddr(scratch + 1), 0)];
    // SAFETY: as above.
    t.check("mmu-update-batch", Outcome::eq(unsafe { mmu::mmu_update(&clear, DOMID_SELF) }, Ok(2)));
    let ops = [
        MmuextOp::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        MmuextOp::new(MMUEXT_UNPIN_TABLE, w.mfn, 0),
        MmuextOp::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
    ];
    // SAFETY: flushes and a refused unpin.
    t.check(
        "mmuext-partial-done",
        expect_batch(unsafe { mmu::mmuext_op(&ops, DOMID_SELF) }, Errno::EINVAL, 1),
    );
    let bad = [
        (14u32, Errno::ENOSYS),
        (21, Errno::ENOSYS),
        (0xffff_ffff, Errno::ENOSYS),
        (19, Errno::EOPNOTSUPP),
        (20, Errno::EOPNOTSUPP),
    ];
    let bad = bad.map(|(cmd, want)| {
        // SAFETY: unknown or unsupported commands do nothing.
        expect_batch(unsafe { mmu::mmuext_op(&[MmuextOp::new(cmd, 0, 0)], DOMID_SELF) }, want, 0)
    });
    t.check("mmuext-bad-cmd", all(bad));
    let flushes = [
        MmuextOp::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        MmuextOp::new(MMUEXT_TLB_FLUSH_ALL, 0, 0),
        MmuextOp::new(MMUEXT_INVLPG_LOCAL, USER_VA, 0),
        MmuextOp::new(MMUEXT_INVLPG_ALL, USER_VA, 0),
    ];
    // SAFETY: flushes change no mapping.
    t.check("mmuext-flushes", Outcome::eq(unsafe { mmu::mmuext_op(&flushes, DOMID_SELF) }, Ok(4)));

    // Foreign domains.
    let harmless = [pt_update(l1.entry_maddr(scratch), 0)];
    let flush = [MmuextOp::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)];
    // SAFETY: each is refused (or writes an empty entry that is empty).
    let foreign = unsafe {
        [
            mmu::mmu_update(&harmless, OWN_DOMID),
            mmu::mmu_update(&harmless, NO_SUCH_DOMID),
            mmu::mmuext_op(&flush, OWN_DOMID),
            mmu::mmuext_op(&flush, NO_SUCH_DOMID),
        ]
    };
    t.check(
        "foreign-own-domid",
        all([expect_batch(foreign[0], Errno::ESRCH, 0), expect_batch(foreign[2], Errno::ESRCH, 0)]),
    );
    t.check(
        "foreign-unknown-domid",
        all([expect_batch(foreign[1], Errno::ESRCH, 0), expect_batch(foreign[3], Errno::ESRCH, 0)]),
    );
    // SAFETY: flushes of our own TLB through DOMID_XEN are refused.
    let r = unsafe { mmu::mmuext_op(&flush, DOMID_XEN) };
    t.check("mmuext-flush-domid-xen", expect_batch(r, Errno::EPERM, 0));

    t.check("refusals-teardown", tree.destroy());
    give_back(t, "refusals-teardown", empty);
    give_back(t, "refusals-teardown", w);
    give_back(t, "refusals-teardown", d);
}

/// `name` + `what` as one test name.
fn concat_name(name: &str, what: &str) -> guest_shim::report::FixedStr<64> {
    guest_shim::report::FixedStr::format(format_args!("{name}{what}"))
}

/// A request array that runs from a mapped page into an unmapped one: the first
/// request is done, the second faults.
fn efault_across_pages(t: &mut Tests, l1: &Page, d: &Page) {
    let a = page(t, "alloc-page");
    let b = page(t, "alloc-page");
    if b.pfn != a.pfn + 1 {
        t.skip(
            "mmu-update-efault-unmapped",
            format_args!("pages {:#x} and {:#x} are not adjacent", a.pfn, b.pfn),
        );
    } else {
        let req = pt_update(l1.entry_maddr(l1_index(SCRATCH_VA)), d.pte(USER_RO));
        let at = a.va() + 4096 - 16;
        // SAFETY: the last 16 bytes of `a` are ours; `MmuUpdate` is two u64s.
        unsafe { (at as *mut MmuUpdate).write_volatile(req) };
        let mut done = 0xdead_u32;
        // SAFETY: nothing uses `b` until it is mapped again below; the first request
        // maps a test page in a tree not in use.
        let r = unsafe { mmu::unmap(&b).map(|()| mmu::mmu_update_raw(at, 2, &mut done, DOMID_SELF as u32)) };
        let mapped = mmu::read_entry(l1.mfn, l1_index(SCRATCH_VA)).map(|e| e & PTE_ADDR_MASK);
        t.check(
            "mmu-update-efault-unmapped",
            all([
                Outcome::eq(r.map(Errno::check), Ok(Err(Errno::EFAULT))),
                Outcome::eq(done, 1),
                Outcome::eq(mapped, Some(d.maddr())),
            ]),
        );
        // SAFETY: the tree is not in use.
        let _ = unsafe { mmu::set_entry(l1.mfn, l1_index(SCRATCH_VA), 0) };
    }
    give_back(t, "mmu-update-efault-unmapped", a);
    give_back(t, "mmu-update-efault-unmapped", b);
}

// ---- Page operations ----

fn pages(env: &mut Env) {
    let Env { t, xen_frame, .. } = env;
    let xen_frame = *xen_frame;
    let a = data_page(t, 0x40);
    let b = data_page(t, 0x41);
    // SAFETY: `b` is a test page; no Rust object lives there.
    let r = unsafe { mmu::copy_page(b.mfn, a.mfn) };
    t.check("copy-page", all([Outcome::eq(r, Ok(())), holds(b.va(), 0x40)]));
    // SAFETY: as above.
    let r = unsafe { mmu::clear_page(b.mfn) };
    t.check(
        "clear-page",
        all([
            Outcome::eq(r, Ok(())),
            Outcome::eq([peek(b.va(), 0).ok(), peek(b.va(), 511).ok()], [Some(0); 2]),
        ]),
    );
    let Some(table) = want(t, "alloc-table", mmu::alloc_table()) else { return };
    let pinned = mmu::pin(Level::L1, table.mfn);
    t.check("pin-empty-l1", pinned);
    // SAFETY: each is refused: the destination is a page table or not ours.
    let refused = unsafe {
        [
            mmu::clear_page(table.mfn),
            mmu::copy_page(table.mfn, a.mfn),
            mmu::clear_page(xen_frame),
            mmu::copy_page(b.mfn, xen_frame),
        ]
    };
    t.check("clear-page-table", expect_err(refused[0], Errno::EINVAL));
    t.check("copy-page-to-table", expect_err(refused[1], Errno::EINVAL));
    t.check("clear-page-xen-frame", expect_err(refused[2], Errno::EINVAL));
    t.check("copy-page-from-xen-frame", expect_err(refused[3], Errno::EINVAL));
    // SAFETY: `b` is a test page.
    let r = unsafe { mmu::copy_page(b.mfn, table.mfn) };
    t.check(
        "copy-page-from-table",
        all([Outcome::eq(r, Ok(())), Outcome::eq(peek(b.va(), 0).ok(), Some(0))]),
    );
    t.check("unpin-l1", mmu::unpin(table.mfn));
    give_back(t, "unpin-l1", table);

    // The M2P entry of one of our frames.
    // SAFETY: `a`'s entry is restored right after; nothing walks `a` as a table.
    let r = unsafe { mmu::set_m2p(a.mfn, 0x12345) };
    let seen = mmu::mfn_to_pfn(a.mfn);
    // SAFETY: restores the entry.
    let back = unsafe { mmu::set_m2p(a.mfn, a.pfn) };
    t.check(
        "machphys-update",
        all([
            Outcome::eq(r, Ok(())),
            Outcome::eq(seen, Some(0x12345)),
            Outcome::eq(back, Ok(())),
            Outcome::eq(mmu::mfn_to_pfn(a.mfn), Some(a.pfn)),
        ]),
    );
    // SAFETY: refused.
    t.check("machphys-update-xen-frame", expect_err(unsafe { mmu::set_m2p(xen_frame, 0) }, Errno::EINVAL));
    give_back(t, "pages-teardown", a);
    give_back(t, "pages-teardown", b);
}

// ---- memory_op ----

fn memory(env: &mut Env) {
    let Env { t, xen, si, xen_frame, max_ram_page } = env;
    let (xen, xen_frame, max_ram_page) = (*xen, *xen_frame, *max_ram_page);
    let current = xen.memory_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF);
    let maximum = xen.memory_query(XENMEM_MAXIMUM_RESERVATION, DOMID_SELF);
    println!("mmu-tables: current {current:?} maximum {maximum:?} maximum_ram_page {max_ram_page:#x}");
    t.check("current-reservation", Outcome::ok_eq(current, si.nr_pages));
    t.check(
        "maximum-reservation",
        Outcome::ensure(
            matches!((maximum, current), (Ok(m), Ok(c)) if m >= c),
            format_args!("{maximum:?} < {current:?}"),
        ),
    );
    t.check(
        "reservation-unknown-domain",
        expect_err(xen.memory_query(XENMEM_CURRENT_RESERVATION, NO_SUCH_DOMID), Errno::ESRCH),
    );
    let top = (0..si.nr_pages).filter_map(mmu::pfn_to_mfn).max().unwrap_or(0);
    t.check("maximum-ram-page", Outcome::ensure(top < max_ram_page, format_args!("mfn {top:#x}")));
    let mapping = xen.machphys_mapping();
    t.check(
        "machphys-mapping",
        match mapping {
            Ok(m) => Outcome::ensure(
                m.v_start == MACH2PHYS_VIRT_START && m.v_end > m.v_start && m.max_mfn >= top,
                format_args!("{m:x?}"),
            ),
            Err(e) => Outcome::fail(e),
        },
    );
    let list = machphys_mfn_list(&xen);
    t.check(
        "machphys-mfn-list",
        match list {
            // One M2P entry per MFN, 2 MiB (2^18 entries) per extent.
            Ok((frames, n)) => Outcome::ensure(
                frames[0] == xen_frame
                    && frames[..n as usize].iter().all(|&f| f != 0)
                    && (n as u64) << 18 > top,
                format_args!("{n} extents {:#x?}", &frames[..(n as usize).min(4)]),
            ),
            Err(e) => Outcome::fail(e),
        },
    );
    let mut buf = [0u8; 20 * 32];
    t.check("memory-map-pv-dom0", expect_err(xen.memory_map(&mut buf), Errno::ENOSYS));
    let r = xen.machine_memory_map(&mut buf);
    t.check("machine-memory-map", Outcome::ensure(matches!(r, Ok(n) if n >= 1), format_args!("{r:?}")));
    let mut foreign = [xen_frame];
    // SAFETY: refused: the frame is not ours.
    let r = unsafe { xen.memory_reservation(XENMEM_DECREASE_RESERVATION, &mut foreign, 0, 0, DOMID_SELF) };
    t.check("decrease-xen-frame", Outcome::eq(r, Ok(0)));
    balloon(t, &xen);
}

/// Gives a few pages back and gets frames for the same pfns again.
fn balloon(t: &mut Tests, xen: &Hypercalls) {
    let before = xen.memory_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF).unwrap_or(0);
    let free_before = xen.sysctl_physinfo().map(|p| p.free_pages);
    let pages: [Page; BALLOON] = core::array::from_fn(|_| page(t, "alloc-page"));
    let mut frames = pages.map(|p| p.mfn);
    let unmapped = pages.iter().try_for_each(|p| {
        // SAFETY: the pages are ours and unused; they are mapped again below.
        unsafe { mmu::unmap(p) }
    });
    if want(t, "balloon-unmap", unmapped).is_none() {
        return;
    }
    // SAFETY: the frames are mapped nowhere and nothing uses them.
    let r = unsafe { xen.memory_reservation(XENMEM_DECREASE_RESERVATION, &mut frames, 0, 0, DOMID_SELF) };
    let down = xen.memory_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF).unwrap_or(0);
    let free_down = xen.sysctl_physinfo().map(|p| p.free_pages);
    println!(
        "mmu-tables: balloon: reservation {before} -> {down}, free_pages {free_before:?} -> {free_down:?}"
    );
    t.check(
        "balloon-down",
        all([Outcome::eq(r, Ok(BALLOON as u64)), Outcome::eq(down, before - BALLOON as u64)]),
    );
    // Freed frames count as free at once, scrubbed or not.
    t.check("balloon-down-free-pages", same_free_pages(free_down, free_before, BALLOON as u64));
    for p in &pages {
        // SAFETY: the pfn has no frame now.
        let _ = unsafe { mmu::set_p2m(p.pfn, mmu::INVALID_MFN) };
    }
    // A frame given back belongs to nobody: it cannot be mapped.
    // SAFETY: refused (or undone below if not).
    let r = unsafe { mmu::set_kernel_pte(pages[0].va(), pages[0].mfn << 12 | KERNEL_RO) };
    if r.is_ok() {
        // SAFETY: the page is not ours; unmap it again.
        let _ = unsafe { mmu::unmap(&pages[0]) };
    }
    t.check("map-freed-frame", expect_err(r, Errno::EBUSY));

    let mut pfns = pages.map(|p| p.pfn);
    // SAFETY: the pfns have no frame; the new ones are written into `pfns`.
    let r = unsafe { xen.memory_reservation(XENMEM_POPULATE_PHYSMAP, &mut pfns, 0, 0, DOMID_SELF) };
    let up = xen.memory_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF).unwrap_or(0);
    t.check("balloon-up", all([Outcome::eq(r, Ok(BALLOON as u64)), Outcome::eq(up, before)]));
    let mut m2p = Outcome::Pass;
    let mut usable = Outcome::Pass;
    for (p, &mfn) in pages.iter().zip(&pfns) {
        if r != Ok(BALLOON as u64) {
            break;
        }
        if m2p.passed() && mmu::mfn_to_pfn(mfn) != Some(p.pfn) {
            m2p = Outcome::fail(format_args!(
                "M2P[{mfn:#x}] = {:#x?}, expected {:#x}",
                mmu::mfn_to_pfn(mfn),
                p.pfn
            ));
        }
        // SAFETY: `mfn` is the pfn's new frame, as Xen just said.
        let _ = unsafe { mmu::set_p2m(p.pfn, mfn) };
        let fresh = Page { pfn: p.pfn, mfn };
        let ok = mmu::make_writable(&fresh).map(|()| fill(&fresh, 0x50));
        if usable.passed() {
            usable = all([Outcome::eq(ok, Ok(())), holds(fresh.va(), 0x50)]);
        }
    }
    t.check("populate-physmap-m2p", m2p);
    t.check("populate-physmap-usable", usable);
    for p in pages {
        give_back(t, "balloon-teardown", p);
    }
    let free_after = xen.sysctl_physinfo().map(|p| p.free_pages);
    println!("mmu-tables: balloon: free_pages after {free_after:?}");
    t.check("balloon-free-pages-restored", same_free_pages(free_after, free_before, 0));
}

/// Whether the host's free pages are now `then + more` (both read without error).
fn same_free_pages(now: Result<u64, Errno>, then: Result<u64, Errno>, more: u64) -> Outcome {
    match (now, then) {
        (Ok(now), Ok(then)) => Outcome::eq(now, then + more),
        (Err(e), _) | (_, Err(e)) => Outcome::fail(format_args!("XEN_SYSCTL_physinfo: {e}")),
    }
}

// ---- Conservation ----

fn conservation(env: &mut Env) {
    let Env { t, xen, .. } = env;
    let d = data_page(t, 0x60);
    let cycle = || -> Result<(), Errno> {
        let mut tree: Tree<4> = Tree::new(false)?;
        // SAFETY: the tree is never used as page tables.
        unsafe { tree.map(USER_VA, d.pte(USER_RW)) }?;
        tree.pin()?;
        tree.unpin()?;
        tree.destroy()
    };
    if want(t, "trees-warm-up", cycle()).is_none() {
        return;
    }
    let pool_before = mmu::stats();
    let res_before = xen.memory_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF);
    let free_before = xen.sysctl_physinfo().map(|p| p.free_pages);
    let mut built = 0;
    let mut failure = None;
    for _ in 0..TREES {
        match cycle() {
            Ok(()) => built += 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let free_after = xen.sysctl_physinfo().map(|p| p.free_pages);
    println!("mmu-tables: {built} trees, free_pages {free_before:?} -> {free_after:?}");
    t.check("trees-built", Outcome::ensure(built == TREES, format_args!("{built} trees, then {failure:?}")));
    t.check("trees-pool-conserved", Outcome::eq(mmu::stats(), pool_before));
    t.check(
        "trees-reservation-unchanged",
        Outcome::eq(xen.memory_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF), res_before),
    );
    t.check("trees-free-pages-unchanged", same_free_pages(free_after, free_before, 0));
    give_back(t, "trees-teardown", d);
}

// On the host (`cargo test --workspace`) the guest is an empty program.
#[cfg(not(target_os = "none"))]
fn main() {}
