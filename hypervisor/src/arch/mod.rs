// SPDX-License-Identifier: MIT OR Apache-2.0
//! The machine layer. Only x86_64 exists.

pub mod x86_64;
pub use self::x86_64::*;
