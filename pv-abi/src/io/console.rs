// SPDX-License-Identifier: MIT OR Apache-2.0
//! The PV console ring page. Mirrors `xen/include/public/io/console.h`.
//!
//! A domU's console is one page (`start_info.console.domU.mfn`) holding an input and an
//! output byte ring; the producer advances `*_prod`, the consumer `*_cons`, both free
//! running and masked by the ring size, with an event on `console.domU.evtchn`.

/// A console ring index (`XENCONS_RING_IDX`).
pub type XenconsRingIdx = u32;

xen_struct! {
    /// The console page (`struct xencons_interface`).
    pub struct XenconsInterface: "struct xencons_interface" {
        /// Input ring (backend to guest).
        pub in_: [u8; 1024] as "in",
        /// Output ring (guest to backend).
        pub out: [u8; 2048],
        /// Input consumer index (guest).
        pub in_cons: XenconsRingIdx,
        /// Input producer index (backend).
        pub in_prod: XenconsRingIdx,
        /// Output consumer index (backend).
        pub out_cons: XenconsRingIdx,
        /// Output producer index (guest).
        pub out_prod: XenconsRingIdx,
    }
}

impl XenconsInterface {
    /// Index into `in_` for free-running index `idx` (`MASK_XENCONS_IDX`).
    pub const fn mask_in(idx: XenconsRingIdx) -> usize {
        idx as usize & (1024 - 1)
    }

    /// Index into `out` for free-running index `idx` (`MASK_XENCONS_IDX`).
    pub const fn mask_out(idx: XenconsRingIdx) -> usize {
        idx as usize & (2048 - 1)
    }
}
