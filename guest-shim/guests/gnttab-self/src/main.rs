// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: grant tables v1 within one domain. Running as dom0, the guest grants its
//! own frames to itself (domid 0) and maps, unmaps, copies and transfers them through
//! `HYPERVISOR_grant_table_op`. One `RESULT` line per check, then `SUMMARY` and poweroff.
//!
//! Two kinds of result are checked separately: the hypercall's own return value (an
//! errno such as -EINVAL, -EFAULT, -ESRCH or -ENOSYS when the call as a whole is
//! refused, else 0) and the per-operation `GNTST_*` code Xen writes into each
//! structure's `status` (batches: every entry gets its own, the call still returns 0).
//!
//! What is checked, against what Xen 4.17 does (`common/grant_table.c`,
//! `arch/x86/pv/grant_table.c`, `public/grant_table.h`):
//! - `query_size` (dom0 starts with 1 frame of at most 64), `get_version`,
//!   `set_version` (1: no-op; 2: switches, with a status frame, and back; 0 or 3:
//!   -EINVAL with the version in use written back; -EBUSY while a grant is mapped),
//!   `get_status_frames` on v1 (`GNTST_general_error` for one frame, fine for none),
//!   counts other than 1 (-EINVAL);
//! - `setup_table`: the table's frames for `DOMID_SELF` and for our id 0, growing the
//!   table to 2 frames (frame 0 stays), more frames than the limit
//!   (`GNTST_general_error`), another domain and `DOMID_XEN` (`GNTST_bad_domain`), a
//!   frame list in Xen's hole (-EFAULT from the call) or at an unmapped guest address
//!   (`GNTST_bad_virt_addr` in `status`); frame 0 mapped writable with
//!   `update_va_mapping` and used as the table from then on;
//! - the entry protocol (domid and frame, then flags) and `map_grant_ref` of our own
//!   grants: `GNTMAP_host_map` at a virtual address (the PV way: Xen writes the L1 entry
//!   that maps it), the PTE Xen wrote, read and write through the mapping, `handle` and
//!   `dev_bus_addr`, `GTF_reading|GTF_writing` while mapped and cleared by the unmap;
//!   read-only grants (writable maps refused, read-only maps fault on write); two
//!   mappings of one grant; `GNTMAP_contains_pte` (`host_addr` is the PTE's machine
//!   address); `GNTMAP_device_map`; batches; refusals (refs past the table, entries not
//!   made out to us, frames we do not own, a page-table frame mapped writable, addresses
//!   without an L1, misaligned or non-L1 PTE addresses, `dom` = `DOMID_SELF`);
//! - `unmap_grant_ref`: bad, unused and stale handles, the wrong address, the wrong bus
//!   address, `host_addr` 0;
//! - the revocation rule: while a grant is mapped its flags show `GTF_reading|writing`
//!   and the header's end-of-access protocol (compare-exchange to 0 only when neither is
//!   set) refuses; after the unmap it succeeds;
//! - `GNTTABOP_copy` gref -> frame, frame -> gref, gref -> gref and frame -> frame, at
//!   offsets, with the data compared by checksum; its refusals (crossing a page, a
//!   read-only grant as destination, bad domains, refs and frames) and batches;
//! - `XENFEAT_gnttab_map_avail_bits`: map-flag bits 16-18 land in PTE bits 9-11;
//! - `unmap_and_replace`, `transfer` (refusals, and a page transferred to ourselves),
//!   `swap_grant_ref`, `dump_table`, `cache_flush`, unknown commands;
//! - at the end: nothing mapped, every grant ended, the table empty, every page used
//!   writable again and back in the pool; and before that a negative count (-EINVAL),
//!   given with its one entry at the end of a page followed by an unmapped one.
//!
//! What Xen 4.17 does that one might not expect (each is checked as found):
//! - Grants name our real domain id (0): an entry made out to `DOMID_SELF` is refused,
//!   and a map whose `dom` is `DOMID_SELF` is `GNTST_bad_domain` (the granter is looked
//!   up by real id), while `setup_table`, `query_size`, `get_version` and the grant ends
//!   of a copy accept `DOMID_SELF` and 0 alike. A copy end given as a frame must say
//!   `DOMID_SELF`: 0 there is `GNTST_permission_denied`.
//! - A domain that does not exist is `status` `GNTST_bad_domain` for `query_size`,
//!   `setup_table`, maps and copies, but -ESRCH from the call for `get_version`.
//! - Every refusal because of the entry (not permitted, made out to another domain, an
//!   `accept_transfer` entry, a read-only grant mapped writable) is
//!   `GNTST_general_error`, for maps and copies alike, not `GNTST_permission_denied`;
//!   frames we do not own (Xen's, past RAM) are `GNTST_bad_page`; a map with neither
//!   `host_map` nor `device_map` is `GNTST_bad_gntref`. Failed maps leave the entry's
//!   flags as they were.
//! - The PTE of a grant mapping is exactly the one of our own mapping of the page
//!   (Xen's `_PAGE_USER` and kernel marker bit 52 included) plus NX: grant mappings are
//!   never executable. `dev_bus_addr` is the frame's machine address for every map,
//!   not only device maps. The first handle is 0.
//! - `unmap_grant_ref` with `host_addr` 0 (and no bus address) succeeds and does
//!   nothing: the mapping and its handle stay valid; so does naming only a host address
//!   for a device mapping. A wrong bus address is `GNTST_bad_dev_addr`, a wrong host
//!   address `GNTST_general_error`.
//! - A `GNTMAP_contains_pte` mapping is unmapped by the PTE's address only (its virtual
//!   address is refused), and `unmap_and_replace` refuses to move a mapping onto it.
//! - Clearing a mapped grant's flags revokes nothing: the mapping keeps working, and as
//!   long as the grant stays mapped Xen does not read the entry again, so a further
//!   read-only map of it succeeds with the entry's flags at 0; the unmaps leave them 0.
//! - The avail bits come from the map flags only: bits above 18 are dropped, and a
//!   `GNTMAP_contains_pte` map replaces the whole PTE (what it mapped, avail bits
//!   included, is gone, and the unmap leaves the entry empty).
//! - A page-table frame can be granted: mapped read-only and copied from, but not
//!   mapped writable or copied to (`GNTST_general_error`: no writable type for it).
//! - `GNTTABOP_dump_table` is gone (-ENOSYS). `cache_flush` works on x86 for our own
//!   frames with `GNTTAB_CACHE_CLEAN` (alone or with INVAL); INVAL alone is
//!   -EOPNOTSUPP, `GNTTAB_CACHE_SOURCE_GREF` -EINVAL (refused as an unknown op bit before
//!   its "not implemented" branch), Xen's frame -EPERM, a frame past RAM -EINVAL.
//! - `transfer` to ourselves works: an unmapped page we own goes into our own
//!   `accept_transfer` entry, which becomes `accept|committed|completed` with the frame
//!   (the same MFN) in `frame`; the M2P points it at the entry's pfn and the data stay.
//!   Frames we cannot give away (Xen's, past RAM, a grant-table frame) are
//!   `GNTST_bad_page`. Not tried: a transfer Xen refuses only after taking the page
//!   (no `accept_transfer` entry, another domain), which frees the page for good.
//! - `swap_grant_ref` is `GNTST_eagain` while either entry is mapped.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU16, Ordering, fence};

use guest_shim::mmu::{self, KERNEL_RW, Page};
use guest_shim::pt::{PTE_NX, PTE_PRESENT, PTE_PSE, PTE_RW, pte_mfn, table_index};
use guest_shim::pv_abi::features::XENFEAT_GNTTAB_MAP_AVAIL_BITS;
use guest_shim::pv_abi::grant_table::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP,
    GNTMAP_READONLY, GNTST_BAD_COPY_ARG, GNTST_BAD_DEV_ADDR, GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF,
    GNTST_BAD_HANDLE, GNTST_BAD_PAGE, GNTST_BAD_VIRT_ADDR, GNTST_EAGAIN, GNTST_GENERAL_ERROR, GNTST_OKAY,
    GNTST_PERMISSION_DENIED, GNTTAB_CACHE_CLEAN, GNTTAB_CACHE_INVAL, GNTTAB_CACHE_SOURCE_GREF,
    GNTTAB_NR_RESERVED_ENTRIES, GNTTABOP_CACHE_FLUSH, GNTTABOP_COPY, GNTTABOP_GET_STATUS_FRAMES,
    GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SET_VERSION, GNTTABOP_SETUP_TABLE,
    GNTTABOP_UNMAP_GRANT_REF, GTF_ACCEPT_TRANSFER, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY,
    GTF_TRANSFER_COMMITTED, GTF_TRANSFER_COMPLETED, GTF_WRITING, GnttabCacheFlush, GnttabCopy, GnttabCopyPtr,
    GnttabGetStatusFrames, GnttabMapGrantRef, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable,
    GnttabTransfer, GnttabUnmapAndReplace, GnttabUnmapGrantRef, GrantEntryV1, GrantHandle, GrantRef,
    gntmap_guest_avail, gntst_message,
};
use guest_shim::pv_abi::hypercall::HYPERVISOR_GRANT_TABLE_OP;
use guest_shim::pv_abi::memory::{XENMEM_MACHPHYS_MFN_LIST, XenMachphysMfnList};
use guest_shim::pv_abi::xen::{DOMID_SELF, DOMID_XEN, DomId, GuestHandle};
use guest_shim::pv_abi::{Errno, XenError};
use guest_shim::report::{all, expect_err, need};
use guest_shim::traps::{self, vector};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, println};

guest_shim::entry!(start);

/// Our domain id: these tests run as dom0.
const OWN_DOMID: DomId = 0;
/// A domain id no domain has at boot.
const NO_SUCH_DOMID: DomId = 7;
/// v1 entries per table frame.
const ENTRIES_PER_FRAME: u32 = 512;
/// A user address with no page tables below its L4 slot: no L1 entry to write.
const NO_L1_VA: u64 = 0x0000_1000_0000_0000;
/// Start of the hypervisor's hole: not guest memory.
const HOLE: u64 = 0xffff_8000_0000_0000;
/// `PTE` bits 9-11, the ones available to software.
const PTE_AVAIL: u64 = 0xe00;

// Grant references this guest uses (past the reserved ones).
/// Read-write grant of the page `g`.
const REF_RW: GrantRef = 10;
/// Read-only grant of `g`.
const REF_RO: GrantRef = 11;
/// Scratch entry for refused maps.
const REF_SCRATCH: GrantRef = 12;
/// Read-only grant of the copy source.
const REF_SRC: GrantRef = 13;
/// Read-write grant of the copy destination.
const REF_DST: GrantRef = 14;
/// `accept_transfer` entry.
const REF_XFER: GrantRef = 15;
/// Grant of a page-table frame.
const REF_PT: GrantRef = 16;
/// Entries swapped with `swap_grant_ref`.
const REF_SWAP_A: GrantRef = 20;
/// The other one.
const REF_SWAP_B: GrantRef = 21;
/// Every reference used, for the final clean-up.
const USED_REFS: [GrantRef; 9] =
    [REF_RW, REF_RO, REF_SCRATCH, REF_SRC, REF_DST, REF_XFER, REF_PT, REF_SWAP_A, REF_SWAP_B];

/// Frame 0 of our grant table, mapped writable at `base`.
#[derive(Clone, Copy)]
struct Table {
    base: u64,
}

impl Table {
    fn entry(self, r: GrantRef) -> *mut GrantEntryV1 {
        assert!(r < ENTRIES_PER_FRAME, "ref {r} is not in frame 0");
        (self.base + r as u64 * 8) as *mut GrantEntryV1
    }

    /// The flags as one atomic word: Xen changes them with compare-exchange too.
    fn flags_word(self, r: GrantRef) -> &'static AtomicU16 {
        // SAFETY: frame 0 of the table stays mapped writable at `base` for the whole run
        // (it is unmapped only after the last use); `flags` is the first, 2-aligned
        // field of the entry, and every access to it is atomic.
        unsafe { AtomicU16::from_ptr(self.entry(r).cast::<u16>()) }
    }

    fn get(self, r: GrantRef) -> GrantEntryV1 {
        // SAFETY: as in `flags_word`; the entry is plain data, read as one volatile copy.
        unsafe { self.entry(r).read_volatile() }
    }

    fn flags(self, r: GrantRef) -> u16 {
        self.flags_word(r).load(Ordering::SeqCst)
    }

    /// Introduces entry `e` as the header says: domid and frame first, flags last.
    fn grant(self, r: GrantRef, e: GrantEntryV1) {
        let p = self.entry(r);
        // SAFETY: as in `flags_word`; Xen reads these fields (and writes `frame` only
        // to complete a transfer, which needs the flags written after this).
        unsafe {
            (&raw mut (*p).domid).write_volatile(e.domid);
            (&raw mut (*p).frame).write_volatile(e.frame);
        }
        fence(Ordering::SeqCst);
        self.flags_word(r).store(e.flags, Ordering::SeqCst);
    }

    /// Writes the flags regardless of what Xen set (what a careless granter does).
    fn set_flags(self, r: GrantRef, flags: u16) {
        self.flags_word(r).store(flags, Ordering::SeqCst);
    }

    /// Ends access the header's way: an entry not in use (neither `GTF_reading` nor
    /// `GTF_writing`) is invalidated by compare-exchange; else the flags come back.
    fn end_access(self, r: GrantRef) -> Result<(), u16> {
        let word = self.flags_word(r);
        let flags = word.load(Ordering::SeqCst);
        if flags & (GTF_READING | GTF_WRITING) != 0 {
            return Err(flags);
        }
        word.compare_exchange(flags, 0, Ordering::SeqCst, Ordering::SeqCst).map(drop)
    }

    /// Zeroes the whole entry (after its access ended).
    fn clear(self, r: GrantRef) {
        self.grant(r, GrantEntryV1 { flags: 0, domid: 0, frame: 0 });
    }
}

/// Everything the sections share.
struct Env {
    t: Tests,
    xen: Hypercalls,
    gt: Table,
    /// Entries in the table now.
    nr_entries: u32,
    /// A frame Xen owns: the M2P table's first.
    xen_frame: u64,
    /// A frame number past the end of RAM.
    bad_mfn: u64,
    /// The page granted for the map tests.
    g: Page,
    /// Host slots: pages whose kernel address is left unmapped for grant mappings.
    h: Page,
    /// The second slot.
    h2: Page,
    /// A decoy: mapped at its address, named as the wrong address by refused unmaps,
    /// never read (a hypervisor that wrongly accepts may take its mapping away).
    k: Page,
    /// Machine address of the L1 entry that maps `h`'s address.
    h_pte: u64,
    /// The same for `h2`.
    h2_pte: u64,
}

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let installed = traps::install();
    need(&mut t, "traps-install", installed);
    need(&mut t, "pool-init", mmu::init());
    let max_ram_page = need(&mut t, "maximum-ram-page", xen.maximum_ram_page());
    let xen_frame = match machphys_first_frame(&xen) {
        Ok(f) => f,
        Err(e) => {
            println!("gnttab-self: XENMEM_machphys_mfn_list: {e}; using frame {:#x}", max_ram_page - 1);
            max_ram_page - 1
        }
    };
    let features = xen.xen_get_features(0).unwrap_or(0);
    println!(
        "gnttab-self: nr_pages {} max_ram_page {max_ram_page:#x} xen frame {xen_frame:#x} features {features:#x}",
        si.nr_pages
    );
    t.check(
        "feature-gnttab-map-avail-bits",
        Outcome::ensure(features & (1 << XENFEAT_GNTTAB_MAP_AVAIL_BITS) != 0, format_args!("{features:#x}")),
    );

    versions(&mut t, &xen);
    let Some((table_page, gt, nr_entries)) = setup(&mut t, &xen) else {
        t.skip("grant-table-sections", "no grant table to work with");
        t.finish()
    };

    let pages = [(); 4].map(|()| need(&mut t, "alloc-pages", mmu::alloc()));
    let [g, h, h2, k] = pages;
    // SAFETY: the slots are fresh pool pages; nothing refers to their addresses.
    let slots = unsafe { mmu::unmap(&h).and_then(|()| mmu::unmap(&h2)) };
    need(&mut t, "unmap-slots", slots);
    let (Some(h_pte), Some(h2_pte)) = (l1_entry_maddr(h.va()), l1_entry_maddr(h2.va())) else {
        t.fail("slot-l1-entries", "no L1 entry for a slot");
        t.finish()
    };
    let mut env = Env {
        t,
        xen,
        gt,
        nr_entries,
        xen_frame,
        bad_mfn: max_ram_page + (1 << 30),
        g,
        h,
        h2,
        k,
        h_pte,
        h2_pte,
    };

    map_basic(&mut env);
    readonly(&mut env);
    map_refusals(&mut env);
    contains_pte(&mut env);
    avail_bits(&mut env);
    device_map(&mut env);
    revocation(&mut env);
    copy(&mut env);
    unmap_and_replace(&mut env);
    transfer(&mut env);
    other_ops(&mut env);
    hostile(&mut env);
    cleanup(&mut env, table_page);
    env.t.finish()
}

// ---- Helpers ----

/// The first frame of the M2P table (Xen's, shared read-only with dom0).
fn machphys_first_frame(xen: &Hypercalls) -> Result<u64, Errno> {
    let mut frames = [0u64; 1];
    let mut arg = XenMachphysMfnList {
        max_extents: 1,
        extent_start: GuestHandle::from_ptr(frames.as_mut_ptr()),
        ..Default::default()
    };
    // SAFETY: Xen writes at most `max_extents` (1) MFNs into `frames`.
    unsafe { xen.memory_op(XENMEM_MACHPHYS_MFN_LIST, &mut arg) }?;
    if arg.nr_extents == 0 {
        return Err(Errno::ENOENT);
    }
    Ok(frames[0])
}

/// Machine address of the L1 entry mapping `va` in the current tables.
fn l1_entry_maddr(va: u64) -> Option<u64> {
    let mut mfn = mmu::current_base();
    for level in [4u8, 3, 2] {
        let e = mmu::read_entry(mfn, table_index(va, level))?;
        if e & PTE_PRESENT == 0 || e & PTE_PSE != 0 {
            return None;
        }
        mfn = pte_mfn(e);
    }
    Some(mfn * mmu::PAGE_SIZE + table_index(va, 1) as u64 * 8)
}

/// The L1 entry mapping `va` now (0 if none).
fn pte_of(va: u64) -> u64 {
    mmu::lookup(va).pte().unwrap_or(0)
}

/// `HYPERVISOR_grant_table_op(cmd, arg, count)` with raw arguments; returns RAX.
///
/// # Safety
///
/// As for [`Hypercalls::call`]: `arg` must be valid for what `cmd` does with it, or
/// an address Xen must refuse.
unsafe fn gnttab_raw(xen: &Hypercalls, cmd: u32, arg: u64, count: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { xen.call(HYPERVISOR_GRANT_TABLE_OP, cmd as u64, arg, count, 0, 0) }
}

/// A check that a raw return value is `-want`.
fn expect_ret(ret: i64, want: Errno) -> Outcome {
    Outcome::ensure(ret == want.to_ret(), format_args!("returned {ret}, expected -{want}"))
}

/// A check of a `status` field against `GNTST_*` code `want`.
fn status(got: i16, want: i16) -> Outcome {
    Outcome::ensure(
        got == want,
        format_args!("status {got} ({}), expected {want} ({})", gntst_message(got), gntst_message(want)),
    )
}

/// A check that the hypercall returned 0 and the operation's status is `want`.
fn op_status(ret: Result<u64, XenError>, got: i16, want: i16) -> Outcome {
    match ret {
        Ok(0) => status(got, want),
        Ok(n) => Outcome::fail(format_args!("hypercall returned {n}")),
        Err(e) => Outcome::fail(format_args!("hypercall failed: {e}")),
    }
}

/// A check that the flags of entry `r` are `want`.
fn flags_are(gt: Table, r: GrantRef, want: u16) -> Outcome {
    let got = gt.flags(r);
    Outcome::ensure(got == want, format_args!("flags {got:#x}, expected {want:#x}"))
}

/// Word `i` of the pattern made from `seed`.
const fn pattern(seed: u64, i: u64) -> u64 {
    (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(i * 2 + 1).rotate_left((i % 63) as u32)
}

/// Fills pool page `page` (mapped writable at its address) with the pattern of `seed`.
fn fill(page: &Page, seed: u64) {
    let p = page.va() as *mut u64;
    for i in 0..512 {
        // SAFETY: the page is this guest's, mapped writable at its kernel address, and
        // holds no Rust object: only these volatile accesses touch it.
        unsafe { p.add(i).write_volatile(pattern(seed, i as u64)) };
    }
}

/// An exception raised by an access through a mapping, the parts the checks need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fault {
    vector: u8,
    error_code: u64,
    cr2: u64,
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} error {:#x} cr2 {:#x}", traps::name(self.vector as u64), self.error_code, self.cr2)
    }
}

/// Runs the access `f` and turns an exception into a [`Fault`].
///
/// # Safety
///
/// As for [`traps::catch`].
unsafe fn access<R>(f: impl FnOnce() -> R) -> Result<R, Fault> {
    // SAFETY: forwarded contract.
    unsafe { traps::catch(f) }.map_err(|t| Fault {
        vector: t.vector(),
        error_code: t.error_code(),
        cr2: t.cr2,
    })
}

/// Reads the u64 at `va`, which may be a grant mapping: a fault comes back as an error.
fn peek(va: u64) -> Result<u64, Fault> {
    // SAFETY: `va` is one of this guest's pages or slots; the read has no side effect
    // and the closure holds nothing to drop if it faults.
    unsafe { access(|| (va as *const u64).read_volatile()) }
}

/// Writes the u64 at `va` (a page of ours or a slot holding a grant mapping of one).
fn poke(va: u64, v: u64) -> Result<(), Fault> {
    // SAFETY: `va` maps one of this guest's pages, which hold no Rust objects (only
    // volatile accesses touch them); the closure holds nothing to drop if it faults.
    unsafe { access(|| (va as *mut u64).write_volatile(v)) }
}

/// FNV-1a of `len` bytes at `va + off` (read through whatever maps them).
fn checksum(va: u64, off: u64, len: u64) -> Result<u64, Fault> {
    // SAFETY: as in `peek`; the range lies within one page of ours.
    unsafe {
        access(|| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for i in 0..len {
                h ^= ((va + off + i) as *const u8).read_volatile() as u64;
                h = h.wrapping_mul(0x100_0000_01b3);
            }
            h
        })
    }
}

/// A check that `len` bytes at `dst + doff` equal those at `src + soff`.
fn same_bytes(src: u64, soff: u64, dst: u64, doff: u64, len: u64) -> Outcome {
    match (checksum(src, soff, len), checksum(dst, doff, len)) {
        (Ok(a), Ok(b)) => Outcome::ensure(a == b, format_args!("checksums differ: {a:#x} vs {b:#x}")),
        (Err(t), _) | (_, Err(t)) => Outcome::fail(t),
    }
}

impl Env {
    /// Whether a map (or unmap) may name `addr`: a slot this guest reserved (its
    /// address or its L1 entry), or an address where no memory Rust uses can change
    /// whatever the hypervisor does (no L1, the hole, a misaligned slot entry, the
    /// decoy page).
    fn may_use(&self, addr: u64, flags: u32) -> bool {
        if flags & GNTMAP_HOST_MAP == 0 || addr == 0 {
            return true;
        }
        if flags & GNTMAP_CONTAINS_PTE != 0 {
            [self.h_pte, self.h2_pte, self.h_pte + 4, self.k.maddr()].contains(&addr)
        } else {
            [self.h.va(), self.h2.va(), NO_L1_VA, HOLE, self.k.va()].contains(&addr)
        }
    }

    /// Frame 0 of the table, as the table's mapping shows it.
    fn gt_frame0(&self) -> u64 {
        pte_mfn(pte_of(self.gt.base))
    }

    /// `GNTTABOP_map_grant_ref` on `ops`; returns the hypercall's result.
    fn map_batch(&self, ops: &mut [GnttabMapGrantRef]) -> Result<u64, XenError> {
        for op in ops.iter() {
            assert!(self.may_use(op.host_addr, op.flags), "map at {:#x} not reserved", op.host_addr);
        }
        // SAFETY: every host address is a reserved slot (nothing else is mapped there)
        // or one where a mapping cannot disturb memory Rust code uses (checked above).
        unsafe { self.xen.grant_table_op(GNTTABOP_MAP_GRANT_REF, ops) }
    }

    /// One map; returns the hypercall's result and the operation as Xen left it.
    fn map(&self, host_addr: u64, flags: u32, gref: GrantRef) -> (Result<u64, XenError>, GnttabMapGrantRef) {
        self.map_dom(host_addr, flags, OWN_DOMID, gref)
    }

    /// One map of domain `dom`'s grant.
    fn map_dom(
        &self,
        host_addr: u64,
        flags: u32,
        dom: DomId,
        gref: GrantRef,
    ) -> (Result<u64, XenError>, GnttabMapGrantRef) {
        let mut op = [GnttabMapGrantRef::new(host_addr, flags, dom, gref)];
        let ret = self.map_batch(&mut op);
        (ret, op[0])
    }

    /// `GNTTABOP_unmap_grant_ref` on `ops`.
    fn unmap_batch(&self, ops: &mut [GnttabUnmapGrantRef]) -> Result<u64, XenError> {
        for op in ops.iter() {
            let ok = self.may_use(op.host_addr, GNTMAP_HOST_MAP)
                || self.may_use(op.host_addr, GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE);
            assert!(ok, "unmap at {:#x} not reserved", op.host_addr);
        }
        // SAFETY: only slots (whose mappings nothing but volatile accesses uses) or
        // addresses Rust code does not use are named (checked above).
        unsafe { self.xen.grant_table_op(GNTTABOP_UNMAP_GRANT_REF, ops) }
    }

    /// One unmap; returns the hypercall's result and the status.
    fn unmap(&self, host_addr: u64, dev_bus_addr: u64, handle: GrantHandle) -> (Result<u64, XenError>, i16) {
        let mut op = [GnttabUnmapGrantRef::new(host_addr, dev_bus_addr, handle)];
        let ret = self.unmap_batch(&mut op);
        (ret, op[0].status)
    }

    /// A check that a map succeeded; returns its handle.
    fn map_ok(&mut self, name: &str, host_addr: u64, flags: u32, gref: GrantRef) -> Option<GrantHandle> {
        let (ret, op) = self.map(host_addr, flags, gref);
        self.t.check(name, op_status(ret, op.status, GNTST_OKAY)).then_some(op.handle)
    }

    /// A check that an unmap succeeded.
    fn unmap_ok(&mut self, name: &str, host_addr: u64, dev_bus_addr: u64, handle: GrantHandle) -> bool {
        let (ret, st) = self.unmap(host_addr, dev_bus_addr, handle);
        self.t.check(name, op_status(ret, st, GNTST_OKAY))
    }

    /// `GNTTABOP_copy` on `ops`.
    fn copy_batch(&self, ops: &mut [GnttabCopy]) -> Result<u64, XenError> {
        // SAFETY: every local destination frame is one of this guest's data pages,
        // which hold no Rust objects (only volatile accesses touch them).
        unsafe { self.xen.gnttab_copy(ops) }.map(|()| 0)
    }

    /// A check that one copy gets status `want` (and the call returns 0).
    fn copy_check(
        &mut self,
        name: &str,
        src: GnttabCopyPtr,
        dst: GnttabCopyPtr,
        len: u16,
        flags: u16,
        want: i16,
    ) {
        let (ret, st) = self.copy1(src, dst, len, flags);
        self.t.check(name, op_status(ret, st, want));
    }

    /// One copy; returns the hypercall's result and the status.
    fn copy1(
        &self,
        src: GnttabCopyPtr,
        dst: GnttabCopyPtr,
        len: u16,
        flags: u16,
    ) -> (Result<u64, XenError>, i16) {
        let mut op = [GnttabCopy::new(src, dst, len, flags)];
        let ret = self.copy_batch(&mut op);
        (ret, op[0].status)
    }
}

// ---- Sizes and versions ----

fn versions(t: &mut Tests, xen: &Hypercalls) {
    let q = xen.gnttab_query_size(DOMID_SELF);
    if let Ok(q) = &q {
        println!("gnttab-self: query_size: nr_frames {} max_nr_frames {}", q.nr_frames, q.max_nr_frames);
    }
    t.check(
        "query-size",
        match q {
            Ok(q) => Outcome::ensure(
                q.status == GNTST_OKAY && q.nr_frames == 1 && q.max_nr_frames == 64,
                format_args!("status {} nr_frames {} max {}", q.status, q.nr_frames, q.max_nr_frames),
            ),
            Err(e) => Outcome::fail(e),
        },
    );
    let own = xen.gnttab_query_size(OWN_DOMID);
    t.check("query-size-own-id", Outcome::ok_eq(own.map(|o| (o.status, o.nr_frames)), (GNTST_OKAY, 1)));
    let other = xen.gnttab_query_size(NO_SUCH_DOMID);
    t.check("query-size-bad-domain", Outcome::ok_eq(other.map(|o| o.status), GNTST_BAD_DOMAIN));
    let mut qs = [GnttabQuerySize { dom: DOMID_SELF, ..Default::default() }; 2];
    // SAFETY: `qs` holds two query structures; Xen refuses a count other than 1.
    let ret = unsafe { gnttab_raw(xen, GNTTABOP_QUERY_SIZE, qs.as_mut_ptr() as u64, 2) };
    t.check("query-size-count-2", expect_ret(ret, Errno::EINVAL));
    // SAFETY: the hole is not guest memory; Xen refuses to read it.
    let ret = unsafe { gnttab_raw(xen, GNTTABOP_QUERY_SIZE, HOLE, 1) };
    t.check("query-size-arg-in-hole", expect_ret(ret, Errno::EFAULT));

    t.check("get-version", Outcome::ok_eq(xen.gnttab_get_version(DOMID_SELF), 1));
    t.check("get-version-own-id", Outcome::ok_eq(xen.gnttab_get_version(OWN_DOMID), 1));
    t.check("get-version-bad-domain", expect_err(xen.gnttab_get_version(NO_SUCH_DOMID), Errno::ESRCH));
    t.check("set-version-1", Outcome::ok_eq(xen.gnttab_set_version(1), 1));
    for (name, v) in [("set-version-0", 0), ("set-version-3", 3)] {
        let mut a = GnttabSetVersion { version: v };
        // SAFETY: `a` is a valid argument; Xen only writes its `version` back.
        let ret = unsafe { gnttab_raw(xen, GNTTABOP_SET_VERSION, &raw mut a as u64, 1) };
        // Refused, with the version in use written back.
        t.check(name, all([expect_ret(ret, Errno::EINVAL), Outcome::eq(a.version, 1)]));
    }

    // v2 and back: the table is empty, so nothing is lost.
    match xen.gnttab_set_version(2) {
        Ok(v) => {
            let now = xen.gnttab_get_version(DOMID_SELF);
            let mut sf = [0u64; 1];
            let st = xen.gnttab_get_status_frames(DOMID_SELF, &mut sf);
            println!("gnttab-self: v2 status frame {:#x}", sf[0]);
            let back = xen.gnttab_set_version(1);
            t.check(
                "set-version-2",
                all([
                    Outcome::eq(v, 2),
                    Outcome::ok_eq(now, 2),
                    Outcome::ok_eq(st, GNTST_OKAY),
                    Outcome::ensure(sf[0] != 0, "no status frame"),
                    Outcome::ok_eq(back, 1),
                ]),
            );
        }
        Err(e) => t.fail("set-version-2", e),
    }
    t.check("get-version-back-to-1", Outcome::ok_eq(xen.gnttab_get_version(DOMID_SELF), 1));

    // v1 has no status frames: asking for one is refused in `status`, for none is fine.
    let mut sf = [0u64; 1];
    t.check(
        "get-status-frames-v1",
        Outcome::ok_eq(xen.gnttab_get_status_frames(DOMID_SELF, &mut sf), GNTST_GENERAL_ERROR),
    );
    t.check(
        "get-status-frames-v1-none",
        Outcome::ok_eq(xen.gnttab_get_status_frames(DOMID_SELF, &mut []), 0),
    );
    let mut gs = [GnttabGetStatusFrames { dom: DOMID_SELF, ..Default::default() }; 2];
    // SAFETY: `gs` holds two structures with no frames asked for; Xen refuses count 2.
    let ret = unsafe { gnttab_raw(xen, GNTTABOP_GET_STATUS_FRAMES, gs.as_mut_ptr() as u64, 2) };
    t.check("get-status-frames-count-2", expect_ret(ret, Errno::EINVAL));
}

// ---- setup_table and the table's frames ----

/// Checks `setup_table` and maps frame 0 of the table at a pool page's address; returns
/// that page, the table and its number of entries.
fn setup(t: &mut Tests, xen: &Hypercalls) -> Option<(Page, Table, u32)> {
    let mut f = [0u64; 1];
    let st = xen.gnttab_setup_table(DOMID_SELF, &mut f);
    let frame0 = f[0];
    println!("gnttab-self: setup_table: status {st:?} frame 0 {frame0:#x}");
    t.check("setup-table", all([Outcome::ok_eq(st, GNTST_OKAY), Outcome::ensure(frame0 != 0, "frame 0")]));
    let mut f = [0u64; 1];
    let st = xen.gnttab_setup_table(OWN_DOMID, &mut f);
    t.check("setup-table-own-id", all([Outcome::ok_eq(st, GNTST_OKAY), Outcome::eq(f[0], frame0)]));
    for (name, dom) in [("setup-table-bad-domain", NO_SUCH_DOMID), ("setup-table-domid-xen", DOMID_XEN)] {
        t.check(name, Outcome::ok_eq(xen.gnttab_setup_table(dom, &mut [0u64; 1]), GNTST_BAD_DOMAIN));
    }
    t.check("setup-table-no-frames", Outcome::ok_eq(xen.gnttab_setup_table(DOMID_SELF, &mut []), GNTST_OKAY));

    // More frames than the limit: refused before anything is written.
    let max = xen.gnttab_query_size(DOMID_SELF).map(|q| q.max_nr_frames).unwrap_or(64) as usize;
    let mut big = [0u64; 128];
    if max < big.len() {
        let st = xen.gnttab_setup_table(DOMID_SELF, &mut big[..max + 1]);
        t.check("setup-table-too-many", Outcome::ok_eq(st, GNTST_GENERAL_ERROR));
    } else {
        t.skip("setup-table-too-many", format_args!("limit {max} frames"));
    }

    // Growing to two frames keeps frame 0.
    let mut f2 = [0u64; 2];
    let st = xen.gnttab_setup_table(DOMID_SELF, &mut f2);
    let now = xen.gnttab_query_size(DOMID_SELF).map(|q| q.nr_frames);
    t.check(
        "setup-table-grow",
        all([
            Outcome::ok_eq(st, GNTST_OKAY),
            Outcome::eq(f2[0], frame0),
            Outcome::ensure(f2[1] != 0 && f2[1] != frame0, format_args!("frame 1 {:#x}", f2[1])),
            Outcome::ok_eq(now, 2),
        ]),
    );

    let mut a = GnttabSetupTable { dom: DOMID_SELF, nr_frames: 1, ..Default::default() };
    // SAFETY: one valid structure; Xen refuses count 2 before reading further.
    let ret = unsafe { gnttab_raw(xen, GNTTABOP_SETUP_TABLE, &raw mut a as u64, 2) };
    t.check("setup-table-count-2", expect_ret(ret, Errno::EINVAL));
    let mut a = GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 1,
        frame_list: GuestHandle::new(HOLE),
        ..Default::default()
    };
    // SAFETY: the frame list is in the hole, which Xen refuses to write.
    let ret = unsafe { gnttab_raw(xen, GNTTABOP_SETUP_TABLE, &raw mut a as u64, 1) };
    t.check("setup-table-list-in-hole", expect_ret(ret, Errno::EFAULT));
    let mut a = GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 1,
        frame_list: GuestHandle::new(NO_L1_VA),
        ..Default::default()
    };
    // SAFETY: nothing is mapped at the frame list's address: the copy out fails.
    let ret = unsafe { gnttab_raw(xen, GNTTABOP_SETUP_TABLE, &raw mut a as u64, 1) };
    t.check("setup-table-list-unmapped", op_status(Errno::check(ret), a.status, GNTST_BAD_VIRT_ADDR));

    // Frame 0 at the address of a pool page whose own frame is unmapped for it.
    let page = mmu::alloc().ok()?;
    // SAFETY: the page is fresh from the pool: nothing refers to its address, which
    // from now on maps the table frame (until `cleanup` maps the page back).
    let mapped = unsafe { mmu::set_kernel_pte(page.va(), (frame0 * mmu::PAGE_SIZE) | KERNEL_RW) };
    if !t.check("table-map-writable", mapped) {
        return None;
    }
    let gt = Table { base: page.va() };
    let used = (0..ENTRIES_PER_FRAME).filter(|&r| gt.get(r) != GrantEntryV1::default()).count();
    t.check("table-starts-empty", Outcome::eq(used, 0));
    let nr = now.unwrap_or(1) * ENTRIES_PER_FRAME;
    Some((page, gt, nr))
}

// ---- map_grant_ref and unmap_grant_ref ----

fn map_basic(env: &mut Env) {
    let (g, h, gt) = (env.g, env.h, env.gt);
    fill(&g, 1);
    gt.grant(REF_RW, GrantEntryV1::permit_access(OWN_DOMID, g.mfn as u32, false));
    env.t.check("grant-flags", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS));

    let (ret, op) = env.map(h.va(), GNTMAP_HOST_MAP, REF_RW);
    println!(
        "gnttab-self: map: handle {} dev_bus_addr {:#x} pte {:#x}",
        op.handle,
        op.dev_bus_addr,
        pte_of(h.va())
    );
    if !env.t.check("map-host", op_status(ret, op.status, GNTST_OKAY)) {
        return;
    }
    let handle = op.handle;
    env.t.check("map-dev-bus-addr", Outcome::eq(op.dev_bus_addr, g.maddr()));
    env.t.check("map-handle-first", Outcome::eq(handle, 0));
    env.t.check(
        "map-flags-reading-writing",
        flags_are(gt, REF_RW, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING),
    );
    let pte = pte_of(h.va());
    env.t.check(
        "map-pte",
        Outcome::ensure(
            pte_mfn(pte) == g.mfn
                && pte & (PTE_PRESENT | PTE_RW) == PTE_PRESENT | PTE_RW
                && pte & PTE_AVAIL == 0,
            format_args!("pte {pte:#x}, granted frame {:#x}", g.mfn),
        ),
    );
    // Exactly the entry of our own writable mapping of the page, plus NX: grant
    // mappings are never executable.
    env.t.check("map-pte-exact", Outcome::eq(pte, pte_of(g.va()) | PTE_NX));
    env.t.check("map-read", Outcome::ok_eq(peek(h.va() + 8), pattern(1, 1)));
    let wrote = poke(h.va() + 16, 0xfeed_f00d);
    env.t.check("map-write", all([Outcome::from(wrote), Outcome::ok_eq(peek(g.va() + 16), 0xfeed_f00d)]));
    env.t.check("map-whole-page", same_bytes(g.va(), 0, h.va(), 0, 4096));

    // Unmaps that must fail leave the mapping as it was.
    let (ret, st) = env.unmap(h.va(), 0, 0xffff);
    env.t.check("unmap-bad-handle", op_status(ret, st, GNTST_BAD_HANDLE));
    let (ret, st) = env.unmap(h.va(), 0, handle + 100);
    env.t.check("unmap-unused-handle", op_status(ret, st, GNTST_BAD_HANDLE));
    let (ret, st) = env.unmap(env.k.va(), 0, handle);
    env.t.check("unmap-wrong-address", op_status(ret, st, GNTST_GENERAL_ERROR));
    let (ret, st) = env.unmap(NO_L1_VA, 0, handle);
    env.t.check("unmap-address-without-l1", op_status(ret, st, GNTST_GENERAL_ERROR));
    let (ret, st) = env.unmap(0, 0, handle);
    env.t.check("unmap-address-0-does-nothing", op_status(ret, st, GNTST_OKAY));
    env.t.check(
        "map-survives-bad-unmaps",
        all([
            Outcome::ok_eq(peek(h.va() + 8), pattern(1, 1)),
            flags_are(gt, REF_RW, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING),
        ]),
    );

    if env.unmap_ok("unmap", h.va(), 0, handle) {
        env.t.check("unmap-clears-pte", Outcome::eq(pte_of(h.va()) & PTE_PRESENT, 0));
        env.t.check("unmap-clears-flags", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS));
        env.t.check("unmap-address-faults", Outcome::ensure(peek(h.va()).is_err(), "read succeeded"));
    }
    let (ret, st) = env.unmap(h.va(), 0, handle);
    env.t.check("unmap-twice", op_status(ret, st, GNTST_BAD_HANDLE));

    // A batch: each entry gets its own status, the call returns 0.
    let mut ops = [
        GnttabMapGrantRef::new(h.va(), GNTMAP_HOST_MAP, OWN_DOMID, REF_RW),
        GnttabMapGrantRef::new(env.h2.va(), GNTMAP_HOST_MAP, OWN_DOMID, env.nr_entries),
        GnttabMapGrantRef::new(env.h2.va(), GNTMAP_HOST_MAP | GNTMAP_READONLY, OWN_DOMID, REF_RW),
    ];
    let ret = env.map_batch(&mut ops);
    let statuses = ops.map(|o| o.status);
    env.t.check(
        "map-batch",
        all([
            Outcome::ok_eq(ret, 0),
            Outcome::eq(statuses, [GNTST_OKAY, GNTST_BAD_GNTREF, GNTST_OKAY]),
            Outcome::ensure(ops[0].handle != ops[2].handle, "the same handle twice"),
        ]),
    );
    let mut un = [
        GnttabUnmapGrantRef::new(h.va(), 0, ops[0].handle),
        GnttabUnmapGrantRef::new(h.va(), 0, 0xffff),
        GnttabUnmapGrantRef::new(env.h2.va(), 0, ops[2].handle),
    ];
    let ret = env.unmap_batch(&mut un);
    env.t.check(
        "unmap-batch",
        all([
            Outcome::ok_eq(ret, 0),
            Outcome::eq(un.map(|o| o.status), [GNTST_OKAY, GNTST_BAD_HANDLE, GNTST_OKAY]),
            flags_are(gt, REF_RW, GTF_PERMIT_ACCESS),
        ]),
    );
    let mut op = GnttabMapGrantRef::new(h.va(), GNTMAP_HOST_MAP, OWN_DOMID, REF_RW);
    // SAFETY: the argument array is in the hole: Xen refuses to read it.
    let ret = unsafe { gnttab_raw(&env.xen, GNTTABOP_MAP_GRANT_REF, HOLE, 1) };
    env.t.check("map-args-in-hole", expect_ret(ret, Errno::EFAULT));
    // SAFETY: a count of 0 maps nothing.
    let ret = unsafe { gnttab_raw(&env.xen, GNTTABOP_MAP_GRANT_REF, &raw mut op as u64, 0) };
    env.t.check("map-count-0", Outcome::eq(ret, 0));
}

// ---- Read-only grants and mappings, two mappings of one grant ----

fn readonly(env: &mut Env) {
    let (g, h, h2, gt) = (env.g, env.h, env.h2, env.gt);
    gt.grant(REF_RO, GrantEntryV1::permit_access(OWN_DOMID, g.mfn as u32, true));
    // A writable map of a read-only grant: refused, the flags untouched.
    let (ret, op) = env.map(h.va(), GNTMAP_HOST_MAP, REF_RO);
    env.t.check("map-ro-grant-writable", op_status(ret, op.status, GNTST_GENERAL_ERROR));
    env.t.check("map-ro-grant-writable-flags", flags_are(gt, REF_RO, GTF_PERMIT_ACCESS | GTF_READONLY));
    env.t.check("map-ro-grant-writable-no-pte", Outcome::eq(pte_of(h.va()) & PTE_PRESENT, 0));

    if let Some(handle) =
        env.map_ok("map-ro-grant-readonly", h.va(), GNTMAP_HOST_MAP | GNTMAP_READONLY, REF_RO)
    {
        let pte = pte_of(h.va());
        env.t.check(
            "map-readonly-pte",
            Outcome::ensure(
                pte_mfn(pte) == g.mfn && pte & (PTE_PRESENT | PTE_RW) == PTE_PRESENT,
                format_args!("pte {pte:#x}"),
            ),
        );
        env.t.check("map-readonly-pte-exact", Outcome::eq(pte, (pte_of(g.va()) & !PTE_RW) | PTE_NX));
        env.t.check(
            "map-readonly-flags",
            flags_are(gt, REF_RO, GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING),
        );
        env.t.check("map-readonly-read", Outcome::ok_eq(peek(h.va() + 8), pattern(1, 1)));
        let fault = poke(h.va() + 8, 0);
        env.t.check(
            "map-readonly-write-faults",
            match fault {
                Err(f) => Outcome::ensure(
                    f.vector == vector::PF && f.error_code & 3 == 3 && f.cr2 == h.va() + 8,
                    format_args!("{f}"),
                ),
                Ok(()) => Outcome::fail("the write went through"),
            },
        );
        env.unmap_ok("unmap-readonly", h.va(), 0, handle);
        env.t.check("unmap-readonly-flags", flags_are(gt, REF_RO, GTF_PERMIT_ACCESS | GTF_READONLY));
    }

    // A read-write grant mapped read-only and read-write at once: the flags follow the
    // strongest mapping left.
    let ro = env.map_ok("map-rw-grant-readonly", h.va(), GNTMAP_HOST_MAP | GNTMAP_READONLY, REF_RW);
    env.t.check("map-rw-grant-readonly-flags", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS | GTF_READING));
    let rw = env.map_ok("map-second-mapping", h2.va(), GNTMAP_HOST_MAP, REF_RW);
    env.t.check("map-second-flags", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING));
    let seen = poke(h2.va() + 24, 0x5151).and_then(|()| peek(h.va() + 24));
    env.t.check("map-second-same-page", Outcome::ok_eq(seen, 0x5151));
    if let Some(rw) = rw {
        env.unmap_ok("unmap-second", h2.va(), 0, rw);
        env.t.check("unmap-second-keeps-reading", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS | GTF_READING));
    }
    if let Some(ro) = ro {
        env.unmap_ok("unmap-first", h.va(), 0, ro);
        env.t.check("unmap-first-clears-reading", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS));
    }
}

// ---- Refused maps ----

fn map_refusals(env: &mut Env) {
    let (g, h, gt) = (env.g, env.h, env.gt);
    let hm = GNTMAP_HOST_MAP;
    // Which grant: out of range, not made out, made out to others.
    for (name, gref) in [("map-ref-past-table", env.nr_entries), ("map-ref-max", u32::MAX)] {
        let (ret, op) = env.map(h.va(), hm, gref);
        env.t.check(name, op_status(ret, op.status, GNTST_BAD_GNTREF));
    }
    let scratch = [
        ("map-ref-invalid", GrantEntryV1 { flags: 0, domid: OWN_DOMID, frame: g.mfn as u32 }),
        ("map-ref-other-domain", GrantEntryV1::permit_access(5, g.mfn as u32, false)),
        ("map-ref-domid-self", GrantEntryV1::permit_access(DOMID_SELF, g.mfn as u32, false)),
        ("map-ref-accept-transfer", GrantEntryV1::accept_transfer(OWN_DOMID, g.pfn as u32)),
    ];
    for (name, entry) in scratch {
        gt.grant(REF_SCRATCH, entry);
        let (ret, op) = env.map(h.va(), hm, REF_SCRATCH);
        env.t.check(
            name,
            all([op_status(ret, op.status, GNTST_GENERAL_ERROR), flags_are(gt, REF_SCRATCH, entry.flags)]),
        );
    }
    // Whose grant: `dom` must be a real domain id.
    for (name, dom) in [("map-dom-self", DOMID_SELF), ("map-dom-none", NO_SUCH_DOMID)] {
        let (ret, op) = env.map_dom(h.va(), hm, dom, REF_RW);
        env.t.check(
            name,
            all([op_status(ret, op.status, GNTST_BAD_DOMAIN), flags_are(gt, REF_RW, GTF_PERMIT_ACCESS)]),
        );
    }
    // Neither a host nor a device mapping.
    let (ret, op) = env.map(h.va(), 0, REF_RW);
    env.t.check("map-no-kind", op_status(ret, op.status, GNTST_BAD_GNTREF));

    // Frames we may not grant: Xen's own, past RAM. The entry's busy bits are undone.
    for (name, frame) in [("map-frame-of-xen", env.xen_frame), ("map-frame-past-ram", env.bad_mfn)] {
        gt.grant(REF_SCRATCH, GrantEntryV1::permit_access(OWN_DOMID, frame as u32, false));
        let (ret, op) = env.map(h.va(), hm, REF_SCRATCH);
        env.t.check(
            name,
            all([op_status(ret, op.status, GNTST_BAD_PAGE), flags_are(gt, REF_SCRATCH, GTF_PERMIT_ACCESS)]),
        );
    }

    // Where: no L1 for the address, the hole. Undone too.
    for (name, addr) in [("map-address-without-l1", NO_L1_VA), ("map-address-in-hole", HOLE)] {
        let (ret, op) = env.map(addr, hm, REF_RW);
        env.t.check(
            name,
            all([op_status(ret, op.status, GNTST_GENERAL_ERROR), flags_are(gt, REF_RW, GTF_PERMIT_ACCESS)]),
        );
    }
    let (ret, op) = env.map(env.h_pte + 4, hm | GNTMAP_CONTAINS_PTE, REF_RW);
    env.t.check("map-pte-misaligned", op_status(ret, op.status, GNTST_GENERAL_ERROR));
    let (ret, op) = env.map(env.k.maddr(), hm | GNTMAP_CONTAINS_PTE, REF_RW);
    env.t.check("map-pte-not-in-l1", op_status(ret, op.status, GNTST_GENERAL_ERROR));
    env.t.check("map-refusals-leave-flags", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS));

    // A page-table frame (the start-of-day L4) may be granted and mapped read-only, but
    // not writable: Xen cannot give it the writable type.
    let l4 = mmu::bootstrap_l4();
    gt.grant(REF_PT, GrantEntryV1::permit_access(OWN_DOMID, l4.mfn as u32, false));
    let (ret, op) = env.map(h.va(), hm, REF_PT);
    env.t.check(
        "map-page-table-writable",
        all([op_status(ret, op.status, GNTST_GENERAL_ERROR), flags_are(gt, REF_PT, GTF_PERMIT_ACCESS)]),
    );
    if let Some(handle) = env.map_ok("map-page-table-readonly", h.va(), hm | GNTMAP_READONLY, REF_PT) {
        let first = mmu::read_entry(l4.mfn, 511);
        env.t.check("map-page-table-read", Outcome::ensure(peek(h.va() + 511 * 8).ok() == first, "contents"));
        env.unmap_ok("unmap-page-table", h.va(), 0, handle);
    }
    let _ = gt.end_access(REF_PT);
}

// ---- GNTMAP_contains_pte ----

fn contains_pte(env: &mut Env) {
    let (g, h, gt, h_pte) = (env.g, env.h, env.gt, env.h_pte);
    let flags = GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE;
    let Some(handle) = env.map_ok("map-contains-pte", h_pte, flags, REF_RW) else { return };
    let pte = pte_of(h.va());
    env.t.check(
        "map-contains-pte-entry",
        Outcome::ensure(
            pte_mfn(pte) == g.mfn && pte & (PTE_PRESENT | PTE_RW) == PTE_PRESENT | PTE_RW,
            format_args!("pte {pte:#x}"),
        ),
    );
    env.t.check("map-contains-pte-read", Outcome::ok_eq(peek(h.va() + 8), pattern(1, 1)));
    env.t.check(
        "map-contains-pte-flags",
        flags_are(gt, REF_RW, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING),
    );
    // The unmap must name the mapping as the map did: its virtual address is taken as
    // a PTE's machine address and refused, the mapping staying as it was.
    let (ret, st) = env.unmap(h.va(), 0, handle);
    env.t.check(
        "unmap-contains-pte-by-va",
        all([op_status(ret, st, GNTST_GENERAL_ERROR), Outcome::eq(pte_mfn(pte_of(h.va())), g.mfn)]),
    );
    env.unmap_ok("unmap-contains-pte", h_pte, 0, handle);
    env.t.check(
        "unmap-contains-pte-clears",
        all([Outcome::eq(pte_of(h.va()), 0), flags_are(gt, REF_RW, GTF_PERMIT_ACCESS)]),
    );
}

// ---- XENFEAT_gnttab_map_avail_bits ----

fn avail_bits(env: &mut Env) {
    let (h, h2, gt, h2_pte) = (env.h, env.h2, env.gt, env.h2_pte);
    // At a virtual address: flags bits 16-18 become PTE bits 9-11.
    let cases = [
        ("avail-bits-101", "avail-bits-101-pte", "avail-bits-101-unmap", 0b101u32),
        ("avail-bits-111", "avail-bits-111-pte", "avail-bits-111-unmap", 0b111),
        ("avail-bits-010", "avail-bits-010-pte", "avail-bits-010-unmap", 0b010),
    ];
    for (name, pte_name, unmap_name, bits) in cases {
        let Some(handle) = env.map_ok(name, h.va(), GNTMAP_HOST_MAP | gntmap_guest_avail(bits), REF_RW)
        else {
            continue;
        };
        let pte = pte_of(h.va());
        env.t.check_eq(pte_name, (pte & PTE_AVAIL) >> 9, bits as u64);
        // The unmap matches the mapping whatever its avail bits.
        env.unmap_ok(unmap_name, h.va(), 0, handle);
    }
    // Bits above 18 are dropped; nothing else of the PTE changes.
    let flags = GNTMAP_HOST_MAP | gntmap_guest_avail(0b1_1000) | (1 << 31);
    if let Some(handle) = env.map_ok("avail-bits-high", h.va(), flags, REF_RW) {
        let pte = pte_of(h.va());
        env.t.check(
            "avail-bits-high-pte",
            Outcome::ensure(pte & PTE_AVAIL == 0, format_args!("pte {pte:#x}")),
        );
        env.unmap_ok("avail-bits-high-unmap", h.va(), 0, handle);
    }

    // With GNTMAP_contains_pte, over an entry that maps another page with avail bits:
    // Xen writes a whole new entry, so the old bits are not kept.
    let k = env.k;
    // SAFETY: `h2`'s address is a reserved slot; it maps the decoy only until the grant
    // mapping replaces it.
    let pre = unsafe { mmu::set_kernel_pte(h2.va(), k.pte(mmu::KERNEL_RO | (0b010 << 9))) };
    env.t.check("avail-bits-pte-preset", pre);
    let flags = GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE | gntmap_guest_avail(0b001);
    if let Some(handle) = env.map_ok("avail-bits-contains-pte", h2_pte, flags, REF_RW) {
        let pte = pte_of(h2.va());
        env.t.check(
            "avail-bits-contains-pte-replaced",
            Outcome::ensure(
                pte_mfn(pte) == env.g.mfn && (pte & PTE_AVAIL) >> 9 == 0b001,
                format_args!("pte {pte:#x}"),
            ),
        );
        env.unmap_ok("avail-bits-contains-pte-unmap", h2_pte, 0, handle);
        // The unmap leaves the entry empty, not as it was before the map.
        env.t.check("avail-bits-contains-pte-empty", Outcome::eq(pte_of(h2.va()), 0));
    }
    // SAFETY: the slot goes back to being unmapped.
    let _ = unsafe { mmu::set_kernel_pte(h2.va(), 0) };
    env.t.check("avail-bits-flags-after", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS));
}

// ---- GNTMAP_device_map ----

fn device_map(env: &mut Env) {
    let (g, gt) = (env.g, env.gt);
    let (ret, op) = env.map(0, GNTMAP_DEVICE_MAP, REF_RW);
    if !env.t.check("map-device", op_status(ret, op.status, GNTST_OKAY)) {
        return;
    }
    env.t.check("map-device-bus-addr", Outcome::eq(op.dev_bus_addr, g.maddr()));
    env.t.check("map-device-flags", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING));
    let (ret, st) = env.unmap(0, g.maddr() + mmu::PAGE_SIZE, op.handle);
    env.t.check("unmap-device-wrong-bus-addr", op_status(ret, st, GNTST_BAD_DEV_ADDR));
    // Naming only a host address leaves the device mapping alone.
    let (ret, st) = env.unmap(env.h.va(), 0, op.handle);
    env.t.check(
        "unmap-device-by-host-addr",
        all([
            op_status(ret, st, GNTST_OKAY),
            flags_are(gt, REF_RW, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING),
        ]),
    );
    env.unmap_ok("unmap-device", 0, g.maddr(), op.handle);
    env.t.check("unmap-device-flags", flags_are(gt, REF_RW, GTF_PERMIT_ACCESS));
}

// ---- The revocation rule ----

fn revocation(env: &mut Env) {
    let (g, h, h2, gt) = (env.g, env.h, env.h2, env.gt);
    let Some(rw) = env.map_ok("revoke-map", h.va(), GNTMAP_HOST_MAP, REF_RW) else { return };
    // The granter may end access only while neither busy bit is set.
    let end = gt.end_access(REF_RW);
    env.t.check(
        "revoke-refused-while-mapped",
        Outcome::ensure(end == Err(GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING), format_args!("{end:?}")),
    );
    // A granter that clears the flags anyway revokes nothing.
    gt.set_flags(REF_RW, 0);
    let wrote = poke(h.va() + 32, 0x7777);
    env.t.check(
        "revoke-forced-mapping-stays",
        all([Outcome::from(wrote), Outcome::ok_eq(peek(g.va() + 32), 0x7777), flags_are(gt, REF_RW, 0)]),
    );
    // While the grant is in use Xen does not read the entry again.
    let ro = env.map_ok("revoke-forced-map-again", h2.va(), GNTMAP_HOST_MAP | GNTMAP_READONLY, REF_RW);
    env.t.check("revoke-forced-flags-not-set", flags_are(gt, REF_RW, 0));
    if let Some(ro) = ro {
        env.unmap_ok("revoke-forced-unmap-again", h2.va(), 0, ro);
    }
    env.unmap_ok("revoke-forced-unmap", h.va(), 0, rw);
    env.t.check("revoke-forced-flags-after", flags_are(gt, REF_RW, 0));
    let (ret, op) = env.map(h.va(), GNTMAP_HOST_MAP, REF_RW);
    env.t.check("revoke-forced-map-refused", op_status(ret, op.status, GNTST_GENERAL_ERROR));

    // The proper way: after the unmap, the compare-exchange succeeds.
    gt.grant(REF_RW, GrantEntryV1::permit_access(OWN_DOMID, g.mfn as u32, false));
    if let Some(rw) = env.map_ok("revoke-map-2", h.va(), GNTMAP_HOST_MAP, REF_RW) {
        env.unmap_ok("revoke-unmap-2", h.va(), 0, rw);
    }
    env.t.check("revoke-after-unmap", Outcome::ensure(gt.end_access(REF_RW).is_ok(), "refused"));
    let (ret, op) = env.map(h.va(), GNTMAP_HOST_MAP, REF_RW);
    env.t.check("revoke-ended-map-refused", op_status(ret, op.status, GNTST_GENERAL_ERROR));
    gt.grant(REF_RW, GrantEntryV1::permit_access(OWN_DOMID, g.mfn as u32, false));
}

// ---- GNTTABOP_copy ----

fn copy(env: &mut Env) {
    let gt = env.gt;
    let (Ok(s), Ok(d)) = (mmu::alloc(), mmu::alloc()) else {
        env.t.fail("copy-pages", "pool empty");
        return;
    };
    fill(&s, 2);
    fill(&d, 3);
    gt.grant(REF_SRC, GrantEntryV1::permit_access(OWN_DOMID, s.mfn as u32, true));
    gt.grant(REF_DST, GrantEntryV1::permit_access(OWN_DOMID, d.mfn as u32, false));
    let src_gref = |off| GnttabCopyPtr::gref(REF_SRC, OWN_DOMID, off);
    let dst_gref = |off| GnttabCopyPtr::gref(REF_DST, DOMID_SELF, off);
    let src_gmfn = |off| GnttabCopyPtr::gmfn(s.mfn, DOMID_SELF, off);
    let dst_gmfn = |off| GnttabCopyPtr::gmfn(d.mfn, DOMID_SELF, off);

    // gref -> gmfn, a whole page.
    let (ret, st) = env.copy1(src_gref(0), dst_gmfn(0), 4096, GNTCOPY_SOURCE_GREF);
    env.t.check(
        "copy-gref-to-gmfn",
        all([op_status(ret, st, GNTST_OKAY), same_bytes(s.va(), 0, d.va(), 0, 4096)]),
    );
    env.t.check(
        "copy-leaves-flags",
        all([
            flags_are(gt, REF_SRC, GTF_PERMIT_ACCESS | GTF_READONLY),
            flags_are(gt, REF_DST, GTF_PERMIT_ACCESS),
        ]),
    );

    // gmfn -> gref, at offsets: only the range changes.
    fill(&s, 4);
    fill(&d, 5);
    let before = (checksum(d.va(), 0, 200), checksum(d.va(), 1200, 4096 - 1200));
    let (ret, st) = env.copy1(src_gmfn(100), dst_gref(200), 1000, GNTCOPY_DEST_GREF);
    let after = (checksum(d.va(), 0, 200), checksum(d.va(), 1200, 4096 - 1200));
    env.t.check(
        "copy-gmfn-to-gref-offsets",
        all([
            op_status(ret, st, GNTST_OKAY),
            same_bytes(s.va(), 100, d.va(), 200, 1000),
            Outcome::ensure(before == after, "bytes outside the range changed"),
        ]),
    );
    // gref -> gref, and up to the very end of the page.
    fill(&d, 6);
    let (ret, st) = env.copy1(src_gref(4000), dst_gref(0), 96, GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF);
    env.t.check(
        "copy-gref-to-gref",
        all([op_status(ret, st, GNTST_OKAY), same_bytes(s.va(), 4000, d.va(), 0, 96)]),
    );
    // gmfn -> gmfn: no grant at all, both our own frames.
    fill(&d, 7);
    let (ret, st) = env.copy1(src_gmfn(0), dst_gmfn(0), 4096, 0);
    env.t.check(
        "copy-gmfn-to-gmfn",
        all([op_status(ret, st, GNTST_OKAY), same_bytes(s.va(), 0, d.va(), 0, 4096)]),
    );
    // Our own id works for a grant's domain too.
    let (ret, st) =
        env.copy1(GnttabCopyPtr::gref(REF_SRC, OWN_DOMID, 0), dst_gmfn(8), 8, GNTCOPY_SOURCE_GREF);
    env.t.check("copy-gref-own-id", op_status(ret, st, GNTST_OKAY));
    let (ret, st) = env.copy1(src_gref(0), dst_gmfn(0), 0, GNTCOPY_SOURCE_GREF);
    env.t.check("copy-len-0", op_status(ret, st, GNTST_OKAY));

    // Refusals, each in its own status.
    let (l4, xf, bad) = (mmu::bootstrap_l4().mfn, env.xen_frame, env.bad_mfn);
    let sg = GNTCOPY_SOURCE_GREF;
    gt.grant(REF_SCRATCH, GrantEntryV1 { flags: 0, domid: OWN_DOMID, frame: s.mfn as u32 });
    env.copy_check("copy-cross-page-source", src_gref(4000), dst_gmfn(0), 200, sg, GNTST_BAD_COPY_ARG);
    env.copy_check("copy-cross-page-dest", src_gref(0), dst_gmfn(4000), 200, sg, GNTST_BAD_COPY_ARG);
    let ro_dst = GnttabCopyPtr::gref(REF_SRC, OWN_DOMID, 0);
    env.copy_check("copy-dest-ro-grant", src_gmfn(0), ro_dst, 8, GNTCOPY_DEST_GREF, GNTST_GENERAL_ERROR);
    let own_id = GnttabCopyPtr::gmfn(s.mfn, OWN_DOMID, 0);
    env.copy_check("copy-gmfn-own-id", own_id, dst_gmfn(0), 8, 0, GNTST_PERMISSION_DENIED);
    let other = GnttabCopyPtr::gref(REF_SRC, NO_SUCH_DOMID, 0);
    env.copy_check("copy-gref-bad-domain", other, dst_gmfn(0), 8, sg, GNTST_BAD_DOMAIN);
    let past = GnttabCopyPtr::gref(env.nr_entries, OWN_DOMID, 0);
    env.copy_check("copy-gref-past-table", past, dst_gmfn(0), 8, sg, GNTST_BAD_GNTREF);
    let invalid = GnttabCopyPtr::gref(REF_SCRATCH, OWN_DOMID, 0);
    env.copy_check("copy-gref-not-granted", invalid, dst_gmfn(0), 8, sg, GNTST_GENERAL_ERROR);
    let frame = |mfn| GnttabCopyPtr::gmfn(mfn, DOMID_SELF, 0);
    env.copy_check("copy-source-frame-of-xen", frame(xf), dst_gmfn(0), 8, 0, GNTST_BAD_PAGE);
    env.copy_check("copy-dest-frame-of-xen", src_gmfn(0), frame(xf), 8, 0, GNTST_BAD_PAGE);
    env.copy_check("copy-source-past-ram", frame(bad), dst_gmfn(0), 8, 0, GNTST_BAD_PAGE);
    // A page table may be read from, not written to.
    env.copy_check("copy-dest-page-table", src_gmfn(0), frame(l4), 8, 0, GNTST_GENERAL_ERROR);
    env.copy_check("copy-source-page-table", frame(l4), dst_gmfn(0), 8, 0, GNTST_OKAY);
    env.t.check(
        "copy-refusals-leave-flags",
        all([
            flags_are(gt, REF_SRC, GTF_PERMIT_ACCESS | GTF_READONLY),
            flags_are(gt, REF_DST, GTF_PERMIT_ACCESS),
        ]),
    );

    // A batch: separate statuses, the call returns 0; later entries still run.
    fill(&d, 8);
    let mut ops = [
        GnttabCopy::new(src_gref(0), dst_gmfn(0), 64, GNTCOPY_SOURCE_GREF),
        GnttabCopy::new(src_gref(0), dst_gmfn(4090), 64, GNTCOPY_SOURCE_GREF),
        GnttabCopy::new(src_gmfn(64), dst_gref(64), 64, GNTCOPY_DEST_GREF),
    ];
    let ret = env.copy_batch(&mut ops);
    env.t.check(
        "copy-batch",
        all([
            Outcome::ok_eq(ret, 0),
            Outcome::eq(ops.map(|o| o.status), [GNTST_OKAY, GNTST_BAD_COPY_ARG, GNTST_OKAY]),
            same_bytes(s.va(), 0, d.va(), 0, 128),
        ]),
    );
    for r in [REF_SRC, REF_DST, REF_SCRATCH] {
        let _ = gt.end_access(r);
    }
    // SAFETY: nothing refers to the copy pages any more.
    let freed = unsafe { mmu::free(s).and_then(|()| mmu::free(d)) };
    env.t.check("copy-pages-freed", freed);
}

// ---- unmap_and_replace ----

fn unmap_and_replace(env: &mut Env) {
    let (g, h, h2, gt) = (env.g, env.h, env.h2, env.gt);
    let Ok(r) = mmu::alloc() else {
        env.t.fail("replace-page", "pool empty");
        return;
    };
    fill(&r, 9);
    // The replacement mapping sits at the second slot.
    // SAFETY: `h2`'s address is a reserved slot.
    let pre = unsafe { mmu::set_kernel_pte(h2.va(), r.pte(KERNEL_RW)) };
    env.t.check("replace-preset", pre);
    let Some(handle) = env.map_ok("replace-map", h.va(), GNTMAP_HOST_MAP, REF_RW) else { return };
    let mut op = [GnttabUnmapAndReplace::new(h.va(), h2.va(), handle)];
    // SAFETY: both addresses are slots; the grant mapping goes and `r`'s mapping moves.
    let ret = unsafe { env.xen.gnttab_unmap_and_replace(&mut op) }.map(|()| 0);
    env.t.check(
        "unmap-and-replace",
        all([
            op_status(ret, op[0].status, GNTST_OKAY),
            Outcome::eq(pte_mfn(pte_of(h.va())), r.mfn),
            Outcome::eq(pte_of(h2.va()), 0),
            Outcome::ok_eq(peek(h.va() + 8), pattern(9, 1)),
            flags_are(gt, REF_RW, GTF_PERMIT_ACCESS),
        ]),
    );
    // SAFETY: the slot goes back to being unmapped.
    let _ = unsafe { mmu::set_kernel_pte(h.va(), 0) };

    // new_addr 0: a plain unmap.
    if let Some(handle) = env.map_ok("replace-map-2", h.va(), GNTMAP_HOST_MAP, REF_RW) {
        let mut op = [GnttabUnmapAndReplace::new(h.va(), 0, handle)];
        // SAFETY: the slot's grant mapping goes.
        let ret = unsafe { env.xen.gnttab_unmap_and_replace(&mut op) }.map(|()| 0);
        env.t.check(
            "unmap-and-replace-with-nothing",
            all([op_status(ret, op[0].status, GNTST_OKAY), Outcome::eq(pte_of(h.va()), 0)]),
        );
    }
    // Not for a mapping made through its PTE.
    let flags = GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE;
    if let Some(handle) = env.map_ok("replace-map-pte", env.h_pte, flags, REF_RW) {
        // SAFETY: the slot maps `r` again; Xen must refuse to move it.
        let _ = unsafe { mmu::set_kernel_pte(h2.va(), r.pte(KERNEL_RW)) };
        let mut op = [GnttabUnmapAndReplace::new(env.h_pte, h2.va(), handle)];
        // SAFETY: both are slots.
        let ret = unsafe { env.xen.gnttab_unmap_and_replace(&mut op) }.map(|()| 0);
        env.t.check(
            "unmap-and-replace-pte-refused",
            all([
                op_status(ret, op[0].status, GNTST_GENERAL_ERROR),
                Outcome::eq(pte_mfn(pte_of(h.va())), g.mfn),
            ]),
        );
        env.unmap_ok("replace-unmap-pte", env.h_pte, 0, handle);
        // SAFETY: the slot goes back to being unmapped.
        let _ = unsafe { mmu::set_kernel_pte(h2.va(), 0) };
    }
    // SAFETY: no slot maps `r` any more.
    env.t.check("replace-page-freed", unsafe { mmu::free(r) });
}

// ---- GNTTABOP_transfer ----

fn transfer(env: &mut Env) {
    let gt = env.gt;
    // Frames that are not ours to give: refused in `status`.
    let frame0 = env.gt_frame0();
    for (name, mfn) in [
        ("transfer-past-ram", env.bad_mfn),
        ("transfer-frame-of-xen", env.xen_frame),
        ("transfer-table-frame", frame0),
    ] {
        let mut x = [GnttabTransfer::new(mfn, OWN_DOMID, REF_XFER)];
        // SAFETY: Xen refuses these frames before taking anything away.
        let ret = unsafe { env.xen.gnttab_transfer(&mut x) }.map(|()| 0);
        env.t.check(name, op_status(ret, x[0].status, GNTST_BAD_PAGE));
    }

    // A page given to ourselves through an accept_transfer entry: it must be mapped
    // nowhere (Xen takes it only with no reference but the allocation's).
    let Ok(p) = mmu::alloc() else {
        env.t.fail("transfer-page", "pool empty");
        return;
    };
    fill(&p, 10);
    let sum = checksum(p.va(), 0, 4096);
    // SAFETY: nothing refers to the page; it is mapped again below.
    if !env.t.check("transfer-unmap-page", unsafe { mmu::unmap(&p) }) {
        return;
    }
    gt.grant(REF_XFER, GrantEntryV1::accept_transfer(OWN_DOMID, p.pfn as u32));
    let mut x = [GnttabTransfer::new(p.mfn, OWN_DOMID, REF_XFER)];
    // SAFETY: the frame is unmapped and unused; it comes back to us through REF_XFER.
    let ret = unsafe { env.xen.gnttab_transfer(&mut x) }.map(|()| 0);
    let e = gt.get(REF_XFER);
    let new_mfn = e.frame as u64;
    println!("gnttab-self: transfer: entry {e:?}, frame was {:#x}", p.mfn);
    env.t.check(
        "transfer-to-self",
        all([
            op_status(ret, x[0].status, GNTST_OKAY),
            Outcome::eq(e.flags, GTF_ACCEPT_TRANSFER | GTF_TRANSFER_COMMITTED | GTF_TRANSFER_COMPLETED),
        ]),
    );
    let ok = x[0].status == GNTST_OKAY;
    if ok {
        env.t.check("transfer-m2p", Outcome::eq(mmu::mfn_to_pfn(new_mfn), Some(p.pfn)));
        if new_mfn != p.mfn {
            // SAFETY: Xen says the pfn is backed by this frame now.
            let _ = unsafe { mmu::set_p2m(p.pfn, new_mfn) };
        }
    }
    // The page (ours again, or still ours) goes back to its address.
    let mapped = mmu::make_writable(&p);
    env.t.check("transfer-page-usable", mapped);
    if ok {
        env.t.check("transfer-data-kept", Outcome::eq(checksum(p.va(), 0, 4096).ok(), sum.ok()));
    }
    gt.clear(REF_XFER);
    let p = Page { pfn: p.pfn, mfn: mmu::pfn_to_mfn(p.pfn).unwrap_or(p.mfn) };
    // SAFETY: nothing refers to the page any more.
    env.t.check("transfer-page-freed", unsafe { mmu::free(p) });
}

// ---- swap_grant_ref, dump_table, cache_flush, unknown commands ----

fn other_ops(env: &mut Env) {
    let (g, h, gt) = (env.g, env.h, env.gt);
    let xen = &env.xen;

    let a = GrantEntryV1::permit_access(OWN_DOMID, g.mfn as u32, false);
    let b = GrantEntryV1::permit_access(OWN_DOMID, env.k.mfn as u32, true);
    gt.grant(REF_SWAP_A, a);
    gt.grant(REF_SWAP_B, b);
    let st = xen.gnttab_swap_grant_ref(REF_SWAP_A, REF_SWAP_B);
    env.t.check(
        "swap-grant-ref",
        all([
            Outcome::ok_eq(st, GNTST_OKAY),
            Outcome::eq(gt.get(REF_SWAP_A), b),
            Outcome::eq(gt.get(REF_SWAP_B), a),
        ]),
    );
    env.t.check(
        "swap-grant-ref-same",
        Outcome::ok_eq(xen.gnttab_swap_grant_ref(REF_SWAP_A, REF_SWAP_A), GNTST_OKAY),
    );
    env.t.check(
        "swap-grant-ref-past-table",
        Outcome::ok_eq(xen.gnttab_swap_grant_ref(REF_SWAP_A, env.nr_entries), GNTST_BAD_GNTREF),
    );
    if let Some(handle) = env.map_ok("swap-map", h.va(), GNTMAP_HOST_MAP, REF_SWAP_B) {
        let st = env.xen.gnttab_swap_grant_ref(REF_SWAP_A, REF_SWAP_B);
        env.t.check("swap-grant-ref-busy", Outcome::ok_eq(st, GNTST_EAGAIN));
        let st = env.xen.gnttab_set_version(2);
        env.t.check("set-version-while-mapped", expect_err(st, Errno::EBUSY));
        env.unmap_ok("swap-unmap", h.va(), 0, handle);
    }
    let xen = &env.xen;

    env.t.check("dump-table", expect_err(xen.gnttab_dump_table(DOMID_SELF), Errno::ENOSYS));

    let flush = |f: GnttabCacheFlush| {
        let mut f = [f];
        // SAFETY: a cache flush changes no memory.
        unsafe { xen.grant_table_op(GNTTABOP_CACHE_FLUSH, &mut f) }
    };
    let ga = g.maddr();
    let cases = [
        ("cache-flush-clean", GnttabCacheFlush::new(ga, 0, 64, GNTTAB_CACHE_CLEAN), Ok(0)),
        (
            "cache-flush-clean-inval",
            GnttabCacheFlush::new(ga, 0, 4096, GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_INVAL),
            Ok(0),
        ),
        ("cache-flush-inval", GnttabCacheFlush::new(ga, 0, 64, GNTTAB_CACHE_INVAL), Err(Errno::EOPNOTSUPP)),
        ("cache-flush-nothing", GnttabCacheFlush::new(ga, 0, 0, GNTTAB_CACHE_CLEAN), Ok(0)),
        (
            "cache-flush-gref",
            GnttabCacheFlush::new(REF_RW as u64, 0, 64, GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_SOURCE_GREF),
            Err(Errno::EINVAL),
        ),
        (
            "cache-flush-cross-page",
            GnttabCacheFlush::new(ga, 4000, 200, GNTTAB_CACHE_CLEAN),
            Err(Errno::EINVAL),
        ),
        (
            "cache-flush-frame-of-xen",
            GnttabCacheFlush::new(env.xen_frame << 12, 0, 64, GNTTAB_CACHE_CLEAN),
            Err(Errno::EPERM),
        ),
        (
            "cache-flush-past-ram",
            GnttabCacheFlush::new(env.bad_mfn << 12, 0, 64, GNTTAB_CACHE_CLEAN),
            Err(Errno::EINVAL),
        ),
    ];
    for (name, f, want) in cases {
        env.t.check(name, Outcome::eq(flush(f), want));
    }

    for (name, cmd) in [("unknown-cmd-13", 13), ("unknown-cmd-999", 999)] {
        // SAFETY: an unknown command reads nothing.
        let ret = unsafe { gnttab_raw(xen, cmd, 0, 1) };
        env.t.check(name, expect_ret(ret, Errno::ENOSYS));
    }
    let mut q = GnttabQuerySize { dom: DOMID_SELF, ..Default::default() };
    // SAFETY: bits above the command are refused for every command but cache_flush.
    let ret = unsafe { gnttab_raw(xen, GNTTABOP_QUERY_SIZE | (1 << 12), &raw mut q as u64, 1) };
    env.t.check("cmd-high-bits", expect_ret(ret, Errno::EINVAL));
}

// ---- The end: nothing mapped, nothing granted, every page usable ----

fn cleanup(env: &mut Env, table_page: Page) {
    let gt = env.gt;
    let slots_empty = pte_of(env.h.va()) & PTE_PRESENT == 0 && pte_of(env.h2.va()) & PTE_PRESENT == 0;
    env.t.check("end-slots-unmapped", Outcome::ensure(slots_empty, "a slot still maps something"));
    let busy: u32 =
        USED_REFS.iter().filter(|&&r| gt.flags(r) & (GTF_READING | GTF_WRITING) != 0).count() as u32;
    env.t.check("end-no-grant-in-use", Outcome::eq(busy, 0));
    let refused = USED_REFS.iter().filter(|&&r| gt.end_access(r).is_err()).count();
    env.t.check("end-access-all", Outcome::eq(refused, 0));
    for r in USED_REFS {
        gt.clear(r);
    }
    let used = (0..ENTRIES_PER_FRAME).filter(|&r| gt.get(r) != GrantEntryV1::default()).count();
    env.t.check("end-table-empty", Outcome::eq(used, 0));
    let reserved = (0..GNTTAB_NR_RESERVED_ENTRIES).all(|r| gt.get(r) == GrantEntryV1::default());
    env.t.check("end-reserved-untouched", reserved);

    // Every page back at its address, writable, and back in the pool.
    let mut usable = Outcome::Pass;
    for p in [env.g, env.h, env.h2, env.k, table_page] {
        let back = match mmu::make_writable(&p) {
            Ok(()) => Outcome::ok_eq(poke(p.va(), 0xabcd).and_then(|()| peek(p.va())), 0xabcd),
            Err(e) => Outcome::fail(format_args!("pfn {:#x}: {e}", p.pfn)),
        };
        if !back.passed() {
            usable = back;
        }
        // SAFETY: nothing refers to the page any more (the table is not used past here).
        let _ = unsafe { mmu::free(p) };
    }
    env.t.check("end-pages-usable", usable);
    let s = mmu::stats();
    env.t.check("end-pool-nothing-leaked", Outcome::ensure(s.in_use == 0, format_args!("{s:?}")));
}

// ---- Arguments Xen refuses outright ----

fn hostile(env: &mut Env) {
    // A count with the top bit set is negative for Xen: refused before any entry is
    // read. The one entry given ends a page whose successor is unmapped, so that a
    // hypervisor taking the count as 2^31 entries faults on the second instead of
    // copying whatever follows.
    let (Ok(a), Ok(b)) = (mmu::alloc(), mmu::alloc()) else {
        env.t.fail("copy-count-negative", "pool empty");
        return;
    };
    if b.pfn == a.pfn + 1 {
        // SAFETY: `b` is fresh from the pool: nothing refers to it.
        let _ = unsafe { mmu::unmap(&b) };
        let at = a.va() + mmu::PAGE_SIZE - size_of::<GnttabCopy>() as u64;
        let own = GnttabCopyPtr::gmfn(a.mfn, DOMID_SELF, 0);
        // SAFETY: the end of page `a`, ours and mapped writable, holds no Rust object.
        unsafe { (at as *mut GnttabCopy).write_volatile(GnttabCopy::new(own, own, 8, 0)) };
        // SAFETY: the entry copies 8 bytes of `a` onto themselves; Xen reads nothing.
        let ret = unsafe { gnttab_raw(&env.xen, GNTTABOP_COPY, at, 1 << 31) };
        env.t.check("copy-count-negative", expect_ret(ret, Errno::EINVAL));
    } else {
        env.t.skip("copy-count-negative", "no two neighbouring pages");
    }
    // SAFETY: nothing refers to the pages any more.
    let freed = unsafe { mmu::free(a).and_then(|()| mmu::free(b)) };
    env.t.check("hostile-pages-freed", freed);
}

#[cfg(not(target_os = "none"))]
fn main() {}
