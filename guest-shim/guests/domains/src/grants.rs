// SPDX-License-Identifier: MIT OR Apache-2.0
//! dom0's side of the grant phase (`grants=`); the references, the ring page and the
//! turns are in [`crate::grant_ring`] (shared with `domu-peer`, whose `grants.rs` is
//! the other side).
//!
//! [`prepare`], before the peers are served: our own grant table (`setup_table`, frame
//! 0 mapped), a page per peer granted read-write to it (ref 20 + N: known bytes in the
//! first half, the second half for the peer to copy into), ref 29 granted to domain 77
//! and ref 30 left empty; and what needs no other domain (so it runs on Xen 4.17 too,
//! with `peers=0`): a map of domain 77's grant (`GNTST_bad_domain`), an unmap of a bad
//! handle (`GNTST_bad_handle`), a map and a copy of our own grant made out to domain 1
//! (`GNTST_general_error`: the entry names another domain), a copy from domain 77
//! (`GNTST_bad_domain`).
//!
//! [`peer_phase`], for each peer with a `grants=` flag, after its round trips, in
//! turns with it (its steps in brackets):
//! 1. Map its ref 8 (`GNTMAP_host_map`, `dom` = its id) at a kernel address; the PTE,
//!    `dev_bus_addr` (the frame the peer wrote in the page) and the peer's magic
//!    number; write the hello. [It checks the entry is busy and cannot be ended.]
//! 2. The exchange of messages through the ring (the peer starts).
//! 3. Ref 9 mapped read-only (the PTE read-only, the known bytes), mapped writable
//!    (`GNTST_general_error`), copied from (two copies at offsets, checked) and copied
//!    into (`GNTST_general_error`); our data copied into ref 10 (two copies, which the
//!    peer checks); refusals: refs past its table and far beyond it
//!    (`GNTST_bad_gntref`), made out to domain 77 or to nobody (`GNTST_general_error`),
//!    for maps and copies; a stale handle (`GNTST_bad_handle`). [It checks our copy,
//!    copies with our grant both ways, tries what it must be refused.]
//! 4. What the peer copied into our page, our entry idle again; ref 8 unmapped (the PTE
//!    gone). [It ends access to its entries, which succeeds now.]
//! 5. A map of the ended ref 8 and a copy from it: `GNTST_general_error`. For a peer
//!    that will crash: [it grants ref 8 again over known bytes] we map it again and
//!    keep it ([`Held`]) through the crash, then [`release_held`] reads it, copies
//!    from it and unmaps it.

use guest_shim::events::{self, Bitmaps, EvtchnPort};
use guest_shim::mmu::{self, Page};
use guest_shim::pt::{PTE_PRESENT, PTE_RW, pte_mfn};
use guest_shim::pv_abi::grant_table::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_HOST_MAP, GNTMAP_READONLY, GNTST_BAD_DOMAIN,
    GNTST_BAD_GNTREF, GNTST_BAD_HANDLE, GNTST_GENERAL_ERROR, GNTST_OKAY, GTF_PERMIT_ACCESS, GTF_READONLY,
    GnttabCopy, GnttabCopyPtr, GrantEntryV1, GrantHandle, GrantRef,
};
use guest_shim::pv_abi::xen::{DOMID_SELF, DomId};
use guest_shim::report::all;
use guest_shim::{Hypercalls, Outcome, Tests, println, traps};

use crate::grant_ring::{
    self as gr, BAD_HANDLE, DOM0_HELLO, DOM0_REF_BASE, DOM0_REF_ELSEWHERE, FAR_REF, NO_SUCH_DOMAIN,
    REF_BLANK, REF_COPY, REF_ELSEWHERE, REF_RING, REF_RO, RingPage, Side, TURN_TIMEOUT, Table, flags_are,
    layout, seed, status_is, stream,
};
use crate::{MAX_PEERS, peer_check};

/// What [`prepare`] set up.
pub struct Dom0 {
    /// Our grant table (`None` after a FAIL: the peers' copies with us fail then).
    table: Option<Table>,
    /// The page granted to domain `i + 1`.
    given: [Page; MAX_PEERS],
    /// What we copy into a peer's grant.
    src: Page,
    /// Where copies from a peer's grants land.
    dst: Page,
    /// Where each peer's ring page is mapped.
    ring_slots: [Page; MAX_PEERS],
    /// Where the other maps go.
    slot: Page,
}

/// A peer's page still mapped, to be read after the peer crashed.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    va: u64,
    handle: GrantHandle,
    mfn: u64,
}

/// The known bytes of the first half of the page granted to `domid`.
fn given_byte(domid: DomId, i: u64) -> u8 {
    if i < 2048 { gr::pattern_byte(seed(stream::DOM0_PAGE, domid), i) } else { 0 }
}

/// Our table, pages and grants, and the checks that need no other domain (see the top
/// of the file); `None` (after a FAIL) without the pages.
pub fn prepare(t: &mut Tests, xen: Hypercalls) -> Option<Dom0> {
    if !t.check("pool-init", mmu::init()) {
        return None;
    }
    let pages = (|| -> Result<_, guest_shim::pv_abi::Errno> {
        Ok((
            [mmu::alloc()?, mmu::alloc()?, mmu::alloc()?],
            mmu::alloc()?,
            mmu::alloc()?,
            [gr::slot()?, gr::slot()?, gr::slot()?],
            gr::slot()?,
        ))
    })();
    let (given, src, dst, ring_slots, slot) = match pages {
        Ok(p) => p,
        Err(e) => {
            t.fail("grant-pages", e);
            return None;
        }
    };
    for (i, p) in given.iter().enumerate() {
        gr::fill(p, |b| given_byte(i as DomId + 1, b));
    }
    let table = match Table::setup(xen) {
        Ok(gt) => {
            t.pass("gnttab-setup-table");
            Some(gt)
        }
        Err(why) => {
            t.fail("gnttab-setup-table", why);
            None
        }
    };
    if let Some(gt) = table {
        for (i, p) in given.iter().enumerate() {
            gt.grant(
                DOM0_REF_BASE + i as GrantRef + 1,
                GrantEntryV1::permit_access(i as DomId + 1, p.mfn as u32, false),
            );
        }
        gt.grant(DOM0_REF_ELSEWHERE, GrantEntryV1::permit_access(NO_SUCH_DOMAIN, given[0].mfn as u32, true));
        println!(
            "domains: grant table of {} frame(s); refs 21-23 for domains 1-3, 29 for domain 77",
            gt.nr_frames
        );
        t.check(
            "gnttab-grant-entries",
            all((1..=MAX_PEERS as GrantRef)
                .map(|d| flags_are(gt, DOM0_REF_BASE + d, GTF_PERMIT_ACCESS))
                .chain([flags_are(gt, DOM0_REF_ELSEWHERE, GTF_PERMIT_ACCESS | GTF_READONLY)])),
        );
    }
    let g = Dom0 { table, given, src, dst, ring_slots, slot };
    alone(t, xen, &g);
    Some(g)
}

/// The checks that need no other domain.
fn alone(t: &mut Tests, xen: Hypercalls, g: &Dom0) {
    let ro = GNTMAP_HOST_MAP | GNTMAP_READONLY;
    t.check(
        "gnttab-map-absent-domain",
        map_refused(xen, g.slot.va(), ro, NO_SUCH_DOMAIN, REF_RING, GNTST_BAD_DOMAIN),
    );
    // SAFETY: the slot maps nothing Rust uses (nothing at all).
    let r = unsafe { gr::unmap(xen, g.slot.va(), BAD_HANDLE) };
    t.check("gnttab-unmap-bad-handle", status_is(r, GNTST_BAD_HANDLE));
    let to_dst = GnttabCopyPtr::gmfn(g.dst.mfn, DOMID_SELF, 0);
    let from = |dom, gref| GnttabCopy::new(GnttabCopyPtr::gref(gref, dom, 0), to_dst, 8, GNTCOPY_SOURCE_GREF);
    t.check("gnttab-copy-absent-domain", copy_one(xen, from(NO_SUCH_DOMAIN, REF_RING), GNTST_BAD_DOMAIN));
    if g.table.is_some() {
        // Our own entry, but made out to domain 1: not ours to use.
        let mine = DOM0_REF_BASE + 1;
        t.check(
            "gnttab-map-own-grant-for-domu",
            map_refused(xen, g.slot.va(), ro, 0, mine, GNTST_GENERAL_ERROR),
        );
        t.check("gnttab-copy-own-grant-for-domu", copy_one(xen, from(DOMID_SELF, mine), GNTST_GENERAL_ERROR));
    }
}

/// A check that one map at slot `va` gets `want` (a wrongly granted one is undone).
fn map_refused(xen: Hypercalls, va: u64, flags: u32, dom: DomId, gref: GrantRef, want: i16) -> Outcome {
    // SAFETY: `va` is a slot: nothing Rust uses is mapped there.
    let r = unsafe { gr::map(xen, va, flags, dom, gref) };
    if let Ok(o) = r
        && o.status == GNTST_OKAY
        && want != GNTST_OKAY
    {
        // SAFETY: as above.
        let _ = unsafe { gr::unmap(xen, va, o.handle) };
    }
    status_is(r.map(|o| o.status), want)
}

/// A check that one copy gets `want`.
fn copy_one(xen: Hypercalls, op: GnttabCopy, want: i16) -> Outcome {
    let mut ops = [op];
    // SAFETY: every local destination used here is one of our data pages, holding no
    // Rust object.
    let r = unsafe { gr::copy(xen, &mut ops) };
    status_is(r.map(|()| ops[0].status), want)
}

/// The grant phase with domain `domid` over `port` (see the top of the file); with
/// `hold`, the ring page granted again is returned still mapped.
pub fn peer_phase(
    t: &mut Tests,
    xen: Hypercalls,
    b: Bitmaps,
    g: &Dom0,
    domid: DomId,
    port: EvtchnPort,
    hold: bool,
) -> Option<Held> {
    let n = |what: &str| peer_check(domid, what);
    let mut link = gr::Link::new(xen, b, port);
    let slot = g.ring_slots[domid as usize - 1].va();

    // 1. The ring page, mapped; the turn goes over whether it worked or not (the peer
    // looks for the hello).
    let Some((page, handle)) = map_ring(t, xen, domid, slot) else {
        link.pass("a failed map");
        t.check(n("grant-protocol").as_str(), link.outcome());
        return None;
    };
    page.write32(layout::HELLO, DOM0_HELLO);
    link.pass("mapping the ring");

    // 2. The exchange; the turn comes back to us after it.
    let start = events::now();
    let ex = gr::exchange(&mut link, page, Side::Dom0, domid, false);
    let ms = (events::now() - start) / 1_000_000;
    println!(
        "domains: d{domid}: ring: {} sent, {} received in {} turns, {ms} ms",
        ex.sent, ex.received, ex.turns
    );
    if link.ok() {
        t.check(n("ring-exchange").as_str(), ex.outcome());
    }
    if !ex.holding {
        link.take("the end of the exchange", TURN_TIMEOUT);
    }

    // 3. Read-only grant, copies, refusals.
    if link.ok() {
        readonly_and_copies(t, xen, g, domid);
        refusals(t, xen, g, domid, page.read32(layout::NR_FRAMES));
        link.pass("our copies");
    }

    // 4. What the peer copied; the ring unmapped.
    if link.take("the peer's copies", TURN_TIMEOUT) {
        let given = g.given[domid as usize - 1];
        let out = seed(stream::DOMU_OUT, domid);
        let want = |i| if i < 2048 { given_byte(domid, i) } else { gr::pattern_byte(out, i - 2048) };
        // SAFETY: our own pool page, mapped, holding no Rust object.
        t.check(n("copy-from-peer-landed").as_str(), unsafe {
            gr::bytes_are(given.va(), mmu::PAGE_SIZE, want)
        });
        if let Some(gt) = g.table {
            t.check(
                n("own-grant-idle").as_str(),
                flags_are(gt, DOM0_REF_BASE + domid as GrantRef, GTF_PERMIT_ACCESS),
            );
        }
        // SAFETY: the slot holds the ring mapping; nothing uses it from here on.
        let r = unsafe { gr::unmap(xen, slot, handle) };
        t.check(n("unmap-ring").as_str(), status_is(r, GNTST_OKAY));
        let pte = mmu::lookup(slot).pte().unwrap_or(0);
        t.check(
            n("unmap-ring-pte").as_str(),
            Outcome::ensure(pte & PTE_PRESENT == 0, format_args!("pte {pte:#x}")),
        );
        link.pass("the unmap");
    }

    // 5. The ended ref; for a peer that will crash, the ref granted again and held.
    let mut held = None;
    if link.take("the peer's end of access", TURN_TIMEOUT) {
        let hm = GNTMAP_HOST_MAP;
        t.check(
            n("map-ended-ref").as_str(),
            map_refused(xen, slot, hm, domid, REF_RING, GNTST_GENERAL_ERROR),
        );
        let to_dst = GnttabCopyPtr::gmfn(g.dst.mfn, DOMID_SELF, 0);
        let op = GnttabCopy::new(GnttabCopyPtr::gref(REF_RING, domid, 0), to_dst, 8, GNTCOPY_SOURCE_GREF);
        t.check(n("copy-ended-ref").as_str(), copy_one(xen, op, GNTST_GENERAL_ERROR));
        if hold && link.pass("the ended ref") && link.take("the grant again", TURN_TIMEOUT) {
            held = hold_ring(t, xen, domid, slot);
        }
    }
    t.check(n("grant-protocol").as_str(), link.outcome());
    held
}

/// Step 1: maps the peer's ring page at `slot` and checks it; the page and handle, or
/// `None` (after a FAIL, with nothing left mapped).
fn map_ring(t: &mut Tests, xen: Hypercalls, domid: DomId, slot: u64) -> Option<(RingPage, GrantHandle)> {
    let n = |what: &str| peer_check(domid, what);
    // SAFETY: the slot's address maps nothing Rust uses.
    let m = unsafe { gr::map(xen, slot, GNTMAP_HOST_MAP, domid, REF_RING) };
    if !t.check(n("map-ring").as_str(), status_is(m.map(|o| o.status), GNTST_OKAY)) {
        return None;
    }
    let op = m.ok()?;
    let bus = op.dev_bus_addr;
    let pte = mmu::lookup(slot).pte().unwrap_or(0);
    let pte_ok = pte & (PTE_PRESENT | PTE_RW) == PTE_PRESENT | PTE_RW && pte_mfn(pte) == bus >> 12;
    let mut ok = t.check(
        n("map-ring-pte").as_str(),
        Outcome::ensure(pte_ok, format_args!("pte {pte:#x}, dev_bus_addr {bus:#x}")),
    );
    // SAFETY: the slot maps the peer's ring page writable (checked just above before
    // any access); only volatile accesses touch it.
    let page = unsafe { RingPage::new(slot) };
    if ok {
        ok =
            t.check(n("ring-magic").as_str(), Outcome::eq(page.read32(layout::MAGIC), gr::ring_magic(domid)));
        t.check(n("map-ring-bus-addr").as_str(), Outcome::eq(bus, page.read64(layout::MFN) << 12));
    }
    if !ok {
        // SAFETY: as above; nothing uses the mapping.
        let _ = unsafe { gr::unmap(xen, slot, op.handle) };
        return None;
    }
    Some((page, op.handle))
}

/// Step 3: the read-only grant and the copies.
fn readonly_and_copies(t: &mut Tests, xen: Hypercalls, g: &Dom0, domid: DomId) {
    let n = |what: &str| peer_check(domid, what);
    let va = g.slot.va();
    let ro_seed = seed(stream::RO, domid);
    // SAFETY: the slot's address maps nothing Rust uses.
    let m = unsafe { gr::map(xen, va, GNTMAP_HOST_MAP | GNTMAP_READONLY, domid, REF_RO) };
    if t.check(n("map-ro-grant").as_str(), status_is(m.map(|o| o.status), GNTST_OKAY))
        && let Ok(op) = m
    {
        let pte = mmu::lookup(va).pte().unwrap_or(0);
        let pte_ok = pte & (PTE_PRESENT | PTE_RW) == PTE_PRESENT && pte_mfn(pte) == op.dev_bus_addr >> 12;
        t.check(n("map-ro-grant-pte").as_str(), Outcome::ensure(pte_ok, format_args!("pte {pte:#x}")));
        if pte_ok {
            // SAFETY: the slot maps the granted page (checked above), read-only.
            let read = unsafe { gr::bytes_are(va, mmu::PAGE_SIZE, |i| gr::pattern_byte(ro_seed, i)) };
            t.check(n("map-ro-grant-read").as_str(), read);
        }
        // SAFETY: the slot's mapping is not used past here.
        let r = unsafe { gr::unmap(xen, va, op.handle) };
        t.check(n("unmap-ro-grant").as_str(), status_is(r, GNTST_OKAY));
        // SAFETY: as above.
        let r = unsafe { gr::unmap(xen, va, op.handle) };
        t.check(n("unmap-stale-handle").as_str(), status_is(r, GNTST_BAD_HANDLE));
    }
    let writable = map_refused(xen, va, GNTMAP_HOST_MAP, domid, REF_RO, GNTST_GENERAL_ERROR);
    t.check(n("map-ro-grant-writable").as_str(), writable);

    // From the read-only grant: the whole page, then 333 bytes from offset 777 to 5.
    fill_zero(&g.dst);
    let dst = |off| GnttabCopyPtr::gmfn(g.dst.mfn, DOMID_SELF, off);
    let ro = |off| GnttabCopyPtr::gref(REF_RO, domid, off);
    let mut ops = [
        GnttabCopy::new(ro(0), dst(0), 4096, GNTCOPY_SOURCE_GREF),
        GnttabCopy::new(ro(777), dst(5), 333, GNTCOPY_SOURCE_GREF),
    ];
    // SAFETY: the local destination is `dst`, a data page holding no Rust object.
    let r = unsafe { gr::copy(xen, &mut ops) };
    let want = |i: u64| {
        if (5..338).contains(&i) { gr::pattern_byte(ro_seed, i + 772) } else { gr::pattern_byte(ro_seed, i) }
    };
    t.check(
        n("copy-from-ro-grant").as_str(),
        all([
            status_is(r.map(|()| ops[0].status), GNTST_OKAY),
            status_is(r.map(|()| ops[1].status), GNTST_OKAY),
            // SAFETY: our own data page.
            unsafe { gr::bytes_are(g.dst.va(), mmu::PAGE_SIZE, want) },
        ]),
    );
    let src = |off| GnttabCopyPtr::gmfn(g.src.mfn, DOMID_SELF, off);
    let into_ro = GnttabCopy::new(src(0), ro(0), 8, GNTCOPY_DEST_GREF);
    t.check(n("copy-into-ro-grant").as_str(), copy_one(xen, into_ro, GNTST_GENERAL_ERROR));

    // Into the writable grant: our page, then its bytes 100..1100 at 3000 (the peer
    // checks the result, `copy_page_byte`).
    gr::fill(&g.src, |i| gr::pattern_byte(seed(stream::DOM0_OUT, domid), i));
    let rw = |off| GnttabCopyPtr::gref(REF_COPY, domid, off);
    let mut ops = [
        GnttabCopy::new(src(0), rw(0), 4096, GNTCOPY_DEST_GREF),
        GnttabCopy::new(src(100), rw(3000), 1000, GNTCOPY_DEST_GREF),
    ];
    // SAFETY: no local destination.
    let r = unsafe { gr::copy(xen, &mut ops) };
    t.check(
        n("copy-into-rw-grant").as_str(),
        all([
            status_is(r.map(|()| ops[0].status), GNTST_OKAY),
            status_is(r.map(|()| ops[1].status), GNTST_OKAY),
        ]),
    );
}

/// Step 3: maps and copies of the peer's grants that must be refused; `nr_frames` is
/// the size of its table (from the ring page).
fn refusals(t: &mut Tests, xen: Hypercalls, g: &Dom0, domid: DomId, nr_frames: u32) {
    let n = |what: &str| peer_check(domid, what);
    let ro = GNTMAP_HOST_MAP | GNTMAP_READONLY;
    let past = nr_frames.saturating_mul(512);
    let maps = [
        ("map-ref-past-table", past, GNTST_BAD_GNTREF),
        ("map-ref-far", FAR_REF, GNTST_BAD_GNTREF),
        ("map-ref-for-other", REF_ELSEWHERE, GNTST_GENERAL_ERROR),
        ("map-ref-not-granted", REF_BLANK, GNTST_GENERAL_ERROR),
    ];
    for (what, gref, want) in maps {
        t.check(n(what).as_str(), map_refused(xen, g.slot.va(), ro, domid, gref, want));
    }
    let to_dst = GnttabCopyPtr::gmfn(g.dst.mfn, DOMID_SELF, 0);
    let copies = [
        ("copy-ref-past-table", past, GNTST_BAD_GNTREF),
        ("copy-ref-far", FAR_REF, GNTST_BAD_GNTREF),
        ("copy-ref-for-other", REF_ELSEWHERE, GNTST_GENERAL_ERROR),
        ("copy-ref-not-granted", REF_BLANK, GNTST_GENERAL_ERROR),
    ];
    for (what, gref, want) in copies {
        let op = GnttabCopy::new(GnttabCopyPtr::gref(gref, domid, 0), to_dst, 8, GNTCOPY_SOURCE_GREF);
        t.check(n(what).as_str(), copy_one(xen, op, want));
    }
}

/// Step 5 for a peer that will crash: its ring page, granted again, mapped and kept.
fn hold_ring(t: &mut Tests, xen: Hypercalls, domid: DomId, slot: u64) -> Option<Held> {
    let n = |what: &str| peer_check(domid, what);
    // SAFETY: the slot's address maps nothing Rust uses.
    let m = unsafe { gr::map(xen, slot, GNTMAP_HOST_MAP, domid, REF_RING) };
    if !t.check(n("map-granted-again").as_str(), status_is(m.map(|o| o.status), GNTST_OKAY)) {
        return None;
    }
    let op = m.ok()?;
    let pte = mmu::lookup(slot).pte().unwrap_or(0);
    let mfn = op.dev_bus_addr >> 12;
    if !t.check(
        n("map-granted-again-pte").as_str(),
        Outcome::ensure(pte & PTE_PRESENT != 0 && pte_mfn(pte) == mfn, format_args!("pte {pte:#x}")),
    ) {
        return Some(Held { va: slot, handle: op.handle, mfn });
    }
    // Bytes 8..16 are the last words, written after the peer's last turn.
    let s = seed(stream::HOLD, domid);
    // SAFETY: the slot maps the granted page (checked above).
    let read = unsafe {
        all([
            gr::bytes_are(slot, 8, |i| gr::pattern_byte(s, i)),
            gr::bytes_are(slot + 16, 4080, |i| gr::pattern_byte(s, i + 16)),
        ])
    };
    t.check(n("map-granted-again-read").as_str(), read);
    Some(Held { va: slot, handle: op.handle, mfn })
}

/// After the peer crashed with `held` mapped: the mapping and the page are still
/// there (with the last words the peer wrote), a copy from the grant works only while
/// the domain is not being destroyed (`killed`: it is gone or dying, and Xen refuses
/// with `GNTST_bad_domain`), and the unmap succeeds.
pub fn release_held(t: &mut Tests, xen: Hypercalls, g: &Dom0, domid: DomId, held: Held, killed: bool) {
    let n = |what: &str| peer_check(domid, what);
    let pte = mmu::lookup(held.va).pte().unwrap_or(0);
    let mapped = pte & PTE_PRESENT != 0 && pte_mfn(pte) == held.mfn;
    t.check(
        n("held-pte-after-crash").as_str(),
        Outcome::ensure(mapped, format_args!("pte {pte:#x}, frame {:#x}", held.mfn)),
    );
    let s = seed(stream::HOLD, domid);
    let words = gr::last_words(domid).to_le_bytes();
    let want = |i: u64| if (8..16).contains(&i) { words[i as usize - 8] } else { gr::pattern_byte(s, i) };
    // SAFETY: only volatile reads through the held mapping of the peer's page, which
    // hold nothing to drop if they fault (a hypervisor that freed the frame may have
    // taken the mapping away).
    let seen = unsafe { traps::catch(|| gr::first_difference(held.va, mmu::PAGE_SIZE, want)) };
    t.check(
        n("held-page-after-crash").as_str(),
        match seen {
            Ok(None) => Outcome::Pass,
            Ok(Some((i, got, w))) => Outcome::fail(format_args!("byte {i} is {got:#04x}, expected {w:#04x}")),
            Err(trap) => Outcome::fail(format_args!("reading it faulted: {trap}")),
        },
    );
    let to_dst = GnttabCopyPtr::gmfn(g.dst.mfn, DOMID_SELF, 0);
    let op = GnttabCopy::new(GnttabCopyPtr::gref(REF_RING, domid, 0), to_dst, 8, GNTCOPY_SOURCE_GREF);
    let want = if killed { GNTST_BAD_DOMAIN } else { GNTST_OKAY };
    t.check(n("copy-after-crash").as_str(), copy_one(xen, op, want));
    // SAFETY: the slot's mapping is not used past here.
    let r = unsafe { gr::unmap(xen, held.va, held.handle) };
    t.check(n("unmap-after-crash").as_str(), status_is(r, GNTST_OKAY));
}

/// Zeroes our data page `p`.
fn fill_zero(p: &Page) {
    gr::fill(p, |_| 0);
}
