// SPDX-License-Identifier: MIT OR Apache-2.0
//! The CMOS real-time clock, read once at boot for the guests' wall clock.

use ::x86_64::instructions::port::Port;

fn read(reg: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the CMOS index and data registers, owned by
    // the hypervisor; NMIs stay enabled (bit 7 clear).
    unsafe {
        Port::<u8>::new(0x70).write(reg & 0x7f);
        Port::<u8>::new(0x71).read()
    }
}

/// (year, month, day, hour, minute, second) in UTC, as the RTC holds it.
pub fn read_date() -> (u32, u32, u32, u32, u32, u32) {
    // Wait out an update in progress (bounded), then read twice until stable.
    for _ in 0..100_000 {
        if read(0x0a) & 0x80 == 0 {
            break;
        }
    }
    let sample = || [read(0x00), read(0x02), read(0x04), read(0x07), read(0x08), read(0x09), read(0x32)];
    let mut v = sample();
    for _ in 0..10 {
        let again = sample();
        if again == v {
            break;
        }
        v = again;
    }
    let status_b = read(0x0b);
    let bcd = |x: u8| {
        if status_b & 0x04 == 0 { u32::from((x & 0x0f) + (x >> 4) * 10) } else { u32::from(x) }
    };
    let hour_raw = v[2];
    let mut hour = bcd(hour_raw & 0x7f);
    if status_b & 0x02 == 0 && hour_raw & 0x80 != 0 {
        hour = (hour % 12) + 12; // 12-hour mode, PM
    }
    let century = match bcd(v[6]) {
        c @ 19..=99 => c,
        _ => 20,
    };
    (century * 100 + bcd(v[5]), bcd(v[4]), bcd(v[3]), hour, bcd(v[1]), bcd(v[0]))
}
