// SPDX-License-Identifier: MIT OR Apache-2.0
//! Split-driver and shared-page protocols. Mirrors `xen/include/public/io/`.
//!
//! These are not hypercalls: they are layouts of pages that two domains share (through
//! grants or start-of-day frames) and signal each other about over event channels.

pub mod blkif;
pub mod console;
pub mod netif;
pub mod ring;
pub mod xs_wire;
