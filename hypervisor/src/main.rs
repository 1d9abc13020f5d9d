// SPDX-License-Identifier: MIT OR Apache-2.0
//! A ring-0 paravirtualization microkernel speaking Xen's x86_64 PV guest ABI.
//!
//! Built for `x86_64-unknown-none` this is the hypervisor image; built for the
//! host it is a test harness for the machine-independent logic (`cargo test`).
//! `unsafe` lives in `arch` only.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code))]
#![deny(unsafe_code)]

extern crate alloc;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod arch;
mod boot;
mod cmdline;
#[cfg(target_os = "none")]
mod console;
mod domain;
mod elf;
mod evtchn;
mod gnttab;
mod hal;
mod hypercall;
mod mm;
mod priv_op;
mod pv;
// Not wired in yet: the policy is host-tested until domains share the CPU.
#[cfg_attr(target_os = "none", allow(dead_code))]
mod sched;
#[cfg(target_os = "none")]
mod setup;
mod symbols;
mod time;
#[cfg(target_os = "none")]
mod trap;

#[cfg(target_os = "none")]
pub use setup::{hv_main, symbol_tables};

/// How a run ends (DESIGN 4.6): the code written to QEMU's isa-debug-exit.
pub mod exit_code {
    pub const POWEROFF: u8 = 0;
    pub const REBOOT: u8 = 1;
    pub const CRASH: u8 = 2;
    pub const PANIC: u8 = 3;
    /// No dom0 module, a bad module, or a boot configuration we cannot run.
    pub const BAD_CONFIG: u8 = 4;
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor runs on bare metal: build it with `make` and boot it with `build/bin/hvrun`");
    std::process::exit(1);
}
