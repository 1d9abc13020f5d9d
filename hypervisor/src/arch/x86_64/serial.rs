// SPDX-License-Identifier: MIT OR Apache-2.0
//! A 16550 UART, the console's back end: output polled, input by interrupt
//! (IRQ 4 through the 8259, the one line it leaves unmasked).

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

    /// Raises IRQ 4 when a byte arrives (IER: receive data; MCR: OUT2 gates
    /// the line to the interrupt controller).
    pub fn enable_rx_interrupt(&self) {
        self.out(4, 0x0b); // MCR: DTR, RTS, OUT2
        self.out(1, 0x01); // IER: received data available
    }

    /// A received byte, if one is waiting.
    pub fn read_byte(&self) -> Option<u8> {
        (self.inb(5) & 0x01 != 0).then(|| self.inb(0))
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
