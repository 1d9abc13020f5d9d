// SPDX-License-Identifier: MIT OR Apache-2.0
//! Callback registration. Mirrors `xen/include/public/callback.h`.
//!
//! `HYPERVISOR_callback_op(cmd, arg)`: where the hypervisor enters the guest kernel for
//! events, failsafe returns, SYSCALL from guest user space and NMIs.

use bitflags::bitflags;

use crate::arch_x86::XenCallback;

/// Event upcall.
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// Failsafe: a segment reload failed on return to the guest.
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// 64-bit SYSCALL from guest user space.
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// Old SYSENTER number (x86_32).
pub const CALLBACKTYPE_SYSENTER_DEPRECATED: u16 = 3;
/// NMI.
pub const CALLBACKTYPE_NMI: u16 = 4;
/// SYSENTER from 32-bit user space.
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
/// SYSCALL from 32-bit user space.
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;

/// Mask events on entry to the callback.
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << 0;

/// Register a callback ([`CallbackRegister`]).
pub const CALLBACKOP_REGISTER: u32 = 0;
/// Unregister one ([`CallbackUnregister`]).
pub const CALLBACKOP_UNREGISTER: u32 = 1;

bitflags! {
    /// `callback_register.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct CallbackFlags: u16 {
        /// See [`CALLBACKF_MASK_EVENTS`].
        const MASK_EVENTS = CALLBACKF_MASK_EVENTS;
    }
}

xen_struct! {
    /// `CALLBACKOP_register` (`struct callback_register`).
    pub struct CallbackRegister: "struct callback_register" {
        /// `CALLBACKTYPE_*`.
        pub type_: u16 as "type",
        /// `CALLBACKF_*`.
        pub flags: u16,
        /// Padding before `address`.
        pub _pad: u32 as pad,
        /// Entry point.
        pub address: XenCallback,
    }

    /// `CALLBACKOP_unregister` (`struct callback_unregister`).
    pub struct CallbackUnregister: "struct callback_unregister" {
        /// `CALLBACKTYPE_*`.
        pub type_: u16 as "type",
        /// Unused.
        pub _unused: u16,
    }
}

impl CallbackRegister {
    /// Registers `address` for callback `type_`.
    pub const fn new(type_: u16, flags: CallbackFlags, address: XenCallback) -> Self {
        Self { type_, flags: flags.bits(), _pad: 0, address }
    }
}
