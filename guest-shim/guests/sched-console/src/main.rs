// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: `sched_op`, `console_io`, `xen_version` and `multicall` as dom0, the parts
//! no other guest covers (boot-state has yield, a bad SCHEDOP, `XENVER_version`,
//! capabilities, features and platform parameters; events has `SCHEDOP_block` on a timer
//! and on a pending event). One `RESULT` line per check, then `SUMMARY`, then the end of
//! the run, which is itself a check (see the last item).
//!
//! What is checked, against Xen 4.17 (`common/sched/core.c`, `arch/x86/compat.c`,
//! `drivers/char/console.c`, `common/kernel.c`, `common/multicall.c`,
//! `arch/x86/pv/hypercall.c` and `iret.c`):
//! - `sched_op`: yield; the command is a C `int` (bit 32 ignored); unknown commands
//!   -ENOSYS; every command with an argument structure gives -EFAULT for a bad pointer
//!   before acting (shutdown included); `sched_op_compat` (yield only here);
//! - `SCHEDOP_poll`: returns at once when a listed port is pending (and leaves it
//!   pending, events still masked), looking at ports in order up to the first pending
//!   one; -EINVAL for a port beyond the 2-level limit and for more than 128 ports;
//!   -EFAULT for a bad list or one running into an unmapped page; sleeps until the
//!   timeout (absolute system time, then returns 0) with or without ports; a past
//!   timeout returns; wakes when a listed *masked* port becomes pending through
//!   VIRQ_TIMER; `SCHEDOP_block` on a masked pending port sleeps until the timer;
//! - `set_timer_op` with a deadline more than 2^50 ns away or negative fires 100 ms later;
//! - `SCHEDOP_watchdog` (timeouts of an hour: none fires), `SCHEDOP_pin_override`,
//!   `SCHEDOP_remote_shutdown` of domains that do not exist, `SCHEDOP_shutdown_code`;
//! - `console_io`: writes of bad buffers, zero, large and non-UTF-8 lengths, a buffer
//!   running into an unmapped page; reads with no input; unknown commands;
//! - `xen_version`: every sub-op of 4.17 (strings NUL-terminated, printable, zero-padded,
//!   shapes rather than values), each fixed-size one writing exactly its structure,
//!   features a 64-bit PV dom0 can use, `build_id` with no, short and zero-length
//!   buffers, the later `*2` sub-ops (-ENOSYS on 4.17), unknown sub-ops, bad pointers;
//! - `multicall`: a batch with each result written back, failing entries among good
//!   ones, a nested multicall, empty and bad lists, a list running into an unmapped
//!   page, the count's width, `HYPERVISOR_iret` inside a batch;
//! - last: with poweroff latched by `SCHEDOP_shutdown_code`, dom0 shuts itself down with
//!   `SCHEDOP_remote_shutdown(0, reboot)`: the run must end in a clean poweroff (a
//!   reboot, crash or return fails it).
//!
//! What Xen does that is easy to get wrong:
//! - `SCHEDOP_poll` does not need events masked, but an event due for delivery
//!   (`evtchn_upcall_pending` with events unmasked) ends it at once, before the ports are
//!   looked at: a bad port is not -EINVAL then. And any *unmasked* port becoming pending
//!   ends it too, listed or not (it raises `evtchn_upcall_pending`, which kicks the
//!   vCPU), even with events masked; a listed masked port ends it without an upcall flag.
//! - Lists of 0 entries (poll ports, multicall) are not read, but their address is still
//!   range-checked: an address in the hypervisor hole or non-canonical is -EFAULT, an
//!   unmapped lower-half one is fine. The range check looks at the start address only.
//! - `SCHEDOP_watchdog` with no free slot returns -ENOSPC computed in an `unsigned int`:
//!   the guest gets 0xffffffe4, not -28. A new watchdog with timeout 0 fires at once (not
//!   tried here: it shuts the domain down).
//! - `SCHEDOP_shutdown_code` keeps the first code: later ones return 0 and are ignored,
//!   and a later shutdown with another reason uses the latched code. `remote_shutdown`
//!   of dom0 by dom0 is allowed and shuts the machine down; `DOMID_SELF` there is -ESRCH.
//! - `SCHEDOP_pin_override(-1)` without a pin is -EINVAL; pinning twice is -EBUSY.
//! - `CONSOLEIO_write` copies and prints 127-byte chunks: a buffer running into an
//!   unmapped page prints its first chunk, then fails with -EFAULT. `CONSOLEIO_read` with
//!   no input returns 0 without touching the buffer (a bad one is not -EFAULT); a count
//!   above INT_MAX is -E2BIG. The command and count are `unsigned int`s.
//! - `XENVER_pagesize` with a non-null argument is -EINVAL. Debian's 4.17 has an empty
//!   changeset. 4.17.7 sets `XENFEAT_direct_mapped` for PV. `XENVER_build_id` returns the
//!   size (20) for a null argument, -ENOBUFS for a short buffer, -EINVAL for length 0.
//! - multicall: a bad hypercall number (also one with bits above 32) gives -ENOSYS in
//!   its entry; a nested multicall -EINVAL in its entry; the batch returns 0 either way.
//!   The count is 32 bits. `HYPERVISOR_iret` in a batch takes effect (the vCPU returns
//!   through the iret frame at the stack pointer of the multicall, here built by hand
//!   around a raw SYSCALL) and ends the batch; the entry's result holds the frame's RAX
//!   but RAX itself is that value truncated to an `int` and sign-extended
//!   (`do_multicall`'s return code is an `int`).

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::cell::UnsafeCell;
use core::fmt::{self, Display};

use guest_shim::events::{self, Bitmaps, EvtchnPort, NS_PER_MS, NS_PER_SEC};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::{FLAT_KERNEL_CS, FLAT_KERNEL_SS, HYPERVISOR_VIRT_START};
use guest_shim::pv_abi::event_channel::{
    EVTCHNOP_SEND, EVTCHNOP_STATUS, EVTCHNSTAT_IPI, EvtchnSend, EvtchnStatus,
};
use guest_shim::pv_abi::features::*;
use guest_shim::pv_abi::hypercall::{
    HYPERVISOR_CONSOLE_IO, HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_IRET, HYPERVISOR_MULTICALL,
    HYPERVISOR_SCHED_OP, HYPERVISOR_SCHED_OP_COMPAT, HYPERVISOR_XEN_VERSION,
};
use guest_shim::pv_abi::sched::*;
use guest_shim::pv_abi::version::*;
use guest_shim::pv_abi::xen::{
    CONSOLEIO_READ, CONSOLEIO_WRITE, DOMID_SELF, DomId, DomainHandle, GuestHandle, MulticallEntry,
    SIF_INITDOMAIN, UvmfFlags, VIRQ_TIMER,
};
use guest_shim::report::all;
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, println};

guest_shim::entry!(start);

const PAGE: u64 = 4096;
/// Never mapped in this guest (the lower half holds nothing).
const UNMAPPED: u64 = 0x0000_1234_5678_9ab8;
/// Xen's direct map, in the hypervisor's hole.
const XEN_HOLE: u64 = 0xffff_8300_0000_0000;
/// The first non-canonical address above the lower half.
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;
/// The bad pointers every pointer argument is tried with.
const BAD_POINTERS: [(&str, u64); 3] =
    [("unmapped", UNMAPPED), ("xen-hole", XEN_HOLE), ("non-canonical", NON_CANONICAL)];
/// A short wait (poll timeouts).
const SHORT: u64 = 20 * NS_PER_MS;
/// When a one-shot timer fires in the timer tests.
const TIMER_DELAY: u64 = 10 * NS_PER_MS;
/// A deadline that only a broken call reaches: a call that should return at once (or at
/// a 10 ms timer) and has not after this long is wrong, not slow.
const SAFETY_NET: u64 = 5 * NS_PER_SEC;
/// Where Xen moves a `set_timer_op` deadline that is negative or more than 2^50 ns away.
const HUGE_TIMEOUT_DELAY: u64 = 100 * NS_PER_MS;
/// `SCHEDOP_poll` takes at most this many ports.
const POLL_MAX_PORTS: usize = 128;
/// Ports of the 2-level ABI: the first invalid one.
const FIRST_BAD_PORT: EvtchnPort = events::NR_PORTS as EvtchnPort;
/// Watchdogs per domain (`NR_DOMAIN_WATCHDOG_TIMERS`).
const NR_WATCHDOGS: u32 = 2;
/// A watchdog timeout that cannot expire during the run (seconds).
const WATCHDOG_TIMEOUT: u32 = 3600;
/// A domain id nobody has (the run has only dom0).
const NO_SUCH_DOMAIN: DomId = 1234;
/// Multicall results are preset to this, to see which ones the hypervisor wrote.
const SENTINEL: u64 = 0x5a5a_5a5a_5a5a_5a5a;
/// A hypercall number Xen does not define.
const UNDEFINED_HYPERCALL: u64 = 43;
/// The `XENVER_*2` sub-ops (`xen_varbuf_t`) of later Xen versions (not in 4.17's
/// header, so not in `pv_abi`).
const XENVER_EXTRAVERSION2: u32 = 11;
/// See [`XENVER_EXTRAVERSION2`].
const XENVER_CAPABILITIES2: u32 = 12;
/// See [`XENVER_EXTRAVERSION2`].
const XENVER_CHANGESET2: u32 = 13;
/// See [`XENVER_EXTRAVERSION2`].
const XENVER_COMMANDLINE2: u32 = 14;
/// The RAX of the iret frame used inside a multicall (bit 31 set: the truncation to an
/// `int` shows as a sign extension).
const IRET_RAX: u64 = 0x1357_9bdf_a468_ace0;

/// Everything the sections share.
struct Env {
    t: Tests,
    xen: Hypercalls,
    b: Bitmaps,
    /// `XENVER_version`: major << 16 | minor.
    version: u64,
    /// The first byte of an unmapped page that follows a mapped page of ours.
    edge: u64,
    /// A masked IPI port the tests make pending.
    pend: EvtchnPort,
    /// A masked IPI port that is never sent.
    quiet: EvtchnPort,
    /// VIRQ_TIMER's port, masked except where a test says otherwise.
    timer: EvtchnPort,
}

fn start(si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    let b = match events::install() {
        Ok(b) => b,
        Err(e) => {
            t.fail("setup", format_args!("event callback: {e}"));
            t.finish()
        }
    };
    let edge = match unmap_edge(&xen) {
        Ok(edge) => edge,
        Err(e) => {
            t.fail("setup", format_args!("unmapping a page of our own: {e}"));
            t.finish()
        }
    };
    // Only the timers these tests arm may raise VIRQ_TIMER.
    let ports = xen.vcpu_stop_periodic_timer(0).and_then(|()| {
        Ok((xen.evtchn_bind_ipi(0)?, xen.evtchn_bind_ipi(0)?, xen.evtchn_bind_virq(VIRQ_TIMER, 0)?))
    });
    let (pend, quiet, timer) = match ports {
        Ok(p) => p,
        Err(e) => {
            t.fail("setup", format_args!("ports: {e}"));
            t.finish()
        }
    };
    for p in [pend, quiet, timer] {
        b.mask(p);
    }
    b.discard_pending(0);
    // SAFETY: XENVER_version reads no argument.
    let version = unsafe { hc(HYPERVISOR_XEN_VERSION, XENVER_VERSION as u64, 0, 0) } as u64;
    println!(
        "sched-console: Xen {}.{}, dom0 {}, ports pend={pend} quiet={quiet} timer={timer}, edge {edge:#x}",
        version >> 16,
        version & 0xffff,
        si.flags & SIF_INITDOMAIN != 0
    );
    let mut env = Env { t, xen, b, version, edge, pend, quiet, timer };

    sched_basics(&mut env);
    poll_returns_at_once(&mut env);
    poll_waits(&mut env);
    block_masked_port(&mut env);
    huge_timer_deadlines(&mut env);
    watchdog(&mut env);
    pin_override(&mut env);
    remote_shutdown(&mut env);
    console_write(&mut env);
    console_read_and_commands(&mut env);
    version_strings(&mut env, si);
    version_sizes(&mut env);
    version_other(&mut env);
    multicall_batches(&mut env);
    multicall_lists(&mut env);
    multicall_iret(&mut env);
    finish(env)
}

// ---- Helpers ----

/// A hypercall return value: the errno's name when it is one.
struct Ret(i64);

impl Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Errno::from_ret(self.0) {
            Some(e) => write!(f, "-{} ({})", e.name(), self.0),
            None => write!(f, "{:#x}", self.0),
        }
    }
}

/// A typed call's result as the raw return value.
fn ret(r: Result<(), Errno>) -> i64 {
    r.map_or_else(Errno::to_ret, |()| 0)
}

/// Pass if `ret == want`.
fn expect(ret: i64, want: i64) -> Outcome {
    Outcome::ensure(ret == want, format_args!("returned {}, expected {}", Ret(ret), Ret(want)))
}

/// Pass if `ret` is `-e`.
fn expect_err(ret: i64, e: Errno) -> Outcome {
    expect(ret, e.to_ret())
}

/// Pass if `call` answers `want` for every bad pointer.
fn all_bad_pointers(want: i64, mut call: impl FnMut(u64) -> i64) -> Outcome {
    for (name, p) in BAD_POINTERS {
        let r = call(p);
        if r != want {
            return Outcome::fail(format_args!(
                "{name} pointer {p:#x}: returned {}, expected {}",
                Ret(r),
                Ret(want)
            ));
        }
    }
    Outcome::Pass
}

/// Hypercall `nr` with three raw arguments (the others 0).
///
/// # Safety
///
/// As for [`Hypercalls::call`]: a pointer argument must be one of this guest's buffers,
/// sized for what the call writes, or an address that is never mapped (the hypervisor
/// can only refuse it).
unsafe fn hc(nr: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { guest_shim::hypercalls().call(nr, a1, a2, a3, 0, 0) }
}

/// `SCHEDOP_poll` of `nr` ports read from `ports` (any address), until system time
/// `timeout` (0: none).
fn poll_raw(ports: u64, nr: u32, timeout: u64) -> i64 {
    let mut arg = SchedPoll { ports: GuestHandle::new(ports), nr_ports: nr, _pad: 0, timeout };
    // SAFETY: the hypervisor only reads `arg` and the port list; a bad list is refused.
    unsafe { hc(HYPERVISOR_SCHED_OP, SCHEDOP_POLL as u64, &raw mut arg as u64, 0) }
}

/// `SCHEDOP_poll` of `ports` until `timeout`.
fn poll(ports: &[EvtchnPort], timeout: u64) -> i64 {
    poll_raw(ports.as_ptr() as u64, ports.len() as u32, timeout)
}

/// `SCHEDOP_watchdog(id, timeout)`.
fn watchdog_op(id: u32, timeout: u32) -> i64 {
    let mut arg = SchedWatchdog { id, timeout };
    // SAFETY: the hypervisor only reads `arg`. Callers never pass id 0 with timeout 0 (a
    // watchdog that fires at once and shuts the domain down).
    unsafe { hc(HYPERVISOR_SCHED_OP, SCHEDOP_WATCHDOG as u64, &raw mut arg as u64, 0) }
}

/// `SCHEDOP_pin_override(pcpu)`.
fn pin_override_op(pcpu: i32) -> i64 {
    let mut arg = SchedPinOverride { pcpu };
    // SAFETY: the hypervisor only reads `arg`.
    unsafe { hc(HYPERVISOR_SCHED_OP, SCHEDOP_PIN_OVERRIDE as u64, &raw mut arg as u64, 0) }
}

/// `XENVER_*` sub-op `cmd` with the raw argument `arg`.
///
/// # Safety
///
/// As for [`hc`]: `arg` is null, unmapped, or a buffer of ours as large as what `cmd`
/// writes.
unsafe fn xen_version(cmd: u64, arg: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hc(HYPERVISOR_XEN_VERSION, cmd, arg, 0) }
}

/// `console_io(cmd, count, buffer)` with raw arguments.
///
/// # Safety
///
/// As for [`hc`]: for a read, `buffer` is unmapped or holds `count` bytes of ours.
unsafe fn console_io(cmd: u64, count: u64, buffer: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hc(HYPERVISOR_CONSOLE_IO, cmd, count, buffer) }
}

/// `multicall(list, count)` with raw arguments.
///
/// # Safety
///
/// Every entry the hypervisor can read at `list` must be a valid call (see [`hc`]).
unsafe fn multicall(list: u64, count: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hc(HYPERVISOR_MULTICALL, list, count, 0) }
}

/// The bytes of `s` before its first NUL, if it has one.
fn c_str(s: &[u8]) -> Option<&[u8]> {
    s.iter().position(|&c| c == 0).map(|n| &s[..n])
}

/// Whether `s` is printable ASCII.
fn printable(s: &[u8]) -> bool {
    s.iter().all(|&c| (0x20..0x7f).contains(&c))
}

/// `s` as text, for messages.
fn text(s: &[u8]) -> &str {
    core::str::from_utf8(s).unwrap_or("<not UTF-8>")
}

/// A NUL-terminated, printable string filling (with zeros after the NUL) `field`.
fn check_c_string(field: &[u8], name: &str, nonempty: bool) -> Outcome {
    let Some(s) = c_str(field) else {
        return Outcome::fail(format_args!("{name}: no NUL in {} bytes", field.len()));
    };
    Outcome::ensure(
        printable(s) && (!nonempty || !s.is_empty()) && field[s.len()..].iter().all(|&c| c == 0),
        format_args!("{name}: {:?} (not printable, empty, or not zero-padded)", text(s)),
    )
}

// ---- The unmapped page ----

/// Two pages: the second is unmapped at start-up, so buffers at the end of the first
/// run into unmapped memory.
#[repr(C, align(4096))]
struct EdgePages(UnsafeCell<[u8; 2 * PAGE as usize]>);

// SAFETY: only reached through raw pointers, by the one vCPU.
unsafe impl Sync for EdgePages {}

static EDGE: EdgePages = EdgePages(UnsafeCell::new([0; 2 * PAGE as usize]));

/// Unmaps the second page of [`EDGE`]; returns its address.
fn unmap_edge(xen: &Hypercalls) -> Result<u64, Errno> {
    let second = EDGE.0.get() as u64 + PAGE;
    // SAFETY: nothing refers to the second page (the guest only uses the first, through
    // raw pointers); unmapping it breaks no Rust object.
    unsafe { xen.update_va_mapping(second, 0, UvmfFlags::INVLPG) }?;
    Ok(second)
}

/// Copies `bytes` to the end of the mapped page of [`EDGE`] (`edge` is the unmapped one);
/// returns their address.
fn put_before_edge(edge: u64, bytes: &[u8]) -> u64 {
    assert!(bytes.len() as u64 <= PAGE);
    let at = edge - bytes.len() as u64;
    // SAFETY: `at..edge` lies in the first page of EDGE, mapped, ours and only used
    // through raw pointers.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) };
    at
}

// ---- sched_op ----

/// Yield, the command number, unknown commands, bad argument pointers, sched_op_compat.
fn sched_basics(env: &mut Env) {
    let t = &mut env.t;
    // SAFETY: SCHEDOP_yield reads no argument.
    let r = unsafe { hc(HYPERVISOR_SCHED_OP, SCHEDOP_YIELD as u64, UNMAPPED, 0) };
    t.check("yield-ignores-argument", expect(r, 0));
    // The command is a C `int`: the upper half of the register is not looked at.
    // SAFETY: a yield, as above.
    let r = unsafe { hc(HYPERVISOR_SCHED_OP, (1 << 32) | SCHEDOP_YIELD as u64, 0, 0) };
    t.check("sched-op-cmd-low-32-bits", expect(r, 0));
    for (name, cmd) in [("sched-op-cmd-8-enosys", 8), ("sched-op-cmd-minus-1-enosys", u32::MAX as u64)] {
        // SAFETY: an unknown command does nothing.
        let r = unsafe { hc(HYPERVISOR_SCHED_OP, cmd, 0, 0) };
        t.check(name, expect_err(r, Errno::ENOSYS));
    }
    // Every command with an argument structure copies it in first: a bad pointer is
    // -EFAULT before anything happens (for shutdown too).
    for (name, cmd) in [
        ("shutdown-bad-pointer-efault", SCHEDOP_SHUTDOWN),
        ("shutdown-code-bad-pointer-efault", SCHEDOP_SHUTDOWN_CODE),
        ("poll-bad-pointer-efault", SCHEDOP_POLL),
        ("remote-shutdown-bad-pointer-efault", SCHEDOP_REMOTE_SHUTDOWN),
        ("watchdog-bad-pointer-efault", SCHEDOP_WATCHDOG),
        ("pin-override-bad-pointer-efault", SCHEDOP_PIN_OVERRIDE),
    ] {
        t.check(
            name,
            all_bad_pointers(Errno::EFAULT.to_ret(), |p| {
                // SAFETY: the argument is never mapped: the command cannot read it and
                // does nothing.
                unsafe { hc(HYPERVISOR_SCHED_OP, cmd as u64, p, 0) }
            }),
        );
    }
    // The old sched_op_compat: yield, block and shutdown (reason in the argument) only.
    // SAFETY: a yield reads nothing.
    let r = unsafe { hc(HYPERVISOR_SCHED_OP_COMPAT, SCHEDOP_YIELD as u64, UNMAPPED, 0) };
    t.check("sched-op-compat-yield", expect(r, 0));
    // SAFETY: sched_op_compat has no poll: nothing is read.
    let r = unsafe { hc(HYPERVISOR_SCHED_OP_COMPAT, SCHEDOP_POLL as u64, UNMAPPED, 0) };
    t.check("sched-op-compat-poll-enosys", expect_err(r, Errno::ENOSYS));
}

/// `SCHEDOP_poll` cases that must return without sleeping: a listed port pending, bad
/// ports and lists, the 128-port limit, an event due for delivery. Each has a timeout
/// [`SAFETY_NET`] away, so a poll that sleeps instead ends (and fails) rather than hangs.
fn poll_returns_at_once(env: &mut Env) {
    let Env { t, xen, b, edge, pend, quiet, .. } = env;
    let (pend, quiet) = (*pend, *quiet);
    b.discard_pending(0);
    let ups = events::upcalls();
    let sent = xen.evtchn_send(pend);
    let deadline = events::now() + SAFETY_NET;
    let r = poll(&[quiet, pend], deadline);
    let now = events::now();
    t.check(
        "poll-pending-port-returns-at-once",
        match sent {
            Err(e) => Outcome::fail(format_args!("send: {e}")),
            Ok(()) => Outcome::ensure(
                r == 0 && now < deadline && b.is_pending(pend),
                format_args!(
                    "returned {} after {} ms, port still pending: {}",
                    Ret(r),
                    (now + SAFETY_NET - deadline) / NS_PER_MS,
                    b.is_pending(pend)
                ),
            ),
        },
    );
    // Polling does not unmask events (SCHEDOP_block does).
    t.check(
        "poll-keeps-events-masked",
        Outcome::ensure(
            b.upcall_mask(0) == 1 && events::upcalls() == ups,
            format_args!("upcall mask {}, {} upcalls", b.upcall_mask(0), events::upcalls() - ups),
        ),
    );
    // Ports are checked in order up to the first pending one.
    let r = poll(&[pend, FIRST_BAD_PORT], events::now() + SAFETY_NET);
    t.check("poll-stops-at-pending-port", expect(r, 0));
    let r1 = poll(&[FIRST_BAD_PORT, pend], events::now() + SAFETY_NET);
    let r2 = poll(&[quiet, u32::MAX], events::now() + SAFETY_NET);
    t.check("poll-bad-port-einval", all([expect_err(r1, Errno::EINVAL), expect_err(r2, Errno::EINVAL)]));

    let mut many = [quiet; POLL_MAX_PORTS + 1];
    many[POLL_MAX_PORTS - 1] = pend;
    let r = poll(&many[..POLL_MAX_PORTS], events::now() + SAFETY_NET);
    t.check("poll-128-ports", expect(r, 0));
    let r = poll(&many, events::now() + SAFETY_NET);
    t.check("poll-129-ports-einval", expect_err(r, Errno::EINVAL));

    t.check(
        "poll-bad-port-list-efault",
        all_bad_pointers(Errno::EFAULT.to_ret(), |p| poll_raw(p, 1, events::now() + SAFETY_NET)),
    );
    // A list running into the unmapped page: read port by port, up to a pending one.
    let at = put_before_edge(*edge, &quiet.to_ne_bytes());
    let r = poll_raw(at, 2, events::now() + SAFETY_NET);
    t.check("poll-list-into-unmapped-efault", expect_err(r, Errno::EFAULT));
    let at = put_before_edge(*edge, &pend.to_ne_bytes());
    let r = poll_raw(at, 2, events::now() + SAFETY_NET);
    t.check("poll-pending-before-unmapped", expect(r, 0));

    // An event due for delivery (upcall pending, events unmasked) ends the poll before
    // the ports are even looked at: a bad port is not -EINVAL then. The upcall is
    // delivered on the way out.
    b.clear_pending(pend);
    b.discard_pending(0);
    b.unmask_bit(pend);
    let count = events::count(pend);
    let sent = xen.evtchn_send(pend);
    let raised = b.upcall_pending(0);
    b.set_upcall_mask(0, 0);
    let r = poll(&[FIRST_BAD_PORT], events::now() + SAFETY_NET);
    events::disable();
    b.mask(pend);
    t.check(
        "poll-event-due-returns-at-once",
        match sent {
            Err(e) => Outcome::fail(format_args!("send: {e}")),
            Ok(()) => Outcome::ensure(
                raised && r == 0 && events::count(pend) == count + 1,
                format_args!(
                    "upcall pending {raised}, returned {}, delivered {} times",
                    Ret(r),
                    events::count(pend) - count
                ),
            ),
        },
    );
    b.discard_pending(0);
}

/// `SCHEDOP_poll` cases that sleep: until the timeout, or until a port becomes pending
/// through VIRQ_TIMER.
fn poll_waits(env: &mut Env) {
    let Env { t, xen, b, quiet, timer, .. } = env;
    let (quiet, timer) = (*quiet, *timer);
    b.discard_pending(0);

    let deadline = events::now() + SHORT;
    let r = poll(&[quiet], deadline);
    let now = events::now();
    t.check(
        "poll-timeout-waits",
        Outcome::ensure(
            r == 0 && now >= deadline,
            format_args!("returned {} {} us before the timeout", Ret(r), deadline.saturating_sub(now) / 1000),
        ),
    );
    let deadline = events::now() + SHORT;
    let r = poll_raw(0, 0, deadline);
    let now = events::now();
    t.check(
        "poll-no-ports-waits",
        Outcome::ensure(
            r == 0 && now >= deadline,
            format_args!("returned {} {} us before the timeout", Ret(r), deadline.saturating_sub(now) / 1000),
        ),
    );
    // With no ports the list is never read, but its address is still range-checked
    // (guest_handle_okay): an address outside guest space is -EFAULT, an unmapped one is
    // not.
    let deadline = events::now() + SHORT;
    let r = poll_raw(UNMAPPED, 0, deadline);
    let now = events::now();
    t.check(
        "poll-no-ports-list-address",
        all([
            Outcome::ensure(r == 0 && now >= deadline, format_args!("unmapped list: returned {}", Ret(r))),
            expect_err(poll_raw(XEN_HOLE, 0, events::now() + SHORT), Errno::EFAULT),
            expect_err(poll_raw(NON_CANONICAL, 0, events::now() + SHORT), Errno::EFAULT),
        ]),
    );

    // A timeout already past: the poll timer fires at once. VIRQ_TIMER is listed and
    // armed SAFETY_NET ahead, so a poll that ignored the timeout would end there.
    let armed = xen.set_timer_op(events::now() + SAFETY_NET);
    let r = poll(&[quiet, timer], 1);
    let net = b.is_pending(timer);
    let _ = xen.set_timer_op(0);
    t.check(
        "poll-past-timeout-returns",
        match armed {
            Err(e) => Outcome::fail(format_args!("set_timer_op: {e}")),
            Ok(()) => Outcome::ensure(
                r == 0 && !net,
                format_args!("returned {}, safety timer fired: {net}", Ret(r)),
            ),
        },
    );
    b.discard_pending(0);

    // A listed port (masked) made pending by VIRQ_TIMER ends the poll.
    let t0 = events::now();
    let fire = t0 + TIMER_DELAY;
    let deadline = t0 + SAFETY_NET;
    let armed = xen.set_timer_op(fire);
    let r = poll(&[timer], deadline);
    let now = events::now();
    t.check(
        "poll-wakes-on-virq-timer",
        match armed {
            Err(e) => Outcome::fail(format_args!("set_timer_op: {e}")),
            Ok(()) => Outcome::ensure(
                r == 0 && now >= fire && now < deadline && b.is_pending(timer),
                format_args!(
                    "returned {} {} ms after the timer's deadline, port pending {}",
                    Ret(r),
                    (now - fire) as i64 / NS_PER_MS as i64,
                    b.is_pending(timer)
                ),
            ),
        },
    );
    b.discard_pending(0);

    // An unmasked port that is not listed ends it too (events masked, nothing
    // delivered): it raises evtchn_upcall_pending, which wakes the vCPU.
    b.unmask_bit(timer);
    let ups = events::upcalls();
    let t0 = events::now();
    let fire = t0 + TIMER_DELAY;
    let deadline = t0 + SAFETY_NET;
    let armed = xen.set_timer_op(fire);
    let r = poll(&[quiet], deadline);
    let now = events::now();
    t.check(
        "poll-wakes-on-unlisted-unmasked-event",
        match armed {
            Err(e) => Outcome::fail(format_args!("set_timer_op: {e}")),
            Ok(()) => Outcome::ensure(
                r == 0
                    && now >= fire
                    && now < deadline
                    && b.is_pending(timer)
                    && b.upcall_pending(0)
                    && events::upcalls() == ups,
                format_args!(
                    "returned {} {} ms after the timer's deadline, timer pending {}, upcall pending \
                     {}, {} upcalls",
                    Ret(r),
                    (now - fire) as i64 / NS_PER_MS as i64,
                    b.is_pending(timer),
                    b.upcall_pending(0),
                    events::upcalls() - ups
                ),
            ),
        },
    );
    b.mask(timer);
    b.discard_pending(0);
}

/// `SCHEDOP_block` with only a masked port pending sleeps (a masked port raises no
/// upcall) until the timer's event, which it delivers.
fn block_masked_port(env: &mut Env) {
    let Env { t, xen, b, pend, timer, .. } = env;
    let (pend, timer) = (*pend, *timer);
    b.discard_pending(0);
    let sent = xen.evtchn_send(pend);
    b.unmask_bit(timer);
    let (cp, ct) = (events::count(pend), events::count(timer));
    let fire = events::now() + TIMER_DELAY;
    let armed = xen.set_timer_op(fire);
    let r = match (sent, armed) {
        (Ok(()), Ok(())) if !b.upcall_pending(0) => xen.sched_block(),
        _ => Err(Errno::EINVAL),
    };
    let now = events::now();
    events::disable();
    b.mask(timer);
    t.check(
        "block-ignores-masked-port",
        match r {
            Err(_) => Outcome::fail(format_args!(
                "setup or block failed: send {sent:?} timer {armed:?} block {r:?}"
            )),
            Ok(()) => Outcome::ensure(
                now >= fire
                    && events::count(timer) == ct + 1
                    && events::count(pend) == cp
                    && b.is_pending(pend),
                format_args!(
                    "returned {} us before the timer, timer delivered {}, masked port delivered {} \
                     pending {}",
                    fire.saturating_sub(now) / 1000,
                    events::count(timer) - ct,
                    events::count(pend) - cp,
                    b.is_pending(pend)
                ),
            ),
        },
    );
    b.discard_pending(0);
}

/// `set_timer_op` deadlines that are negative or more than 2^50 ns away fire after
/// 100 ms (a Linux workaround in Xen), not at once and not never.
fn huge_timer_deadlines(env: &mut Env) {
    let Env { t, xen, b, timer, .. } = env;
    let timer = *timer;
    for (name, far) in
        [("set-timer-op-far-future-fires-in-100ms", true), ("set-timer-op-negative-fires-in-100ms", false)]
    {
        b.discard_pending(0);
        let t0 = events::now();
        let value = if far { t0 + (1 << 51) } else { (1 << 63) | 1 };
        let armed = xen.set_timer_op(value);
        let deadline = t0 + SAFETY_NET;
        let r = poll(&[timer], deadline);
        let now = events::now();
        let _ = xen.set_timer_op(0);
        t.check(
            name,
            match armed {
                Err(e) => Outcome::fail(format_args!("set_timer_op({value:#x}): {e}")),
                Ok(()) => Outcome::ensure(
                    r == 0 && b.is_pending(timer) && now >= t0 + HUGE_TIMEOUT_DELAY && now < deadline,
                    format_args!(
                        "poll returned {} after {} ms, timer pending {}",
                        Ret(r),
                        (now - t0) / NS_PER_MS,
                        b.is_pending(timer)
                    ),
                ),
            },
        );
    }
    b.discard_pending(0);
}

/// `SCHEDOP_watchdog`: two per domain, ids from 1, re-arm, stop, bad ids. Timeouts are an
/// hour: none can fire during the run.
fn watchdog(env: &mut Env) {
    let t = &mut env.t;
    let first = watchdog_op(0, WATCHDOG_TIMEOUT);
    let second = watchdog_op(0, WATCHDOG_TIMEOUT);
    println!("sched-console: watchdogs created: {} and {}", Ret(first), Ret(second));
    t.check(
        "watchdog-create",
        Outcome::ensure(
            (1..=NR_WATCHDOGS as i64).contains(&first)
                && (1..=NR_WATCHDOGS as i64).contains(&second)
                && first != second,
            format_args!("ids {} and {}", Ret(first), Ret(second)),
        ),
    );
    // Xen computes -ENOSPC in an unsigned int (the ternary with the id): the caller
    // gets it zero-extended, 0xffffffe4, not -28.
    let third = watchdog_op(0, WATCHDOG_TIMEOUT);
    t.check("watchdog-none-left-enospc-32-bit", expect(third, Errno::ENOSPC.to_ret() as u32 as i64));
    if (1..=NR_WATCHDOGS as i64).contains(&third) {
        let _ = watchdog_op(third as u32, 0);
    }
    let (first, second) = (first.max(1) as u32, second.max(1) as u32);
    t.check("watchdog-rearm", expect(watchdog_op(first, WATCHDOG_TIMEOUT), 0));
    t.check("watchdog-stop", all([expect(watchdog_op(first, 0), 0), expect(watchdog_op(second, 0), 0)]));
    t.check("watchdog-stop-again-einval", expect_err(watchdog_op(first, 0), Errno::EINVAL));
    t.check("watchdog-rearm-stopped-einval", expect_err(watchdog_op(second, 1), Errno::EINVAL));
    t.check(
        "watchdog-bad-id-einval",
        all([
            expect_err(watchdog_op(NR_WATCHDOGS + 1, 0), Errno::EINVAL),
            expect_err(watchdog_op(u32::MAX, WATCHDOG_TIMEOUT), Errno::EINVAL),
        ]),
    );
    // A stopped slot is handed out again.
    let again = watchdog_op(0, WATCHDOG_TIMEOUT);
    t.check(
        "watchdog-slot-reused",
        Outcome::ensure((1..=NR_WATCHDOGS as i64).contains(&again), format_args!("id {}", Ret(again))),
    );
    if again > 0 {
        let _ = watchdog_op(again as u32, 0);
    }
}

/// `SCHEDOP_pin_override` (dom0 only): pin to pCPU 0, no nesting, unpin.
fn pin_override(env: &mut Env) {
    let t = &mut env.t;
    t.check("pin-override-unpin-unpinned-einval", expect_err(pin_override_op(-1), Errno::EINVAL));
    t.check("pin-override-cpu0", expect(pin_override_op(0), 0));
    t.check("pin-override-twice-ebusy", expect_err(pin_override_op(0), Errno::EBUSY));
    t.check("pin-override-unpin", expect(pin_override_op(-1), 0));
    t.check("pin-override-beyond-nr-cpus-einval", expect_err(pin_override_op(i32::MAX), Errno::EINVAL));
}

/// `SCHEDOP_remote_shutdown` of domains that do not exist (our own is at the very end).
fn remote_shutdown(env: &mut Env) {
    let Env { t, xen, .. } = env;
    let r = xen.sched_remote_shutdown(NO_SUCH_DOMAIN, SHUTDOWN_POWEROFF);
    t.check("remote-shutdown-no-domain-esrch", expect_err(ret(r), Errno::ESRCH));
    // DOMID_SELF is not looked up as "us": no domain has that id.
    let r = xen.sched_remote_shutdown(DOMID_SELF, SHUTDOWN_POWEROFF);
    t.check("remote-shutdown-domid-self-esrch", expect_err(ret(r), Errno::ESRCH));
}

// ---- console_io ----

/// `CONSOLEIO_write`: bad pointers, lengths, bytes that are not text.
fn console_write(env: &mut Env) {
    let Env { t, edge, .. } = env;
    // Our own buffered output first, so that the raw writes start on a line of their own.
    guest_shim::console::flush();
    t.check(
        "console-write-bad-pointer-efault",
        all_bad_pointers(Errno::EFAULT.to_ret(), |p| {
            // SAFETY: the buffer is never mapped: nothing is read or printed.
            unsafe { console_io(CONSOLEIO_WRITE as u64, 16, p) }
        }),
    );
    t.check(
        "console-write-zero-length",
        all_bad_pointers(0, |p| {
            // SAFETY: zero bytes: the buffer is not read.
            unsafe { console_io(CONSOLEIO_WRITE as u64, 0, p) }
        }),
    );
    // The count is a C `unsigned int`: 2^32 is 0.
    // SAFETY: a count of 0 after truncation: nothing is read.
    let r = unsafe { console_io(CONSOLEIO_WRITE as u64, 1 << 32, UNMAPPED) };
    t.check("console-write-count-low-32-bits", expect(r, 0));
    // The command too.
    let line = b"sched-console: this line is a CONSOLEIO_write with bit 32 set in the command\n";
    // SAFETY: Xen reads `line` only.
    let r =
        unsafe { console_io((1 << 32) | CONSOLEIO_WRITE as u64, line.len() as u64, line.as_ptr() as u64) };
    t.check("console-write-cmd-low-32-bits", expect(r, 0));
    // Bytes that are not UTF-8 (and a NUL, after a newline in case it ends the output).
    let raw = b"sched-console: bytes that are not UTF-8: \xff\xfe\xc3\x28\x80 end\n\x00\n";
    // SAFETY: Xen reads `raw` only.
    let r = unsafe { console_io(CONSOLEIO_WRITE as u64, raw.len() as u64, raw.as_ptr() as u64) };
    t.check("console-write-non-utf8", expect(r, 0));
    // Large: many times Xen's 127-byte chunk, in lines.
    const LINE: usize = 72;
    const LINES: usize = 40;
    let mut big = [b'.'; LINE * LINES];
    for (i, l) in big.chunks_mut(LINE).enumerate() {
        let head = b"sched-console: a large CONSOLEIO_write, line ";
        l[..head.len()].copy_from_slice(head);
        l[head.len()] = b'0' + (i / 10) as u8;
        l[head.len() + 1] = b'0' + (i % 10) as u8;
        l[head.len() + 2] = b' ';
        l[LINE - 1] = b'\n';
    }
    // SAFETY: Xen reads `big` only.
    let r = unsafe { console_io(CONSOLEIO_WRITE as u64, big.len() as u64, big.as_ptr() as u64) };
    t.check("console-write-large", expect(r, 0));
    // A buffer running into the unmapped page: -EFAULT. Xen prints the 127-byte chunks
    // it could copy (here the first); each possible cut ends in a newline, so that what
    // is printed stays a line of its own whatever the hypervisor's chunking.
    let mut tail = [b'.'; 150];
    let head = b"sched-console: the start of a CONSOLEIO_write that runs into an unmapped page ";
    tail[..head.len()].copy_from_slice(head);
    tail[126] = b'\n';
    let second = b"sched-console: more ";
    tail[127..127 + second.len()].copy_from_slice(second);
    tail[149] = b'\n';
    let at = put_before_edge(*edge, &tail);
    // SAFETY: Xen reads at most the 150 mapped bytes of ours, then faults.
    let r = unsafe { console_io(CONSOLEIO_WRITE as u64, 300, at) };
    t.check("console-write-into-unmapped-efault", expect_err(r, Errno::EFAULT));
}

/// `CONSOLEIO_read` with no input, and unknown commands.
fn console_read_and_commands(env: &mut Env) {
    let t = &mut env.t;
    let mut buf = [0u8; 64];
    // SAFETY: Xen writes at most 64 bytes into `buf`.
    let r = unsafe { console_io(CONSOLEIO_READ as u64, buf.len() as u64, buf.as_mut_ptr() as u64) };
    t.check("console-read-no-input", expect(r, 0));
    // With nothing to read the buffer is never touched.
    t.check(
        "console-read-no-input-bad-buffer",
        all_bad_pointers(0, |p| {
            // SAFETY: the buffer is never mapped.
            unsafe { console_io(CONSOLEIO_READ as u64, 64, p) }
        }),
    );
    // SAFETY: a count of 0 writes nothing.
    let r = unsafe { console_io(CONSOLEIO_READ as u64, 0, buf.as_mut_ptr() as u64) };
    t.check("console-read-zero", expect(r, 0));
    // The count must fit the (positive) return value.
    // SAFETY: refused before anything is written (and there is no input).
    let r = unsafe { console_io(CONSOLEIO_READ as u64, 0x8000_0000, buf.as_mut_ptr() as u64) };
    t.check("console-read-count-over-int-max-e2big", expect_err(r, Errno::E2BIG));
    for (name, cmd) in [("console-io-cmd-2-enosys", 2), ("console-io-cmd-minus-1-enosys", u32::MAX as u64)] {
        // SAFETY: an unknown command reads and writes nothing.
        let r = unsafe { console_io(cmd, 16, UNMAPPED) };
        t.check(name, expect_err(r, Errno::ENOSYS));
    }
}

// ---- xen_version ----

/// The string sub-ops: NUL-terminated, printable, zero-padded, of the right shape.
fn version_strings(env: &mut Env, si: &StartInfo) {
    let Env { t, version, .. } = env;
    let (major, minor) = (*version >> 16, *version & 0xffff);

    let mut extra = [0xaau8; XEN_EXTRAVERSION_LEN];
    // SAFETY: Xen writes XEN_EXTRAVERSION_LEN bytes into `extra`.
    let r = unsafe { xen_version(XENVER_EXTRAVERSION as u64, extra.as_mut_ptr() as u64) };
    let ev = c_str(&extra).unwrap_or(b"");
    println!("sched-console: Xen {major}.{minor}{} ({})", text(ev), Ret(r));
    t.check("xenver-extraversion", all([expect(r, 0), check_c_string(&extra, "extraversion", false)]));
    // Xen's extra version continues the version number: ".7" or ".7-rc" and the like.
    t.check(
        "xenver-extraversion-shape",
        Outcome::ensure(
            ev.is_empty() || (ev[0] == b'.' && ev.get(1).is_some_and(u8::is_ascii_digit)) || ev[0] == b'-',
            format_args!("extraversion {:?}", text(ev)),
        ),
    );

    let mut info = XenCompileInfo::default();
    // SAFETY: Xen writes a `xen_compile_info` into `info`.
    let r = unsafe { xen_version(XENVER_COMPILE_INFO as u64, &raw mut info as u64) };
    println!(
        "sched-console: compiled by {:?} at {:?} in {:?} with {:?}",
        text(c_str(&info.compile_by).unwrap_or(b"")),
        text(c_str(&info.compile_date).unwrap_or(b"")),
        text(c_str(&info.compile_domain).unwrap_or(b"")),
        text(c_str(&info.compiler).unwrap_or(b""))
    );
    t.check(
        "xenver-compile-info",
        all([
            expect(r, 0),
            check_c_string(&info.compiler, "compiler", true),
            check_c_string(&info.compile_by, "compile_by", false),
            check_c_string(&info.compile_domain, "compile_domain", false),
            check_c_string(&info.compile_date, "compile_date", true),
        ]),
    );

    let mut caps = [0xaau8; XEN_CAPABILITIES_INFO_LEN];
    // SAFETY: Xen writes XEN_CAPABILITIES_INFO_LEN bytes into `caps`.
    let r = unsafe { xen_version(XENVER_CAPABILITIES as u64, caps.as_mut_ptr() as u64) };
    let cs = c_str(&caps).unwrap_or(b"");
    println!("sched-console: capabilities {:?}", text(cs));
    // Space-separated "xen-3.0-ARCH" / "hvm-3.0-ARCH" tokens, ours among them.
    let tokens_ok = cs
        .split(|&c| c == b' ')
        .filter(|w| !w.is_empty())
        .all(|w| (w.starts_with(b"xen-3.0-") || w.starts_with(b"hvm-3.0-")) && w.len() > 8);
    t.check(
        "xenver-capabilities",
        all([
            expect(r, 0),
            check_c_string(&caps, "capabilities", true),
            Outcome::ensure(
                tokens_ok && cs.split(|&c| c == b' ').any(|w| w == b"xen-3.0-x86_64"),
                format_args!("capabilities {:?}", text(cs)),
            ),
        ]),
    );

    let mut changeset = [0xaau8; XEN_CHANGESET_INFO_LEN];
    // SAFETY: Xen writes XEN_CHANGESET_INFO_LEN bytes into `changeset`.
    let r = unsafe { xen_version(XENVER_CHANGESET as u64, changeset.as_mut_ptr() as u64) };
    println!("sched-console: changeset {:?}", text(c_str(&changeset).unwrap_or(b"")));
    // Empty when Xen was built outside a repository (Debian's is).
    t.check("xenver-changeset", all([expect(r, 0), check_c_string(&changeset, "changeset", false)]));

    let mut cmdline = [0xaau8; XEN_COMMANDLINE_LEN];
    // SAFETY: Xen writes XEN_COMMANDLINE_LEN bytes into `cmdline`.
    let r = unsafe { xen_version(XENVER_COMMANDLINE as u64, cmdline.as_mut_ptr() as u64) };
    println!("sched-console: command line {:?}", text(c_str(&cmdline).unwrap_or(b"")));
    // dom0 may read it; others get "<denied>".
    t.check(
        "xenver-commandline",
        all([
            expect(r, 0),
            check_c_string(&cmdline, "commandline", false),
            Outcome::ensure(
                si.flags & SIF_INITDOMAIN == 0 || c_str(&cmdline) != Some(b"<denied>"),
                "dom0 is denied the command line",
            ),
        ]),
    );

    let mut handle = [0xaau8; 16];
    // SAFETY: Xen writes the 16-byte domain handle into `handle`.
    let r = unsafe { xen_version(XENVER_GUEST_HANDLE as u64, handle.as_mut_ptr() as u64) };
    println!("sched-console: guest handle {handle:02x?}");
    // Nobody gave dom0 a UUID.
    t.check("xenver-guest-handle-dom0-zero", all([expect(r, 0), Outcome::eq(handle, [0; 16])]));
}

/// Each fixed-size sub-op writes exactly its structure into a larger buffer: all of it
/// (its last byte changes) and nothing after it.
fn version_sizes(env: &mut Env) {
    let t = &mut env.t;
    let mut buf = [0xaau8; 2 * XEN_COMMANDLINE_LEN];
    let mut outcomes = [const { Outcome::Pass }; 9];
    for (i, (name, cmd, size)) in [
        ("extraversion", XENVER_EXTRAVERSION, XEN_EXTRAVERSION_LEN),
        ("compile_info", XENVER_COMPILE_INFO, size_of::<XenCompileInfo>()),
        ("capabilities", XENVER_CAPABILITIES, XEN_CAPABILITIES_INFO_LEN),
        ("changeset", XENVER_CHANGESET, XEN_CHANGESET_INFO_LEN),
        ("platform_parameters", XENVER_PLATFORM_PARAMETERS, size_of::<XenPlatformParameters>()),
        ("get_features", XENVER_GET_FEATURES, size_of::<XenFeatureInfo>()),
        ("guest_handle", XENVER_GUEST_HANDLE, size_of::<DomainHandle>()),
        ("commandline", XENVER_COMMANDLINE, XEN_COMMANDLINE_LEN),
    ]
    .into_iter()
    .enumerate()
    {
        buf.fill(0xaa);
        // get_features reads its submap index: 0.
        buf[..4].fill(0);
        // SAFETY: `buf` is larger than any of these structures.
        let r = unsafe { xen_version(cmd as u64, buf.as_mut_ptr() as u64) };
        outcomes[i] = Outcome::ensure(
            r == 0 && buf[size - 1] != 0xaa && buf[size..].iter().all(|&c| c == 0xaa),
            format_args!(
                "{name}: returned {}, last byte {:#x}, {} bytes written after its {size}",
                Ret(r),
                buf[size - 1],
                buf[size..].iter().filter(|&&c| c != 0xaa).count()
            ),
        );
        if cmd == XENVER_PLATFORM_PARAMETERS {
            let virt_start = u64::from_ne_bytes(buf[..8].try_into().unwrap_or_default());
            outcomes[8] = Outcome::eq(virt_start, HYPERVISOR_VIRT_START);
        }
    }
    t.check("xenver-writes-exact-sizes", all(outcomes));
}

/// The numeric sub-ops, `build_id`, the newer `*2` sub-ops, unknown sub-ops, bad
/// pointers.
fn version_other(env: &mut Env) {
    let Env { t, version, edge, .. } = env;
    let (major, minor) = (*version >> 16, *version & 0xffff);
    // SAFETY: XENVER_version reads no argument.
    let r = unsafe { xen_version(XENVER_VERSION as u64, UNMAPPED) };
    t.check("xenver-version-ignores-argument", expect(r, *version as i64));
    // SAFETY: as above; the sub-op is a C `int`.
    let r = unsafe { xen_version((1 << 32) | XENVER_VERSION as u64, 0) };
    t.check("xenver-cmd-low-32-bits", expect(r, *version as i64));
    t.check("xenver-version-shape", Outcome::ensure(major >= 3, format_args!("version {major}.{minor}")));

    // get_features: one submap on x86; the bits a 64-bit PV dom0 can use.
    let mut fi = XenFeatureInfo { submap_idx: 0, submap: 0 };
    // SAFETY: Xen reads and writes `fi`.
    let r = unsafe { xen_version(XENVER_GET_FEATURES as u64, &raw mut fi as u64) };
    let f = fi.submap;
    println!("sched-console: XENVER_get_features[0] = {f:#x}");
    let bit = |n: u32| f & (1 << n) != 0;
    let dom0 = guest_shim::start_info().flags & SIF_INITDOMAIN != 0;
    let not_for_pv = [
        ("writable_page_tables", XENFEAT_WRITABLE_PAGE_TABLES),
        ("writable_descriptor_tables", XENFEAT_WRITABLE_DESCRIPTOR_TABLES),
        ("auto_translated_physmap", XENFEAT_AUTO_TRANSLATED_PHYSMAP),
        ("supervisor_mode_kernel", XENFEAT_SUPERVISOR_MODE_KERNEL),
        ("hvm_callback_vector", XENFEAT_HVM_CALLBACK_VECTOR),
        ("hvm_safe_pvclock", XENFEAT_HVM_SAFE_PVCLOCK),
        ("hvm_pirqs", XENFEAT_HVM_PIRQS),
        ("arm_smccc_supported", XENFEAT_ARM_SMCCC_SUPPORTED),
        // A PV guest's page tables hold machine addresses: direct-mapped (4.17.7 says
        // so with XENFEAT_direct_mapped; older releases say neither).
        ("not_direct_mapped", XENFEAT_NOT_DIRECT_MAPPED),
    ];
    t.check(
        "xenver-features-pv",
        all([
            expect(r, 0),
            all(not_for_pv.map(|(name, n)| {
                Outcome::ensure(!bit(n), format_args!("features {f:#x}: {name} is for other guests"))
            })),
            Outcome::ensure(
                bit(XENFEAT_DOM0) == dom0,
                format_args!("features {f:#x}: dom0 bit, dom0 {dom0}"),
            ),
        ]),
    );
    let outcomes = [1, 0x8000_0000].map(|idx| {
        let mut fi = XenFeatureInfo { submap_idx: idx, submap: 0 };
        // SAFETY: Xen reads and writes `fi`.
        expect_err(unsafe { xen_version(XENVER_GET_FEATURES as u64, &raw mut fi as u64) }, Errno::EINVAL)
    });
    t.check("xenver-features-bad-submap-einval", all(outcomes));

    // SAFETY: XENVER_pagesize writes nothing.
    let r = unsafe { xen_version(XENVER_PAGESIZE as u64, 0) };
    t.check("xenver-pagesize", expect(r, PAGE as i64));
    let mut dummy = 0u64;
    // SAFETY: as above (it only tests the argument for null).
    let r = unsafe { xen_version(XENVER_PAGESIZE as u64, &raw mut dummy as u64) };
    println!("sched-console: XENVER_pagesize with an argument returned {}", Ret(r));
    t.check("xenver-pagesize-with-argument", expect_err(r, Errno::EINVAL));

    build_id(t, *edge);

    // The varbuf sub-ops came after 4.17: there, -ENOSYS. Later, a size.
    for (name, cmd) in [
        ("xenver-extraversion2", XENVER_EXTRAVERSION2),
        ("xenver-capabilities2", XENVER_CAPABILITIES2),
        ("xenver-changeset2", XENVER_CHANGESET2),
        ("xenver-commandline2", XENVER_COMMANDLINE2),
    ] {
        // SAFETY: a null argument asks for a size; nothing is written.
        let r = unsafe { xen_version(cmd as u64, 0) };
        println!("sched-console: XENVER sub-op {cmd} (null argument) returned {}", Ret(r));
        let old = (major, minor) <= (4, 17);
        t.check(
            name,
            Outcome::ensure(
                if old { r == Errno::ENOSYS.to_ret() } else { r >= 0 || r == Errno::ENOSYS.to_ret() },
                format_args!("returned {} on Xen {major}.{minor}", Ret(r)),
            ),
        );
    }
    for (name, cmd) in
        [("xenver-cmd-0x7fffffff-enosys", 0x7fff_ffff), ("xenver-cmd-minus-1-enosys", u32::MAX as u64)]
    {
        // SAFETY: an unknown sub-op reads and writes nothing.
        let r = unsafe { xen_version(cmd, UNMAPPED) };
        t.check(name, expect_err(r, Errno::ENOSYS));
    }

    // Every sub-op with a buffer: a bad one is -EFAULT.
    for (name, cmd) in [
        ("xenver-extraversion-bad-pointer-efault", XENVER_EXTRAVERSION),
        ("xenver-compile-info-bad-pointer-efault", XENVER_COMPILE_INFO),
        ("xenver-capabilities-bad-pointer-efault", XENVER_CAPABILITIES),
        ("xenver-changeset-bad-pointer-efault", XENVER_CHANGESET),
        ("xenver-platform-parameters-bad-pointer-efault", XENVER_PLATFORM_PARAMETERS),
        ("xenver-get-features-bad-pointer-efault", XENVER_GET_FEATURES),
        ("xenver-guest-handle-bad-pointer-efault", XENVER_GUEST_HANDLE),
        ("xenver-commandline-bad-pointer-efault", XENVER_COMMANDLINE),
        ("xenver-build-id-bad-pointer-efault", XENVER_BUILD_ID),
    ] {
        t.check(
            name,
            all_bad_pointers(Errno::EFAULT.to_ret(), |p| {
                // SAFETY: the buffer is never mapped.
                unsafe { xen_version(cmd as u64, p) }
            }),
        );
    }
    // A buffer running into the unmapped page.
    let at = *edge - XEN_CAPABILITIES_INFO_LEN as u64 / 2;
    // SAFETY: Xen writes the mapped half of the buffer (ours), then faults.
    let r = unsafe { xen_version(XENVER_CAPABILITIES as u64, at) };
    t.check("xenver-capabilities-into-unmapped-efault", expect_err(r, Errno::EFAULT));
}

/// `XENVER_build_id`: a `xen_build_id` with room for `len` bytes.
#[repr(C)]
struct BuildId {
    len: u32,
    buf: [u8; 60],
}

/// `XENVER_build_id`: the size with a null argument, the bytes, a short buffer, a zero
/// length.
fn build_id(t: &mut Tests, edge: u64) {
    // SAFETY: a null argument asks for the size.
    let size = unsafe { xen_version(XENVER_BUILD_ID as u64, 0) };
    let mut id = BuildId { len: 60, buf: [0; 60] };
    // SAFETY: Xen reads `len` and writes at most 60 bytes into `buf`.
    let r = unsafe { xen_version(XENVER_BUILD_ID as u64, &raw mut id as u64) };
    let n = r.clamp(0, 60) as usize;
    println!("sched-console: build id size {}, read {}: {:02x?}", Ret(size), Ret(r), &id.buf[..n]);
    if size == Errno::ENODATA.to_ret() {
        // A Xen built without a build id says so.
        t.check("xenver-build-id", expect_err(r, Errno::ENODATA));
        return;
    }
    t.check(
        "xenver-build-id",
        Outcome::ensure(
            size > 0 && r == size && id.buf[..n].iter().any(|&c| c != 0),
            format_args!("size {}, read {}", Ret(size), Ret(r)),
        ),
    );
    let mut short = BuildId { len: 1, buf: [0; 60] };
    // SAFETY: as above.
    let r = unsafe { xen_version(XENVER_BUILD_ID as u64, &raw mut short as u64) };
    t.check("xenver-build-id-short-enobufs", expect_err(r, Errno::ENOBUFS));
    let mut zero = BuildId { len: 0, buf: [0; 60] };
    // SAFETY: as above.
    let r = unsafe { xen_version(XENVER_BUILD_ID as u64, &raw mut zero as u64) };
    t.check("xenver-build-id-zero-length-einval", expect_err(r, Errno::EINVAL));
    // A header in the mapped page and its bytes in the unmapped one.
    let at = put_before_edge(edge, &60u32.to_ne_bytes());
    // SAFETY: Xen reads the length (ours), then faults writing into the unmapped page.
    let r = unsafe { xen_version(XENVER_BUILD_ID as u64, at) };
    t.check("xenver-build-id-into-unmapped-efault", expect_err(r, Errno::EFAULT));
}

// ---- multicall ----

/// A multicall entry with its result preset to [`SENTINEL`].
fn entry(op: u64, args: [u64; 3]) -> MulticallEntry {
    MulticallEntry { op, result: SENTINEL, args: [args[0], args[1], args[2], 0, 0, 0] }
}

/// Pass if each entry's result is the one expected.
fn expect_results(calls: &[MulticallEntry], want: &[u64]) -> Outcome {
    for (i, (c, &w)) in calls.iter().zip(want).enumerate() {
        if c.result != w {
            return Outcome::fail(format_args!(
                "entry {i} (op {:#x}): result {}, expected {}",
                c.op,
                Ret(c.result as i64),
                Ret(w as i64)
            ));
        }
    }
    Outcome::Pass
}

/// A batch of ordinary calls, bad hypercall numbers among good ones, a nested multicall.
fn multicall_batches(env: &mut Env) {
    let Env { t, xen, b, version, pend, .. } = env;
    let (version, pend) = (*version, *pend);
    b.discard_pending(0);
    let features = xen.xen_get_features(0).unwrap_or(0);
    let line = b"sched-console: this line is a CONSOLEIO_write inside a multicall\n";
    let mut send = EvtchnSend { port: pend };
    let mut status = EvtchnStatus { dom: DOMID_SELF, port: pend, ..EvtchnStatus::default() };
    let mut fi = XenFeatureInfo { submap_idx: 0, submap: 0 };
    let mut calls = [
        entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0]),
        entry(
            HYPERVISOR_CONSOLE_IO as u64,
            [CONSOLEIO_WRITE as u64, line.len() as u64, line.as_ptr() as u64],
        ),
        entry(HYPERVISOR_EVENT_CHANNEL_OP as u64, [EVTCHNOP_SEND as u64, &raw mut send as u64, 0]),
        entry(HYPERVISOR_EVENT_CHANNEL_OP as u64, [EVTCHNOP_STATUS as u64, &raw mut status as u64, 0]),
        entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_GET_FEATURES as u64, &raw mut fi as u64, 0]),
        entry(HYPERVISOR_SCHED_OP as u64, [SCHEDOP_YIELD as u64, 0, 0]),
    ];
    guest_shim::console::flush();
    // SAFETY: each entry is a valid call whose pointers are live locals of the right
    // types.
    let r = unsafe { multicall(calls.as_mut_ptr() as u64, calls.len() as u64) };
    t.check("multicall-batch-returns-zero", expect(r, 0));
    t.check("multicall-batch-results", expect_results(&calls, &[version, 0, 0, 0, 0, 0]));
    t.check(
        "multicall-batch-effects",
        Outcome::ensure(
            b.is_pending(pend) && status.status == EVTCHNSTAT_IPI && fi.submap == features,
            format_args!(
                "port pending {}, status {}, features {:#x} (direct call {features:#x})",
                b.is_pending(pend),
                status.status,
                fi.submap
            ),
        ),
    );
    b.discard_pending(0);

    // Bad hypercall numbers fail alone; the entries around them still run.
    let mut calls = [
        entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0]),
        entry(UNDEFINED_HYPERCALL, [0; 3]),
        entry(100, [0; 3]),
        entry(u64::MAX, [0; 3]),
        entry((1 << 32) | HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0]),
        entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0]),
    ];
    // SAFETY: the valid entries read no memory; the others are refused.
    let r = unsafe { multicall(calls.as_mut_ptr() as u64, calls.len() as u64) };
    let enosys = Errno::ENOSYS.to_ret() as u64;
    t.check(
        "multicall-bad-op-enosys",
        all([expect(r, 0), expect_results(&calls, &[version, enosys, enosys, enosys, enosys, version])]),
    );

    // A call that fails inside the batch (a bad buffer) fails alone too.
    let mut calls = [
        entry(HYPERVISOR_CONSOLE_IO as u64, [CONSOLEIO_WRITE as u64, 16, UNMAPPED]),
        entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0]),
    ];
    // SAFETY: the first entry's buffer is never mapped (refused); the second reads no
    // memory.
    let r = unsafe { multicall(calls.as_mut_ptr() as u64, calls.len() as u64) };
    t.check(
        "multicall-failing-entry-efault",
        all([expect(r, 0), expect_results(&calls, &[Errno::EFAULT.to_ret() as u64, version])]),
    );

    // A multicall inside a multicall is refused (-EINVAL); its entries do not run.
    let mut inner = [entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0])];
    let mut calls = [
        entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0]),
        entry(HYPERVISOR_MULTICALL as u64, [inner.as_mut_ptr() as u64, 1, 0]),
        entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0]),
    ];
    // SAFETY: the entries (and the inner list) read no memory but the lists.
    let r = unsafe { multicall(calls.as_mut_ptr() as u64, calls.len() as u64) };
    t.check(
        "multicall-nested-einval",
        all([
            expect(r, 0),
            expect_results(&calls, &[version, Errno::EINVAL.to_ret() as u64, version]),
            expect_results(&inner, &[SENTINEL]),
        ]),
    );
}

/// Multicall lists: empty, bad, running into the unmapped page, the count's width.
fn multicall_lists(env: &mut Env) {
    let Env { t, version, edge, .. } = env;
    let (version, edge) = (*version, *edge);
    let mut calls = [entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0])];
    // SAFETY: no entry is run.
    let r = unsafe { multicall(calls.as_mut_ptr() as u64, 0) };
    t.check("multicall-count-zero", all([expect(r, 0), expect_results(&calls, &[SENTINEL])]));
    // An empty list is not read, but its address is range-checked (as for poll).
    let outcomes = BAD_POINTERS.map(|(_, p)| {
        // SAFETY: no entry is run.
        let r = unsafe { multicall(p, 0) };
        expect(r, if p == UNMAPPED { 0 } else { Errno::EFAULT.to_ret() })
    });
    t.check("multicall-count-zero-list-address", all(outcomes));
    t.check(
        "multicall-bad-list-efault",
        all_bad_pointers(Errno::EFAULT.to_ret(), |p| {
            // SAFETY: the list is never mapped: nothing runs.
            unsafe { multicall(p, 1) }
        }),
    );

    // One entry at the end of the mapped page, the next one in the unmapped page.
    let size = size_of::<MulticallEntry>() as u64;
    let at = edge - size;
    let put = || {
        let e = entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0]);
        // SAFETY: `at..edge` is in our mapped page, 8-byte aligned.
        unsafe { (at as *mut MulticallEntry).write(e) };
    };
    // SAFETY: `at` holds a MulticallEntry (written by `put`).
    let result = || unsafe { (at as *const MulticallEntry).read().result };
    put();
    // SAFETY: the one readable entry reads no memory.
    let r = unsafe { multicall(at, 2) };
    t.check(
        "multicall-list-into-unmapped-efault",
        all([expect_err(r, Errno::EFAULT), expect(result() as i64, version as i64)]),
    );
    // The count is 32 bits: 2^32 + 1 is one entry (a wider count would read the
    // unmapped page and fail).
    put();
    // SAFETY: as above.
    let r = unsafe { multicall(at, (1 << 32) | 1) };
    t.check("multicall-count-low-32-bits", all([expect(r, 0), expect(result() as i64, version as i64)]));
    put();
    // SAFETY: as above.
    let r = unsafe { multicall(at, 1 << 32) };
    t.check(
        "multicall-count-2-pow-32-is-zero",
        all([expect(r, 0), expect(result() as i64, SENTINEL as i64)]),
    );
}

/// `HYPERVISOR_multicall(list, count)` made with a raw SYSCALL while an iret frame lies
/// at the stack pointer: an iret entry in the list returns through that frame, to the
/// instruction after the frame-building code, with `frame_rax` in RAX. Returns RAX and
/// whether the iret frame was used (`false`: the multicall returned normally).
///
/// # Safety
///
/// Every entry of the list must be a valid call (see [`hc`]).
unsafe fn multicall_on_iret_frame(list: *mut MulticallEntry, count: u64, frame_rax: u64) -> (u64, bool) {
    let rax: u64;
    let via_iret: u64;
    // SAFETY: the frame is built below the current stack pointer (kept in R12, which
    // the hypervisor preserves), in Xen's `iret_context` layout: RAX, R11, RCX, flags 0
    // (not in a syscall), RIP = label 2, kernel CS (RPL 0), RFLAGS with IF clear (events
    // stay masked, as they are), RSP = the caller's, kernel SS. Both ways back restore
    // RSP from R12. The registers Xen or the iret may change are declared clobbered.
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "and rsp, -16",
            "sub rsp, 80",
            "mov [rsp], {frame_rax}",
            "mov qword ptr [rsp + 8], 0",
            "mov qword ptr [rsp + 16], 0",
            "mov qword ptr [rsp + 24], 0",
            "lea rax, [rip + 2f]",
            "mov [rsp + 32], rax",
            "mov qword ptr [rsp + 40], {cs}",
            "mov qword ptr [rsp + 48], {rflags}",
            "mov [rsp + 56], r12",
            "mov qword ptr [rsp + 64], {ss}",
            "mov eax, {multicall}",
            "syscall",
            "mov rsp, r12",
            "xor edx, edx",
            "jmp 3f",
            "2:",
            "mov edx, 1",
            "3:",
            frame_rax = in(reg) frame_rax,
            cs = const FLAT_KERNEL_CS as u64 & !3,
            rflags = const 0x2u64,
            ss = const FLAT_KERNEL_SS as u64,
            multicall = const HYPERVISOR_MULTICALL,
            inout("rdi") list => _,
            inout("rsi") count => _,
            lateout("rax") rax,
            lateout("rdx") via_iret,
            out("rcx") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
        );
    }
    (rax, via_iret != 0)
}

/// `HYPERVISOR_iret` inside a multicall: it takes effect (the vCPU returns through the
/// iret frame on the stack) and ends the batch; the entries after it do not run.
fn multicall_iret(env: &mut Env) {
    let Env { t, b, .. } = env;
    let mut calls = [
        entry(HYPERVISOR_IRET as u64, [0; 3]),
        entry(HYPERVISOR_XEN_VERSION as u64, [XENVER_VERSION as u64, 0, 0]),
    ];
    // SAFETY: the iret entry returns through the frame the function builds; the other
    // reads no memory.
    let (rax, via_iret) = unsafe { multicall_on_iret_frame(calls.as_mut_ptr(), 2, IRET_RAX) };
    println!(
        "sched-console: multicall [iret, xen_version]: via iret {via_iret}, rax {}, results {} {}",
        Ret(rax as i64),
        Ret(calls[0].result as i64),
        Ret(calls[1].result as i64)
    );
    t.check(
        "multicall-iret-ends-batch",
        all([
            Outcome::ensure(via_iret, "the multicall returned normally, not through the iret frame"),
            // do_multicall keeps its return code in an `int`: RAX is the frame's RAX
            // truncated to 32 bits and sign-extended (the entry's result has all 64).
            expect(rax as i64, IRET_RAX as i32 as i64),
            expect_results(&calls, &[IRET_RAX, SENTINEL]),
            Outcome::ensure(b.upcall_mask(0) == 1, "events unmasked by the iret (RFLAGS.IF was clear)"),
        ]),
    );
}

// ---- The end ----

/// `SCHEDOP_shutdown_code` latches the first code; then the summary, and dom0 shuts
/// itself down with `SCHEDOP_remote_shutdown` asking for a reboot: the latched poweroff
/// wins, so the run ends in a clean poweroff.
fn finish(env: Env) -> ! {
    let Env { mut t, xen, .. } = env;
    t.check("shutdown-code", xen.sched_shutdown_code(SHUTDOWN_POWEROFF));
    // Accepted and ignored: the first code stays (the end of the run shows it).
    t.check("shutdown-code-second-accepted", xen.sched_shutdown_code(SHUTDOWN_REBOOT));
    t.summary();
    println!(
        "sched-console: SCHEDOP_remote_shutdown(0, reboot) with poweroff latched: the run must end in a \
         poweroff"
    );
    guest_shim::console::flush();
    let r = xen.sched_remote_shutdown(0, SHUTDOWN_REBOOT);
    t.fail("remote-shutdown-self", format_args!("returned {}", Ret(ret(r))));
    guest_shim::poweroff()
}

#[cfg(not(target_os = "none"))]
fn main() {}
