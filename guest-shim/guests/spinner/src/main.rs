// SPDX-License-Identifier: MIT OR Apache-2.0
//! A boot-time **domU** that burns CPU for ever: it prints one line through its console
//! ring (`(dN) spinner: <its command line>`), waits until the backend has taken it,
//! then loops without a hypercall, never blocking or yielding. Only the scheduler
//! takes the CPU from it; dom0 (`sched-share`) measures its `cpu_time` and destroys it.
//!
//! ```text
//! build/bin/hvrun --timeout 300 build/guests/sched-share.elf \
//!   'build/guests/spinner.elf:domu name=w256 mem=8 weight=256 -- w256' ...
//! ```
//!
//! The command line is only printed (a label for the log).

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};

use guest_shim::events::NS_PER_SEC;
use guest_shim::{StartInfo, console, println};

guest_shim::entry!(start);

/// Loop iterations: kept in memory so the loop is real work, not an empty `jmp .`.
static SPINS: AtomicU64 = AtomicU64::new(0);

fn start(si: &'static StartInfo) {
    let line = core::str::from_utf8(si.cmdline()).unwrap_or("(not UTF-8)");
    println!("spinner: {line}");
    // The line must reach the console before the domain stops giving up the CPU.
    console::drain(NS_PER_SEC);
    loop {
        SPINS.fetch_add(1, Ordering::Relaxed);
        core::hint::spin_loop();
    }
}

// On the host (`cargo test --workspace`) the guest is an empty program.
#[cfg(not(target_os = "none"))]
fn main() {}
