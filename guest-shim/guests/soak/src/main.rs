// SPDX-License-Identifier: MIT OR Apache-2.0
//! Soak guest run as **dom0** next to one boot-time domU that reboots as soon as it
//! has booted (`domu-peer` with `port=0 rounds=0 then=reboot`): domain creation and
//! destruction, over and over, with the free-frame count checked at every cycle.
//! `make soak` runs 1000 cycles; the `domain-reboot-churn` scenario runs 20:
//!
//! ```text
//! build/bin/hvrun --timeout 3600 build/guests/soak.elf:cycles=1000 \
//!   'build/guests/domu-peer.elf:domu name=churn mem=16 -- port=0 rounds=0 then=reboot'
//! ```
//!
//! A domU that reboots (`SHUTDOWN_reboot`) is destroyed and built again from the same
//! module and command line under a new domain id, the next unused one (as xl's
//! default `on_reboot=restart` does); dom0 hears of each exit through `VIRQ_DOM_EXC`.
//!
//! Command line: `cycles=N` (default 1000, at least 1).
//!
//! # What is checked
//!
//! - `VIRQ_DOM_EXC` binds; `physinfo` answers;
//! - the domU's incarnations follow each other: `getdomaininfo(1)` answers for the
//!   first domain whose id is at least 1, i.e. the current incarnation (Xen 4.17's
//!   semantics, which this hypervisor follows). A new id is a new incarnation; ids
//!   grow, so a cycle dom0 did not see in passing still counts (the id says how many
//!   went by). Each incarnation must appear within 30 s of the previous one
//!   (`cycles`); ids must grow (`domid-grows`);
//! - every cycle dom0 sees, `physinfo.free_pages` is read between two
//!   `getdomaininfo`s that name the same incarnation (so the figure belongs to one
//!   whole domain, not to the moment between two). It must be identical at every
//!   cycle after the first (`free-pages-constant`: no frame leaked or kept), as must
//!   the incarnation's `tot_pages` (`tot-pages-constant`);
//! - `VIRQ_DOM_EXC` fired (`virq-dom-exc`; counted, but events coalesce, so the
//!   count is only a figure);
//! - at the end: the current incarnation is paused (retrying if it was replaced
//!   meanwhile; paused, it cannot reboot) and destroyed; `free_pages` grows by at
//!   least its `tot_pages`, no domU is left and `VIRQ_DOM_EXC` fires again.
//!
//! Progress is printed every 100 cycles; at the end the cycles, the elapsed system
//! time, how many incarnations dom0 saw and the `free_pages` figures. Every wait has
//! a timeout, so a hypervisor bug gives a FAIL line, not a hang (unless it keeps
//! dom0 off the CPU altogether: hvrun's `--timeout` is the net for that).
//!
//! On Xen 4.17 (no domU without a toolstack) only the first two checks run and the
//! rest is skipped; so is it when no domU shows within 2 s here, which is why
//! `make soak` and the scenario also expect the `soak: N cycles in` line.

#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_shim::events::{self, Bitmaps, EvtchnPort, NS_PER_MS, NS_PER_SEC};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::domctl::XEN_DOMINF_PAUSED;
use guest_shim::pv_abi::xen::{DomId, VIRQ_DOM_EXC};
use guest_shim::report::{FixedStr, expect_err, need};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, println};

guest_shim::entry!(start);

/// Cycles without `cycles=`.
const DEFAULT_CYCLES: u32 = 1000;
/// The boot-time domU's first id; `getdomaininfo` of it finds every later one.
const FIRST_DOMU: DomId = 1;
/// How long one incarnation may take to be replaced by the next (it boots, runs a
/// few checks and reboots: well under a second on TCG).
const CYCLE_TIMEOUT: u64 = 30 * NS_PER_SEC;
/// Longest sleep between two looks when no `VIRQ_DOM_EXC` comes (a missing one must
/// not stall the soak: the check on the count reports it).
const POLL_SLICE: u64 = 100 * NS_PER_MS;
/// How long freed pages may take to show in `physinfo`, and `VIRQ_DOM_EXC` after a
/// destroy.
const SETTLE_TIMEOUT: u64 = 2 * NS_PER_SEC;
/// Cycles between progress lines.
const PROGRESS_EVERY: u32 = 100;

/// A reason for a FAIL line.
type Why = FixedStr<96>;

/// Parses `cycles=N` (optional).
fn parse_cycles(line: &str) -> Result<u32, &'static str> {
    let mut cycles = DEFAULT_CYCLES;
    for word in line.split_ascii_whitespace() {
        match word.split_once('=') {
            Some(("cycles", v)) => {
                cycles = v.parse().ok().filter(|&n| n >= 1).ok_or("cycles= must be a number >= 1")?;
            }
            _ => return Err("unknown word (expected cycles=N)"),
        }
    }
    Ok(cycles)
}

/// One consistent look at the current incarnation and the free pages.
#[derive(Clone, Copy, Debug)]
struct Sample {
    domid: DomId,
    tot_pages: u64,
    free_pages: u64,
}

/// What a look found.
enum Look {
    Domain(Sample),
    /// No domU at the moment (or it changed under every look).
    NoDomain,
    Error(&'static str, Errno),
}

/// `getdomaininfo(1)`, `physinfo`, `getdomaininfo(1)`: the free count is kept only
/// if both name the same incarnation.
fn look(xen: Hypercalls) -> Look {
    for _ in 0..16 {
        let a = match xen.domctl_getdomaininfo(FIRST_DOMU) {
            Ok(i) => i,
            Err(Errno::ESRCH) => return Look::NoDomain,
            Err(e) => return Look::Error("getdomaininfo", e),
        };
        let free_pages = match xen.sysctl_physinfo() {
            Ok(p) => p.free_pages,
            Err(e) => return Look::Error("physinfo", e),
        };
        match xen.domctl_getdomaininfo(FIRST_DOMU) {
            Ok(b) if b.domain == a.domain => {
                return Look::Domain(Sample { domid: b.domain, tot_pages: b.tot_pages, free_pages });
            }
            Ok(_) | Err(Errno::ESRCH) => continue,
            Err(e) => return Look::Error("getdomaininfo", e),
        }
    }
    Look::NoDomain
}

/// A figure that must stay what it was at the first cycle.
#[derive(Clone, Copy, Debug, Default)]
struct Constant {
    /// (cycle, value) at the first cycle.
    first: Option<(u32, u64)>,
    /// The first cycle where it differed, and the value then.
    first_diff: Option<(u32, u64)>,
    /// Cycles where it differed.
    diffs: u32,
    min: u64,
    max: u64,
}

impl Constant {
    fn record(&mut self, cycle: u32, value: u64) {
        match self.first {
            None => {
                self.first = Some((cycle, value));
                (self.min, self.max) = (value, value);
            }
            Some((_, v)) => {
                if value != v {
                    self.diffs += 1;
                    self.first_diff.get_or_insert((cycle, value));
                }
                self.min = self.min.min(value);
                self.max = self.max.max(value);
            }
        }
    }

    fn outcome(&self, what: &str, seen: u32) -> Outcome {
        match (self.first, self.first_diff) {
            (None, _) => Outcome::skip("no cycle completed"),
            (Some(_), None) => Outcome::Pass,
            (Some((c0, v0)), Some((c, v))) => Outcome::fail(format_args!(
                "{what} {v0} at cycle {c0} but {v} at cycle {c}; {} of {seen} cycles differ, range {}..={}",
                self.diffs, self.min, self.max
            )),
        }
    }
}

/// The soak's state.
struct Soak {
    xen: Hypercalls,
    b: Bitmaps,
    /// The port bound to `VIRQ_DOM_EXC`.
    virq: Option<EvtchnPort>,
    /// `VIRQ_DOM_EXC` events seen.
    dom_exc: u32,
    /// Incarnations replaced so far (from the ids).
    cycles: u32,
    /// Incarnations dom0 looked at after the first.
    seen: u32,
    /// The latest look.
    current: Sample,
    /// An id that did not grow: (before, after).
    id_trouble: Option<(DomId, DomId)>,
    free: Constant,
    tot: Constant,
}

impl Soak {
    /// Counts a pending `VIRQ_DOM_EXC`.
    fn take_dom_exc(&mut self) -> bool {
        let fired = self.virq.is_some_and(|v| self.b.clear_pending(v));
        if fired {
            self.dom_exc += 1;
        }
        fired
    }

    /// Sleeps until `VIRQ_DOM_EXC` (or a bit, at most until `deadline`).
    fn sleep(&self, deadline: u64) {
        let until = deadline.min(events::now() + POLL_SLICE);
        let polled = match self.virq {
            Some(v) => self.xen.sched_poll(&[v], until).is_ok(),
            None => false,
        };
        if !polled {
            let _ = self.xen.sched_yield();
        }
    }

    /// Waits for the incarnation after `self.current`; records it.
    fn next(&mut self) -> Result<(), Why> {
        let deadline = events::now() + CYCLE_TIMEOUT;
        let s = loop {
            self.take_dom_exc();
            let last = match look(self.xen) {
                Look::Domain(s) if s.domid != self.current.domid => break s,
                Look::Domain(_) => "it is still there",
                Look::NoDomain => "no domU at all",
                Look::Error(what, e) => return Err(Why::format(format_args!("{what}: {e}"))),
            };
            if events::now() >= deadline {
                return Err(Why::format(format_args!(
                    "no incarnation after d{} within 30 s: {last}",
                    self.current.domid
                )));
            }
            self.sleep(deadline);
        };
        let step = if s.domid > self.current.domid {
            u32::from(s.domid - self.current.domid)
        } else {
            self.id_trouble.get_or_insert((self.current.domid, s.domid));
            1
        };
        let before = self.cycles;
        self.cycles += step;
        self.seen += 1;
        self.free.record(self.cycles, s.free_pages);
        self.tot.record(self.cycles, s.tot_pages);
        self.current = s;
        if before / PROGRESS_EVERY != self.cycles / PROGRESS_EVERY {
            println!(
                "soak: {} cycles, now d{}, free_pages={}, tot_pages={}, {} VIRQ_DOM_EXC, {} ms",
                self.cycles,
                s.domid,
                s.free_pages,
                s.tot_pages,
                self.dom_exc,
                events::now() / NS_PER_MS
            );
        }
        Ok(())
    }
}

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let line = core::str::from_utf8(si.cmdline()).unwrap_or("");
    let cycles = match parse_cycles(line) {
        Ok(n) => n,
        Err(why) => {
            t.fail("cmdline", format_args!("{why}: {line:?}"));
            t.finish()
        }
    };
    let b = need(&mut t, "map-shared-info", events::bitmaps());
    let virq = match xen.evtchn_bind_virq(VIRQ_DOM_EXC, 0) {
        Ok(p) => {
            t.pass("bind-virq-dom-exc");
            Some(p)
        }
        Err(e) => {
            t.fail("bind-virq-dom-exc", e);
            None
        }
    };
    let info = need(&mut t, "physinfo", xen.sysctl_physinfo());
    t.pass("physinfo");
    println!("soak: cycles={cycles}, total_pages={}, free_pages={}", info.total_pages, info.free_pages);

    // It may be between two incarnations (or not come back at all).
    let deadline = events::now() + SETTLE_TIMEOUT;
    let first = loop {
        match look(xen) {
            Look::Domain(s) => break s,
            Look::NoDomain if events::now() < deadline => {
                let _ = xen.sched_yield();
            }
            Look::NoDomain => {
                t.skip(
                    "soak",
                    "no domU within 2 s: boot one that reboots (domu-peer port=0 rounds=0 \
                     then=reboot); Xen 4.17 builds none without a toolstack",
                );
                t.finish()
            }
            Look::Error(what, e) => {
                t.fail("first-incarnation", format_args!("{what}: {e}"));
                t.finish()
            }
        }
    };
    println!(
        "soak: first incarnation d{}: tot_pages={}, free_pages={}",
        first.domid, first.tot_pages, first.free_pages
    );
    let mut soak = Soak {
        xen,
        b,
        virq,
        dom_exc: 0,
        cycles: 0,
        seen: 0,
        current: first,
        id_trouble: None,
        free: Constant::default(),
        tot: Constant::default(),
    };
    let t0 = events::now();
    let mut stalled = None;
    while soak.cycles < cycles {
        if let Err(why) = soak.next() {
            stalled = Some(why);
            break;
        }
    }
    let elapsed_ms = (events::now() - t0) / NS_PER_MS;

    t.check(
        "cycles",
        match stalled {
            None => Outcome::Pass,
            Some(why) => Outcome::fail(format_args!("{} of {cycles} cycles: {why}", soak.cycles)),
        },
    );
    t.check(
        "domid-grows",
        match soak.id_trouble {
            None => Outcome::Pass,
            Some((a, b)) => Outcome::fail(format_args!("d{b} came after d{a}: expected the next unused id")),
        },
    );
    t.check("free-pages-constant", soak.free.outcome("free_pages", soak.seen));
    t.check("tot-pages-constant", soak.tot.outcome("tot_pages", soak.seen));
    soak.take_dom_exc();
    t.check(
        "virq-dom-exc",
        Outcome::ensure(soak.dom_exc > 0 || soak.cycles == 0, "no VIRQ_DOM_EXC while domains came and went"),
    );
    let per_cycle_us = (elapsed_ms * 1000).checked_div(u64::from(soak.cycles)).unwrap_or(0);
    println!(
        "soak: {} cycles in {elapsed_ms} ms of system time ({per_cycle_us} us per cycle); dom0 saw {} \
         incarnations and {} VIRQ_DOM_EXC",
        soak.cycles, soak.seen, soak.dom_exc
    );
    match soak.free.first {
        Some((_, f)) => println!(
            "soak: free_pages {} with the first incarnation, {f} at the first cycle, {}..={} over all; \
             tot_pages {}..={}",
            first.free_pages, soak.free.min, soak.free.max, soak.tot.min, soak.tot.max
        ),
        None => {
            println!("soak: free_pages {} with the first incarnation, no cycle after it", first.free_pages)
        }
    }
    destroy_current(&mut t, &mut soak);
    t.finish()
}

/// Pauses the current incarnation (whichever it is by then) and destroys it; checks
/// that its pages come back and that no domU is left.
fn destroy_current(t: &mut Tests, soak: &mut Soak) {
    let xen = soak.xen;
    let deadline = events::now() + CYCLE_TIMEOUT;
    let mut replaced = 0u32;
    let d = loop {
        let why: Why = match look(xen) {
            Look::Domain(s) => match xen.domctl_pausedomain(s.domid) {
                Ok(()) => break s.domid,
                // Replaced between the look and the pause: look again.
                Err(Errno::ESRCH) => {
                    replaced += 1;
                    Why::format(format_args!("d{} replaced {replaced} times", s.domid))
                }
                Err(e) => {
                    t.fail("pause-current", format_args!("pausedomain({}): {e}", s.domid));
                    return;
                }
            },
            Look::NoDomain => Why::format(format_args!("no domU")),
            Look::Error(what, e) => {
                t.fail("pause-current", format_args!("{what}: {e}"));
                return;
            }
        };
        if events::now() >= deadline {
            t.fail("pause-current", format_args!("nothing to pause within 30 s: {why}"));
            return;
        }
        soak.sleep(deadline);
    };
    // Paused, it cannot reboot: its pages and the free count stay put.
    let info = xen.domctl_getdomaininfo(d);
    t.check(
        "pause-current",
        match info {
            Ok(i) => Outcome::ensure(
                i.domain == d && i.flags & XEN_DOMINF_PAUSED != 0,
                format_args!("getdomaininfo({d}): domain {} flags {:#x}", i.domain, i.flags),
            ),
            Err(e) => Outcome::fail(format_args!("getdomaininfo({d}): {e}")),
        },
    );
    let (Ok(info), Ok(phys)) = (info, xen.sysctl_physinfo()) else {
        t.fail("destroy-current", "no figures before the destroy (see above)");
        let _ = xen.domctl_unpausedomain(d);
        return;
    };
    let (tot, before) = (info.tot_pages, phys.free_pages);
    soak.take_dom_exc();
    let exc_before = soak.dom_exc;
    t.check("destroy-current", xen.domctl_destroydomain(d));

    let settle = events::now() + SETTLE_TIMEOUT;
    let after = loop {
        match xen.sysctl_physinfo().map(|p| p.free_pages) {
            Ok(f) if f >= before + tot || events::now() >= settle => break Ok(f),
            Ok(_) => {
                let _ = xen.sched_yield();
            }
            Err(e) => break Err(e),
        }
    };
    println!("soak: destroyed d{d} (tot_pages={tot}): free_pages {before} -> {after:?}");
    t.check(
        "destroy-returns-pages",
        match after {
            Ok(f) => Outcome::ensure(
                f >= before + tot,
                format_args!("free_pages {before} -> {f}, expected at least +{tot}"),
            ),
            Err(e) => Outcome::fail(e),
        },
    );
    t.check("no-domu-left", expect_err(xen.domctl_getdomaininfo(FIRST_DOMU).map(|i| i.domain), Errno::ESRCH));
    if soak.virq.is_some() {
        let fired = wait_dom_exc(soak, events::now() + SETTLE_TIMEOUT);
        t.check(
            "virq-dom-exc-after-destroy",
            Outcome::ensure(fired && soak.dom_exc > exc_before, "no VIRQ_DOM_EXC within 2 s of the destroy"),
        );
    }
}

/// Waits for `VIRQ_DOM_EXC` (counting it), at most until `deadline`; returns whether
/// it came.
fn wait_dom_exc(soak: &mut Soak, deadline: u64) -> bool {
    loop {
        if soak.take_dom_exc() {
            return true;
        }
        if events::now() >= deadline {
            return false;
        }
        soak.sleep(deadline);
    }
}

// On the host (`cargo test --workspace`) the guest is an empty program.
#[cfg(not(target_os = "none"))]
fn main() {}
