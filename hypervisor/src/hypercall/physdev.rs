// SPDX-License-Identifier: MIT OR Apache-2.0
//! `physdev_op`: the virtual I/O privilege level. (Interrupt routing and
//! the PCI sub-ops arrive with the dom0 device issues.)

use super::{Args, Caller, Outcome};
use crate::hal::Guest;
use pv_abi::Errno;
use pv_abi::physdev::{PHYSDEVOP_SET_IOPL, PhysdevSetIopl};
use zerocopy::{FromZeros, IntoBytes};

pub fn physdev_op(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let r = match super::int(args[0]) {
        Ok(PHYSDEVOP_SET_IOPL) => {
            let mut s = PhysdevSetIopl::new_zeroed();
            match guest.copy_from(args[1], s.as_mut_bytes()) {
                Err(f) => Err(f.into()),
                Ok(()) if s.iopl > 3 => Err(Errno::EINVAL),
                Ok(()) => {
                    guest.traps().iopl = s.iopl as u8;
                    Ok(0)
                }
            }
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
    fn set_iopl() {
        let mut g = FakeGuest::new(BASE, 4096);
        let op = u64::from(PHYSDEVOP_SET_IOPL);
        g.mem[..4].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(physdev_op(&DOM0, &mut g, &[op, BASE, 0, 0, 0, 0]), Outcome::Return(0));
        assert_eq!(g.traps.iopl, 1);
        g.mem[..4].copy_from_slice(&4u32.to_le_bytes());
        assert_eq!(physdev_op(&DOM0, &mut g, &[op, BASE, 0, 0, 0, 0]), Outcome::Return(-22));
        assert_eq!(g.traps.iopl, 1);
        assert_eq!(physdev_op(&DOM0, &mut g, &[op, 8, 0, 0, 0, 0]), Outcome::Return(-14));
        assert_eq!(physdev_op(&DOM0, &mut g, &[999, BASE, 0, 0, 0, 0]), Outcome::Return(-38));
    }
}
