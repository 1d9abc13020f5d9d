// SPDX-License-Identifier: MIT OR Apache-2.0
//! The network-device protocol. Mirrors `xen/include/public/io/netif.h`.
//!
//! Two shared rings per queue: transmit ([`NetifTxRequest`] / [`NetifTxResponse`]) and
//! receive ([`NetifRxRequest`] / [`NetifRxResponse`]); packets larger than a slot use
//! several slots (`NETTXF_more_data`), extra-info slots ([`NetifExtraInfo`]) carry GSO
//! and hash details. An optional control ring configures hashing.

use bitflags::bitflags;

use crate::grant_table::GrantRef;
use crate::layout::UnionBytes;

/// Minimum slots per packet a back end must accept.
pub const XEN_NETIF_NR_SLOTS_MIN: u32 = 18;
/// Largest packet.
pub const XEN_NETIF_MAX_TX_SIZE: u32 = 0xFFFF;

/// Hash type: IPv4.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4: u32 = 1 << 0;
/// Hash type: IPv4 + TCP.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP: u32 = 1 << 1;
/// Hash type: IPv6.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6: u32 = 1 << 2;
/// Hash type: IPv6 + TCP.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP: u32 = 1 << 3;
/// Hash algorithm: none.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE: u32 = 0;
/// Hash algorithm: Toeplitz.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ: u32 = 1;

/// Control request: invalid.
pub const XEN_NETIF_CTRL_TYPE_INVALID: u16 = 0;
/// Control request: get hash flags.
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS: u16 = 1;
/// Control request: set hash flags.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS: u16 = 2;
/// Control request: set hash key.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_KEY: u16 = 3;
/// Control request: get mapping-table size.
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE: u16 = 4;
/// Control request: set mapping-table size.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE: u16 = 5;
/// Control request: set mapping table.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING: u16 = 6;
/// Control request: set hash algorithm.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM: u16 = 7;
/// Control request: get grant-mapping size.
pub const XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE: u16 = 8;
/// Control request: add grant mappings.
pub const XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING: u16 = 9;
/// Control request: delete grant mappings.
pub const XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING: u16 = 10;
/// Control status: success.
pub const XEN_NETIF_CTRL_STATUS_SUCCESS: u32 = 0;
/// Control status: not supported.
pub const XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED: u32 = 1;
/// Control status: invalid parameter.
pub const XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER: u32 = 2;
/// Control status: buffer overflow.
pub const XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW: u32 = 3;
/// `xen_netif_gref.flags`: map read-only.
pub const XEN_NETIF_CTRLF_GREF_READONLY: u16 = 1 << 0;

/// Transmit flag: checksum is blank (offload).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// Transmit flag: data is validated.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// Transmit flag: more slots of this packet follow.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// Transmit flag: an extra-info slot follows.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// Extra info: none.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// Extra info: GSO.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// Extra info: add multicast address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// Extra info: remove multicast address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// Extra info: hash value.
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// Number of extra-info types.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// Extra-info flag: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;
/// GSO type: none.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
/// GSO type: TCPv4.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// GSO type: TCPv6.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// Receive flag: data is validated.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// Receive flag: checksum is blank.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// Receive flag: more slots of this packet follow.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// Receive flag: an extra-info slot follows.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// Receive flag: GSO prefix slot.
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// Response status: dropped.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// Response status: error.
pub const NETIF_RSP_ERROR: i16 = -1;
/// Response status: success.
pub const NETIF_RSP_OKAY: i16 = 0;
/// Response status: no response (extra-info slot).
pub const NETIF_RSP_NULL: i16 = 1;

/// Entries of a one-page (4 KiB) transmit ring.
// C: __CONST_RING_SIZE(netif_tx, 4096)
pub const NETIF_TX_RING_SIZE: usize = crate::io::ring::ring_entries(4096, size_of::<NetifTxSringEntry>());
/// Entries of a one-page (4 KiB) receive ring.
// C: __CONST_RING_SIZE(netif_rx, 4096)
pub const NETIF_RX_RING_SIZE: usize = crate::io::ring::ring_entries(4096, size_of::<NetifRxSringEntry>());

bitflags! {
    /// `netif_tx_request.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NettxFlags: u16 {
        /// See [`NETTXF_CSUM_BLANK`].
        const CSUM_BLANK = NETTXF_CSUM_BLANK;
        /// See [`NETTXF_DATA_VALIDATED`].
        const DATA_VALIDATED = NETTXF_DATA_VALIDATED;
        /// See [`NETTXF_MORE_DATA`].
        const MORE_DATA = NETTXF_MORE_DATA;
        /// See [`NETTXF_EXTRA_INFO`].
        const EXTRA_INFO = NETTXF_EXTRA_INFO;
    }
}

bitflags! {
    /// `netif_rx_response.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NetrxFlags: u16 {
        /// See [`NETRXF_DATA_VALIDATED`].
        const DATA_VALIDATED = NETRXF_DATA_VALIDATED;
        /// See [`NETRXF_CSUM_BLANK`].
        const CSUM_BLANK = NETRXF_CSUM_BLANK;
        /// See [`NETRXF_MORE_DATA`].
        const MORE_DATA = NETRXF_MORE_DATA;
        /// See [`NETRXF_EXTRA_INFO`].
        const EXTRA_INFO = NETRXF_EXTRA_INFO;
        /// See [`NETRXF_GSO_PREFIX`].
        const GSO_PREFIX = NETRXF_GSO_PREFIX;
    }
}

xen_struct! {
    /// Control-ring request (`struct xen_netif_ctrl_request`).
    pub struct XenNetifCtrlRequest: "struct xen_netif_ctrl_request" {
        /// Echoed in the response.
        pub id: u16,
        /// `XEN_NETIF_CTRL_TYPE_*`.
        pub type_: u16 as "type",
        /// Arguments.
        pub data: [u32; 3],
    }

    /// Control-ring response (`struct xen_netif_ctrl_response`).
    pub struct XenNetifCtrlResponse: "struct xen_netif_ctrl_response" {
        /// The request's id.
        pub id: u16,
        /// The request's type.
        pub type_: u16 as "type",
        /// `XEN_NETIF_CTRL_STATUS_*`.
        pub status: u32,
        /// Result.
        pub data: u32,
    }

    /// A grant for the control ring's mapping requests (`struct xen_netif_gref`).
    pub struct XenNetifGref: "struct xen_netif_gref" {
        /// Grant.
        pub ref_: GrantRef as "ref",
        /// `XEN_NETIF_CTRLF_GREF_*`.
        pub flags: u16,
        /// Per-grant status.
        pub status: u16,
    }

    /// Transmit request (`struct netif_tx_request`).
    pub struct NetifTxRequest: "struct netif_tx_request" {
        /// Grant of the data page.
        pub gref: GrantRef,
        /// Offset in the page.
        pub offset: u16,
        /// `NETTXF_*`.
        pub flags: u16,
        /// Echoed in the response.
        pub id: u16,
        /// Packet size (first slot) or slot size.
        pub size: u16,
    }

    /// Extra-info slot (`struct netif_extra_info`).
    pub struct NetifExtraInfo: "struct netif_extra_info" {
        /// `XEN_NETIF_EXTRA_TYPE_*`.
        pub type_: u8 as "type",
        /// `XEN_NETIF_EXTRA_FLAG_*`.
        pub flags: u8,
        /// [`NetifExtraGso`], [`NetifExtraMcast`] or [`NetifExtraHash`] by type.
        pub u: [u16; 3],
    }

    /// GSO extra info (`netif_extra_info.u.gso`).
    pub struct NetifExtraGso: "__typeof__(((struct netif_extra_info *)0)->u.gso)" {
        /// Segment size.
        pub size: u16,
        /// `XEN_NETIF_GSO_TYPE_*`.
        pub type_: u8 as "type",
        /// Unused.
        pub pad: u8,
        /// Reserved.
        pub features: u16,
    }

    /// Multicast extra info (`netif_extra_info.u.mcast`).
    pub struct NetifExtraMcast: "__typeof__(((struct netif_extra_info *)0)->u.mcast)" {
        /// MAC address.
        pub addr: [u8; 6],
    }

    /// Hash extra info (`netif_extra_info.u.hash`).
    pub struct NetifExtraHash: "__typeof__(((struct netif_extra_info *)0)->u.hash)" {
        /// `_XEN_NETIF_CTRL_HASH_TYPE_*` bit number.
        pub type_: u8 as "type",
        /// `XEN_NETIF_CTRL_HASH_ALGORITHM_*`.
        pub algorithm: u8,
        /// Hash value, little endian.
        pub value: [u8; 4],
    }

    /// Transmit response (`struct netif_tx_response`).
    pub struct NetifTxResponse: "struct netif_tx_response" {
        /// The request's id.
        pub id: u16,
        /// `NETIF_RSP_*`.
        pub status: i16,
    }

    /// Receive request: a buffer page (`struct netif_rx_request`).
    pub struct NetifRxRequest: "struct netif_rx_request" {
        /// Echoed in the response.
        pub id: u16,
        /// Unused.
        pub pad: u16,
        /// Grant of the buffer page.
        pub gref: GrantRef,
    }

    /// Receive response (`struct netif_rx_response`).
    pub struct NetifRxResponse: "struct netif_rx_response" {
        /// The request's id.
        pub id: u16,
        /// Offset of the data in the page.
        pub offset: u16,
        /// `NETRXF_*`.
        pub flags: u16,
        /// Bytes received, or a negative `NETIF_RSP_*`.
        pub status: i16,
    }

    /// One transmit ring slot (`union netif_tx_sring_entry`).
    pub struct NetifTxSringEntry: "union netif_tx_sring_entry" {
        /// Union storage.
        pub raw: [u32; 3] as raw,
    }

    /// One receive ring slot (`union netif_rx_sring_entry`).
    pub struct NetifRxSringEntry: "union netif_rx_sring_entry" {
        /// Union storage.
        pub raw: [u32; 2] as raw,
    }

    /// One control ring slot (`union xen_netif_ctrl_sring_entry`).
    pub struct XenNetifCtrlSringEntry: "union xen_netif_ctrl_sring_entry" {
        /// Union storage.
        pub raw: [u32; 4] as raw,
    }
}

impl UnionBytes for NetifTxSringEntry {}
impl UnionBytes for NetifRxSringEntry {}
impl UnionBytes for XenNetifCtrlSringEntry {}

impl NetifExtraInfo {
    /// The GSO details (type `XEN_NETIF_EXTRA_TYPE_GSO`).
    pub fn gso(&self) -> NetifExtraGso {
        zerocopy::transmute!(self.u)
    }
}
