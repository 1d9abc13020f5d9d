// SPDX-License-Identifier: MIT OR Apache-2.0
//! `console_io`: dom0 writes to and reads from the hypervisor's console.

use super::{Args, Caller, Outcome};
use crate::hal::Guest;
use pv_abi::Errno;
use pv_abi::xen::{CONSOLEIO_READ, CONSOLEIO_WRITE};

const CHUNK: usize = 256;

pub fn console_io(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let (cmd, count, buffer) = (args[0], args[1], args[2]);
    match super::int(cmd) {
        Ok(CONSOLEIO_WRITE) => {
            // The count is an int in Xen's ABI; copy in chunks so a huge
            // count cannot make the hypervisor allocate.
            let count = (count as u32) as usize;
            let mut buf = [0u8; CHUNK];
            let mut done = 0;
            while done < count {
                let n = CHUNK.min(count - done);
                if let Err(f) = guest.copy_from(buffer.wrapping_add(done as u64), &mut buf[..n]) {
                    return Outcome::from(Err::<i64, Errno>(f.into()));
                }
                guest.console_write(&buf[..n]);
                done += n;
            }
            Outcome::Return(0)
        }
        // The count is an int: above INT_MAX it is -E2BIG, as in Xen.
        Ok(CONSOLEIO_READ) if count as u32 > i32::MAX as u32 => Outcome::Return(Errno::E2BIG.to_ret()),
        // Serial input, as much as is buffered and fits (VIRQ_CONSOLE says
        // when there is some). With none, the buffer is not touched.
        Ok(CONSOLEIO_READ) => {
            let mut buf = [0u8; CHUNK];
            let n = guest.console_read(&mut buf[..CHUNK.min(count as u32 as usize)]);
            if n > 0 && guest.copy_to(buffer, &buf[..n]).is_err() {
                return Outcome::Return(Errno::EFAULT.to_ret());
            }
            Outcome::Return(n as i64)
        }
        _ => Outcome::Return(Errno::ENOSYS.to_ret()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0};

    #[test]
    fn write_copies_and_faults_cleanly() {
        let mut g = FakeGuest::new(BASE, 8192);
        g.mem[..600].fill(b'x');
        let w = u64::from(CONSOLEIO_WRITE);
        assert_eq!(console_io(&DOM0, &mut g, &[w, 600, BASE, 0, 0, 0]), Outcome::Return(0));
        assert_eq!(g.console.len(), 600);
        assert_eq!(console_io(&DOM0, &mut g, &[w, 0, 0, 0, 0, 0]), Outcome::Return(0));
        assert_eq!(console_io(&DOM0, &mut g, &[w, 16, 0x1000, 0, 0, 0]), Outcome::Return(-14));
        // Runs off the end of the guest's memory part way.
        assert_eq!(console_io(&DOM0, &mut g, &[w, 9000, BASE, 0, 0, 0]), Outcome::Return(-14));
        assert_eq!(console_io(&DOM0, &mut g, &[77, 1, BASE, 0, 0, 0]), Outcome::Return(-38));
    }

    #[test]
    fn read_takes_what_is_buffered() {
        let mut g = FakeGuest::new(BASE, 4096);
        let r = u64::from(CONSOLEIO_READ);
        // Nothing buffered: 0, and a bad buffer is not touched.
        assert_eq!(console_io(&DOM0, &mut g, &[r, 16, 0x1000, 0, 0, 0]), Outcome::Return(0));
        g.input.extend_from_slice(b"hello\n");
        assert_eq!(console_io(&DOM0, &mut g, &[r, 3, BASE, 0, 0, 0]), Outcome::Return(3));
        assert_eq!(&g.mem[..3], b"hel");
        assert_eq!(console_io(&DOM0, &mut g, &[r, 100, BASE, 0, 0, 0]), Outcome::Return(3));
        assert_eq!(&g.mem[..3], b"lo\n");
        assert_eq!(console_io(&DOM0, &mut g, &[r, 0x8000_0000, BASE, 0, 0, 0]), Outcome::Return(-7));
    }
}
