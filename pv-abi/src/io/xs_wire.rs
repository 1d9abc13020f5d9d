// SPDX-License-Identifier: MIT OR Apache-2.0
//! The xenstore wire protocol. Mirrors `xen/include/public/io/xs_wire.h`.
//!
//! Each message is an [`XsdSockmsg`] header followed by `len` payload bytes
//! (NUL-separated strings). A domain talks to xenstored over the ring page
//! [`XenstoreDomainInterface`] (`start_info.store_mfn`, event `store_evtchn`).
//! Errors come back as `XS_ERROR` with the errno's name as payload (`"EINVAL"`, see
//! [`crate::Errno::name`]).

/// Debug command (also `XS_DEBUG`).
pub const XS_CONTROL: u32 = 0;
/// Same as `XS_CONTROL`.
pub const XS_DEBUG: u32 = XS_CONTROL;
/// List a directory.
pub const XS_DIRECTORY: u32 = 1;
/// Read a node.
pub const XS_READ: u32 = 2;
/// Get a node's permissions.
pub const XS_GET_PERMS: u32 = 3;
/// Watch a path.
pub const XS_WATCH: u32 = 4;
/// Remove a watch.
pub const XS_UNWATCH: u32 = 5;
/// Start a transaction.
pub const XS_TRANSACTION_START: u32 = 6;
/// End a transaction (`"T"` commit, `"F"` abort).
pub const XS_TRANSACTION_END: u32 = 7;
/// Introduce a new domain (dom0).
pub const XS_INTRODUCE: u32 = 8;
/// Forget a domain (dom0).
pub const XS_RELEASE: u32 = 9;
/// A domain's home path.
pub const XS_GET_DOMAIN_PATH: u32 = 10;
/// Write a node.
pub const XS_WRITE: u32 = 11;
/// Create a directory.
pub const XS_MKDIR: u32 = 12;
/// Remove a node.
pub const XS_RM: u32 = 13;
/// Set permissions.
pub const XS_SET_PERMS: u32 = 14;
/// A watch fired (server to client).
pub const XS_WATCH_EVENT: u32 = 15;
/// Error reply.
pub const XS_ERROR: u32 = 16;
/// Whether a domain is introduced.
pub const XS_IS_DOMAIN_INTRODUCED: u32 = 17;
/// Resume a domain.
pub const XS_RESUME: u32 = 18;
/// Make a domain the target of another (device models).
pub const XS_SET_TARGET: u32 = 19;
/// Remove all watches of the connection.
pub const XS_RESET_WATCHES: u32 = 21;
/// Partial directory listing.
pub const XS_DIRECTORY_PART: u32 = 22;
/// Number of message types.
pub const XS_TYPE_COUNT: u32 = 23;
/// Invalid message type.
pub const XS_INVALID: u32 = 0xffff;

/// Legacy write flag: plain write.
pub const XS_WRITE_NONE: &str = "NONE";
/// Legacy write flag: create.
pub const XS_WRITE_CREATE: &str = "CREATE";
/// Legacy write flag: create exclusively.
pub const XS_WRITE_CREATE_EXCL: &str = "CREATE|EXCL";

/// Index of the path in a watch event's payload.
pub const XS_WATCH_PATH: u32 = 0;
/// Index of the token in a watch event's payload.
pub const XS_WATCH_TOKEN: u32 = 1;

/// Size of each ring of the xenstore page.
pub const XENSTORE_RING_SIZE: usize = 1024;
/// Largest payload.
pub const XENSTORE_PAYLOAD_MAX: u32 = 4096;
/// Longest absolute path.
pub const XENSTORE_ABS_PATH_MAX: u32 = 3072;
/// Longest relative path.
pub const XENSTORE_REL_PATH_MAX: u32 = 2048;
/// Server feature: reconnection via `connection`.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// Server feature: `error` field.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `connection`: connected.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `connection`: the guest asks to reconnect.
pub const XENSTORE_RECONNECT: u32 = 1;
/// `error`: none.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `error`: communication problem.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `error`: bad ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `error`: protocol violation.
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// A xenstore ring index (`XENSTORE_RING_IDX`).
pub type XenstoreRingIdx = u32;

xen_struct! {
    /// Message header (`struct xsd_sockmsg`).
    pub struct XsdSockmsg: "struct xsd_sockmsg" {
        /// `XS_*`.
        pub type_: u32 as "type",
        /// Echoed in the reply.
        pub req_id: u32,
        /// Transaction id, 0 for none.
        pub tx_id: u32,
        /// Payload length.
        pub len: u32,
    }

    /// The xenstore ring page (`struct xenstore_domain_interface`).
    pub struct XenstoreDomainInterface: "struct xenstore_domain_interface" {
        /// Requests (guest to server).
        pub req: [u8; XENSTORE_RING_SIZE],
        /// Replies and watch events (server to guest).
        pub rsp: [u8; XENSTORE_RING_SIZE],
        /// Request consumer (server).
        pub req_cons: XenstoreRingIdx,
        /// Request producer (guest).
        pub req_prod: XenstoreRingIdx,
        /// Reply consumer (guest).
        pub rsp_cons: XenstoreRingIdx,
        /// Reply producer (server).
        pub rsp_prod: XenstoreRingIdx,
        /// `XENSTORE_SERVER_FEATURE_*`.
        pub server_features: u32,
        /// `XENSTORE_CONNECTED` or `XENSTORE_RECONNECT`.
        pub connection: u32,
        /// `XENSTORE_ERROR_*`.
        pub error: u32,
    }
}

impl XenstoreDomainInterface {
    /// Ring offset of free-running index `idx` (`MASK_XENSTORE_IDX`).
    pub const fn mask(idx: XenstoreRingIdx) -> usize {
        idx as usize & (XENSTORE_RING_SIZE - 1)
    }
}
