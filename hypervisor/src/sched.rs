// SPDX-License-Identifier: MIT OR Apache-2.0
//! The scheduling policy for one physical CPU, after Xen's credit scheduler
//! (`common/sched/credit.c`): pure bookkeeping over system time in
//! nanoseconds; the caller switches vCPUs and programs the timer.
//!
//! - **Credit** is CPU time a vCPU may still use, in ns. The running vCPU is
//!   charged exactly what it ran, at every entry point (each takes `now`), so
//!   there is no separate `charge`: the scheduler knows whom it picked and
//!   when. Every tick (10 ms) one tick of CPU time is shared out as credit
//!   among the *active* domains (those with a vCPU runnable at the tick or
//!   that ran during it) in proportion to their weights (default 256), and
//!   each domain's share among its active vCPUs.
//! - **Bounds**: a vCPU that is not runnable holds at most one slice of
//!   credit (it must not hoard; it gives the rest back when it blocks); a
//!   runnable one at most a slice per active vCPU; debt stops at a slice per
//!   active vCPU. What a vCPU cannot hold, or a capped domain may not use,
//!   goes to the others by weight (water-filling, [`Level`]); what is given
//!   back and the debt forgiven are settled at the next tick. So the sum of
//!   credits stays CPU time given minus CPU time used, which is what makes
//!   shares converge to the weights, also beside light or capped domains.
//! - **Priority**: BOOST > UNDER (credit >= 0) > OVER (credit < 0) > idle.
//!   A vCPU that wakes, is unpaused or unparked while UNDER gets BOOST and
//!   preempts at once a running vCPU of lower priority; BOOST ends when it
//!   blocks or yields, when its credit goes negative, or when it is found
//!   running at a tick. Within a priority the vCPU with the most credit goes
//!   first, then the first queued; a vCPU that yielded goes after the others
//!   of its priority for the next decision (as Xen's yield flag, consumed by
//!   the next schedule: kept longer, a yielder could wait forever behind a
//!   busy peer with more credit).
//! - **Slice**: the running vCPU keeps the CPU for up to one slice (30 ms);
//!   only a BOOST vCPU preempts it earlier (Xen tickles only on wake), or its
//!   own block, yield, pause, or an exhausted cap. `Decision::until` is when
//!   to call `pick_next` again: slice end, next tick, or cap exhaustion.
//! - **Cap** (percent of one CPU, 0 = none) is a per-domain budget refilled
//!   every tick with `cap% × tick` and never above that: a domain whose
//!   budget is spent is *parked* until the next refill, even if the CPU
//!   idles. An overrun past `until` is a debt repaid from the next refills.
//! - **Pause** counts nest as Xen's `pause_count`; a paused domain's vCPUs
//!   are never picked and earn no credit.
//!
//! Invariants (host-tested, with a simulator): the pick is always a
//! runnable vCPU of an unpaused, unparked domain; the CPU idles only when no
//! vCPU can run; busy domains' CPU time converges to their weight ratio; a
//! capped domain never exceeds its cap by more than a tick in any window;
//! every runnable vCPU runs within a bounded time; a vCPU that wakes with
//! credit left runs at once, or within a tick if a BOOST vCPU is running.
//!
//! Not copied from Xen's credit1: FIFO order within a priority (with 30 ms
//! slices and clamped credit it lets shares drift by several percent: we
//! take credit2's order, most credit first); accounting every 30 ms by
//! sampling who runs at ticks (we account exactly, from the caller's clock,
//! every tick); the ratelimit (a minimum run before a wake preempts); the
//! cap by parking at accounting time (we use a budget, like credit2, which
//! is exact); the upper credit bound that makes a vCPU inactive and halves
//! its credit (we give what it cannot hold to the others); yield passing
//! one vCPU of lower priority too; SMP, run-queue balancing and affinity
//! (one CPU for now: SMP needs a running vCPU and a queue per pCPU).

use alloc::vec::Vec;
use core::cmp::Reverse;
use pv_abi::Errno;

/// Xen's default domain weight.
pub const DEFAULT_WEIGHT: u16 = 256;
/// Xen's tick (`CSCHED_MSECS_PER_TICK`).
pub const TICK_NS: u64 = 10_000_000;
/// Xen's default time slice (`sched_credit_tslice_ms`).
pub const SLICE_NS: u64 = 30_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId {
    pub dom: u16,
    pub vcpu: u32,
}

/// A domain's scheduling parameters (XEN_DOMCTL_SCHEDOP_putinfo for credit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Relative share, 1..=65535.
    pub weight: u16,
    /// Percent of one CPU the domain may use at most; 0 = no cap.
    pub cap: u16,
}

impl Default for Params {
    fn default() -> Self {
        Params { weight: DEFAULT_WEIGHT, cap: 0 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Over,
    Under,
    Boost,
}

/// What to run and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `None`: the idle vCPU.
    pub next: Option<VcpuId>,
    /// When to call `pick_next` again at the latest (`u64::MAX`: only when
    /// something wakes).
    pub until: u64,
}

#[derive(Clone, Copy, Debug)]
struct Domain {
    id: u16,
    params: Params,
    pause_count: u32,
    /// Cap budget left in this tick, ns; negative is a debt.
    budget: i64,
    // Scratch for the tick's share-out: active vCPUs and the credit they
    // can still take.
    active: u32,
    room: u64,
}

#[derive(Clone, Copy, Debug)]
struct Vcpu {
    id: VcpuId,
    credit: i64,
    boost: bool,
    runnable: bool,
    /// Ran during the current tick period.
    ran: bool,
    /// Scratch for the tick: the most credit it may hold if it ran or
    /// wants to run, so it earns credit.
    ceiling: Option<i64>,
    /// FIFO order within a priority.
    seq: u64,
    /// Yielded and not run since: after its peers.
    yielded: bool,
}

#[derive(Clone, Copy, Debug)]
struct Running {
    id: VcpuId,
    /// Charged up to here.
    since: u64,
    slice_end: u64,
}

#[derive(Clone, Debug)]
pub struct Scheduler {
    tick_ns: u64,
    slice_ns: u64,
    next_tick: u64,
    /// The latest time seen; time never goes backwards here.
    now: u64,
    seq: u64,
    domains: Vec<Domain>,
    vcpus: Vec<Vcpu>,
    current: Option<Running>,
    /// Credit to share out at the next tick besides the tick's CPU time:
    /// what a vCPU gave back on blocking, less the debt forgiven by the
    /// lower bound. It keeps the sum of credits equal to CPU time given
    /// minus CPU time used, which the weight ratios rest on.
    spare: i64,
    /// vCPUs active at the last tick.
    active: i64,
}

impl Scheduler {
    /// Ticks fall on multiples of `tick_ns` from time 0.
    pub fn new(tick_ns: u64, slice_ns: u64) -> Self {
        let tick_ns = tick_ns.max(1);
        Scheduler {
            tick_ns,
            slice_ns: slice_ns.max(1),
            next_tick: tick_ns,
            now: 0,
            seq: 0,
            domains: Vec::new(),
            vcpus: Vec::new(),
            current: None,
            spare: 0,
            active: 0,
        }
    }

    /// The vCPU picked last, if it is still running.
    pub fn current(&self) -> Option<VcpuId> {
        self.current.map(|r| r.id)
    }

    pub fn add_domain(&mut self, dom: u16, params: Params) -> Result<(), Errno> {
        check(params)?;
        if self.dom(dom).is_some() {
            return Err(Errno::EEXIST);
        }
        let budget = self.refill(params.cap) as i64;
        self.domains.push(Domain { id: dom, params, pause_count: 0, budget, active: 0, room: 0 });
        Ok(())
    }

    /// Removes the domain and its vCPUs; true if the running vCPU was one
    /// (call `pick_next`).
    pub fn remove_domain(&mut self, dom: u16, now: u64) -> Result<bool, Errno> {
        let d = self.dom(dom).ok_or(Errno::ESRCH)?;
        self.advance(now);
        self.domains.remove(d);
        self.vcpus.retain(|v| v.id.dom != dom);
        Ok(self.drop_current_if(|id| id.dom == dom))
    }

    /// The domain goes on under id `new` (a guest rebuilt after a reboot)
    /// with its parameters and its vCPUs' credit, so a reboot does not
    /// wipe a debt. Its vCPUs stay runnable, queued behind the others and
    /// without BOOST: a start is not a wake-up on an event, and a domain
    /// rebooting in a loop with BOOST each time would keep a runnable peer
    /// off the CPU for good. True if one was running (call `pick_next`).
    pub fn renumber_domain(&mut self, old: u16, new: u16, now: u64) -> Result<bool, Errno> {
        let d = self.dom(old).ok_or(Errno::ESRCH)?;
        if self.dom(new).is_some() {
            return Err(Errno::EEXIST);
        }
        self.advance(now);
        self.domains[d].id = new;
        self.domains[d].pause_count = 0;
        let was_running = self.drop_current_if(|id| id.dom == old);
        for v in 0..self.vcpus.len() {
            if self.vcpus[v].id.dom == old {
                let seq = self.next_seq();
                let vc = &mut self.vcpus[v];
                vc.id.dom = new;
                (vc.runnable, vc.boost, vc.yielded, vc.seq) = (true, false, false, seq);
            }
        }
        Ok(was_running)
    }

    /// A new vCPU starts blocked (down), as Xen's do until woken.
    pub fn add_vcpu(&mut self, id: VcpuId) -> Result<(), Errno> {
        self.dom(id.dom).ok_or(Errno::ESRCH)?;
        if self.vcpu(id).is_some() {
            return Err(Errno::EEXIST);
        }
        self.vcpus.push(Vcpu {
            id,
            credit: 0,
            boost: false,
            runnable: false,
            ran: false,
            ceiling: None,
            seq: 0,
            yielded: false,
        });
        Ok(())
    }

    /// True if it was running (call `pick_next`).
    pub fn remove_vcpu(&mut self, id: VcpuId, now: u64) -> Result<bool, Errno> {
        let v = self.vcpu(id).ok_or(Errno::ENOENT)?;
        self.advance(now);
        self.vcpus.remove(v);
        Ok(self.drop_current_if(|c| c == id))
    }

    pub fn params(&self, dom: u16) -> Option<Params> {
        self.dom(dom).map(|d| self.domains[d].params)
    }

    /// New weight and cap; true if the decision may change (call `pick_next`).
    pub fn set_params(&mut self, dom: u16, params: Params, now: u64) -> Result<bool, Errno> {
        check(params)?;
        let d = self.dom(dom).ok_or(Errno::ESRCH)?;
        // Time run so far is charged under the old cap.
        self.advance(now);
        let refill = self.refill(params.cap) as i64;
        let dm = &mut self.domains[d];
        dm.budget = if dm.params.cap == 0 { refill } else { dm.budget.min(refill) };
        dm.params = params;
        Ok(self.current.is_none_or(|r| r.id.dom == dom))
    }

    /// Makes a blocked vCPU runnable; BOOST if it has credit left. True if
    /// it should preempt the running vCPU (call `pick_next`).
    pub fn wake(&mut self, id: VcpuId, now: u64) -> Result<bool, Errno> {
        let v = self.vcpu(id).ok_or(Errno::ENOENT)?;
        self.advance(now);
        if self.vcpus[v].runnable {
            return Ok(false);
        }
        self.vcpus[v].runnable = true;
        self.vcpus[v].seq = self.next_seq();
        if self.eligible(v) && self.vcpus[v].credit >= 0 {
            self.vcpus[v].boost = true;
        }
        Ok(self.preempts(v))
    }

    /// True if it was running (call `pick_next`).
    pub fn block(&mut self, id: VcpuId, now: u64) -> Result<bool, Errno> {
        let v = self.vcpu(id).ok_or(Errno::ENOENT)?;
        self.advance(now);
        let vc = &mut self.vcpus[v];
        vc.runnable = false;
        vc.boost = false;
        // What it was owed while waiting is not for hoarding while blocked.
        let kept = vc.credit.min(self.slice_ns as i64);
        self.spare = self.spare.saturating_add(vc.credit - kept);
        vc.credit = kept;
        Ok(self.drop_current_if(|c| c == id))
    }

    /// SCHEDOP_yield: the running vCPU ends its slice and goes behind the
    /// others of its priority. True if it was running (call `pick_next`).
    pub fn yield_vcpu(&mut self, id: VcpuId, now: u64) -> Result<bool, Errno> {
        let v = self.vcpu(id).ok_or(Errno::ENOENT)?;
        self.advance(now);
        if self.current.is_none_or(|r| r.id != id) {
            return Ok(false);
        }
        self.vcpus[v].boost = false;
        self.vcpus[v].yielded = true;
        Ok(self.drop_current_if(|c| c == id))
    }

    /// Pauses the domain (nests); true if its vCPU was running (call
    /// `pick_next`).
    pub fn pause(&mut self, dom: u16, now: u64) -> Result<bool, Errno> {
        let d = self.dom(dom).ok_or(Errno::ESRCH)?;
        self.advance(now);
        let dm = &mut self.domains[d];
        dm.pause_count = dm.pause_count.checked_add(1).ok_or(Errno::EOVERFLOW)?;
        Ok(self.drop_current_if(|c| c.dom == dom))
    }

    /// Whether the domain is paused.
    pub fn is_paused(&self, dom: u16) -> bool {
        self.dom(dom).is_some_and(|d| self.domains[d].pause_count > 0)
    }

    /// Undoes one `pause`; -EINVAL if not paused. When the count reaches 0
    /// the domain's runnable vCPUs are woken as Xen does (BOOST if UNDER).
    /// True if one should preempt the running vCPU (call `pick_next`).
    pub fn unpause(&mut self, dom: u16, now: u64) -> Result<bool, Errno> {
        let d = self.dom(dom).ok_or(Errno::ESRCH)?;
        if self.domains[d].pause_count == 0 {
            return Err(Errno::EINVAL);
        }
        self.advance(now);
        self.domains[d].pause_count -= 1;
        if self.domains[d].pause_count > 0 {
            return Ok(false);
        }
        let mut preempt = false;
        for v in 0..self.vcpus.len() {
            if self.vcpus[v].id.dom == dom && self.vcpus[v].runnable {
                self.vcpus[v].seq = self.next_seq();
                if self.eligible(v) && self.vcpus[v].credit >= 0 {
                    self.vcpus[v].boost = true;
                }
                preempt |= self.preempts(v);
            }
        }
        Ok(preempt)
    }

    /// Charges the running vCPU up to `now`, does the accounting of the
    /// ticks passed, and decides what runs next. Allocates nothing.
    pub fn pick_next(&mut self, now: u64) -> Decision {
        self.advance(now);
        let now = self.now;
        if let Some(r) = self.current {
            let c = self.vcpu(r.id).expect("the running vCPU exists");
            let best = self.best(Some(c));
            let boosted_waiter = best.is_some_and(|b| {
                self.priority_of(b) == Priority::Boost && self.priority_of(b) > self.priority_of(c)
            });
            if !self.eligible(c) || now >= r.slice_end || boosted_waiter {
                self.current = None;
                self.vcpus[c].seq = self.next_seq();
            }
        }
        if self.current.is_none()
            && let Some(b) = self.best(None)
        {
            self.vcpus[b].ran = true;
            // Every yield has had its effect: this decision went by it.
            self.vcpus.iter_mut().for_each(|v| v.yielded = false);
            self.current = Some(Running {
                id: self.vcpus[b].id,
                since: now,
                slice_end: now.saturating_add(self.slice_ns),
            });
        }
        match self.current {
            Some(r) => {
                let mut until = r.slice_end.min(self.next_tick);
                let d = &self.domains[self.dom(r.id.dom).expect("a vCPU's domain exists")];
                if d.params.cap != 0 {
                    until = until.min(now.saturating_add(d.budget.max(0) as u64));
                }
                Decision { next: Some(r.id), until }
            }
            // Parked vCPUs wait for the next refill; otherwise only a wake
            // changes anything.
            None if (0..self.vcpus.len()).any(|v| self.wants_cpu(v)) => {
                Decision { next: None, until: self.next_tick }
            }
            None => Decision { next: None, until: u64::MAX },
        }
    }

    /// The priority a vCPU would be queued at.
    pub fn priority(&self, id: VcpuId) -> Option<Priority> {
        self.vcpu(id).map(|v| self.priority_of(v))
    }

    fn dom(&self, dom: u16) -> Option<usize> {
        self.domains.iter().position(|d| d.id == dom)
    }

    fn vcpu(&self, id: VcpuId) -> Option<usize> {
        self.vcpus.iter().position(|v| v.id == id)
    }

    fn dom_of(&self, v: usize) -> &Domain {
        let dom = self.vcpus[v].id.dom;
        self.domains.iter().find(|d| d.id == dom).expect("a vCPU's domain exists")
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn refill(&self, cap: u16) -> u64 {
        refill(self.tick_ns, cap)
    }

    /// The lowest credit: one slice of debt per active vCPU, which the
    /// others' credit can balance (see `tick`).
    fn floor(&self) -> i64 {
        (self.slice_ns as i64).saturating_mul(self.active.max(1)).saturating_neg()
    }

    fn priority_of(&self, v: usize) -> Priority {
        let v = &self.vcpus[v];
        match (v.credit < 0, v.boost) {
            (true, _) => Priority::Over,
            (false, true) => Priority::Boost,
            (false, false) => Priority::Under,
        }
    }

    /// Runnable and its domain is neither paused nor parked by its cap.
    fn eligible(&self, v: usize) -> bool {
        let d = self.dom_of(v);
        self.vcpus[v].runnable && d.pause_count == 0 && (d.params.cap == 0 || d.budget > 0)
    }

    /// Runnable in an unpaused domain: it earns credit, parked or not.
    fn wants_cpu(&self, v: usize) -> bool {
        self.vcpus[v].runnable && self.dom_of(v).pause_count == 0
    }

    /// The eligible vCPU to run next: highest priority, then not yielded,
    /// then most credit, then first queued.
    fn best(&self, except: Option<usize>) -> Option<usize> {
        type Key = (Priority, bool, i64, Reverse<u64>);
        let mut best: Option<(Key, usize)> = None;
        for v in 0..self.vcpus.len() {
            if Some(v) == except || !self.eligible(v) {
                continue;
            }
            let vc = &self.vcpus[v];
            let key = (self.priority_of(v), !vc.yielded, vc.credit, Reverse(vc.seq));
            if best.is_none_or(|(k, _)| key > k) {
                best = Some((key, v));
            }
        }
        best.map(|(_, v)| v)
    }

    /// Whether eligible vCPU `v` should take the CPU now.
    fn preempts(&self, v: usize) -> bool {
        if !self.eligible(v) {
            return false;
        }
        match self.current {
            None => true,
            Some(r) => {
                let c = self.vcpu(r.id).expect("the running vCPU exists");
                self.priority_of(v) == Priority::Boost && self.priority_of(v) > self.priority_of(c)
            }
        }
    }

    fn drop_current_if(&mut self, f: impl Fn(VcpuId) -> bool) -> bool {
        match self.current {
            Some(r) if f(r.id) => {
                self.current = None;
                if let Some(v) = self.vcpu(r.id) {
                    self.vcpus[v].seq = self.next_seq();
                }
                true
            }
            _ => false,
        }
    }

    /// Brings the accounting up to `now`: charges the running vCPU and runs
    /// the ticks passed, each at its own time.
    fn advance(&mut self, now: u64) {
        let now = now.max(self.now);
        while self.next_tick <= now {
            let idle = self.current.is_none()
                && !self.vcpus.iter().enumerate().any(|(v, vc)| vc.ran || self.wants_cpu(v));
            if idle {
                // Nothing ran or wants to: the ticks until `now` only refill
                // budgets, so do them at once.
                let k = (now - self.next_tick) / self.tick_ns + 1;
                for d in 0..self.domains.len() {
                    let refill = self.refill(self.domains[d].params.cap);
                    let dm = &mut self.domains[d];
                    let added = i64::try_from(u128::from(k) * u128::from(refill)).unwrap_or(i64::MAX);
                    dm.budget = dm.budget.saturating_add(added).min(refill as i64);
                }
                self.next_tick = self.next_tick.saturating_add(k.saturating_mul(self.tick_ns));
                self.spare = 0;
                break;
            }
            self.charge(self.next_tick);
            self.tick();
            self.next_tick = self.next_tick.saturating_add(self.tick_ns);
        }
        self.charge(now);
        self.now = now;
    }

    fn charge(&mut self, to: u64) {
        let Some(r) = self.current.as_mut() else { return };
        let ran = to.saturating_sub(r.since);
        r.since = to;
        let id = r.id;
        let floor = self.floor();
        let ran = i64::try_from(ran).unwrap_or(i64::MAX);
        let v = self.vcpu(id).expect("the running vCPU exists");
        let vc = &mut self.vcpus[v];
        let credit = vc.credit.saturating_sub(ran);
        vc.credit = credit.max(floor);
        // The debt forgiven comes out of the next share-out.
        self.spare = self.spare.saturating_add(credit.min(floor).saturating_sub(floor));
        let vc = &mut self.vcpus[v];
        if vc.credit < 0 {
            vc.boost = false;
        }
        let d = self.dom(id.dom).expect("a vCPU's domain exists");
        let dm = &mut self.domains[d];
        if dm.params.cap != 0 {
            // A debt beyond a slice means the caller ignored `until`; do
            // not let it starve the domain for long.
            dm.budget = dm.budget.saturating_sub(ran).max(-(self.slice_ns as i64));
        }
    }

    /// Accounting at a tick: boost ends for the running vCPU, one tick of CPU
    /// time is shared out as credit, budgets are refilled.
    fn tick(&mut self) {
        if let Some(r) = self.current {
            let v = self.vcpu(r.id).expect("the running vCPU exists");
            self.vcpus[v].boost = false;
        }
        let slice = self.slice_ns as i64;
        let active = (0..self.vcpus.len()).filter(|&v| self.vcpus[v].ran || self.wants_cpu(v)).count();
        self.active = active as i64;
        // The most credit an active vCPU may hold. One slice if it ran but
        // is not runnable now: it uses less than its share and must not
        // hoard. A runnable vCPU waiting its turn is owed what it earns: its
        // credit balances the others' debts, so it may hold as much as they
        // may owe together (the floor, a slice per active vCPU).
        for v in 0..self.vcpus.len() {
            let wants = self.wants_cpu(v);
            let vc = &mut self.vcpus[v];
            vc.ceiling = match (wants, vc.ran) {
                (true, _) => Some(slice.saturating_mul(active as i64)),
                (false, true) => Some(slice),
                (false, false) => None,
            };
            vc.ran = false;
        }
        let room = |v: &Vcpu| v.ceiling.map_or(0, |c| c.saturating_sub(v.credit).max(0) as u64);
        for d in &mut self.domains {
            d.active = 0;
            d.room = 0;
        }
        for v in 0..self.vcpus.len() {
            if self.vcpus[v].ceiling.is_some() {
                let d = self.dom(self.vcpus[v].id.dom).expect("a vCPU's domain exists");
                self.domains[d].active += 1;
                self.domains[d].room = self.domains[d].room.saturating_add(room(&self.vcpus[v]));
            }
        }
        // Shares by weight, none above the domain's cap nor above what its
        // vCPUs can hold: what one cannot take goes to the others, so a
        // capped or mostly idle domain does not skew the others' ratios.
        let tick = self.tick_ns;
        let limit = move |d: &Domain| match d.params.cap {
            0 => d.room,
            cap => d.room.min(refill(tick, cap)),
        };
        let total = i64::try_from(self.tick_ns).unwrap_or(i64::MAX).saturating_add(self.spare);
        // A debt larger than a tick is carried on, within bounds; with no
        // one active, there is no one to give to or take from.
        self.spare = if active == 0 { 0 } else { total.min(0).max(self.floor()) };
        let total = total.max(0) as u64;
        let doms = &self.domains;
        let level = Level::fill(total, doms.len(), |d| {
            (doms[d].active > 0).then(|| (u64::from(doms[d].params.weight), limit(&doms[d])))
        });
        for d in 0..self.domains.len() {
            let dm = &self.domains[d];
            let grant = level.share(u64::from(dm.params.weight), limit(dm));
            // Within the domain, equal shares, again none above its room.
            let (dom, vcpus) = (dm.id, &self.vcpus);
            let inner = Level::fill(grant, vcpus.len(), |v| {
                (vcpus[v].ceiling.is_some() && vcpus[v].id.dom == dom).then(|| (1, room(&vcpus[v])))
            });
            for v in &mut self.vcpus {
                if v.id.dom == dom
                    && let Some(ceiling) = v.ceiling
                {
                    let share = inner.share(1, room(v)) as i64;
                    v.credit = v.credit.saturating_add(share).min(ceiling.max(v.credit));
                }
            }
        }
        for d in 0..self.domains.len() {
            let refill = self.refill(self.domains[d].params.cap) as i64;
            let dm = &mut self.domains[d];
            let was_parked = dm.params.cap != 0 && dm.budget <= 0;
            dm.budget = dm.budget.saturating_add(refill).min(refill);
            if was_parked && dm.budget > 0 {
                // Unparking wakes the domain's vCPUs, with BOOST if they
                // are UNDER, as Xen's unpark does: otherwise a capped domain
                // would wait for a slice to end and get far below its cap.
                let dom = dm.id;
                let running = self.current.map(|r| r.id);
                for v in &mut self.vcpus {
                    if v.id.dom == dom && v.runnable && v.credit >= 0 && Some(v.id) != running {
                        v.boost = true;
                    }
                }
            }
        }
        if let Some(r) = self.current {
            let v = self.vcpu(r.id).expect("the running vCPU exists");
            self.vcpus[v].ran = true;
        }
    }
}

/// The level of water-filling: `total` shared among entries in proportion
/// to their weights, none above its limit, what a limited entry cannot take
/// going to the others. The level is a share per unit of weight, `num/den`.
#[derive(Clone, Copy, Debug)]
struct Level {
    num: u128,
    den: u128,
}

impl Level {
    /// `entry(i)` is `(weight, limit)`, or `None` if `i` takes no part.
    /// The limited entries are those below the level, and the level only
    /// rises as entries turn limited, so the set need not be stored: each
    /// round recomputes it, and it stops growing within `n + 1` rounds.
    fn fill(total: u64, n: usize, entry: impl Fn(usize) -> Option<(u64, u64)>) -> Level {
        let mut level = Level { num: 0, den: 1 };
        let mut limited = None;
        loop {
            let (mut taken, mut weights, mut count) = (0u128, 0u128, 0usize);
            for (w, l) in (0..n).filter_map(&entry) {
                if level.limits(w, l) {
                    taken += u128::from(l);
                    count += 1;
                } else {
                    weights += u128::from(w);
                }
            }
            if weights == 0 || limited == Some(count) {
                return level;
            }
            limited = Some(count);
            level = Level { num: u128::from(total).saturating_sub(taken), den: weights };
        }
    }

    fn limits(&self, weight: u64, limit: u64) -> bool {
        u128::from(limit) * self.den < u128::from(weight) * self.num
    }

    /// The share of an entry of `fill`.
    fn share(&self, weight: u64, limit: u64) -> u64 {
        if self.limits(weight, limit) { limit } else { (u128::from(weight) * self.num / self.den) as u64 }
    }
}

/// `cap% × tick`: a capped domain's budget per tick.
fn refill(tick_ns: u64, cap: u16) -> u64 {
    (u128::from(tick_ns) * u128::from(cap) / 100) as u64
}

fn check(p: Params) -> Result<(), Errno> {
    if p.weight == 0 { Err(Errno::EINVAL) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::vec;
    use std::vec::Vec;

    const US: u64 = 1_000;
    const MS: u64 = 1_000 * US;
    const SEC: u64 = 1_000 * MS;

    fn id(dom: u16) -> VcpuId {
        VcpuId { dom, vcpu: 0 }
    }

    fn p(weight: u16, cap: u16) -> Params {
        Params { weight, cap }
    }

    /// One domain per entry, one vCPU each, all woken at 0.
    fn sched(params: &[Params]) -> Scheduler {
        let mut s = Scheduler::new(TICK_NS, SLICE_NS);
        for (d, &pr) in params.iter().enumerate() {
            s.add_domain(d as u16, pr).unwrap();
            s.add_vcpu(id(d as u16)).unwrap();
            s.wake(id(d as u16), 0).unwrap();
        }
        s
    }

    // ---- unit tests, one rule each ----

    #[test]
    fn lifecycle_errors() {
        let mut s = Scheduler::new(TICK_NS, SLICE_NS);
        assert_eq!(s.add_vcpu(id(0)), Err(Errno::ESRCH));
        assert_eq!(s.add_domain(0, p(0, 0)), Err(Errno::EINVAL));
        s.add_domain(0, Params::default()).unwrap();
        assert_eq!(s.add_domain(0, Params::default()), Err(Errno::EEXIST));
        assert_eq!(s.params(0), Some(p(256, 0)));
        s.add_vcpu(id(0)).unwrap();
        assert_eq!(s.add_vcpu(id(0)), Err(Errno::EEXIST));
        let ghost = VcpuId { dom: 0, vcpu: 7 };
        assert_eq!(s.wake(ghost, 0), Err(Errno::ENOENT));
        assert_eq!(s.block(ghost, 0), Err(Errno::ENOENT));
        assert_eq!(s.yield_vcpu(ghost, 0), Err(Errno::ENOENT));
        assert_eq!(s.remove_vcpu(ghost, 0), Err(Errno::ENOENT));
        assert_eq!(s.unpause(0, 0), Err(Errno::EINVAL), "not paused");
        assert_eq!(s.pause(9, 0), Err(Errno::ESRCH));
        assert_eq!(s.set_params(0, p(0, 5), 0), Err(Errno::EINVAL));
        assert_eq!(s.set_params(9, p(1, 5), 0), Err(Errno::ESRCH));
        assert_eq!(s.remove_domain(9, 0), Err(Errno::ESRCH));
        assert_eq!(s.remove_domain(0, 0), Ok(false));
        assert_eq!(s.priority(id(0)), None, "its vCPUs went with it");
    }

    /// A domain that reboots every 22 ms of its CPU time (renumbered, woken
    /// again) and dom0, woken by each reboot for 0.5 ms of work: dom0 must
    /// not wait behind the churn (the soak's situation).
    #[test]
    fn dom0_keeps_up_with_a_rebooting_domain() {
        const MS: u64 = 1_000_000;
        let mut s = Scheduler::new(TICK_NS, SLICE_NS);
        for d in [0, 1] {
            s.add_domain(d, Params::default()).unwrap();
            s.add_vcpu(id(d)).unwrap();
        }
        s.wake(id(1), 0).unwrap();
        let (mut now, mut churn, mut churn_ran) = (0u64, 1u16, 0u64);
        let (mut dom0_work, mut woken_at, mut worst, mut served) = (0u64, None::<u64>, 0u64, 0u32);
        while now < 5_000 * MS {
            let d = s.pick_next(now);
            match d.next {
                Some(v) if v == id(0) => {
                    // Its work, or a look at the domains (0.1 ms) before it
                    // yields again.
                    let run = dom0_work.max(MS / 10).min(d.until - now).max(1);
                    now += run;
                    dom0_work -= run.min(dom0_work);
                    if dom0_work == 0 {
                        if let Some(t) = woken_at.take() {
                            worst = worst.max(now - t);
                            served += 1;
                        }
                        // As the soak's dom0: it polls, then (later in the
                        // run) yields while it waits for the next incarnation.
                        if served < 50 {
                            s.block(id(0), now).unwrap();
                        } else {
                            s.yield_vcpu(id(0), now).unwrap();
                        }
                    }
                }
                Some(v) => {
                    assert_eq!(v, id(churn));
                    let run = (22 * MS - churn_ran).min(d.until - now).max(1);
                    now += run;
                    churn_ran += run;
                    if churn_ran >= 22 * MS {
                        churn_ran = 0;
                        s.renumber_domain(churn, churn + 1, now).unwrap();
                        churn += 1;
                        s.wake(id(churn), now).unwrap();
                        if woken_at.is_none() {
                            woken_at = Some(now);
                            dom0_work = MS / 2;
                            let _ = s.wake(id(0), now);
                        }
                    }
                }
                None => now = d.until,
            }
        }
        assert!(served > 100, "dom0 was served {served} times");
        assert!(worst <= SLICE_NS, "dom0 waited up to {} ms", worst / MS);
    }

    #[test]
    fn a_renumbered_domain_keeps_its_debt() {
        let mut s = Scheduler::new(TICK_NS, SLICE_NS);
        for d in [0, 1] {
            s.add_domain(d, Params::default()).unwrap();
            s.add_vcpu(id(d)).unwrap();
            s.wake(id(d), 0).unwrap();
        }
        // Domain 1 runs alone for a while (0 blocks at once) and falls into debt.
        assert_eq!(s.pick_next(0).next, Some(id(0)));
        s.block(id(0), 0).unwrap();
        let mut now = 0;
        while now < 20 * TICK_NS {
            now = s.pick_next(now).until.min(now + TICK_NS);
        }
        s.pick_next(now);
        assert_eq!(s.priority(id(1)), Some(Priority::Over));
        assert_eq!(s.renumber_domain(1, 5, now), Ok(true), "it was running");
        assert_eq!(s.renumber_domain(1, 6, now), Err(Errno::ESRCH));
        assert_eq!(s.renumber_domain(5, 0, now), Err(Errno::EEXIST));
        assert_eq!(s.priority(id(1)), None);
        assert_eq!(s.wake(id(5), now), Ok(false), "runnable already");
        assert_eq!(s.priority(id(5)), Some(Priority::Over), "no BOOST: the debt stayed");
        // dom0 wakes UNDER with BOOST and runs first.
        assert_eq!(s.wake(id(0), now), Ok(true));
        assert_eq!(s.pick_next(now).next, Some(id(0)));
    }

    #[test]
    fn new_vcpus_are_blocked_and_the_cpu_idles() {
        let mut s = Scheduler::new(TICK_NS, SLICE_NS);
        s.add_domain(0, Params::default()).unwrap();
        s.add_vcpu(id(0)).unwrap();
        assert_eq!(s.pick_next(0), Decision { next: None, until: u64::MAX });
        assert_eq!(s.wake(id(0), 5), Ok(true), "the idle CPU takes it");
        assert_eq!(s.wake(id(0), 5), Ok(false), "already runnable");
        assert_eq!(s.pick_next(5), Decision { next: Some(id(0)), until: TICK_NS });
    }

    #[test]
    fn a_lone_vcpu_keeps_its_slice_across_ticks_then_gets_another() {
        let mut s = sched(&[Params::default()]);
        assert_eq!(s.pick_next(0), Decision { next: Some(id(0)), until: 10 * MS });
        assert_eq!(s.pick_next(10 * MS), Decision { next: Some(id(0)), until: 20 * MS });
        assert_eq!(s.pick_next(20 * MS), Decision { next: Some(id(0)), until: 30 * MS });
        assert_eq!(s.pick_next(30 * MS), Decision { next: Some(id(0)), until: 40 * MS });
        assert_eq!(s.current(), Some(id(0)));
    }

    #[test]
    fn wake_boosts_and_the_tick_takes_the_boost_away() {
        let mut s = sched(&[Params::default()]);
        assert_eq!(s.priority(id(0)), Some(Priority::Boost), "woke with credit 0");
        s.pick_next(0);
        s.pick_next(10 * MS);
        assert_eq!(s.priority(id(0)), Some(Priority::Under), "found running at a tick");
    }

    #[test]
    fn priorities_follow_the_credit_sign() {
        // Two busy vCPUs: the one that ran first is charged a tick and
        // earns half of it back.
        let mut s = sched(&[Params::default(), Params::default()]);
        assert_eq!(s.pick_next(0).next, Some(id(0)));
        s.pick_next(10 * MS);
        assert_eq!(s.priority(id(0)), Some(Priority::Over));
        assert_eq!(s.priority(id(1)), Some(Priority::Boost), "never ran: keeps its wake boost");
    }

    #[test]
    fn a_boosted_wake_preempts_at_once() {
        let mut s = sched(&[Params::default(), Params::default()]);
        s.block(id(1), 0).unwrap();
        assert_eq!(s.pick_next(0).next, Some(id(0)));
        s.pick_next(10 * MS); // id(0) loses its boost
        assert_eq!(s.wake(id(1), 12 * MS), Ok(true));
        assert_eq!(s.pick_next(12 * MS), Decision { next: Some(id(1)), until: 20 * MS });
        // The preempted vCPU comes back when the waker blocks.
        assert_eq!(s.block(id(1), 13 * MS), Ok(true));
        assert_eq!(s.pick_next(13 * MS).next, Some(id(0)));
    }

    #[test]
    fn a_vcpu_out_of_credit_is_not_boosted_and_does_not_preempt() {
        let mut s = sched(&[Params::default(), Params::default()]);
        assert_eq!(s.pick_next(0).next, Some(id(0)));
        // At the tick id(0) is charged 10 ms and earns 5: OVER; id(1) still
        // has its wake boost and takes over.
        assert_eq!(s.pick_next(10 * MS).next, Some(id(1)));
        assert_eq!(s.priority(id(0)), Some(Priority::Over));
        assert_eq!(s.block(id(0), 12 * MS), Ok(false), "blocking a waiting vCPU");
        assert_eq!(s.wake(id(0), 13 * MS), Ok(false));
        assert_eq!(s.priority(id(0)), Some(Priority::Over), "no boost without credit");
        assert_eq!(s.pick_next(13 * MS).next, Some(id(1)));
    }

    #[test]
    fn credit_flips_do_not_cut_a_slice() {
        let mut s = sched(&[Params::default(), Params::default()]);
        // Without boosts, id(0) runs its whole slice although id(1) is UNDER
        // and id(0) OVER after the first tick.
        for v in 0..2 {
            s.vcpus[v].boost = false;
        }
        for t in [0, 10, 20] {
            assert_eq!(s.pick_next(t * MS).next, Some(id(0)), "at {t} ms");
        }
        assert_eq!(s.pick_next(30 * MS).next, Some(id(1)));
    }

    #[test]
    fn the_cpu_idles_only_when_nothing_can_run() {
        let mut s = sched(&[Params::default()]);
        s.pick_next(0);
        s.pick_next(25 * MS);
        s.vcpus[0].credit = -(SLICE_NS as i64);
        assert_eq!(s.pick_next(30 * MS).next, Some(id(0)), "OVER still beats idle");
        assert_eq!(s.block(id(0), 31 * MS), Ok(true));
        assert_eq!(s.pick_next(31 * MS), Decision { next: None, until: u64::MAX });
    }

    #[test]
    fn a_cap_parks_a_lone_domain_until_the_refill() {
        let mut s = sched(&[p(256, 25)]);
        assert_eq!(s.pick_next(0), Decision { next: Some(id(0)), until: 2_500_000 });
        assert_eq!(s.pick_next(2_500_000), Decision { next: None, until: 10 * MS }, "parked, CPU idle");
        assert_eq!(s.wake(id(0), 3 * MS), Ok(false));
        assert_eq!(s.pick_next(10 * MS), Decision { next: Some(id(0)), until: 12_500_000 });
        // Running late past `until` is a debt paid from the next refill.
        assert_eq!(s.pick_next(14 * MS).next, None);
        assert_eq!(s.pick_next(20 * MS), Decision { next: Some(id(0)), until: 21 * MS });
    }

    #[test]
    fn set_params_changes_the_cap_at_once() {
        let mut s = sched(&[p(256, 25)]);
        s.pick_next(0);
        assert_eq!(s.pick_next(3 * MS).next, None);
        assert_eq!(s.set_params(0, p(512, 0), 3 * MS), Ok(true));
        assert_eq!(s.params(0), Some(p(512, 0)));
        assert_eq!(s.pick_next(3 * MS), Decision { next: Some(id(0)), until: 10 * MS });
        assert_eq!(s.set_params(0, p(512, 50), 4 * MS), Ok(true));
        assert_eq!(s.pick_next(4 * MS), Decision { next: Some(id(0)), until: 9 * MS }, "a fresh budget");
    }

    #[test]
    fn pause_nests_and_unpause_wakes() {
        let mut s = sched(&[Params::default(), Params::default()]);
        assert_eq!(s.pick_next(0).next, Some(id(0)));
        assert_eq!(s.pause(0, MS), Ok(true), "it was running");
        assert_eq!(s.pause(0, MS), Ok(false));
        assert_eq!(s.pick_next(MS).next, Some(id(1)));
        s.pick_next(10 * MS);
        assert_eq!(s.unpause(0, 11 * MS), Ok(false), "still paused once");
        assert_eq!(s.block(id(1), 12 * MS), Ok(true));
        assert_eq!(s.pick_next(12 * MS).next, None, "paused vCPUs never run");
        assert_eq!(s.unpause(0, 13 * MS), Ok(true));
        assert_eq!(s.pick_next(13 * MS).next, Some(id(0)));
        assert_eq!(s.unpause(0, 14 * MS), Err(Errno::EINVAL));
    }

    #[test]
    fn removing_the_running_vcpu_reschedules() {
        let mut s = sched(&[Params::default(), Params::default()]);
        assert_eq!(s.pick_next(0).next, Some(id(0)));
        assert_eq!(s.remove_vcpu(id(1), 1), Ok(false));
        assert_eq!(s.remove_vcpu(id(0), 2), Ok(true));
        assert_eq!(s.pick_next(2).next, None);
        s.add_vcpu(id(1)).unwrap();
        s.wake(id(1), 3).unwrap();
        assert_eq!(s.pick_next(3).next, Some(id(1)));
        assert_eq!(s.remove_domain(1, 4), Ok(true));
        assert_eq!(s.pick_next(4).next, None);
    }

    #[test]
    fn yield_goes_behind_its_peers() {
        let mut s = sched(&[Params::default(), Params::default(), Params::default()]);
        // All UNDER; the most credit goes first unless it yielded.
        for (v, credit) in [5, 0, 1].into_iter().enumerate() {
            s.vcpus[v].boost = false;
            s.vcpus[v].credit = credit * MS as i64;
        }
        assert_eq!(s.pick_next(0).next, Some(id(0)));
        assert_eq!(s.yield_vcpu(id(1), 1), Ok(false), "not running");
        assert_eq!(s.yield_vcpu(id(0), 1), Ok(true));
        assert_eq!(s.pick_next(1).next, Some(id(2)));
        assert!(s.vcpus.iter().all(|v| !v.yielded), "a yield lasts one decision");
        assert_eq!(s.yield_vcpu(id(2), 2), Ok(true));
        assert_eq!(s.pick_next(2).next, Some(id(0)), "by credit, 2 behind");
        assert_eq!(s.yield_vcpu(id(0), 3), Ok(true));
        assert_eq!(s.pick_next(3).next, Some(id(2)));
    }

    #[test]
    fn time_never_goes_backwards() {
        let mut s = sched(&[Params::default()]);
        s.pick_next(0);
        s.pick_next(5 * MS);
        assert_eq!(s.pick_next(MS), Decision { next: Some(id(0)), until: 10 * MS });
        assert_eq!(s.vcpus[0].credit, -5 * MS as i64);
    }

    #[test]
    fn a_long_idle_stretch_is_skipped_at_once() {
        let mut s = sched(&[p(256, 25)]);
        s.pick_next(0);
        s.block(id(0), MS).unwrap();
        // Years of idle ticks would take minutes one by one.
        let later = 100 * 365 * 24 * 3600 * SEC;
        assert_eq!(s.wake(id(0), later), Ok(true));
        assert_eq!(s.next_tick, (later / TICK_NS + 1) * TICK_NS);
        assert_eq!(s.pick_next(later).next, Some(id(0)));
        assert_eq!(s.domains[0].budget, 2_500_000, "budget refilled");
    }

    #[test]
    fn water_filling() {
        let fill = |total, e: &[(u64, u64)]| {
            let l = Level::fill(total, e.len(), |i| Some(e[i]));
            e.iter().map(|&(w, lim)| l.share(w, lim)).collect::<Vec<_>>()
        };
        assert_eq!(fill(90, &[(1, 100), (2, 100)]), [30, 60]);
        assert_eq!(fill(90, &[(1, 100), (2, 10)]), [80, 10], "the limited one's rest goes to the other");
        assert_eq!(fill(100, &[(4, 10), (1, 100), (1, 20), (2, 100)]), [10, 23, 20, 46], "limited in turn");
        assert_eq!(fill(100, &[(1, 10), (1, 20)]), [10, 20], "all limited: the rest is nobody's");
        assert_eq!(fill(100, &[]), Vec::<u64>::new());
        let l = Level::fill(7, 3, |i| (i != 1).then_some((1, 100)));
        assert_eq!((l.share(1, 100), l.share(1, 0)), (3, 0));
    }

    #[test]
    fn credit_a_domain_cannot_hold_goes_to_the_others() {
        // id(0) runs briefly at each tick's start: at its credit ceiling it
        // takes only what it used, so id(1) and id(2) keep 1:2 of the rest.
        let io = vec![Load::Io(vec![(300 * US, 15 * MS)])];
        let mut sim = Sim::new(&[(Params::default(), io), (p(256, 0), busy()), (p(512, 0), busy())]);
        sim.run(10 * SEC);
        let ratio = sim.dom_ran(2) as f64 / sim.dom_ran(1) as f64;
        assert!((ratio - 2.0).abs() < 0.04, "{ratio}");
    }

    #[test]
    fn blocking_gives_back_credit_above_a_slice_to_the_others() {
        let mut s = sched(&[Params::default(), Params::default()]);
        s.vcpus[0].credit = 50 * MS as i64; // owed while it waited
        s.vcpus[1].credit = 0;
        assert_eq!(s.block(id(0), 0), Ok(false));
        assert_eq!(s.vcpus[0].credit, SLICE_NS as i64, "a blocked vCPU keeps one slice");
        // id(1), the only active vCPU, gets the tick and the 20 ms given
        // back, less the 10 ms it ran.
        assert_eq!(s.pick_next(0).next, Some(id(1)));
        s.pick_next(10 * MS);
        assert_eq!(s.vcpus[1].credit, 20 * MS as i64);
    }

    #[test]
    fn debt_stops_at_the_floor_and_the_others_pay_for_it() {
        let mut s = sched(&[Params::default(), Params::default()]);
        s.pick_next(0);
        s.pick_next(10 * MS); // two active vCPUs: the floor is -60 ms
        assert_eq!(s.current(), Some(id(1)));
        s.vcpus[1].credit = -55 * MS as i64;
        s.pick_next(19 * MS);
        assert_eq!(s.vcpus[1].credit, -60 * MS as i64);
        let before = s.vcpus[0].credit;
        s.pick_next(20 * MS);
        // It ran on to -61 ms: the tick's 10 ms less the 5 ms forgiven,
        // shared 1:1.
        assert_eq!(s.vcpus[1].credit, -60 * MS as i64 + 2_500_000);
        assert_eq!(s.vcpus[0].credit - before, 2_500_000);
    }

    #[test]
    fn weight_is_per_domain_not_per_vcpu() {
        let busy = |n| vec![Load::Io(vec![(u64::MAX, 0)]); n];
        let mut sim = Sim::new(&[(Params::default(), busy(2)), (Params::default(), busy(1))]);
        sim.run(10 * SEC);
        let (d0, d1) = (sim.dom_ran(0), sim.dom_ran(1));
        assert!(d0.abs_diff(d1) < 10 * SEC / 50, "{d0} vs {d1}");
        let (a, b) = (sim.vcpus[0].ran, sim.vcpus[1].ran);
        assert!(a.abs_diff(b) < 10 * SEC / 50, "the domain's share is split evenly: {a} vs {b}");
    }

    #[test]
    fn what_a_cap_leaves_goes_to_the_others_by_weight() {
        let busy = || vec![Load::Io(vec![(u64::MAX, 0)])];
        let mut sim = Sim::new(&[(p(1024, 10), busy()), (p(256, 0), busy()), (p(512, 0), busy())]);
        sim.run(10 * SEC);
        let (a, b, c) = (sim.dom_ran(0), sim.dom_ran(1), sim.dom_ran(2));
        assert!(a <= SEC + TICK_NS, "{a}");
        assert_eq!(a + b + c, 10 * SEC, "never idle");
        let ratio = c as f64 / b as f64;
        assert!((ratio - 2.0).abs() < 0.06, "{ratio}");
    }

    // ---- the simulator ----

    /// What a simulated vCPU does: (run, sleep) pairs in turn; a run of
    /// `u64::MAX` is a vCPU that never blocks.
    #[derive(Clone, Debug)]
    enum Load {
        Io(Vec<(u64, u64)>),
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Ev {
        /// A spurious call to `pick_next` (an interrupt that reschedules).
        Resched,
        Pause(u16),
        Unpause(u16),
        /// SCHEDOP_yield by whichever vCPU runs.
        Yield,
    }

    struct SimVcpu {
        id: VcpuId,
        load: Vec<(u64, u64)>,
        next: usize,
        /// Run left before it blocks.
        left: u64,
        /// `Some(t)`: blocked until t.
        blocked_until: Option<u64>,
        ran: u64,
        waiting_since: Option<u64>,
        max_wait: u64,
        woke_at: Option<u64>,
        max_wake_latency: u64,
    }

    struct Sim {
        s: Scheduler,
        now: u64,
        d: Decision,
        vcpus: Vec<SimVcpu>,
        paused: BTreeMap<u16, u32>,
        events: Vec<(u64, Ev)>,
        /// (time, cumulative run) of domain 0, at every step.
        trace: Vec<(u64, u64)>,
        /// Wake latencies count from here: at first every vCPU has just
        /// woken, with BOOST, and they take turns.
        warmup: u64,
    }

    impl Sim {
        fn new(doms: &[(Params, Vec<Load>)]) -> Sim {
            Sim::with(Scheduler::new(TICK_NS, SLICE_NS), doms, Vec::new())
        }

        fn with(mut s: Scheduler, doms: &[(Params, Vec<Load>)], mut events: Vec<(u64, Ev)>) -> Sim {
            let mut vcpus = Vec::new();
            for (d, (params, loads)) in doms.iter().enumerate() {
                s.add_domain(d as u16, *params).unwrap();
                for (n, Load::Io(load)) in loads.iter().enumerate() {
                    let id = VcpuId { dom: d as u16, vcpu: n as u32 };
                    s.add_vcpu(id).unwrap();
                    s.wake(id, 0).unwrap();
                    vcpus.push(SimVcpu {
                        id,
                        load: load.clone(),
                        next: 1 % load.len(),
                        left: load[0].0,
                        blocked_until: None,
                        ran: 0,
                        waiting_since: None,
                        max_wait: 0,
                        woke_at: None,
                        max_wake_latency: 0,
                    });
                }
            }
            events.sort_by_key(|e| e.0);
            events.reverse();
            Sim {
                s,
                now: 0,
                d: Decision { next: None, until: 0 },
                vcpus,
                paused: BTreeMap::new(),
                events,
                trace: Vec::new(),
                warmup: 0,
            }
        }

        fn dom_ran(&self, dom: u16) -> u64 {
            self.vcpus.iter().filter(|v| v.id.dom == dom).map(|v| v.ran).sum()
        }

        fn paused(&self, dom: u16) -> bool {
            self.paused.get(&dom).is_some_and(|&n| n > 0)
        }

        fn run(&mut self, end: u64) {
            self.decide();
            while self.now < end {
                let cur = self.d.next.map(|id| self.vcpus.iter().position(|v| v.id == id).unwrap());
                let mut t = self.d.until.min(end);
                if let Some(c) = cur {
                    t = t.min(self.now.saturating_add(self.vcpus[c].left));
                }
                for v in &self.vcpus {
                    if let Some(w) = v.blocked_until {
                        t = t.min(w);
                    }
                }
                if let Some(&(e, _)) = self.events.last() {
                    t = t.min(e.max(self.now));
                }
                assert!(t >= self.now && self.trace.len() < 1_000_000, "the simulation is stuck at {t}");
                let dt = t - self.now;
                self.now = t;
                let mut resched = t >= self.d.until;
                if let Some(c) = cur {
                    let v = &mut self.vcpus[c];
                    v.ran += dt;
                    v.left = v.left.saturating_sub(dt);
                    if v.left == 0 {
                        let (run, sleep) = v.load[v.next];
                        v.next = (v.next + 1) % v.load.len();
                        v.left = run.max(1);
                        v.blocked_until = Some(t + sleep.max(1));
                        resched |= self.s.block(v.id, t).unwrap();
                    }
                }
                self.trace.push((t, self.dom_ran(0)));
                for i in 0..self.vcpus.len() {
                    if self.vcpus[i].blocked_until == Some(t) {
                        self.vcpus[i].blocked_until = None;
                        let dom = self.vcpus[i].id.dom;
                        if !self.paused(dom) && t >= self.warmup {
                            self.vcpus[i].woke_at = Some(t);
                        }
                        resched |= self.s.wake(self.vcpus[i].id, t).unwrap();
                    }
                }
                while self.events.last().is_some_and(|&(e, _)| e <= t) {
                    match self.events.pop().unwrap().1 {
                        Ev::Resched => resched = true,
                        Ev::Yield => {
                            if let Some(id) = self.d.next {
                                resched |= self.s.yield_vcpu(id, t).unwrap();
                            }
                        }
                        Ev::Pause(d) => {
                            resched |= self.s.pause(d, t).unwrap();
                            *self.paused.entry(d).or_default() += 1;
                            for v in self.vcpus.iter_mut().filter(|v| v.id.dom == d) {
                                v.woke_at = None;
                            }
                        }
                        Ev::Unpause(d) if self.paused(d) => {
                            resched |= self.s.unpause(d, t).unwrap();
                            *self.paused.get_mut(&d).unwrap() -= 1;
                            if !self.paused(d) {
                                for v in self.vcpus.iter_mut().filter(|v| v.id.dom == d) {
                                    if v.blocked_until.is_none() {
                                        v.woke_at = Some(t);
                                    }
                                }
                            }
                        }
                        Ev::Unpause(d) => assert_eq!(self.s.unpause(d, t), Err(Errno::EINVAL)),
                    }
                }
                if resched {
                    self.decide();
                } else {
                    self.observe();
                }
            }
            for v in &mut self.vcpus {
                if let Some(w) = v.waiting_since {
                    v.max_wait = v.max_wait.max(end - w);
                }
            }
        }

        /// Asks the scheduler and checks the answer against the simulated
        /// world (property (c)).
        fn decide(&mut self) {
            self.d = self.s.pick_next(self.now);
            assert!(self.d.until > self.now, "{:?} at {}", self.d, self.now);
            match self.d.next {
                Some(id) => {
                    let v = self.vcpus.iter().find(|v| v.id == id).unwrap();
                    assert!(v.blocked_until.is_none(), "picked blocked {id:?} at {}", self.now);
                    assert!(!self.paused(id.dom), "picked paused {id:?} at {}", self.now);
                }
                None => {
                    let s = &self.s;
                    assert!(!(0..s.vcpus.len()).any(|v| s.eligible(v)), "idle with work at {}", self.now);
                    for v in &self.vcpus {
                        let dm = s.dom_of(s.vcpu(v.id).unwrap());
                        let parked = dm.params.cap != 0 && dm.budget <= 0;
                        assert!(v.blocked_until.is_some() || self.paused(v.id.dom) || parked);
                    }
                }
            }
            self.observe();
        }

        /// Waiting times and wake latencies.
        fn observe(&mut self) {
            let now = self.now;
            for i in 0..self.vcpus.len() {
                let waiting = self.vcpus[i].blocked_until.is_none() && !self.paused(self.vcpus[i].id.dom);
                let v = &mut self.vcpus[i];
                if self.d.next == Some(v.id) {
                    if let Some(w) = v.waiting_since.take() {
                        v.max_wait = v.max_wait.max(now - w);
                    }
                    if let Some(w) = v.woke_at.take() {
                        v.max_wake_latency = v.max_wake_latency.max(now - w);
                    }
                } else if waiting {
                    v.waiting_since.get_or_insert(now);
                } else {
                    if let Some(w) = v.waiting_since.take() {
                        v.max_wait = v.max_wait.max(now - w);
                    }
                    if v.blocked_until.is_some() {
                        v.woke_at = None;
                    }
                }
            }
        }
    }

    const BUSY: (u64, u64) = (u64::MAX, 0);

    fn busy() -> Vec<Load> {
        vec![Load::Io(vec![BUSY])]
    }

    /// Spurious reschedules at random times must not change the shares.
    fn resched_events(times: &[u64]) -> Vec<(u64, Ev)> {
        times.iter().map(|&t| (t, Ev::Resched)).collect()
    }

    fn shares_close(sim: &Sim, weights: &[u16], total: u64, tolerance: f64) -> Result<(), TestCaseError> {
        let wsum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        for (d, &w) in weights.iter().enumerate() {
            let want = total as f64 * f64::from(w) / wsum as f64;
            let got = sim.dom_ran(d as u16) as f64;
            prop_assert!(
                (got - want).abs() <= want * tolerance,
                "domain {d}: {got} ns, want {want} ({weights:?})"
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// (a) Two busy domains 1:2 and three 1:1:2, at any scale of weight,
        /// in any order, with spurious reschedules, and beside an I/O-bound
        /// domain or not: within 3% of their ratio after 10 s.
        #[test]
        fn fairness_follows_weights(
            base in 1u16..=20000,
            three in any::<bool>(),
            reverse in any::<bool>(),
            noise in prop::collection::vec(0..10 * SEC, 0..200),
            io in prop::collection::vec((10 * US..2 * MS, MS..30 * MS), 0..4),
        ) {
            let mut weights = if three { vec![base, base, 2 * base] } else { vec![base, 2 * base] };
            if reverse {
                weights.reverse();
            }
            let mut doms: Vec<_> = weights.iter().map(|&w| (p(w, 0), busy())).collect();
            if !io.is_empty() {
                doms.push((Params::default(), vec![Load::Io(io)]));
            }
            let mut sim = Sim::with(Scheduler::new(TICK_NS, SLICE_NS), &doms, resched_events(&noise));
            sim.run(10 * SEC);
            // The busy domains share what the I/O one leaves.
            let total: u64 = (0..weights.len() as u16).map(|d| sim.dom_ran(d)).sum();
            prop_assert_eq!(total + sim.dom_ran(weights.len() as u16), 10 * SEC, "never idle");
            shares_close(&sim, &weights, total, 0.03)?;
        }

        /// (a') Any weights among up to five busy domains: each share within
        /// 2% of the CPU of its weight's share.
        #[test]
        fn fairness_any_weights(weights in prop::collection::vec(16u16..=2048, 2..=5)) {
            let doms: Vec<_> = weights.iter().map(|&w| (p(w, 0), busy())).collect();
            let mut sim = Sim::new(&doms);
            sim.run(10 * SEC);
            let wsum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            for (d, &w) in weights.iter().enumerate() {
                let want = 10 * SEC * u64::from(w) / wsum;
                let got = sim.dom_ran(d as u16);
                prop_assert!(got.abs_diff(want) <= 10 * SEC / 50, "domain {d}: {got}, want {want} ({weights:?})");
            }
        }

        /// (b) A capped busy domain stays within its cap plus one tick in
        /// every window, alone on an otherwise idle CPU or next to others,
        /// and still gets its cap.
        #[test]
        fn cap_is_a_ceiling(
            cap in 1u16..=99,
            others in prop::collection::vec(16u16..=1024, 0..3),
            io in prop::collection::vec((50 * US..20 * MS, 50 * US..20 * MS), 0..4),
        ) {
            let load = if io.is_empty() { busy() } else { vec![Load::Io(io.clone())] };
            let mut doms = vec![(p(256, cap), load)];
            doms.extend(others.iter().map(|&w| (p(w, 0), busy())));
            let mut sim = Sim::new(&doms);
            let end = 5 * SEC;
            sim.run(end);
            // In every window [t1, t2]: ran(t2) - ran(t1) <= cap% (t2 - t1) +
            // tick, that is f(t2) - f(t1) <= 100 tick with f(t) = 100 ran(t) -
            // cap t. Breakpoints suffice (ran is piecewise linear), and the
            // worst t1 for each t2 is the minimum of f before it.
            let f = |(t, ran): (u64, u64)| 100 * i128::from(ran) - i128::from(cap) * i128::from(t);
            let mut low = f((0, 0));
            for &point in &sim.trace {
                prop_assert!(f(point) - low <= 100 * i128::from(TICK_NS), "over the cap by {point:?}");
                low = low.min(f(point));
            }
            let rate = |len: u64| len * u64::from(cap) / 100;
            // It gets its cap, or its weight's share if that is less.
            let wsum: u64 = 256 + others.iter().map(|&w| u64::from(w)).sum::<u64>();
            let due = rate(end).min(end * 256 / wsum);
            if io.is_empty() {
                prop_assert!(sim.dom_ran(0) + end / 100 >= due, "only {} ns of {due}", sim.dom_ran(0));
            }
            if !others.is_empty() {
                let all: u64 = (0..doms.len() as u16).map(|d| sim.dom_ran(d)).sum();
                prop_assert_eq!(all, end, "the CPU never idles while an uncapped domain is busy");
            }
        }

        /// (c) and (d): random block/wake, pause/unpause and yields; the simulator
        /// asserts that nothing blocked or paused is ever picked and that
        /// the CPU idles only when nothing can run. Every runnable vCPU
        /// runs within a bound that depends on its share.
        #[test]
        fn no_blocked_or_paused_pick_and_no_starvation(
            doms in prop::collection::vec(
                (64u16..=1024, prop::collection::vec(prop::collection::vec((50 * US..40 * MS, 50 * US..40 * MS), 1..4), 1..3)),
                1..=4),
            busy_doms in prop::collection::vec(any::<bool>(), 4),
            pauses in prop::collection::vec((0..5 * SEC, 0u16..4, 1..200 * MS), 0..6),
            yields in prop::collection::vec(0..6 * SEC, 0..100),
        ) {
            let specs: Vec<_> = doms
                .iter()
                .zip(&busy_doms)
                .map(|((w, loads), &b)| {
                    let loads = if b { busy() } else { loads.iter().map(|l| Load::Io(l.clone())).collect() };
                    (p(*w, 0), loads)
                })
                .collect();
            let mut events: Vec<_> = yields.iter().map(|&t| (t, Ev::Yield)).collect();
            for &(t, d, len) in &pauses {
                let d = d % specs.len() as u16;
                events.push((t, Ev::Pause(d)));
                events.push((t + len, Ev::Unpause(d)));
            }
            let mut sim = Sim::with(Scheduler::new(TICK_NS, SLICE_NS), &specs, events);
            sim.run(6 * SEC);
            // A waiting vCPU earns at least its share, w/Σw of each tick
            // split among its domain's vCPUs, and runs once its credit has
            // climbed above the others' (which fall as they run) or their
            // slices are over: the bound allows a climb of two slices at
            // that rate plus a slice per vCPU ahead. The worst cases found
            // reach about half of it.
            let nv = sim.vcpus.len() as u64;
            let wsum: u64 = specs.iter().map(|s| u64::from(s.0.weight)).sum();
            for v in &sim.vcpus {
                let w = u64::from(specs[v.id.dom as usize].0.weight);
                let nd = specs[v.id.dom as usize].1.len() as u64;
                let bound = 2 * SLICE_NS * nd * wsum / w + (nv + 1) * SLICE_NS;
                prop_assert!(v.max_wait <= bound, "{:?} waited {} ms > {} ms", v.id, v.max_wait / MS, bound / MS);
            }
        }

        /// (e) An I/O-bound vCPU (short runs, long sleeps) that wakes is
        /// running within one tick however many busy vCPUs there are.
        #[test]
        fn a_waking_io_vcpu_preempts_within_a_tick(
            hogs in prop::collection::vec(128u16..=512, 1..=3),
            io in prop::collection::vec((1..MS, 10 * MS..50 * MS), 1..8),
        ) {
            let mut doms = vec![(p(256, 0), vec![Load::Io(io)])];
            doms.extend(hogs.iter().map(|&w| (p(w, 0), busy())));
            let mut sim = Sim::new(&doms);
            sim.warmup = 200 * MS;
            sim.run(5 * SEC);
            prop_assert!(sim.vcpus[0].max_wake_latency <= TICK_NS, "{} ns", sim.vcpus[0].max_wake_latency);
            prop_assert!(sim.vcpus[0].ran > 0);
        }

        /// Arbitrary calls, in any order and with any times, never panic and
        /// keep the pick valid.
        #[test]
        fn arbitrary_calls_keep_the_pick_valid(
            ops in prop::collection::vec((0u8..10, 0u16..3, 0u32..2, 0u64..50 * MS, 0u16..120), 0..200),
        ) {
            let mut s = Scheduler::new(TICK_NS, SLICE_NS);
            let mut now = 0;
            for (op, dom, vcpu, dt, n) in ops {
                now += dt;
                let id = VcpuId { dom, vcpu };
                let _ = match op {
                    0 => s.add_domain(dom, p(n, n)).map(|_| false),
                    1 => s.add_vcpu(id).map(|_| false),
                    2 => s.wake(id, now),
                    3 => s.block(id, now),
                    4 => s.pause(dom, now),
                    5 => s.unpause(dom, now),
                    6 => s.set_params(dom, p(n.max(1), n), now),
                    7 => s.yield_vcpu(id, now),
                    8 => s.remove_vcpu(id, now),
                    _ => s.remove_domain(dom, now),
                };
                let d = s.pick_next(now);
                prop_assert!(d.until > now);
                if let Some(id) = d.next {
                    let v = s.vcpu(id).unwrap();
                    prop_assert!(s.eligible(v));
                } else {
                    prop_assert!(!(0..s.vcpus.len()).any(|v| s.eligible(v)));
                }
            }
        }
    }
}
