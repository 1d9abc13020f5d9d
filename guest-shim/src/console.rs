// SPDX-License-Identifier: MIT OR Apache-2.0
//! Console output, line by line: [`print!`](crate::print) and
//! [`println!`](crate::println).
//!
//! Text is collected in a line buffer and handed to the *sink* one whole line at a
//! time (or [`LINE_MAX`] bytes when a line is longer), so lines from different parts
//! of a guest never interleave and each hypercall carries a useful amount of text.
//!
//! The default sink is `HYPERVISOR_console_io(CONSOLEIO_write)`. Xen prints what dom0
//! writes there on its own console (the serial line) as it is, with no prefix. Xen only
//! accepts it from unprivileged domains in debug builds; their console is the PV
//! console ring (`start_info.console.domU`, `pv_abi::io::console`), which a driver will
//! provide by installing its own sink with [`set_sink`]. The sink is the only hook a
//! new console backend needs.

use core::fmt::{self, Write};

use spin::Mutex;

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

fn default_sink(bytes: &[u8]) {
    console_io_sink(bytes)
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
