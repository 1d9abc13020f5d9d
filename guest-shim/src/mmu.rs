// SPDX-License-Identifier: MIT OR Apache-2.0
//! Page tables the PV way: a pool of the guest's free pages, typed `mmu_update` and
//! `mmuext_op` calls, and page-table trees a guest builds, pins and switches to.
//!
//! # How a 64-bit PV guest manages page tables (Xen's rules)
//!
//! The guest's page tables hold *machine* frame numbers and are mapped read-only into
//! the guest; it changes them only through the hypervisor, which checks every entry.
//! Xen's bookkeeping (`xen/arch/x86/mm.c`):
//! - Every frame has a *type* with a count: writable page, L1, L2, L3 or L4 table
//!   (or descriptor page). The type can change only while the count is 0. Each
//!   writable mapping (an L1 entry with RW) holds a writable-type reference; each table
//!   entry holds a type reference on the table below it; a pin and being a base
//!   pointer hold one too. Read-only mappings hold no type reference.
//! - A frame *gets* a table type by validation: Xen checks all its entries (frames the
//!   domain owns or may map, allowed flags, lower tables of the right type, which are
//!   validated in turn). So a new table must not be mapped writable anywhere when it
//!   gets its type, and cannot be mapped writable while it has it.
//! - `MMUEXT_PIN_Ln_TABLE` gives a frame its type and holds it (one pin per frame);
//!   `MMUEXT_UNPIN_TABLE` drops the pin, and with the last reference the type goes,
//!   recursively down the tree. Xen pins the start-of-day L4 itself.
//! - `mmu_update` writes one entry given its machine address. Into a frame that has a
//!   table type the write is validated like the table was (hooking an unpinned table
//!   into a typed one gives it its type on the spot); into a frame without a table type
//!   it is a plain write.
//! - `MMUEXT_NEW_BASEPTR` switches the kernel's tables (CR3); the L4 it names holds the
//!   L4 type while it is the base. L4 slots 256-271 are Xen's: it fills them in every L4
//!   it validates and refuses updates to them.
//!
//! # What is here
//!
//! - The page pool ([`init`], [`alloc`], [`free`], [`stats`]): the pages after the
//!   bootstrap region's boot stack up to `nr_pages` (xen.h "start of day": the page
//!   tables at `pt_base`, `nr_pt_frames` of them, then the boot stack, then at least
//!   512 KiB of padding, all mapped up to a 4 MiB boundary). Every page handed out is
//!   mapped writable at its kernel address `VIRT_BASE + pfn * 4096` (the 1:1 map the
//!   builder sets up for the region; the pool extends it 2 MiB at a time with L1 tables
//!   of its own, hooked into the start-of-day L2) and zeroed. pfn -> mfn goes through
//!   `start_info.mfn_list` (the P2M, [`pfn_to_mfn`]), mfn -> pfn through the read-only
//!   M2P table ([`mfn_to_pfn`]).
//! - Typed hypercalls: [`mmu_update`] and [`mmuext_op`] on batches (with the `done`
//!   count, also on failure: [`BatchError`]), their raw forms for hostile arguments
//!   ([`mmu_update_raw`], [`mmuext_op_raw`]), and one call per operation: [`set_entry`]
//!   ([`MMU_NORMAL_PT_UPDATE`]), [`set_entry_preserve_ad`], [`set_m2p`]
//!   ([`MMU_MACHPHYS_UPDATE`]), [`pin`], [`unpin`], [`new_baseptr`],
//!   [`new_user_baseptr`], [`tlb_flush_local`], [`tlb_flush_all`], [`invlpg_local`],
//!   [`invlpg_all`], [`clear_page`], [`copy_page`].
//! - The guest's own mappings of its pages, by `update_va_mapping` of their kernel
//!   address: [`make_readonly`], [`make_writable`], [`unmap`].
//! - Trees ([`Tree`]): an L4 (optionally holding the current kernel mappings,
//!   [`init_kernel_l4`]) and the tables below it, created as [`Tree::map`] needs them
//!   (zeroed and made read-only before they are hooked in), pinned, walked, torn down.
//!
//! Everything assumes guest-shim's layout (pfn N at `VIRT_BASE + N * 4096`) and runs on
//! vCPU 0. The pool covers at most the first 1 GiB of pseudo-physical memory (the
//! start-of-day L2 that maps `VIRT_BASE`).
//!
//! # Example: a process-like address space
//!
//! ```no_run
//! use guest_shim::mmu::{self, Tree, USER_RW};
//!
//! mmu::init().expect("page pool");
//! let data = mmu::alloc().expect("a page"); // mapped writable and zeroed
//! // SAFETY: the page is ours; nothing else refers to it.
//! unsafe { (data.va() as *mut u64).write_volatile(42) };
//!
//! // An L4 with the kernel's mappings, and user address 4 MiB mapping `data`.
//! let mut tree: Tree = Tree::new(true).expect("an L4");
//! // SAFETY: the tree is not in use; the mapping changes nothing that runs.
//! unsafe { tree.map(0x40_0000, data.pte(USER_RW)) }.expect("map");
//! tree.pin().expect("Xen validates the whole tree");
//!
//! // SAFETY: the tree maps the kernel as the current tables do.
//! unsafe { mmu::new_baseptr(tree.l4().mfn) }.expect("switch");
//! // SAFETY: 4 MiB maps `data` in the tables in use.
//! assert_eq!(unsafe { (0x40_0000 as *const u64).read_volatile() }, 42);
//! // SAFETY: the start-of-day tables map the kernel too.
//! unsafe { mmu::new_baseptr(mmu::bootstrap_l4().mfn) }.expect("switch back");
//!
//! tree.destroy().expect("unpin, make the tables writable, give them back");
//! // SAFETY: nothing refers to the page any more.
//! unsafe { mmu::free(data) }.expect("free");
//! ```

use core::fmt;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use pv_abi::Errno;
use pv_abi::arch_x86::MACH2PHYS_VIRT_START;
use pv_abi::hypercall::{HYPERVISOR_MMU_UPDATE, HYPERVISOR_MMUEXT_OP};
use pv_abi::xen::{DomId, MmuUpdate, MmuextOp, UvmfFlags};
use spin::{Mutex, Once};

pub use pv_abi::xen::{
    DOMID_SELF, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_CLEAR_PAGE,
    MMUEXT_COPY_PAGE, MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR,
    MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_ALL,
    MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE,
};

use crate::notes::VIRT_BASE;
use crate::pt::{
    PTE_ACCESSED, PTE_DIRTY, PTE_NX, PTE_PRESENT, PTE_PSE, PTE_RW, PTE_USER, TableReader, Walk, pte_mfn,
    table_index,
};

/// Bytes per page.
pub const PAGE_SIZE: u64 = 4096;
/// Entries per table.
pub const ENTRIES: usize = 512;
/// Flags of a kernel read-write mapping (Xen adds `_PAGE_USER` to kernel mappings of
/// 64-bit PV guests, and a bit of its own that marks them as kernel ones).
pub const KERNEL_RW: u64 = PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY;
/// Flags of a kernel read-only mapping.
pub const KERNEL_RO: u64 = PTE_PRESENT | PTE_ACCESSED;
/// Flags of a user read-write mapping.
pub const USER_RW: u64 = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_DIRTY;
/// Flags of a user read-only mapping.
pub const USER_RO: u64 = PTE_PRESENT | PTE_USER | PTE_ACCESSED;
/// Flags of an entry that points at a lower table (the leaf decides the access).
pub const TABLE: u64 = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED;
/// L4 slots of the user half.
pub const USER_SLOTS: Range<usize> = 0..256;
/// L4 slots Xen owns in every 64-bit PV L4 (`0xffff800000000000`-`0xffff87ffffffffff`).
pub const XEN_SLOTS: Range<usize> = 256..272;
/// L4 slots of the guest kernel half.
pub const KERNEL_SLOTS: Range<usize> = 272..512;
/// The P2M value of a pfn without a frame (as Linux writes it).
pub const INVALID_MFN: u64 = !0;
/// The pool covers pfns below this: the 1 GiB the start-of-day L2 at `VIRT_BASE` maps.
pub const POOL_MAX_PFNS: u64 = 1 << 18;

/// A page-table level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Maps 4 KiB pages.
    L1 = 1,
    /// Points at L1s.
    L2 = 2,
    /// Points at L2s.
    L3 = 3,
    /// The root.
    L4 = 4,
}

impl Level {
    /// The `MMUEXT_PIN_Ln_TABLE` command for this level.
    pub const fn pin_cmd(self) -> u32 {
        MMUEXT_PIN_L1_TABLE + self as u32 - 1
    }

    /// The level below (`None` for L1).
    pub const fn below(self) -> Option<Level> {
        match self {
            Level::L4 => Some(Level::L3),
            Level::L3 => Some(Level::L2),
            Level::L2 => Some(Level::L1),
            Level::L1 => None,
        }
    }

    /// The level as the number `pt` functions take.
    pub const fn number(self) -> u8 {
        self as u8
    }
}

/// A page of the guest: its pseudo-physical and machine frame numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Page {
    /// Pseudo-physical frame number.
    pub pfn: u64,
    /// Machine frame number (the P2M's value when the handle was made).
    pub mfn: u64,
}

impl Page {
    /// The page's kernel virtual address (`VIRT_BASE + pfn * 4096`).
    pub const fn va(&self) -> u64 {
        VIRT_BASE + self.pfn * PAGE_SIZE
    }

    /// Its machine address.
    pub const fn maddr(&self) -> u64 {
        self.mfn * PAGE_SIZE
    }

    /// A page-table entry mapping it with `flags`.
    pub const fn pte(&self, flags: u64) -> u64 {
        self.maddr() | flags
    }

    /// The machine address of entry `index` if the page is a table.
    pub const fn entry_maddr(&self, index: usize) -> u64 {
        self.maddr() + index as u64 * 8
    }

    /// The page `pfn`, with its frame from the P2M (`None` past `nr_pages` or without
    /// a frame).
    pub fn from_pfn(pfn: u64) -> Option<Page> {
        pfn_to_mfn(pfn).map(|mfn| Page { pfn, mfn })
    }

    /// The page whose machine frame is `mfn`, its pfn from the M2P.
    pub fn from_mfn(mfn: u64) -> Option<Page> {
        mfn_to_pfn(mfn).map(|pfn| Page { pfn, mfn })
    }
}

// ---- Hypercalls ----

/// A batch that stopped at an error: the error and how many requests were done first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchError {
    /// What the failing request (or the call) got.
    pub errno: Errno,
    /// Requests completed before it (the hypercall's `done` output).
    pub done: u32,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} after {} done", self.errno, self.done)
    }
}

impl From<BatchError> for Errno {
    fn from(e: BatchError) -> Errno {
        e.errno
    }
}

/// A batch's outcome: `Ok(done)` or the error with the count done before it.
pub type Batch = Result<u32, BatchError>;

/// `HYPERVISOR_mmu_update(reqs, count, done, foreign)` with raw arguments; returns RAX.
///
/// # Safety
///
/// The updates must not unmap or remap memory Rust code still uses; `reqs` and `done`
/// may be any address (the hypervisor checks them) but if valid they must point at
/// what the call reads and writes.
pub unsafe fn mmu_update_raw(reqs: u64, count: u32, done: *mut u32, foreign: u32) -> i64 {
    // SAFETY: forwarded contract.
    unsafe {
        crate::hypercalls().call(HYPERVISOR_MMU_UPDATE, reqs, count as u64, done as u64, foreign as u64, 0)
    }
}

/// `HYPERVISOR_mmuext_op(ops, count, done, foreign)` with raw arguments; returns RAX.
///
/// # Safety
///
/// As for [`mmu_update_raw`].
pub unsafe fn mmuext_op_raw(ops: u64, count: u32, done: *mut u32, foreign: u32) -> i64 {
    // SAFETY: forwarded contract.
    unsafe {
        crate::hypercalls().call(HYPERVISOR_MMUEXT_OP, ops, count as u64, done as u64, foreign as u64, 0)
    }
}

/// The count argument for a batch: Xen takes an `unsigned int` whose top bit marks a
/// continuation.
fn batch_len<T>(items: &[T]) -> Result<u32, BatchError> {
    match u32::try_from(items.len()) {
        Ok(n) if n < 1 << 31 => Ok(n),
        _ => Err(BatchError { errno: Errno::EINVAL, done: 0 }),
    }
}

fn batch_result(ret: i64, done: u32) -> Batch {
    match Errno::check(ret) {
        Ok(_) => Ok(done),
        Err(errno) => Err(BatchError { errno, done }),
    }
}

/// Applies page-table and M2P updates (`HYPERVISOR_mmu_update`) for `foreign`'s pages
/// (`DOMID_SELF` usually).
///
/// # Safety
///
/// The updates must not unmap or remap memory Rust code still uses, nor map anything
/// where Rust objects are expected.
pub unsafe fn mmu_update(reqs: &[MmuUpdate], foreign: DomId) -> Batch {
    let n = batch_len(reqs)?;
    let mut done = 0u32;
    // SAFETY: forwarded contract; `reqs` is valid for `n` entries and `done` for a u32.
    let ret = unsafe { mmu_update_raw(reqs.as_ptr() as u64, n, &mut done, foreign as u32) };
    batch_result(ret, done)
}

/// Runs extended MMU operations (`HYPERVISOR_mmuext_op`).
///
/// # Safety
///
/// Base-pointer switches, page copies and clears must preserve the caller's memory
/// invariants.
pub unsafe fn mmuext_op(ops: &[MmuextOp], foreign: DomId) -> Batch {
    let n = batch_len(ops)?;
    let mut done = 0u32;
    // SAFETY: forwarded contract; `ops` is valid for `n` entries and `done` for a u32.
    let ret = unsafe { mmuext_op_raw(ops.as_ptr() as u64, n, &mut done, foreign as u32) };
    batch_result(ret, done)
}

/// One extended operation on our own domain.
///
/// # Safety
///
/// As for [`mmuext_op`].
unsafe fn ext(cmd: u32, arg1: u64, arg2: u64) -> Result<(), Errno> {
    // SAFETY: forwarded contract.
    unsafe { mmuext_op(&[MmuextOp::new(cmd, arg1, arg2)], DOMID_SELF) }.map(drop).map_err(Errno::from)
}

/// A `MMU_NORMAL_PT_UPDATE` request: entry at machine address `entry_maddr` := `val`.
pub const fn pt_update(entry_maddr: u64, val: u64) -> MmuUpdate {
    MmuUpdate::new(entry_maddr, MMU_NORMAL_PT_UPDATE, val)
}

/// A `MMU_PT_UPDATE_PRESERVE_AD` request: like [`pt_update`], keeping the entry's
/// accessed and dirty bits.
pub const fn pt_update_preserve_ad(entry_maddr: u64, val: u64) -> MmuUpdate {
    MmuUpdate::new(entry_maddr, MMU_PT_UPDATE_PRESERVE_AD, val)
}

/// A `MMU_MACHPHYS_UPDATE` request: the M2P entry of `mfn` := `pfn`.
pub const fn machphys_update(mfn: u64, pfn: u64) -> MmuUpdate {
    MmuUpdate::new(mfn * PAGE_SIZE, MMU_MACHPHYS_UPDATE, pfn)
}

/// Sets entry `index` of the table in frame `table_mfn` (`MMU_NORMAL_PT_UPDATE`).
///
/// # Safety
///
/// If the table is in use, the change must not unmap or remap memory Rust code uses.
pub unsafe fn set_entry(table_mfn: u64, index: usize, val: u64) -> Result<(), Errno> {
    let req = pt_update(table_mfn * PAGE_SIZE + index as u64 * 8, val);
    // SAFETY: forwarded contract.
    unsafe { mmu_update(&[req], DOMID_SELF) }.map(drop).map_err(Errno::from)
}

/// Like [`set_entry`] with `MMU_PT_UPDATE_PRESERVE_AD`.
///
/// # Safety
///
/// As for [`set_entry`].
pub unsafe fn set_entry_preserve_ad(table_mfn: u64, index: usize, val: u64) -> Result<(), Errno> {
    let req = pt_update_preserve_ad(table_mfn * PAGE_SIZE + index as u64 * 8, val);
    // SAFETY: forwarded contract.
    unsafe { mmu_update(&[req], DOMID_SELF) }.map(drop).map_err(Errno::from)
}

/// Sets the M2P entry of `mfn` to `pfn` (`MMU_MACHPHYS_UPDATE`).
///
/// # Safety
///
/// This module finds tables through the M2P: a wrong entry for a table frame makes
/// its walks read the wrong page.
pub unsafe fn set_m2p(mfn: u64, pfn: u64) -> Result<(), Errno> {
    // SAFETY: forwarded contract; an M2P update changes no mapping.
    unsafe { mmu_update(&[machphys_update(mfn, pfn)], DOMID_SELF) }.map(drop).map_err(Errno::from)
}

/// Gives frame `mfn` the table type of `level` and pins it there (`MMUEXT_PIN_Ln_TABLE`).
pub fn pin(level: Level, mfn: u64) -> Result<(), Errno> {
    // SAFETY: pinning changes no mapping; Xen refuses frames mapped writable.
    unsafe { ext(level.pin_cmd(), mfn, 0) }
}

/// Drops the pin of frame `mfn` (`MMUEXT_UNPIN_TABLE`).
pub fn unpin(mfn: u64) -> Result<(), Errno> {
    // SAFETY: unpinning changes no mapping; tables in use keep their type.
    unsafe { ext(MMUEXT_UNPIN_TABLE, mfn, 0) }
}

/// Switches the kernel's page tables to the L4 in frame `mfn` (`MMUEXT_NEW_BASEPTR`).
///
/// # Safety
///
/// The new tables must map the running code, its stack and everything Rust code uses
/// as the current ones do.
pub unsafe fn new_baseptr(mfn: u64) -> Result<(), Errno> {
    // SAFETY: forwarded contract.
    unsafe { ext(MMUEXT_NEW_BASEPTR, mfn, 0) }?;
    BASE.store(mfn, Ordering::Relaxed);
    Ok(())
}

/// Sets the user-mode page tables to the L4 in frame `mfn` (0: none;
/// `MMUEXT_NEW_USER_BASEPTR`).
///
/// # Safety
///
/// Code running in guest user mode must find what it needs there.
pub unsafe fn new_user_baseptr(mfn: u64) -> Result<(), Errno> {
    // SAFETY: forwarded contract.
    unsafe { ext(MMUEXT_NEW_USER_BASEPTR, mfn, 0) }
}

/// Flushes this vCPU's TLB (`MMUEXT_TLB_FLUSH_LOCAL`).
pub fn tlb_flush_local() -> Result<(), Errno> {
    // SAFETY: a flush changes no mapping.
    unsafe { ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0) }
}

/// Flushes the TLBs of every vCPU of the domain (`MMUEXT_TLB_FLUSH_ALL`).
pub fn tlb_flush_all() -> Result<(), Errno> {
    // SAFETY: a flush changes no mapping.
    unsafe { ext(MMUEXT_TLB_FLUSH_ALL, 0, 0) }
}

/// Flushes `va` from this vCPU's TLB (`MMUEXT_INVLPG_LOCAL`).
pub fn invlpg_local(va: u64) -> Result<(), Errno> {
    // SAFETY: a flush changes no mapping.
    unsafe { ext(MMUEXT_INVLPG_LOCAL, va, 0) }
}

/// Flushes `va` from every vCPU's TLB (`MMUEXT_INVLPG_ALL`).
pub fn invlpg_all(va: u64) -> Result<(), Errno> {
    // SAFETY: a flush changes no mapping.
    unsafe { ext(MMUEXT_INVLPG_ALL, va, 0) }
}

/// Zeroes frame `mfn` (`MMUEXT_CLEAR_PAGE`; it need not be mapped).
///
/// # Safety
///
/// No Rust object may live in the frame.
pub unsafe fn clear_page(mfn: u64) -> Result<(), Errno> {
    // SAFETY: forwarded contract.
    unsafe { ext(MMUEXT_CLEAR_PAGE, mfn, 0) }
}

/// Copies frame `src_mfn` over frame `dst_mfn` (`MMUEXT_COPY_PAGE`).
///
/// # Safety
///
/// No Rust object may live in the destination frame.
pub unsafe fn copy_page(dst_mfn: u64, src_mfn: u64) -> Result<(), Errno> {
    // SAFETY: forwarded contract.
    unsafe { ext(MMUEXT_COPY_PAGE, dst_mfn, src_mfn) }
}

// ---- P2M, M2P, the 1:1 kernel map ----

/// The machine frame of `pfn` from the P2M (`start_info.mfn_list`), `None` past
/// `nr_pages` or for [`INVALID_MFN`].
pub fn pfn_to_mfn(pfn: u64) -> Option<u64> {
    let si = crate::start_info();
    if pfn >= si.nr_pages {
        return None;
    }
    // SAFETY: the P2M list holds `nr_pages` entries at `mfn_list`, mapped for the
    // guest's lifetime (xen.h start of day); `pfn` is below that count.
    let mfn = unsafe { (si.mfn_list as *const u64).add(pfn as usize).read_volatile() };
    (mfn != INVALID_MFN).then_some(mfn)
}

/// Records `mfn` as the frame of `pfn` in the P2M ([`INVALID_MFN`]: none).
///
/// # Safety
///
/// This module maps and walks pages through the P2M: `mfn` must be the frame that
/// really backs `pfn` now (or none).
pub unsafe fn set_p2m(pfn: u64, mfn: u64) -> Result<(), Errno> {
    let si = crate::start_info();
    if pfn >= si.nr_pages {
        return Err(Errno::EINVAL);
    }
    // SAFETY: as in `pfn_to_mfn`; the list is writable guest memory only the guest
    // uses (the builder wrote it before entry).
    unsafe { (si.mfn_list as *mut u64).add(pfn as usize).write_volatile(mfn) };
    Ok(())
}

/// Where the M2P table is mapped and the highest MFN it covers.
fn m2p() -> (u64, u64) {
    static M2P: Once<(u64, u64)> = Once::new();
    *M2P.call_once(|| match crate::hypercalls().machphys_mapping() {
        Ok(m) => (m.v_start, m.max_mfn),
        // Xen's fixed place; without the size only MFNs the P2M names are looked up.
        Err(_) => (MACH2PHYS_VIRT_START, u64::MAX),
    })
}

/// The pfn the M2P records for `mfn` (`None` past the table's end).
pub fn mfn_to_pfn(mfn: u64) -> Option<u64> {
    let (base, max_mfn) = m2p();
    if mfn > max_mfn {
        return None;
    }
    // SAFETY: the M2P table is mapped read-only into every PV guest for MFNs up to
    // `max_mfn` (XENMEM_machphys_mapping); reading it has no side effect.
    Some(unsafe { (base as *const u64).add(mfn as usize).read_volatile() })
}

/// Pfns below this are mapped at their kernel address (see the module docs).
fn mapped_end() -> u64 {
    let end = MAPPED_END.load(Ordering::Relaxed);
    if end != 0 {
        return end;
    }
    let region_end = (crate::pt::bootstrap_region().end - VIRT_BASE) / PAGE_SIZE;
    MAPPED_END.store(region_end, Ordering::Relaxed);
    region_end
}

/// End of the 1:1 kernel map in pfns (0: not computed yet).
static MAPPED_END: AtomicU64 = AtomicU64::new(0);

/// The kernel's current L4 frame (0: the start-of-day one).
static BASE: AtomicU64 = AtomicU64::new(0);

/// Reads page tables whose frames are mapped at their kernel address (the bootstrap
/// region and every page of the pool), through the M2P.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirectMap;

impl TableReader for DirectMap {
    fn entry(&self, mfn: u64, index: usize) -> Option<u64> {
        let pfn = mfn_to_pfn(mfn)?;
        if index >= ENTRIES || pfn >= mapped_end() || pfn_to_mfn(pfn) != Some(mfn) {
            return None;
        }
        let va = VIRT_BASE + pfn * PAGE_SIZE;
        // SAFETY: pfn N below `mapped_end` is mapped at VIRT_BASE + N * 4096 for good,
        // and its P2M entry says it is frame `mfn`; tables are readable (read-only).
        Some(unsafe { (va as *const u64).add(index).read_volatile() })
    }
}

/// Entry `index` of the table in frame `table_mfn`, read through the 1:1 kernel map
/// (`None` if the frame is not in it).
pub fn read_entry(table_mfn: u64, index: usize) -> Option<u64> {
    DirectMap.entry(table_mfn, index)
}

/// The start-of-day L4 (`start_info.pt_base`), pinned by the domain builder.
pub fn bootstrap_l4() -> Page {
    let pfn = (crate::start_info().pt_base - VIRT_BASE) / PAGE_SIZE;
    Page { pfn, mfn: pfn_to_mfn(pfn).unwrap_or(INVALID_MFN) }
}

/// The frame of the kernel's current L4 (as last set with [`new_baseptr`]).
pub fn current_base() -> u64 {
    match BASE.load(Ordering::Relaxed) {
        0 => bootstrap_l4().mfn,
        mfn => mfn,
    }
}

/// Walks the kernel's current tables for `va`.
pub fn lookup(va: u64) -> Walk {
    crate::pt::walk(&DirectMap, current_base(), va)
}

/// Writes `pte` as the mapping of kernel address `va` (`update_va_mapping` with a
/// local INVLPG).
///
/// # Safety
///
/// The new mapping must not remove or replace memory Rust code still uses.
pub unsafe fn set_kernel_pte(va: u64, pte: u64) -> Result<(), Errno> {
    // SAFETY: forwarded contract.
    unsafe { crate::hypercalls().update_va_mapping(va, pte, UvmfFlags::INVLPG) }
}

/// Maps `page`'s frame (the P2M's) read-only at its kernel address, as a table page
/// must be. Writes to it fault from now on.
pub fn make_readonly(page: &Page) -> Result<(), Errno> {
    let mfn = pfn_to_mfn(page.pfn).ok_or(Errno::EINVAL)?;
    // SAFETY: the page keeps its frame at its address, only read-only: nothing that
    // reads it changes, and a write faults instead of corrupting anything.
    unsafe { set_kernel_pte(page.va(), (mfn * PAGE_SIZE) | KERNEL_RO) }
}

/// Maps `page`'s frame (the P2M's) writable at its kernel address again. Xen refuses
/// (-EBUSY) while the frame has a table type.
pub fn make_writable(page: &Page) -> Result<(), Errno> {
    let mfn = pfn_to_mfn(page.pfn).ok_or(Errno::EINVAL)?;
    // SAFETY: the page keeps its own frame at its own address; only the access changes.
    unsafe { set_kernel_pte(page.va(), (mfn * PAGE_SIZE) | KERNEL_RW) }
}

/// Removes the kernel mapping of `page`.
///
/// # Safety
///
/// Nothing may use the page's memory until it is mapped again.
pub unsafe fn unmap(page: &Page) -> Result<(), Errno> {
    // SAFETY: forwarded contract.
    unsafe { set_kernel_pte(page.va(), 0) }
}

/// Fills the writable page `l4` with the kernel half of the current L4 (slots
/// 272-511) and zeroes the rest, so that it can become the kernel's base pointer.
///
/// # Safety
///
/// `l4` must be mapped writable at its kernel address and hold no Rust object.
pub unsafe fn init_kernel_l4(l4: &Page) -> Result<(), Errno> {
    let current = current_base();
    let mut slots = [0u64; ENTRIES];
    for i in KERNEL_SLOTS {
        slots[i] = read_entry(current, i).ok_or(Errno::EFAULT)?;
    }
    let dst = l4.va() as *mut u64;
    for (i, v) in slots.iter().enumerate() {
        // SAFETY: the caller guarantees the page is mapped writable and free.
        unsafe { dst.add(i).write_volatile(*v) };
    }
    Ok(())
}

// ---- The page pool ----

/// What the pool holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// First pfn of the pool (after the boot stack).
    pub first: u64,
    /// One past its last pfn.
    pub end: u64,
    /// Pfns below this are mapped at their kernel address.
    pub mapped_end: u64,
    /// Pages that can still be handed out.
    pub free: u64,
    /// Pages handed out and not given back.
    pub in_use: u64,
    /// Pages the pool made into L1 tables of the 1:1 kernel map.
    pub map_tables: u64,
    /// Pages without a frame in the P2M, skipped.
    pub lost: u64,
    /// Pages of the pool's range that an unprivileged domain's builder gave a job (the
    /// console ring and xenstore pages), never handed out.
    pub reserved: u64,
}

/// Words of the pool's bitmap (one bit per pfn below [`POOL_MAX_PFNS`]).
const POOL_WORDS: usize = (POOL_MAX_PFNS / 64) as usize;

/// A set of pfns, one bit each.
struct Bitmap([u64; POOL_WORDS]);

impl Bitmap {
    const fn new() -> Self {
        Self([0; POOL_WORDS])
    }

    fn get(&self, pfn: u64) -> bool {
        self.0[(pfn / 64) as usize] & (1 << (pfn % 64)) != 0
    }

    fn set(&mut self, pfn: u64, on: bool) {
        let (w, b) = ((pfn / 64) as usize, pfn % 64);
        if on {
            self.0[w] |= 1 << b;
        } else {
            self.0[w] &= !(1 << b);
        }
    }

    /// The lowest clear bit in `from..end`.
    fn first_clear(&self, from: u64, end: u64) -> Option<u64> {
        let end = end.min(POOL_MAX_PFNS);
        let mut pfn = from;
        while pfn < end {
            let free = !self.0[(pfn / 64) as usize] >> (pfn % 64);
            if free != 0 {
                let found = pfn + free.trailing_zeros() as u64;
                return (found < end).then_some(found);
            }
            pfn = (pfn / 64 + 1) * 64;
        }
        None
    }
}

/// The pool's state.
struct Pool {
    ready: bool,
    first: u64,
    end: u64,
    /// Every pfn below this in `first..end` is in use.
    hint: u64,
    in_use: u64,
    map_tables: u64,
    lost: u64,
    reserved: u64,
    used: Bitmap,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    ready: false,
    first: 0,
    end: 0,
    hint: 0,
    in_use: 0,
    map_tables: 0,
    lost: 0,
    reserved: 0,
    used: Bitmap::new(),
});

impl Pool {
    fn stats(&self) -> PoolStats {
        let taken = self.in_use + self.map_tables + self.lost + self.reserved;
        PoolStats {
            first: self.first,
            end: self.end,
            mapped_end: if self.ready { mapped_end() } else { 0 },
            free: (self.end - self.first).saturating_sub(taken),
            in_use: self.in_use,
            map_tables: self.map_tables,
            lost: self.lost,
            reserved: self.reserved,
        }
    }

    fn ensure_ready(&mut self) {
        if self.ready {
            return;
        }
        let si = crate::start_info();
        let pt_end = (si.pt_base - VIRT_BASE) / PAGE_SIZE + si.nr_pt_frames;
        let stack_end = (crate::boot_regs().rsp - VIRT_BASE).div_ceil(PAGE_SIZE);
        self.end = si.nr_pages.min(POOL_MAX_PFNS);
        self.first = pt_end.max(stack_end).min(self.end);
        self.hint = self.first;
        // A domU's console and xenstore pages are ordinary pfns to the builder, and may
        // come after the boot stack: keep them out of the pool.
        if si.flags & pv_abi::xen::SIF_INITDOMAIN == 0 {
            for mfn in [si.console_domu().mfn, si.store_mfn] {
                let pfn = mfn_to_pfn(mfn).filter(|&p| pfn_to_mfn(p) == Some(mfn));
                if let Some(pfn) = pfn.filter(|p| (self.first..self.end).contains(p) && !self.used.get(*p)) {
                    self.used.set(pfn, true);
                    self.reserved += 1;
                }
            }
        }
        self.ready = true;
    }

    /// Takes the lowest free pfn, mapping more of the pool first if needed.
    fn take(&mut self) -> Result<Page, Errno> {
        loop {
            let pfn = self.used.first_clear(self.hint, self.end).ok_or(Errno::ENOMEM)?;
            if pfn >= mapped_end() {
                self.extend_map()?;
                continue;
            }
            self.used.set(pfn, true);
            self.hint = pfn + 1;
            match pfn_to_mfn(pfn) {
                Some(mfn) => {
                    self.in_use += 1;
                    return Ok(Page { pfn, mfn });
                }
                None => self.lost += 1,
            }
        }
    }

    /// Maps the next 2 MiB (or what is left) of the pool at its kernel address: a pool
    /// page becomes the L1, hooked into the start-of-day L2, unless one is there.
    fn extend_map(&mut self) -> Result<(), Errno> {
        let start = mapped_end();
        if start >= self.end {
            return Err(Errno::ENOMEM);
        }
        let chunk_end = ((start / ENTRIES as u64 + 1) * ENTRIES as u64).min(self.end);
        let va = VIRT_BASE + start * PAGE_SIZE;
        let l2 = bootstrap_table(va, Level::L2)?;
        let slot = table_index(va, 2);
        let l2e = read_entry(l2, slot).ok_or(Errno::EFAULT)?;
        let mut own_l1 = None;
        let l1 = if l2e & PTE_PRESENT != 0 {
            pte_mfn(l2e)
        } else {
            let page = Page::from_pfn(start).ok_or(Errno::ENOMEM)?;
            // The neighbour's flags if there is one: the builder's choice for the region.
            let prev = if slot > 0 { read_entry(l2, slot - 1).unwrap_or(0) } else { 0 };
            let flags = if prev & PTE_PRESENT != 0 { prev & (0xfff | PTE_NX) & !PTE_PSE } else { TABLE };
            // SAFETY: the frame is the pool's, unmapped and unused; zeroed, it is a
            // valid empty L1, and the new L2 entry maps nothing yet.
            unsafe {
                clear_page(page.mfn)?;
                set_entry(l2, slot, page.pte(flags))?;
            }
            self.used.set(start, true);
            self.map_tables += 1;
            own_l1 = Some(start);
            page.mfn
        };
        let mut batch = [pt_update(0, 0); 64];
        let mut n = 0;
        for pfn in start..chunk_end {
            let Some(mfn) = pfn_to_mfn(pfn) else {
                if !self.used.get(pfn) {
                    self.used.set(pfn, true);
                    self.lost += 1;
                }
                continue;
            };
            let flags = if own_l1 == Some(pfn) { KERNEL_RO } else { KERNEL_RW };
            let index = table_index(VIRT_BASE + pfn * PAGE_SIZE, 1);
            batch[n] = pt_update(l1 * PAGE_SIZE + index as u64 * 8, (mfn * PAGE_SIZE) | flags);
            n += 1;
            if n == batch.len() || pfn + 1 == chunk_end {
                // SAFETY: the entries map the pool's own, unused pages at addresses
                // nothing uses yet (past the 1:1 map's end).
                unsafe { mmu_update(&batch[..n], DOMID_SELF) }?;
                n = 0;
            }
        }
        if n > 0 {
            // SAFETY: as above.
            unsafe { mmu_update(&batch[..n], DOMID_SELF) }?;
        }
        MAPPED_END.store(chunk_end, Ordering::Relaxed);
        Ok(())
    }
}

/// The frame of the start-of-day table at `level` that covers `va`.
fn bootstrap_table(va: u64, level: Level) -> Result<u64, Errno> {
    let mut mfn = bootstrap_l4().mfn;
    let mut at = Level::L4;
    while at != level {
        let e = read_entry(mfn, table_index(va, at.number())).ok_or(Errno::EFAULT)?;
        if e & PTE_PRESENT == 0 || e & PTE_PSE != 0 {
            return Err(Errno::ENOENT);
        }
        mfn = pte_mfn(e);
        at = at.below().ok_or(Errno::EINVAL)?;
    }
    Ok(mfn)
}

/// Sets the pool up (done by the first [`alloc`] too); returns what it holds.
pub fn init() -> Result<PoolStats, Errno> {
    let mut pool = POOL.lock();
    pool.ensure_ready();
    if pool.first >= pool.end {
        return Err(Errno::ENOMEM);
    }
    Ok(pool.stats())
}

/// What the pool holds now.
pub fn stats() -> PoolStats {
    POOL.lock().stats()
}

/// A free page of the guest, mapped writable at its kernel address and zeroed.
/// -ENOMEM when the pool is empty.
pub fn alloc() -> Result<Page, Errno> {
    let page = {
        let mut pool = POOL.lock();
        pool.ensure_ready();
        pool.take()?
    };
    let p = page.va() as *mut u64;
    for i in 0..ENTRIES {
        // SAFETY: the page was free: mapped writable at its address (the pool maps
        // what it hands out, `free` maps it back) and used by nothing.
        unsafe { p.add(i).write_volatile(0) };
    }
    Ok(page)
}

/// A new table page: from the pool, zeroed and mapped read-only (ready to be hooked
/// into a tree or pinned).
pub fn alloc_table() -> Result<Page, Errno> {
    let page = alloc()?;
    if let Err(e) = make_readonly(&page) {
        // SAFETY: the page was just allocated and nothing refers to it.
        let _ = unsafe { free(page) };
        return Err(e);
    }
    Ok(page)
}

/// Gives `page` back to the pool, mapping its frame (the P2M's) writable at its kernel
/// address again. Fails, keeping the page, while the frame has a table type (-EBUSY)
/// or if it is not a pool page in use (-EINVAL).
///
/// # Safety
///
/// Nothing may use the page afterwards.
pub unsafe fn free(page: Page) -> Result<(), Errno> {
    let mut pool = POOL.lock();
    if !pool.ready || !(pool.first..pool.end).contains(&page.pfn) || !pool.used.get(page.pfn) {
        return Err(Errno::EINVAL);
    }
    make_writable(&page)?;
    pool.used.set(page.pfn, false);
    pool.in_use -= 1;
    pool.hint = pool.hint.min(page.pfn);
    Ok(())
}

// ---- Trees ----

/// A page-table tree: an L4 and up to `N` tables below it that the tree made. Its pages
/// come from the pool and are mapped read-only; [`Tree::destroy`] gives them back
/// (dropping a tree leaks them).
#[derive(Debug)]
pub struct Tree<const N: usize = 16> {
    l4: Page,
    tables: [Page; N],
    len: usize,
    pinned: bool,
}

impl<const N: usize> Tree<N> {
    /// A new, unpinned tree: an L4 from the pool, empty or (`with_kernel`) holding the
    /// kernel half of the current L4 ([`init_kernel_l4`]), mapped read-only.
    pub fn new(with_kernel: bool) -> Result<Self, Errno> {
        let l4 = alloc()?;
        let filled = if with_kernel {
            // SAFETY: the page was just allocated: writable and unused.
            unsafe { init_kernel_l4(&l4) }
        } else {
            Ok(())
        };
        if let Err(e) = filled.and_then(|()| make_readonly(&l4)) {
            // SAFETY: nothing refers to the page.
            let _ = unsafe { free(l4) };
            return Err(e);
        }
        Ok(Self { l4, tables: [l4; N], len: 0, pinned: false })
    }

    /// The L4.
    pub fn l4(&self) -> Page {
        self.l4
    }

    /// The tables below the L4 that the tree made, in the order it made them.
    pub fn tables(&self) -> &[Page] {
        &self.tables[..self.len]
    }

    /// Whether the tree's L4 is pinned (through [`Tree::pin`]).
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// The table at `level` that covers `va`, made (zeroed, read-only, hooked in with
    /// [`TABLE`] flags) where missing. `Level::L4` is the root.
    pub fn table(&mut self, va: u64, level: Level) -> Result<Page, Errno> {
        let mut table = self.l4;
        let mut at = Level::L4;
        while at != level {
            let slot = table_index(va, at.number());
            let e = read_entry(table.mfn, slot).ok_or(Errno::EFAULT)?;
            table = if e & PTE_PRESENT != 0 {
                if e & PTE_PSE != 0 {
                    return Err(Errno::EINVAL);
                }
                Page::from_mfn(pte_mfn(e)).ok_or(Errno::EFAULT)?
            } else {
                if self.len == N {
                    return Err(Errno::ENOSPC);
                }
                let new = alloc_table()?;
                // SAFETY: the new entry points at an empty table: it maps nothing.
                if let Err(e) = unsafe { set_entry(table.mfn, slot, new.pte(TABLE)) } {
                    // SAFETY: the table was never hooked in; nothing refers to it.
                    let _ = unsafe { free(new) };
                    return Err(e);
                }
                self.tables[self.len] = new;
                self.len += 1;
                new
            };
            at = at.below().ok_or(Errno::EINVAL)?;
        }
        Ok(table)
    }

    /// Maps `va` with L1 entry `pte`, making the tables on the way.
    ///
    /// # Safety
    ///
    /// If the tree is in use (a base pointer), the change must not unmap or remap
    /// memory Rust code uses.
    pub unsafe fn map(&mut self, va: u64, pte: u64) -> Result<(), Errno> {
        let l1 = self.table(va, Level::L1)?;
        // SAFETY: forwarded contract.
        unsafe { set_entry(l1.mfn, table_index(va, 1), pte) }
    }

    /// Walks the tree for `va`.
    pub fn walk(&self, va: u64) -> Walk {
        crate::pt::walk(&DirectMap, self.l4.mfn, va)
    }

    /// Calls `f(va, pte)` for each present 4 KiB mapping of the user half in `range`.
    pub fn for_each_user_page(&self, range: Range<u64>, f: &mut dyn FnMut(u64, u64)) {
        const HALF: u64 = 1 << 47;
        let range = range.start.min(HALF)..range.end.min(HALF);
        visit(self.l4.mfn, Level::L4, 0, &range, f);
    }

    /// Pins the L4 (`MMUEXT_PIN_L4_TABLE`): Xen validates the whole tree.
    pub fn pin(&mut self) -> Result<(), Errno> {
        pin(Level::L4, self.l4.mfn)?;
        self.pinned = true;
        Ok(())
    }

    /// Unpins the L4: without other references the tree's types go.
    pub fn unpin(&mut self) -> Result<(), Errno> {
        unpin(self.l4.mfn)?;
        self.pinned = false;
        Ok(())
    }

    /// Unpins the tree if pinned, maps its pages writable again and gives them back.
    /// Pages Xen will not make writable (still in use as tables elsewhere, or the L4
    /// as a base pointer) are leaked and the first error is returned.
    pub fn destroy(mut self) -> Result<(), Errno> {
        if self.pinned {
            self.unpin()?;
        }
        let mut result = Ok(());
        for page in self.tables[..self.len].iter().chain([&self.l4]) {
            // SAFETY: the tree is consumed: nothing refers to its pages any more.
            if let Err(e) = unsafe { free(*page) } {
                result = result.and(Err(e));
            }
        }
        result
    }
}

/// The lowest address of slot `index` at `level` under a table covering from `base`.
const fn slot_va(base: u64, level: Level, index: usize) -> u64 {
    base + ((index as u64) << (12 + 9 * (level as u64 - 1)))
}

/// Size of the address range one entry of `level` covers.
const fn slot_size(level: Level) -> u64 {
    1 << (12 + 9 * (level as u64 - 1))
}

/// Recursive part of [`Tree::for_each_user_page`] (4 levels deep at most).
fn visit(mfn: u64, level: Level, base: u64, range: &Range<u64>, f: &mut dyn FnMut(u64, u64)) {
    for index in 0..ENTRIES {
        let va = slot_va(base, level, index);
        if va >= range.end || va + slot_size(level) <= range.start {
            continue;
        }
        let Some(e) = read_entry(mfn, index) else { return };
        if e & PTE_PRESENT == 0 {
            continue;
        }
        match level.below() {
            None => f(va, e),
            Some(_) if e & PTE_PSE != 0 => {}
            Some(below) => visit(pte_mfn(e), below, va, range, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(Level::L1.pin_cmd(), MMUEXT_PIN_L1_TABLE);
        assert_eq!(Level::L4.pin_cmd(), MMUEXT_PIN_L4_TABLE);
        assert_eq!(Level::L4.below(), Some(Level::L3));
        assert_eq!(Level::L1.below(), None);
        assert_eq!(Level::L2.number(), 2);
    }

    #[test]
    fn pages() {
        let p = Page { pfn: 3, mfn: 0x1234 };
        assert_eq!(p.va(), VIRT_BASE + 3 * 4096);
        assert_eq!(p.maddr(), 0x123_4000);
        assert_eq!(p.pte(USER_RW), 0x123_4067);
        assert_eq!(p.entry_maddr(5), 0x123_4028);
    }

    #[test]
    fn requests() {
        let u = pt_update(0x5000 + 16, 7);
        assert_eq!((u.cmd(), u.addr(), u.val), (MMU_NORMAL_PT_UPDATE, 0x5010, 7));
        let u = pt_update_preserve_ad(0x5000, 7);
        assert_eq!(u.cmd(), MMU_PT_UPDATE_PRESERVE_AD);
        let u = machphys_update(0x42, 9);
        assert_eq!((u.ptr, u.val), (0x42_000 | MMU_MACHPHYS_UPDATE, 9));
    }

    #[test]
    fn batch_results() {
        assert_eq!(batch_result(0, 3), Ok(3));
        let e = batch_result(-22, 2).unwrap_err();
        assert_eq!(e, BatchError { errno: Errno::EINVAL, done: 2 });
        assert_eq!(Errno::from(e), Errno::EINVAL);
        extern crate std;
        assert_eq!(std::format!("{e}"), std::format!("{} after 2 done", Errno::EINVAL));
    }

    #[test]
    fn bitmap() {
        extern crate std;
        let mut b = std::boxed::Box::new(Bitmap::new());
        assert_eq!(b.first_clear(10, 20), Some(10));
        for pfn in 10..70 {
            b.set(pfn, true);
        }
        assert!(b.get(69) && !b.get(70));
        assert_eq!(b.first_clear(10, 100), Some(70));
        assert_eq!(b.first_clear(10, 70), None);
        b.set(33, false);
        assert_eq!(b.first_clear(0, 100), Some(0));
        assert_eq!(b.first_clear(10, 100), Some(33));
        assert_eq!(b.first_clear(POOL_MAX_PFNS - 1, u64::MAX), Some(POOL_MAX_PFNS - 1));
    }

    #[test]
    fn slots() {
        assert_eq!(slot_va(0, Level::L4, 1), 1 << 39);
        assert_eq!(slot_va(1 << 39, Level::L1, 2), (1 << 39) + 0x2000);
        assert_eq!(slot_size(Level::L2), 2 << 20);
        assert_eq!(XEN_SLOTS.len() + USER_SLOTS.len() + KERNEL_SLOTS.len(), ENTRIES);
    }
}
