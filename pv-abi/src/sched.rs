// SPDX-License-Identifier: MIT OR Apache-2.0
//! Scheduler operations. Mirrors `xen/include/public/sched.h`.
//!
//! `HYPERVISOR_sched_op(cmd, arg)`: yield, block until an event, shut down, poll ports.

use crate::event_channel::EvtchnPort;
use crate::xen::{DomId, GuestHandle};

/// Give up the CPU; stay runnable.
pub const SCHEDOP_YIELD: u32 = 0;
/// Block until an event is pending (events must be unmasked).
pub const SCHEDOP_BLOCK: u32 = 1;
/// Shut the calling domain down ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// Block until one of a set of ports is pending or a timeout ([`SchedPoll`]).
pub const SCHEDOP_POLL: u32 = 3;
/// Shut another domain down ([`SchedRemoteShutdown`]).
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// Record a shutdown reason without shutting down ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// Arm, re-arm or stop a domain watchdog ([`SchedWatchdog`]).
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// Pin the vCPU temporarily to a physical CPU (dom0; [`SchedPinOverride`]).
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// Power off.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Reboot (the toolstack restarts the domain).
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Suspend (for save or migration).
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// Crash.
pub const SHUTDOWN_CRASH: u32 = 3;
/// The watchdog fired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// Soft reset: restart in place keeping memory.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// Highest shutdown reason.
pub const SHUTDOWN_MAX: u32 = 5;

xen_struct! {
    /// `SCHEDOP_shutdown` and `SCHEDOP_shutdown_code` (`struct sched_shutdown`).
    pub struct SchedShutdown: "struct sched_shutdown" {
        /// `SHUTDOWN_*`.
        pub reason: u32,
    }

    /// `SCHEDOP_poll` (`struct sched_poll`).
    pub struct SchedPoll: "struct sched_poll" {
        /// Ports to wait on.
        pub ports: GuestHandle<EvtchnPort>,
        /// Number of ports.
        pub nr_ports: u32,
        /// Padding before `timeout`.
        pub _pad: u32 as pad,
        /// Absolute system time to give up at (0: none).
        pub timeout: u64,
    }

    /// `SCHEDOP_remote_shutdown` (`struct sched_remote_shutdown`).
    pub struct SchedRemoteShutdown: "struct sched_remote_shutdown" {
        /// Domain to shut down.
        pub domain_id: DomId,
        /// Padding before `reason`.
        pub _pad: u16 as pad,
        /// `SHUTDOWN_*`.
        pub reason: u32,
    }

    /// `SCHEDOP_watchdog` (`struct sched_watchdog`).
    pub struct SchedWatchdog: "struct sched_watchdog" {
        /// 0 to allocate a watchdog, else its id.
        pub id: u32,
        /// Seconds until it fires; 0 destroys it.
        pub timeout: u32,
    }

    /// `SCHEDOP_pin_override` (`struct sched_pin_override`).
    pub struct SchedPinOverride: "struct sched_pin_override" {
        /// Physical CPU, or -1 to end the override.
        pub pcpu: i32,
    }
}
