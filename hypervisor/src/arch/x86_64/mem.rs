// SPDX-License-Identifier: MIT OR Apache-2.0
//! Access to physical memory through the direct map. During boot the boot
//! tables map only its first 4 GiB; the final tables map all RAM there.

use super::layout::{DIRECTMAP_VIRT_START, EARLY_WINDOW_SIZE};
use core::sync::atomic::{AtomicU64, Ordering};

/// Where physical address 0 appears in the current address space.
/// Bytes of physical memory reachable through the direct map now.
static PHYS_LIMIT: AtomicU64 = AtomicU64::new(EARLY_WINDOW_SIZE);

pub const PAGE_SIZE: u64 = 4096;

/// The virtual address of physical `pa`, if the current mappings reach it.
pub fn phys_to_virt(pa: u64, len: u64) -> Option<u64> {
    let end = pa.checked_add(len)?;
    (end <= PHYS_LIMIT.load(Ordering::Relaxed)).then_some(DIRECTMAP_VIRT_START + pa)
}

/// Called once the final page tables, with all RAM below `limit` in the
/// direct map, are live.
pub(super) fn use_direct_map(limit: u64) {
    PHYS_LIMIT.store(limit, Ordering::Relaxed);
}

/// Zero a frame the caller owns.
pub fn zero_frame(pa: u64) {
    let va = phys_to_virt(pa, PAGE_SIZE).expect("frame outside the mapped RAM");
    // SAFETY: the frame is mapped (checked above), page aligned, and owned by
    // the caller (it came from the frame allocator), so nobody else uses it.
    unsafe { core::ptr::write_bytes(va as *mut u8, 0, PAGE_SIZE as usize) }
}

/// A read-only view of boot-loader-provided memory (modules, the symbol
/// table): these ranges are checked to lie in RAM, removed from the frame
/// allocator, and never written by the hypervisor.
pub fn boot_bytes(pa: u64, len: u64) -> Option<&'static [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    let va = phys_to_virt(pa, len)?;
    // SAFETY: mapped (checked), reserved for the life of the hypervisor and
    // never mutated (see above), so a shared 'static slice is sound.
    Some(unsafe { core::slice::from_raw_parts(va as *const u8, len as usize) })
}

/// Turns `n` frames starting at `pa`, just taken from the frame allocator and
/// never to be returned, into a `'static` array of `T` filled with `init`.
pub fn static_array<T: Copy>(pa: u64, n: usize, init: T) -> &'static mut [T] {
    let bytes = (n * core::mem::size_of::<T>()) as u64;
    let va = phys_to_virt(pa, bytes).expect("array outside the mapped RAM");
    assert!(va.is_multiple_of(core::mem::align_of::<T>() as u64));
    let ptr = va as *mut T;
    for i in 0..n {
        // SAFETY: in bounds of the mapped, exclusively owned range.
        unsafe { ptr.add(i).write(init) };
    }
    // SAFETY: the range is mapped, aligned, initialised above and owned
    // exclusively by the caller forever.
    unsafe { core::slice::from_raw_parts_mut(ptr, n) }
}
