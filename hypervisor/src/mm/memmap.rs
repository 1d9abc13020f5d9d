// SPDX-License-Identifier: MIT OR Apache-2.0
//! The machine's memory map: turns the boot loader's list of areas (which may
//! be unsorted, overlapping, zero-sized or wrap around) into sorted, disjoint,
//! page-aligned ranges of usable RAM. Where a RAM area and any other area
//! overlap, the other area wins: we never use memory that anyone reserved.

use heapless::Vec;

/// Multiboot2 / e820 area types.
pub const AREA_RAM: u32 = 1;

pub const PAGE_SIZE: u64 = 4096;
/// Most ranges a set holds; a machine with a more fragmented map loses its
/// smallest pieces (reported, never silently).
pub const MAX_RANGES: usize = 128;

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end: u64) -> Self {
        Range { start, end }
    }
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    pub const fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Sorted, disjoint, non-adjacent ranges.
#[derive(Clone, Debug, Default)]
pub struct RangeSet {
    ranges: Vec<Range, MAX_RANGES>,
    /// Bytes that did not fit (the set was full).
    pub lost: u64,
}

impl RangeSet {
    pub const fn new() -> Self {
        RangeSet { ranges: Vec::new(), lost: 0 }
    }

    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    pub fn total(&self) -> u64 {
        self.ranges.iter().map(Range::len).sum()
    }

    pub fn contains(&self, r: Range) -> bool {
        r.is_empty() || self.ranges.iter().any(|x| x.start <= r.start && r.end <= x.end)
    }

    /// Adds `r`, merging with what it overlaps or touches.
    pub fn add(&mut self, r: Range) {
        if r.is_empty() {
            return;
        }
        let mut merged = r;
        let mut out: Vec<Range, MAX_RANGES> = Vec::new();
        let mut lost = 0;
        let mut placed = false;
        for &x in self.ranges.iter() {
            if x.end < merged.start {
                push(&mut out, x, &mut lost);
            } else if merged.end < x.start {
                if !placed {
                    push(&mut out, merged, &mut lost);
                    placed = true;
                }
                push(&mut out, x, &mut lost);
            } else {
                merged = Range::new(merged.start.min(x.start), merged.end.max(x.end));
            }
        }
        if !placed {
            push(&mut out, merged, &mut lost);
        }
        self.ranges = out;
        self.lost += lost;
    }

    /// Removes `r` from the set, splitting ranges it cuts through.
    pub fn remove(&mut self, r: Range) {
        if r.is_empty() {
            return;
        }
        let mut out: Vec<Range, MAX_RANGES> = Vec::new();
        let mut lost = 0;
        for &x in self.ranges.iter() {
            if !x.overlaps(&r) {
                push(&mut out, x, &mut lost);
                continue;
            }
            if x.start < r.start {
                push(&mut out, Range::new(x.start, r.start), &mut lost);
            }
            if r.end < x.end {
                push(&mut out, Range::new(r.end, x.end), &mut lost);
            }
        }
        self.ranges = out;
        self.lost += lost;
    }

    /// Shrinks every range inward to page boundaries, dropping what is left empty.
    pub fn page_align(&mut self) {
        let mut out: Vec<Range, MAX_RANGES> = Vec::new();
        for &x in self.ranges.iter() {
            let start = x.start.div_ceil(PAGE_SIZE) * PAGE_SIZE;
            let end = x.end / PAGE_SIZE * PAGE_SIZE;
            if start < end {
                // Cannot overflow: never more ranges than before.
                let _ = out.push(Range::new(start, end));
            }
        }
        self.ranges = out;
    }

    /// Takes `len` bytes (page multiple) aligned to `align` from the lowest
    /// range that has room below `limit`.
    pub fn take(&mut self, len: u64, align: u64, limit: u64) -> Option<u64> {
        let found = self.ranges.iter().find_map(|x| {
            let start = x.start.checked_next_multiple_of(align)?;
            let end = start.checked_add(len)?;
            (end <= x.end && end <= limit).then_some(start)
        })?;
        self.remove(Range::new(found, found + len));
        Some(found)
    }
}

fn push(out: &mut Vec<Range, MAX_RANGES>, r: Range, lost: &mut u64) {
    if out.push(r).is_err() {
        *lost += r.len();
    }
}

/// What sanitising the loader's map found, for the boot log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapReport {
    /// Areas with a zero length.
    pub empty: usize,
    /// Areas whose end wrapped past 2^64 (clipped).
    pub wrapped: usize,
    /// Non-RAM areas that overlapped RAM.
    pub overlaps: usize,
    /// Highest end of any RAM area.
    pub ram_top: u64,
}

/// Usable RAM from `(base, len, type)` areas: RAM minus every other area,
/// page aligned. ACPI-reclaimable memory (type 3) is treated as reserved.
pub fn usable_ram(areas: impl Iterator<Item = (u64, u64, u32)> + Clone) -> (RangeSet, MapReport) {
    let mut report = MapReport::default();
    let clip = |base: u64, len: u64, report: &mut MapReport| -> Option<Range> {
        if len == 0 {
            report.empty += 1;
            return None;
        }
        let end = base.checked_add(len).unwrap_or_else(|| {
            report.wrapped += 1;
            u64::MAX
        });
        Some(Range::new(base, end))
    };
    let mut ram = RangeSet::new();
    for (base, len, typ) in areas.clone() {
        if typ == AREA_RAM
            && let Some(r) = clip(base, len, &mut report)
        {
            ram.add(r);
            report.ram_top = report.ram_top.max(r.end);
        }
    }
    let mut scratch = MapReport::default();
    for (base, len, typ) in areas {
        if typ == AREA_RAM {
            continue;
        }
        if let Some(r) = clip(base, len, &mut scratch) {
            if ram.ranges().iter().any(|x| x.overlaps(&r)) {
                report.overlaps += 1;
            }
            ram.remove(r);
        }
    }
    report.empty += scratch.empty;
    report.wrapped += scratch.wrapped;
    ram.page_align();
    (ram, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn qemu_like_map() {
        let areas = [
            (0, 0x9fc00, 1),
            (0x9fc00, 0x400, 2),
            (0xf0000, 0x10000, 2),
            (0x100000, 0x7ee0000, 1),
            (0x7fe0000, 0x20000, 2),
            (0xfffc0000, 0x40000, 2),
        ];
        let (ram, report) = usable_ram(areas.iter().copied());
        assert_eq!(ram.ranges(), &[Range::new(0, 0x9f000), Range::new(0x100000, 0x7fe0000)]);
        assert_eq!(report.overlaps, 0);
        assert_eq!(report.ram_top, 0x7fe0000);
    }

    #[test]
    fn reserved_wins_over_ram_and_unsorted_input() {
        let areas = [(16 * MB, 16 * MB, 1), (0, 32 * MB, 2), (MB, 64 * MB, 1), (20 * MB, 0, 1)];
        let (ram, report) = usable_ram(areas.iter().copied());
        assert_eq!(ram.ranges(), &[Range::new(32 * MB, 65 * MB)]);
        assert_eq!(report.overlaps, 1);
        assert_eq!(report.empty, 1);
    }

    #[test]
    fn wrapping_area_is_clipped() {
        let areas = [(u64::MAX - 4095 - 8192, 1 << 20, 1)];
        let (ram, report) = usable_ram(areas.iter().copied());
        assert_eq!(report.wrapped, 1);
        assert_eq!(ram.total(), 8192);
    }

    #[test]
    fn take_respects_alignment_and_limit() {
        let mut s = RangeSet::new();
        s.add(Range::new(0x1000, 0x3000));
        s.add(Range::new(0x200000, 0x600000));
        assert_eq!(s.take(0x200000, 0x200000, u64::MAX), Some(0x200000));
        assert_eq!(s.take(0x1000, 0x1000, 0x2000), Some(0x1000));
        assert_eq!(s.take(0x1000, 0x1000, 0x2000), None);
        assert_eq!(s.ranges(), &[Range::new(0x2000, 0x3000), Range::new(0x400000, 0x600000)]);
    }

    /// A byte-granular model over a small address space.
    fn model(ops: &[(bool, u64, u64)]) -> std::vec::Vec<bool> {
        let mut m = std::vec![false; 256];
        for &(add, s, e) in ops {
            for b in m.iter_mut().take(e as usize).skip(s as usize) {
                *b = add;
            }
        }
        m
    }

    proptest! {
        #[test]
        fn add_remove_match_model(ops in prop::collection::vec((any::<bool>(), 0u64..256, 0u64..256), 0..40)) {
            let ops: std::vec::Vec<_> = ops.into_iter().map(|(a, x, y)| (a, x.min(y), x.max(y))).collect();
            let mut set = RangeSet::new();
            for &(add, s, e) in &ops {
                if add { set.add(Range::new(s, e)) } else { set.remove(Range::new(s, e)) }
            }
            let m = model(&ops);
            for (i, &inside) in m.iter().enumerate() {
                let i = i as u64;
                prop_assert_eq!(set.contains(Range::new(i, i + 1)), inside);
            }
            // Sorted, disjoint, non-adjacent, non-empty.
            for w in set.ranges().windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            prop_assert!(set.ranges().iter().all(|r| !r.is_empty()));
        }

        #[test]
        fn usable_ram_never_overlaps_reserved(areas in prop::collection::vec((0u64..1 << 24, 0u64..1 << 22, 1u32..5), 0..24)) {
            let (ram, _) = usable_ram(areas.iter().copied());
            for &(base, len, typ) in &areas {
                if typ != AREA_RAM && len > 0 {
                    let r = Range::new(base, base + len);
                    prop_assert!(ram.ranges().iter().all(|x| !x.overlaps(&r)));
                }
            }
            for r in ram.ranges() {
                prop_assert!(r.start % PAGE_SIZE == 0 && r.end % PAGE_SIZE == 0);
                let covered = areas.iter().any(|&(b, l, t)| t == AREA_RAM && b <= r.start && r.start < b + l);
                prop_assert!(covered);
            }
        }
    }
}
