// SPDX-License-Identifier: MIT OR Apache-2.0
//! A polled 16550 UART, the console's back end.

use ::x86_64::instructions::port::Port;

pub const COM1: u16 = 0x3f8;
const UART_CLOCK: u32 = 115_200;

pub struct Uart {
    base: u16,
}

impl Uart {
    pub const fn new(base: u16) -> Self {
        Uart { base }
    }

    fn out(&self, reg: u16, value: u8) {
        // SAFETY: the port belongs to the UART the hypervisor owns.
        unsafe { Port::<u8>::new(self.base + reg).write(value) }
    }

    fn inb(&self, reg: u16) -> u8 {
        // SAFETY: as in `out`; reading UART registers has no other effect.
        unsafe { Port::<u8>::new(self.base + reg).read() }
    }

    /// 8 data bits, no parity, 1 stop bit at `baud`, FIFOs on, interrupts off.
    pub fn init(&self, baud: u32) {
        let divisor = (UART_CLOCK / baud.clamp(1, UART_CLOCK)).max(1) as u16;
        self.out(1, 0x00); // IER: no interrupts
        self.out(3, 0x80); // LCR: DLAB
        self.out(0, divisor as u8);
        self.out(1, (divisor >> 8) as u8);
        self.out(3, 0x03); // LCR: 8n1
        self.out(2, 0xc7); // FCR: enable and clear FIFOs
        self.out(4, 0x03); // MCR: DTR, RTS
    }

    pub fn write_byte(&self, byte: u8) {
        // Bounded wait for the transmit holding register, so that a missing
        // UART cannot hang the hypervisor.
        for _ in 0..100_000 {
            if self.inb(5) & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.out(0, byte);
    }
}
