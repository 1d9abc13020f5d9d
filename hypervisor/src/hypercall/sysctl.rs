// SPDX-License-Identifier: MIT OR Apache-2.0
//! `sysctl` (privileged): what the hypervisor tells dom0 about the machine.
//! `XEN_SYSCTL_physinfo` only, for now: CPUs, frequency and the page counts
//! a toolstack (and the MMU tests) read.

use super::{Args, Caller, Outcome};
use crate::hal::Guest;
use pv_abi::Errno;
use pv_abi::layout::UnionBytes;
use pv_abi::sysctl::{
    XEN_SYSCTL_INTERFACE_VERSION, XEN_SYSCTL_PHYSCAP_PV, XEN_SYSCTL_PHYSINFO, XenSysctl, XenSysctlPhysinfo,
};
use zerocopy::{FromZeros, IntoBytes};

pub fn sysctl(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = (|| {
        let mut op = XenSysctl::new_zeroed();
        guest.copy_from(args[0], op.as_mut_bytes())?;
        if op.interface_version != XEN_SYSCTL_INTERFACE_VERSION {
            return Err(Errno::EACCES);
        }
        match op.cmd {
            XEN_SYSCTL_PHYSINFO => {
                let (total_pages, free_pages) = guest.page_counts();
                op.u.set(&XenSysctlPhysinfo {
                    threads_per_core: 1,
                    cores_per_socket: 1,
                    nr_cpus: 1,
                    nr_nodes: 1,
                    cpu_khz: caller.tsc_khz,
                    capabilities: XEN_SYSCTL_PHYSCAP_PV,
                    total_pages,
                    free_pages,
                    max_mfn: caller.max_page.saturating_sub(1),
                    ..Default::default()
                });
            }
            _ => return Err(Errno::ENOSYS),
        }
        guest.copy_to(args[0], op.as_bytes())?;
        Ok(0)
    })();
    Outcome::from(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0};
    use zerocopy::FromBytes;

    #[test]
    fn physinfo() {
        let mut g = FakeGuest::new(BASE, 4096);
        let op = XenSysctl::new(XEN_SYSCTL_PHYSINFO, &XenSysctlPhysinfo::default());
        g.mem[..op.as_bytes().len()].copy_from_slice(op.as_bytes());
        assert_eq!(sysctl(&DOM0, &mut g, &[BASE, 0, 0, 0, 0, 0]), Outcome::Return(0));
        let back = XenSysctl::read_from_prefix(&g.mem).unwrap().0;
        let info: XenSysctlPhysinfo = back.u.get();
        assert_eq!((info.nr_cpus, info.free_pages, info.max_mfn), (1, 8, 0x7fff));
        // An old interface version; a bad pointer; another command.
        g.mem[4..8].copy_from_slice(&0x14u32.to_le_bytes());
        assert_eq!(sysctl(&DOM0, &mut g, &[BASE, 0, 0, 0, 0, 0]), Outcome::Return(-13));
        assert_eq!(sysctl(&DOM0, &mut g, &[8, 0, 0, 0, 0, 0]), Outcome::Return(-14));
        let op = XenSysctl::new(99, &0u32);
        g.mem[..op.as_bytes().len()].copy_from_slice(op.as_bytes());
        assert_eq!(sysctl(&DOM0, &mut g, &[BASE, 0, 0, 0, 0, 0]), Outcome::Return(-38));
    }
}
