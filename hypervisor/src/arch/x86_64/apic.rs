// SPDX-License-Identifier: MIT OR Apache-2.0
//! The local APIC (xAPIC, MMIO) and its one-shot timer, and the PIT as the
//! reference clock for calibration.

use super::cpu::{rdmsr, rdtsc, wrmsr};
use super::paging::APIC_VIRT;
use ::x86_64::instructions::port::Port;

pub const TIMER_VECTOR: u8 = 0xf0;
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3e0;

/// The physical base of the local APIC's registers.
pub fn phys_base() -> u64 {
    rdmsr(IA32_APIC_BASE) & 0x000f_ffff_ffff_f000
}

fn read(reg: u32) -> u32 {
    // SAFETY: APIC_VIRT maps the APIC's register page uncached; `reg` is
    // one of the architectural register offsets above.
    unsafe { core::ptr::read_volatile((APIC_VIRT + u64::from(reg)) as *const u32) }
}

fn write(reg: u32, value: u32) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((APIC_VIRT + u64::from(reg)) as *mut u32, value) }
}

/// Moves the legacy 8259 PICs off the exception vectors (the BIOS leaves IRQ 0
/// on vector 8, the double fault) to 0x20..0x2f and masks every line: all
/// interrupts come through the APIC.
fn disable_8259() {
    const INIT: [(u16, u8); 10] = [
        (0x20, 0x11),
        (0xa0, 0x11), // ICW1: init, ICW4 follows
        (0x21, 0x20),
        (0xa1, 0x28), // ICW2: vector bases
        (0x21, 0x04),
        (0xa1, 0x02), // ICW3: cascade on IRQ 2
        (0x21, 0x01),
        (0xa1, 0x01), // ICW4: 8086 mode
        (0x21, 0xff),
        (0xa1, 0xff), // mask all
    ];
    for (port, value) in INIT {
        // SAFETY: the 8259 command and data ports, owned by the hypervisor.
        unsafe { Port::<u8>::new(port).write(value) };
    }
}

/// The vector of COM1's IRQ 4 through the remapped 8259.
pub const SERIAL_VECTOR: u8 = 0x24;

/// Unmasks IRQ 4 (COM1) on the master 8259, the only legacy line the
/// hypervisor takes (it reaches the CPU through the APIC's LINT0, which the
/// firmware leaves in virtual-wire mode).
pub fn unmask_serial_irq() {
    // SAFETY: the 8259's data port, owned by the hypervisor: mask all but IRQ 4.
    unsafe { Port::<u8>::new(0x21).write(!(1u8 << 4)) };
}

/// End of interrupt for an 8259 line.
pub fn eoi_8259() {
    // SAFETY: the non-specific EOI command to the master 8259.
    unsafe { Port::<u8>::new(0x20).write(0x20) };
}

/// Enables the APIC in xAPIC mode with the spurious vector; returns its ID.
pub fn init() -> u32 {
    disable_8259();
    let base = rdmsr(IA32_APIC_BASE);
    // SAFETY: sets the global-enable bit of the APIC at its current base.
    unsafe { wrmsr(IA32_APIC_BASE, base | (1 << 11)) };
    write(REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(REG_TIMER_DIV, 0x3); // divide by 16
    write(REG_LVT_TIMER, 1 << 16); // masked until armed
    read(REG_ID) >> 24
}

pub fn eoi() {
    write(REG_EOI, 0);
}

/// Arms the one-shot timer `count` APIC ticks from now (0 stops it).
pub fn arm_oneshot(count: u32) {
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    write(REG_TIMER_INIT, count);
}

/// Measures TSC ticks and APIC timer ticks over `ms` milliseconds of PIT time
/// (channel 2, gated through port 0x61, polled: no interrupts needed).
pub fn calibrate(ms: u32) -> (u64, u64) {
    const PIT_HZ: u32 = 1_193_182;
    let count = (PIT_HZ / 1000 * ms).min(0xffff) as u16;
    // SAFETY: ports 0x61, 0x42 and 0x43 are the PC speaker gate and PIT
    // channel 2, which the hypervisor owns and which nothing else uses.
    unsafe {
        let mut gate = Port::<u8>::new(0x61);
        let g = gate.read();
        gate.write((g & !0x02) | 0x01); // speaker off, gate on
        Port::<u8>::new(0x43).write(0xb0); // channel 2, lobyte/hibyte, mode 0
        Port::<u8>::new(0x42).write(count as u8);
        Port::<u8>::new(0x42).write((count >> 8) as u8);
        // Restart the count by toggling the gate.
        let g = gate.read();
        gate.write(g & !0x01);
        gate.write(g | 0x01);
    }
    write(REG_LVT_TIMER, 1 << 16);
    write(REG_TIMER_INIT, u32::MAX);
    let tsc0 = rdtsc();
    // Bounded poll for the PIT output (bit 5), so a missing PIT cannot hang us.
    let mut spins = 0u64;
    // SAFETY: as above.
    while unsafe { Port::<u8>::new(0x61).read() } & 0x20 == 0 && spins < 1_000_000_000 {
        spins += 1;
        core::hint::spin_loop();
    }
    let tsc1 = rdtsc();
    let apic = u32::MAX - read(REG_TIMER_CUR);
    write(REG_TIMER_INIT, 0);
    (tsc1 - tsc0, u64::from(apic))
}
