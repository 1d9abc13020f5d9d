// SPDX-License-Identifier: MIT OR Apache-2.0
//! The common ground of the grant phase (`grants=1`), for both ends: `domu-peer` (the
//! domU, which grants) has it as a module, and `domains` (dom0, which maps and copies)
//! includes this same file with `#[path]`, so that the two cannot disagree on a grant
//! reference, an offset or a byte of the data they expect.
//!
//! # Grant references (fixed, so that no toolstack is needed to pass them on)
//!
//! | table | ref | page | granted to |
//! |---|---|---|---|
//! | domU | 8 ([`REF_RING`]) | the ring page | dom0, read-write |
//! | domU | 9 ([`REF_RO`]) | known bytes ([`stream::RO`]) | dom0, read-only |
//! | domU | 10 ([`REF_COPY`]) | what dom0 copies into | dom0, read-write |
//! | domU | 11 ([`REF_ELSEWHERE`]) | the page of ref 9 | domain 77, read-only |
//! | domU | 12 ([`REF_BLANK`]) | - | nobody (entry left empty) |
//! | dom0 | 20 + N ([`DOM0_REF_BASE`]) | known bytes, then room for N's copy | domain N, read-write |
//! | dom0 | 29 ([`DOM0_REF_ELSEWHERE`]) | dom0's page for domain 1 | domain 77, read-only |
//! | dom0 | 30 ([`DOM0_REF_BLANK`]) | - | nobody |
//!
//! # The ring page
//!
//! The domU fills its header ([`layout`]) before it grants the page: a magic number
//! with its domain id, the page's machine frame (dom0 compares it with the
//! `dev_bus_addr` of its mapping), its table size (dom0 maps a ref just past it). dom0
//! writes [`DOM0_HELLO`] once it has the page mapped. Two byte rings of
//! [`RING_SIZE`] bytes follow, one each way, with free-running producer and consumer
//! indices as in Xen's own rings. A message is a 4-byte header (`len | seq << 16`),
//! `len` bytes of payload (1 to [`MAX_PAYLOAD`], varying with the sequence number) and
//! the FNV-1a checksum of header and payload. Both ends know what every message must
//! hold ([`msg_len`], [`msg_seed`]), so the receiver checks framing, checksum and bytes.
//!
//! # Turns
//!
//! The two ends take turns, and an event on the interdomain channel hands the turn
//! over ([`Link`]): each side sends exactly one event per turn and waits for exactly one,
//! so no notification is ever lost or left pending. That matters beyond the ring:
//! after the grant phase, dom0's pause-and-ping test is made of bare events, and a
//! stray one would pass for the ping. A turn of the exchange ([`exchange`]) consumes
//! everything that arrived, produces what fits, and marks the side done once it has
//! sent and received all [`MESSAGES`]; the exchange ends when both are done (see the
//! function for how both ends agree who holds the turn then).

use core::sync::atomic::{Ordering, fence};

use guest_shim::events::{self, Bitmaps, EvtchnPort, NS_PER_SEC};
use guest_shim::gnttab::GrantFrame;
use guest_shim::mmu::{self, KERNEL_RW, Page};
use guest_shim::pv_abi::grant_table::{
    GNTST_OKAY, GnttabCopy, GnttabMapGrantRef, GnttabUnmapGrantRef, GrantHandle, GrantRef, gntst_message,
};
use guest_shim::pv_abi::xen::{DOMID_SELF, DomId};
use guest_shim::pv_abi::{Errno, XenError};
use guest_shim::report::FixedStr;
use guest_shim::{Hypercalls, Outcome};

/// domU: the ring page, read-write to dom0.
pub const REF_RING: GrantRef = 8;
/// domU: a page of known bytes, read-only to dom0.
pub const REF_RO: GrantRef = 9;
/// domU: the page dom0 copies into, read-write to dom0.
pub const REF_COPY: GrantRef = 10;
/// domU: the page of [`REF_RO`], read-only to [`NO_SUCH_DOMAIN`] (not to dom0).
pub const REF_ELSEWHERE: GrantRef = 11;
/// domU: never granted.
pub const REF_BLANK: GrantRef = 12;
/// dom0: the page granted read-write to domain `d` is ref `DOM0_REF_BASE + d`.
pub const DOM0_REF_BASE: GrantRef = 20;
/// dom0: granted read-only to [`NO_SUCH_DOMAIN`].
pub const DOM0_REF_ELSEWHERE: GrantRef = 29;
/// dom0: never granted.
pub const DOM0_REF_BLANK: GrantRef = 30;
/// Past the end of any table (at most 64 frames of 512 entries).
pub const FAR_REF: GrantRef = 1 << 20;
/// A domain that does not exist.
pub const NO_SUCH_DOMAIN: DomId = 77;
/// A grant handle no mapping has.
pub const BAD_HANDLE: GrantHandle = 0xffff;

/// Messages each way.
pub const MESSAGES: u32 = 200;
/// Largest payload.
pub const MAX_PAYLOAD: u32 = 200;
/// Bytes of each ring (a power of two: free-running indices wrap cleanly).
pub const RING_SIZE: u32 = 1024;
/// How many turns an exchange may take before a side gives up and calls itself done
/// (so that a broken ring ends in a FAIL, not in turns passed back and forth forever).
const MAX_TURNS: u32 = 1000;
/// How long one side waits for the turn (both sides run, with others, on TCG).
pub const TURN_TIMEOUT: u64 = 10 * NS_PER_SEC;
/// What dom0 writes at [`layout::HELLO`] once it has the ring page mapped.
pub const DOM0_HELLO: u32 = 0x4d30_4f4b;
/// What the domU writes at [`layout::LAST_WORDS`] after its last turn, when it will
/// crash with the page mapped: dom0 reads it after the crash.
pub const fn last_words(domid: DomId) -> u64 {
    0x1a57_3047_0000_0000 | domid as u64
}

/// The magic number at [`layout::MAGIC`] of domain `domid`'s ring page.
pub const fn ring_magic(domid: DomId) -> u32 {
    0x4e52_0000 | domid as u32
}

/// Byte offsets in the ring page.
pub mod layout {
    /// u32: [`super::ring_magic`] of the domU.
    pub const MAGIC: u64 = 0;
    /// u32: [`super::DOM0_HELLO`], from dom0.
    pub const HELLO: u64 = 4;
    /// u64: [`super::last_words`], from a domU about to crash.
    pub const LAST_WORDS: u64 = 8;
    /// u64: the page's machine frame, as the domU sees it.
    pub const MFN: u64 = 16;
    /// u32: the frames of the domU's grant table.
    pub const NR_FRAMES: u64 = 24;
    /// u32 per side (`+ 4 * side`): the side has sent and received everything.
    pub const DONE: u64 = 32;
    /// u32 per ring (`+ 16 * ring`): producer index.
    pub const PROD: u64 = 64;
    /// u32 per ring (`+ 16 * ring`): consumer index.
    pub const CONS: u64 = 68;
    /// The bytes of ring `r` start at `DATA + r * RING_SIZE`.
    pub const DATA: u64 = 2048;
}

/// Which end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The mapping end.
    Dom0 = 0,
    /// The granting end.
    DomU = 1,
}

impl Side {
    const fn other(self) -> Side {
        match self {
            Side::Dom0 => Side::DomU,
            Side::DomU => Side::Dom0,
        }
    }

    /// The ring this side produces into: ring 0 carries dom0's messages, ring 1 the
    /// domU's.
    const fn outbound(self) -> usize {
        self as usize
    }

    const fn inbound(self) -> usize {
        self.other() as usize
    }
}

// ---- Test data ----

/// Streams of known bytes; [`seed`] makes each one per domain.
pub mod stream {
    /// The domU's read-only page.
    pub const RO: u64 = 1;
    /// The first half of dom0's page for the domU.
    pub const DOM0_PAGE: u64 = 2;
    /// The domU's data it copies into dom0's page.
    pub const DOMU_OUT: u64 = 3;
    /// dom0's data it copies into the domU's page.
    pub const DOM0_OUT: u64 = 4;
    /// The ring page once re-granted for the crash.
    pub const HOLD: u64 = 5;
    /// Message payloads (plus ring and sequence number).
    pub const MSG: u64 = 0x100;
}

/// The seed of stream `s` for domain `domid`.
pub const fn seed(s: u64, domid: DomId) -> u64 {
    s << 16 | domid as u64
}

/// SplitMix64's finaliser: every input bit reaches every output bit.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Byte `i` of the data seeded with `seed`.
pub const fn pattern_byte(seed: u64, i: u64) -> u8 {
    mix(mix(seed) ^ i) as u8
}

/// What dom0's two copies leave in the domU's [`REF_COPY`] page: the whole page of
/// [`stream::DOM0_OUT`], then its bytes 100..1100 over bytes 3000..4000.
pub fn copy_page_byte(domid: DomId, i: u64) -> u8 {
    let s = seed(stream::DOM0_OUT, domid);
    if (3000..4000).contains(&i) { pattern_byte(s, i - 2900) } else { pattern_byte(s, i) }
}

/// Payload length of message `seq` on ring `ring`: 1 to [`MAX_PAYLOAD`] bytes.
pub const fn msg_len(ring: usize, seq: u32) -> u32 {
    1 + (seq * 53 + ring as u32 * 29) % MAX_PAYLOAD
}

/// The seed of the payload of message `seq` on ring `ring` between dom0 and `domid`.
pub const fn msg_seed(domid: DomId, ring: usize, seq: u32) -> u64 {
    seed(stream::MSG + ((ring as u64) << 12) + seq as u64, domid)
}

const FNV_OFFSET: u32 = 0x811c_9dc5;

/// One byte into an FNV-1a (32-bit) checksum.
const fn fnv(h: u32, b: u8) -> u32 {
    (h ^ b as u32).wrapping_mul(0x0100_0193)
}

/// The first of `len` bytes at `va` that is not `want(i)`, as (offset, found, wanted).
///
/// # Safety
///
/// `len` bytes at `va` must be mapped and hold no Rust object (they are read volatile).
pub unsafe fn first_difference(va: u64, len: u64, want: impl Fn(u64) -> u8) -> Option<(u64, u8, u8)> {
    (0..len).find_map(|i| {
        // SAFETY: the caller's contract.
        let got = unsafe { ((va + i) as *const u8).read_volatile() };
        let w = want(i);
        (got != w).then_some((i, got, w))
    })
}

/// A check that `len` bytes at `va` are `want(i)`.
///
/// # Safety
///
/// As for [`first_difference`].
pub unsafe fn bytes_are(va: u64, len: u64, want: impl Fn(u64) -> u8) -> Outcome {
    // SAFETY: forwarded contract.
    match unsafe { first_difference(va, len, want) } {
        None => Outcome::Pass,
        Some((i, got, w)) => Outcome::fail(format_args!("byte {i} is {got:#04x}, expected {w:#04x}")),
    }
}

/// Fills pool page `p` (ours, mapped writable at its address) with `f(i)`.
pub fn fill(p: &Page, f: impl Fn(u64) -> u8) {
    for i in 0..mmu::PAGE_SIZE {
        // SAFETY: the page is this guest's, mapped writable at its kernel address and
        // holding no Rust object: only volatile accesses touch it.
        unsafe { ((p.va() + i) as *mut u8).write_volatile(f(i)) };
    }
}

// ---- The ring page ----

/// The ring page as one side sees it: the domU at its own page's address, dom0
/// through its grant mapping.
#[derive(Clone, Copy, Debug)]
pub struct RingPage {
    base: u64,
}

impl RingPage {
    /// The page at `base`.
    ///
    /// # Safety
    ///
    /// `base` must map the ring page writable while the view is used, and no Rust
    /// object may live in that page (every access is volatile).
    pub const unsafe fn new(base: u64) -> Self {
        Self { base }
    }

    /// Its address.
    pub const fn va(self) -> u64 {
        self.base
    }

    /// The u32 at `off`.
    pub fn read32(self, off: u64) -> u32 {
        // SAFETY: `new`'s contract; `off` is an aligned offset of the layout.
        unsafe { ((self.base + off) as *const u32).read_volatile() }
    }

    /// Writes the u32 at `off`.
    pub fn write32(self, off: u64, v: u32) {
        // SAFETY: as in `read32`.
        unsafe { ((self.base + off) as *mut u32).write_volatile(v) }
    }

    /// The u64 at `off`.
    pub fn read64(self, off: u64) -> u64 {
        // SAFETY: as in `read32`.
        unsafe { ((self.base + off) as *const u64).read_volatile() }
    }

    /// Writes the u64 at `off`.
    pub fn write64(self, off: u64, v: u64) {
        // SAFETY: as in `read32`.
        unsafe { ((self.base + off) as *mut u64).write_volatile(v) }
    }

    fn done(self, side: Side) -> bool {
        self.read32(layout::DONE + 4 * side as u64) != 0
    }

    fn set_done(self, side: Side) {
        self.write32(layout::DONE + 4 * side as u64, 1);
    }

    fn byte_at(self, ring: usize, pos: u32) -> u64 {
        self.base + layout::DATA + (ring as u64) * RING_SIZE as u64 + (pos % RING_SIZE) as u64
    }

    fn put(self, ring: usize, pos: u32, b: u8) {
        // SAFETY: as in `read32`; the offset stays within ring `ring`'s bytes.
        unsafe { (self.byte_at(ring, pos) as *mut u8).write_volatile(b) }
    }

    fn get(self, ring: usize, pos: u32) -> u8 {
        // SAFETY: as in `put`.
        unsafe { (self.byte_at(ring, pos) as *const u8).read_volatile() }
    }
}

// ---- Turns ----

/// The turn, handed over by one event on the interdomain channel (events stay masked:
/// the waiting side polls its port and clears the pending bit itself).
pub struct Link {
    xen: Hypercalls,
    b: Bitmaps,
    port: EvtchnPort,
    /// What broke the protocol (a send that failed, a turn that did not come).
    pub broken: Option<FixedStr<120>>,
}

impl Link {
    /// The turn over `port`, our end of the channel.
    pub fn new(xen: Hypercalls, b: Bitmaps, port: EvtchnPort) -> Self {
        Self { xen, b, port, broken: None }
    }

    /// Whether the protocol is still in step.
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }

    /// Hands the turn over after step `step`. Nothing once broken.
    pub fn pass(&mut self, step: &str) -> bool {
        if !self.ok() {
            return false;
        }
        if let Err(e) = self.xen.evtchn_send(self.port) {
            self.broken = Some(FixedStr::format(format_args!("passing the turn after {step}: {e}")));
        }
        self.ok()
    }

    /// Waits (at most `timeout` ns) for the turn, for step `step`. Nothing once broken.
    pub fn take(&mut self, step: &str, timeout: u64) -> bool {
        if !self.ok() {
            return false;
        }
        let deadline = events::now() + timeout;
        loop {
            if self.b.clear_pending(self.port) {
                return true;
            }
            if events::now() >= deadline {
                let s = timeout / NS_PER_SEC;
                self.broken = Some(FixedStr::format(format_args!("no turn for {step} within {s} s")));
                return false;
            }
            // Returns at once if the port became pending since the check above.
            if self.xen.sched_poll(&[self.port], deadline).is_err() {
                let _ = self.xen.sched_yield();
            }
        }
    }

    /// A check that the protocol stayed in step.
    pub fn outcome(&self) -> Outcome {
        match &self.broken {
            None => Outcome::Pass,
            Some(why) => Outcome::fail(why),
        }
    }
}

// ---- The exchange ----

/// How an exchange went, for one side.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Messages produced.
    pub sent: u32,
    /// Messages consumed (bad ones included).
    pub received: u32,
    /// The first thing wrong with what arrived.
    pub error: Option<FixedStr<120>>,
    /// Turns this side took.
    pub turns: u32,
    /// Whether this side holds the turn at the end.
    pub holding: bool,
}

impl Exchange {
    /// A check that everything went both ways intact.
    pub fn outcome(&self) -> Outcome {
        match &self.error {
            Some(e) => Outcome::fail(e),
            None => Outcome::ensure(
                self.sent == MESSAGES && self.received == MESSAGES,
                format_args!("sent {}, received {} of {MESSAGES}", self.sent, self.received),
            ),
        }
    }

    fn note(&mut self, args: core::fmt::Arguments<'_>) {
        if self.error.is_none() {
            self.error = Some(FixedStr::format(args));
        }
    }
}

/// Produces the next messages while they fit.
fn produce(page: RingPage, me: Side, domid: DomId, ex: &mut Exchange) {
    let r = me.outbound();
    let off = 16 * r as u64;
    let mut prod = page.read32(layout::PROD + off);
    let cons = page.read32(layout::CONS + off);
    // The consumer's index before the bytes it freed are reused.
    fence(Ordering::SeqCst);
    while ex.sent < MESSAGES {
        let seq = ex.sent;
        let len = msg_len(r, seq);
        if RING_SIZE - prod.wrapping_sub(cons) < len + 8 {
            break;
        }
        let s = msg_seed(domid, r, seq);
        let mut h = FNV_OFFSET;
        let mut pos = prod;
        for b in (len | seq << 16).to_le_bytes() {
            page.put(r, pos, b);
            h = fnv(h, b);
            pos = pos.wrapping_add(1);
        }
        for i in 0..len {
            let b = pattern_byte(s, i as u64);
            page.put(r, pos, b);
            h = fnv(h, b);
            pos = pos.wrapping_add(1);
        }
        for b in h.to_le_bytes() {
            page.put(r, pos, b);
            pos = pos.wrapping_add(1);
        }
        prod = pos;
        ex.sent += 1;
    }
    // The bytes before the index that publishes them.
    fence(Ordering::SeqCst);
    page.write32(layout::PROD + off, prod);
}

/// Consumes and checks everything that arrived.
fn consume(page: RingPage, me: Side, domid: DomId, ex: &mut Exchange) {
    let r = me.inbound();
    let off = 16 * r as u64;
    let prod = page.read32(layout::PROD + off);
    // The index before the bytes it covers.
    fence(Ordering::SeqCst);
    let mut cons = page.read32(layout::CONS + off);
    while cons != prod {
        let seq = ex.received;
        if seq == MESSAGES {
            ex.note(format_args!("{} bytes past the last message", prod.wrapping_sub(cons)));
            cons = prod;
            break;
        }
        // The receiver knows each message's length: framing does not depend on the
        // header it checks.
        let len = msg_len(r, seq);
        if prod.wrapping_sub(cons) < len + 8 {
            ex.note(format_args!(
                "message {seq}: {} bytes published, {} expected",
                prod.wrapping_sub(cons),
                len + 8
            ));
            cons = prod;
            break;
        }
        let s = msg_seed(domid, r, seq);
        let mut h = FNV_OFFSET;
        let mut header = [0u8; 4];
        for (k, b) in header.iter_mut().enumerate() {
            *b = page.get(r, cons.wrapping_add(k as u32));
            h = fnv(h, *b);
        }
        let header = u32::from_le_bytes(header);
        let mut bad_byte = None;
        for i in 0..len {
            let b = page.get(r, cons.wrapping_add(4 + i));
            h = fnv(h, b);
            if bad_byte.is_none() && b != pattern_byte(s, i as u64) {
                bad_byte = Some(i);
            }
        }
        let mut sum = [0u8; 4];
        for (k, b) in sum.iter_mut().enumerate() {
            *b = page.get(r, cons.wrapping_add(4 + len + k as u32));
        }
        let sum = u32::from_le_bytes(sum);
        if header != len | seq << 16 {
            ex.note(format_args!("message {seq}: header {header:#x}, expected {:#x}", len | seq << 16));
        } else if sum != h {
            ex.note(format_args!("message {seq}: checksum {sum:#x}, computed {h:#x}"));
        } else if let Some(i) = bad_byte {
            ex.note(format_args!("message {seq}: payload byte {i} differs (checksum right)"));
        }
        cons = cons.wrapping_add(len + 8);
        ex.received += 1;
    }
    // Done reading the bytes before they are given back.
    fence(Ordering::SeqCst);
    page.write32(layout::CONS + off, cons);
}

/// Exchanges [`MESSAGES`] each way with the other end, in turns; `me` starts if
/// `holding`.
///
/// A turn: consume, produce, mark this side done once it has sent and received
/// everything, note whether the other side is done (while it cannot change: the other
/// side is waiting), and hand the turn over. If both were done then, the exchange is
/// over for this side; the other side sees both done when its turn comes and stops
/// without handing the turn back, holding it ([`Exchange::holding`]). So exactly one
/// side ends holding the turn and no event is left unconsumed.
pub fn exchange(link: &mut Link, page: RingPage, me: Side, domid: DomId, holding: bool) -> Exchange {
    let mut ex = Exchange::default();
    let mut my_turn = holding;
    loop {
        if !my_turn && !link.take("the exchange", TURN_TIMEOUT) {
            break;
        }
        if page.done(Side::Dom0) && page.done(Side::DomU) {
            ex.holding = true;
            break;
        }
        ex.turns += 1;
        consume(page, me, domid, &mut ex);
        produce(page, me, domid, &mut ex);
        if ex.sent == MESSAGES && ex.received == MESSAGES {
            page.set_done(me);
        } else if ex.turns >= MAX_TURNS {
            ex.note(format_args!("no end after {MAX_TURNS} turns"));
            page.set_done(me);
        }
        let other_done = page.done(me.other());
        if !link.pass("a turn of the exchange") {
            break;
        }
        my_turn = false;
        if other_done && page.done(me) {
            break;
        }
    }
    ex
}

// ---- This domain's grant table ----

/// Frame 0 of this domain's grant table, mapped writable at a pool page's address.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    /// Its entries (see guest-shim's `gnttab`).
    pub frame: GrantFrame,
    /// Frames in the table (`query_size`).
    pub nr_frames: u32,
}

impl Table {
    /// `GNTTABOP_setup_table` for one frame (every table has at least that), the size
    /// from `query_size`, and frame 0 mapped at a fresh pool page's address.
    pub fn setup(xen: Hypercalls) -> Result<Table, FixedStr<96>> {
        let err = |args: core::fmt::Arguments<'_>| FixedStr::format(args);
        let mut f = [0u64; 1];
        match xen.gnttab_setup_table(DOMID_SELF, &mut f) {
            Ok(GNTST_OKAY) => {}
            Ok(s) => return Err(err(format_args!("setup_table: status {s} ({})", gntst_message(s)))),
            Err(e) => return Err(err(format_args!("setup_table: {e}"))),
        }
        let nr_frames = match xen.gnttab_query_size(DOMID_SELF) {
            Ok(q) if q.status == GNTST_OKAY && q.nr_frames >= 1 => q.nr_frames,
            Ok(q) => return Err(err(format_args!("query_size: status {} frames {}", q.status, q.nr_frames))),
            Err(e) => return Err(err(format_args!("query_size: {e}"))),
        };
        let page = mmu::alloc().map_err(|e| err(format_args!("a page for the table: {e}")))?;
        // SAFETY: the page is fresh from the pool: nothing refers to its address, which
        // maps the table frame from now on (the page itself is never given back).
        unsafe { mmu::set_kernel_pte(page.va(), (f[0] * mmu::PAGE_SIZE) | KERNEL_RW) }
            .map_err(|e| err(format_args!("mapping table frame {:#x}: {e}", f[0])))?;
        // SAFETY: mapped writable just above, for good.
        Ok(Table { frame: unsafe { GrantFrame::at(page.va()) }, nr_frames })
    }
}

impl core::ops::Deref for Table {
    type Target = GrantFrame;

    fn deref(&self) -> &GrantFrame {
        &self.frame
    }
}

/// A check that entry `r` of `gt` has flags `want`.
pub fn flags_are(gt: Table, r: GrantRef, want: u16) -> Outcome {
    let got = gt.flags(r);
    Outcome::ensure(got == want, format_args!("ref {r}: flags {got:#x}, expected {want:#x}"))
}

// ---- Grant operations ----

/// A page whose kernel address is left unmapped, for grant mappings.
pub fn slot() -> Result<Page, Errno> {
    let p = mmu::alloc()?;
    // SAFETY: the page is fresh from the pool; its address is used for grant
    // mappings only from now on, and its memory never again.
    unsafe { mmu::unmap(&p) }?;
    Ok(p)
}

/// `GNTTABOP_map_grant_ref` of `dom`'s `gref` at `va`; the operation as Xen left it.
///
/// # Safety
///
/// `va` must be a [`slot`]: no memory Rust uses is mapped there.
pub unsafe fn map(
    xen: Hypercalls,
    va: u64,
    flags: u32,
    dom: DomId,
    gref: GrantRef,
) -> Result<GnttabMapGrantRef, XenError> {
    let mut op = [GnttabMapGrantRef::new(va, flags, dom, gref)];
    // SAFETY: the caller's contract: whatever is mapped at `va`, nothing uses it.
    unsafe { xen.gnttab_map_grant_ref(&mut op) }?;
    Ok(op[0])
}

/// `GNTTABOP_unmap_grant_ref` of `handle` at `va`; the status.
///
/// # Safety
///
/// `va` must be a [`slot`].
pub unsafe fn unmap(xen: Hypercalls, va: u64, handle: GrantHandle) -> Result<i16, XenError> {
    let mut op = [GnttabUnmapGrantRef::new(va, 0, handle)];
    // SAFETY: the caller's contract: nothing uses what is mapped at `va`.
    unsafe { xen.gnttab_unmap_grant_ref(&mut op) }?;
    Ok(op[0].status)
}

/// `GNTTABOP_copy` of `ops`; their statuses are in `ops`.
///
/// # Safety
///
/// Every local destination frame must hold no Rust object (only volatile accesses).
pub unsafe fn copy(xen: Hypercalls, ops: &mut [GnttabCopy]) -> Result<(), XenError> {
    // SAFETY: forwarded contract.
    unsafe { xen.gnttab_copy(ops) }
}

/// A check of a status: the hypercall returned 0 and the operation `want`.
pub fn status_is(r: Result<i16, XenError>, want: i16) -> Outcome {
    match r {
        Ok(s) => Outcome::ensure(
            s == want,
            format_args!("status {s} ({}), expected {want} ({})", gntst_message(s), gntst_message(want)),
        ),
        Err(e) => Outcome::fail(format_args!("the hypercall failed: {e}")),
    }
}
