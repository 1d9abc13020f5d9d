// SPDX-License-Identifier: MIT OR Apache-2.0
//! `vcpu_op`: the state of a domain's vCPUs (one vCPU for now; timers and
//! bringing up more vCPUs come with the scheduler).

use super::{Args, Caller, Outcome};
use crate::hal::Guest;
use pv_abi::Errno;
use pv_abi::vcpu::{
    RUNSTATE_RUNNING, VCPUOP_GET_RUNSTATE_INFO, VCPUOP_IS_UP, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
    VCPUOP_REGISTER_VCPU_INFO, VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER,
    VCPUOP_STOP_SINGLESHOT_TIMER, VcpuRegisterRunstateMemoryArea, VcpuRegisterVcpuInfo, VcpuRunstateInfo,
    VcpuSetSingleshotTimer,
};
use zerocopy::{FromZeros, IntoBytes};

/// vCPUs each domain has.
pub const NR_VCPUS: u64 = 1;

pub fn vcpu_op(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let (cmd, vcpu, arg) = (args[0], u64::from(args[1] as u32), args[2]);
    if vcpu >= NR_VCPUS {
        return Outcome::Return(Errno::ENOENT.to_ret());
    }
    let r = match super::int(cmd) {
        Ok(VCPUOP_IS_UP) => Ok(1),
        Ok(VCPUOP_GET_RUNSTATE_INFO) => {
            // The only vCPU has been running since it was built.
            let info = VcpuRunstateInfo {
                state: RUNSTATE_RUNNING,
                state_entry_time: 0,
                time: [(caller.now)(), 0, 0, 0],
                ..Default::default()
            };
            guest.copy_to(arg, info.as_bytes()).map(|_| 0).map_err(Errno::from)
        }
        Ok(VCPUOP_SET_SINGLESHOT_TIMER) => {
            let mut t = VcpuSetSingleshotTimer::new_zeroed();
            match guest.copy_from(arg, t.as_mut_bytes()) {
                Err(f) => Err(f.into()),
                // Xen 4.17 ignores VCPU_SSHOTTMR_future (vcpu.h allows it):
                // a deadline in the past fires at once.
                Ok(()) => {
                    guest.set_timer(Some(t.timeout_abs_ns.max(1)));
                    Ok(0)
                }
            }
        }
        // The area is written now and whenever the vCPU starts or stops
        // running (best effort, as in Xen: a bad address is not an error).
        Ok(VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA) => super::read::<VcpuRegisterRunstateMemoryArea>(guest, arg)
            .map(|a| {
                guest.set_runstate_area(a.addr);
                0
            }),
        // The vCPU's vcpu_info moves into one of the guest's frames (once).
        Ok(VCPUOP_REGISTER_VCPU_INFO) => super::read::<VcpuRegisterVcpuInfo>(guest, arg).and_then(|r| {
            const SIZE: u64 = core::mem::size_of::<pv_abi::xen::VcpuInfo>() as u64;
            // Within the page (Xen's rule), and 8-byte aligned for the
            // selector word's atomic updates.
            if u64::from(r.offset) > 4096 - SIZE || r.offset % 8 != 0 {
                return Err(Errno::EINVAL);
            }
            guest.register_vcpu_info(crate::mm::frame::Mfn(r.mfn), r.offset as usize).map(|()| 0)
        }),
        // There is no periodic timer (Xen starts one at 100 Hz; Linux stops it).
        Ok(VCPUOP_STOP_PERIODIC_TIMER) => Ok(0),
        Ok(VCPUOP_STOP_SINGLESHOT_TIMER) => {
            guest.set_timer(None);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    };
    Outcome::from(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0};

    #[test]
    fn one_vcpu_running() {
        let mut g = FakeGuest::new(BASE, 4096);
        let op =
            |g: &mut FakeGuest, cmd: u32, vcpu, arg| vcpu_op(&DOM0, g, &[u64::from(cmd), vcpu, arg, 0, 0, 0]);
        assert_eq!(op(&mut g, VCPUOP_IS_UP, 0, 0), Outcome::Return(1));
        assert_eq!(op(&mut g, VCPUOP_IS_UP, 1, 0), Outcome::Return(-2));
        assert_eq!(op(&mut g, VCPUOP_GET_RUNSTATE_INFO, 0, BASE), Outcome::Return(0));
        assert_eq!(i32::from_le_bytes(g.mem[..4].try_into().unwrap()), RUNSTATE_RUNNING);
        assert_eq!(u64::from_le_bytes(g.mem[16..24].try_into().unwrap()), 1_000_000);
        assert_eq!(op(&mut g, VCPUOP_GET_RUNSTATE_INFO, 0, 8), Outcome::Return(-14));
        assert_eq!(op(&mut g, 999, 0, 0), Outcome::Return(-38));
        g.mem[..8].copy_from_slice(&0x1234u64.to_le_bytes());
        assert_eq!(op(&mut g, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, BASE), Outcome::Return(0));
        assert_eq!(g.runstate_area, Some(0x1234));
        assert_eq!(op(&mut g, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, 8), Outcome::Return(-14));
        let info = |mfn, offset| VcpuRegisterVcpuInfo { mfn, offset, rsvd: 0 };
        for (bad, why) in [(info(5, 4033), "crosses the page"), (info(5, 4), "unaligned")] {
            g.mem[..16].copy_from_slice(bad.as_bytes());
            assert_eq!(op(&mut g, VCPUOP_REGISTER_VCPU_INFO, 0, BASE), Outcome::Return(-22), "{why}");
        }
        g.mem[..16].copy_from_slice(info(5, 4032).as_bytes());
        assert_eq!(op(&mut g, VCPUOP_REGISTER_VCPU_INFO, 0, BASE), Outcome::Return(0));
        assert_eq!(g.vcpu_info, Some((5, 4032)));
        use pv_abi::vcpu::VCPU_SSHOTTMR_FUTURE;
        let past =
            VcpuSetSingleshotTimer { timeout_abs_ns: 10, flags: VCPU_SSHOTTMR_FUTURE, ..Default::default() };
        g.mem[..16].copy_from_slice(past.as_bytes());
        // A past deadline is taken (and fires at once), flag or not, as in Xen 4.17.
        assert_eq!(op(&mut g, VCPUOP_SET_SINGLESHOT_TIMER, 0, BASE), Outcome::Return(0));
        assert_eq!(g.timer, Some(10));
        assert_eq!(op(&mut g, VCPUOP_STOP_PERIODIC_TIMER, 0, 0), Outcome::Return(0));
        let later = VcpuSetSingleshotTimer {
            timeout_abs_ns: 5_000_000,
            flags: VCPU_SSHOTTMR_FUTURE,
            ..Default::default()
        };
        g.mem[..16].copy_from_slice(later.as_bytes());
        assert_eq!(op(&mut g, VCPUOP_SET_SINGLESHOT_TIMER, 0, BASE), Outcome::Return(0));
        assert_eq!(g.timer, Some(5_000_000));
        assert_eq!(op(&mut g, VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0), Outcome::Return(0));
        assert_eq!(g.timer, None);
    }
}
