// SPDX-License-Identifier: MIT OR Apache-2.0
//! The shared ring of split drivers. Mirrors `xen/include/public/io/ring.h`.
//!
//! `DEFINE_RING_TYPES(name, req, rsp)` lays out a shared page as a 64-byte header
//! ([`SringHeader`]) followed by an array of `union { req; rsp; }` entries whose count
//! is the largest power of two that fits ([`ring_entries`]). Indexes are free running;
//! the entry of index `i` is `i & (entries - 1)`. The front end produces requests and
//! consumes responses; `req_event`/`rsp_event` say when the other side wants an event.

/// A ring index (`RING_IDX`).
pub type RingIdx = u32;

/// log2 of the page size rings are sized in (4 KiB).
pub const XEN_PAGE_SHIFT: u32 = 12;

/// Byte offset of the first entry in a shared ring.
// C: offsetof(struct netif_tx_sring, ring)
pub const SRING_ENTRIES_OFFSET: usize = 64;

xen_struct! {
    /// The header of every shared ring (`struct <name>_sring` up to `ring`).
    pub struct SringHeader: "struct netif_tx_sring", size = "offsetof(struct netif_tx_sring, ring)" {
        /// Requests produced (front end).
        pub req_prod: RingIdx,
        /// Back end wants an event when `req_prod` passes this.
        pub req_event: RingIdx,
        /// Responses produced (back end).
        pub rsp_prod: RingIdx,
        /// Front end wants an event when `rsp_prod` passes this.
        pub rsp_event: RingIdx,
        /// Per-protocol private bytes (netif: `smartpoll_active`).
        pub pvt: [u8; 4],
        /// Unused.
        pub pad: [u8; 44] as "__pad",
    }
}

impl SringHeader {
    /// A freshly initialised header (`SHARED_RING_INIT`).
    pub const fn init() -> Self {
        Self { req_prod: 0, req_event: 1, rsp_prod: 0, rsp_event: 1, pvt: [0; 4], pad: [0; 44] }
    }
}

/// Number of entries of `entry_size` bytes in a shared ring of `ring_bytes` bytes:
/// the largest power of two that fits after the header (`__CONST_RING_SIZE`).
pub const fn ring_entries(ring_bytes: usize, entry_size: usize) -> usize {
    if ring_bytes <= SRING_ENTRIES_OFFSET || entry_size == 0 {
        return 0;
    }
    let n = (ring_bytes - SRING_ENTRIES_OFFSET) / entry_size;
    if n == 0 { 0 } else { 1 << n.ilog2() }
}

/// Whether the side that just moved an index from `old` to `new` must send an event,
/// given the peer's `*_event` threshold (`RING_PUSH_*_AND_CHECK_NOTIFY`).
pub const fn need_notify(old: RingIdx, new: RingIdx, event: RingIdx) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size_of::<SringHeader>(), SRING_ENTRIES_OFFSET);
        assert_eq!(ring_entries(4096, 112), 32);
        assert_eq!(ring_entries(4096, 12), 256);
        assert_eq!(ring_entries(64, 8), 0);
        assert!(need_notify(0, 1, 1));
        assert!(!need_notify(1, 2, 1));
    }
}
