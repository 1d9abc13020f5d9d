// SPDX-License-Identifier: MIT OR Apache-2.0
//! The hypervisor console on COM1, and the back end of the `log` crate.
//! Info-level lines print as they are; warnings and errors carry a prefix.

use crate::arch::serial::{COM1, Uart};
use crate::cmdline::LogLevel;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use log::{Level, LevelFilter, Log, Metadata, Record};

static UART: Uart = Uart::new(COM1);
/// Serial input not yet read by dom0 (CONSOLEIO_read); the oldest bytes go
/// when it is full.
static INPUT: spin::Mutex<heapless::Deque<u8, 1024>> = spin::Mutex::new(heapless::Deque::new());
static LOCK: spin::Mutex<()> = spin::Mutex::new(());
static ENABLED: AtomicBool = AtomicBool::new(true);

struct Raw;

impl Write for Raw {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if ENABLED.load(Ordering::Relaxed) {
            for b in s.bytes() {
                if b == b'\n' {
                    UART.write_byte(b'\r');
                }
                UART.write_byte(b);
            }
        }
        Ok(())
    }
}

/// Writes a line under the console lock.
pub fn print(args: fmt::Arguments<'_>) {
    let _guard = LOCK.lock();
    let _ = Raw.write_fmt(args);
}

/// Writes without the lock: for exception and panic reports, which may
/// interrupt a holder of the lock.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    let _ = Raw.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;
static LOGGER: Logger = Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = match record.level() {
            Level::Error => "ERROR: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug => "debug: ",
            Level::Trace => "trace: ",
        };
        print(format_args!("{prefix}{}\n", record.args()));
    }

    fn flush(&self) {}
}

/// Takes what the UART received into the input buffer; true if anything
/// came. Called on IRQ 4.
pub fn receive() -> bool {
    let mut input = INPUT.lock();
    let mut any = false;
    // Bounded: a UART stuck reporting data cannot keep the hypervisor here.
    for _ in 0..64 {
        let Some(b) = UART.read_byte() else { break };
        any = true;
        // Ctrl-A is held back until it is known not to be the third in a row.
        let held = CTRL_A_HELD.load(Ordering::Relaxed);
        if b == CTRL_A {
            if held == 2 {
                CTRL_A_HELD.store(0, Ordering::Relaxed);
                SWITCH.store(true, Ordering::Relaxed);
            } else {
                CTRL_A_HELD.store(held + 1, Ordering::Relaxed);
            }
            continue;
        }
        CTRL_A_HELD.store(0, Ordering::Relaxed);
        for c in core::iter::repeat_n(CTRL_A, held as usize).chain([b]) {
            if input.is_full() {
                input.pop_front();
            }
            let _ = input.push_back(c);
        }
    }
    any
}

/// The input switch: Ctrl-A three times (as Xen's).
const CTRL_A: u8 = 0x01;
static CTRL_A_HELD: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
static SWITCH: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-A was typed three times since the last call.
pub fn take_switch_request() -> bool {
    SWITCH.swap(false, Ordering::Relaxed)
}

/// Copies buffered input to `buf` without taking it; returns how many bytes.
pub fn peek_input(buf: &mut [u8]) -> usize {
    let input = INPUT.lock();
    let mut n = 0;
    for (slot, &b) in buf.iter_mut().zip(input.iter()) {
        *slot = b;
        n += 1;
    }
    n
}

/// Drops the first `n` bytes of buffered input (taken by a domain).
pub fn drop_input(n: usize) {
    let mut input = INPUT.lock();
    for _ in 0..n {
        input.pop_front();
    }
}

/// Moves buffered input to `buf`; returns how many bytes.
pub fn read_input(buf: &mut [u8]) -> usize {
    let mut input = INPUT.lock();
    let mut n = 0;
    while n < buf.len() {
        let Some(b) = input.pop_front() else { break };
        buf[n] = b;
        n += 1;
    }
    n
}

/// Serial input raises interrupts from now on.
pub fn enable_input() {
    UART.enable_rx_interrupt();
}

/// COM1 at the default speed, logging at info, before the command line is read.
pub fn init_early() {
    UART.init(115_200);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

/// Applies `console=`, `com1=` and `loglvl=`.
pub fn configure(serial: bool, baud: u32, level: LogLevel) {
    UART.init(baud);
    ENABLED.store(serial, Ordering::Relaxed);
    log::set_max_level(match level {
        LogLevel::None => LevelFilter::Off,
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warning => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::All => LevelFilter::Trace,
    });
}
