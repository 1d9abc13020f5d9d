// SPDX-License-Identifier: MIT OR Apache-2.0
//! Unprivileged reads of CPU state: segment selectors, RFLAGS, the TSC.

use core::arch::asm;

macro_rules! read_selector {
    ($(#[$doc:meta])* $name:ident, $reg:literal) => {
        $(#[$doc])*
        pub fn $name() -> u16 {
            let v: u16;
            // SAFETY: reading a segment register has no side effect and is allowed at
            // any privilege level.
            unsafe {
                asm!(concat!("mov {0:x}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags));
            }
            v
        }
    };
}

read_selector!(
    /// The code segment selector; its low two bits are the current privilege level.
    cs, "cs"
);
read_selector!(
    /// The stack segment selector.
    ss, "ss"
);
read_selector!(
    /// The DS selector.
    ds, "ds"
);
read_selector!(
    /// The ES selector.
    es, "es"
);
read_selector!(
    /// The FS selector.
    fs, "fs"
);
read_selector!(
    /// The GS selector.
    gs, "gs"
);

/// RFLAGS.
pub fn rflags() -> u64 {
    let v: u64;
    // SAFETY: PUSHFQ/POP only touch the two stack slots they use.
    unsafe {
        asm!("pushfq", "pop {0}", out(reg) v, options(nomem, preserves_flags));
    }
    v
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effect (PV guests may execute it: CR4.TSD is clear).
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (hi as u64) << 32 | lo as u64
}

/// RFLAGS.IF.
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.IOPL (two bits).
pub const RFLAGS_IOPL_MASK: u64 = 3 << 12;
