// SPDX-License-Identifier: MIT OR Apache-2.0
//! Console output, line by line: [`print!`](crate::print) and
//! [`println!`](crate::println); and console input ([`read`]).
//!
//! Text is collected in a line buffer and handed to the *sink* one whole line at a
//! time (or [`LINE_MAX`] bytes when a line is longer), so lines from different parts
//! of a guest never interleave and each hypercall carries a useful amount of text.
//!
//! # Backends
//!
//! The runtime picks the backend at start ([`init`], before the guest's main runs):
//! - **dom0** (`SIF_INITDOMAIN` in `start_info.flags`): `HYPERVISOR_console_io
//!   (CONSOLEIO_write)`. Xen prints what dom0 writes there on its own console (the
//!   serial line) as it is, with no prefix. Input: `CONSOLEIO_read`, announced by
//!   `VIRQ_CONSOLE`.
//! - **any other domain**: its PV console ring ([`Ring`], `start_info.console.domU`),
//!   because Xen refuses `console_io` from unprivileged domains (-EPERM; only debug
//!   builds let them write). Output goes into the ring's `out` side with an
//!   `EVTCHNOP_send` on the console port after each line; a full ring is waited out
//!   with `SCHEDOP_yield`. The backend (xenconsoled on Xen, the hypervisor itself
//!   here) prints it, on this project's hypervisor prefixed `(dN) `. Input comes from
//!   the ring's `in` side, signalled on the same port.
//!
//! The ring page is one of the domain's own frames: its MFN goes through the M2P
//! ([`mmu::mfn_to_pfn`](crate::mmu::mfn_to_pfn)) to a pfn, mapped at
//! `VIRT_BASE + pfn * 4096` when it lies in the bootstrap region (the builder maps the
//! region 1:1, [`pt::bootstrap_region`](crate::pt::bootstrap_region)). Otherwise the
//! frame is mapped over a page set aside in `.bss`.
//!
//! The print macros, [`Writer`] and [`Tests`](crate::Tests) work the same with either
//! backend. [`set_sink`] replaces the sink altogether (a guest with its own console
//! driver); [`console_io_sink`] and [`ring_sink`] are the two built-in ones.
//!
//! ```no_run
//! use guest_shim::console::{self, Backend};
//! use guest_shim::println;
//!
//! println!("console: {:?}", console::backend()); // Ring in a domU, ConsoleIo in dom0
//! if console::backend() == Backend::Ring {
//!     let mut buf = [0u8; 128];
//!     let n = console::read(&mut buf).unwrap_or(0); // input that arrived, if any
//!     println!("read {n} bytes; port {:?}", console::input_port());
//! }
//! ```

use core::fmt::{self, Write};

use pv_abi::XenError;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::xen::StartInfo;
use spin::{Mutex, Once};

pub mod ring;

pub use ring::Ring;

/// Longest chunk handed to the sink at once.
pub const LINE_MAX: usize = 256;

/// Where console bytes go: called with one line (or chunk) at a time.
pub type Sink = fn(&[u8]);

/// A line buffer: bytes accumulate until a newline or until it is full, then the
/// buffered bytes go to a sink in one call.
#[derive(Clone)]
pub struct LineBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> LineBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { buf: [0; N], len: 0 }
    }

    /// The bytes waiting for a newline.
    pub fn pending(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends `bytes`, sending each completed line (newline included) or full buffer
    /// to `sink`.
    pub fn write(&mut self, bytes: &[u8], sink: &mut dyn FnMut(&[u8])) {
        for &b in bytes {
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' || self.len == N {
                self.flush(sink);
            }
        }
    }

    /// Sends whatever is buffered to `sink`.
    pub fn flush(&mut self, sink: &mut dyn FnMut(&[u8])) {
        if self.len > 0 {
            sink(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<const N: usize> Default for LineBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The console: the line buffer and the current sink.
struct Console {
    line: LineBuf<LINE_MAX>,
    sink: Sink,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console { line: LineBuf::new(), sink: default_sink });

/// `fmt::Write` into the locked console.
struct Locked<'a>(&'a mut Console);

impl Write for Locked<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut sink = self.0.sink;
        self.0.line.write(s.as_bytes(), &mut sink);
        Ok(())
    }
}

/// Writes to the hypervisor console with `console_io`. Errors are dropped: there is
/// nowhere else to report them.
#[cfg(target_os = "none")]
pub fn console_io_sink(bytes: &[u8]) {
    let _ = crate::hypercalls().console_write(bytes);
}

/// On the host there is no hypervisor: output is dropped.
#[cfg(not(target_os = "none"))]
pub fn console_io_sink(_bytes: &[u8]) {}

/// Writes to the domain's console ring ([`Ring::write`]: may yield until the backend
/// makes room), or with `console_io` if there is no ring.
pub fn ring_sink(bytes: &[u8]) {
    match RING.get() {
        Some(r) => r.write(bytes),
        None => console_io_sink(bytes),
    }
}

/// The sink [`init`] chose: the ring once there is one, else `console_io`.
fn default_sink(bytes: &[u8]) {
    ring_sink(bytes)
}

/// The console ring, once [`init`] found it.
static RING: Once<Ring> = Once::new();

/// Where console output goes by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `HYPERVISOR_console_io` (dom0).
    ConsoleIo,
    /// The domain's PV console ring (unprivileged domains).
    Ring,
}

/// The backend in use (before [`init`]: `ConsoleIo`).
pub fn backend() -> Backend {
    if RING.get().is_some() { Backend::Ring } else { Backend::ConsoleIo }
}

/// The console ring, if this domain uses one.
pub fn ring() -> Option<&'static Ring> {
    RING.get()
}

/// Why an unprivileged domain's console ring could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `start_info.console.domU` names no event channel (port 0 is never valid).
    NoPort,
    /// The frame could not be mapped over the `.bss` slot.
    Map {
        /// The ring's machine frame.
        mfn: u64,
        /// What `update_va_mapping` said.
        errno: XenError,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::NoPort => f.write_str("start_info.console.domU has no event channel"),
            RingError::Map { mfn, errno } => write!(f, "cannot map console frame {mfn:#x}: {errno}"),
        }
    }
}

/// Chooses the console backend for the domain `si` describes: dom0 keeps
/// `console_io`; another domain gets its console ring (see the module docs), from then
/// on the default sink. The runtime calls it once at start; later calls change
/// nothing. Returns the backend, or why a domU is left with `console_io`.
pub fn init(si: &StartInfo) -> Result<Backend, RingError> {
    if si.flags & pv_abi::xen::SIF_INITDOMAIN != 0 {
        return Ok(backend());
    }
    if RING.get().is_none() {
        let c = si.console_domu();
        if c.evtchn == 0 {
            return Err(RingError::NoPort);
        }
        let va = ring_va(c.mfn)?;
        // SAFETY: `va` maps the domain's console frame writable for good (`ring_va`),
        // and only the backend shares it.
        RING.call_once(|| unsafe { Ring::new(va as *mut _, c.evtchn) });
    }
    Ok(Backend::Ring)
}

/// Where the console frame `mfn` can be reached: its place in the bootstrap region if
/// the M2P and P2M agree on it, else the `.bss` slot mapped over it.
fn ring_va(mfn: u64) -> Result<u64, RingError> {
    use crate::mmu::{PAGE_SIZE, mfn_to_pfn, pfn_to_mfn};
    let in_region = mfn_to_pfn(mfn)
        .filter(|&pfn| pfn_to_mfn(pfn) == Some(mfn))
        .and_then(|pfn| pfn.checked_mul(PAGE_SIZE)?.checked_add(crate::notes::VIRT_BASE))
        .filter(|va| crate::pt::bootstrap_region().contains(va));
    match in_region {
        Some(va) => Ok(va),
        None => map_slot(mfn).map_err(|errno| RingError::Map { mfn, errno }),
    }
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".pushsection .bss.guest_shim_console_ring, \"aw\", @nobits",
    ".balign 4096",
    ".global __guest_shim_console_ring",
    "__guest_shim_console_ring:",
    ".zero 4096",
    ".popsection",
);

/// Maps frame `mfn` writable over the page set aside for it in `.bss`.
#[cfg(target_os = "none")]
fn map_slot(mfn: u64) -> Result<u64, XenError> {
    use crate::mmu::{KERNEL_RW, PAGE_SIZE};
    use pv_abi::xen::UvmfFlags;
    unsafe extern "C" {
        /// The page-aligned slot (assembly above).
        static __guest_shim_console_ring: [u8; 4096];
    }
    let va = (&raw const __guest_shim_console_ring) as u64;
    // SAFETY: the slot is reserved for this mapping and nothing refers to it, so
    // replacing the frame mapped there breaks no Rust object.
    unsafe { crate::hypercalls().update_va_mapping(va, (mfn * PAGE_SIZE) | KERNEL_RW, UvmfFlags::INVLPG) }?;
    Ok(va)
}

/// On the host there is no hypervisor.
#[cfg(not(target_os = "none"))]
fn map_slot(_mfn: u64) -> Result<u64, XenError> {
    crate::host::unavailable("console::init")
}

/// Reads console input that has already arrived into `buf`, without waiting; returns
/// the number of bytes (0: nothing yet). From the ring's `in` side when the domain has
/// one (the backend is told there is room), else `CONSOLEIO_read` (dom0). To wait for
/// input, poll [`input_port`] (or, in dom0, a port bound to `VIRQ_CONSOLE`).
pub fn read(buf: &mut [u8]) -> Result<usize, XenError> {
    match RING.get() {
        Some(r) => Ok(r.read(buf)),
        None => crate::hypercalls().console_read(buf),
    }
}

/// The event channel that signals console input: the ring's port in a domU; `None`
/// with `console_io` (dom0 binds `VIRQ_CONSOLE` instead).
pub fn input_port() -> Option<EvtchnPort> {
    RING.get().map(Ring::port)
}

/// Waits until the backend has consumed the ring's output, for at most `timeout_ns`
/// of system time (yielding meanwhile); returns whether it did. Without a ring there
/// is nothing to wait for. [`shutdown`](crate::shutdown) does this, so a domain's
/// last lines are not lost with it.
pub fn drain(timeout_ns: u64) -> bool {
    let Some(r) = RING.get() else { return true };
    if r.out_pending() == 0 {
        return true;
    }
    // Time needs the shared-info page; without it, a bounded number of yields.
    let clock = crate::events::bitmaps().ok();
    let start = clock.map_or(0, |b| b.system_time(0));
    let xen = crate::hypercalls();
    let mut yields = 0u64;
    while r.out_pending() != 0 {
        let late = match clock {
            Some(b) => b.system_time(0).saturating_sub(start) >= timeout_ns,
            None => yields >= 10_000,
        };
        if late {
            return false;
        }
        let _ = xen.evtchn_send(r.port());
        let _ = xen.sched_yield();
        yields += 1;
    }
    true
}

/// Sends output to `sink` from now on (pending text goes to the old one first).
/// Returns the previous sink.
pub fn set_sink(sink: Sink) -> Sink {
    let mut c = CONSOLE.lock();
    let mut old = c.sink;
    c.line.flush(&mut old);
    c.sink = sink;
    old
}

/// Sends a partial line, if any, to the sink.
pub fn flush() {
    let mut c = CONSOLE.lock();
    let mut sink = c.sink;
    c.line.flush(&mut sink);
}

/// Prints formatted text (the implementation of `print!`).
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut c = CONSOLE.lock();
    let _ = Locked(&mut c).write_fmt(args);
}

/// Prints `args` even when the console lock is held (a panic while printing): the
/// pending text is flushed first when possible, then `args` goes straight to the sink.
pub fn emergency(args: fmt::Arguments<'_>) {
    let sink = match CONSOLE.try_lock() {
        Some(mut c) => {
            let mut sink = c.sink;
            c.line.flush(&mut sink);
            sink
        }
        None => default_sink,
    };
    let mut line = Direct { line: LineBuf::new(), sink };
    let _ = line.write_fmt(args);
    let mut sink = line.sink;
    line.line.flush(&mut sink);
}

/// A private line buffer in front of a sink (for [`emergency`]).
struct Direct {
    line: LineBuf<LINE_MAX>,
    sink: Sink,
}

impl Write for Direct {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut sink = self.sink;
        self.line.write(s.as_bytes(), &mut sink);
        Ok(())
    }
}

/// A handle on the console that implements [`fmt::Write`], for code generic over a
/// writer (such as [`Tests`](crate::Tests)).
#[derive(Clone, Copy, Debug, Default)]
pub struct Writer;

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Locked(&mut CONSOLE.lock()).write_str(s)
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        _print(args);
        Ok(())
    }
}

/// Prints to the console, like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the console, like `std::println!`.
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn collect<const N: usize>(parts: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut out = Vec::new();
        let mut lb = LineBuf::<N>::new();
        for p in parts {
            lb.write(p, &mut |chunk| out.push(chunk.to_vec()));
        }
        (out, lb.pending().to_vec())
    }

    #[test]
    fn whole_lines_only() {
        let (out, pending) = collect::<64>(&[b"RESULT a ", b"PASS\nRES", b"ULT b PASS\npart"]);
        assert_eq!(out, [b"RESULT a PASS\n".to_vec(), b"RESULT b PASS\n".to_vec()]);
        assert_eq!(pending, b"part");
    }

    #[test]
    fn long_lines_are_chunked() {
        let (out, pending) = collect::<4>(&[b"abcdefghij\n"]);
        assert_eq!(out, [b"abcd".to_vec(), b"efgh".to_vec(), b"ij\n".to_vec()]);
        assert!(pending.is_empty());
    }

    #[test]
    fn flush_sends_partial_line() {
        let mut out = Vec::new();
        let mut lb = LineBuf::<8>::new();
        lb.write(b"abc", &mut |c| out.push(c.to_vec()));
        assert!(out.is_empty());
        lb.flush(&mut |c| out.push(c.to_vec()));
        lb.flush(&mut |c| out.push(c.to_vec()));
        assert_eq!(out, [b"abc".to_vec()]);
    }
}
