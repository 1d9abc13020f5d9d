// SPDX-License-Identifier: MIT OR Apache-2.0
//! Benchmarks between two domains: this guest as dom0 (command line `interdomain`) and
//! a second copy of it as domU 1 (command line `peer`, see [`crate::peer`]). Only this
//! project's hypervisor runs them: Xen 4.17 boots no domU without a toolstack, so there
//! is no Xen figure to compare with (`hvbench` reports them as ours only).
//!
//! ```text
//! build/bin/hvrun --timeout 300 build/guests/bench.elf:interdomain \
//!   'build/guests/bench.elf:domu name=bench-peer mem=16 -- peer'
//! ```
//!
//! The figures (`BENCH` lines, per operation like the others):
//! - `evtchn-rtt-interdomain`: dom0 sends on its interdomain port; the peer, waiting in
//!   `SCHEDOP_poll` on its end, wakes, clears the pending bit, reads the command word
//!   and sends back; dom0 waits (pending bit, else `SCHEDOP_poll`) for the answer. Per
//!   round trip: two domain switches, two sends, one or two polls. The guest prints how
//!   many answers dom0 had to poll for: on ours about two thirds, since dom0, woken
//!   with BOOST by the answer, preempts the peer before it polls again, so that the
//!   next ping finds the peer runnable (no wake, no preemption) and dom0 blocks for the
//!   answer. Compare with `evtchn-rtt`, its self-domain form (two sends and two
//!   upcalls, no switch).
//! - `domain-switch`: both domains runnable, passing a turn counter in a shared page
//!   back and forth, each calling `SCHEDOP_yield` after its move and again while it is
//!   not its turn. Each side counts its yields that came back to it with no move of the
//!   other's (the scheduler kept it running: see below). In a batch where neither side
//!   had such a yield, every yield switched domains and a round is exactly two
//!   switches. The figure is half a round (one `SCHEDOP_yield` that switches domains,
//!   with the few instructions of the turn check), the median over those batches only
//!   (batches of [`PINGPONG_ROUNDS`] rounds, at least [`MIN_CLEAN`] of them counting,
//!   or no figure). Compare with `sched-yield`, the same hypercall with nothing else to
//!   run.
//!
//!   Why some yields do not switch: the credit scheduler queues a yielding vCPU after
//!   the others *of its priority* only, so while one domain is UNDER (credit left) and
//!   the other OVER, the first one's yields come back to it until its credit runs out
//!   too. (Xen's credit1 lets a yielding vCPU pass one vCPU of lower priority; ours
//!   does not.) Under `-icount` nearly all timed batches count (1485 of 1500 in one
//!   run); under plain TCG, where a switch takes tens of microseconds of host time and
//!   ticks come more often per switch, a quarter to a half.
//! - `gnttab-copy-4k-interdomain` and `gnttab-copy-64k-interdomain` (and `...-per-kib`):
//!   [`gnttab_bench::copy_from_grants`] on the peer's read-only grants (source
//!   `GNTCOPY_source_gref`, `source.domid` = 1) into frames of dom0's; per call.
//! - `gnttab-map-unmap-interdomain`: [`gnttab_bench::map_unmap_at`] on the peer's
//!   read-write grant (`GNTMAP_host_map`), per map-unmap pair.
//!
//! # Protocol
//!
//! Events stay masked on both sides (no upcall is taken); a side waits for its port
//! with [`wait`]: the pending bit, else `SCHEDOP_poll` with a timeout.
//! 1. dom0 allocates port [`DOM0_PORT`] for domain [`PEER_DOMID`] first thing.
//! 2. The peer sets its grant table up (`GNTTABOP_setup_table`) and grants to dom0: the
//!    copy sources at refs [`REF_COPY`]`..+16` read-only (page i filled with
//!    `gnttab_bench`'s pattern i), a page holding [`MAP_MAGIC`] at [`REF_MAP`] and the
//!    shared page at [`REF_SHARED`] (holding [`SHARED_MAGIC`]) read-write. Then it
//!    binds to dom0's port (retrying until dom0 has allocated it) and sends: ready.
//! 3. dom0 maps the shared page. Each later event to the peer is a command, the word
//!    [`W_CMD`] of that page: [`CMD_PING`] (answer with a send), [`CMD_YIELD`] (play
//!    the yield ping-pong for [`W_ROUNDS`] rounds, store its yield counts, then send)
//!    or [`CMD_DONE`] (end access to the grants, print, send, power off). Between
//!    commands the peer sits in `SCHEDOP_poll`: the copies and maps run with it blocked.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_shim::events::{self, Bitmaps, EvtchnPort, NS_PER_SEC};
use guest_shim::pv_abi::grant_table::GrantRef;
use guest_shim::pv_abi::xen::{DOMID_SELF, DomId, SIF_INITDOMAIN};
use guest_shim::{Hypercalls, StartInfo, println};

use crate::gnttab_bench::{self, COPY_PAGES, KIB_PER_PAGE, Why};
use crate::{measure, median, report, tsc};

/// The peer's domain id: the first domU module.
pub const PEER_DOMID: DomId = 1;
/// dom0's port for the peer: the first one dom0 allocates.
pub const DOM0_PORT: EvtchnPort = 1;
/// The copy sources: the peer's read-only grants `REF_COPY..REF_COPY + COPY_PAGES`.
pub const REF_COPY: GrantRef = gnttab_bench::REF_COPY;
/// The page `gnttab-map-unmap-interdomain` maps (read-write).
pub const REF_MAP: GrantRef = gnttab_bench::REF_MAP;
/// The shared page: commands and the yield ping-pong's turn counter (read-write).
pub const REF_SHARED: GrantRef = REF_MAP + 1;
/// Word 0 of the page granted at [`REF_MAP`].
pub const MAP_MAGIC: u64 = 0x7065_6572_2d6d_6170;
/// Word [`W_MAGIC`] of the shared page.
pub const SHARED_MAGIC: u64 = 0x7065_6572_2d73_6872;

/// Shared page words (u64 each): the command.
pub const W_CMD: usize = 0;
/// The ping-pong's turn counter: dom0 moves it from even to odd, the peer back.
pub const W_TURN: usize = 1;
/// Rounds of the ping-pong (each: one move by each side).
pub const W_ROUNDS: usize = 2;
/// The peer's `SCHEDOP_yield`s in the ping-pong.
pub const W_PEER_YIELDS: usize = 3;
/// Of those, the ones after which it found no move of dom0's (the scheduler kept it
/// running), stored as they happen.
pub const W_PEER_IDLE: usize = 4;
/// [`SHARED_MAGIC`], written by the peer before it grants the page.
pub const W_MAGIC: usize = 5;

/// Commands (word [`W_CMD`]).
pub const CMD_PING: u64 = 1;
/// Play the yield ping-pong.
pub const CMD_YIELD: u64 = 2;
/// Wind up and power off.
pub const CMD_DONE: u64 = 3;

/// The `BENCH` names, in the order they are printed.
const NAMES: [&str; 7] = [
    "evtchn-rtt-interdomain",
    "domain-switch",
    COPY_NAMES[0][0],
    COPY_NAMES[0][1],
    COPY_NAMES[1][0],
    COPY_NAMES[1][1],
    MAP_NAME,
];
/// The copy figures: per call and per KiB, 4 KiB then 64 KiB.
const COPY_NAMES: [[&str; 2]; 2] = [
    ["gnttab-copy-4k-interdomain", "gnttab-copy-4k-interdomain-per-kib"],
    ["gnttab-copy-64k-interdomain", "gnttab-copy-64k-interdomain-per-kib"],
];
/// The map-unmap figure.
const MAP_NAME: &str = "gnttab-map-unmap-interdomain";

/// Round trips `evtchn-rtt-interdomain` makes (the warm-up batch and the timed ones).
const RTT_TRIPS: u64 = (crate::BATCHES as u64 + 1) * crate::OPS_PER_BATCH;
/// How long dom0 waits for the peer to be ready (it boots alongside).
const READY_TIMEOUT: u64 = 30 * NS_PER_SEC;
/// How long one answer may take.
pub const ANSWER_TIMEOUT: u64 = 5 * NS_PER_SEC;
/// How long a ping-pong may take (at 16000 rounds, far more than it needs).
pub const PINGPONG_TIMEOUT: u64 = 60 * NS_PER_SEC;
/// Rounds per timed batch of the ping-pong: short, so that many batches fall between
/// the scheduler's ticks (after which the yields may not switch for a while) even
/// under plain TCG, where a switch takes a long time.
const PINGPONG_ROUNDS: u64 = 10;
/// Timed batches of the ping-pong.
const PINGPONG_BATCHES: usize = 1500;
/// Untimed batches first.
const PINGPONG_WARMUP: usize = 100;
/// The fewest timed batches of the ping-pong that count for `domain-switch` to stand.
const MIN_CLEAN: usize = 100;

/// Word `w` of a page mapped at `va` (only ever accessed atomically: the other domain
/// uses it at the same time, through its own mapping).
pub fn shared_word(va: u64, w: usize) -> &'static AtomicU64 {
    // SAFETY: the callers pass the address of a page that stays mapped while they use
    // the word; u64 words of a page are aligned.
    unsafe { AtomicU64::from_ptr((va as *mut u64).add(w)) }
}

/// The [`wait`]s that found the port not pending yet and polled.
static POLLED: AtomicU64 = AtomicU64::new(0);

/// Waits until `port` is pending (and clears it), for at most `timeout` ns; returns
/// whether it was. The pending bit is looked at first, so an answer that came while
/// we ran costs no clock read and no hypercall.
pub fn wait(xen: &Hypercalls, b: Bitmaps, port: EvtchnPort, timeout: u64) -> bool {
    if b.clear_pending(port) {
        return true;
    }
    POLLED.fetch_add(1, Ordering::Relaxed);
    let deadline = events::now() + timeout;
    loop {
        // Returns at once if the port became pending since the check above.
        if xen.sched_poll(&[port], deadline).is_err() {
            let _ = xen.sched_yield();
        }
        if b.clear_pending(port) {
            return true;
        }
        if events::now() >= deadline {
            return false;
        }
    }
}

/// dom0's side: runs the benchmarks and prints their `BENCH` (or `BENCH-SKIP`) lines.
pub fn run(si: &StartInfo) {
    println!("bench: interdomain benchmarks with domain {PEER_DOMID} (the bench guest as `peer`)");
    if si.flags & SIF_INITDOMAIN == 0 {
        skip_all("`interdomain` is dom0's part (a domU runs `peer`)");
        return;
    }
    let xen = guest_shim::hypercalls();
    match xen.evtchn_alloc_unbound(DOMID_SELF, PEER_DOMID) {
        Ok(DOM0_PORT) => {}
        Ok(p) => {
            skip_all(format_args!("alloc_unbound gave port {p}; the peer binds to {DOM0_PORT}"));
            return;
        }
        Err(e) => {
            skip_all(format_args!("alloc_unbound for domain {PEER_DOMID} failed: {e}"));
            return;
        }
    }
    let b = match events::bitmaps() {
        Ok(b) => b,
        Err(e) => {
            skip_all(format_args!("mapping shared_info failed: {e}"));
            return;
        }
    };
    if !wait(&xen, b, DOM0_PORT, READY_TIMEOUT) {
        skip_all(format_args!(
            "no peer: domain {PEER_DOMID} did not signal port {DOM0_PORT} within 30 s (Xen 4.17 \
             boots no domU without a toolstack; on ours add the bench guest as a domU with `peer`)"
        ));
        return;
    }
    println!("bench: the peer is ready");
    let mut ran = false;
    let shared = gnttab_bench::at_free_va(|va| {
        let handle = gnttab_bench::map_grant(&xen, va, PEER_DOMID, REF_SHARED)?;
        let magic = shared_word(va, W_MAGIC).load(Ordering::SeqCst) == SHARED_MAGIC;
        if magic {
            benchmarks(&xen, b, va);
            ran = true;
        }
        // The peer reads the command after our unmap (on its own mapping): no use of
        // ours is left.
        shared_word(va, W_CMD).store(CMD_DONE, Ordering::SeqCst);
        gnttab_bench::unmap_grant(&xen, va, handle)?;
        if magic { Ok(()) } else { Err(Why::Wrong("the mapping does not show the peer's magic")) }
    });
    match shared {
        Ok(()) => {}
        Err(why) if !ran => {
            skip_all(format_args!("the peer's shared page: {why}"));
            return;
        }
        Err(why) => println!("bench: the peer's shared page after the benchmarks: {why}"),
    }
    let _ = xen.evtchn_send(DOM0_PORT);
    if wait(&xen, b, DOM0_PORT, ANSWER_TIMEOUT) {
        println!("bench: the peer is done");
    } else {
        println!("bench: the peer did not answer CMD_DONE within 5 s");
    }
}

/// The benchmarks, with the peer's shared page mapped at `va`; each prints its line.
fn benchmarks(xen: &Hypercalls, b: Bitmaps, va: u64) {
    match rtt(xen, b, va) {
        Ok(figure) => report(NAMES[0], figure),
        Err(why) => println!("BENCH-SKIP {}: {why}", NAMES[0]),
    }
    match pingpong(xen, b, va) {
        Ok(figure) => report(NAMES[1], figure),
        Err(why) => println!("BENCH-SKIP {}: {why}", NAMES[1]),
    }
    match gnttab_bench::copy_from_grants(xen, PEER_DOMID, REF_COPY) {
        Ok((one, all)) => {
            gnttab_bench::report_copy(COPY_NAMES[0], one, KIB_PER_PAGE);
            gnttab_bench::report_copy(COPY_NAMES[1], all, KIB_PER_PAGE * COPY_PAGES as u64);
        }
        Err(why) => {
            for name in COPY_NAMES.as_flattened() {
                println!("BENCH-SKIP {name}: {why}");
            }
        }
    }
    let probe = |at: u64| shared_word(at, 0).load(Ordering::SeqCst) == MAP_MAGIC;
    let map = gnttab_bench::at_free_va(|at| gnttab_bench::map_unmap_at(xen, at, PEER_DOMID, REF_MAP, probe));
    match map {
        Ok(figure) => report(MAP_NAME, figure),
        Err(why) => println!("BENCH-SKIP {MAP_NAME}: {why}"),
    }
}

/// `evtchn-rtt-interdomain`: the figure per round trip.
fn rtt(xen: &Hypercalls, b: Bitmaps, va: u64) -> Result<u64, Why> {
    shared_word(va, W_CMD).store(CMD_PING, Ordering::SeqCst);
    b.clear_pending(DOM0_PORT);
    // Once untimed: the peer answers at all.
    xen.evtchn_send(DOM0_PORT).map_err(|e| Why::Call("EVTCHNOP_send", e))?;
    if !wait(xen, b, DOM0_PORT, ANSWER_TIMEOUT) {
        return Err(Why::Wrong("no answer to a ping within 5 s"));
    }
    let mut trouble = None;
    let polled = POLLED.load(Ordering::Relaxed);
    let figure = measure(|| {
        // After a failure only the loop runs on: one 5 s wait is enough.
        if trouble.is_some() {
            return;
        }
        if let Err(e) = xen.evtchn_send(DOM0_PORT) {
            trouble = Some(Why::Call("EVTCHNOP_send", e));
        } else if !wait(xen, b, DOM0_PORT, ANSWER_TIMEOUT) {
            trouble = Some(Why::Wrong("a ping had no answer within 5 s"));
        }
    });
    // Whether the peer ran at once on the event (and answered before our send
    // returned), or we had to block for the answer.
    let polled = POLLED.load(Ordering::Relaxed) - polled;
    println!(
        "bench: event round trips: dom0 found {polled} of {} answers not yet there and polled",
        RTT_TRIPS
    );
    trouble.map_or(Ok(figure), Err)
}

/// `domain-switch`: the figure per switch (half a round of the ping-pong), from the
/// short batches in which every yield of both sides reached the other domain.
fn pingpong(xen: &Hypercalls, b: Bitmaps, va: u64) -> Result<u64, Why> {
    let batches = PINGPONG_WARMUP + PINGPONG_BATCHES;
    let rounds = batches as u64 * PINGPONG_ROUNDS;
    let (turn, peer_idle) = (shared_word(va, W_TURN), shared_word(va, W_PEER_IDLE));
    turn.store(0, Ordering::SeqCst);
    peer_idle.store(0, Ordering::SeqCst);
    shared_word(va, W_ROUNDS).store(rounds, Ordering::SeqCst);
    shared_word(va, W_CMD).store(CMD_YIELD, Ordering::SeqCst);
    b.clear_pending(DOM0_PORT);
    xen.evtchn_send(DOM0_PORT).map_err(|e| Why::Call("EVTCHNOP_send", e))?;
    let deadline = events::now() + PINGPONG_TIMEOUT;
    let (mut round, mut stuck) = (0u64, false);
    // One batch of rounds; returns how many of our yields found no move of the peer's.
    let mut batch = || -> u64 {
        let mut idle = 0u64;
        for _ in 0..PINGPONG_ROUNDS {
            if stuck {
                break;
            }
            // Our move (odd), then the peer's (back to even).
            turn.store(2 * round + 1, Ordering::SeqCst);
            let _ = xen.sched_yield();
            while turn.load(Ordering::SeqCst) != 2 * round + 2 {
                idle += 1;
                // The clock only on this path (rare when every yield switches).
                if idle.is_multiple_of(1024) && events::now() >= deadline {
                    stuck = true;
                    break;
                }
                let _ = xen.sched_yield();
            }
            round += 1;
        }
        idle
    };
    let mut idle = 0;
    for _ in 0..PINGPONG_WARMUP {
        idle += batch();
    }
    // Timed batches; only those with no yield that came back to its own domain (on
    // either side) count: exactly two switches per round in those.
    let mut clean = [0u64; PINGPONG_BATCHES];
    let mut n_clean = 0;
    for _ in 0..PINGPONG_BATCHES {
        let peer_before = peer_idle.load(Ordering::SeqCst);
        let t0 = tsc();
        let ours = batch();
        let t1 = tsc();
        idle += ours;
        if ours == 0 && peer_idle.load(Ordering::SeqCst) == peer_before {
            clean[n_clean] = t1.wrapping_sub(t0) * 10 / PINGPONG_ROUNDS;
            n_clean += 1;
        }
    }
    if stuck {
        return Err(Why::Wrong("the peer stopped moving in the yield ping-pong (60 s)"));
    }
    // The peer stores its counts, then answers.
    if !wait(xen, b, DOM0_PORT, ANSWER_TIMEOUT) {
        return Err(Why::Wrong("the peer did not end the yield ping-pong"));
    }
    let peer_yields = shared_word(va, W_PEER_YIELDS).load(Ordering::SeqCst);
    let peer_idle = peer_idle.load(Ordering::SeqCst);
    println!(
        "bench: yield ping-pong: {rounds} rounds; yields that came back to their own domain: dom0 {idle} \
         of {}, peer {peer_idle} of {peer_yields}; {n_clean} of {PINGPONG_BATCHES} timed batches of \
         {PINGPONG_ROUNDS} rounds had none and count",
        rounds + idle
    );
    if n_clean < MIN_CLEAN {
        return Err(Why::Wrong("too few batches in which every yield switched domains (counts above)"));
    }
    // Two switches per round.
    Ok(median(&mut clean[..n_clean]) / 2)
}

/// A `BENCH-SKIP` line for every figure.
fn skip_all(why: impl core::fmt::Display) {
    for name in NAMES {
        println!("BENCH-SKIP {name}: {why}");
    }
}
