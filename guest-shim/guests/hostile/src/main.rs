// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: calls hypercalls 0..=63 with hostile pointer-like arguments (all five
//! arguments the same: 0, 1, an address in the hypervisor's hole, a non-canonical
//! address, `u64::MAX`) and checks that each call comes back with 0 or a negative
//! errno, and that the guest still works afterwards.
//!
//! Skipped: the calls whose non-pointer arguments alone change how the run goes
//! (`stack_switch`, `set_callbacks`, `fpu_taskswitch`, `sched_op_compat`,
//! `set_timer_op`, `iret`, `set_segment_base`, `sched_op`, `callback_op`, `sysctl`,
//! `domctl`). Calls that legitimately return a count or value (`get_debugreg`,
//! `memory_op`, `xen_version`, `console_io`, `hypfs_op`) are recorded, not checked.
//!
//! Every call prints `hostile: nr=N args=NAME ret=R` so runs on Xen and on our
//! hypervisor can be compared line by line.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::black_box;

use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::hypercall::*;
use guest_shim::{StartInfo, Tests, println};

guest_shim::entry!(start);

/// The argument patterns: a name and the value passed in all five argument registers.
const PATTERNS: [(&str, u64); 5] = [
    ("zero", 0),
    ("one", 1),
    ("xen-hole", 0xffff_8300_0000_0000),
    ("non-canonical", 0x8000_0000_0000),
    ("all-ones", u64::MAX),
];

/// Calls not made: their plain arguments can change the run (stack, callbacks, FPU,
/// blocking, timers, control flow, segment bases, shutdown, toolstack operations).
const SKIPPED: &[u32] = &[
    HYPERVISOR_STACK_SWITCH,
    HYPERVISOR_SET_CALLBACKS,
    HYPERVISOR_FPU_TASKSWITCH,
    HYPERVISOR_SCHED_OP_COMPAT,
    HYPERVISOR_SET_TIMER_OP,
    HYPERVISOR_IRET,
    HYPERVISOR_SET_SEGMENT_BASE,
    HYPERVISOR_SCHED_OP,
    HYPERVISOR_CALLBACK_OP,
    HYPERVISOR_SYSCTL,
    HYPERVISOR_DOMCTL,
];

/// Calls that may return a positive value (a register, a version, a count): recorded.
const MAY_RETURN_VALUE: &[u32] = &[
    HYPERVISOR_GET_DEBUGREG,
    HYPERVISOR_MEMORY_OP,
    HYPERVISOR_XEN_VERSION,
    HYPERVISOR_CONSOLE_IO,
    HYPERVISOR_HYPFS_OP,
];

/// A value the guest keeps in its data and checks after the calls.
static CANARY: [u64; 4] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210, 0, u64::MAX];

fn start(_si: &'static StartInfo) {
    let xen = guest_shim::hypercalls();
    let version = xen.xen_version();
    let stack_canary = black_box([0x5a5a_5a5a_5a5a_5a5au64; 8]);
    println!("hostile: xen_version {}.{}", version.0, version.1);
    let mut t = Tests::new();
    for nr in 0..=63u32 {
        if SKIPPED.contains(&nr) {
            continue;
        }
        for (name, v) in PATTERNS {
            // SAFETY: deliberately hostile arguments: the hypervisor must refuse (or do
            // nothing harmful with) pointers to page 0, its own hole, non-canonical
            // addresses and the top of the address space. The calls that could change
            // the guest's control flow, stack or callbacks with such values are skipped.
            let ret = unsafe { xen.call(nr, v, v, v, v, v) };
            let err = Errno::from_ret(ret).map_or("", Errno::name);
            println!("hostile: nr={nr} args={name} ret={ret} {err}");
            let test = guest_shim::report::FixedStr::<64>::format(format_args!("hc-{nr}-{name}"));
            if MAY_RETURN_VALUE.contains(&nr) {
                t.pass(test.as_str());
            } else {
                t.check(
                    test.as_str(),
                    guest_shim::Outcome::ensure(
                        ret == 0 || Errno::from_ret(ret).is_some(),
                        format_args!("returned {ret:#x}: neither 0 nor -errno"),
                    ),
                );
            }
        }
    }
    // The guest still works: console, version, its data and stack untouched.
    t.check("console-after", xen.console_write(b"hostile: console still works\n"));
    t.check_eq("xen-version-after", xen.xen_version(), version);
    t.check_eq("canary-after", black_box(&CANARY)[1], 0xfedc_ba98_7654_3210);
    t.check_eq("stack-after", black_box(stack_canary), [0x5a5a_5a5a_5a5a_5a5au64; 8]);
    t.check("yield-after", xen.sched_yield());
    t.finish()
}

#[cfg(not(target_os = "none"))]
fn main() {}
