// SPDX-License-Identifier: MIT OR Apache-2.0
//! The domU side of the interdomain benchmarks (command line `peer`): grants pages to
//! dom0, binds to dom0's port and answers its commands (see [`crate::interdomain`] for
//! the protocol, the grant references and the shared page's layout). It prints
//! through its console ring, as `(d1) bench peer: ...`, and never a `BENCH` line.

use core::sync::atomic::Ordering;

use guest_shim::events::{self, Bitmaps, EvtchnPort, NS_PER_SEC};
use guest_shim::mmu::Page;
use guest_shim::pv_abi::grant_table::{GrantEntryV1, GrantRef};
use guest_shim::pv_abi::xen::SIF_INITDOMAIN;
use guest_shim::{Hypercalls, StartInfo, console, println};

use crate::gnttab_bench::{self, COPY_PAGES, Table, Why, word};
use crate::interdomain::{
    CMD_DONE, CMD_PING, CMD_YIELD, DOM0_PORT, MAP_MAGIC, PINGPONG_TIMEOUT, REF_COPY, REF_MAP, REF_SHARED,
    SHARED_MAGIC, W_CMD, W_MAGIC, W_PEER_IDLE, W_PEER_YIELDS, W_ROUNDS, W_TURN, shared_word, wait,
};

/// The domain the grants are made out to.
const DOM0: u16 = 0;
/// How long to keep trying to bind to dom0's port.
const BIND_PATIENCE: u64 = 10 * NS_PER_SEC;
/// How long to wait for the next command: dom0 copies and maps meanwhile.
const COMMAND_TIMEOUT: u64 = 120 * NS_PER_SEC;
/// How long to let the console backend take the last lines.
const DRAIN_TIMEOUT: u64 = 2 * NS_PER_SEC;

/// Runs the peer until dom0 says it is done (or goes quiet), then powers off.
pub fn run(si: &StartInfo) {
    if si.flags & SIF_INITDOMAIN != 0 {
        println!("bench peer: `peer` is a domU's part (dom0 runs `interdomain`)");
        return;
    }
    let xen = guest_shim::hypercalls();
    let b = match events::bitmaps() {
        Ok(b) => b,
        Err(e) => {
            println!("bench peer: mapping shared_info failed: {e}");
            return;
        }
    };
    let table = match Table::setup(&xen) {
        Ok(t) => t,
        Err(why) => {
            println!("bench peer: grant table: {why}");
            return;
        }
    };
    // Copy sources, the page dom0 maps, the shared page.
    let pages = match gnttab_bench::alloc_pages::<{ COPY_PAGES + 2 }>() {
        Ok(p) => p,
        Err(why) => {
            println!("bench peer: {why}");
            return;
        }
    };
    let (src, rest) = pages.split_at(COPY_PAGES);
    let (map, shared) = (&rest[0], &rest[1]);
    for (i, s) in src.iter().enumerate() {
        gnttab_bench::fill_pattern(s, i as u64);
    }
    // SAFETY: pool pages of ours, mapped writable; from here on only atomic or
    // volatile accesses (ours and, through grants, dom0's) touch them.
    unsafe { word(map, 0).write_volatile(MAP_MAGIC) };
    shared_word(shared.va(), W_MAGIC).store(SHARED_MAGIC, Ordering::SeqCst);
    let grants = src
        .iter()
        .enumerate()
        .map(|(i, p)| (REF_COPY + i as GrantRef, p, true))
        .chain([(REF_MAP, map, false), (REF_SHARED, shared, false)]);
    for (r, p, readonly) in grants.clone() {
        table.frame.grant(r, GrantEntryV1::permit_access(DOM0, p.mfn as u32, readonly));
    }
    let Some(port) = bind(&xen) else { return };
    b.clear_pending(port);
    println!("bench peer: {} grants to dom0 at refs {REF_COPY}..={REF_SHARED}; ready", COPY_PAGES + 2);
    let _ = xen.evtchn_send(port);

    let (pings, games) = serve(&xen, b, port, shared);
    let in_use = grants.filter(|&(r, _, _)| table.frame.end_access(r).is_err()).count();
    println!("bench peer: {pings} pings, {games} yield ping-pongs; {in_use} grants still in use at the end");
    console::flush();
    console::drain(DRAIN_TIMEOUT);
    // The answer to CMD_DONE: our lines are out.
    let _ = xen.evtchn_send(port);
    guest_shim::poweroff()
}

/// Binds to dom0's port, retrying until dom0 has allocated it; returns our end.
fn bind(xen: &Hypercalls) -> Option<EvtchnPort> {
    let start = events::now();
    loop {
        match xen.evtchn_bind_interdomain(DOM0, DOM0_PORT) {
            Ok(port) => return Some(port),
            Err(e) if events::now() - start >= BIND_PATIENCE => {
                println!("bench peer: binding to dom0's port {DOM0_PORT}: still {e} after 10 s");
                return None;
            }
            Err(_) => {
                let _ = xen.sched_yield();
            }
        }
    }
}

/// Answers dom0's commands until `CMD_DONE` (or none comes); returns the pings and
/// ping-pongs served.
fn serve(xen: &Hypercalls, b: Bitmaps, port: EvtchnPort, shared: &Page) -> (u64, u64) {
    let cmd = shared_word(shared.va(), W_CMD);
    let (mut pings, mut games) = (0, 0);
    loop {
        if !wait(xen, b, port, COMMAND_TIMEOUT) {
            println!("bench peer: no command from dom0 within 120 s");
            break;
        }
        match cmd.load(Ordering::SeqCst) {
            CMD_PING => {
                pings += 1;
                let _ = xen.evtchn_send(port);
            }
            CMD_YIELD => {
                games += 1;
                if let Err(why) = pingpong(xen, shared) {
                    println!("bench peer: yield ping-pong: {why}");
                }
                let _ = xen.evtchn_send(port);
            }
            CMD_DONE => break,
            other => {
                println!("bench peer: unknown command {other}");
                break;
            }
        }
    }
    (pings, games)
}

/// The peer's half of the yield ping-pong: moves the turn from odd to even and yields,
/// until dom0's last move is answered; stores its yield counts (the idle ones as they
/// happen).
fn pingpong(xen: &Hypercalls, shared: &Page) -> Result<(), Why> {
    let va = shared.va();
    let (turn, end) = (shared_word(va, W_TURN), 2 * shared_word(va, W_ROUNDS).load(Ordering::SeqCst));
    let idle_word = shared_word(va, W_PEER_IDLE);
    let deadline = events::now() + PINGPONG_TIMEOUT;
    let (mut yields, mut idle) = (0u64, 0u64);
    let result = loop {
        let t = turn.load(Ordering::SeqCst);
        if t >= end {
            break Ok(());
        }
        if t % 2 == 1 {
            turn.store(t + 1, Ordering::SeqCst);
        } else {
            idle += 1;
            // Published at once: dom0 keeps only the batches in which it did not move.
            idle_word.store(idle, Ordering::SeqCst);
            // The clock only on this path (rare when every yield switches).
            if idle.is_multiple_of(1024) && events::now() >= deadline {
                break Err(Why::Wrong("dom0 stopped moving (60 s)"));
            }
        }
        let _ = xen.sched_yield();
        yields += 1;
    };
    shared_word(va, W_PEER_YIELDS).store(yields, Ordering::SeqCst);
    result
}
