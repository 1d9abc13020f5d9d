// SPDX-License-Identifier: MIT OR Apache-2.0
//! Machine memory: the memory map, the frame allocator and the frame table.

pub mod frame;
pub mod frame_table;
pub mod guest_pt;
pub mod memmap;
