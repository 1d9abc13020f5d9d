// SPDX-License-Identifier: MIT OR Apache-2.0
//! The block-device protocol. Mirrors `xen/include/public/io/blkif.h`.
//!
//! Requests ([`BlkifRequest`] and its discard/indirect variants) and responses
//! ([`BlkifResponse`]) travel in a shared ring ([`crate::io::ring`]) whose entries are
//! [`BlkifSringEntry`]. Data pages are granted per segment, sectors are 512 bytes.

use bitflags::bitflags;

use crate::grant_table::GrantRef;
use crate::layout::UnionBytes;

/// Virtual device number (`blkif_vdev_t`).
pub type BlkifVdev = u16;
/// Sector number, 512-byte units (`blkif_sector_t`).
pub type BlkifSector = u64;

/// Read.
pub const BLKIF_OP_READ: u8 = 0;
/// Write.
pub const BLKIF_OP_WRITE: u8 = 1;
/// Write with a barrier (`feature-barrier`).
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// Flush the disk cache (`feature-flush-cache`).
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// Reserved (was a device-specific op).
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// Discard sectors ([`BlkifRequestDiscard`], `feature-discard`).
pub const BLKIF_OP_DISCARD: u8 = 5;
/// Indirect request ([`BlkifRequestIndirect`]).
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Indirect pages in an indirect request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Discard must erase securely.
pub const BLKIF_DISCARD_SECURE: u8 = 1 << 0;

/// Operation not supported.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// Error.
pub const BLKIF_RSP_ERROR: i16 = -1;
/// Success.
pub const BLKIF_RSP_OKAY: i16 = 0;

/// `info` bit: CD-ROM.
pub const VDISK_CDROM: u32 = 0x1;
/// `info` bit: removable.
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `info` bit: read-only.
pub const VDISK_READONLY: u32 = 0x4;

/// Entries of a one-page (4 KiB) blkif ring.
// C: __CONST_RING_SIZE(blkif, 4096)
pub const BLKIF_RING_SIZE: usize = crate::io::ring::ring_entries(4096, size_of::<BlkifSringEntry>());

bitflags! {
    /// The `info` node of a virtual disk (`VDISK_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VdiskFlags: u32 {
        /// See [`VDISK_CDROM`].
        const CDROM = VDISK_CDROM;
        /// See [`VDISK_REMOVABLE`].
        const REMOVABLE = VDISK_REMOVABLE;
        /// See [`VDISK_READONLY`].
        const READONLY = VDISK_READONLY;
    }
}

xen_struct! {
    /// One data segment: a granted page and a sector range in it
    /// (`struct blkif_request_segment`).
    pub struct BlkifRequestSegment: "struct blkif_request_segment" {
        /// Grant of the data page.
        pub gref: GrantRef,
        /// First sector in the page.
        pub first_sect: u8,
        /// Last sector in the page (inclusive).
        pub last_sect: u8,
        /// Padding after `last_sect`.
        pub _pad: u16 as pad,
    }

    /// A read or write request (`struct blkif_request`).
    pub struct BlkifRequest: "struct blkif_request" {
        /// `BLKIF_OP_*`.
        pub operation: u8,
        /// Segments used.
        pub nr_segments: u8,
        /// Device.
        pub handle: BlkifVdev,
        /// Padding before `id`.
        pub _pad: u32 as pad,
        /// Echoed in the response.
        pub id: u64,
        /// Start sector.
        pub sector_number: BlkifSector,
        /// The segments.
        pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    }

    /// A discard request (`struct blkif_request_discard`).
    pub struct BlkifRequestDiscard: "struct blkif_request_discard" {
        /// `BLKIF_OP_DISCARD`.
        pub operation: u8,
        /// `BLKIF_DISCARD_SECURE`.
        pub flag: u8,
        /// Device.
        pub handle: BlkifVdev,
        /// Padding before `id`.
        pub _pad: u32 as pad,
        /// Echoed in the response.
        pub id: u64,
        /// Start sector.
        pub sector_number: BlkifSector,
        /// Sectors to discard.
        pub nr_sectors: u64,
    }

    /// An indirect request: segments in granted pages (`struct blkif_request_indirect`).
    pub struct BlkifRequestIndirect: "struct blkif_request_indirect" {
        /// `BLKIF_OP_INDIRECT`.
        pub operation: u8,
        /// The real operation.
        pub indirect_op: u8,
        /// Segments in the indirect pages.
        pub nr_segments: u16,
        /// Padding before `id`.
        pub _pad0: u32 as pad,
        /// Echoed in the response.
        pub id: u64,
        /// Start sector.
        pub sector_number: BlkifSector,
        /// Device.
        pub handle: BlkifVdev,
        /// Padding before `indirect_grefs`.
        pub _pad1: u16 as pad,
        /// Grants of the pages holding the segments.
        pub indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
        /// Padding at the end.
        pub _pad2: u32 as pad,
    }

    /// A response (`struct blkif_response`).
    pub struct BlkifResponse: "struct blkif_response" {
        /// The request's id.
        pub id: u64,
        /// The request's operation.
        pub operation: u8,
        /// Padding before `status`.
        pub _pad0: u8 as pad,
        /// `BLKIF_RSP_*`.
        pub status: i16,
        /// Padding at the end.
        pub _pad1: u32 as pad,
    }

    /// One blkif ring slot (`union blkif_sring_entry`).
    pub struct BlkifSringEntry: "union blkif_sring_entry" {
        /// Union storage: a [`BlkifRequest`] (or variant) or a [`BlkifResponse`].
        pub raw: [u64; 14] as raw,
    }
}

impl UnionBytes for BlkifSringEntry {}
