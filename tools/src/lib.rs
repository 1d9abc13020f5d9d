// SPDX-License-Identifier: MIT OR Apache-2.0
//! Host tools for the hypervisor project.
//!
//! - [`hvrun`]: builds a GRUB multiboot2 ISO with the hypervisor (or Xen 4.17) and its
//!   modules, boots it in QEMU, streams the serial console and gives a verdict
//!   (DESIGN.md 4.2). The binary is `src/bin/hvrun.rs`; the logic lives here so that it
//!   can be unit-tested on the host.

pub mod hvrun;
