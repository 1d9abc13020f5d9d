// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest run as a boot-time **domU** next to the `domains` guest (dom0). It prints
//! through its PV console ring (guest-shim picks the ring when `start_info.flags` has
//! no `SIF_INITDOMAIN`), so its lines reach the serial port as `(dN) RESULT ...`; it
//! prints its own `SUMMARY`.
//!
//! Only this project's hypervisor boots it (Xen needs a toolstack to build a domU):
//!
//! ```text
//! build/bin/hvrun --timeout 300 build/guests/domains.elf \
//!   'build/guests/domu-peer.elf:domu name=peer1 mem=16 -- port=1 rounds=1000 then=poweroff' \
//!   'build/guests/domu-peer.elf:domu name=peer2 mem=16 -- port=2 rounds=1000 then=crash' \
//!   'build/guests/domu-peer.elf:domu name=idle mem=16 -- port=3 rounds=10 then=hang'
//! ```
//!
//! Command line: `port=N` (the dom0 port allocated for this domain: domids are 1, 2, 3
//! in module order and dom0 allocates port N for domain N), `rounds=R`,
//! `then=poweroff|crash|hang|reboot` (crash: `SCHEDOP_shutdown(SHUTDOWN_crash)`; hang:
//! block forever, for dom0 to destroy; reboot: `SHUTDOWN_reboot`, which the hypervisor
//! answers by building the domain again under a new id), and optionally `input=WORD`
//! and `grants=0|1` (default 0).
//!
//! `port=0` (with `rounds=0`) means no event-channel work at all: the checks below,
//! then `then` at once. Nothing in them needs dom0 to do anything, so
//! `port=0 rounds=0 then=reboot` is a domain that boots and reboots for ever: the
//! churn that the `soak` guest (dom0) watches.
//!
//! `input=WORD`, before anything else: prints `domu-peer: waiting for input`, reads
//! its console ring's `in` side until a whole line has come (at most 20 s, waiting
//! with `SCHEDOP_poll` on the console port) and checks the line is WORD
//! (`console-input-line`) and that an event on the console port woke it
//! (`console-input-event`). On this hypervisor serial input goes to one domain at a
//! time; the test types Ctrl-A three times (dom0 -> d1) and then `WORD\n`.
//!
//! # Protocol with dom0
//!
//! Events stay masked (no upcall is ever taken); both sides wait with `SCHEDOP_poll`
//! on their port with a timeout and clear the pending bit themselves.
//! 1. dom0 allocates port N with `alloc_unbound(DOMID_SELF, remote = N)`. This guest
//!    binds to it with `bind_interdomain(0, N)`, retrying (with `SCHEDOP_yield`) while
//!    it fails, since dom0 may not have allocated yet; it gives up after 10 s.
//! 2. R round trips: this guest sends, dom0 answers with a send on its end. (The
//!    first send is also how dom0 learns the port is bound.) Then one more send,
//!    unanswered: "rounds done, last answer taken". A dom0 that pauses the peer
//!    for step 3 only after this event knows the ping cannot merge with an answer
//!    still pending here (one pending bit holds both, and the ping is lost); the
//!    `domains` guest waits for it (`peerN-rounds-done`) before anything else it
//!    does with this domain.
//! 3. The final ping: dom0 pauses the domain, sends, sees no answer for 100 ms,
//!    unpauses it. This guest, on the ping, prints its `SUMMARY`, waits until the
//!    console backend has taken its output, *then* answers (so that nothing dom0 does
//!    next, such as destroying a hanging peer, can cut its last lines), and does
//!    `then`.
//!
//! # The grant phase (`grants=1`)
//!
//! With `grants=1` the domain sets up its grant table and grants pages to dom0 before
//! it binds, and between steps 2 and 3 it goes through the grant phase with dom0 (the
//! `domains` guest with `grants=` naming this domain): a ring of checksummed messages
//! in a page dom0 maps, read-only grants, copies both ways, refusals, the revocation
//! rules, and with `then=crash` a page dom0 keeps mapped through the crash. The
//! details are in `grants.rs`; what both ends share (grant references, the ring page,
//! the turns) in `grant_ring.rs`, which `domains` includes too. dom0 starts the phase
//! only after the unanswered event of step 2, so its first turn cannot merge with the
//! last answer; the phase ends with this guest handing the turn over (dom0 takes it),
//! so no event of it is left to pass for the ping.
//!
//! # Checks (before the protocol)
//!
//! - `start_info.flags` is 0 (no `SIF_PRIVILEGED`/`SIF_INITDOMAIN`) and the console is
//!   the ring; reading console input with nothing typed gives 0 bytes;
//! - privileged operations are refused as Xen's dummy XSM policy refuses them:
//!   `XEN_DOMCTL_pausedomain(0)`, `XEN_SYSCTL_physinfo`, `CONSOLEIO_write`,
//!   `EVTCHNOP_status` of dom0's port 1 and `EVTCHNOP_alloc_unbound` in dom0 all give
//!   -EPERM (Xen looks the domain up first, then asks XSM); `bind_interdomain` to a
//!   domain that does not exist (77) gives -ESRCH;
//! - `XENMEM_increase_reservation` for more than the headroom up to
//!   `XENMEM_maximum_reservation` does 0 extents (Xen refuses the allocation and
//!   reports the extents done, not an error);
//! - after the bind: the local port is interdomain to (dom0, N) and is pending (Xen
//!   always marks a newly bound local port pending, "we may have lost notifications").

#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_shim::console::{self, Backend};
use guest_shim::events::{self, Bitmaps, EvtchnPort, NS_PER_SEC};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::event_channel::EVTCHNSTAT_INTERDOMAIN;
use guest_shim::pv_abi::memory::{
    XENMEM_CURRENT_RESERVATION, XENMEM_INCREASE_RESERVATION, XENMEM_MAXIMUM_RESERVATION,
};
use guest_shim::pv_abi::sched::SHUTDOWN_REBOOT;
use guest_shim::pv_abi::xen::{DOMID_FIRST_RESERVED, DOMID_SELF, DomId};
use guest_shim::report::{all, expect_err, is_trap};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, println};

guest_shim::entry!(start);

#[allow(dead_code, reason = "shared with `domains`, which uses the rest")]
mod grant_ring;
mod grants;

/// How long to keep trying to bind to dom0's port.
const BIND_PATIENCE: u64 = 10 * NS_PER_SEC;
/// How long to wait for dom0's answer in a round trip.
const ROUND_TIMEOUT: u64 = 5 * NS_PER_SEC;
/// How long to wait for the final ping: dom0 serves every peer's rounds first.
const PING_TIMEOUT: u64 = 120 * NS_PER_SEC;
/// How long to wait for the line of `input=`.
const INPUT_TIMEOUT: u64 = 20 * NS_PER_SEC;
/// Longest input line kept (a longer one fails the comparison anyway).
const INPUT_MAX: usize = 64;
/// How long to wait for the console backend to take the summary.
const DRAIN_TIMEOUT: u64 = 2 * NS_PER_SEC;
/// A domain that does not exist: the last id below the reserved ones, since a domU
/// rebuilt at every reboot (the soak) takes every small id in turn, 77 included.
const NO_SUCH_DOMAIN: u16 = DOMID_FIRST_RESERVED - 1;
/// Largest extent order an unprivileged domain may ask for (Xen's `domu_max_order`
/// default on x86).
const DOMU_MAX_ORDER: u32 = 9;

/// What to do at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    Poweroff,
    Crash,
    Hang,
    Reboot,
}

/// The command line.
#[derive(Clone, Copy, Debug)]
struct Args<'a> {
    /// 0: no event-channel work.
    port: EvtchnPort,
    rounds: u32,
    then: Then,
    /// The line to wait for first, if any.
    input: Option<&'a str>,
    /// Go through the grant phase with dom0.
    grants: bool,
}

/// Parses `port=N rounds=R then=poweroff|crash|hang|reboot [input=WORD] [grants=0|1]`
/// (any order; all but `input=` and `grants=` required).
fn parse_args(line: &str) -> Result<Args<'_>, &'static str> {
    let (mut port, mut rounds, mut then, mut input, mut grants) = (None, None, None, None, false);
    for word in line.split_ascii_whitespace() {
        match word.split_once('=') {
            Some(("port", v)) => port = Some(v.parse().map_err(|_| "bad port=")?),
            Some(("rounds", v)) => rounds = Some(v.parse().map_err(|_| "bad rounds=")?),
            Some(("then", "poweroff")) => then = Some(Then::Poweroff),
            Some(("then", "crash")) => then = Some(Then::Crash),
            Some(("then", "hang")) => then = Some(Then::Hang),
            Some(("then", "reboot")) => then = Some(Then::Reboot),
            Some(("then", _)) => return Err("then= must be poweroff, crash, hang or reboot"),
            Some(("input", v)) if !v.is_empty() && v.len() < INPUT_MAX => input = Some(v),
            Some(("input", _)) => return Err("input= needs a word of 1 to 63 bytes"),
            Some(("grants", "0")) => grants = false,
            Some(("grants", "1")) => grants = true,
            Some(("grants", _)) => return Err("grants= must be 0 or 1"),
            _ => return Err("unknown word (expected port=N rounds=R then=... [input=WORD])"),
        }
    }
    let args = Args {
        port: port.ok_or("port= is missing")?,
        rounds: rounds.ok_or("rounds= is missing")?,
        then: then.ok_or("then= is missing")?,
        input,
        grants,
    };
    if args.port == 0 && args.rounds != 0 {
        return Err("rounds= needs a port (port=0: no event-channel work)");
    }
    // dom0 learns that the port is bound from the first round trip.
    if args.grants && args.rounds == 0 {
        return Err("grants=1 needs a port and rounds=1 at least");
    }
    Ok(args)
}

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let line = core::str::from_utf8(si.cmdline()).unwrap_or("");
    let args = match parse_args(line) {
        Ok(a) => a,
        Err(why) => {
            t.fail("cmdline", format_args!("{why}: {line:?}"));
            t.summary();
            guest_shim::crash()
        }
    };
    if let Some(word) = args.input {
        await_input(&mut t, xen, word);
    }
    println!(
        "domu-peer: port={} rounds={} then={:?} nr_pages={}",
        args.port, args.rounds, args.then, si.nr_pages
    );

    t.check("start-info-flags", Outcome::eq(si.flags, 0));
    t.check("console-is-ring", Outcome::eq(console::backend(), Backend::Ring));
    t.check("console-read-empty", Outcome::ok_eq(console::read(&mut [0u8; 16]), 0));
    refusals(&mut t, xen);
    over_reservation(&mut t, xen);
    if args.port == 0 {
        println!("domu-peer: port=0: no event-channel work");
        finish(t, xen, None, args.then)
    }

    let b = match events::bitmaps() {
        Ok(b) => b,
        Err(e) => {
            t.fail("map-shared-info", e);
            finish(t, xen, None, args.then)
        }
    };
    // Domain ids are the ports' numbers (see the top of the file).
    let domid = args.port as DomId;
    let prep = if args.grants { grants::prepare(&mut t, xen, domid) } else { None };
    let Some(local) = bind(&mut t, xen, b, args.port) else { finish(t, xen, None, args.then) };
    round_trips(&mut t, xen, b, local, args.rounds);
    // Unanswered (step 2 above); an error shows in the ping that follows.
    let _ = xen.evtchn_send(local);
    if args.grants {
        grants::phase(&mut t, xen, b, local, prep, domid, args.then == Then::Crash);
    }
    let pinged = wait(xen, b, local, PING_TIMEOUT);
    t.check("final-ping", Outcome::ensure(pinged, "no ping from dom0 within 120 s"));
    finish(t, xen, pinged.then_some(local), args.then)
}

/// I/O ports are dom0's: a domU may raise its virtual IOPL, and its read of a
/// port it has no permission for then gives all ones (Xen's `guest_io_read`),
/// not the device's value; without the IOPL it is a #GP.
fn io_ports(t: &mut Tests, xen: Hypercalls) {
    if let Err(e) = guest_shim::traps::install() {
        t.fail("io-ports", format_args!("traps::install: {e}"));
        return;
    }
    let inb = || {
        let mut v = 0u8;
        // SAFETY: a port read the hypervisor emulates or refuses (caught #GP); port
        // 0x70 (the RTC index) reads as 0x7f-ish on hardware, never all ones.
        let (r, at) = unsafe { guest_shim::catch_asm!("in al, dx", in("dx") 0x70u16, inout("al") v) };
        (r.map(|()| v), at)
    };
    let (r, at) = inb();
    t.check("io-port-gp-without-iopl", is_trap(&r, 13, 0, at, None));
    t.check("set-iopl-1", xen.physdev_set_iopl(1));
    let (r, _) = inb();
    t.check("io-port-reads-ones", Outcome::eq(r.ok(), Some(0xff)));
    t.check("set-iopl-0", xen.physdev_set_iopl(0));
}

/// Waits for a line of console input (see the top of the file) and checks it is
/// `word`.
fn await_input(t: &mut Tests, xen: Hypercalls, word: &str) {
    println!("domu-peer: waiting for input");
    let (port, b) = match (console::input_port(), events::bitmaps()) {
        (Some(p), Ok(b)) => (p, b),
        (p, b) => {
            t.fail("console-input-line", format_args!("console port {p:?}, shared info {:?}", b.map(drop)));
            return;
        }
    };
    let deadline = events::now() + INPUT_TIMEOUT;
    let mut line = [0u8; INPUT_MAX];
    let mut n = 0;
    let mut woken = false;
    let end = loop {
        // Cleared before reading, so that input arriving after the read leaves the
        // port pending and the poll below returns at once.
        woken |= b.clear_pending(port);
        n += console::read(&mut line[n..]).unwrap_or(0);
        if let Some(end) = line[..n].iter().position(|&c| c == b'\n') {
            break Some(end);
        }
        if n == line.len() {
            break Some(n);
        }
        if events::now() >= deadline {
            break None;
        }
        // Only the event wakes us before the deadline: a missing one shows.
        if xen.sched_poll(&[port], deadline).is_err() {
            let _ = xen.sched_yield();
        }
    };
    let shown = core::str::from_utf8(&line[..n]).unwrap_or("(not UTF-8)");
    t.check(
        "console-input-line",
        match end {
            Some(end) => {
                let got = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
                Outcome::ensure(got == word.as_bytes(), format_args!("read {shown:?}, expected {word:?}"))
            }
            None => Outcome::fail(format_args!("no whole line within 20 s (read {shown:?})")),
        },
    );
    t.check("console-input-event", Outcome::ensure(woken, "no event on the console port with the input"));
}

/// Privileged operations an unprivileged domain must be refused.
fn refusals(t: &mut Tests, xen: Hypercalls) {
    io_ports(t, xen);
    t.check("domctl-pausedomain-dom0-eperm", expect_err(xen.domctl_pausedomain(0), Errno::EPERM));
    t.check("sysctl-physinfo-eperm", expect_err(xen.sysctl_physinfo().map(drop), Errno::EPERM));
    t.check(
        "console-io-write-eperm",
        expect_err(xen.console_write(b"domu-peer via console_io\n"), Errno::EPERM),
    );
    t.check("evtchn-status-dom0-eperm", expect_err(xen.evtchn_status(0, 1).map(drop), Errno::EPERM));
    t.check("alloc-unbound-in-dom0-eperm", expect_err(xen.evtchn_alloc_unbound(0, DOMID_SELF), Errno::EPERM));
    t.check(
        "bind-interdomain-no-domain-esrch",
        expect_err(xen.evtchn_bind_interdomain(NO_SUCH_DOMAIN, 1), Errno::ESRCH),
    );
}

/// `increase_reservation` past the domain's maximum does nothing.
fn over_reservation(t: &mut Tests, xen: Hypercalls) {
    let cur = xen.memory_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF);
    let max = xen.memory_query(XENMEM_MAXIMUM_RESERVATION, DOMID_SELF);
    let (cur, max) = match (cur, max) {
        (Ok(c), Ok(m)) => (c, m),
        (c, m) => {
            t.fail("increase-reservation-over-max", format_args!("reservation queries: {c:?} {m:?}"));
            return;
        }
    };
    let headroom = max.saturating_sub(cur);
    // One extent just bigger than the headroom: all or nothing.
    let order = (0..=DOMU_MAX_ORDER).find(|&o| 1u64 << o > headroom);
    println!("domu-peer: reservation current={cur} maximum={max}");
    let Some(order) = order else {
        t.skip(
            "increase-reservation-over-max",
            format_args!("headroom {headroom} pages > 2^{DOMU_MAX_ORDER}"),
        );
        return;
    };
    let mut extent = [0u64; 1];
    // SAFETY: frames added to the domain (if any, which is the failure this checks) are
    // not mapped anywhere; nothing of ours changes.
    let r = unsafe { xen.memory_reservation(XENMEM_INCREASE_RESERVATION, &mut extent, order, 0, DOMID_SELF) };
    t.check(
        "increase-reservation-over-max",
        match r {
            Ok(0) => Outcome::Pass,
            Ok(n) => {
                Outcome::fail(format_args!("{n} extents of order {order} done (current {cur}, max {max})"))
            }
            Err(e) => Outcome::fail(format_args!("{e}, expected 0 extents done")),
        },
    );
}

/// Binds to dom0's port `port`, retrying until dom0 has allocated it; returns the
/// local port.
fn bind(t: &mut Tests, xen: Hypercalls, b: Bitmaps, port: EvtchnPort) -> Option<EvtchnPort> {
    let start = events::now();
    let mut tries = 0u32;
    let local = loop {
        tries += 1;
        match xen.evtchn_bind_interdomain(0, port) {
            Ok(l) => break l,
            Err(e) if events::now() - start >= BIND_PATIENCE => {
                t.fail("bind-interdomain-dom0", format_args!("still {e} after {tries} tries in 10 s"));
                return None;
            }
            Err(_) => {
                let _ = xen.sched_yield();
            }
        }
    };
    let waited_ms = (events::now() - start) / 1_000_000;
    println!("domu-peer: bound dom0 port {port} as local port {local} after {tries} tries, {waited_ms} ms");
    t.pass("bind-interdomain-dom0");
    let status = xen.evtchn_status(DOMID_SELF, local);
    t.check(
        "status-interdomain-dom0",
        match status {
            Ok(s) => Outcome::ensure(
                s.status == EVTCHNSTAT_INTERDOMAIN && s.u[0] & 0xffff == 0 && s.u[1] == port,
                format_args!("status {} u {:?}, expected interdomain to (0, {port})", s.status, s.u),
            ),
            Err(e) => Outcome::fail(e),
        },
    );
    t.check("bind-marks-local-pending", Outcome::ensure(b.clear_pending(local), "local port not pending"));
    Some(local)
}

/// `rounds` sends on `local`, each answered by dom0.
fn round_trips(t: &mut Tests, xen: Hypercalls, b: Bitmaps, local: EvtchnPort, rounds: u32) {
    let start = events::now();
    let mut done = 0;
    let mut trouble = None;
    while done < rounds {
        if let Err(e) = xen.evtchn_send(local) {
            trouble = Some(Outcome::fail(format_args!("send {done} failed: {e}")));
            break;
        }
        if !wait(xen, b, local, ROUND_TIMEOUT) {
            trouble = Some(Outcome::fail(format_args!("no answer to send {done} within 5 s")));
            break;
        }
        done += 1;
    }
    let ms = (events::now() - start) / 1_000_000;
    println!("domu-peer: {done} of {rounds} round trips in {ms} ms");
    t.check("round-trips", all([trouble.unwrap_or(Outcome::Pass), Outcome::eq(done, rounds)]));
}

/// Waits until `port` is pending (and clears it), for at most `timeout` ns; returns
/// whether it was.
fn wait(xen: Hypercalls, b: Bitmaps, port: EvtchnPort, timeout: u64) -> bool {
    let deadline = events::now() + timeout;
    loop {
        if b.clear_pending(port) {
            return true;
        }
        if events::now() >= deadline {
            return false;
        }
        // Returns at once if the port became pending since the check above.
        if xen.sched_poll(&[port], deadline).is_err() {
            let _ = xen.sched_yield();
        }
    }
}

/// Prints the summary, lets the backend take it, answers the ping (if there was one)
/// and does `then`.
fn finish(mut t: Tests, xen: Hypercalls, answer: Option<EvtchnPort>, then: Then) -> ! {
    t.summary();
    console::flush();
    console::drain(DRAIN_TIMEOUT);
    if let Some(port) = answer {
        let _ = xen.evtchn_send(port);
    }
    match then {
        Then::Poweroff => guest_shim::poweroff(),
        Then::Crash => guest_shim::crash(),
        Then::Hang => hang(xen, answer),
        Then::Reboot => guest_shim::shutdown(SHUTDOWN_REBOOT),
    }
}

/// Blocks forever: polls the port (nobody signals it any more) or, without one, any
/// event, a second at a time, so that a wake-up never turns into a busy loop.
fn hang(xen: Hypercalls, port: Option<EvtchnPort>) -> ! {
    let b = events::bitmaps().ok();
    let list = [port.unwrap_or(0)];
    let ports = if port.is_some() { &list[..] } else { &list[..0] };
    loop {
        // 0: no timeout (no clock to set one with).
        let deadline = b.map_or(0, |b| b.system_time(0) + NS_PER_SEC);
        if xen.sched_poll(ports, deadline).is_err() {
            let _ = xen.sched_yield();
        }
        if let (Some(p), Some(b)) = (port, b) {
            b.clear_pending(p);
        }
    }
}

// On the host (`cargo test --workspace`) the guest is an empty program.
#[cfg(not(target_os = "none"))]
fn main() {}
