// SPDX-License-Identifier: MIT OR Apache-2.0
//! PV guests: the virtual CPU's trap state, descriptors, page-table write
//! emulation and the console ring (host-tested), and on the machine the
//! domains (`domain`: building, switching, scheduling, teardown) and what
//! brings a vCPU back to the hypervisor (`vcpu`).

pub mod descriptor;
#[cfg(target_os = "none")]
mod domain;
pub mod ptwr;
pub mod traps;
#[cfg(target_os = "none")]
mod vcpu;
pub mod xencons;

#[cfg(target_os = "none")]
pub use domain::{on_console_input, on_timer, start};
#[cfg(target_os = "none")]
pub use vcpu::{INT80, from_guest};
