// SPDX-License-Identifier: MIT OR Apache-2.0
//! A vCPU's FPU/SSE/AVX state while another vCPU runs. The hypervisor is
//! soft-float, so the live state is always the running guest's; switching
//! domains saves it here and loads the next one's (eagerly: switches are
//! rare next to hypercalls).

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, Ordering};

/// x87 + SSE legacy area, XSAVE header and AVX: what XCR0 may hold here.
const AREA: usize = 1024;
/// Offsets in the legacy area: FCW and MXCSR.
const FCW: usize = 0;
const MXCSR: usize = 24;

static USE_XSAVE: AtomicBool = AtomicBool::new(false);

/// Chooses XSAVE/XRSTOR (after `cpu::enable_xsave`) or FXSAVE/FXRSTOR.
pub fn init(xsave: bool) {
    USE_XSAVE.store(xsave, Ordering::Relaxed);
}

#[repr(C, align(64))]
struct Area([u8; AREA]);

/// Saved FPU state, 64-byte aligned as XSAVE requires.
pub struct FpuState(Box<Area>);

impl FpuState {
    /// The state after reset (FNINIT, default MXCSR); the XSAVE header's
    /// zero XSTATE_BV makes XRSTOR initialise every component.
    pub fn new() -> Self {
        let mut a = Box::new(Area([0; AREA]));
        a.0[FCW..FCW + 2].copy_from_slice(&0x37fu16.to_le_bytes());
        a.0[MXCSR..MXCSR + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
        FpuState(a)
    }

    /// Saves the live state (CR0.TS must be clear).
    pub fn save(&mut self) {
        let p = self.0.0.as_mut_ptr();
        // SAFETY: `p` is a 64-byte aligned buffer of AREA bytes, more than
        // the XSAVE size of x87|SSE|AVX (832) and FXSAVE's 512.
        unsafe {
            if USE_XSAVE.load(Ordering::Relaxed) {
                core::arch::asm!("xsave64 [{}]", in(reg) p, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack));
            } else {
                core::arch::asm!("fxsave64 [{}]", in(reg) p, options(nostack));
            }
        }
    }

    /// Loads the saved state (CR0.TS must be clear, XCR0 the vCPU's).
    pub fn restore(&self) {
        let p = self.0.0.as_ptr();
        // SAFETY: the area was written by `save` or `new` (a valid legacy area
        // with MXCSR's reserved bits clear, and a valid standard-form XSAVE
        // header), so XRSTOR/FXRSTOR cannot fault.
        unsafe {
            if USE_XSAVE.load(Ordering::Relaxed) {
                core::arch::asm!("xrstor64 [{}]", in(reg) p, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack));
            } else {
                core::arch::asm!("fxrstor64 [{}]", in(reg) p, options(nostack));
            }
        }
    }
}

impl Default for FpuState {
    fn default() -> Self {
        Self::new()
    }
}
