// SPDX-License-Identifier: MIT OR Apache-2.0
//! Domains: the builder of a PV domain's start of day, its ELF notes, and
//! the command line of a boot-time domU.

pub mod builder;
// Not wired in yet: boot-time domUs come with multi-domain scheduling.
#[cfg_attr(target_os = "none", allow(dead_code))]
pub mod config;
pub mod elfnotes;
