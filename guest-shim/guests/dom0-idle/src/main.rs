// SPDX-License-Identifier: MIT OR Apache-2.0
//! A dom0 that serves nothing: it sleeps on VIRQ_DOM_EXC until no domU is
//! left, then powers the machine off with the last domU's shutdown reason
//! (crash if it crashed), so a run with one domU (a Linux kernel, say) ends
//! when that domU does and says how.

#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_shim::pv_abi::domctl::{XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWNMASK, XEN_DOMINF_SHUTDOWNSHIFT};
use guest_shim::pv_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};
use guest_shim::pv_abi::xen::VIRQ_DOM_EXC;
use guest_shim::{StartInfo, println};

guest_shim::entry!(start);

fn start(_si: &'static StartInfo) {
    let xen = guest_shim::hypercalls();
    let port = match xen.evtchn_bind_virq(VIRQ_DOM_EXC, 0) {
        Ok(p) => p,
        Err(e) => {
            println!("dom0-idle: cannot bind VIRQ_DOM_EXC: {e}");
            guest_shim::shutdown(SHUTDOWN_CRASH)
        }
    };
    println!("dom0-idle: waiting for the domUs to end");
    let mut last = SHUTDOWN_POWEROFF;
    loop {
        match xen.domctl_getdomaininfo(1) {
            Ok(info) if info.flags & XEN_DOMINF_SHUTDOWN != 0 => {
                last = (info.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK;
            }
            Ok(_) => {}
            Err(_) => break,
        }
        // Woken by the next domain event (a shutdown or destruction).
        let _ = xen.sched_poll(&[port], 0);
        guest_shim::events::bitmaps().map(|b| b.clear_pending(port)).ok();
    }
    println!("dom0-idle: no domU left: powering off");
    guest_shim::shutdown(last)
}

#[cfg(not(target_os = "none"))]
fn main() {}
