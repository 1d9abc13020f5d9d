// SPDX-License-Identifier: MIT OR Apache-2.0
//! Micro-benchmarks of the PV ABI, run by `make bench` (DESIGN 4.5) on this
//! hypervisor and on Xen 4.17.
//!
//! Each benchmark times batches of operations ([`OPS_PER_BATCH`] unless the operation is
//! long) with RDTSC and prints the median over [`BATCHES`] batches (after one warm-up
//! batch) as `BENCH <name> <value> cycles/op` (DESIGN 4.4). Under QEMU's
//! `-icount shift=0,sleep=off` the TSC advances once per guest instruction, so the
//! figure is the path length in instructions; under plain TCG it is scaled wall time.
//! A benchmark that cannot run prints `BENCH-SKIP <name>: why`. Nothing passes or
//! fails here.
//!
//! The benchmarks: `empty-loop` (the timing loop alone), `null-hypercall`,
//! `console-io-empty`, `sched-yield`, `trap-bounce`, `event-self-send`, `evtchn-rtt`,
//! the PV MMU ones of [`mmu_bench`] (`mmu-update-512`, `update-va-mapping-invlpg`,
//! `pin-unpin-l4`, `new-baseptr`), the grant-table ones of [`gnttab_bench`]
//! (`gnttab-copy-4k`, `gnttab-copy-64k`, each also per KiB as `...-per-kib` in
//! `cycles/KiB`, and `gnttab-map-unmap`) and last `syscall-bounce`, which leaves user
//! mode set up.
//!
//! `evtchn-rtt` is the self-domain form of an interdomain round trip: ports A and B
//! from `EVTCHNOP_alloc_unbound` (`DOMID_SELF` to `DOMID_SELF`) and
//! `EVTCHNOP_bind_interdomain` to it; one round trip is a send on A, whose event
//! arrives on B through the upcall on the way back from the hypercall, then a send on B,
//! arriving on A the same way. Xen 4.17 accepts this pair for dom0 (the events guest
//! checks it).
//!
//! With the command line `interdomain` (dom0) and `peer` (domU 1), two copies of this
//! guest run the benchmarks between domains of [`interdomain`] instead
//! (`evtchn-rtt-interdomain`, `domain-switch`, `gnttab-copy-4k-interdomain`,
//! `gnttab-copy-64k-interdomain`, `gnttab-map-unmap-interdomain`): on this project's
//! hypervisor only, since Xen 4.17 boots no domU without a toolstack.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod gnttab_bench;
#[cfg(target_os = "none")]
mod interdomain;
#[cfg(target_os = "none")]
mod mmu_bench;
#[cfg(target_os = "none")]
mod peer;
#[cfg(target_os = "none")]
mod user;

#[cfg(target_os = "none")]
use guest_shim::pv_abi::hypercall::{HYPERVISOR_CONSOLE_IO, HYPERVISOR_XEN_VERSION};
#[cfg(target_os = "none")]
use guest_shim::pv_abi::version::XENVER_VERSION;
#[cfg(target_os = "none")]
use guest_shim::pv_abi::xen::CONSOLEIO_WRITE;
use guest_shim::{StartInfo, println};

guest_shim::entry!(start);

/// Operations per timed batch (for operations of up to a few thousand instructions).
#[cfg(target_os = "none")]
const OPS_PER_BATCH: u64 = 1000;
/// Timed batches per benchmark (the median is reported).
#[cfg(target_os = "none")]
const BATCHES: usize = 15;

/// Runs `op` in [`BATCHES`] batches of [`OPS_PER_BATCH`] and returns the median cost
/// of one operation in tenths of a TSC tick.
#[cfg(target_os = "none")]
fn measure(op: impl FnMut()) -> u64 {
    measure_ops(OPS_PER_BATCH, op)
}

/// Like [`measure`] with `ops` operations per batch, for long operations.
#[cfg(target_os = "none")]
fn measure_ops(ops: u64, mut op: impl FnMut()) -> u64 {
    let mut per_op = [0u64; BATCHES];
    // One warm-up batch (cold caches and TLBs, first-time paths), not counted.
    for _ in 0..ops {
        op();
    }
    for slot in per_op.iter_mut() {
        let t0 = tsc();
        for _ in 0..ops {
            op();
        }
        let t1 = tsc();
        *slot = t1.wrapping_sub(t0) * 10 / ops;
    }
    median(&mut per_op)
}

/// Like [`measure`] for operations that come in batches: `batch(n)` does `n` of them.
#[cfg(target_os = "none")]
fn measure_batches(mut batch: impl FnMut(u64)) -> u64 {
    let mut per_op = [0u64; BATCHES];
    batch(OPS_PER_BATCH);
    for slot in per_op.iter_mut() {
        let t0 = tsc();
        batch(OPS_PER_BATCH);
        let t1 = tsc();
        *slot = t1.wrapping_sub(t0) * 10 / OPS_PER_BATCH;
    }
    median(&mut per_op)
}

/// The median of `v` (the upper one for an even length).
#[cfg(target_os = "none")]
fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Prints one `BENCH` line; `tenths` is in tenths of a cycle per operation.
#[cfg(target_os = "none")]
fn report(name: &str, tenths: u64) {
    report_unit(name, tenths, "cycles/op");
}

/// Prints one `BENCH` line of a figure in tenths of `unit` (a word such as `cycles/KiB`).
#[cfg(target_os = "none")]
fn report_unit(name: &str, tenths: u64, unit: &str) {
    println!("BENCH {name} {}.{} {unit}", tenths / 10, tenths % 10);
}

#[cfg(target_os = "none")]
fn tsc() -> u64 {
    guest_shim::cpu::rdtsc()
}

#[cfg(target_os = "none")]
fn start(si: &'static StartInfo) {
    use core::hint::black_box;
    use guest_shim::traps::{self, Action, Trap, vector};

    // The interdomain benchmarks: two copies of this guest, dom0 and domU 1.
    let line = core::str::from_utf8(si.cmdline()).unwrap_or("");
    for word in line.split_ascii_whitespace() {
        match word {
            "interdomain" => return interdomain::run(si),
            "peer" => return peer::run(si),
            _ => {}
        }
    }

    let xen = guest_shim::hypercalls();
    let (major, minor) = xen.xen_version();
    println!("bench: running on Xen ABI {major}.{minor}, {BATCHES} batches of {OPS_PER_BATCH}");

    // The loop alone (RDTSC pairs and loop control), for reference.
    report("empty-loop", measure(|| black_box(())));

    // xen_version(XENVER_version): the cheapest hypercall there is.
    report(
        "null-hypercall",
        measure(|| {
            // SAFETY: XENVER_version takes no buffer.
            let v = unsafe { xen.call(HYPERVISOR_XEN_VERSION, XENVER_VERSION as u64, 0, 0, 0, 0) };
            black_box(v);
        }),
    );

    // console_io(CONSOLEIO_write) of zero bytes: dispatch and argument checks only.
    let empty = [0u8; 1];
    // SAFETY: a write of 0 bytes; the hypervisor reads nothing from the buffer.
    let first =
        unsafe { xen.call(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE as u64, 0, empty.as_ptr() as u64, 0, 0) };
    if first < 0 {
        println!("BENCH-SKIP console-io-empty: console_io write of 0 bytes returned {first}");
    } else {
        report(
            "console-io-empty",
            measure(|| {
                // SAFETY: as above.
                let r = unsafe {
                    xen.call(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE as u64, 0, empty.as_ptr() as u64, 0, 0)
                };
                black_box(r);
            }),
        );
    }

    // sched_op(SCHEDOP_yield) with nothing else runnable.
    match xen.sched_yield() {
        Ok(()) => report(
            "sched-yield",
            measure(|| {
                let _ = black_box(xen.sched_yield());
            }),
        ),
        Err(e) => println!("BENCH-SKIP sched-yield: SCHEDOP_yield failed: {e}"),
    }

    // int3 -> Xen -> the guest's #BP handler -> HYPERVISOR_iret back: one bounce.
    fn resume(_t: &Trap) -> Action {
        Action::Resume
    }
    match traps::install() {
        Ok(()) => {
            traps::set_handler(vector::BP, Some(resume));
            report(
                "trap-bounce",
                measure(|| {
                    // SAFETY: the #BP handler resumes after int3 with every register
                    // restored; int3 touches no memory of ours.
                    unsafe { core::arch::asm!("int3") };
                }),
            );
            traps::set_handler(vector::BP, None);
        }
        Err(e) => println!("BENCH-SKIP trap-bounce: traps::install failed: {e}"),
    }

    // Event self-send: EVTCHNOP_send on an IPI port, the upcall on the way
    // back, the callback's handling of the port, HYPERVISOR_iret: one event.
    match guest_shim::events::install().and_then(|_| xen.evtchn_bind_ipi(0)) {
        Ok(port) => {
            guest_shim::events::enable();
            let before = guest_shim::events::count(port);
            let figure = measure(|| {
                let _ = xen.evtchn_send(port);
            });
            let delivered = guest_shim::events::count(port) - before;
            guest_shim::events::disable();
            // One upcall per send (warm-up batch included), or the figure is not
            // what it claims to be.
            let sends = (BATCHES as u64 + 1) * OPS_PER_BATCH;
            if u64::from(delivered) == sends {
                report("event-self-send", figure);
            } else {
                println!("BENCH-SKIP event-self-send: {delivered} upcalls for {sends} sends");
            }
        }
        Err(e) => println!("BENCH-SKIP event-self-send: events::install or bind_ipi failed: {e}"),
    }

    // An interdomain round trip within the domain: send on A, upcall for B, send on B,
    // upcall for A.
    evtchn_rtt();

    // The PV MMU: page-table updates, validation and address-space switches.
    for (name, bench) in mmu_bench::ALL {
        match bench() {
            Ok(figure) => report(name, figure),
            Err((step, e)) => println!("BENCH-SKIP {name}: {step} failed: {e}"),
        }
    }

    // Grant tables: copies and mappings of grants to ourselves.
    gnttab_bench::run(si);

    // SYSCALL from guest user mode -> Xen -> the kernel's SYSCALL callback ->
    // HYPERVISOR_iret with VGCF_in_syscall -> SYSRET to user mode: one bounce. Each
    // batch is one stay in user mode (one iret in and one SYSCALL out per batch on top).
    // Last: it changes the address space and the SYSCALL callback for good.
    match user::setup() {
        Ok(_space) => {
            let mut missed = 0;
            let figure = measure_batches(|n| missed += user::bounce(n));
            if missed == 0 {
                report("syscall-bounce", figure);
            } else {
                println!("BENCH-SKIP syscall-bounce: the user code missed {missed} SYSCALLs");
            }
        }
        Err((step, e)) => println!("BENCH-SKIP syscall-bounce: user-mode setup failed at {step}: {e}"),
    }

    println!("bench: done");
}

/// `evtchn-rtt`: prints the figure per round trip, or why there is none.
#[cfg(target_os = "none")]
fn evtchn_rtt() {
    use guest_shim::events;
    use guest_shim::pv_abi::xen::DOMID_SELF;

    let xen = guest_shim::hypercalls();
    let pair = events::install().map_err(|e| ("events::install", e)).and_then(|_| {
        let a = xen.evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF).map_err(|e| ("alloc_unbound", e))?;
        match xen.evtchn_bind_interdomain(DOMID_SELF, a) {
            Ok(b) => Ok((a, b)),
            Err(e) => {
                let _ = xen.evtchn_close(a);
                Err(("bind_interdomain", e))
            }
        }
    });
    let (a, b) = match pair {
        Ok(pair) => pair,
        Err((step, e)) => {
            println!("BENCH-SKIP evtchn-rtt: {step} failed: {e}");
            return;
        }
    };
    events::enable();
    let (a0, b0) = (events::count(a), events::count(b));
    let figure = measure(|| {
        let _ = xen.evtchn_send(a);
        let _ = xen.evtchn_send(b);
    });
    let (to_a, to_b) = (events::count(a) - a0, events::count(b) - b0);
    events::disable();
    let _ = xen.evtchn_close(a);
    let _ = xen.evtchn_close(b);
    // One upcall per send on each side (warm-up batch included): a send that found its
    // event still pending would have been merged and missed here, so every event
    // arrived before the next send on that port.
    let trips = (BATCHES as u64 + 1) * OPS_PER_BATCH;
    if u64::from(to_a) == trips && u64::from(to_b) == trips {
        report("evtchn-rtt", figure);
    } else {
        println!("BENCH-SKIP evtchn-rtt: {to_a} upcalls on A and {to_b} on B for {trips} round trips");
    }
}

#[cfg(not(target_os = "none"))]
fn start(_si: &'static StartInfo) {
    println!("the bench guest runs only in a PV guest");
}

#[cfg(not(target_os = "none"))]
fn main() {}
