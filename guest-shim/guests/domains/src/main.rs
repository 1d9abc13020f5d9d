// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest run as **dom0** next to three `domu-peer` domUs: event-channel ports for
//! them, serving their round trips, pausing them, seeing them shut down
//! (`VIRQ_DOM_EXC`) and destroying the one that hangs. It prints with `console_io`.
//!
//! Only this project's hypervisor boots domUs at boot time (Xen needs a toolstack):
//!
//! ```text
//! build/bin/hvrun --timeout 300 build/guests/domains.elf \
//!   'build/guests/domu-peer.elf:domu name=peer1 mem=16 -- port=1 rounds=1000 then=poweroff' \
//!   'build/guests/domu-peer.elf:domu name=peer2 mem=16 -- port=2 rounds=1000 then=crash' \
//!   'build/guests/domu-peer.elf:domu name=idle mem=16 -- port=3 rounds=10 then=hang'
//! ```
//!
//! Its own command line (all optional) says what to expect: `peers=N` (0-3, default 3:
//! domains 1..=N run `domu-peer`), `rounds=A,B,C` (default `1000,1000,10`), `mem=MiB`
//! (default 16), `grants=A,B,C` (default `0,0,0`: a 1 for the peers that run
//! `domu-peer` with `grants=1`; they need at least one round trip). Domain 1 powers
//! off at the end, 2 crashes, 3 hangs. On Xen 4.17, with no domUs,
//! `build/guests/domains.elf:peers=0` runs the single-domain checks and skips the
//! rest; `peers=0 grants=1,0,0` adds the grant checks that need no other domain.
//!
//! The grant run (the `domain-gnttab-ring` scenario):
//!
//! ```text
//! build/bin/hvrun --timeout 300 'build/guests/domains.elf:peers=2 rounds=100,100,0 grants=1,1,0' \
//!   'build/guests/domu-peer.elf:domu name=peer1 mem=16 -- port=1 rounds=100 then=poweroff grants=1' \
//!   'build/guests/domu-peer.elf:domu name=peer2 mem=16 -- port=2 rounds=100 then=crash grants=1'
//! ```
//!
//! # Protocol with the peers (see also `domu-peer`)
//!
//! Events stay masked (no upcall is ever taken); both sides wait with `SCHEDOP_poll`
//! with a timeout on their ports and clear the pending bits themselves.
//! 1. First thing, dom0 allocates port N for domain N (`alloc_unbound(DOMID_SELF,
//!    remote = N)`, N = 1, 2, 3: the first free ports, which the peers' command lines
//!    rely on). Peer N binds to it (`bind_interdomain(0, N)`), retrying until it can.
//! 2. Each event on port N is a round trip: dom0 answers with a send on N. The first
//!    one shows the peer is bound: port N's status is then interdomain to domain N.
//!    After the peer's rounds (counted per port) the peer waits for a final ping.
//!    After its rounds the peer sends one more event, unanswered; dom0 takes it
//!    before anything else with that peer (`peerN-rounds-done`), so that nothing
//!    it sends next can merge with its last answer still pending at the peer.
//! 3. With `grants=`, the grant phase with each peer that has a 1, one after the
//!    other (see `grants.rs` and the shared `grant_ring.rs` of `domu-peer`): a ring of
//!    200 checksummed messages each way in a page the peer grants and dom0 maps,
//!    read-only grants, copies both ways, refusals with Xen's status codes, the
//!    revocation rules; a peer that will crash grants its ring page again and dom0
//!    keeps it mapped through the crash.
//! 4. The pause test, for each peer: `pausedomain(N)`, send the ping, poll 100 ms: no
//!    answer (the peer cannot run); `unpausedomain(N)`: the answer arrives. The peer
//!    prints its summary before answering, then does what its command line says.
//! 5. Peers 1 and 2 shut down (poweroff, crash): `VIRQ_DOM_EXC` arrives; each domain
//!    is then gone (boot-time domUs are torn down at shutdown on this hypervisor: no
//!    toolstack reaps them) and dom0's port N is unbound again (the peer's end was
//!    closed). Peer 3 hangs: dom0 destroys it (`destroydomain(3)`), after which it is
//!    gone, a second destroy gives -ESRCH and `VIRQ_DOM_EXC` fires again.
//!    A peer that crashed with its page mapped by dom0 may linger (Xen keeps a dying
//!    domain while any of its frames is referenced): it must be gone or shut down or
//!    dying; dom0 still reads the page through its mapping (the frame stays alive),
//!    copies from the grant (`GNTST_bad_domain` once the domain is gone or dying, as
//!    in Xen's `acquire_grant_for_copy`), unmaps it, and then the domain must be gone.
//! 6. The domains' pages are back: `physinfo.free_pages` (read once the peers are
//!    served, before they exit) grew by at least the sum of their `tot_pages`.
//!
//! Every wait has a timeout, so a hypervisor bug gives a FAIL line, not a hang.
//!
//! # Single-domain checks (Xen 4.17 too)
//!
//! Ports 1, 2, 3 and their unbound status (or interdomain, if a peer was quicker);
//! `alloc_unbound` for a domain that does not exist; `VIRQ_DOM_EXC` binds (a global
//! VIRQ: vCPU 0); `getdomaininfo(0)`; `getdomaininfo`, `destroydomain` and
//! `pausedomain` of a domain that does not exist give -ESRCH; `pausedomain(0)`
//! (itself) gives -EINVAL; the console is `console_io` for dom0; guest-shim's console
//! [`Ring`] over a page of our own, with a loopback event channel standing in for the
//! backend's: writing publishes the bytes and signals the other end, reading consumes
//! input and signals it too.
//!
//! # Xen behaviour worth knowing
//!
//! - `EVTCHNOP_alloc_unbound` does not check that the remote domain exists (a
//!   toolstack may allocate before it builds the domain): remote 77 gets a port,
//!   unbound with remote 77 (`xen/common/event_channel.c`).
//! - `XEN_DOMCTL_getdomaininfo` in Xen 4.17 answers for the *first domain whose id is
//!   at least* the one asked for (-ESRCH only when there is none; 4.18 changed that),
//!   so "domain N is gone" accepts -ESRCH or an answer about another domain.
//! - Grants (`common/grant_table.c`): every refusal because of the entry (made out to
//!   another domain, not granted, ended, read-only mapped writable or copied into) is
//!   `GNTST_general_error`, not `GNTST_permission_denied`; a ref past the table is
//!   `GNTST_bad_gntref`, an absent domain `GNTST_bad_domain` (maps and copies). A copy
//!   may name a frame instead of a grant only for `DOMID_SELF`
//!   (`GNTST_permission_denied`). A writable map by another domain also takes a
//!   writable type reference on the granted frame. Unmapping a grant of a domain that
//!   no longer exists would crash the unmapping domain in Xen; it cannot happen there,
//!   because a domain with pages still referenced stays (dying) until the last
//!   reference goes: `free_domheap_pages` drops the domain reference with the last
//!   page.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::cell::UnsafeCell;

use guest_shim::console::{self, Backend, Ring};
use guest_shim::events::{self, Bitmaps, EvtchnPort, NS_PER_MS, NS_PER_SEC};
use guest_shim::notes::VIRT_BASE;
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::domctl::{
    XEN_DOMINF_DYING, XEN_DOMINF_PAUSED, XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWNMASK,
    XEN_DOMINF_SHUTDOWNSHIFT,
};
use guest_shim::pv_abi::event_channel::{
    EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ, EvtchnStatus,
};
use guest_shim::pv_abi::io::console::XenconsInterface;
use guest_shim::pv_abi::layout::UnionBytes;
use guest_shim::pv_abi::sched::SHUTDOWN_CRASH;
use guest_shim::pv_abi::xen::{ConsoleDomU, DOMID_SELF, DomId, StartInfoConsole, VIRQ_DOM_EXC};
use guest_shim::report::{all, expect_err, need};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, println};

guest_shim::entry!(start);

/// What both ends of the grant phase share, kept in `domu-peer`.
#[path = "../../domu-peer/src/grant_ring.rs"]
#[allow(dead_code, reason = "shared with `domu-peer`, which uses the rest")]
mod grant_ring;
mod grants;

/// The most peers this guest knows how to serve.
const MAX_PEERS: usize = 3;
/// A domain that does not exist.
const NO_SUCH_DOMAIN: DomId = 77;
/// How long the serving loop waits without any event before giving up (more than the
/// peers' 10 s of bind retries).
const SERVE_IDLE: u64 = 20 * NS_PER_SEC;
/// How long a paused peer is watched for an answer it must not give.
const PAUSED_WINDOW: u64 = 100 * NS_PER_MS;
/// How long an answer may take once the peer can run.
const ANSWER_TIMEOUT: u64 = 5 * NS_PER_SEC;
/// How long peers 1 and 2 may take to shut down and be torn down.
const EXIT_TIMEOUT: u64 = 30 * NS_PER_SEC;
/// How long freed pages may take to show in `physinfo`, and VIRQ_DOM_EXC after a
/// destroy.
const SETTLE_TIMEOUT: u64 = 2 * NS_PER_SEC;

/// How a peer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    Poweroff,
    Crash,
    Hang,
}

/// What peer `domid` ends with (its command line in the intended run).
const fn then_of(domid: DomId) -> Then {
    match domid {
        1 => Then::Poweroff,
        2 => Then::Crash,
        _ => Then::Hang,
    }
}

/// One domU and its port.
#[derive(Clone, Copy, Debug)]
struct Peer {
    domid: DomId,
    /// Our end: allocated for `domid`.
    port: EvtchnPort,
    /// Round trips it will make.
    rounds: u32,
    /// Round trips seen.
    count: u32,
    /// Its first event arrived.
    bound: bool,
    /// Its rounds are over (or it is gone).
    done: bool,
    /// It disappeared.
    gone: bool,
    /// `tot_pages` from `getdomaininfo` at the start.
    tot_pages: u64,
    /// It goes through the grant phase.
    grants: bool,
    /// Its page still mapped, to be read after it crashed.
    held: Option<grants::Held>,
}

/// The command line.
#[derive(Clone, Copy, Debug)]
struct Args {
    peers: usize,
    rounds: [u32; MAX_PEERS],
    mem_mib: u64,
    grants: [bool; MAX_PEERS],
}

/// Parses `peers=N rounds=A,B,C mem=MiB grants=A,B,C` (all optional).
fn parse_args(line: &str) -> Result<Args, &'static str> {
    let mut a = Args { peers: MAX_PEERS, rounds: [1000, 1000, 10], mem_mib: 16, grants: [false; MAX_PEERS] };
    for word in line.split_ascii_whitespace() {
        match word.split_once('=') {
            Some(("peers", v)) => {
                a.peers = v.parse().ok().filter(|&n| n <= MAX_PEERS).ok_or("peers= must be 0 to 3")?;
            }
            Some(("rounds", v)) => {
                let mut it = v.split(',');
                for r in a.rounds.iter_mut() {
                    *r = it.next().and_then(|s| s.parse().ok()).ok_or("rounds= takes three numbers")?;
                }
                if it.next().is_some() {
                    return Err("rounds= takes three numbers");
                }
            }
            Some(("mem", v)) => a.mem_mib = v.parse().map_err(|_| "bad mem=")?,
            Some(("grants", v)) => {
                let mut it = v.split(',');
                for g in a.grants.iter_mut() {
                    *g = match it.next() {
                        Some("0") => false,
                        Some("1") => true,
                        _ => return Err("grants= takes three flags, 0 or 1"),
                    };
                }
                if it.next().is_some() {
                    return Err("grants= takes three flags, 0 or 1");
                }
            }
            _ => return Err("unknown word (expected peers=N rounds=A,B,C mem=MiB grants=A,B,C)"),
        }
    }
    Ok(a)
}

/// What the sections share.
struct Env {
    t: Tests,
    xen: Hypercalls,
    b: Bitmaps,
    /// The port bound to VIRQ_DOM_EXC.
    virq: Option<EvtchnPort>,
    /// VIRQ_DOM_EXC events seen.
    dom_exc: u32,
}

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let line = core::str::from_utf8(si.cmdline()).unwrap_or("");
    let args = match parse_args(line) {
        Ok(a) => a,
        Err(why) => {
            t.fail("cmdline", format_args!("{why}: {line:?}"));
            t.finish()
        }
    };
    let b = need(&mut t, "map-shared-info", events::bitmaps());
    let mut env = Env { t, xen, b, virq: None, dom_exc: 0 };
    // First: the peers' command lines name these ports.
    let mut peers = alloc_ports(&mut env, &args);
    let peers = &mut peers[..args.peers];
    println!("domains: peers={} rounds={:?} mem={} MiB", args.peers, args.rounds, args.mem_mib);

    single_domain(&mut env);
    let free_start = need(&mut env.t, "physinfo", env.xen.sysctl_physinfo()).free_pages;
    env.t.pass("physinfo");
    ring_loopback(&mut env);
    let g = if args.grants.contains(&true) { grants::prepare(&mut env.t, env.xen) } else { None };

    if peers.is_empty() || peers.iter().any(|p| p.port == 0) {
        let why = if peers.is_empty() {
            "peers=0: no domUs to serve (Xen 4.17 boots none without a toolstack)"
        } else {
            "a peer has no port (see alloc-unbound-port-N)"
        };
        env.t.skip("peers", why);
        pause_self(&mut env);
        console_init_domu(&mut env, si);
        env.t.finish()
    }
    for p in peers.iter_mut() {
        domain_info(&mut env, p, args.mem_mib);
    }
    serve(&mut env, peers);
    for p in peers.iter() {
        rounds_done(&mut env, p);
    }
    for p in peers.iter_mut().filter(|p| p.grants) {
        grant_phase(&mut env, g.as_ref(), p);
    }
    // Every peer is built and served, and dom0 holds all it will (its grant table,
    // mappings): from here the count only grows as peers go.
    let free_before = env.xen.sysctl_physinfo().map_or(free_start, |i| i.free_pages);
    println!("domains: free_pages={free_before} before the peers exit ({free_start} at the start)");
    for p in peers.iter() {
        pause_and_ping(&mut env, p);
    }
    await_exits(&mut env, peers, g.as_ref());
    destroy_hanging(&mut env, peers);
    pause_self(&mut env);
    pages_returned(&mut env, peers, free_before);
    console_init_domu(&mut env, si);
    env.t.finish()
}

/// Ports 1, 2, 3 for domains 1, 2, 3, checked to be exactly those.
fn alloc_ports(env: &mut Env, args: &Args) -> [Peer; MAX_PEERS] {
    let Env { t, xen, .. } = env;
    let mut peers = [Peer {
        domid: 0,
        port: 0,
        rounds: 0,
        count: 0,
        bound: false,
        done: false,
        gone: false,
        tot_pages: 0,
        grants: false,
        held: None,
    }; MAX_PEERS];
    for (i, p) in peers.iter_mut().enumerate() {
        let domid = i as DomId + 1;
        let name = match domid {
            1 => "alloc-unbound-port-1",
            2 => "alloc-unbound-port-2",
            _ => "alloc-unbound-port-3",
        };
        // Port 0 (never allocated) marks a failure; the peer part is skipped then.
        let port = match xen.evtchn_alloc_unbound(DOMID_SELF, domid) {
            Ok(port) => {
                t.check_eq(name, port, domid as EvtchnPort);
                port
            }
            Err(e) => {
                t.fail(name, format_args!("{e}; Xen allocates it whether domain {domid} exists or not"));
                0
            }
        };
        *p = Peer { domid, port, rounds: args.rounds[i], grants: args.grants[i], ..*p };
    }
    let allocated = peers.iter().filter(|p| p.port != 0);
    // The peers run from the start too: one may have bound its port already, which
    // is then interdomain with it instead of unbound for it.
    let for_peer = |p: &Peer| match xen.evtchn_status(DOMID_SELF, p.port) {
        s @ Ok(EvtchnStatus { status: EVTCHNSTAT_INTERDOMAIN, .. }) => {
            expect_status(s, EVTCHNSTAT_INTERDOMAIN, p.domid)
        }
        s => expect_status(s, EVTCHNSTAT_UNBOUND, p.domid),
    };
    t.check("status-unbound-ports", all(allocated.map(for_peer)));
    peers
}

/// The checks that need no other domain.
fn single_domain(env: &mut Env) {
    let Env { t, xen, .. } = env;
    t.check("console-is-console-io", Outcome::eq(console::backend(), Backend::ConsoleIo));

    // Xen does not look the remote domain up (see the top of the file).
    let absent = xen.evtchn_alloc_unbound(DOMID_SELF, NO_SUCH_DOMAIN);
    t.check(
        "alloc-unbound-remote-absent",
        match absent {
            Ok(p) => all([
                expect_status(xen.evtchn_status(DOMID_SELF, p), EVTCHNSTAT_UNBOUND, NO_SUCH_DOMAIN),
                Outcome::from(xen.evtchn_close(p)),
            ]),
            Err(e) => Outcome::fail(format_args!("{e}; Xen allocates the port")),
        },
    );

    match xen.evtchn_bind_virq(VIRQ_DOM_EXC, 0) {
        Ok(port) => {
            t.check(
                "bind-virq-dom-exc",
                expect_status(xen.evtchn_status(DOMID_SELF, port), EVTCHNSTAT_VIRQ, VIRQ_DOM_EXC as DomId),
            );
            env.virq = Some(port);
        }
        Err(e) => t.fail("bind-virq-dom-exc", e),
    }

    t.check(
        "getdomaininfo-dom0",
        match xen.domctl_getdomaininfo(0) {
            Ok(i) => Outcome::ensure(
                i.domain == 0 && i.tot_pages > 0 && i.flags & (XEN_DOMINF_DYING | XEN_DOMINF_SHUTDOWN) == 0,
                format_args!("domain {} tot_pages {} flags {:#x}", i.domain, i.tot_pages, i.flags),
            ),
            Err(e) => Outcome::fail(e),
        },
    );
    t.check(
        "getdomaininfo-no-domain-esrch",
        expect_err(xen.domctl_getdomaininfo(NO_SUCH_DOMAIN).map(|i| i.domain), Errno::ESRCH),
    );
    t.check(
        "destroydomain-no-domain-esrch",
        expect_err(xen.domctl_destroydomain(NO_SUCH_DOMAIN), Errno::ESRCH),
    );
    t.check("pausedomain-no-domain-esrch", expect_err(xen.domctl_pausedomain(NO_SUCH_DOMAIN), Errno::ESRCH));
}

/// `pausedomain` of ourselves is refused.
fn pause_self(env: &mut Env) {
    env.t.check("pausedomain-self-einval", expect_err(env.xen.domctl_pausedomain(0), Errno::EINVAL));
}

/// guest-shim's console ring over a page of ours, with a loopback channel in place of
/// the backend's: what a domU's console does, minus the backend.
fn ring_loopback(env: &mut Env) {
    let Env { t, xen, b, .. } = env;
    let pair = xen
        .evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF)
        .and_then(|a| xen.evtchn_bind_interdomain(DOMID_SELF, a).map(|l| (a, l)));
    let (backend, ours) = match pair {
        Ok(p) => p,
        Err(e) => {
            t.fail("ring-loopback-channel", e);
            return;
        }
    };
    b.clear_pending(backend);
    b.clear_pending(ours);
    let mut page = XenconsInterface::default();
    let raw = &raw mut page;
    // SAFETY: `page` lives until the end of this function, as does `ring`; the page
    // is only accessed through `raw`, as the backend would.
    let ring = unsafe { Ring::new(raw, ours) };

    const TEXT: &[u8] = b"ring loopback\n";
    ring.write(TEXT);
    // SAFETY: as above; plain reads of what the ring wrote.
    let (prod, out) = unsafe { ((*raw).out_prod, (*raw).out) };
    t.check(
        "ring-write-loopback",
        all([
            Outcome::eq(prod, TEXT.len() as u32),
            Outcome::ensure(&out[..TEXT.len()] == TEXT, "bytes differ"),
            Outcome::ensure(b.clear_pending(backend), "the other end was not signalled"),
        ]),
    );

    const INPUT: &[u8] = b"hello";
    // SAFETY: as above: what a backend does to give input.
    unsafe {
        (&mut (*raw).in_)[..INPUT.len()].copy_from_slice(INPUT);
        (*raw).in_prod = INPUT.len() as u32;
    }
    let mut buf = [0u8; 16];
    let n = ring.read(&mut buf);
    // SAFETY: as above.
    let cons = unsafe { (*raw).in_cons };
    t.check(
        "ring-read-loopback",
        all([
            Outcome::eq(n, INPUT.len()),
            Outcome::ensure(&buf[..n] == INPUT, format_args!("read {:?}", &buf[..n])),
            Outcome::eq(cons, INPUT.len() as u32),
            Outcome::ensure(b.clear_pending(backend), "the other end was not told of the room"),
            Outcome::eq(ring.read(&mut buf), 0),
        ]),
    );
    let _ = xen.evtchn_close(ours);
    let _ = xen.evtchn_close(backend);
}

/// A page of the image (so in the bootstrap region) standing in for a domU's console
/// page in [`console_init_domu`].
#[repr(C, align(4096))]
struct ConsolePage(UnsafeCell<[u8; 4096]>);

// SAFETY: only this guest's one vCPU touches it, through raw pointers (the ring's and
// the stand-in backend's in `console_init_domu`).
unsafe impl Sync for ConsolePage {}

static FAKE_CONSOLE: ConsolePage = ConsolePage(UnsafeCell::new([0; 4096]));

/// guest-shim's start-of-day console choice for a domU, on a copy of our
/// `start_info` made to look like a domU's (flags 0, `console.domU` naming a page of
/// the image and a loopback port): `console::init` must find the page through the M2P
/// at its place in the bootstrap region and make the ring the default sink. Last,
/// because it changes the console for good: the explicit `console_io` sink set right
/// after keeps our own output where it was, and the ring is drained as a backend would.
fn console_init_domu(env: &mut Env, si: &StartInfo) {
    let Env { t, xen, b, .. } = env;
    let page = FAKE_CONSOLE.0.get().cast::<XenconsInterface>();
    let va = page as u64;
    let mfn = guest_shim::mmu::pfn_to_mfn((va - VIRT_BASE) / 4096);
    let pair = xen
        .evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF)
        .and_then(|a| xen.evtchn_bind_interdomain(DOMID_SELF, a).map(|l| (a, l)));
    let (Some(mfn), Ok((backend, ours))) = (mfn, pair) else {
        t.fail("console-init-domu", format_args!("setup: mfn {mfn:?}, loopback {pair:?}"));
        return;
    };
    b.clear_pending(backend);
    let mut fake = *si;
    fake.flags = 0;
    fake.console = StartInfoConsole::from_member(&ConsoleDomU { mfn, evtchn: ours, _pad: 0 });
    let chosen = console::init(&fake);
    console::set_sink(console::console_io_sink);
    let ring = console::ring();
    t.check(
        "console-init-domu",
        all([
            Outcome::eq(chosen, Ok(Backend::Ring)),
            Outcome::eq(console::backend(), Backend::Ring),
            Outcome::eq(ring.map(|r| (r.page() as u64, r.port())), Some((va, ours))),
        ]),
    );
    let Some(ring) = ring else { return };

    const LINE: &[u8] = b"RESULT via-ring PASS\n";
    console::ring_sink(LINE);
    // SAFETY: the page is FAKE_CONSOLE, which lives for good; only raw accesses.
    let (prod, out) = unsafe { ((*page).out_prod, (*page).out) };
    t.check(
        "console-ring-sink",
        all([
            Outcome::eq(prod, LINE.len() as u32),
            Outcome::ensure(&out[..LINE.len()] == LINE, "bytes differ"),
            Outcome::ensure(b.clear_pending(backend), "the backend's end was not signalled"),
        ]),
    );
    // The backend takes it all, so shutdown's drain has nothing to wait for.
    // SAFETY: as above.
    unsafe { (&raw mut (*page).out_cons).write_volatile(prod) };
    t.check(
        "console-ring-drained",
        Outcome::ensure(console::drain(0) && ring.out_pending() == 0, "not drained"),
    );
}

/// `getdomaininfo` of a peer at the start: alive, with about `mem_mib` of pages.
fn domain_info(env: &mut Env, p: &mut Peer, mem_mib: u64) {
    let name = peer_check(p.domid, "getdomaininfo");
    let want = mem_mib * 256;
    let o = match env.xen.domctl_getdomaininfo(p.domid) {
        Ok(i) => {
            p.tot_pages = i.tot_pages;
            println!(
                "domains: d{}: tot_pages={} max_pages={} flags={:#x} cpu_time={}",
                i.domain, i.tot_pages, i.max_pages, i.flags, i.cpu_time
            );
            Outcome::ensure(
                i.domain == p.domid
                    && i.flags & (XEN_DOMINF_DYING | XEN_DOMINF_SHUTDOWN) == 0
                    && (want * 9 / 10..=want * 11 / 10).contains(&i.tot_pages)
                    && (i.tot_pages..=want * 2).contains(&i.max_pages),
                format_args!(
                    "domain {} flags {:#x} tot_pages {} max_pages {}; expected ~{want} pages",
                    i.domain, i.flags, i.tot_pages, i.max_pages
                ),
            )
        }
        Err(e) => Outcome::fail(format_args!("{e}: is domain {} running?", p.domid)),
    };
    env.t.check(name.as_str(), o);
}

/// Answers every event on the peers' ports until each peer has made its rounds (or
/// is gone, or nothing happens for a while).
fn serve(env: &mut Env, peers: &mut [Peer]) {
    let start = events::now();
    let mut last_progress = start;
    loop {
        let mut progress = false;
        for p in peers.iter_mut().filter(|p| !p.done) {
            if !env.b.clear_pending(p.port) {
                continue;
            }
            progress = true;
            if !p.bound {
                p.bound = true;
                let s = env.xen.evtchn_status(DOMID_SELF, p.port);
                env.t.check(
                    peer_check(p.domid, "bound").as_str(),
                    expect_status(s, EVTCHNSTAT_INTERDOMAIN, p.domid),
                );
            }
            p.count += 1;
            if let Err(e) = env.xen.evtchn_send(p.port) {
                env.t.fail(peer_check(p.domid, "answer").as_str(), format_args!("send {}: {e}", p.count));
                p.done = true;
            }
            if p.count >= p.rounds {
                p.done = true;
            }
        }
        if dom_exc_pending(env) {
            for p in peers.iter_mut().filter(|p| !p.done) {
                if let Seen::Gone = look(env.xen, p.domid) {
                    p.gone = true;
                    p.done = true;
                }
            }
        }
        if peers.iter().all(|p| p.done) {
            break;
        }
        let now = events::now();
        if progress {
            last_progress = now;
            continue;
        }
        if now - last_progress >= SERVE_IDLE {
            break;
        }
        let mut ports = [0; MAX_PEERS + 1];
        let mut n = 0;
        for p in peers.iter().filter(|p| !p.done) {
            ports[n] = p.port;
            n += 1;
        }
        if let Some(v) = env.virq {
            ports[n] = v;
            n += 1;
        }
        let _ = env.xen.sched_poll(&ports[..n], now + NS_PER_SEC);
    }
    let ms = (events::now() - start) / 1_000_000;
    for p in peers.iter() {
        println!(
            "domains: d{}: {} of {} round trips ({} ms since serving began)",
            p.domid, p.count, p.rounds, ms
        );
    }
    for p in peers.iter() {
        let why = if p.gone {
            "the domain disappeared"
        } else if !p.bound {
            "the peer never sent (did it bind?)"
        } else {
            "the peer stopped sending"
        };
        env.t.check(
            peer_check(p.domid, "rounds").as_str(),
            Outcome::ensure(
                p.count == p.rounds,
                format_args!("{} of {} round trips: {why}", p.count, p.rounds),
            ),
        );
    }
}

/// The peer's unanswered event after its rounds (step 2 at the top of the file).
fn rounds_done(env: &mut Env, p: &Peer) {
    if p.gone || !p.bound {
        return;
    }
    let seen = wait(env, p.port, ANSWER_TIMEOUT);
    env.t.check(
        peer_check(p.domid, "rounds-done").as_str(),
        Outcome::ensure(seen, "no event after the round trips within 5 s"),
    );
}

/// The grant phase with one peer (`grants.rs`).
fn grant_phase(env: &mut Env, g: Option<&grants::Dom0>, p: &mut Peer) {
    let name = peer_check(p.domid, "grant-phase");
    if p.gone || !p.bound {
        env.t.fail(name.as_str(), if p.gone { "the domain is gone" } else { "the peer never bound" });
        return;
    }
    let Some(g) = g else {
        // The peer waits for our first turn: given without a hello (as after a failed
        // map), it stops too.
        let _ = env.xen.evtchn_send(p.port);
        env.t.fail(name.as_str(), "no grant pages here (see above)");
        return;
    };
    let hold = then_of(p.domid) == Then::Crash;
    p.held = grants::peer_phase(&mut env.t, env.xen, env.b, g, p.domid, p.port, hold);
}

/// The pause test and the final ping.
fn pause_and_ping(env: &mut Env, p: &Peer) {
    let d = p.domid;
    if p.gone {
        env.t.skip(peer_check(d, "ping-answer").as_str(), "the domain is gone");
        return;
    }
    let paused = env.xen.domctl_pausedomain(d);
    env.t.check(peer_check(d, "pause").as_str(), paused);
    if paused.is_ok() {
        env.t.check(
            peer_check(d, "paused-flag").as_str(),
            match env.xen.domctl_getdomaininfo(d) {
                Ok(i) => Outcome::ensure(
                    i.domain == d && i.flags & XEN_DOMINF_PAUSED != 0,
                    format_args!("domain {} flags {:#x}", i.domain, i.flags),
                ),
                Err(e) => Outcome::fail(e),
            },
        );
    }
    // Whatever a peer sent after its rounds is not the answer.
    env.b.clear_pending(p.port);
    if let Err(e) = env.xen.evtchn_send(p.port) {
        env.t.fail(peer_check(d, "ping").as_str(), e);
        let _ = env.xen.domctl_unpausedomain(d);
        return;
    }
    if paused.is_ok() {
        let early = wait(env, p.port, PAUSED_WINDOW);
        env.t.check(
            peer_check(d, "no-answer-while-paused").as_str(),
            Outcome::ensure(!early, "the paused domain answered the ping"),
        );
        if early {
            // Already answered: the check below would wait for nothing.
            let _ = env.xen.domctl_unpausedomain(d);
            return;
        }
        env.t.check(peer_check(d, "unpause").as_str(), env.xen.domctl_unpausedomain(d));
    }
    let start = events::now();
    let answered = wait(env, p.port, ANSWER_TIMEOUT);
    let ms = (events::now() - start) / 1_000_000;
    env.t.check(
        peer_check(d, "ping-answer").as_str(),
        Outcome::ensure(answered, "no answer within 5 s of the unpause"),
    );
    if answered {
        println!("domains: d{d} answered the ping {ms} ms after the unpause");
    }
}

/// Peers that power off or crash: VIRQ_DOM_EXC, then they are gone and their ports
/// unbound. One that crashed with a page still mapped by us may stay, shut down or
/// dying, until we unmap it.
fn await_exits(env: &mut Env, peers: &mut [Peer], g: Option<&grants::Dom0>) {
    let deadline = events::now() + EXIT_TIMEOUT;
    let exiting = |p: &Peer| then_of(p.domid) != Then::Hang;
    let mut exited = [false; MAX_PEERS];
    loop {
        dom_exc_pending(env);
        for (p, x) in peers.iter_mut().zip(exited.iter_mut()).filter(|(p, _)| exiting(p)) {
            let seen = look(env.xen, p.domid);
            p.gone = matches!(seen, Seen::Gone);
            *x = p.gone || (p.held.is_some() && crashed_or_dying(&seen));
        }
        let now = events::now();
        if peers.iter().zip(exited).filter(|(p, _)| exiting(p)).all(|(_, x)| x) || now >= deadline {
            break;
        }
        match env.virq {
            Some(v) => {
                let _ = env.xen.sched_poll(&[v], deadline.min(now + NS_PER_SEC));
            }
            None => {
                let _ = env.xen.sched_yield();
            }
        }
    }
    if peers.iter().any(exiting) {
        env.t
            .check("virq-dom-exc", Outcome::ensure(env.dom_exc > 0, "no VIRQ_DOM_EXC while peers shut down"));
    }
    for p in peers.iter_mut().filter(|p| exiting(p)) {
        let what = match then_of(p.domid) {
            Then::Poweroff => "gone-after-poweroff",
            _ => "gone-after-crash",
        };
        if let (Some(held), Some(g)) = (p.held.take(), g) {
            release_held(env, p, g, held);
        } else {
            env.t.check(peer_check(p.domid, what).as_str(), gone_outcome(look(env.xen, p.domid)));
        }
        env.t.check(
            peer_check(p.domid, "port-unbound").as_str(),
            expect_status(env.xen.evtchn_status(DOMID_SELF, p.port), EVTCHNSTAT_UNBOUND, p.domid),
        );
    }
}

/// A peer that crashed with its page mapped by us: it is gone, or lingers dying (Xen
/// keeps a destroyed domain while a frame of it is referenced) or only shut down (then
/// we destroy it, as a toolstack would); we read the page, copy from the grant and
/// unmap it (`grants.rs`); then the domain must be gone.
fn release_held(env: &mut Env, p: &mut Peer, g: &grants::Dom0, held: grants::Held) {
    let d = p.domid;
    let seen = look(env.xen, d);
    let state = match seen {
        Seen::Gone => "gone",
        Seen::There { flags } if flags & XEN_DOMINF_DYING != 0 => "dying",
        Seen::There { .. } if crashed_or_dying(&seen) => "shut down",
        _ => "",
    };
    println!("domains: d{d} crashed with a page mapped by dom0; it is {state:?} now");
    env.t.check(
        peer_check(d, "crashed-with-grant-mapped").as_str(),
        if state.is_empty() { gone_outcome(seen) } else { Outcome::Pass },
    );
    if state == "shut down" {
        env.t.check(peer_check(d, "destroy-after-crash").as_str(), env.xen.domctl_destroydomain(d));
    }
    grants::release_held(&mut env.t, env.xen, g, d, held, !state.is_empty());
    let deadline = events::now() + SETTLE_TIMEOUT;
    let seen = loop {
        dom_exc_pending(env);
        let seen = look(env.xen, d);
        if matches!(seen, Seen::Gone) || events::now() >= deadline {
            break seen;
        }
        let _ = env.xen.sched_yield();
    };
    p.gone = matches!(seen, Seen::Gone);
    env.t.check(peer_check(d, "gone-after-unmap").as_str(), gone_outcome(seen));
}

/// Whether a domain that is there has crashed or is being destroyed.
fn crashed_or_dying(seen: &Seen) -> bool {
    match *seen {
        Seen::There { flags } => {
            let reason = (flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK;
            flags & XEN_DOMINF_DYING != 0 || (flags & XEN_DOMINF_SHUTDOWN != 0 && reason == SHUTDOWN_CRASH)
        }
        _ => false,
    }
}

/// The peer that hangs: destroyed by us.
fn destroy_hanging(env: &mut Env, peers: &mut [Peer]) {
    let Some(p) = peers.iter_mut().find(|p| then_of(p.domid) == Then::Hang) else { return };
    let d = p.domid;
    // A VIRQ_DOM_EXC from before is not the one for this destroy.
    dom_exc_pending(env);
    let before = env.dom_exc;
    let r = env.xen.domctl_destroydomain(d);
    env.t.check("destroy-idle", r);
    p.gone = matches!(look(env.xen, d), Seen::Gone);
    env.t.check("idle-gone-after-destroy", gone_outcome(look(env.xen, d)));
    env.t.check("destroy-idle-again-esrch", expect_err(env.xen.domctl_destroydomain(d), Errno::ESRCH));
    env.t.check(
        "idle-port-unbound",
        expect_status(env.xen.evtchn_status(DOMID_SELF, p.port), EVTCHNSTAT_UNBOUND, d),
    );
    if let Some(v) = env.virq {
        let fired = env.b.clear_pending(v) || wait(env, v, SETTLE_TIMEOUT);
        if fired {
            env.dom_exc += 1;
        }
        env.t.check(
            "virq-dom-exc-after-destroy",
            Outcome::ensure(fired && env.dom_exc > before, "no VIRQ_DOM_EXC within 2 s of the destroy"),
        );
    }
}

/// Free memory grew by at least the peers' pages once they are gone.
fn pages_returned(env: &mut Env, peers: &[Peer], before: u64) {
    let gone: u64 = peers.iter().filter(|p| p.gone).map(|p| p.tot_pages).sum();
    let deadline = events::now() + SETTLE_TIMEOUT;
    let after = loop {
        let free = env.xen.sysctl_physinfo().map(|i| i.free_pages);
        match free {
            Ok(f) if f >= before + gone => break Ok(f),
            Ok(f) if events::now() >= deadline => break Ok(f),
            Err(e) => break Err(e),
            Ok(_) => {
                let _ = env.xen.sched_yield();
            }
        }
    };
    println!("domains: free_pages {before} -> {after:?}; the gone peers had {gone} pages");
    env.t.check(
        "free-pages-returned",
        match after {
            Ok(f) => Outcome::ensure(
                f >= before + gone,
                format_args!("free_pages {before} -> {f}, expected at least +{gone}"),
            ),
            Err(e) => Outcome::fail(e),
        },
    );
}

/// Whether VIRQ_DOM_EXC fired since the last look (counted in `env.dom_exc`).
fn dom_exc_pending(env: &mut Env) -> bool {
    let fired = env.virq.is_some_and(|v| env.b.clear_pending(v));
    if fired {
        env.dom_exc += 1;
    }
    fired
}

/// Waits until `port` is pending (and clears it), for at most `timeout` ns; returns
/// whether it was.
fn wait(env: &Env, port: EvtchnPort, timeout: u64) -> bool {
    let deadline = events::now() + timeout;
    loop {
        if env.b.clear_pending(port) {
            return true;
        }
        if events::now() >= deadline {
            return false;
        }
        // Returns at once if the port became pending since the check above.
        if env.xen.sched_poll(&[port], deadline).is_err() {
            let _ = env.xen.sched_yield();
        }
    }
}

/// What `getdomaininfo` says about a domain.
enum Seen {
    /// No such domain: -ESRCH, or (Xen 4.17) the answer is about a later domain.
    Gone,
    /// It is there.
    There { flags: u32 },
    /// Another error.
    Error(Errno),
}

fn look(xen: Hypercalls, d: DomId) -> Seen {
    match xen.domctl_getdomaininfo(d) {
        Err(Errno::ESRCH) => Seen::Gone,
        Ok(i) if i.domain != d => Seen::Gone,
        Ok(i) => Seen::There { flags: i.flags },
        Err(e) => Seen::Error(e),
    }
}

/// Pass if the domain is gone; else say what it looks like.
fn gone_outcome(seen: Seen) -> Outcome {
    match seen {
        Seen::Gone => Outcome::Pass,
        Seen::There { flags } => Outcome::fail(format_args!(
            "still there: flags {flags:#x} (shutdown {}, reason {}, dying {})",
            flags & XEN_DOMINF_SHUTDOWN != 0,
            (flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK,
            flags & XEN_DOMINF_DYING != 0
        )),
        Seen::Error(e) => Outcome::fail(format_args!("getdomaininfo: {e}, expected -ESRCH")),
    }
}

/// A port's status is `state` with remote domain `dom` (unbound: the domain allowed
/// to bind; interdomain: the peer; VIRQ: the VIRQ number).
fn expect_status(r: Result<EvtchnStatus, Errno>, state: u32, dom: DomId) -> Outcome {
    match r {
        Ok(s) => {
            let detail = match state {
                EVTCHNSTAT_VIRQ => s.u[0],
                _ => s.u[0] & 0xffff,
            };
            Outcome::ensure(
                s.status == state && detail == dom as u32,
                format_args!("status {} u {:?}, expected status {state} with {dom}", s.status, s.u),
            )
        }
        Err(e) => Outcome::fail(e),
    }
}

/// `peerN-what`.
fn peer_check(d: DomId, what: &str) -> guest_shim::report::FixedStr<48> {
    guest_shim::report::FixedStr::format(format_args!("peer{d}-{what}"))
}

// On the host (`cargo test --workspace`) the guest is an empty program.
#[cfg(not(target_os = "none"))]
fn main() {}
