// SPDX-License-Identifier: MIT OR Apache-2.0
//! Version queries. Mirrors `xen/include/public/version.h`.
//!
//! `HYPERVISOR_xen_version(cmd, arg)`: `XENVER_version` returns `major << 16 | minor`
//! directly; the others fill the buffer `arg` points at.

/// Returns `major << 16 | minor`.
pub const XENVER_VERSION: u32 = 0;
/// Extra version string ([`XenExtraversion`]).
pub const XENVER_EXTRAVERSION: u32 = 1;
/// Build information ([`XenCompileInfo`]).
pub const XENVER_COMPILE_INFO: u32 = 2;
/// Capabilities string, e.g. `"xen-3.0-x86_64"` ([`XenCapabilitiesInfo`]).
pub const XENVER_CAPABILITIES: u32 = 3;
/// Source changeset ([`XenChangesetInfo`]).
pub const XENVER_CHANGESET: u32 = 4;
/// Start of the hypervisor's virtual area ([`XenPlatformParameters`]).
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// One 32-bit word of `XENFEAT_*` bits ([`XenFeatureInfo`]).
pub const XENVER_GET_FEATURES: u32 = 6;
/// Returns the page size.
pub const XENVER_PAGESIZE: u32 = 7;
/// Copies the domain handle (16 bytes).
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// Hypervisor command line ([`XenCommandline`]).
pub const XENVER_COMMANDLINE: u32 = 9;
/// Build id ([`XenBuildId`] followed by the bytes).
pub const XENVER_BUILD_ID: u32 = 10;

/// Length of [`XenExtraversion`].
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// Length of [`XenCapabilitiesInfo`].
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// Length of [`XenChangesetInfo`].
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Length of [`XenCommandline`].
// C: sizeof(xen_commandline_t)
pub const XEN_COMMANDLINE_LEN: usize = 1024;

/// `XENVER_extraversion` buffer (`xen_extraversion_t`).
pub type XenExtraversion = [u8; XEN_EXTRAVERSION_LEN];
/// `XENVER_capabilities` buffer (`xen_capabilities_info_t`).
pub type XenCapabilitiesInfo = [u8; XEN_CAPABILITIES_INFO_LEN];
/// `XENVER_changeset` buffer (`xen_changeset_info_t`).
pub type XenChangesetInfo = [u8; XEN_CHANGESET_INFO_LEN];
/// `XENVER_commandline` buffer (`xen_commandline_t`).
pub type XenCommandline = [u8; XEN_COMMANDLINE_LEN];

xen_struct! {
    /// `XENVER_compile_info` (`struct xen_compile_info`).
    pub struct XenCompileInfo: "struct xen_compile_info" {
        /// Compiler.
        pub compiler: [u8; 64],
        /// Builder's user name.
        pub compile_by: [u8; 16],
        /// Builder's domain.
        pub compile_domain: [u8; 32],
        /// Build date.
        pub compile_date: [u8; 32],
    }

    /// `XENVER_platform_parameters` (`struct xen_platform_parameters`).
    pub struct XenPlatformParameters: "struct xen_platform_parameters" {
        /// Lowest hypervisor virtual address.
        pub virt_start: u64,
    }

    /// `XENVER_get_features` (`struct xen_feature_info`).
    pub struct XenFeatureInfo: "struct xen_feature_info" {
        /// IN: which 32-bit word.
        pub submap_idx: u32,
        /// OUT: `XENFEAT_*` bits of that word.
        pub submap: u32,
    }

    /// Header of `XENVER_build_id` (`struct xen_build_id`); the id bytes follow.
    pub struct XenBuildId: "struct xen_build_id" {
        /// IN: buffer size; OUT: id length.
        pub len: u32,
    }
}

/// `(major, minor)` of an `XENVER_version` result.
pub const fn split_version(ret: u32) -> (u16, u16) {
    ((ret >> 16) as u16, ret as u16)
}
