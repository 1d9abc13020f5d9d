// SPDX-License-Identifier: MIT OR Apache-2.0
//! `event_channel_op` within the calling domain (2-level ABI), and the
//! vCPU timer (`set_timer_op`), whose expiry raises VIRQ_TIMER.

use super::{Args, Caller, Outcome, read};
use crate::evtchn::{NR_PORTS_2L, PortState};
use crate::hal::Guest;
use pv_abi::Errno;
use pv_abi::event_channel::*;
use pv_abi::xen::DOMID_SELF;
use zerocopy::IntoBytes;

fn write<T: IntoBytes + zerocopy::Immutable>(guest: &mut dyn Guest, va: u64, v: &T) -> Result<(), Errno> {
    guest.copy_to(va, v.as_bytes()).map_err(Errno::from)
}

/// Resolves DOMID_SELF.
fn resolve(caller: &Caller<'_>, dom: u16) -> u16 {
    if dom == DOMID_SELF { caller.domid } else { dom }
}

/// A domain the caller names to act on: itself, or (privileged callers
/// only, as Xen's XSM_TARGET) another that exists.
fn target(caller: &Caller<'_>, guest: &dyn Guest, dom: u16) -> Result<u16, Errno> {
    let dom = resolve(caller, dom);
    if dom == caller.domid {
        Ok(dom)
    } else if !guest.domain_exists(dom) {
        Err(Errno::ESRCH)
    } else if !caller.privileged {
        Err(Errno::EPERM)
    } else {
        Ok(dom)
    }
}

pub fn event_channel_op(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let arg = args[1];
    let r = (|| -> Result<i64, Errno> {
        match args[0] as u32 {
            EVTCHNOP_ALLOC_UNBOUND => {
                let mut a: EvtchnAllocUnbound = read(guest, arg)?;
                let dom = target(caller, guest, a.dom)?;
                // As in Xen, the remote domain need not exist (yet).
                let remote = resolve(caller, a.remote_dom);
                let chans = match dom == caller.domid {
                    true => guest.event_channels(),
                    false => guest.event_channels_of(dom).ok_or(Errno::ESRCH)?,
                };
                a.port = chans.alloc_unbound(remote)?;
                write(guest, arg, &a)?;
            }
            EVTCHNOP_BIND_INTERDOMAIN => {
                let mut b: EvtchnBindInterdomain = read(guest, arg)?;
                let remote = resolve(caller, b.remote_dom);
                b.local_port = if remote == caller.domid {
                    guest.event_channels().bind_interdomain_self(b.remote_port)?
                } else {
                    let (local, other) = guest.event_channels_with(remote).ok_or(Errno::ESRCH)?;
                    if !other.in_range(b.remote_port) {
                        return Err(Errno::EINVAL);
                    }
                    crate::evtchn::EventChannels::bind_interdomain(local, other, b.remote_port)?
                };
                write(guest, arg, &b)?;
                // As in Xen, the new local end starts pending, so that no
                // event sent before the bind is lost.
                guest.deliver_event(b.local_port);
            }
            EVTCHNOP_BIND_VIRQ => {
                let mut b: EvtchnBindVirq = read(guest, arg)?;
                b.port = guest.event_channels().bind_virq(b.virq, b.vcpu)?;
                write(guest, arg, &b)?;
            }
            EVTCHNOP_BIND_IPI => {
                let mut b: EvtchnBindIpi = read(guest, arg)?;
                b.port = guest.event_channels().bind_ipi(b.vcpu)?;
                write(guest, arg, &b)?;
            }
            EVTCHNOP_CLOSE => {
                let c: EvtchnClose = read(guest, arg)?;
                guest.close_event(c.port)?;
            }
            EVTCHNOP_SEND => {
                let s: EvtchnSend = read(guest, arg)?;
                match guest.event_channels().send(s.port)? {
                    Some((dom, port)) if dom == caller.domid => guest.deliver_event(port),
                    Some((dom, port)) => guest.deliver_event_to(dom, port),
                    None => {}
                }
            }
            EVTCHNOP_STATUS => {
                let mut s: EvtchnStatus = read(guest, arg)?;
                let dom = target(caller, guest, s.dom)?;
                if s.port >= NR_PORTS_2L {
                    return Err(Errno::EINVAL);
                }
                s.vcpu = 0;
                s.u = [0, 0];
                let chans = match dom == caller.domid {
                    true => guest.event_channels(),
                    false => guest.event_channels_of(dom).ok_or(Errno::ESRCH)?,
                };
                s.status = match chans.state(s.port) {
                    None | Some(PortState::Free) => EVTCHNSTAT_CLOSED,
                    Some(PortState::Unbound { remote }) => {
                        s.u[0] = u32::from(remote);
                        EVTCHNSTAT_UNBOUND
                    }
                    Some(PortState::Interdomain { dom, port }) => {
                        s.u = [u32::from(dom), port];
                        EVTCHNSTAT_INTERDOMAIN
                    }
                    Some(PortState::Virq(v)) => {
                        s.u[0] = v;
                        EVTCHNSTAT_VIRQ
                    }
                    Some(PortState::Ipi) => EVTCHNSTAT_IPI,
                };
                write(guest, arg, &s)?;
            }
            EVTCHNOP_UNMASK => {
                let u: EvtchnUnmask = read(guest, arg)?;
                if u.port >= NR_PORTS_2L || guest.event_channels().state(u.port).is_none() {
                    return Err(Errno::EINVAL);
                }
                guest.unmask_event(u.port);
            }
            EVTCHNOP_BIND_VCPU => {
                let b: EvtchnBindVcpu = read(guest, arg)?;
                // Per-vCPU channels (VIRQs like the timer, IPIs) stay put.
                match guest.event_channels().state(b.port) {
                    Some(PortState::Interdomain { .. } | PortState::Unbound { .. }) => {}
                    _ => return Err(Errno::EINVAL),
                }
                if b.vcpu != 0 {
                    return Err(Errno::ENOENT);
                }
            }
            // FIFO events, PIRQs and resets are not implemented: Linux falls
            // back to the 2-level ABI on -ENOSYS.
            _ => return Err(Errno::ENOSYS),
        }
        Ok(0)
    })();
    Outcome::from(r)
}

/// The old `event_channel_op_compat(struct evtchn_op *)`: the command, then
/// the same argument union.
pub fn event_channel_op_compat(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let mut cmd = [0u8; 4];
    if guest.copy_from(args[0], &mut cmd).is_err() {
        return Outcome::Return(Errno::EFAULT.to_ret());
    }
    let cmd = u64::from(u32::from_le_bytes(cmd));
    event_channel_op(caller, guest, &[cmd, args[0].wrapping_add(4), 0, 0, 0, 0])
}

/// `set_timer_op(timeout)`: an absolute system time in ns; 0 cancels.
/// `set_timer_op(deadline)`: 0 stops the timer. As in Xen, a deadline in
/// the past by the sign bit (negative) or more than 2^50 ns away is taken as
/// a guest bug and fires 100 ms from now instead.
pub fn set_timer_op(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    const TOO_FAR: u64 = 1 << 50;
    const INSTEAD: u64 = 100_000_000;
    let (t, now) = (args[0], (caller.now)());
    let t = if (t as i64) < 0 || t.saturating_sub(now) > TOO_FAR { now + INSTEAD } else { t };
    guest.set_timer((args[0] != 0).then_some(t));
    Outcome::Return(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0};
    use zerocopy::FromBytes;

    fn op<T: IntoBytes + FromBytes + zerocopy::Immutable>(
        g: &mut FakeGuest,
        cmd: u32,
        v: &T,
    ) -> (Outcome, T) {
        g.mem[..core::mem::size_of::<T>()].copy_from_slice(v.as_bytes());
        let r = event_channel_op(&DOM0, g, &[u64::from(cmd), BASE, 0, 0, 0, 0]);
        (r, T::read_from_bytes(&g.mem[..core::mem::size_of::<T>()]).unwrap())
    }

    #[test]
    fn pair_send_status_close() {
        let mut g = FakeGuest::new(BASE, 4096);
        let (r, a) = op(
            &mut g,
            EVTCHNOP_ALLOC_UNBOUND,
            &EvtchnAllocUnbound { dom: DOMID_SELF, remote_dom: DOMID_SELF, port: 0 },
        );
        assert_eq!((r, a.port), (Outcome::Return(0), 1));
        let b = EvtchnBindInterdomain { remote_dom: 0, remote_port: 1, ..Default::default() };
        let (r, b) = op(&mut g, EVTCHNOP_BIND_INTERDOMAIN, &b);
        assert_eq!((r, b.local_port), (Outcome::Return(0), 2));
        assert_eq!(g.delivered, [2], "the new local end starts pending");
        let (r, _) = op(&mut g, EVTCHNOP_SEND, &EvtchnSend { port: 1 });
        assert_eq!(r, Outcome::Return(0));
        assert_eq!(g.delivered, [2, 2]);
        let st = EvtchnStatus { dom: DOMID_SELF, port: 2, ..Default::default() };
        let (_, st) = op(&mut g, EVTCHNOP_STATUS, &st);
        assert_eq!((st.status, st.u), (EVTCHNSTAT_INTERDOMAIN, [0, 1]));
        let (r, _) = op(&mut g, EVTCHNOP_CLOSE, &EvtchnClose { port: 2 });
        assert_eq!(r, Outcome::Return(0));
        let st = EvtchnStatus { dom: DOMID_SELF, port: 1, ..Default::default() };
        let (_, st) = op(&mut g, EVTCHNOP_STATUS, &st);
        assert_eq!(st.status, EVTCHNSTAT_UNBOUND);
        let (r, _) = op(&mut g, EVTCHNOP_CLOSE, &EvtchnClose { port: 2 });
        assert_eq!(r, Outcome::Return(-22));
        let (r, _) = op(&mut g, EVTCHNOP_SEND, &EvtchnSend { port: 2 });
        assert_eq!(r, Outcome::Return(-22));
        let st = EvtchnStatus { dom: 7, port: 1, ..Default::default() };
        assert_eq!(op(&mut g, EVTCHNOP_STATUS, &st).0, Outcome::Return(-3));
        let st = EvtchnStatus { dom: DOMID_SELF, port: 5000, ..Default::default() };
        assert_eq!(op(&mut g, EVTCHNOP_STATUS, &st).0, Outcome::Return(-22));
    }

    #[test]
    fn virq_ipi_unmask_and_unknown() {
        let mut g = FakeGuest::new(BASE, 4096);
        let (r, v) = op(&mut g, EVTCHNOP_BIND_VIRQ, &EvtchnBindVirq { virq: 0, vcpu: 0, port: 0 });
        assert_eq!((r, v.port), (Outcome::Return(0), 1));
        assert_eq!(
            op(&mut g, EVTCHNOP_BIND_VIRQ, &EvtchnBindVirq { virq: 0, vcpu: 0, port: 0 }).0,
            Outcome::Return(-17)
        );
        let (r, i) = op(&mut g, EVTCHNOP_BIND_IPI, &EvtchnBindIpi { vcpu: 0, port: 0 });
        assert_eq!((r, i.port), (Outcome::Return(0), 2));
        assert_eq!(op(&mut g, EVTCHNOP_UNMASK, &EvtchnUnmask { port: 2 }).0, Outcome::Return(0));
        assert_eq!(g.unmasked, [2]);
        assert_eq!(op(&mut g, EVTCHNOP_UNMASK, &EvtchnUnmask { port: 9 }).0, Outcome::Return(-22));
        assert_eq!(op(&mut g, EVTCHNOP_INIT_CONTROL, &EvtchnUnmask { port: 0 }).0, Outcome::Return(-38));
        assert_eq!(
            event_channel_op(&DOM0, &mut g, &[u64::from(EVTCHNOP_SEND), 8, 0, 0, 0, 0]),
            Outcome::Return(-14)
        );
        assert_eq!(set_timer_op(&DOM0, &mut g, &[123, 0, 0, 0, 0, 0]), Outcome::Return(0));
        assert_eq!(g.timer, Some(123));
        assert_eq!(set_timer_op(&DOM0, &mut g, &[0; 6]), Outcome::Return(0));
        assert_eq!(g.timer, None);
    }
}
