// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest run as **dom0** next to three `spinner` domUs (busy loops that never
//! block): the scheduler's policy, seen from outside through each domain's
//! `cpu_time` (`XEN_DOMCTL_getdomaininfo`) while dom0 itself blocks.
//!
//! Only this project's hypervisor boots domUs at boot time (Xen needs a toolstack):
//!
//! ```text
//! build/bin/hvrun --timeout 300 build/guests/sched-share.elf \
//!   'build/guests/spinner.elf:domu name=w256 mem=16 weight=256 -- w256' \
//!   'build/guests/spinner.elf:domu name=w512 mem=16 weight=512 -- w512' \
//!   'build/guests/spinner.elf:domu name=capped mem=16 weight=512 cap=20 -- capped'
//! ```
//!
//! Domains 1, 2, 3 must be these three, in this order ([`SPINNERS`]). The command line
//! (optional) is `spinners=0|3` (default 3). On Xen 4.17, with no domUs,
//! `build/guests/sched-share.elf:spinners=0` runs the dom0-only checks and skips the rest.
//!
//! # How a measurement is made
//!
//! A *window*: read every domain's `cpu_time`, block (`set_timer_op` + `SCHEDOP_block`,
//! woken by VIRQ_TIMER; Xen's 100 Hz periodic timer is stopped first) until a deadline
//! some seconds of system time later, read them again. The elapsed time runs from
//! before the first read to after the last, so the domains' CPU times in a window add
//! up to at most the elapsed time (one physical CPU).
//!
//! In the windows with spinners dom0 wakes every 20 ms meanwhile (a heartbeat; it
//! costs 0.5% to 2% of the CPU).
//! Under QEMU TCG guest time is host time: when the host deschedules QEMU, the guest's
//! clock jumps and the vCPU that was running is charged the whole jump (seen: 300 ms,
//! which alone turns 1:2 into 1:1.35). dom0 wakes with credit to spare, so the
//! scheduler runs it at once: a wake more than 50 ms late means the CPU was taken
//! from every domain, by the host or by a scheduler that did not run dom0. Such a
//! window is printed and measured again, up to 3 times; the checks judge the last,
//! so a hypervisor that always wakes dom0 late still fails `*-timer-wake`.
//!
//! # Checks
//!
//! dom0 alone (Xen 4.17 too; with spinners they are paused for it), a 1 s window with
//! one block, no heartbeat: dom0's own `cpu_time` grows by at most 5% of the elapsed time while it blocks; the
//! timer wakes it on time (not more than 1 ms early, at most 50 ms late);
//! the timer's event arrived; `cpu_time` never goes backwards; `getdomaininfo` and
//! `destroydomain` of a domain that does not exist give -ESRCH.
//!
//! With the spinners (weights 256, 512 and 512 with a cap of 20%), after checking
//! they exist (`spinners-present`) and each got some CPU in a first 500 ms
//! (`spinners-started`; `*-pause`/`*-unpause`: the `pausedomain` calls between windows):
//! - `weights` (3 s, the capped one paused): CPU time of w512 / w256 is 2 ± 15%; the
//!   two use at least 85% of the elapsed time (dom0 blocks, so nearly all of the CPU is
//!   theirs); each at least 5% (no starvation); the paused one none at all;
//! - `mixed` (3 s, all three): the capped one, whose weight alone would give it 40%,
//!   gets its cap: 15% to 23% of the elapsed time (20% + 3 points of slack); w512 /
//!   w256 is still 2 ± 15% (what the capped domain cannot use goes to the others by
//!   weight); the three use at least 85%; each at least 5%;
//! - `cap-alone` (2 s, the uncapped two paused): the capped one still gets 15% to 23%
//!   even though the CPU idles the rest of the time (a cap holds with idle CPU, as in
//!   Xen's credit scheduler); the paused ones none;
//! - every window: dom0 blocked uses at most 5%, its timer wakes it on time;
//! - at the end each spinner is destroyed (`destroydomain`), is gone afterwards, and a
//!   second destroy gives -ESRCH.
//!
//! Every window prints what it measured (`sched-share: <window>: ...`), so a failure
//! shows the figures.
//!
//! # Xen behaviour worth knowing
//!
//! - Xen starts every PV vCPU with a 100 Hz periodic VIRQ_TIMER: without
//!   `VCPUOP_stop_periodic_timer` dom0 would wake 100 times a second.
//! - `XEN_DOMCTL_getdomaininfo` in Xen 4.17 answers for the first domain whose id is
//!   at least the one asked for, so each answer's `domain` is checked.
//! - Xen 4.17 runs credit2 by default (not the credit scheduler ours follows); only
//!   dom0's own figures are comparable. Under TCG its timer wakes an idle dom0 0.1 to
//!   10 ms after the deadline, and each wake costs dom0 about 0.4 ms of CPU time (2%
//!   to 2.6% at 50 wakes a second; on ours 0.5% to 2%).

#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_shim::events::{self, Bitmaps, EvtchnPort, NS_PER_MS, NS_PER_SEC, NS_PER_US};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::domctl::{XEN_DOMINF_DYING, XEN_DOMINF_SHUTDOWN};
use guest_shim::pv_abi::xen::{DomId, VIRQ_TIMER};
use guest_shim::report::{FixedStr, all, expect_err, need};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, println};

guest_shim::entry!(start);

/// A boot-time domU of the intended run, as its module command line makes it.
#[derive(Clone, Copy, Debug)]
struct Spinner {
    domid: DomId,
    name: &'static str,
    weight: u16,
    /// Percent of one CPU; 0: none.
    cap: u16,
}

/// Domains 1, 2, 3 (module order). The capped one's weight would give it 40% in
/// `mixed`: twice its cap, so the cap, not the weight, is what limits it.
const SPINNERS: [Spinner; 3] = [
    Spinner { domid: 1, name: "w256", weight: 256, cap: 0 },
    Spinner { domid: 2, name: "w512", weight: 512, cap: 0 },
    Spinner { domid: 3, name: "capped", weight: 512, cap: 20 },
];
/// Indexes into [`SPINNERS`] (and, plus one, into a sample's domains).
const W256: usize = 0;
const W512: usize = 1;
const CAPPED: usize = 2;

/// How long the spinners run before anything is measured: each prints its line and
/// reaches its loop.
const SETTLE: u64 = 500 * NS_PER_MS;
/// The dom0-alone window.
const ALONE_WINDOW: u64 = NS_PER_SEC;
/// The `weights` and `mixed` windows: 300 ticks of 10 ms, 100 slices of 30 ms.
const SHARE_WINDOW: u64 = 3 * NS_PER_SEC;
/// The `cap-alone` window.
const CAP_WINDOW: u64 = 2 * NS_PER_SEC;
/// How far a CPU-time ratio may stray from the weights' ratio, percent.
const RATIO_TOLERANCE_PCT: u64 = 15;
/// How far above its cap a capped domain may go, per mille of the elapsed time.
const CAP_SLACK_PM: u64 = 30;
/// How little of its cap a capped domain that always wants the CPU may get: 3/4.
const CAP_FLOOR_NUM: u64 = 3;
const CAP_FLOOR_DEN: u64 = 4;
/// Busy domains with dom0 blocked use at least this much of the CPU, per mille.
const BUSY_MIN_PM: u64 = 850;
/// A runnable domain gets at least this much, per mille (no starvation).
const STARVE_MIN_PM: u64 = 50;
/// dom0 blocked for a window uses at most this much of it, per mille.
const DOM0_MAX_PM: u64 = 50;
/// How often dom0 wakes while it waits out a window: each wake's lateness bounds how
/// long the CPU was taken from everyone (see the top of the file).
const HEARTBEAT: u64 = 20 * NS_PER_MS;
/// One block to the end of the window: where no shares are measured, so that dom0's
/// own CPU time is that of one wake.
const NO_HEARTBEAT: u64 = u64::MAX;
/// How late dom0 may wake after its timer's deadline: it wakes with credit left, so
/// it preempts a spinner at once (Xen's BOOST); the rest is room for TCG.
const WAKE_LATE_MAX: u64 = 50 * NS_PER_MS;
/// How early: Xen may fire a timer up to its `timer_slop` (50 us) early.
const WAKE_EARLY_MAX: u64 = NS_PER_MS;
/// How many times a window is measured when dom0 woke late in it.
const ATTEMPTS: u32 = 3;
/// A domain that does not exist.
const NO_SUCH_DOMAIN: DomId = 77;

/// dom0 and the spinners.
const NR_DOMAINS: usize = SPINNERS.len() + 1;

/// Everything the sections share.
struct Env {
    t: Tests,
    xen: Hypercalls,
    b: Bitmaps,
    /// VIRQ_TIMER's port.
    timer: EvtchnPort,
    /// Spinners in this run (0 or all of them).
    spinners: usize,
    /// dom0's `cpu_time` at the last sample: it must never go backwards.
    dom0_last: u64,
    /// The first time it did: (before, after).
    backwards: Option<(u64, u64)>,
}

/// Every domain's `cpu_time` at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// System time before the first read and after the last.
    start: u64,
    end: u64,
    /// dom0, then the spinners (0 past `env.spinners`).
    cpu: [u64; NR_DOMAINS],
}

/// What a window measured.
#[derive(Clone, Copy, Debug)]
struct Window {
    elapsed: u64,
    /// CPU time used in the window, dom0 then the spinners.
    used: [u64; NR_DOMAINS],
    /// The latest and the earliest of dom0's timer wakes: their distance from their
    /// deadlines (negative: early), ns.
    late: i64,
    early: i64,
    /// dom0's wakes in the window.
    wakes: u32,
    /// Whether VIRQ_TIMER's event came.
    timer_event: bool,
}

impl Window {
    /// Spinner `i`'s share of the elapsed time, per mille.
    fn share(&self, i: usize) -> u64 {
        per_mille(self.used[i + 1], self.elapsed)
    }
}

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let line = core::str::from_utf8(si.cmdline()).unwrap_or("");
    let spinners = match line.split_ascii_whitespace().next() {
        None => SPINNERS.len(),
        Some("spinners=0") if line.split_ascii_whitespace().count() == 1 => 0,
        Some("spinners=3") if line.split_ascii_whitespace().count() == 1 => SPINNERS.len(),
        Some(_) => {
            t.fail("cmdline", format_args!("expected spinners=0 or spinners=3, got {line:?}"));
            t.finish()
        }
    };
    let b = need(&mut t, "events-install", events::install());
    // Xen's 100 Hz periodic timer would wake the blocked dom0 (see the top of the file).
    t.check("stop-periodic-timer", xen.vcpu_stop_periodic_timer(0));
    let timer = need(&mut t, "bind-virq-timer", xen.evtchn_bind_virq(VIRQ_TIMER, 0));
    t.pass("bind-virq-timer");
    let mut env = Env { t, xen, b, timer, spinners, dom0_last: 0, backwards: None };
    println!("sched-share: spinners={spinners}");

    absent_domain(&mut env);
    if spinners == 0 {
        alone(&mut env);
        env.t.skip("spinners", "spinners=0: no domUs (Xen 4.17 boots none without a toolstack)");
        finish(env)
    }
    if !present(&mut env) {
        finish(env)
    }
    // Everyone reaches their loop before the figures count.
    if let Some(w) = window(&mut env, "settle", SETTLE, HEARTBEAT) {
        env.t.check(
            "spinners-started",
            all((0..SPINNERS.len()).map(|i| {
                Outcome::ensure(w.used[i + 1] > 0, format_args!("{} got no CPU in 500 ms", SPINNERS[i].name))
            })),
        );
    }
    let all_spinners = [W256, W512, CAPPED];
    if pause(&mut env, "alone", &all_spinners, true) {
        alone(&mut env);
        pause(&mut env, "alone", &[W256, W512], false);
        weights(&mut env);
        pause(&mut env, "weights", &[CAPPED], false);
        mixed(&mut env);
        if pause(&mut env, "cap-alone", &[W256, W512], true) {
            cap_alone(&mut env);
            pause(&mut env, "cap-alone", &[W256, W512], false);
        }
    } else {
        // Paused or not, destroy what can be destroyed.
        pause(&mut env, "alone", &all_spinners, false);
    }
    destroy(&mut env);
    finish(env)
}

/// The check made in every sample, then the summary and poweroff.
fn finish(mut env: Env) -> ! {
    env.t.check(
        "dom0-cpu-time-monotonic",
        match env.backwards {
            None => Outcome::Pass,
            Some((before, after)) => Outcome::fail(format_args!("{after} ns after {before} ns")),
        },
    );
    env.t.finish()
}

/// `getdomaininfo` and `destroydomain` of a domain that does not exist.
fn absent_domain(env: &mut Env) {
    let Env { t, xen, .. } = env;
    t.check(
        "getdomaininfo-no-domain-esrch",
        expect_err(xen.domctl_getdomaininfo(NO_SUCH_DOMAIN).map(|i| i.domain), Errno::ESRCH),
    );
    t.check(
        "destroydomain-no-domain-esrch",
        expect_err(xen.domctl_destroydomain(NO_SUCH_DOMAIN), Errno::ESRCH),
    );
}

/// The spinners are there and alive.
fn present(env: &mut Env) -> bool {
    let Env { t, xen, .. } = env;
    let o = all(SPINNERS.iter().map(|s| match xen.domctl_getdomaininfo(s.domid) {
        Ok(i) if i.domain == s.domid && i.flags & (XEN_DOMINF_DYING | XEN_DOMINF_SHUTDOWN) == 0 => {
            Outcome::Pass
        }
        Ok(i) => Outcome::fail(format_args!(
            "d{} ({}): answer about d{} with flags {:#x}",
            s.domid, s.name, i.domain, i.flags
        )),
        Err(e) => Outcome::fail(format_args!("d{} ({}): {e}: is it running?", s.domid, s.name)),
    }));
    t.check("spinners-present", o)
}

/// Pauses (or unpauses) some spinners; returns whether every call succeeded.
fn pause(env: &mut Env, phase: &str, which: &[usize], paused: bool) -> bool {
    let Env { t, xen, .. } = env;
    let verb = if paused { "pause" } else { "unpause" };
    let o = all(which.iter().map(|&i| {
        let d = SPINNERS[i].domid;
        let r = if paused { xen.domctl_pausedomain(d) } else { xen.domctl_unpausedomain(d) };
        match r {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::fail(format_args!("{verb} d{d}: {e}")),
        }
    }));
    t.check(name(phase, verb).as_str(), o)
}

/// dom0 alone: blocked, it uses (almost) no CPU, and its timer wakes it on time.
fn alone(env: &mut Env) {
    let Some(w) = window(env, "alone", ALONE_WINDOW, NO_HEARTBEAT) else { return };
    wake_and_dom0(env, "alone", &w);
    env.t.check(
        "alone-timer-event",
        Outcome::ensure(w.timer_event, "VIRQ_TIMER's event never came (woken by what?)"),
    );
}

/// w256 and w512 (capped paused): CPU time 1:2.
fn weights(env: &mut Env) {
    let Some(w) = window(env, "weights", SHARE_WINDOW, HEARTBEAT) else { return };
    wake_and_dom0(env, "weights", &w);
    ratio(env, "weights", &w);
    busy(env, "weights", &w, &[W256, W512]);
    starvation(env, "weights", &w, &[W256, W512]);
    paused_idle(env, "weights", &w, &[CAPPED]);
}

/// All three: the capped one gets its cap, the others 1:2 of the rest.
fn mixed(env: &mut Env) {
    let Some(w) = window(env, "mixed", SHARE_WINDOW, HEARTBEAT) else { return };
    wake_and_dom0(env, "mixed", &w);
    ratio(env, "mixed", &w);
    cap(env, "mixed", &w);
    busy(env, "mixed", &w, &[W256, W512, CAPPED]);
    starvation(env, "mixed", &w, &[W256, W512, CAPPED]);
}

/// The capped one alone: still its cap, though the CPU idles.
fn cap_alone(env: &mut Env) {
    let Some(w) = window(env, "cap-alone", CAP_WINDOW, HEARTBEAT) else { return };
    wake_and_dom0(env, "cap-alone", &w);
    cap(env, "cap-alone", &w);
    paused_idle(env, "cap-alone", &w, &[W256, W512]);
}

/// Measures a window of `len` ns (see the top of the file) and prints it, again (at
/// most [`ATTEMPTS`] times) while dom0 woke late in it; `None` (after a FAIL) if a
/// domain could not be read.
fn window(env: &mut Env, phase: &str, len: u64, heartbeat: u64) -> Option<Window> {
    for attempt in 1.. {
        let w = measure(env, phase, len, heartbeat)?;
        print_window(env, phase, &w);
        if w.late <= WAKE_LATE_MAX as i64 || attempt == ATTEMPTS {
            return Some(w);
        }
        println!(
            "sched-share: {phase}: disturbed: dom0 woke {} us late (the CPU was taken from every \
             domain: QEMU descheduled by the host, or dom0 not run on time); measuring again",
            w.late / NS_PER_US as i64
        );
    }
    unreachable!()
}

/// One window of `len` ns.
fn measure(env: &mut Env, phase: &str, len: u64, heartbeat: u64) -> Option<Window> {
    let before = sample(env, phase)?;
    let deadline = before.end + len;
    let slept = sleep_until(env, phase, deadline, heartbeat)?;
    let after = sample(env, phase)?;
    let elapsed = after.end - before.start;
    let mut used = [0; NR_DOMAINS];
    for (u, (a, b)) in used.iter_mut().zip(after.cpu.iter().zip(before.cpu.iter())) {
        *u = a.saturating_sub(*b);
    }
    Some(Window {
        elapsed,
        used,
        late: slept.late,
        early: slept.early,
        wakes: slept.wakes,
        timer_event: slept.timer_event,
    })
}

/// Every domain's `cpu_time`; `None` (after a FAIL) if one could not be read.
fn sample(env: &mut Env, phase: &str) -> Option<Sample> {
    let start = events::now();
    let mut cpu = [0; NR_DOMAINS];
    for (d, c) in cpu.iter_mut().enumerate().take(env.spinners + 1) {
        let d = d as DomId;
        match env.xen.domctl_getdomaininfo(d) {
            Ok(i) if i.domain == d => *c = i.cpu_time,
            Ok(i) => {
                env.t.fail(
                    name(phase, "read").as_str(),
                    format_args!("d{d} is gone (answer about d{})", i.domain),
                );
                return None;
            }
            Err(e) => {
                env.t.fail(name(phase, "read").as_str(), format_args!("getdomaininfo(d{d}): {e}"));
                return None;
            }
        }
    }
    let end = events::now();
    // dom0's own clock of CPU time only moves forward.
    if cpu[0] < env.dom0_last && env.backwards.is_none() {
        env.backwards = Some((env.dom0_last, cpu[0]));
    }
    env.dom0_last = cpu[0];
    Some(Sample { start, end, cpu })
}

/// How dom0 slept.
struct Slept {
    /// The latest and the earliest wake's distance from its timer's deadline, ns.
    late: i64,
    early: i64,
    wakes: u32,
    /// Whether VIRQ_TIMER's event came.
    timer_event: bool,
}

/// Blocks until system time `deadline`, waking every `heartbeat` ns; `None` (after a
/// FAIL) if the timer or the block failed.
fn sleep_until(env: &mut Env, phase: &str, deadline: u64, heartbeat: u64) -> Option<Slept> {
    let before = events::count(env.timer);
    let mut slept = Slept { late: i64::MIN, early: i64::MAX, wakes: 0, timer_event: false };
    loop {
        let now = events::now();
        // A wake within Xen's timer slop of the deadline is the timer's.
        if now + WAKE_EARLY_MAX >= deadline {
            events::disable();
            env.b.clear_pending(env.timer);
            slept.timer_event = events::count(env.timer) != before;
            return Some(slept);
        }
        let next = deadline.min(now.saturating_add(heartbeat));
        let r = env.xen.set_timer_op(next).and_then(|()| env.xen.sched_block());
        if let Err(e) = r {
            events::disable();
            env.t.fail(name(phase, "block").as_str(), format_args!("set_timer_op + SCHEDOP_block: {e}"));
            return None;
        }
        let late = events::now() as i64 - next as i64;
        slept.late = slept.late.max(late);
        slept.early = slept.early.min(late);
        slept.wakes += 1;
    }
}

/// Prints a window's figures: every domain's CPU time and share, the ratio.
fn print_window(env: &Env, phase: &str, w: &Window) {
    println!(
        "sched-share: {phase}: elapsed {} us; dom0 woke {} times, {} to {} us after its timer",
        w.elapsed / NS_PER_US,
        w.wakes,
        w.early / NS_PER_US as i64,
        w.late / NS_PER_US as i64
    );
    let mut sum = 0;
    for d in 0..=env.spinners {
        let who = if d == 0 { "dom0" } else { SPINNERS[d - 1].name };
        let pm = per_mille(w.used[d], w.elapsed);
        println!(
            "sched-share: {phase}:   d{d} {who}: {} us = {}.{}%",
            w.used[d] / NS_PER_US,
            pm / 10,
            pm % 10
        );
        sum += w.used[d];
    }
    let pm = per_mille(sum, w.elapsed);
    println!("sched-share: {phase}:   all: {} us = {}.{}%", sum / NS_PER_US, pm / 10, pm % 10);
    let (lo, hi) = (w.used[W256 + 1], w.used[W512 + 1]);
    if env.spinners > 0
        && let Some(got) = (hi * 1000).checked_div(lo)
    {
        let want = weight_ratio();
        println!(
            "sched-share: {phase}:   w512/w256 = {}.{:03} (weights: {}.{:03})",
            got / 1000,
            got % 1000,
            want / 1000,
            want % 1000
        );
    }
}

/// dom0 woke on time and used (almost) no CPU while blocked.
fn wake_and_dom0(env: &mut Env, phase: &str, w: &Window) {
    env.t.check(
        name(phase, "timer-wake").as_str(),
        Outcome::ensure(
            w.early >= -(WAKE_EARLY_MAX as i64) && w.late <= WAKE_LATE_MAX as i64,
            format_args!(
                "woke {} to {} us after its timer's deadlines (allowed -{} to {} us; \
                 a window with a late wake is measured up to {ATTEMPTS} times)",
                w.early / NS_PER_US as i64,
                w.late / NS_PER_US as i64,
                WAKE_EARLY_MAX / NS_PER_US,
                WAKE_LATE_MAX / NS_PER_US
            ),
        ),
    );
    let pm = per_mille(w.used[0], w.elapsed);
    env.t.check(
        name(phase, "dom0-idle").as_str(),
        Outcome::ensure(
            pm <= DOM0_MAX_PM,
            format_args!(
                "dom0 used {} us of {} us ({pm} per mille, at most {DOM0_MAX_PM}) while blocked",
                w.used[0] / NS_PER_US,
                w.elapsed / NS_PER_US
            ),
        ),
    );
}

/// w512's CPU time over w256's follows their weights, within the tolerance.
fn ratio(env: &mut Env, phase: &str, w: &Window) {
    let (lo, hi) = (w.used[W256 + 1], w.used[W512 + 1]);
    let want = weight_ratio();
    let slack = want * RATIO_TOLERANCE_PCT / 100;
    let o = match (hi * 1000).checked_div(lo) {
        None => Outcome::fail(format_args!("w256 got no CPU (w512: {} us)", hi / NS_PER_US)),
        Some(got) => Outcome::ensure(
            (want - slack..=want + slack).contains(&got),
            format_args!(
                "w512/w256 = {}.{:03} ({} us / {} us), expected {}.{:03} +-{RATIO_TOLERANCE_PCT}%",
                got / 1000,
                got % 1000,
                hi / NS_PER_US,
                lo / NS_PER_US,
                want / 1000,
                want % 1000
            ),
        ),
    };
    env.t.check(name(phase, "weight-ratio").as_str(), o);
}

/// The capped spinner got about its cap: at most cap + slack, at least 3/4 of it.
fn cap(env: &mut Env, phase: &str, w: &Window) {
    let cap_pm = u64::from(SPINNERS[CAPPED].cap) * 10;
    let (lo, hi) = (cap_pm * CAP_FLOOR_NUM / CAP_FLOOR_DEN, cap_pm + CAP_SLACK_PM);
    let got = w.share(CAPPED);
    env.t.check(
        name(phase, "cap").as_str(),
        Outcome::ensure(
            (lo..=hi).contains(&got),
            format_args!(
                "capped ({}%) got {} us of {} us = {got} per mille, expected {lo} to {hi}",
                SPINNERS[CAPPED].cap,
                w.used[CAPPED + 1] / NS_PER_US,
                w.elapsed / NS_PER_US
            ),
        ),
    );
}

/// Busy spinners with dom0 blocked use nearly all of the CPU.
fn busy(env: &mut Env, phase: &str, w: &Window, which: &[usize]) {
    let sum: u64 = which.iter().map(|&i| w.used[i + 1]).sum();
    let pm = per_mille(sum, w.elapsed);
    env.t.check(
        name(phase, "cpu-busy").as_str(),
        Outcome::ensure(
            pm >= BUSY_MIN_PM,
            format_args!(
                "the spinners used {} us of {} us ({pm} per mille, at least {BUSY_MIN_PM})",
                sum / NS_PER_US,
                w.elapsed / NS_PER_US
            ),
        ),
    );
}

/// Every runnable spinner got some CPU.
fn starvation(env: &mut Env, phase: &str, w: &Window, which: &[usize]) {
    let o = all(which.iter().map(|&i| {
        let pm = w.share(i);
        Outcome::ensure(
            pm >= STARVE_MIN_PM,
            format_args!("{} got {pm} per mille (at least {STARVE_MIN_PM})", SPINNERS[i].name),
        )
    }));
    env.t.check(name(phase, "no-starvation").as_str(), o);
}

/// Paused spinners ran not at all.
fn paused_idle(env: &mut Env, phase: &str, w: &Window, which: &[usize]) {
    let o = all(which.iter().map(|&i| {
        let used = w.used[i + 1];
        Outcome::ensure(used == 0, format_args!("paused {} ran {used} ns", SPINNERS[i].name))
    }));
    env.t.check(name(phase, "paused-no-cpu").as_str(), o);
}

/// Destroys each spinner: gone afterwards, a second destroy gives -ESRCH.
fn destroy(env: &mut Env) {
    let Env { t, xen, .. } = env;
    for s in SPINNERS.iter() {
        let d = s.domid;
        let destroyed = xen.domctl_destroydomain(d);
        t.check(name(s.name, "destroy").as_str(), destroyed);
        if destroyed.is_err() {
            continue;
        }
        let gone = match xen.domctl_getdomaininfo(d) {
            Err(Errno::ESRCH) => Outcome::Pass,
            // Xen 4.17 answers about the next domain (see the top of the file).
            Ok(i) if i.domain != d => Outcome::Pass,
            Ok(i) => Outcome::fail(format_args!("d{d} still there, flags {:#x}", i.flags)),
            Err(e) => Outcome::fail(format_args!("getdomaininfo(d{d}): {e}, expected -ESRCH")),
        };
        t.check(name(s.name, "gone-after-destroy").as_str(), gone);
        t.check(
            name(s.name, "destroy-again-esrch").as_str(),
            expect_err(xen.domctl_destroydomain(d), Errno::ESRCH),
        );
    }
}

/// w512's weight over w256's, per mille.
fn weight_ratio() -> u64 {
    u64::from(SPINNERS[W512].weight) * 1000 / u64::from(SPINNERS[W256].weight)
}

/// `x` as per mille of `total`.
fn per_mille(x: u64, total: u64) -> u64 {
    if total == 0 { 0 } else { (u128::from(x) * 1000 / u128::from(total)) as u64 }
}

/// `phase-what`, a check's name.
fn name(phase: &str, what: &str) -> FixedStr<48> {
    FixedStr::format(format_args!("{phase}-{what}"))
}

// On the host (`cargo test --workspace`) the guest is an empty program.
#[cfg(not(target_os = "none"))]
fn main() {}
