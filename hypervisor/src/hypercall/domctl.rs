// SPDX-License-Identifier: MIT OR Apache-2.0
//! `domctl`: the toolstack's control of other domains. What a toolstack
//! needs to watch and stop boot-time domains is here: getdomaininfo,
//! pausedomain, unpausedomain, destroydomain. Creating domains at run time
//! is not (domains come from boot modules); other commands are -ENOSYS.

use super::{Args, Caller, Outcome, read};
use crate::hal::{DomainInfo, Guest};
use pv_abi::Errno;
use pv_abi::domctl::*;
use pv_abi::layout::UnionBytes;
use pv_abi::xen::DOMID_FIRST_RESERVED;
use zerocopy::IntoBytes;

pub fn domctl(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = (|| -> Result<i64, Errno> {
        let mut op: XenDomctl = read(guest, args[0])?;
        // Xen's order: the version, then the target, then the caller's rights.
        if op.interface_version != XEN_DOMCTL_INTERFACE_VERSION {
            return Err(Errno::EACCES);
        }
        if op.cmd != XEN_DOMCTL_GETDOMAININFO && !guest.domain_exists(op.domain) {
            return Err(Errno::ESRCH);
        }
        if !caller.privileged {
            return Err(Errno::EPERM);
        }
        let itself = op.domain == caller.domid;
        match op.cmd {
            XEN_DOMCTL_PAUSEDOMAIN | XEN_DOMCTL_UNPAUSEDOMAIN | XEN_DOMCTL_DESTROYDOMAIN if itself => {
                Err(Errno::EINVAL)
            }
            XEN_DOMCTL_PAUSEDOMAIN => guest.pause_domain(op.domain, true).map(|()| 0),
            XEN_DOMCTL_UNPAUSEDOMAIN => guest.pause_domain(op.domain, false).map(|()| 0),
            XEN_DOMCTL_DESTROYDOMAIN => guest.destroy_domain(op.domain).map(|()| 0),
            XEN_DOMCTL_GETDOMAININFO => {
                if op.domain >= DOMID_FIRST_RESERVED {
                    return Err(Errno::EINVAL);
                }
                let d = guest.domain_info(op.domain).ok_or(Errno::ESRCH)?;
                let info = getdomaininfo(&d);
                op.domain = d.domid;
                op.u = XenDomctlArgs::from_member(&info);
                guest.copy_to(args[0], op.as_bytes()).map_err(Errno::from)?;
                Ok(0)
            }
            _ => Err(Errno::ENOSYS),
        }
    })();
    Outcome::from(r)
}

fn getdomaininfo(d: &DomainInfo) -> XenDomctlGetdomaininfo {
    XenDomctlGetdomaininfo {
        domain: d.domid,
        flags: d.flags,
        tot_pages: d.tot_pages,
        max_pages: d.max_pages,
        shared_info_frame: d.shared_info_frame,
        cpu_time: d.cpu_time,
        nr_online_vcpus: d.nr_online_vcpus,
        max_vcpu_id: d.nr_online_vcpus.saturating_sub(1),
        // Xen's default cpupool.
        cpupool: 0,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0, DOMU};
    use zerocopy::FromBytes;

    fn call(g: &mut FakeGuest, caller: &Caller<'_>, op: &XenDomctl) -> (Outcome, XenDomctl) {
        g.mem[..core::mem::size_of::<XenDomctl>()].copy_from_slice(op.as_bytes());
        let r = domctl(caller, g, &[BASE, 0, 0, 0, 0, 0]);
        (r, XenDomctl::read_from_bytes(&g.mem[..core::mem::size_of::<XenDomctl>()]).unwrap())
    }

    fn guest_with_domains() -> FakeGuest {
        let mut g = FakeGuest::new(BASE, 4096);
        for d in [2, 5] {
            g.others.insert(d, (crate::evtchn::EventChannels::new(d, 64), 0));
        }
        g
    }

    #[test]
    fn pause_unpause_destroy() {
        let mut g = guest_with_domains();
        let op = |cmd, dom| XenDomctl::without_arg(cmd, dom);
        assert_eq!(call(&mut g, &DOM0, &op(XEN_DOMCTL_UNPAUSEDOMAIN, 2)).0, Outcome::Return(-22));
        assert_eq!(call(&mut g, &DOM0, &op(XEN_DOMCTL_PAUSEDOMAIN, 2)).0, Outcome::Return(0));
        assert_eq!(g.others[&2].1, 1);
        assert_eq!(call(&mut g, &DOM0, &op(XEN_DOMCTL_UNPAUSEDOMAIN, 2)).0, Outcome::Return(0));
        assert_eq!(call(&mut g, &DOM0, &op(XEN_DOMCTL_PAUSEDOMAIN, 0)).0, Outcome::Return(-22), "itself");
        assert_eq!(call(&mut g, &DOM0, &op(XEN_DOMCTL_DESTROYDOMAIN, 0)).0, Outcome::Return(-22));
        assert_eq!(call(&mut g, &DOM0, &op(XEN_DOMCTL_PAUSEDOMAIN, 9)).0, Outcome::Return(-3));
        assert_eq!(call(&mut g, &DOM0, &op(XEN_DOMCTL_DESTROYDOMAIN, 5)).0, Outcome::Return(0));
        assert_eq!(g.destroyed, [5]);
        assert_eq!(call(&mut g, &DOM0, &op(XEN_DOMCTL_DESTROYDOMAIN, 5)).0, Outcome::Return(-3));
        assert_eq!(call(&mut g, &DOM0, &op(XEN_DOMCTL_MAX_MEM, 2)).0, Outcome::Return(-38));
    }

    #[test]
    fn checks_in_xens_order() {
        let mut g = guest_with_domains();
        let mut op = XenDomctl::without_arg(XEN_DOMCTL_PAUSEDOMAIN, 2);
        op.interface_version -= 1;
        assert_eq!(call(&mut g, &DOMU, &op).0, Outcome::Return(-13), "version first");
        let op = XenDomctl::without_arg(XEN_DOMCTL_PAUSEDOMAIN, 9);
        assert_eq!(call(&mut g, &DOMU, &op).0, Outcome::Return(-3), "then the target");
        let op = XenDomctl::without_arg(XEN_DOMCTL_PAUSEDOMAIN, 0);
        assert_eq!(call(&mut g, &DOMU, &op).0, Outcome::Return(-1), "then the caller");
        let op = XenDomctl::without_arg(XEN_DOMCTL_GETDOMAININFO, 0);
        assert_eq!(call(&mut g, &DOMU, &op).0, Outcome::Return(-1));
        assert_eq!(domctl(&DOM0, &mut g, &[8, 0, 0, 0, 0, 0]), Outcome::Return(-14));
        assert_eq!(g.others[&2].1, 0, "nothing paused");
    }

    #[test]
    fn getdomaininfo_finds_the_next_domain() {
        let mut g = guest_with_domains();
        let (r, out) = call(&mut g, &DOM0, &XenDomctl::without_arg(XEN_DOMCTL_GETDOMAININFO, 3));
        assert_eq!(r, Outcome::Return(0));
        let info: XenDomctlGetdomaininfo = out.u.get();
        assert_eq!((out.domain, info.domain, info.tot_pages, info.nr_online_vcpus), (5, 5, 256, 1));
        let (r, _) = call(&mut g, &DOM0, &XenDomctl::without_arg(XEN_DOMCTL_GETDOMAININFO, 6));
        assert_eq!(r, Outcome::Return(-3));
        let (r, _) = call(&mut g, &DOM0, &XenDomctl::without_arg(XEN_DOMCTL_GETDOMAININFO, 0x7ff0));
        assert_eq!(r, Outcome::Return(-22));
    }
}
