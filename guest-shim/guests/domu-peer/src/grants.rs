// SPDX-License-Identifier: MIT OR Apache-2.0
//! The domU's side of the grant phase (`grants=1`); the references, the ring page
//! and the turns are in [`crate::grant_ring`], dom0's side in `domains`.
//!
//! Before binding ([`prepare`]): the grant table (`setup_table`, frame 0 mapped), the
//! pages, the ring page's header, and the grants (refs 8-11, 12 left empty), made last
//! so that a failure on the way leaves nothing for dom0 to map. After the round trips
//! ([`phase`]), in turns with dom0 (dom0's steps in brackets):
//!
//! 1. [dom0 maps ref 8, writes its hello] Checks the hello; while dom0 has the page
//!    mapped the entry shows `GTF_reading|GTF_writing` and ending access fails. No
//!    hello: dom0 could not map, and both ends stop here.
//! 2. The exchange of messages through the ring (this side starts); the turn goes back
//!    to dom0 after it.
//! 3. [dom0 maps ref 9 read-only, copies from it and into ref 10, tries maps and copies
//!    it must be refused] Checks what dom0 copied into ref 10, that ref 9's page is
//!    intact and that no refused operation changed an entry; copies from and into
//!    dom0's grant (20 + our id) in one batch; tries what dom0 must not allow: dom0's
//!    refs made out to another domain or to nobody, a ref past dom0's table, domain
//!    77, a bad handle, dom0's frames by number.
//! 4. [dom0 unmaps ref 8] The entry's busy flags are gone and ending access succeeds
//!    (refs 9-11 too).
//! 5. Only with `then=crash`: [dom0's map of the ended ref was refused] ref 8 is
//!    granted again over a page of known bytes; after handing the turn over, the
//!    domain writes its last words in it. dom0 keeps it mapped through the crash.

use guest_shim::events::{Bitmaps, EvtchnPort, NS_PER_SEC};
use guest_shim::mmu::{self, Page};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::grant_table::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_HOST_MAP, GNTMAP_READONLY, GNTST_BAD_DOMAIN,
    GNTST_BAD_GNTREF, GNTST_BAD_HANDLE, GNTST_GENERAL_ERROR, GNTST_OKAY, GNTST_PERMISSION_DENIED,
    GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING, GnttabCopy, GnttabCopyPtr, GrantEntryV1,
    GrantRef,
};
use guest_shim::pv_abi::xen::{DOMID_SELF, DomId};
use guest_shim::report::all;
use guest_shim::{Hypercalls, Outcome, Tests, println};

use crate::grant_ring::{
    self as gr, DOM0_HELLO, DOM0_REF_BASE, DOM0_REF_BLANK, DOM0_REF_ELSEWHERE, FAR_REF, NO_SUCH_DOMAIN,
    REF_BLANK, REF_COPY, REF_ELSEWHERE, REF_RING, REF_RO, RingPage, Side, TURN_TIMEOUT, Table, flags_are,
    layout, seed, status_is, stream,
};

/// How long to wait for dom0 to start the phase: it serves every peer's round trips
/// first, then the grant phases one peer at a time.
const START_TIMEOUT: u64 = 60 * NS_PER_SEC;

/// What [`prepare`] set up.
pub struct Prep {
    table: Table,
    /// Granted as ref 8.
    ring: Page,
    /// Granted as refs 9 and 11.
    ro: Page,
    /// Granted as ref 10.
    copy: Page,
    /// Where the copy from dom0's grant lands.
    inbox: Page,
    /// What is copied into dom0's grant.
    outbox: Page,
    /// An address for maps that must be refused.
    slot: Page,
}

/// The grant table, the pages and the grants (see the top of the file); `None` after
/// a FAIL line.
pub fn prepare(t: &mut Tests, xen: Hypercalls, domid: DomId) -> Option<Prep> {
    if !t.check("pool-init", mmu::init()) {
        return None;
    }
    let table = match Table::setup(xen) {
        Ok(gt) => gt,
        Err(why) => {
            t.fail("gnttab-setup-table", why);
            return None;
        }
    };
    t.pass("gnttab-setup-table");
    let pages = (|| -> Result<_, Errno> {
        Ok((mmu::alloc()?, mmu::alloc()?, mmu::alloc()?, mmu::alloc()?, mmu::alloc()?, gr::slot()?))
    })();
    let (ring, ro, copy, inbox, outbox, slot) = match pages {
        Ok(p) => p,
        Err(e) => {
            t.fail("grant-pages", e);
            return None;
        }
    };
    gr::fill(&ro, |i| gr::pattern_byte(seed(stream::RO, domid), i));
    gr::fill(&outbox, |i| gr::pattern_byte(seed(stream::DOMU_OUT, domid), i));
    // SAFETY: a fresh pool page, mapped writable at its address, holding no Rust object.
    let page = unsafe { RingPage::new(ring.va()) };
    page.write32(layout::MAGIC, gr::ring_magic(domid));
    page.write64(layout::MFN, ring.mfn);
    page.write32(layout::NR_FRAMES, table.nr_frames);
    println!(
        "domu-peer: grant table of {} frame(s); ring page mfn {:#x}, refs {REF_RING}-{REF_ELSEWHERE} granted",
        table.nr_frames, ring.mfn
    );

    let to = |dom: DomId, p: &Page, ro: bool| GrantEntryV1::permit_access(dom, p.mfn as u32, ro);
    table.grant(REF_RING, to(0, &ring, false));
    table.grant(REF_RO, to(0, &ro, true));
    table.grant(REF_COPY, to(0, &copy, false));
    table.grant(REF_ELSEWHERE, to(NO_SUCH_DOMAIN, &ro, true));
    t.check(
        "grant-entries",
        all([
            flags_are(table, REF_RING, GTF_PERMIT_ACCESS),
            flags_are(table, REF_RO, GTF_PERMIT_ACCESS | GTF_READONLY),
            flags_are(table, REF_COPY, GTF_PERMIT_ACCESS),
            flags_are(table, REF_ELSEWHERE, GTF_PERMIT_ACCESS | GTF_READONLY),
            flags_are(table, REF_BLANK, 0),
        ]),
    );
    Some(Prep { table, ring, ro, copy, inbox, outbox, slot })
}

/// The grant phase with dom0 over `port` (see the top of the file); `hold`: the domain
/// crashes afterwards and dom0 keeps the ring page mapped through it.
pub fn phase(
    t: &mut Tests,
    xen: Hypercalls,
    b: Bitmaps,
    port: EvtchnPort,
    prep: Option<Prep>,
    domid: DomId,
    hold: bool,
) {
    let mut link = gr::Link::new(xen, b, port);
    // Even without grants, dom0's first turn (a failed map) is taken, so that its
    // event is not left to pass for the final ping.
    let started = link.take("the start of the grant phase", START_TIMEOUT);
    let Some(p) = prep else {
        t.fail("grant-phase", "nothing granted (see above)");
        t.check("grant-protocol", link.outcome());
        return;
    };
    // SAFETY: our own pool page, mapped writable at its address for good; only
    // volatile accesses touch it (ours and dom0's through its mapping).
    let page = unsafe { RingPage::new(p.ring.va()) };
    let gt = p.table;
    let hello = started && page.read32(layout::HELLO) == DOM0_HELLO;
    t.check("dom0-mapped-ring", Outcome::ensure(hello, "no hello from dom0 in the ring page"));
    if !hello {
        t.check("grant-protocol", link.outcome());
        return;
    }

    // 1. Revocation refused while mapped.
    let busy = GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING;
    t.check("ring-flags-while-mapped", flags_are(gt, REF_RING, busy));
    let ended = gt.end_access(REF_RING);
    t.check(
        "end-access-refused-while-mapped",
        all([
            Outcome::ensure(ended.is_err(), "the entry was ended under dom0's mapping"),
            flags_are(gt, REF_RING, busy),
        ]),
    );

    // 2. The exchange; then the turn goes to dom0.
    let start = guest_shim::events::now();
    let ex = gr::exchange(&mut link, page, Side::DomU, domid, true);
    let ms = (guest_shim::events::now() - start) / 1_000_000;
    println!("domu-peer: ring: {} sent, {} received in {} turns, {ms} ms", ex.sent, ex.received, ex.turns);
    if link.ok() {
        t.check("ring-exchange", ex.outcome());
    }
    if ex.holding {
        link.pass("the exchange");
    }

    // 3. dom0's copies and refusals; ours.
    if link.take("dom0's copies", TURN_TIMEOUT) {
        dom0_did(t, &p, domid);
        copies(t, xen, &p, domid);
        refusals(t, xen, &p);
        link.pass("our copies");
    }

    // 4. dom0 unmapped ref 8: access can end.
    if link.take("dom0's unmap", TURN_TIMEOUT) {
        t.check("ring-flags-after-unmap", flags_are(gt, REF_RING, GTF_PERMIT_ACCESS));
        t.check(
            "end-access-after-unmap",
            all([Outcome::from(gt.end_access(REF_RING)), flags_are(gt, REF_RING, 0)]),
        );
        let others = [REF_RO, REF_COPY, REF_ELSEWHERE].map(|r| gt.end_access(r));
        t.check("end-access-others", Outcome::eq(others, [Ok(()); 3]));
        link.pass("ending access");
    }

    // 5. Granted again, for dom0 to hold through our crash.
    if hold && link.take("the hold", TURN_TIMEOUT) {
        gr::fill(&p.ring, |i| gr::pattern_byte(seed(stream::HOLD, domid), i));
        gt.grant(REF_RING, GrantEntryV1::permit_access(0, p.ring.mfn as u32, false));
        t.check("ring-granted-again", flags_are(gt, REF_RING, GTF_PERMIT_ACCESS));
        if link.pass("granting again") {
            // dom0 looks at these bytes only after the crash.
            page.write64(layout::LAST_WORDS, gr::last_words(domid));
        }
    }
    t.check("grant-protocol", link.outcome());
}

/// What dom0 did in its turn: copied into ref 10, left ref 9 alone, changed no entry.
fn dom0_did(t: &mut Tests, p: &Prep, domid: DomId) {
    // SAFETY: our own pool page, mapped at its address, holding no Rust object.
    let landed = unsafe { gr::bytes_are(p.copy.va(), mmu::PAGE_SIZE, |i| gr::copy_page_byte(domid, i)) };
    t.check("dom0-copy-landed", landed);
    // SAFETY: as above.
    let intact =
        unsafe { gr::bytes_are(p.ro.va(), mmu::PAGE_SIZE, |i| gr::pattern_byte(seed(stream::RO, domid), i)) };
    t.check("ro-page-intact", intact);
    let gt = p.table;
    t.check(
        "flags-after-dom0",
        all([
            flags_are(gt, REF_RING, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING),
            flags_are(gt, REF_RO, GTF_PERMIT_ACCESS | GTF_READONLY),
            flags_are(gt, REF_COPY, GTF_PERMIT_ACCESS),
            flags_are(gt, REF_ELSEWHERE, GTF_PERMIT_ACCESS | GTF_READONLY),
            flags_are(gt, REF_BLANK, 0),
        ]),
    );
}

/// One batch with dom0's grant: its first half into our inbox, our outbox into its
/// second half (dom0 checks that one).
fn copies(t: &mut Tests, xen: Hypercalls, p: &Prep, domid: DomId) {
    let theirs = DOM0_REF_BASE + domid as GrantRef;
    let mut ops = [
        GnttabCopy::new(
            GnttabCopyPtr::gref(theirs, 0, 0),
            GnttabCopyPtr::gmfn(p.inbox.mfn, DOMID_SELF, 0),
            2048,
            GNTCOPY_SOURCE_GREF,
        ),
        GnttabCopy::new(
            GnttabCopyPtr::gmfn(p.outbox.mfn, DOMID_SELF, 0),
            GnttabCopyPtr::gref(theirs, 0, 2048),
            2048,
            GNTCOPY_DEST_GREF,
        ),
    ];
    // SAFETY: the local destination is the inbox, a pool page holding no Rust object.
    let r = unsafe { gr::copy(xen, &mut ops) };
    let s = seed(stream::DOM0_PAGE, domid);
    t.check(
        "copy-with-dom0-grant",
        all([
            status_is(r.map(|()| ops[0].status), GNTST_OKAY),
            status_is(r.map(|()| ops[1].status), GNTST_OKAY),
            // SAFETY: the inbox is ours, mapped, holding no Rust object.
            unsafe {
                gr::bytes_are(
                    p.inbox.va(),
                    mmu::PAGE_SIZE,
                    |i| if i < 2048 { gr::pattern_byte(s, i) } else { 0 },
                )
            },
        ]),
    );
}

/// What dom0's table and the hypervisor must refuse us.
fn refusals(t: &mut Tests, xen: Hypercalls, p: &Prep) {
    let ro = GNTMAP_HOST_MAP | GNTMAP_READONLY;
    let maps: [(&str, DomId, GrantRef, i16); 4] = [
        ("map-dom0-ref-for-other", 0, DOM0_REF_ELSEWHERE, GNTST_GENERAL_ERROR),
        ("map-dom0-ref-not-granted", 0, DOM0_REF_BLANK, GNTST_GENERAL_ERROR),
        ("map-dom0-ref-far", 0, FAR_REF, GNTST_BAD_GNTREF),
        ("map-absent-domain", NO_SUCH_DOMAIN, REF_RING, GNTST_BAD_DOMAIN),
    ];
    for (name, dom, gref, want) in maps {
        // SAFETY: the slot's address maps nothing Rust uses.
        let r = unsafe { gr::map(xen, p.slot.va(), ro, dom, gref) };
        t.check(name, status_is(r.map(|o| o.status), want));
        if let Ok(o) = r
            && o.status == GNTST_OKAY
        {
            // Wrongly granted: not left mapped.
            // SAFETY: as above.
            let _ = unsafe { gr::unmap(xen, p.slot.va(), o.handle) };
        }
    }
    // SAFETY: as above; nothing is mapped there to unmap.
    let r = unsafe { gr::unmap(xen, p.slot.va(), gr::BAD_HANDLE) };
    t.check("unmap-bad-handle", status_is(r, GNTST_BAD_HANDLE));

    let inbox = GnttabCopyPtr::gmfn(p.inbox.mfn, DOMID_SELF, 0);
    let outbox = GnttabCopyPtr::gmfn(p.outbox.mfn, DOMID_SELF, 0);
    let from = |dom, gref| GnttabCopy::new(GnttabCopyPtr::gref(gref, dom, 0), inbox, 8, GNTCOPY_SOURCE_GREF);
    let copies = [
        ("copy-dom0-ref-not-granted", from(0, DOM0_REF_BLANK), GNTST_GENERAL_ERROR),
        ("copy-dom0-ref-far", from(0, FAR_REF), GNTST_BAD_GNTREF),
        (
            "copy-into-dom0-ref-for-other",
            GnttabCopy::new(outbox, GnttabCopyPtr::gref(DOM0_REF_ELSEWHERE, 0, 0), 8, GNTCOPY_DEST_GREF),
            GNTST_GENERAL_ERROR,
        ),
        ("copy-absent-domain", from(NO_SUCH_DOMAIN, REF_RING), GNTST_BAD_DOMAIN),
        // A frame (not a grant) may only be named by its owner, as DOMID_SELF.
        (
            "copy-frame-of-dom0",
            GnttabCopy::new(GnttabCopyPtr::gmfn(0x1000, 0, 0), inbox, 8, 0),
            GNTST_PERMISSION_DENIED,
        ),
    ];
    for (name, op, want) in copies {
        let mut ops = [op];
        // SAFETY: the only local destination is the inbox (checked already).
        let r = unsafe { gr::copy(xen, &mut ops) };
        t.check(name, status_is(r.map(|()| ops[0].status), want));
    }
}
