// SPDX-License-Identifier: MIT OR Apache-2.0
//! The hypervisor's virtual address layout. Everything lives in the hole that
//! Xen's x86_64 ABI reserves for the hypervisor in every guest address space
//! (`HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END`, L4 slots 256..271), at the
//! places Xen uses, so that a reader who knows Xen recognises the addresses.

/// Start of the hole (L4 slot 256); the read-only M2P table goes here.
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End of the hole (exclusive, L4 slot 272).
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// Per-domain mappings (Xen's PERDOMAIN_VIRT_START): the guest LDT window.
pub const PERDOMAIN_VIRT_START: u64 = 0xFFFF_8200_0000_0000;
/// Uncached MMIO mappings (the local APIC).
pub const IOREMAP_VIRT_START: u64 = 0xFFFF_82C0_0000_0000;
/// The image runs at this offset plus its physical address (Xen's XEN_VIRT_START).
pub const IMAGE_VIRT_OFFSET: u64 = 0xFFFF_82D0_4000_0000;
/// The direct map of all RAM (Xen's DIRECTMAP_VIRT_START).
pub const DIRECTMAP_VIRT_START: u64 = 0xFFFF_8300_0000_0000;
/// Size of the direct map: up to the end of the hole (5 TiB).
pub const DIRECTMAP_SIZE: u64 = HYPERVISOR_VIRT_END - DIRECTMAP_VIRT_START;

// Everything the hypervisor maps must stay inside the hole guests leave it.
const _: () = {
    assert!(HYPERVISOR_VIRT_START < PERDOMAIN_VIRT_START);
    assert!(PERDOMAIN_VIRT_START < IOREMAP_VIRT_START);
    assert!(IOREMAP_VIRT_START < IMAGE_VIRT_OFFSET);
    assert!(IMAGE_VIRT_OFFSET + EARLY_WINDOW_SIZE <= DIRECTMAP_VIRT_START);
    assert!(DIRECTMAP_VIRT_START + DIRECTMAP_SIZE <= HYPERVISOR_VIRT_END);
};

/// The boot CPU's stack.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;
/// Each of the IST stacks (NMI, double fault, machine check).
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// The early boot tables map the first 4 GiB of physical memory at the image offset.
pub const EARLY_WINDOW_SIZE: u64 = 4 << 30;
