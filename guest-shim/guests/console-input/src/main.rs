// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: serial input reaches dom0 through VIRQ_CONSOLE and
//! `CONSOLEIO_read`, on Xen 4.17 and on ours.
//!
//! The guest binds VIRQ_CONSOLE, prints a `console-input: ready` line and
//! blocks; the test harness types `hello, dom0\n` into the serial port when it
//! sees that line (`hvrun --send`). Checked: the event arrives on the VIRQ's
//! port, `CONSOLEIO_read` returns the bytes in order (possibly over several
//! reads), and afterwards, with nothing left, returns 0. The wait has a 60 s
//! safety net so that a hypervisor that never delivers fails instead of hanging.
//! (Xen gives dom0 the serial input once it has booted: "Serial input to DOM0".)

#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_shim::events::{self, NS_PER_SEC};
use guest_shim::pv_abi::xen::VIRQ_CONSOLE;
use guest_shim::{Outcome, StartInfo, Tests, println};

guest_shim::entry!(start);

/// What the harness types.
const EXPECTED: &[u8] = b"hello, dom0\n";
const SAFETY_NET: u64 = 60 * NS_PER_SEC;

fn start(_si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let Ok(bits) = events::install() else {
        t.fail("events-install", "no event callback");
        t.finish();
    };
    let port = match xen.evtchn_bind_virq(VIRQ_CONSOLE, 0) {
        Ok(p) => {
            t.pass("bind-virq-console");
            p
        }
        Err(e) => {
            t.fail("bind-virq-console", e);
            t.finish();
        }
    };
    let mut none = [0u8; 4];
    t.check("read-before-input-empty", Outcome::ok_eq(xen.console_read(&mut none), 0));

    println!("console-input: ready");
    let deadline = events::now() + SAFETY_NET;
    let mut got = [0u8; 64];
    let mut n = 0;
    let mut event_seen = false;
    while n < EXPECTED.len() && events::now() < deadline {
        // Block with events enabled until the console VIRQ (or the safety timer).
        let _ = xen.set_timer_op(deadline);
        let _ = xen.sched_block();
        if bits.is_pending(port) || events::count(port) > 0 {
            event_seen = true;
            bits.clear_pending(port);
        }
        match xen.console_read(&mut got[n..]) {
            Ok(k) => n += k,
            Err(e) => {
                t.fail("console-read", e);
                break;
            }
        }
    }
    let _ = xen.set_timer_op(0);
    t.check("virq-console-delivered", Outcome::ensure(event_seen, "no event on the VIRQ_CONSOLE port"));
    t.check(
        "input-read-in-order",
        Outcome::ensure(
            &got[..n] == EXPECTED,
            format_args!("read {:?}", core::str::from_utf8(&got[..n]).unwrap_or("(not UTF-8)")),
        ),
    );
    t.check("read-after-input-empty", Outcome::ok_eq(xen.console_read(&mut none), 0));
    t.finish();
}

#[cfg(not(target_os = "none"))]
fn main() {}
