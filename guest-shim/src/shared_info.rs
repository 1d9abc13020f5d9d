// SPDX-License-Identifier: MIT OR Apache-2.0
//! The shared-info page: `start_info.shared_info` is its *machine* address; a PV guest
//! maps it itself. [`map`] does that once with `update_va_mapping`, over a page the
//! runtime reserves in `.bss` for the purpose (its L1 entry exists because the whole
//! image is mapped with 4 KiB pages).
//!
//! The hypervisor writes the page at any time, so the guest never holds a Rust
//! reference into it: [`SharedInfoPage`] copies fields out with volatile reads.

use core::ptr::{addr_of, read_volatile};

use pv_abi::xen::{SharedInfo, VcpuInfo, VcpuTimeInfo};

/// PTE flags of the mapping: present, writable, accessed, dirty. (Xen adds `_PAGE_USER`
/// itself: the guest kernel runs in ring 3.)
pub const PTE_FLAGS: u64 = 0x1 | 0x2 | 0x20 | 0x40;

/// The mapped shared-info page.
#[derive(Clone, Copy, Debug)]
pub struct SharedInfoPage {
    ptr: *mut SharedInfo,
}

// SAFETY: the page is hypervisor-shared memory read with volatile accesses; it may be
// used from any vCPU.
unsafe impl Send for SharedInfoPage {}
// SAFETY: as above.
unsafe impl Sync for SharedInfoPage {}

impl SharedInfoPage {
    /// The mapping's address.
    pub fn as_ptr(&self) -> *mut SharedInfo {
        self.ptr
    }

    /// A copy of `vcpu_info[vcpu]` (`vcpu` < 32).
    pub fn vcpu_info(&self, vcpu: usize) -> VcpuInfo {
        // SAFETY: `ptr` maps the shared-info page for good (see `map`); the field is
        // inside it and `VcpuInfo` is plain data, valid for any bytes.
        unsafe { read_volatile(addr_of!((*self.ptr).vcpu_info[vcpu])) }
    }

    /// vCPU `vcpu`'s `evtchn_upcall_mask` (non-zero: event upcalls are masked).
    pub fn upcall_mask(&self, vcpu: usize) -> u8 {
        // SAFETY: as in `vcpu_info`; a byte of it.
        unsafe { read_volatile(addr_of!((*self.ptr).vcpu_info[vcpu].evtchn_upcall_mask)) }
    }

    /// Sets vCPU `vcpu`'s `evtchn_upcall_mask` and returns the previous value.
    ///
    /// Clearing it lets the hypervisor deliver event upcalls to the event callback
    /// (registered by [`traps::install`](crate::traps::install)); without one, an
    /// upcall crashes the domain. Pending events are delivered at the next return from
    /// the hypervisor (any hypercall, for example `xen_version`), not at once.
    pub fn set_upcall_mask(&self, vcpu: usize, mask: u8) -> u8 {
        let p = self.ptr;
        // SAFETY: as in `vcpu_info`; the guest owns this byte (the hypervisor only
        // reads it, and sets it while delivering an upcall, which the guest's iret
        // restores).
        unsafe {
            let field = core::ptr::addr_of_mut!((*p).vcpu_info[vcpu].evtchn_upcall_mask);
            let old = read_volatile(field);
            core::ptr::write_volatile(field, mask);
            old
        }
    }

    /// A consistent copy of vCPU `vcpu`'s time info: retried while the hypervisor is
    /// updating it (odd `version`, or a version change during the copy).
    pub fn vcpu_time(&self, vcpu: usize) -> VcpuTimeInfo {
        // SAFETY: as in `vcpu_info`.
        let field = unsafe { addr_of!((*self.ptr).vcpu_info[vcpu].time) };
        loop {
            // SAFETY: as in `vcpu_info`.
            let before = unsafe { read_volatile(addr_of!((*field).version)) };
            // SAFETY: as in `vcpu_info`.
            let copy = unsafe { read_volatile(field) };
            // SAFETY: as in `vcpu_info`.
            let after = unsafe { read_volatile(addr_of!((*field).version)) };
            if before % 2 == 0 && before == after && copy.version == before {
                return copy;
            }
            core::hint::spin_loop();
        }
    }

    /// The wallclock at system time 0: `(version, seconds, nanoseconds)`; `version` is
    /// odd while the hypervisor updates it.
    pub fn wallclock(&self) -> (u32, u64, u32) {
        // SAFETY: as in `vcpu_info`.
        unsafe {
            let p = self.ptr;
            let version = read_volatile(addr_of!((*p).wc_version));
            let lo = read_volatile(addr_of!((*p).wc_sec)) as u64;
            let hi = read_volatile(addr_of!((*p).wc_sec_hi)) as u64;
            let nsec = read_volatile(addr_of!((*p).wc_nsec));
            (version, hi << 32 | lo, nsec)
        }
    }
}

#[cfg(target_os = "none")]
mod imp {
    use super::*;
    use pv_abi::XenError;
    use pv_abi::xen::UvmfFlags;
    use spin::Once;

    core::arch::global_asm!(
        ".pushsection .bss.guest_shim_shared_info, \"aw\", @nobits",
        ".balign 4096",
        ".global __guest_shim_shared_info",
        "__guest_shim_shared_info:",
        ".zero 4096",
        ".popsection",
    );

    unsafe extern "C" {
        /// The page-aligned slot in `.bss` the shared-info page is mapped over.
        static __guest_shim_shared_info: [u8; 4096];
    }

    static MAPPED: Once<Result<SharedInfoPage, XenError>> = Once::new();

    /// Maps the shared-info page (the first call) and returns it.
    pub fn map() -> Result<SharedInfoPage, XenError> {
        *MAPPED.call_once(|| {
            let va = (&raw const __guest_shim_shared_info) as u64;
            let ma = crate::start_info().shared_info;
            let xen = crate::hypercalls();
            // SAFETY: the slot is reserved for this mapping and nothing refers to it,
            // so replacing the frame mapped there breaks no Rust object.
            unsafe { xen.update_va_mapping(va, ma | PTE_FLAGS, UvmfFlags::INVLPG) }?;
            Ok(SharedInfoPage { ptr: va as *mut SharedInfo })
        })
    }
}

#[cfg(target_os = "none")]
pub use imp::map;

/// Maps the shared-info page (only in a guest; on the host this panics).
#[cfg(not(target_os = "none"))]
pub fn map() -> Result<SharedInfoPage, pv_abi::XenError> {
    crate::host::unavailable("shared_info::map")
}
