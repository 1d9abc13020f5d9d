// SPDX-License-Identifier: MIT OR Apache-2.0
//! Time: the TSC as the clock, scaled to nanoseconds the way Xen's
//! `vcpu_time_info` expresses it (`tsc_to_system_mul`, `tsc_shift`), so that
//! the hypervisor and its guests compute time with the same arithmetic.

/// `ns = ((tsc_delta << shift) * mul) >> 32`, with a negative shift meaning a
/// right shift (pvclock's formula).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscScale {
    pub mul: u32,
    pub shift: i8,
}

impl TscScale {
    /// The scale for a TSC running at `hz` (must be non-zero).
    pub fn from_hz(hz: u64) -> Self {
        let (mut num, mut den) = (1_000_000_000u128, u128::from(hz.max(1)));
        let mut shift = 0i8;
        while num >= den {
            den <<= 1;
            shift += 1;
        }
        while num * 2 < den {
            num <<= 1;
            shift -= 1;
        }
        // num/den is in [1/2, 1): the multiplier keeps 31-32 bits of precision.
        TscScale { mul: ((num << 32) / den) as u32, shift }
    }

    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let t =
            if self.shift >= 0 { u128::from(ticks) << self.shift } else { u128::from(ticks) >> -self.shift };
        ((t * u128::from(self.mul)) >> 32) as u64
    }
}

/// TSC frequency from CPUID leaf 0x15 (crystal ratio), when the CPU reports it.
pub fn tsc_hz_from_cpuid15(eax: u32, ebx: u32, ecx: u32) -> Option<u64> {
    (eax != 0 && ebx != 0 && ecx != 0).then(|| u64::from(ecx) * u64::from(ebx) / u64::from(eax))
}

/// Ticks per second from `ticks` counted over `ms` milliseconds.
pub fn hz_from_calibration(ticks: u64, ms: u32) -> u64 {
    ticks.saturating_mul(1000) / u64::from(ms.max(1))
}

/// Seconds since 1970-01-01 for a UTC calendar date and time (the RTC's).
pub fn unix_time(year: u32, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Option<u64> {
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let leap = |y: u32| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let month_days = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if day == 0 || day > month_days[month as usize - 1] {
        return None;
    }
    let days_before_year: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let days_before_month: u64 = month_days[..month as usize - 1].iter().map(|&d| u64::from(d)).sum();
    let days = days_before_year + days_before_month + u64::from(day - 1);
    Some(days * 86_400 + u64::from(hour) * 3600 + u64::from(min) * 60 + u64::from(sec))
}

/// Converts nanoseconds to ticks of a clock at `hz`, saturating.
pub fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    (u128::from(ns) * u128::from(hz) / 1_000_000_000).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn common_frequencies() {
        let s = TscScale::from_hz(1_000_000_000);
        assert_eq!((s.mul, s.shift), (1 << 31, 1));
        assert_eq!(s.ticks_to_ns(123_456_789), 123_456_789);
        let s = TscScale::from_hz(3_000_000_000);
        assert_eq!(s.shift, -1);
        let ns = s.ticks_to_ns(3_000_000_000);
        assert!((999_999_990..=1_000_000_000).contains(&ns), "{ns}");
        let s = TscScale::from_hz(100_000_000);
        assert!(s.shift > 0);
        assert!((9_999_999_990..=10_000_000_000).contains(&s.ticks_to_ns(1_000_000_000)));
    }

    #[test]
    fn cpuid15() {
        assert_eq!(tsc_hz_from_cpuid15(2, 200, 24_000_000), Some(2_400_000_000));
        assert_eq!(tsc_hz_from_cpuid15(0, 200, 24_000_000), None);
        assert_eq!(hz_from_calibration(30_000_000, 10), 3_000_000_000);
        assert_eq!(ns_to_ticks(1_000_000, 3_000_000_000), 3_000_000);
    }

    #[test]
    fn calendar() {
        assert_eq!(unix_time(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(unix_time(2000, 3, 1, 0, 0, 0), Some(951_868_800));
        assert_eq!(unix_time(2026, 11, 23, 12, 30, 5), Some(1_795_437_005));
        assert_eq!(unix_time(2023, 2, 29, 0, 0, 0), None);
        assert_eq!(unix_time(2024, 2, 29, 0, 0, 0), Some(1_709_164_800));
        assert_eq!(unix_time(2026, 13, 1, 0, 0, 0), None);
        assert_eq!(unix_time(1969, 12, 31, 23, 59, 59), None);
    }

    proptest! {
        /// One second of ticks converts to one second within 1 ppm + 1 ns.
        #[test]
        fn scale_is_precise(hz in 1_000_000u64..20_000_000_000) {
            let s = TscScale::from_hz(hz);
            let ns = s.ticks_to_ns(hz);
            prop_assert!(ns <= 1_000_000_000);
            prop_assert!(1_000_000_000 - ns <= 1_000 + 1, "hz {} gave {} ns", hz, ns);
        }
    }
}
