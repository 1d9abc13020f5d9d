// SPDX-License-Identifier: MIT OR Apache-2.0
//! The PV console ring of an unprivileged domain (`xen/include/public/io/console.h`).
//!
//! A domU's console is one page of its own memory, `start_info.console.domU.mfn`, laid
//! out as [`XenconsInterface`]: an output ring (`out`, 2048 bytes) that the guest
//! fills and the console backend drains, and an input ring (`in`, 1024 bytes) the other
//! way round. Each ring has a producer and a consumer index that run freely (they wrap
//! at 2^32, never at the ring size) and are masked by the ring size to index it, so
//! `prod - cons` is the number of bytes waiting. The side that moves an index is the
//! only writer of it; the event channel `console.domU.evtchn` tells the backend there is
//! something to do (new output, or room made in `in`).
//!
//! Ordering, as for every Xen shared ring: a producer writes the bytes, then a release
//! fence, then the new producer index (so the backend never sees the index ahead of the
//! data); a consumer reads the producer index with acquire ordering before the bytes,
//! and publishes its consumer index after a release fence (so the producer never
//! overwrites bytes that are still being read). x86 keeps stores in order anyway; the
//! fences are what stop the compiler from reordering.
//!
//! [`Ring`] is the guest's view of the page. Its `*_with` methods take the notification
//! and the wait as closures so the ring logic has host unit tests; [`Ring::write`] and
//! [`Ring::read`] plug in `EVTCHNOP_send` and `SCHEDOP_yield`.
//!
//! ```no_run
//! use guest_shim::console::Ring;
//! use guest_shim::pv_abi::io::console::XenconsInterface;
//!
//! // What `console::init` does for a domU, given the page's address and the port.
//! fn hello(page: *mut XenconsInterface, port: u32) {
//!     // SAFETY: `page` is this domain's console page, mapped writable for good.
//!     let ring = unsafe { Ring::new(page, port) };
//!     ring.write(b"hello from a domU\n"); // notifies the backend
//!     let mut buf = [0u8; 64];
//!     let n = ring.read(&mut buf); // input that has arrived, if any
//!     let _ = &buf[..n];
//! }
//! ```

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU32, Ordering, fence};

use pv_abi::event_channel::EvtchnPort;
use pv_abi::io::console::{XenconsInterface, XenconsRingIdx};

/// Size of the output ring in bytes.
pub const OUT_SIZE: u32 = 2048;
/// Size of the input ring in bytes.
pub const IN_SIZE: u32 = 1024;

/// A domain's console page and the event channel that goes with it.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    page: *mut XenconsInterface,
    port: EvtchnPort,
}

// SAFETY: the page is shared with the backend and only accessed with atomic or
// volatile operations; the constructor's contract makes it valid for good.
unsafe impl Send for Ring {}
// SAFETY: as above. One writer and one reader of the guest side at a time is the
// caller's business (the console calls `write` under its lock).
unsafe impl Sync for Ring {}

impl Ring {
    /// The ring at `page`, whose backend is signalled on `port`.
    ///
    /// # Safety
    ///
    /// `page` must point to a console page (4-byte aligned, page-sized), mapped
    /// writable for as long as the value or a copy is used, that others only access
    /// as a console ring (the backend).
    pub const unsafe fn new(page: *mut XenconsInterface, port: EvtchnPort) -> Self {
        Self { page, port }
    }

    /// The page.
    pub fn page(&self) -> *mut XenconsInterface {
        self.page
    }

    /// The event channel of the backend.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    fn index(&self, field: *mut XenconsRingIdx) -> &AtomicU32 {
        // SAFETY: `field` points into the page, valid for the lifetime of `self`
        // (constructor contract); the indexes are 4-byte aligned and shared with the
        // backend, so they are only accessed atomically.
        unsafe { AtomicU32::from_ptr(field) }
    }

    fn out_cons(&self) -> &AtomicU32 {
        // SAFETY: the page is valid (constructor contract); no reference is made.
        self.index(unsafe { addr_of_mut!((*self.page).out_cons) })
    }

    fn out_prod(&self) -> &AtomicU32 {
        // SAFETY: as in `out_cons`.
        self.index(unsafe { addr_of_mut!((*self.page).out_prod) })
    }

    fn in_cons(&self) -> &AtomicU32 {
        // SAFETY: as in `out_cons`.
        self.index(unsafe { addr_of_mut!((*self.page).in_cons) })
    }

    fn in_prod(&self) -> &AtomicU32 {
        // SAFETY: as in `out_cons`.
        self.index(unsafe { addr_of_mut!((*self.page).in_prod) })
    }

    /// Bytes of output the backend has not consumed yet. More than [`OUT_SIZE`] means
    /// the indexes are broken (a backend bug).
    pub fn out_pending(&self) -> u32 {
        let cons = self.out_cons().load(Ordering::Acquire);
        self.out_prod().load(Ordering::Relaxed).wrapping_sub(cons)
    }

    /// Room in the output ring now (0 also when the indexes are broken: a broken
    /// backend then looks like one that stopped consuming).
    pub fn out_free(&self) -> u32 {
        OUT_SIZE.saturating_sub(self.out_pending())
    }

    /// Input bytes waiting to be read (at most [`IN_SIZE`], whatever the backend's
    /// indexes say).
    pub fn in_avail(&self) -> u32 {
        let prod = self.in_prod().load(Ordering::Acquire);
        prod.wrapping_sub(self.in_cons().load(Ordering::Relaxed)).min(IN_SIZE)
    }

    /// Copies as much of `bytes` as fits into the output ring and publishes it;
    /// returns how many bytes that was (0 when the ring is full). Does not notify.
    pub fn try_write(&self, bytes: &[u8]) -> usize {
        // Acquire: the backend has finished reading the bytes it says it consumed.
        let cons = self.out_cons().load(Ordering::Acquire);
        // We are the only writer of out_prod.
        let prod = self.out_prod().load(Ordering::Relaxed);
        let free = OUT_SIZE.saturating_sub(prod.wrapping_sub(cons));
        let n = bytes.len().min(free as usize);
        // SAFETY: the page is valid (constructor contract); the byte array is not
        // referenced, only written through a raw pointer.
        let out = unsafe { addr_of_mut!((*self.page).out) }.cast::<u8>();
        for (i, &b) in bytes[..n].iter().enumerate() {
            let at = XenconsInterface::mask_out(prod.wrapping_add(i as u32));
            // SAFETY: `at` < 2048 (masked), inside `out`; these bytes are free, the
            // backend does not read past out_prod.
            unsafe { out.add(at).write_volatile(b) };
        }
        if n > 0 {
            // The bytes before the index that makes them visible.
            fence(Ordering::Release);
            self.out_prod().store(prod.wrapping_add(n as u32), Ordering::Relaxed);
        }
        n
    }

    /// Writes all of `bytes`: after each part that fits, `notify` (the backend has
    /// work); while the ring is full, `wait` (for the backend to make room), then
    /// tries again. Returns when everything is in the ring.
    pub fn write_with(&self, bytes: &[u8], notify: &mut dyn FnMut(), wait: &mut dyn FnMut()) {
        let mut rest = bytes;
        loop {
            let n = self.try_write(rest);
            rest = &rest[n..];
            if n > 0 {
                notify();
            }
            if rest.is_empty() {
                return;
            }
            wait();
        }
    }

    /// Copies waiting input into `buf` and consumes it; returns how many bytes (0:
    /// none waiting). Does not notify.
    pub fn read_with(&self, buf: &mut [u8]) -> usize {
        // Acquire: the bytes before in_prod are written.
        let prod = self.in_prod().load(Ordering::Acquire);
        // We are the only writer of in_cons.
        let cons = self.in_cons().load(Ordering::Relaxed);
        let n = buf.len().min(prod.wrapping_sub(cons).min(IN_SIZE) as usize);
        // SAFETY: as in `try_write`, for `in`.
        let input = unsafe { addr_of_mut!((*self.page).in_) }.cast::<u8>();
        for (i, slot) in buf[..n].iter_mut().enumerate() {
            let at = XenconsInterface::mask_in(cons.wrapping_add(i as u32));
            // SAFETY: `at` < 1024 (masked), inside `in`; the backend wrote these bytes
            // before moving in_prod past them.
            *slot = unsafe { input.add(at).read_volatile() };
        }
        if n > 0 {
            // The reads before the index that lets the backend reuse the bytes.
            fence(Ordering::Release);
            self.in_cons().store(cons.wrapping_add(n as u32), Ordering::Relaxed);
        }
        n
    }

    /// Writes all of `bytes`, signalling the backend with `EVTCHNOP_send` and
    /// yielding the CPU (`SCHEDOP_yield`) while the ring is full. Hypercall errors are
    /// ignored: there is no other place to report them.
    pub fn write(&self, bytes: &[u8]) {
        let xen = crate::hypercalls();
        let mut notify = || {
            let _ = xen.evtchn_send(self.port);
        };
        let mut wait = || {
            let _ = xen.sched_yield();
        };
        self.write_with(bytes, &mut notify, &mut wait);
    }

    /// Reads waiting input (without waiting for more) and, if it took any, tells the
    /// backend there is room. Returns the number of bytes.
    pub fn read(&self, buf: &mut [u8]) -> usize {
        let n = self.read_with(buf);
        if n > 0 {
            let _ = crate::hypercalls().evtchn_send(self.port);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    /// A zeroed console page on the heap and a ring over it; every access goes through
    /// the one raw pointer.
    struct Fixture {
        raw: *mut XenconsInterface,
        ring: Ring,
    }

    impl Fixture {
        fn new() -> Self {
            let raw = Box::into_raw(Box::new(XenconsInterface::default()));
            // SAFETY: the allocation is valid and aligned until `drop`.
            Self { raw, ring: unsafe { Ring::new(raw, 5) } }
        }

        /// The page, as the backend sees it.
        #[allow(clippy::mut_from_ref)]
        fn page(&self) -> &mut XenconsInterface {
            // SAFETY: valid until `drop`; tests are single-threaded and take a fresh
            // reference for each access.
            unsafe { &mut *self.raw }
        }

        /// What a backend does: takes everything from `out`.
        fn drain(&self) -> Vec<u8> {
            let page = self.page();
            let mut got = Vec::new();
            while page.out_cons != page.out_prod {
                got.push(page.out[XenconsInterface::mask_out(page.out_cons)]);
                page.out_cons = page.out_cons.wrapping_add(1);
            }
            got
        }

        /// What a backend does: puts `bytes` into `in`.
        fn feed(&self, bytes: &[u8]) {
            let page = self.page();
            for &b in bytes {
                page.in_[XenconsInterface::mask_in(page.in_prod)] = b;
                page.in_prod = page.in_prod.wrapping_add(1);
            }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            // SAFETY: from `Box::into_raw` in `new`, freed once.
            drop(unsafe { Box::from_raw(self.raw) });
        }
    }

    #[test]
    fn write_notifies_and_publishes() {
        let f = Fixture::new();
        let r = f.ring;
        assert_eq!(r.port(), 5);
        let mut notes = 0;
        r.write_with(b"RESULT a PASS\n", &mut || notes += 1, &mut || panic!("ring is not full"));
        assert_eq!(notes, 1);
        assert_eq!(r.out_pending(), 14);
        assert_eq!(r.out_free(), OUT_SIZE - 14);
        assert_eq!(f.drain(), b"RESULT a PASS\n");
        assert_eq!(r.out_pending(), 0);
    }

    #[test]
    fn full_ring_waits_for_the_backend() {
        let f = Fixture::new();
        let text: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut seen = Vec::new();
        let (mut notes, mut waits) = (0, 0);
        // The backend runs only when the guest waits: 2048, then 2048, then the rest.
        f.ring.write_with(&text, &mut || notes += 1, &mut || {
            waits += 1;
            seen.extend(f.drain());
        });
        seen.extend(f.drain());
        assert_eq!(seen, text);
        assert_eq!((notes, waits), (3, 2));
    }

    #[test]
    fn indexes_wrap_at_u32() {
        let f = Fixture::new();
        f.page().out_prod = u32::MAX - 3;
        f.page().out_cons = u32::MAX - 3;
        assert_eq!(f.ring.try_write(b"0123456789"), 10);
        assert_eq!(f.page().out_prod, 6);
        assert_eq!(f.ring.out_pending(), 10);
        // The bytes straddle the end of the array: 2044..2048 then 0..6.
        assert_eq!(&f.page().out[2044..2048], b"0123");
        assert_eq!(&f.page().out[..6], b"456789");
        assert_eq!(f.drain(), b"0123456789");
    }

    #[test]
    fn partial_write_when_nearly_full() {
        let f = Fixture::new();
        assert_eq!(f.ring.try_write(&[b'x'; 2040]), 2040);
        assert_eq!(f.ring.try_write(b"0123456789"), 8);
        assert_eq!(f.ring.try_write(b"89"), 0);
        assert_eq!(f.ring.out_free(), 0);
    }

    #[test]
    fn broken_indexes_look_full() {
        let f = Fixture::new();
        f.page().out_prod = 5000;
        assert_eq!(f.ring.out_free(), 0);
        assert_eq!(f.ring.try_write(b"x"), 0);
        f.page().in_prod = 5000;
        assert_eq!(f.ring.in_avail(), IN_SIZE);
    }

    #[test]
    fn read_consumes_input() {
        let f = Fixture::new();
        assert_eq!(f.ring.read_with(&mut [0; 8]), 0);
        f.feed(b"hello, domU\n");
        assert_eq!(f.ring.in_avail(), 12);
        let mut buf = [0u8; 5];
        assert_eq!(f.ring.read_with(&mut buf), 5);
        assert_eq!(&buf, b"hello");
        let mut rest = [0u8; 64];
        assert_eq!(f.ring.read_with(&mut rest), 7);
        assert_eq!(&rest[..7], b", domU\n");
        assert_eq!((f.page().in_cons, f.ring.in_avail()), (12, 0));
    }

    #[test]
    fn input_wraps() {
        let f = Fixture::new();
        f.page().in_prod = 1020;
        f.page().in_cons = 1020;
        f.feed(b"abcdefgh");
        let mut buf = [0u8; 16];
        assert_eq!(f.ring.read_with(&mut buf), 8);
        assert_eq!(&buf[..8], b"abcdefgh");
        assert_eq!(&f.page().in_[1020..], b"abcd");
        assert_eq!(f.page().in_cons, 1028);
    }
}
