// SPDX-License-Identifier: MIT OR Apache-2.0
//! Ending the run: QEMU's isa-debug-exit device at port 0xf4 (DESIGN 4.6),
//! then a halt when there is no such device.

use ::x86_64::instructions::port::Port;

pub fn exit(code: u8) -> ! {
    // SAFETY: port 0xf4 is QEMU's debug-exit device; on a machine without it
    // the write goes nowhere.
    unsafe { Port::<u32>::new(0xf4).write(u32::from(code)) };
    super::cpu::halt_forever()
}
