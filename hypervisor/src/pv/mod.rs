// SPDX-License-Identifier: MIT OR Apache-2.0
//! PV guests: the virtual CPU's trap state, descriptors and page-table write
//! emulation (host-tested), and dom0's lifecycle and exits on the machine.

pub mod descriptor;
#[cfg(target_os = "none")]
mod dom0;
pub mod ptwr;
pub mod traps;

#[cfg(target_os = "none")]
pub use dom0::{INT80, from_guest, on_console_input, on_timer, start_dom0};
