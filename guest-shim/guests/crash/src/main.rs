// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: ends badly on purpose, to check how guest-shim and the hypervisor
//! report it. The command line picks the way:
//! - `panic`: a Rust panic; the runtime prints `guest panicked at ...` and the message,
//!   then shuts down with `SHUTDOWN_crash`;
//! - `stack-overflow`: unbounded recursion runs into the unmapped guard page below the
//!   runtime stack; with no trap table yet, the page fault kills the domain;
//! - `null-read`: reads address 0 (unmapped), the same way;
//! - `bad-iret`: calls `HYPERVISOR_iret` with a frame whose code selector (0x10, a
//!   ring-0 selector) a PV guest may not return to; the hypervisor crashes the domain.
//!
//! Anything else prints a usage line and crashes, so no run of this guest powers off.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::black_box;

use guest_shim::pv_abi::arch_x86::IretContext;
use guest_shim::{StartInfo, println};

guest_shim::entry!(start);

fn start(si: &'static StartInfo) {
    let mode = core::str::from_utf8(si.cmdline()).unwrap_or("");
    match mode {
        "panic" => {
            println!("crash: panicking");
            panic!("deliberate panic ({} pages)", si.nr_pages);
        }
        "stack-overflow" => {
            println!("crash: recursing, guard page {:#x}", guest_shim::stack_guard());
            let depth = recurse(0);
            println!("crash: recursion returned at depth {depth}?");
        }
        "null-read" => {
            println!("crash: reading address 0");
            // SAFETY: deliberately invalid: page 0 is not mapped, so the read faults and,
            // with no trap table, the domain dies before the value exists.
            let v = unsafe { core::ptr::read_volatile(black_box(core::ptr::null::<u64>())) };
            println!("crash: read {v:#x} at address 0?");
        }
        "bad-iret" => {
            let frame = IretContext {
                rip: start as *const () as usize as u64,
                cs: 0x10,
                rflags: 0x202,
                rsp: black_box(0u64),
                ss: 0x18,
                ..IretContext::default()
            };
            println!("crash: iret with cs {:#x}", frame.cs);
            // SAFETY: deliberately invalid: CS 0x10 is no selector a PV kernel may return
            // to, so the hypervisor refuses the frame and crashes the domain; nothing
            // after the call runs.
            unsafe { guest_shim::hypercalls().iret(&frame) }
        }
        other => println!("crash: unknown mode {other:?} (panic|stack-overflow|null-read|bad-iret)"),
    }
    guest_shim::crash()
}

/// Recurses with a page-sized frame until the stack runs out.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth as u8; 4096]);
    if depth > 1 << 20 {
        return depth;
    }
    recurse(depth + 1) + frame[black_box(0)] as u64
}

#[cfg(not(target_os = "none"))]
fn main() {}
