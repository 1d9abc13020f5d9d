// SPDX-License-Identifier: MIT OR Apache-2.0
//! Grant tables. Mirrors `xen/include/public/grant_table.h`.
//!
//! A domain grants access to its frames by filling entries of its grant table
//! ([`GrantEntryV1`]); other domains map or copy them with
//! `HYPERVISOR_grant_table_op(cmd, args, count)`, where `args` is an array of the
//! command's structure. Per-operation results are `GNTST_*` codes in each structure's
//! `status`, separate from the hypercall's own return value.

use bitflags::bitflags;

use crate::layout::UnionBytes;
use crate::xen::{DomId, GuestHandle, XenPfn};

/// A grant reference: an index into the granting domain's table (`grant_ref_t`).
pub type GrantRef = u32;
/// A mapping handle returned by `map_grant_ref` (`grant_handle_t`).
pub type GrantHandle = u32;
/// A v2 status word (`grant_status_t`).
pub type GrantStatus = u16;

/// Entries reserved at the start of each table for the toolstack.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved entry granting the console ring to the console backend.
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// Reserved entry granting the xenstore ring to xenstored.
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;

// ---- Entry flags (grant_entry_v1.flags) ----

/// Type: the entry is not in use.
pub const GTF_INVALID: u16 = 0;
/// Type: `domid` may map or copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// Type: `domid` may transfer a frame to us.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Type: transitive grant (v2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// Mask of the type field.
pub const GTF_TYPE_MASK: u16 = 3;
/// Access is read-only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by the hypervisor while the grant is mapped or copied for reading.
pub const GTF_READING: u16 = 1 << 3;
/// Set by the hypervisor while the grant is mapped or copied for writing.
pub const GTF_WRITING: u16 = 1 << 4;
/// Map with PWT.
pub const GTF_PWT: u16 = 1 << 5;
/// Map with PCD.
pub const GTF_PCD: u16 = 1 << 6;
/// Map with PAT.
pub const GTF_PAT: u16 = 1 << 7;
/// Sub-page grant (v2 only).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Transfer: the frame is being transferred.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Transfer: the transfer finished; `frame` holds the new frame.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

// ---- Operations ----

/// Map granted frames.
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// Unmap them.
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// Get the frames of a domain's grant table.
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// Dump a table to the hypervisor console.
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// Transfer frames to other domains.
pub const GNTTABOP_TRANSFER: u32 = 4;
/// Copy between granted and local frames.
pub const GNTTABOP_COPY: u32 = 5;
/// Current and maximum table size.
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// Unmap and put another mapping in place.
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// Select table format v1 or v2.
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// Get the v2 status frames.
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// Current table format.
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// Swap two entries.
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// Cache maintenance on granted frames (Arm).
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

// ---- map_grant_ref flags ----

/// Map for device DMA (`dev_bus_addr`).
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// Map into the host address space (`host_addr`).
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// Map read-only.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// Map with user access.
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `host_addr` is the machine address of a PTE to write, not a virtual address.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// Bits the guest may set in the PTE's available field.
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = 0xffff_0000;
/// First bit of the guest-available field of the map flags. With
/// `XENFEAT_gnttab_map_avail_bits`, x86 PV copies flag bits 16-18 into the new PTE's
/// available bits 9-11 (higher bits of the field are dropped).
// C: _GNTMAP_guest_avail0
pub const GNTMAP_GUEST_AVAIL0_SHIFT: u32 = 16;

/// Map flags asking for `bits` in the PTE's available field ([`GNTMAP_GUEST_AVAIL0_SHIFT`]).
pub const fn gntmap_guest_avail(bits: u32) -> u32 {
    bits << GNTMAP_GUEST_AVAIL0_SHIFT
}

// ---- copy flags ----

/// `source.u` is a grant reference (else a local frame).
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `dest.u` is a grant reference (else a local frame).
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

// ---- cache_flush ops ----

/// Clean.
pub const GNTTAB_CACHE_CLEAN: u32 = 1 << 0;
/// Invalidate.
pub const GNTTAB_CACHE_INVAL: u32 = 1 << 1;
/// `a` is a grant reference.
pub const GNTTAB_CACHE_SOURCE_GREF: u32 = 1 << 31;

// ---- Per-operation status ----

/// Success.
pub const GNTST_OKAY: i16 = 0;
/// Undefined error.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// Unknown domain.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// Bad grant reference.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// Bad mapping handle.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// Bad virtual address.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// Bad device address.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// No space in the I/O MMU.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// Not allowed by the grant.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// Bad page.
pub const GNTST_BAD_PAGE: i16 = -9;
/// Copy crosses a page boundary.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// Frame address too large for the caller.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// Not done; try again.
pub const GNTST_EAGAIN: i16 = -12;
/// Out of space (maptrack).
pub const GNTST_NO_SPACE: i16 = -13;

/// Xen's message for a `GNTST_*` code (`GNTTABOP_error_msgs`).
pub const fn gntst_message(status: i16) -> &'static str {
    match status {
        GNTST_OKAY => "okay",
        GNTST_GENERAL_ERROR => "undefined error",
        GNTST_BAD_DOMAIN => "unrecognised domain id",
        GNTST_BAD_GNTREF => "invalid grant reference",
        GNTST_BAD_HANDLE => "invalid mapping handle",
        GNTST_BAD_VIRT_ADDR => "invalid virtual address",
        GNTST_BAD_DEV_ADDR => "invalid device address",
        GNTST_NO_DEVICE_SPACE => "no spare translation slot in the I/O MMU",
        GNTST_PERMISSION_DENIED => "permission denied",
        GNTST_BAD_PAGE => "bad page",
        GNTST_BAD_COPY_ARG => "copy arguments cross page boundary",
        GNTST_ADDRESS_TOO_BIG => "page address size too large",
        GNTST_EAGAIN => "operation not done; try again",
        GNTST_NO_SPACE => "out of space",
        _ => "unknown status",
    }
}

bitflags! {
    /// `grant_entry_v1.flags`: a `GTF_*` type in bits 0-1 plus these flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GtfFlags: u16 {
        /// Type field (see [`GTF_TYPE_MASK`]).
        const TYPE_MASK = GTF_TYPE_MASK;
        /// See [`GTF_READONLY`].
        const READONLY = GTF_READONLY;
        /// See [`GTF_READING`].
        const READING = GTF_READING;
        /// See [`GTF_WRITING`].
        const WRITING = GTF_WRITING;
        /// See [`GTF_PWT`].
        const PWT = GTF_PWT;
        /// See [`GTF_PCD`].
        const PCD = GTF_PCD;
        /// See [`GTF_PAT`].
        const PAT = GTF_PAT;
        /// See [`GTF_SUB_PAGE`].
        const SUB_PAGE = GTF_SUB_PAGE;
    }
}

bitflags! {
    /// `gnttab_map_grant_ref.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GntmapFlags: u32 {
        /// See [`GNTMAP_DEVICE_MAP`].
        const DEVICE_MAP = GNTMAP_DEVICE_MAP;
        /// See [`GNTMAP_HOST_MAP`].
        const HOST_MAP = GNTMAP_HOST_MAP;
        /// See [`GNTMAP_READONLY`].
        const READONLY = GNTMAP_READONLY;
        /// See [`GNTMAP_APPLICATION_MAP`].
        const APPLICATION_MAP = GNTMAP_APPLICATION_MAP;
        /// See [`GNTMAP_CONTAINS_PTE`].
        const CONTAINS_PTE = GNTMAP_CONTAINS_PTE;
        /// See [`GNTMAP_GUEST_AVAIL_MASK`].
        const GUEST_AVAIL_MASK = GNTMAP_GUEST_AVAIL_MASK;
    }
}

bitflags! {
    /// `gnttab_copy.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GntcopyFlags: u16 {
        /// See [`GNTCOPY_SOURCE_GREF`].
        const SOURCE_GREF = GNTCOPY_SOURCE_GREF;
        /// See [`GNTCOPY_DEST_GREF`].
        const DEST_GREF = GNTCOPY_DEST_GREF;
    }
}

xen_struct! {
    /// A v1 grant-table entry (`struct grant_entry_v1`), 8 bytes.
    pub struct GrantEntryV1: "struct grant_entry_v1" {
        /// `GTF_*` type and flags; written last by the granter.
        pub flags: u16,
        /// Domain being granted access.
        pub domid: DomId,
        /// Frame being granted (or, for a transfer, received).
        pub frame: u32,
    }

    /// Common header of v2 entries (`struct grant_entry_header`).
    pub struct GrantEntryHeader: "struct grant_entry_header" {
        /// `GTF_*` type and flags.
        pub flags: u16,
        /// Domain being granted access.
        pub domid: DomId,
    }

    /// A v2 grant-table entry (`union grant_entry_v2`), 16 bytes.
    pub struct GrantEntryV2: "union grant_entry_v2" {
        /// Union storage; read with [`UnionBytes::get`].
        pub raw: [u64; 2] as raw,
    }

    /// v2 full-page grant (`grant_entry_v2.full_page`).
    pub struct GrantEntryV2FullPage: "__typeof__(((union grant_entry_v2 *)0)->full_page)" {
        /// Header.
        pub hdr: GrantEntryHeader,
        /// Unused.
        pub pad0: u32,
        /// Frame.
        pub frame: u64,
    }

    /// v2 sub-page grant (`grant_entry_v2.sub_page`).
    pub struct GrantEntryV2SubPage: "__typeof__(((union grant_entry_v2 *)0)->sub_page)" {
        /// Header.
        pub hdr: GrantEntryHeader,
        /// Offset of the granted range.
        pub page_off: u16,
        /// Length of the granted range.
        pub length: u16,
        /// Frame.
        pub frame: u64,
    }

    /// v2 transitive grant (`grant_entry_v2.transitive`).
    pub struct GrantEntryV2Transitive: "__typeof__(((union grant_entry_v2 *)0)->transitive)" {
        /// Header.
        pub hdr: GrantEntryHeader,
        /// Domain whose grant is passed on.
        pub trans_domid: DomId,
        /// Unused.
        pub pad0: u16,
        /// Its grant reference.
        pub gref: GrantRef,
    }

    /// `GNTTABOP_map_grant_ref` (`struct gnttab_map_grant_ref`).
    pub struct GnttabMapGrantRef: "struct gnttab_map_grant_ref" {
        /// IN: virtual address (or PTE machine address with `GNTMAP_contains_pte`).
        pub host_addr: u64,
        /// IN: `GNTMAP_*`.
        pub flags: u32,
        /// IN: grant reference in `dom`'s table.
        pub ref_: GrantRef as "ref",
        /// IN: granting domain.
        pub dom: DomId,
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// OUT: handle for unmapping.
        pub handle: GrantHandle,
        /// OUT: bus address with `GNTMAP_device_map`.
        pub dev_bus_addr: u64,
    }

    /// `GNTTABOP_unmap_grant_ref` (`struct gnttab_unmap_grant_ref`).
    pub struct GnttabUnmapGrantRef: "struct gnttab_unmap_grant_ref" {
        /// IN: address it was mapped at.
        pub host_addr: u64,
        /// IN: bus address it was mapped at.
        pub dev_bus_addr: u64,
        /// IN: handle from the map.
        pub handle: GrantHandle,
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// Padding after `status`.
        pub _pad: u16 as pad,
    }

    /// `GNTTABOP_setup_table` (`struct gnttab_setup_table`).
    pub struct GnttabSetupTable: "struct gnttab_setup_table" {
        /// IN: domain (`DOMID_SELF`).
        pub dom: DomId,
        /// Padding before `nr_frames`.
        pub _pad0: u16 as pad,
        /// IN: number of frames wanted.
        pub nr_frames: u32,
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// Padding before `frame_list`.
        pub _pad1: [u8; 6] as pad,
        /// OUT: the table's frames.
        pub frame_list: GuestHandle<XenPfn>,
    }

    /// `GNTTABOP_dump_table` (`struct gnttab_dump_table`).
    pub struct GnttabDumpTable: "struct gnttab_dump_table" {
        /// IN: domain.
        pub dom: DomId,
        /// OUT: `GNTST_*`.
        pub status: i16,
    }

    /// `GNTTABOP_transfer` (`struct gnttab_transfer`).
    pub struct GnttabTransfer: "struct gnttab_transfer" {
        /// IN: frame to give away.
        pub mfn: XenPfn,
        /// IN: receiving domain.
        pub domid: DomId,
        /// Padding before `ref`.
        pub _pad0: u16 as pad,
        /// IN: its `accept_transfer` grant.
        pub ref_: GrantRef as "ref",
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// Padding after `status`.
        pub _pad1: [u8; 6] as pad,
    }

    /// One end of a grant copy (`struct gnttab_copy_ptr`).
    pub struct GnttabCopyPtr: "struct gnttab_copy_ptr" {
        /// A grant reference or a local frame, by the `GNTCOPY_*` flags.
        pub u: u64,
        /// Domain of the grant.
        pub domid: DomId,
        /// Byte offset in the frame.
        pub offset: u16,
        /// Padding after `offset`.
        pub _pad: u32 as pad,
    }

    /// `GNTTABOP_copy` (`struct gnttab_copy`).
    pub struct GnttabCopy: "struct gnttab_copy" {
        /// IN: source.
        pub source: GnttabCopyPtr,
        /// IN: destination.
        pub dest: GnttabCopyPtr,
        /// IN: bytes; neither end may cross a page.
        pub len: u16,
        /// IN: `GNTCOPY_*`.
        pub flags: u16,
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// Padding after `status`.
        pub _pad: u16 as pad,
    }

    /// `GNTTABOP_query_size` (`struct gnttab_query_size`).
    pub struct GnttabQuerySize: "struct gnttab_query_size" {
        /// IN: domain.
        pub dom: DomId,
        /// Padding before `nr_frames`.
        pub _pad0: u16 as pad,
        /// OUT: current frames.
        pub nr_frames: u32,
        /// OUT: maximum frames.
        pub max_nr_frames: u32,
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// Padding after `status`.
        pub _pad1: u16 as pad,
    }

    /// `GNTTABOP_unmap_and_replace` (`struct gnttab_unmap_and_replace`).
    pub struct GnttabUnmapAndReplace: "struct gnttab_unmap_and_replace" {
        /// IN: mapped address.
        pub host_addr: u64,
        /// IN: address whose mapping replaces it.
        pub new_addr: u64,
        /// IN: handle from the map.
        pub handle: GrantHandle,
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// Padding after `status`.
        pub _pad: u16 as pad,
    }

    /// `GNTTABOP_set_version` (`struct gnttab_set_version`).
    pub struct GnttabSetVersion: "struct gnttab_set_version" {
        /// IN/OUT: 1 or 2.
        pub version: u32,
    }

    /// `GNTTABOP_get_status_frames` (`struct gnttab_get_status_frames`).
    pub struct GnttabGetStatusFrames: "struct gnttab_get_status_frames" {
        /// IN: number of frames.
        pub nr_frames: u32,
        /// IN: domain.
        pub dom: DomId,
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// OUT: the status frames.
        pub frame_list: GuestHandle<u64>,
    }

    /// `GNTTABOP_get_version` (`struct gnttab_get_version`).
    pub struct GnttabGetVersion: "struct gnttab_get_version" {
        /// IN: domain.
        pub dom: DomId,
        /// Unused.
        pub pad: u16,
        /// OUT: 1 or 2.
        pub version: u32,
    }

    /// `GNTTABOP_swap_grant_ref` (`struct gnttab_swap_grant_ref`).
    pub struct GnttabSwapGrantRef: "struct gnttab_swap_grant_ref" {
        /// IN: first entry.
        pub ref_a: GrantRef,
        /// IN: second entry.
        pub ref_b: GrantRef,
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// Padding after `status`.
        pub _pad: u16 as pad,
    }

    /// `GNTTABOP_cache_flush` (`struct gnttab_cache_flush`).
    pub struct GnttabCacheFlush: "struct gnttab_cache_flush" {
        /// Bus address or grant reference (`GNTTAB_CACHE_SOURCE_GREF`).
        pub a: u64,
        /// Offset in the page.
        pub offset: u16,
        /// Length.
        pub length: u16,
        /// `GNTTAB_CACHE_*`.
        pub op: u32,
    }
}

impl UnionBytes for GrantEntryV2 {}

impl GrantEntryV1 {
    /// An entry letting `domid` map or copy `frame` (read-only if `readonly`).
    pub const fn permit_access(domid: DomId, frame: u32, readonly: bool) -> Self {
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        Self { flags, domid, frame }
    }

    /// An entry letting `domid` transfer a frame to us, to become pseudo-physical frame
    /// `pfn` (Xen writes the new frame into `frame` for non-translated guests).
    pub const fn accept_transfer(domid: DomId, pfn: u32) -> Self {
        Self { flags: GTF_ACCEPT_TRANSFER, domid, frame: pfn }
    }

    /// The flags as bitflags.
    pub const fn gtf_flags(&self) -> GtfFlags {
        GtfFlags::from_bits_retain(self.flags)
    }

    /// The `GTF_*` type.
    pub const fn gtf_type(&self) -> u16 {
        self.flags & GTF_TYPE_MASK
    }
}

impl GnttabMapGrantRef {
    /// A mapping of `dom`'s grant `gref` with `GNTMAP_*` `flags` at `host_addr` (a
    /// virtual address, or a PTE's machine address with `GNTMAP_contains_pte`).
    pub const fn new(host_addr: u64, flags: u32, dom: DomId, gref: GrantRef) -> Self {
        Self { host_addr, flags, ref_: gref, dom, status: 0, handle: 0, dev_bus_addr: 0 }
    }

    /// A host mapping of `dom`'s grant `gref` at `host_addr`.
    pub const fn host_map(host_addr: u64, dom: DomId, gref: GrantRef, readonly: bool) -> Self {
        let flags = GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 };
        Self::new(host_addr, flags, dom, gref)
    }
}

impl GnttabUnmapGrantRef {
    /// Undoes mapping `handle`: its host mapping at `host_addr` and its device mapping
    /// at `dev_bus_addr` (0 leaves that part alone).
    pub const fn new(host_addr: u64, dev_bus_addr: u64, handle: GrantHandle) -> Self {
        Self { host_addr, dev_bus_addr, handle, status: 0, _pad: 0 }
    }
}

impl GnttabUnmapAndReplace {
    /// Unmaps `handle` at `host_addr` and moves the mapping of `new_addr` there (0:
    /// only unmap).
    pub const fn new(host_addr: u64, new_addr: u64, handle: GrantHandle) -> Self {
        Self { host_addr, new_addr, handle, status: 0, _pad: 0 }
    }
}

impl GnttabTransfer {
    /// Gives frame `mfn` away to `domid`, into its `accept_transfer` grant `gref`.
    pub const fn new(mfn: XenPfn, domid: DomId, gref: GrantRef) -> Self {
        Self { mfn, domid, _pad0: 0, ref_: gref, status: 0, _pad1: [0; 6] }
    }
}

impl GnttabCopyPtr {
    /// Byte `offset` of `domid`'s grant `gref` (with the `GNTCOPY_*_gref` flag).
    pub const fn gref(gref: GrantRef, domid: DomId, offset: u16) -> Self {
        Self { u: gref as u64, domid, offset, _pad: 0 }
    }

    /// Byte `offset` of the caller's frame `gmfn` (without the flag; Xen accepts only
    /// `DOMID_SELF` as `domid` then).
    pub const fn gmfn(gmfn: XenPfn, domid: DomId, offset: u16) -> Self {
        Self { u: gmfn, domid, offset, _pad: 0 }
    }
}

impl GnttabCopy {
    /// A copy of `len` bytes from `source` to `dest`; `flags` (`GNTCOPY_*`) say which
    /// ends are grant references.
    pub const fn new(source: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> Self {
        Self { source, dest, len, flags, status: 0, _pad: 0 }
    }
}

impl GnttabCacheFlush {
    /// `GNTTAB_CACHE_*` `op` on `length` bytes at `offset` of the frame at bus address
    /// (or grant reference) `a`.
    pub const fn new(a: u64, offset: u16, length: u16, op: u32) -> Self {
        Self { a, offset, length, op }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_layouts() {
        assert_eq!(size_of::<GrantEntryV1>(), 8);
        assert_eq!(size_of::<GrantEntryV2>(), 16);
        assert_eq!(size_of::<GnttabCopy>(), 40);
        assert_eq!(gntst_message(GNTST_BAD_GNTREF), "invalid grant reference");
        let e = GrantEntryV1 { flags: GTF_PERMIT_ACCESS | GTF_READONLY, domid: 0, frame: 5 };
        assert_eq!(e.gtf_type(), GTF_PERMIT_ACCESS);
        assert!(e.gtf_flags().contains(GtfFlags::READONLY));
    }

    #[test]
    fn constructors() {
        assert_eq!(GrantEntryV1::permit_access(3, 9, true), GrantEntryV1 { flags: 5, domid: 3, frame: 9 });
        assert_eq!(GrantEntryV1::permit_access(0, 9, false).flags, GTF_PERMIT_ACCESS);
        let t = GrantEntryV1::accept_transfer(0, 0x42);
        assert_eq!((t.gtf_type(), t.frame), (GTF_ACCEPT_TRANSFER, 0x42));

        assert_eq!(gntmap_guest_avail(5), 0x5_0000);
        assert_eq!(gntmap_guest_avail(!0) & !GNTMAP_GUEST_AVAIL_MASK, 0);
        let m = GnttabMapGrantRef::new(0x1000, GNTMAP_HOST_MAP | gntmap_guest_avail(1), 0, 12);
        assert_eq!((m.flags, m.ref_, m.status, m.handle), (0x1_0002, 12, 0, 0));
        assert_eq!(GnttabMapGrantRef::host_map(0x1000, 0, 12, true).flags, GNTMAP_HOST_MAP | GNTMAP_READONLY);
        assert_eq!(size_of::<GnttabMapGrantRef>(), 32);

        let u = GnttabUnmapGrantRef::new(0x2000, 0x3000, 7);
        assert_eq!((u.host_addr, u.dev_bus_addr, u.handle, u.status), (0x2000, 0x3000, 7, 0));
        assert_eq!(size_of::<GnttabUnmapGrantRef>(), 24);
        assert_eq!(GnttabUnmapAndReplace::new(1, 2, 3).new_addr, 2);
        assert_eq!(size_of::<GnttabUnmapAndReplace>(), 24);
        let x = GnttabTransfer::new(0x99, 0, 20);
        assert_eq!((x.mfn, x.domid, x.ref_, x.status), (0x99, 0, 20, 0));
        assert_eq!(size_of::<GnttabTransfer>(), 24);

        let c = GnttabCopy::new(
            GnttabCopyPtr::gref(10, 0, 100),
            GnttabCopyPtr::gmfn(0x1234, crate::xen::DOMID_SELF, 8),
            64,
            GNTCOPY_SOURCE_GREF,
        );
        assert_eq!((c.source.u, c.source.offset, c.dest.u, c.dest.domid), (10, 100, 0x1234, 0x7ff0));
        assert_eq!((c.len, c.flags, c.status), (64, GNTCOPY_SOURCE_GREF, 0));
        assert_eq!(core::mem::offset_of!(GnttabCopy, dest), 16);
        assert_eq!(core::mem::offset_of!(GnttabCopy, status), 36);

        let f = GnttabCacheFlush::new(0x5000, 8, 16, GNTTAB_CACHE_CLEAN);
        assert_eq!((f.a, f.offset, f.length, f.op), (0x5000, 8, 16, 1));
        assert_eq!(size_of::<GnttabCacheFlush>(), 16);
    }
}
