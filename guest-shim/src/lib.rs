//! The runtime for PV guests written in Rust (grows with the PV execution issue).
#![no_std]
