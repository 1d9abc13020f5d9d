// SPDX-License-Identifier: MIT OR Apache-2.0
//! `sched_op` and `sched_op_compat`: yield, block, poll, shutdown and its
//! code, remote shutdown, watchdogs, pin override (the scheduler proper
//! comes with the domains issue; one vCPU runs for now).

use super::{Args, Caller, Outcome, read};
use crate::hal::{Guest, guest_range_ok};
use pv_abi::Errno;
use pv_abi::sched::{
    SCHEDOP_BLOCK, SCHEDOP_PIN_OVERRIDE, SCHEDOP_POLL, SCHEDOP_REMOTE_SHUTDOWN, SCHEDOP_SHUTDOWN,
    SCHEDOP_SHUTDOWN_CODE, SCHEDOP_WATCHDOG, SCHEDOP_YIELD, SHUTDOWN_MAX, SchedPinOverride, SchedPoll,
    SchedRemoteShutdown, SchedShutdown, SchedWatchdog,
};

/// The most ports one `SCHEDOP_poll` may name.
pub const POLL_MAX_PORTS: usize = 128;
/// Watchdogs per domain.
pub const NR_WATCHDOGS: usize = 2;
const NS_PER_SEC: u64 = 1_000_000_000;

/// A domain's scheduling state that the hypercalls keep.
#[derive(Clone, Debug, Default)]
pub struct SchedState {
    /// The first `SCHEDOP_shutdown_code`: any later shutdown reports it.
    pub shutdown_code: Option<u32>,
    /// Watchdog deadlines (system time), by id - 1.
    pub watchdogs: [Option<u64>; NR_WATCHDOGS],
    /// `SCHEDOP_pin_override`'s physical CPU.
    pub pinned: Option<u32>,
}

/// What `SCHEDOP_poll` waits for: one of `ports` pending, or `deadline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollWait {
    pub ports: [u32; POLL_MAX_PORTS],
    pub nr: usize,
    pub deadline: Option<u64>,
}

impl PollWait {
    pub fn ports(&self) -> &[u32] {
        &self.ports[..self.nr]
    }
}

pub fn sched_op(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = match super::int(args[0]) {
        Ok(SCHEDOP_YIELD) => return Outcome::Yield,
        Ok(SCHEDOP_BLOCK) => return Outcome::Block,
        Ok(SCHEDOP_SHUTDOWN) => read::<SchedShutdown>(guest, args[1]).and_then(|s| shutdown(s.reason)),
        Ok(SCHEDOP_POLL) => read::<SchedPoll>(guest, args[1]).and_then(|p| poll(guest, &p)),
        Ok(SCHEDOP_SHUTDOWN_CODE) => read::<SchedShutdown>(guest, args[1]).and_then(|s| {
            if s.reason > SHUTDOWN_MAX {
                return Err(Errno::EINVAL);
            }
            // The first code stays: a later one is accepted and ignored.
            guest.sched().shutdown_code.get_or_insert(s.reason);
            Ok(Outcome::Return(0))
        }),
        Ok(SCHEDOP_REMOTE_SHUTDOWN) => {
            read::<SchedRemoteShutdown>(guest, args[1]).and_then(|s| remote_shutdown(caller, guest, &s))
        }
        Ok(SCHEDOP_WATCHDOG) => {
            read::<SchedWatchdog>(guest, args[1]).and_then(|w| watchdog(caller, guest, &w))
        }
        Ok(SCHEDOP_PIN_OVERRIDE) => {
            read::<SchedPinOverride>(guest, args[1]).and_then(|p| pin_override(caller, guest, p.pcpu))
        }
        _ => Err(Errno::ENOSYS),
    };
    r.unwrap_or_else(|e| Outcome::Return(e.to_ret()))
}

/// `sched_op_compat(cmd, arg)`: the old form, whose shutdown reason is the
/// argument itself. Poll and the rest exist only in `sched_op`.
pub fn sched_op_compat(_caller: &Caller<'_>, _guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = match super::int(args[0]) {
        Ok(SCHEDOP_YIELD) => return Outcome::Yield,
        Ok(SCHEDOP_BLOCK) => return Outcome::Block,
        Ok(SCHEDOP_SHUTDOWN) => shutdown(args[1] as u32),
        _ => Err(Errno::ENOSYS),
    };
    r.unwrap_or_else(|e| Outcome::Return(e.to_ret()))
}

fn shutdown(reason: u32) -> Result<Outcome, Errno> {
    if reason > SHUTDOWN_MAX {
        return Err(Errno::EINVAL);
    }
    Ok(Outcome::Shutdown(reason))
}

/// SCHEDOP_poll. As in Xen: an event already due for delivery (pending and
/// not masked) ends it at once; an empty port list is not read but its
/// address must be guest memory; any port beyond the ABI is -EINVAL; a
/// listed port already pending ends it.
fn poll(guest: &mut dyn Guest, p: &SchedPoll) -> Result<Outcome, Errno> {
    let nr = p.nr_ports as usize;
    if nr > POLL_MAX_PORTS {
        return Err(Errno::EINVAL);
    }
    if !guest_range_ok(p.ports.addr(), 1) {
        return Err(Errno::EFAULT);
    }
    if guest.events_due() {
        return Ok(Outcome::Return(0));
    }
    let mut wait =
        PollWait { ports: [0; POLL_MAX_PORTS], nr, deadline: (p.timeout != 0).then_some(p.timeout) };
    for i in 0..nr {
        let port: u32 = read(guest, p.ports.addr().wrapping_add(4 * i as u64))?;
        if !guest.event_channels().in_range(port) {
            return Err(Errno::EINVAL);
        }
        if guest.event_pending(port) {
            return Ok(Outcome::Return(0));
        }
        wait.ports[i] = port;
    }
    Ok(Outcome::Poll(alloc::boxed::Box::new(wait)))
}

/// SCHEDOP_remote_shutdown: Xen's order, the domain (by its real id:
/// DOMID_SELF is not one), then the caller's right; the caller itself goes
/// the way of SCHEDOP_shutdown.
fn remote_shutdown(
    caller: &Caller<'_>,
    guest: &mut dyn Guest,
    s: &SchedRemoteShutdown,
) -> Result<Outcome, Errno> {
    if !guest.domain_exists(s.domain_id) {
        return Err(Errno::ESRCH);
    }
    if !caller.privileged {
        return Err(Errno::EPERM);
    }
    if s.domain_id == caller.domid {
        return shutdown(s.reason);
    }
    if s.reason > SHUTDOWN_MAX {
        return Err(Errno::EINVAL);
    }
    guest.shutdown_domain(s.domain_id, s.reason)?;
    Ok(Outcome::Return(0))
}

/// SCHEDOP_watchdog: id 0 makes a new one (its id is returned), an id with a
/// timeout re-arms it, an id with timeout 0 stops it.
fn watchdog(caller: &Caller<'_>, guest: &mut dyn Guest, w: &SchedWatchdog) -> Result<Outcome, Errno> {
    let deadline = (caller.now)().saturating_add(u64::from(w.timeout) * NS_PER_SEC);
    let dogs = &mut guest.sched().watchdogs;
    if w.id == 0 {
        let Some(free) = dogs.iter().position(Option::is_none) else {
            // Xen computes -ENOSPC in an unsigned int: the guest sees it positive.
            return Ok(Outcome::Return(i64::from(Errno::ENOSPC.to_ret() as u32)));
        };
        dogs[free] = Some(deadline);
        guest.watchdogs_changed();
        return Ok(Outcome::Return(free as i64 + 1));
    }
    let slot = dogs.get_mut(w.id as usize - 1).filter(|d| d.is_some()).ok_or(Errno::EINVAL)?;
    *slot = (w.timeout != 0).then_some(deadline);
    guest.watchdogs_changed();
    Ok(Outcome::Return(0))
}

/// SCHEDOP_pin_override: the hardware domain may pin its vCPU to a physical
/// CPU for a while (-1 ends it). There is one physical CPU.
fn pin_override(caller: &Caller<'_>, guest: &mut dyn Guest, pcpu: i32) -> Result<Outcome, Errno> {
    if !caller.privileged {
        return Err(Errno::EPERM);
    }
    let pinned = &mut guest.sched().pinned;
    match pcpu {
        -1 if pinned.is_none() => Err(Errno::EINVAL),
        -1 => {
            *pinned = None;
            Ok(Outcome::Return(0))
        }
        _ if pinned.is_some() => Err(Errno::EBUSY),
        0 => {
            *pinned = Some(0);
            Ok(Outcome::Return(0))
        }
        _ => Err(Errno::EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0, DOMU};
    use pv_abi::sched::SHUTDOWN_CRASH;
    use zerocopy::IntoBytes;

    fn op(g: &mut FakeGuest, cmd: u32, arg: &[u8]) -> Outcome {
        g.mem[..arg.len()].copy_from_slice(arg);
        sched_op(&DOM0, g, &[u64::from(cmd), BASE, 0, 0, 0, 0])
    }

    #[test]
    fn shutdown_reads_the_reason() {
        let mut g = FakeGuest::new(BASE, 4096);
        let sd = SCHEDOP_SHUTDOWN;
        assert_eq!(op(&mut g, sd, &SHUTDOWN_CRASH.to_le_bytes()), Outcome::Shutdown(SHUTDOWN_CRASH));
        assert_eq!(sched_op(&DOM0, &mut g, &[u64::from(sd), 8, 0, 0, 0, 0]), Outcome::Return(-14));
        assert_eq!(op(&mut g, sd, &99u32.to_le_bytes()), Outcome::Return(-22));
        assert_eq!(sched_op(&DOM0, &mut g, &[1234, 0, 0, 0, 0, 0]), Outcome::Return(-38));
        assert_eq!(sched_op(&DOM0, &mut g, &[u64::from(SCHEDOP_YIELD), 0, 0, 0, 0, 0]), Outcome::Yield);
        let compat =
            |g: &mut FakeGuest, cmd: u32, arg| sched_op_compat(&DOM0, g, &[u64::from(cmd), arg, 0, 0, 0, 0]);
        assert_eq!(compat(&mut g, sd, 3), Outcome::Shutdown(3));
        assert_eq!(compat(&mut g, SCHEDOP_POLL, 0), Outcome::Return(-38));
    }

    #[test]
    fn shutdown_code_keeps_the_first() {
        let mut g = FakeGuest::new(BASE, 4096);
        assert_eq!(op(&mut g, SCHEDOP_SHUTDOWN_CODE, &1u32.to_le_bytes()), Outcome::Return(0));
        assert_eq!(op(&mut g, SCHEDOP_SHUTDOWN_CODE, &3u32.to_le_bytes()), Outcome::Return(0));
        assert_eq!(g.sched.shutdown_code, Some(1));
        // Remote shutdown: of dom0 itself, of another domain, of none.
        g.others.insert(2, (crate::evtchn::EventChannels::new(2, 64), 0));
        let rs = |id: u16| SchedRemoteShutdown { domain_id: id, reason: 1, ..Default::default() };
        assert_eq!(op(&mut g, SCHEDOP_REMOTE_SHUTDOWN, rs(0).as_bytes()), Outcome::Shutdown(1));
        assert_eq!(op(&mut g, SCHEDOP_REMOTE_SHUTDOWN, rs(0x7ff0).as_bytes()), Outcome::Return(-3));
        assert_eq!(op(&mut g, SCHEDOP_REMOTE_SHUTDOWN, rs(5).as_bytes()), Outcome::Return(-3));
        assert_eq!(op(&mut g, SCHEDOP_REMOTE_SHUTDOWN, rs(2).as_bytes()), Outcome::Return(0));
        assert_eq!(g.destroyed, [2]);
        g.mem[..8].copy_from_slice(rs(0).as_bytes());
        let domu = sched_op(&DOMU, &mut g, &[u64::from(SCHEDOP_REMOTE_SHUTDOWN), BASE, 0, 0, 0, 0]);
        assert_eq!(domu, Outcome::Return(-1));
        g.mem[..8].copy_from_slice(rs(9).as_bytes());
        let domu = sched_op(&DOMU, &mut g, &[u64::from(SCHEDOP_REMOTE_SHUTDOWN), BASE, 0, 0, 0, 0]);
        assert_eq!(domu, Outcome::Return(-3), "the domain is looked up first");
    }

    #[test]
    fn poll_checks_then_waits() {
        let mut g = FakeGuest::new(BASE, 4096);
        let port = g.evtchn.alloc_unbound(0).unwrap();
        let poll = |g: &mut FakeGuest, ports: &[u32], timeout: u64| {
            for (i, p) in ports.iter().enumerate() {
                g.mem[64 + 4 * i..68 + 4 * i].copy_from_slice(&p.to_le_bytes());
            }
            let p = SchedPoll {
                ports: pv_abi::xen::GuestHandle::new(BASE + 64),
                nr_ports: ports.len() as u32,
                timeout,
                ..Default::default()
            };
            op(g, SCHEDOP_POLL, p.as_bytes())
        };
        let Outcome::Poll(w) = poll(&mut g, &[port], 5000) else { panic!() };
        assert_eq!((w.ports(), w.deadline), (&[port][..], Some(5000)));
        assert_eq!(poll(&mut g, &[port, 4096], 0), Outcome::Return(-22));
        assert_eq!(poll(&mut g, &[0; 129], 0), Outcome::Return(-22));
        g.pending.insert(port);
        assert_eq!(poll(&mut g, &[port], 0), Outcome::Return(0));
        g.due = true;
        assert_eq!(poll(&mut g, &[4096], 0), Outcome::Return(0)); // due first: ports unread
    }

    #[test]
    fn watchdogs_and_pins() {
        let mut g = FakeGuest::new(BASE, 4096);
        let wd = |g: &mut FakeGuest, id: u32, timeout: u32| {
            op(g, SCHEDOP_WATCHDOG, SchedWatchdog { id, timeout }.as_bytes())
        };
        assert_eq!(wd(&mut g, 0, 60), Outcome::Return(1));
        assert_eq!(wd(&mut g, 0, 60), Outcome::Return(2));
        assert_eq!(wd(&mut g, 0, 60), Outcome::Return(0xffff_ffe4));
        assert_eq!(wd(&mut g, 1, 0), Outcome::Return(0));
        assert_eq!(wd(&mut g, 1, 0), Outcome::Return(-22));
        assert_eq!(wd(&mut g, 3, 5), Outcome::Return(-22));
        assert_eq!(g.sched.watchdogs, [None, Some(crate::hypercall::tests::NOW + 60 * NS_PER_SEC)]);
        let pin = |g: &mut FakeGuest, pcpu: i32| op(g, SCHEDOP_PIN_OVERRIDE, &pcpu.to_le_bytes());
        assert_eq!(pin(&mut g, -1), Outcome::Return(-22));
        assert_eq!(pin(&mut g, 0), Outcome::Return(0));
        assert_eq!(pin(&mut g, 0), Outcome::Return(-16));
        assert_eq!(pin(&mut g, -1), Outcome::Return(0));
        assert_eq!(pin(&mut g, 1), Outcome::Return(-22));
    }
}
