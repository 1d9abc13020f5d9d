// SPDX-License-Identifier: MIT OR Apache-2.0
//! Just enough guest user mode to make one write from it, on guest-shim's [`user`]
//! module: a user tree that also maps a given frame read-only at [`USER_TABLE_VA`],
//! and code that does `mov [rdi], rsi; ud2`. [`write_from_user`] enters user mode
//! there; the first exception from user mode (a #PF, or the #UD if the write went
//! through) is recorded by a handler that then goes back with [`user::leave`].

use core::sync::atomic::{AtomicU64, Ordering};

use guest_shim::mmu::USER_RO;
use guest_shim::pv_abi::Errno;
use guest_shim::traps::{self, Action, Trap, vector};
use guest_shim::user::{self, RFLAGS_RESERVED};

/// The user code page.
pub const USER_CODE_VA: u64 = user::CODE_VA;
/// Where the user sees the frame given to [`UserSpace::new`], read-only.
pub const USER_TABLE_VA: u64 = user::STACK_VA + 4096;

/// What ended the last stay in user mode: vector, error code, CR2, RIP.
static LAST: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

unsafe extern "C" {
    static ptwr_um_user_start: u8;
    static ptwr_um_user_end: u8;
}

/// An exception taken in user mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserFault {
    /// Its vector.
    pub vector: u8,
    /// Its error code.
    pub error_code: u64,
    /// CR2 (for a #PF).
    pub cr2: u64,
    /// The user RIP.
    pub rip: u64,
}

/// The user address space.
pub struct UserSpace(user::UserSpace);

impl UserSpace {
    /// Builds, pins and registers the user tree, with frame `table_mfn` read-only at
    /// [`USER_TABLE_VA`]. On error, says which step failed.
    pub fn new(table_mfn: u64) -> Result<Self, (&'static str, Errno)> {
        // SAFETY: the labels delimit the assembled user code below.
        let code = unsafe { user::code_between(&raw const ptwr_um_user_start, &raw const ptwr_um_user_end) };
        let mut us = user::UserSpace::new(code)?;
        // SAFETY: the tree is not in use; the user sees the table read-only.
        unsafe { us.map(USER_TABLE_VA, (table_mfn << 12) | USER_RO) }.map_err(|e| ("map table", e))?;
        us.activate()?;
        user::init().map_err(|e| ("stack_switch", e))?;
        Ok(Self(us))
    }

    /// Unregisters the tree and gives its pages back.
    pub fn destroy(self) -> Result<(), Errno> {
        self.0.destroy()
    }
}

/// Records an exception from user mode and goes back to [`user::enter`]'s caller;
/// kernel-mode exceptions go on to `catch` as usual.
fn leave_user(t: &Trap) -> Action {
    if t.frame.from_kernel() {
        return Action::Unhandled;
    }
    for (slot, v) in LAST.iter().zip([t.vector() as u64, t.error_code(), t.cr2, t.rip()]) {
        slot.store(v, Ordering::SeqCst);
    }
    // SAFETY: user mode was entered through `user::enter`; the frames on the kernel
    // stack of this entry (this handler, guest-shim's dispatcher) hold nothing that
    // needs dropping.
    unsafe { user::leave() }
}

/// Runs `mov [addr], val` in user mode and returns the exception that ended it.
pub fn write_from_user(addr: u64, val: u64) -> UserFault {
    let shared = guest_shim::shared_info::map().ok();
    let mask = shared.as_ref().map(|s| s.upcall_mask(0));
    let handled = [vector::PF, vector::UD, vector::GP];
    let old = handled.map(|v| traps::set_handler(v, Some(leave_user)));
    LAST[0].store(u64::MAX, Ordering::SeqCst);
    // Events masked in user mode: RFLAGS.IF clear.
    let frame = user::user_frame(USER_CODE_VA, user::STACK_TOP, RFLAGS_RESERVED);
    // SAFETY: `UserSpace::new` ran `user::init` and set the user base; `leave_user`
    // comes back through `user::leave`. The user code touches nothing but `addr`,
    // read-only for it.
    unsafe { user::enter(&frame, addr, val) };
    for (v, h) in handled.into_iter().zip(old) {
        traps::set_handler(v, h);
    }
    if let (Some(s), Some(m)) = (shared, mask) {
        s.set_upcall_mask(0, m);
    }
    let [v, e, c, r] = LAST.each_ref().map(|a| a.load(Ordering::SeqCst));
    UserFault { vector: v as u8, error_code: e, cr2: c, rip: r }
}

core::arch::global_asm!(
    ".pushsection .text.ptwr_user_mode, \"ax\"",
    // The user code, copied to USER_CODE_VA.
    ".global ptwr_um_user_start",
    "ptwr_um_user_start:",
    "mov qword ptr [rdi], rsi",
    "ud2",
    ".global ptwr_um_user_end",
    "ptwr_um_user_end:",
    ".popsection",
);
