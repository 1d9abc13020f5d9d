// SPDX-License-Identifier: MIT OR Apache-2.0
//! Domains: the builder of a PV domain's start of day and its ELF notes.

pub mod builder;
pub mod elfnotes;
