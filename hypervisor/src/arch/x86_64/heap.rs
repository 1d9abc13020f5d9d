// SPDX-License-Identifier: MIT OR Apache-2.0
//! The hypervisor heap behind `alloc`.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands `len` bytes at physical `pa` (just taken from the frame allocator,
/// never returned) to the heap.
pub fn init(pa: u64, len: u64) {
    let va = super::mem::phys_to_virt(pa, len).expect("heap outside the mapped RAM");
    // SAFETY: the range is mapped, writable, owned exclusively by the heap
    // from now on, and `init` is called once.
    unsafe { HEAP.lock().init(va as *mut u8, len as usize) };
}
