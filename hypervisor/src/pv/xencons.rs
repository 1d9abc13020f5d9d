// SPDX-License-Identifier: MIT OR Apache-2.0
//! The hypervisor's end of a domU's PV console ring (`xencons_interface`,
//! the page in `start_info.console.domU`): it takes what the guest wrote to
//! the output ring and feeds serial input into the input ring. The indices
//! live in guest memory: a guest may write anything there, so every value
//! read is checked, and a nonsensical one costs the guest its output, never
//! the hypervisor anything.

use crate::hal::FrameMemory;
use crate::mm::frame::Mfn;
use core::mem::offset_of;
use pv_abi::io::console::XenconsInterface as Ring;

const IN: usize = offset_of!(Ring, in_);
const OUT: usize = offset_of!(Ring, out);
const IN_CONS: usize = offset_of!(Ring, in_cons);
const IN_PROD: usize = offset_of!(Ring, in_prod);
const OUT_CONS: usize = offset_of!(Ring, out_cons);
const OUT_PROD: usize = offset_of!(Ring, out_prod);
const OUT_SIZE: u32 = 2048;
const IN_SIZE: u32 = 1024;

fn read_u32(mem: &impl FrameMemory, ring: Mfn, at: usize) -> u32 {
    let mut b = [0u8; 4];
    mem.read(ring, at, &mut b);
    u32::from_le_bytes(b)
}

fn write_u32(mem: &mut impl FrameMemory, ring: Mfn, at: usize, v: u32) {
    mem.write(ring, at, &v.to_le_bytes());
}

/// Takes every byte the guest produced on the output ring, in order, into
/// `sink`, and frees the ring space. A producer index more than a ring ahead
/// of the consumer is a corrupt ring: its contents are dropped (the consumer
/// jumps to the producer). Returns how many bytes were taken.
pub fn drain_out(mem: &mut impl FrameMemory, ring: Mfn, sink: &mut dyn FnMut(u8)) -> usize {
    let cons = read_u32(mem, ring, OUT_CONS);
    let prod = read_u32(mem, ring, OUT_PROD);
    let n = prod.wrapping_sub(cons);
    if n > OUT_SIZE {
        write_u32(mem, ring, OUT_CONS, prod);
        return 0;
    }
    let mut byte = [0u8];
    for i in 0..n {
        mem.read(ring, OUT + Ring::mask_out(cons.wrapping_add(i)), &mut byte);
        sink(byte[0]);
    }
    write_u32(mem, ring, OUT_CONS, prod);
    n as usize
}

/// Puts as much of `bytes` as fits into the input ring; returns how many.
/// A corrupt ring (the guest's consumer index behind the producer by more
/// than a ring, or ahead of it) takes nothing.
pub fn push_in(mem: &mut impl FrameMemory, ring: Mfn, bytes: &[u8]) -> usize {
    let cons = read_u32(mem, ring, IN_CONS);
    let prod = read_u32(mem, ring, IN_PROD);
    let used = prod.wrapping_sub(cons);
    if used > IN_SIZE {
        return 0;
    }
    let n = bytes.len().min((IN_SIZE - used) as usize);
    for (i, &b) in bytes[..n].iter().enumerate() {
        mem.write(ring, IN + Ring::mask_in(prod.wrapping_add(i as u32)), &[b]);
    }
    write_u32(mem, ring, IN_PROD, prod.wrapping_add(n as u32));
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeMemory;
    use proptest::prelude::*;

    const R: Mfn = Mfn(7);

    fn guest_write(mem: &mut FakeMemory, data: &[u8]) {
        let prod = read_u32(mem, R, OUT_PROD);
        for (i, &b) in data.iter().enumerate() {
            mem.write(R, OUT + Ring::mask_out(prod.wrapping_add(i as u32)), &[b]);
        }
        write_u32(mem, R, OUT_PROD, prod.wrapping_add(data.len() as u32));
    }

    fn ring_at(start: u32) -> FakeMemory {
        let mut mem = FakeMemory::default();
        mem.zero(R);
        for at in [IN_CONS, IN_PROD, OUT_CONS, OUT_PROD] {
            write_u32(&mut mem, R, at, start);
        }
        mem
    }

    #[test]
    fn output_in_order_across_the_wrap() {
        let mut mem = ring_at(u32::MAX - 5);
        guest_write(&mut mem, b"hello, ");
        guest_write(&mut mem, b"world\n");
        let mut got = std::vec::Vec::new();
        assert_eq!(drain_out(&mut mem, R, &mut |b| got.push(b)), 13);
        assert_eq!(got, b"hello, world\n");
        assert_eq!(drain_out(&mut mem, R, &mut |b| got.push(b)), 0);
        assert_eq!(read_u32(&mem, R, OUT_CONS), read_u32(&mem, R, OUT_PROD));
    }

    #[test]
    fn corrupt_output_is_dropped() {
        let mut mem = ring_at(0);
        write_u32(&mut mem, R, OUT_PROD, OUT_SIZE + 1);
        let mut n = 0;
        assert_eq!(drain_out(&mut mem, R, &mut |_| n += 1), 0);
        assert_eq!(n, 0);
        assert_eq!(read_u32(&mem, R, OUT_CONS), OUT_SIZE + 1);
        // A consumer ahead of the producer is as corrupt.
        write_u32(&mut mem, R, OUT_CONS, 100);
        write_u32(&mut mem, R, OUT_PROD, 99);
        assert_eq!(drain_out(&mut mem, R, &mut |_| n += 1), 0);
    }

    #[test]
    fn input_fills_to_the_ring_size() {
        let mut mem = ring_at(u32::MAX - 1);
        assert_eq!(push_in(&mut mem, R, &[b'x'; 1000]), 1000);
        assert_eq!(push_in(&mut mem, R, &[b'y'; 100]), 24);
        assert_eq!(push_in(&mut mem, R, b"z"), 0);
        let prod = read_u32(&mem, R, IN_PROD);
        write_u32(&mut mem, R, IN_CONS, prod.wrapping_sub(2000)); // nonsense: behind by more than a ring
        assert_eq!(push_in(&mut mem, R, b"z"), 0);
        write_u32(&mut mem, R, IN_CONS, prod.wrapping_add(1)); // nonsense: ahead of the producer
        assert_eq!(push_in(&mut mem, R, b"z"), 0);
    }

    proptest! {
        /// Whatever the guest leaves in the indices, draining takes at most a
        /// ring and leaves the ring empty.
        #[test]
        fn any_indices_are_safe(cons in any::<u32>(), prod in any::<u32>(), icons in any::<u32>(), iprod in any::<u32>()) {
            let mut mem = ring_at(0);
            write_u32(&mut mem, R, OUT_CONS, cons);
            write_u32(&mut mem, R, OUT_PROD, prod);
            write_u32(&mut mem, R, IN_CONS, icons);
            write_u32(&mut mem, R, IN_PROD, iprod);
            let n = drain_out(&mut mem, R, &mut |_| {});
            prop_assert!(n <= OUT_SIZE as usize);
            prop_assert_eq!(read_u32(&mem, R, OUT_CONS), prod);
            let m = push_in(&mut mem, R, &[0u8; 2000]);
            prop_assert!(m <= IN_SIZE as usize);
            prop_assert!(read_u32(&mem, R, IN_PROD).wrapping_sub(icons) <= IN_SIZE || m == 0);
        }
    }
}
