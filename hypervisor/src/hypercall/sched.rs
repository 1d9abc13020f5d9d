// SPDX-License-Identifier: MIT OR Apache-2.0
//! `sched_op`: yield, block and shutdown (the scheduler proper comes with
//! the domains issue; one vCPU runs for now).

use super::{Args, Caller, Outcome};
use crate::hal::Guest;
use pv_abi::Errno;
use pv_abi::sched::{SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SHUTDOWN_MAX, SchedShutdown};
use zerocopy::{FromBytes, IntoBytes};

pub fn sched_op(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    match super::int(args[0]) {
        Ok(SCHEDOP_YIELD) => Outcome::Return(0),
        Ok(SCHEDOP_BLOCK) => Outcome::Block,
        Ok(SCHEDOP_SHUTDOWN) => {
            let mut s = SchedShutdown::default();
            if guest.copy_from(args[1], s.as_mut_bytes()).is_err() {
                return Outcome::Return(Errno::EFAULT.to_ret());
            }
            let s = SchedShutdown::read_from_bytes(s.as_bytes()).unwrap_or_default();
            if s.reason > SHUTDOWN_MAX {
                return Outcome::Return(Errno::EINVAL.to_ret());
            }
            Outcome::Shutdown(s.reason)
        }
        _ => Outcome::Return(Errno::ENOSYS.to_ret()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0};
    use pv_abi::sched::SHUTDOWN_CRASH;

    #[test]
    fn shutdown_reads_the_reason() {
        let mut g = FakeGuest::new(BASE, 4096);
        g.mem[..4].copy_from_slice(&SHUTDOWN_CRASH.to_le_bytes());
        let sd = u64::from(SCHEDOP_SHUTDOWN);
        assert_eq!(sched_op(&DOM0, &mut g, &[sd, BASE, 0, 0, 0, 0]), Outcome::Shutdown(SHUTDOWN_CRASH));
        assert_eq!(sched_op(&DOM0, &mut g, &[sd, 8, 0, 0, 0, 0]), Outcome::Return(-14));
        g.mem[..4].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(sched_op(&DOM0, &mut g, &[sd, BASE, 0, 0, 0, 0]), Outcome::Return(-22));
        assert_eq!(sched_op(&DOM0, &mut g, &[1234, 0, 0, 0, 0, 0]), Outcome::Return(-38));
        assert_eq!(sched_op(&DOM0, &mut g, &[u64::from(SCHEDOP_YIELD), 0, 0, 0, 0, 0]), Outcome::Return(0));
    }
}
