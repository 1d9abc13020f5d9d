// SPDX-License-Identifier: MIT OR Apache-2.0
//! Event channels with the 2-level ABI, and time, for a guest running on vCPU 0.
//!
//! # Events
//!
//! Xen's 2-level ABI keeps the state of every port in the shared-info page:
//! `evtchn_pending` and `evtchn_mask` hold one bit per port (64 words of 64 bits, so
//! ports 0-4095), and each `vcpu_info` has a selector, `evtchn_pending_sel` (one bit per
//! pending word), a flag `evtchn_upcall_pending`, and `evtchn_upcall_mask`, the guest's
//! "interrupts disabled" flag. To raise a port the hypervisor sets its pending bit;
//! if the port was not already pending and is not masked, it sets the selector bit and
//! `evtchn_upcall_pending`; when the vCPU next returns to the guest with
//! `evtchn_upcall_mask` clear, it enters the event callback, setting the mask.
//! [`Bitmaps`] reads and changes those fields with atomic operations (the hypervisor
//! changes them concurrently).
//!
//! The event callback itself (the upcall entry, its frame and the return with
//! `HYPERVISOR_iret`) is [`traps`](crate::traps)'s: it clears `evtchn_upcall_pending`,
//! takes the selector, and hands every pending, unmasked port to the handler set with
//! [`traps::set_event_handler`](crate::traps::set_event_handler) after clearing its
//! pending bit. [`install`] registers the one here, which counts each port
//! ([`count`]) and then calls the guest's own handler, if any ([`set_handler`]).
//!
//! Events start masked. [`enable`] unmasks them and forces delivery of what is already
//! pending with a harmless hypercall, as Linux's `xen_force_evtchn_callback` does: the
//! hypervisor only enters the callback on its way back to the guest. [`disable`] masks
//! them again.
//!
//! # Time
//!
//! Each `vcpu_info` holds a pvclock (`struct vcpu_time_info`): system time in
//! nanoseconds at a TSC stamp, and the factor to scale TSC ticks since then.
//! [`pvclock_ns`] does that arithmetic; [`now`] reads the TSC and vCPU 0's clock
//! consistently (the hypervisor makes `version` odd while it updates the fields).
//! System time is what `set_timer_op` and `VCPUOP_set_singleshot_timer` take.
//! [`wallclock`] is the shared-info wall-clock time at system time 0.
//!
//! ```no_run
//! use guest_shim::events;
//!
//! let bitmaps = events::install().expect("event callback");
//! let xen = guest_shim::hypercalls();
//! let port = xen.evtchn_bind_ipi(0).expect("bind_ipi");
//! xen.evtchn_send(port).expect("send");
//! assert!(bitmaps.is_pending(port)); // events are still masked: nothing delivered
//! events::enable(); // the upcall runs here
//! assert_eq!(events::count(port), 1);
//! events::disable();
//! ```

use core::ptr::{addr_of, addr_of_mut, read_volatile};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use pv_abi::XenError;
use pv_abi::event_channel::EVTCHN_2L_NR_CHANNELS;
use pv_abi::xen::{SharedInfo, VcpuTimeInfo, XenUlong};

use crate::shared_info::SharedInfoPage;
use crate::traps::EventHandler;

pub use pv_abi::event_channel::EvtchnPort;

/// Ports of the 2-level ABI (64 × 64).
pub const NR_PORTS: usize = EVTCHN_2L_NR_CHANNELS;
/// Ports per bitmap word.
pub const BITS_PER_WORD: usize = XenUlong::BITS as usize;
/// Nanoseconds per microsecond.
pub const NS_PER_US: u64 = 1_000;
/// Nanoseconds per millisecond.
pub const NS_PER_MS: u64 = 1_000_000;
/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// The bitmap word of `port`.
pub const fn port_word(port: EvtchnPort) -> usize {
    port as usize / BITS_PER_WORD
}

/// The bit of `port` in its word.
pub const fn port_bit(port: EvtchnPort) -> XenUlong {
    1 << (port as usize % BITS_PER_WORD)
}

/// The event-channel fields of a shared-info page: the 2-level bitmaps and each
/// vCPU's selector, pending flag and mask. Ports must be below [`NR_PORTS`] and vCPUs
/// below 32 (out-of-range values panic).
#[derive(Clone, Copy, Debug)]
pub struct Bitmaps {
    si: *mut SharedInfo,
}

// SAFETY: the page is hypervisor-shared memory, only accessed with atomic or volatile
// operations; any vCPU may use it.
unsafe impl Send for Bitmaps {}
// SAFETY: as above.
unsafe impl Sync for Bitmaps {}

impl Bitmaps {
    /// The fields of the mapped shared-info page.
    pub fn new(page: SharedInfoPage) -> Self {
        Self { si: page.as_ptr() }
    }

    /// The fields of the shared-info page at `si`.
    ///
    /// # Safety
    ///
    /// `si` must point to a `SharedInfo` that stays valid (mapped, 8-byte aligned) for
    /// as long as the value or a copy is used, and that is only accessed atomically or
    /// volatilely by others.
    pub const unsafe fn from_ptr(si: *mut SharedInfo) -> Self {
        Self { si }
    }

    /// The page.
    pub fn as_ptr(&self) -> *mut SharedInfo {
        self.si
    }

    fn pending_word(&self, word: usize) -> &AtomicU64 {
        // SAFETY: `si` is valid for the lifetime of `self` (constructor contract); the
        // word is 8-byte aligned and only accessed atomically.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.si).evtchn_pending[word])) }
    }

    fn mask_word(&self, word: usize) -> &AtomicU64 {
        // SAFETY: as in `pending_word`.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.si).evtchn_mask[word])) }
    }

    fn selector(&self, vcpu: usize) -> &AtomicU64 {
        // SAFETY: as in `pending_word`.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.si).vcpu_info[vcpu].evtchn_pending_sel)) }
    }

    fn upcall_pending_byte(&self, vcpu: usize) -> &AtomicU8 {
        // SAFETY: as in `pending_word`; a byte needs no alignment.
        unsafe { AtomicU8::from_ptr(addr_of_mut!((*self.si).vcpu_info[vcpu].evtchn_upcall_pending)) }
    }

    fn upcall_mask_byte(&self, vcpu: usize) -> &AtomicU8 {
        // SAFETY: as in `upcall_pending_byte`.
        unsafe { AtomicU8::from_ptr(addr_of_mut!((*self.si).vcpu_info[vcpu].evtchn_upcall_mask)) }
    }

    /// Whether `port`'s pending bit is set.
    pub fn is_pending(&self, port: EvtchnPort) -> bool {
        self.pending_word(port_word(port)).load(Ordering::SeqCst) & port_bit(port) != 0
    }

    /// Clears `port`'s pending bit; returns whether it was set.
    pub fn clear_pending(&self, port: EvtchnPort) -> bool {
        let bit = port_bit(port);
        self.pending_word(port_word(port)).fetch_and(!bit, Ordering::SeqCst) & bit != 0
    }

    /// Whether `port` is masked.
    pub fn is_masked(&self, port: EvtchnPort) -> bool {
        self.mask_word(port_word(port)).load(Ordering::SeqCst) & port_bit(port) != 0
    }

    /// Masks `port`; returns whether it already was.
    pub fn mask(&self, port: EvtchnPort) -> bool {
        let bit = port_bit(port);
        self.mask_word(port_word(port)).fetch_or(bit, Ordering::SeqCst) & bit != 0
    }

    /// Clears `port`'s mask bit in memory only; returns whether it was set. An event
    /// that became pending while masked stays undelivered: use `EVTCHNOP_unmask` (or
    /// set the selector and `evtchn_upcall_pending` yourself) to have it delivered.
    pub fn unmask_bit(&self, port: EvtchnPort) -> bool {
        let bit = port_bit(port);
        self.mask_word(port_word(port)).fetch_and(!bit, Ordering::SeqCst) & bit != 0
    }

    /// Unmasks `port` the way a guest does for a port bound to its own vCPU `vcpu`
    /// (Linux's `evtchn_2l_unmask`): clears the mask bit and, if the port is pending,
    /// sets its selector bit and `evtchn_upcall_pending`, so that the next return from
    /// the hypervisor with upcalls unmasked delivers it. Returns whether it did.
    pub fn unmask_local(&self, vcpu: usize, port: EvtchnPort) -> bool {
        self.unmask_bit(port);
        if !self.is_pending(port) {
            return false;
        }
        self.selector(vcpu).fetch_or(1 << port_word(port), Ordering::SeqCst);
        self.set_upcall_pending(vcpu, true);
        true
    }

    /// The pending word `word` (ports `word * 64 ..`).
    pub fn pending_word_value(&self, word: usize) -> XenUlong {
        self.pending_word(word).load(Ordering::SeqCst)
    }

    /// vCPU `vcpu`'s selector, `evtchn_pending_sel`.
    pub fn pending_sel(&self, vcpu: usize) -> XenUlong {
        self.selector(vcpu).load(Ordering::SeqCst)
    }

    /// Whether vCPU `vcpu`'s `evtchn_upcall_pending` is set.
    pub fn upcall_pending(&self, vcpu: usize) -> bool {
        self.upcall_pending_byte(vcpu).load(Ordering::SeqCst) != 0
    }

    /// Sets or clears vCPU `vcpu`'s `evtchn_upcall_pending` (a guest that unmasks a
    /// pending port in memory sets it, as Linux's `evtchn_2l_unmask` does, then forces
    /// a callback); returns the previous value.
    pub fn set_upcall_pending(&self, vcpu: usize, pending: bool) -> bool {
        self.upcall_pending_byte(vcpu).swap(pending as u8, Ordering::SeqCst) != 0
    }

    /// vCPU `vcpu`'s `evtchn_upcall_mask` (non-zero: upcalls masked).
    pub fn upcall_mask(&self, vcpu: usize) -> u8 {
        self.upcall_mask_byte(vcpu).load(Ordering::SeqCst)
    }

    /// Sets vCPU `vcpu`'s `evtchn_upcall_mask`; returns the previous value. Clearing
    /// it does not deliver what is pending until the next return from the hypervisor
    /// (see [`enable`]).
    pub fn set_upcall_mask(&self, vcpu: usize, mask: u8) -> u8 {
        self.upcall_mask_byte(vcpu).swap(mask, Ordering::SeqCst)
    }

    /// The pending ports, masked or not, in increasing order.
    pub fn pending_ports(&self) -> impl Iterator<Item = EvtchnPort> {
        (0..NR_PORTS / BITS_PER_WORD).flat_map(move |w| {
            let mut bits = self.pending_word_value(w);
            core::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros();
                    bits &= bits - 1;
                    (w * BITS_PER_WORD) as EvtchnPort + b
                })
            })
        })
    }

    /// Throws away every pending event of vCPU `vcpu` without delivering it: clears
    /// `evtchn_upcall_pending`, the selector and every pending bit. Returns how many
    /// pending bits were set.
    pub fn discard_pending(&self, vcpu: usize) -> u32 {
        self.upcall_pending_byte(vcpu).store(0, Ordering::SeqCst);
        self.selector(vcpu).store(0, Ordering::SeqCst);
        (0..NR_PORTS / BITS_PER_WORD)
            .map(|w| self.pending_word(w).swap(0, Ordering::SeqCst).count_ones())
            .sum()
    }

    /// vCPU `vcpu`'s pvclock, copied consistently (retried while `version` is odd or
    /// changes during the copy).
    pub fn vcpu_time(&self, vcpu: usize) -> VcpuTimeInfo {
        loop {
            let (copy, after) = self.vcpu_time_raw(vcpu);
            if copy.version % 2 == 0 && copy.version == after {
                return copy;
            }
            core::hint::spin_loop();
        }
    }

    /// A copy of the pvclock and the version read after it.
    fn vcpu_time_raw(&self, vcpu: usize) -> (VcpuTimeInfo, u32) {
        // SAFETY: `si` is valid (constructor contract); `VcpuTimeInfo` is plain data.
        unsafe {
            let field = addr_of!((*self.si).vcpu_info[vcpu].time);
            let before = read_volatile(addr_of!((*field).version));
            let mut copy = read_volatile(field);
            copy.version = before;
            (copy, read_volatile(addr_of!((*field).version)))
        }
    }

    /// System time in ns from vCPU `vcpu`'s pvclock and the TSC, read in one window
    /// of an unchanged, even `version`.
    pub fn system_time(&self, vcpu: usize) -> u64 {
        loop {
            let (t, _) = self.vcpu_time_raw(vcpu);
            let tsc = crate::cpu::rdtsc();
            let (_, after) = self.vcpu_time_raw(vcpu);
            if t.version % 2 == 0 && t.version == after {
                return pvclock_ns(&t, tsc);
            }
            core::hint::spin_loop();
        }
    }

    /// The wall-clock time at system time 0, `(seconds, nanoseconds)`, read while
    /// `wc_version` is even and unchanged.
    pub fn wallclock(&self) -> (u64, u32) {
        loop {
            // SAFETY: `si` is valid (constructor contract); plain integer fields.
            let (v0, sec, hi, nsec, v1) = unsafe {
                let p = self.si;
                let v0 = read_volatile(addr_of!((*p).wc_version));
                let sec = read_volatile(addr_of!((*p).wc_sec));
                let hi = read_volatile(addr_of!((*p).wc_sec_hi));
                let nsec = read_volatile(addr_of!((*p).wc_nsec));
                (v0, sec, hi, nsec, read_volatile(addr_of!((*p).wc_version)))
            };
            if v0 % 2 == 0 && v0 == v1 {
                return ((hi as u64) << 32 | sec as u64, nsec);
            }
            core::hint::spin_loop();
        }
    }
}

/// System time in ns at TSC value `tsc`, from pvclock `t`: `system_time` plus the
/// ticks since `tsc_timestamp`, shifted by `tsc_shift` and multiplied by the 32.32
/// fraction `tsc_to_system_mul`. A `tsc` before the stamp counts as the stamp.
pub const fn pvclock_ns(t: &VcpuTimeInfo, tsc: u64) -> u64 {
    let mut delta = tsc.saturating_sub(t.tsc_timestamp);
    if t.tsc_shift >= 0 {
        delta <<= t.tsc_shift as u32;
    } else {
        delta >>= t.tsc_shift.unsigned_abs() as u32;
    }
    let scaled = (delta as u128 * t.tsc_to_system_mul as u128) >> 32;
    t.system_time.wrapping_add(scaled as u64)
}

// ---- Delivery bookkeeping (plain statics: they work on the host too) ----

/// Deliveries per port since [`install`].
static COUNTS: [AtomicU32; NR_PORTS] = [const { AtomicU32::new(0) }; NR_PORTS];
/// Handler calls that found `evtchn_upcall_mask` clear (Xen sets it before the
/// callback, so this stays 0).
static UNMASKED_CALLS: AtomicU32 = AtomicU32::new(0);
/// The guest's handler, called after counting.
static HANDLER: AtomicUsize = AtomicUsize::new(0);
/// The shared-info page, once [`install`] ran.
static SHARED: AtomicPtr<SharedInfo> = AtomicPtr::new(core::ptr::null_mut());

/// The handler [`install`] registers with [`traps`](crate::traps): count, check the
/// mask, call the guest's handler.
fn on_event(port: EvtchnPort) {
    if let Some(c) = COUNTS.get(port as usize) {
        c.fetch_add(1, Ordering::SeqCst);
    }
    let si = SHARED.load(Ordering::SeqCst);
    if !si.is_null() {
        // SAFETY: `install` stored the mapped shared-info page, mapped for good.
        let mask = unsafe { read_volatile(addr_of!((*si).vcpu_info[0].evtchn_upcall_mask)) };
        if mask == 0 {
            UNMASKED_CALLS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let h = HANDLER.load(Ordering::SeqCst);
    if h != 0 {
        // SAFETY: non-zero values are only stored from an `EventHandler` (set_handler).
        let h = unsafe { core::mem::transmute::<usize, EventHandler>(h) };
        h(port);
    }
}

/// Installs the trap table and event callback ([`traps::install`](crate::traps::install)),
/// registers this module's event handler and returns the shared-info page's event
/// fields. Events stay masked (see [`enable`]). Calling it again is harmless.
pub fn install() -> Result<Bitmaps, XenError> {
    crate::traps::install()?;
    let page = crate::shared_info::map()?;
    SHARED.store(page.as_ptr(), Ordering::SeqCst);
    crate::traps::set_event_handler(Some(on_event));
    Ok(Bitmaps::new(page))
}

/// Sets (`Some`) or clears the guest's event handler, called in the event callback
/// for each delivered port after it is counted; returns the previous one. It runs with
/// events masked, on the interrupted stack: it must not take locks the interrupted
/// code may hold (the console's, for one: don't print).
pub fn set_handler(handler: Option<EventHandler>) -> Option<EventHandler> {
    let new = handler.map_or(0, |h| h as usize);
    let old = HANDLER.swap(new, Ordering::SeqCst);
    // SAFETY: non-zero values are only stored from an `EventHandler`.
    (old != 0).then(|| unsafe { core::mem::transmute::<usize, EventHandler>(old) })
}

/// How many times `port` was delivered to the event callback since [`install`].
pub fn count(port: EvtchnPort) -> u32 {
    COUNTS.get(port as usize).map_or(0, |c| c.load(Ordering::SeqCst))
}

/// How many event upcalls (entries into the event callback) there were since boot.
pub fn upcalls() -> u64 {
    crate::traps::event_upcalls()
}

/// How many deliveries found `evtchn_upcall_mask` clear inside the callback (the
/// hypervisor must set it when it enters the callback: expect 0).
pub fn unmasked_deliveries() -> u32 {
    UNMASKED_CALLS.load(Ordering::SeqCst)
}

/// The event fields of the shared-info page (mapping it if needed).
pub fn bitmaps() -> Result<Bitmaps, XenError> {
    crate::shared_info::map().map(Bitmaps::new)
}

/// Makes the hypervisor deliver pending events now, if events are unmasked: any
/// hypercall does, on its way back; this one is `xen_version(XENVER_version)`.
pub fn force_callback() {
    let _ = crate::hypercalls().xen_version();
}

/// Unmasks event upcalls on vCPU 0 and delivers what is pending ([`force_callback`]).
/// Returns whether they were masked before.
pub fn enable() -> bool {
    let was = match bitmaps() {
        Ok(b) => b.set_upcall_mask(0, 0) != 0,
        Err(_) => return false,
    };
    force_callback();
    was
}

/// Masks event upcalls on vCPU 0; returns whether they were unmasked before.
pub fn disable() -> bool {
    bitmaps().is_ok_and(|b| b.set_upcall_mask(0, 1) == 0)
}

/// vCPU 0's system time in ns (see [`Bitmaps::system_time`]).
pub fn now() -> u64 {
    match bitmaps() {
        Ok(b) => b.system_time(0),
        Err(e) => panic!("events::now: cannot map shared_info: {e}"),
    }
}

/// The wall-clock time at system time 0 (see [`Bitmaps::wallclock`]).
pub fn wallclock() -> (u64, u32) {
    match bitmaps() {
        Ok(b) => b.wallclock(),
        Err(e) => panic!("events::wallclock: cannot map shared_info: {e}"),
    }
}

/// Spins until system time reaches `deadline` (ns).
pub fn spin_until(deadline: u64) {
    while now() < deadline {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    fn page() -> (Box<SharedInfo>, Bitmaps) {
        let mut si = Box::new(SharedInfo::default());
        // SAFETY: the box outlives every use in the test and is only accessed through
        // the `Bitmaps`.
        let b = unsafe { Bitmaps::from_ptr(&mut *si) };
        (si, b)
    }

    #[test]
    fn port_words_and_bits() {
        assert_eq!((port_word(0), port_bit(0)), (0, 1));
        assert_eq!((port_word(63), port_bit(63)), (0, 1 << 63));
        assert_eq!((port_word(64), port_bit(64)), (1, 1));
        assert_eq!((port_word(4095), port_bit(4095)), (63, 1 << 63));
    }

    #[test]
    fn pending_and_mask_bits() {
        let (_si, b) = page();
        assert!(!b.is_pending(70));
        b.pending_word(1).fetch_or(port_bit(70), Ordering::SeqCst);
        assert!(b.is_pending(70));
        assert_eq!(b.pending_word_value(1), 1 << 6);
        assert!(b.clear_pending(70));
        assert!(!b.clear_pending(70));
        assert!(!b.mask(5));
        assert!(b.mask(5));
        assert!(b.is_masked(5));
        assert!(b.unmask_bit(5));
        assert!(!b.is_masked(5));
        // A local unmask of a pending port raises the selector and upcall flag.
        b.mask(70);
        b.pending_word(1).fetch_or(port_bit(70), Ordering::SeqCst);
        assert!(b.unmask_local(0, 70));
        assert_eq!((b.pending_sel(0), b.upcall_pending(0)), (0b10, true));
        assert!(!b.unmask_local(0, 71));
    }

    #[test]
    fn pending_ports_and_discard() {
        let (_si, b) = page();
        for p in [1, 64, 130, 4095] {
            b.pending_word(port_word(p)).fetch_or(port_bit(p), Ordering::SeqCst);
        }
        b.selector(0).store(0b101, Ordering::SeqCst);
        assert!(!b.set_upcall_pending(0, true));
        assert!(b.upcall_pending(0));
        assert_eq!(b.pending_ports().collect::<Vec<_>>(), [1, 64, 130, 4095]);
        assert_eq!(b.discard_pending(0), 4);
        assert_eq!(b.pending_ports().count(), 0);
        assert_eq!((b.pending_sel(0), b.upcall_pending(0)), (0, false));
    }

    #[test]
    fn upcall_mask_swaps() {
        let (_si, b) = page();
        assert_eq!(b.set_upcall_mask(0, 1), 0);
        assert_eq!(b.upcall_mask(0), 1);
        assert_eq!(b.set_upcall_mask(0, 0), 1);
    }

    #[test]
    fn pvclock_scaling() {
        let mut t = VcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5_000,
            // 0.5 ns per tick after the shift.
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 0,
            ..VcpuTimeInfo::default()
        };
        assert_eq!(pvclock_ns(&t, 1000), 5_000);
        assert_eq!(pvclock_ns(&t, 3000), 6_000);
        // Before the stamp: the stamp's time.
        assert_eq!(pvclock_ns(&t, 10), 5_000);
        t.tsc_shift = 1;
        assert_eq!(pvclock_ns(&t, 3000), 7_000);
        t.tsc_shift = -1;
        assert_eq!(pvclock_ns(&t, 3000), 5_500);
        // A 2 GHz TSC: shift -1, then a multiplier just below 1.0 (2^32 - 1): two
        // billion ticks are just under 1e9 ns.
        let ghz2 = VcpuTimeInfo { tsc_to_system_mul: u32::MAX, tsc_shift: -1, ..VcpuTimeInfo::default() };
        let ns = pvclock_ns(&ghz2, 2_000_000_000);
        assert!((999_999_990..=1_000_000_000).contains(&ns), "{ns}");
        // No overflow with a large delta and multiplier.
        let big = VcpuTimeInfo { tsc_to_system_mul: u32::MAX, tsc_shift: 0, ..VcpuTimeInfo::default() };
        assert!(pvclock_ns(&big, u64::MAX) > u64::MAX / 2);
    }

    #[test]
    fn system_time_and_wallclock_from_a_page() {
        let mut si = Box::new(SharedInfo::default());
        si.vcpu_info[0].time = VcpuTimeInfo {
            version: 2,
            tsc_timestamp: 0,
            system_time: 123,
            tsc_to_system_mul: 1,
            tsc_shift: 0,
            ..VcpuTimeInfo::default()
        };
        si.wc_version = 4;
        si.wc_sec = 1_700_000_000;
        si.wc_sec_hi = 0;
        si.wc_nsec = 7;
        // SAFETY: as in `page`.
        let b = unsafe { Bitmaps::from_ptr(&mut *si) };
        // The host TSC times 2^-32 ns: a little above 123.
        assert!(b.system_time(0) >= 123);
        assert_eq!(b.wallclock(), (1_700_000_000, 7));
        assert_eq!(b.vcpu_time(0).system_time, 123);
    }

    #[test]
    fn counting_handler() {
        static SEEN: AtomicU32 = AtomicU32::new(0);
        fn h(port: EvtchnPort) {
            SEEN.store(port, Ordering::SeqCst);
        }
        assert!(set_handler(Some(h)).is_none());
        let before = count(9);
        on_event(9);
        on_event(NR_PORTS as EvtchnPort); // out of range: not counted, no panic
        assert_eq!(count(9), before + 1);
        assert_eq!(count(NR_PORTS as EvtchnPort), 0);
        assert_eq!(SEEN.load(Ordering::SeqCst), NR_PORTS as u32);
        assert!(set_handler(None).is_some());
    }
}
