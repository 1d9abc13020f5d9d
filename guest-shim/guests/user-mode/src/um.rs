// SPDX-License-Identifier: MIT OR Apache-2.0
//! Guest user mode for this test guest: a user address space, the kernel's entry paths
//! from user mode and the way back. A small local module; guest-shim's page-table
//! helpers may replace the address-space half later.
//!
//! # The address space
//!
//! A 64-bit PV guest runs its kernel and its user code both in ring 3; Xen tells them
//! apart by which page tables are loaded. The kernel's L4 is the bootstrap one
//! (`start_info.pt_base`); the user L4 built here is registered with
//! `MMUEXT_NEW_USER_BASEPTR`, and Xen switches between the two (and swaps the GS
//! bases) on every kernel/user transition (`toggle_guest_mode`).
//!
//! The user L4, L3, L2 and L1 are page-aligned statics of the image. They are filled
//! while still writable, remapped read-only in the kernel's mappings (Xen refuses to
//! validate a page table that is mapped writable anywhere) and pinned as an L4, which
//! validates the whole tree. Every level has `_PAGE_USER`. The L1 maps, at low
//! addresses:
//!
//! ```text
//! USER_CODE_VA   0x400000  the user code page, read-only (a copy of the blob below)
//! USER_DATA_VA   0x401000  data shared with the kernel, read-write, NX
//! USER_STACK_VA  0x402000  the user stack, read-write, NX (RSP starts at the top)
//! USER_UNMAPPED_VA 0x403000 nothing: a user #PF target
//! ```
//!
//! As Linux does, the kernel L4 gets the same L3 in slot 0, so the kernel sees user
//! memory at the same addresses; the user L4 has no kernel half.
//!
//! # Entering and leaving user mode
//!
//! [`run`] enters user mode with guest-shim's [`user::enter`] (`HYPERVISOR_iret` and a
//! frame whose CS has RPL 3). Every way back into the kernel lands on the kernel stack
//! set with `HYPERVISOR_stack_switch` ([`kstack_top`], guest-shim's
//! [`user::kernel_stack_top`]): the SYSCALL callback, the trap-table entries (one stub per
//! vector, which hands exceptions of *kernel* mode on to guest-shim's own stubs), and
//! the event callback (guest-shim's, behind a stub that records the interrupted CS and
//! RIP). The syscall and trap stubs save the user registers as a guest-shim
//! [`TrapFrame`] and call [`dispatch`], which either returns to user mode (with
//! `HYPERVISOR_iret`, `VGCF_in_syscall` for SYSCALL) or records the [`Entry`] and
//! goes back to [`run`]'s caller with [`user::leave`]. The address space stays here,
//! built by hand step by step, because the tests check each step.
//!
//! User SYSCALL convention (RAX): [`SYS_COUNT`] returns the incremented
//! [`COUNTER`]; [`SYS_ECHO`] records the entry ([`last_echo`]) and returns
//! [`ECHO_VALUE`]; anything else (including [`SYS_EXIT`]) leaves user mode. `int $0x80`
//! follows the same convention (returning with flags 0); every exception from user
//! mode leaves it.
//!
//! Single vCPU only: the statics are shared with the entry stubs without locks.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use guest_shim::notes::VIRT_BASE;
use guest_shim::pt::{PTE_ACCESSED, PTE_DIRTY, PTE_NX, PTE_PRESENT, PTE_RW, PTE_USER, table_index};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::{FLAT_KERNEL_CS, IretContext, TrapInfo, VGCF_IN_SYSCALL};
use guest_shim::pv_abi::callback::{CALLBACKTYPE_EVENT, CallbackFlags, CallbackRegister};
use guest_shim::pv_abi::xen::{
    DOMID_SELF, MMU_NORMAL_PT_UPDATE, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L4_TABLE, MmuUpdate, MmuextOp,
    SharedInfo, UvmfFlags,
};
use guest_shim::traps::{self, TrapFrame, vector};
use guest_shim::user;
pub use guest_shim::user::{RFLAGS_IF, RFLAGS_RESERVED};

/// Page size.
pub const PAGE: u64 = 4096;
/// The user code page.
pub const USER_CODE_VA: u64 = 0x40_0000;
/// The page user and kernel share data through.
pub const USER_DATA_VA: u64 = 0x40_1000;
/// The user stack page.
pub const USER_STACK_VA: u64 = 0x40_2000;
/// The initial user RSP.
pub const USER_STACK_TOP: u64 = USER_STACK_VA + PAGE;
/// In the user L1's range, never mapped.
pub const USER_UNMAPPED_VA: u64 = 0x40_3000;

/// [`TrapFrame::vector`] of a SYSCALL from user mode (not an exception vector).
pub const KIND_SYSCALL: u64 = 0x200;
/// User RAX: leave user mode.
pub const SYS_EXIT: u64 = 0x5e00;
/// User RAX: count, return the new count.
pub const SYS_COUNT: u64 = 0x5e01;
/// User RAX: record the entry, return [`ECHO_VALUE`].
pub const SYS_ECHO: u64 = 0x5e02;

/// [`dispatch`]'s answer for "leave user mode".
const LEAVE: u64 = u64::MAX;
/// What [`dispatch`] reads in kernel mode to prove the kernel page tables are loaded.
pub const KERNEL_ONLY_MAGIC: u64 = 0x6b65_726e_656c_2121;

#[repr(C, align(4096))]
struct Page([u64; 512]);

static mut USER_L4: Page = Page([0; 512]);
static mut USER_L3: Page = Page([0; 512]);
static mut USER_L2: Page = Page([0; 512]);
static mut USER_L1: Page = Page([0; 512]);
static mut USER_CODE: Page = Page([0; 512]);
static mut USER_DATA: Page = Page([0; 512]);
static mut USER_STACK: Page = Page([0; 512]);
/// Only mapped in the kernel's page tables (it is part of the image).
static KERNEL_ONLY: u64 = KERNEL_ONLY_MAGIC;

// ---- State shared with the stubs and the tests ----

/// The counter [`SYS_COUNT`] increments.
pub static COUNTER: AtomicU64 = AtomicU64::new(0);
/// What [`SYS_ECHO`] returns in RAX.
pub static ECHO_VALUE: AtomicU64 = AtomicU64::new(0);
/// `HYPERVISOR_iret` flags for returning from a SYSCALL ([`VGCF_IN_SYSCALL`] or 0).
pub static SYSCALL_RESUME_FLAGS: AtomicU64 = AtomicU64::new(VGCF_IN_SYSCALL);
/// Whether [`dispatch`] reads CR3 and [`KERNEL_ONLY`] at each entry.
pub static PROBE: AtomicBool = AtomicBool::new(false);
/// Whether [`dispatch`] reads `gs:[0]` and `fs:[0]` at each entry (both bases must
/// point at mapped memory).
pub static PROBE_SEGMENTS: AtomicBool = AtomicBool::new(false);

/// guest-shim's entry stub of each vector, for exceptions of kernel mode.
static SHIM_STUBS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
/// guest-shim's event callback.
static SHIM_EVENT: AtomicU64 = AtomicU64::new(0);
/// RFLAGS as the SYSCALL callback found them, before anything changed them.
static SYSCALL_ENTRY_RFLAGS: AtomicU64 = AtomicU64::new(0);

/// The event callback's record of the last event: saved CS, RIP and how many
/// interrupted user mode.
static EVENT_CS: AtomicU64 = AtomicU64::new(0);
static EVENT_RIP: AtomicU64 = AtomicU64::new(0);
static EVENT_USER_COUNT: AtomicU64 = AtomicU64::new(0);
/// The shared-info page.
static SHARED: AtomicU64 = AtomicU64::new(0);

/// What the kernel saw at one entry from user mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The user registers and Xen's frame (`vector` is the vector or [`KIND_SYSCALL`]).
    pub frame: TrapFrame,
    /// Where the RIP slot of Xen's frame was.
    pub frame_addr: u64,
    /// For #PF: `vcpu_info.arch.cr2`.
    pub cr2: u64,
    /// `evtchn_upcall_mask` when the kernel was entered.
    pub mask_at_entry: u8,
    /// For SYSCALL: the live RFLAGS at the callback's first instruction.
    pub entry_rflags: u64,
    /// With [`PROBE`]: CR3 as the kernel reads it, and [`KERNEL_ONLY`].
    pub cr3: u64,
    /// With [`PROBE`]: the value of [`KERNEL_ONLY`].
    pub kernel_only: u64,
    /// With [`PROBE_SEGMENTS`]: `gs:[0]` and `fs:[0]` in the kernel.
    pub gs0: u64,
    /// See `gs0`.
    pub fs0: u64,
}

static mut LAST_EXIT: Entry = Entry::ZERO;
static mut LAST_ECHO: Entry = Entry::ZERO;

impl Entry {
    // SAFETY: every field is an integer (or a struct of integers): all zeros is valid.
    const ZERO: Entry = unsafe { core::mem::zeroed() };
}

/// The last [`SYS_ECHO`] entry.
pub fn last_echo() -> Entry {
    // SAFETY: written only by `dispatch` on this (single) vCPU, never concurrently
    // with this read (user mode is not running when the kernel reads it).
    unsafe { read_volatile(addr_of!(LAST_ECHO)) }
}

/// Forgets the last [`SYS_ECHO`] entry.
pub fn record_clear() {
    // SAFETY: see `last_echo`.
    unsafe { write_volatile(addr_of_mut!(LAST_ECHO), Entry::ZERO) };
}

/// The last recorded event callback: (saved CS, RIP, events that interrupted user mode).
pub fn last_event() -> (u64, u64, u64) {
    (
        EVENT_CS.load(Ordering::SeqCst),
        EVENT_RIP.load(Ordering::SeqCst),
        EVENT_USER_COUNT.load(Ordering::SeqCst),
    )
}

// ---- The address space ----

/// The machine frame behind an image address (through the P2M list).
pub fn mfn_of(va: u64) -> u64 {
    let si = guest_shim::start_info();
    let pfn = (va - VIRT_BASE) / PAGE;
    assert!(pfn < si.nr_pages, "{va:#x} is not in the image");
    // SAFETY: the P2M list holds `nr_pages` entries at `mfn_list` (xen.h), mapped for
    // the guest's lifetime; `pfn` is checked against it.
    unsafe { (si.mfn_list as *const u64).add(pfn as usize).read() }
}

/// The frames of the user address space.
#[derive(Clone, Copy, Debug)]
pub struct UserSpace {
    /// The user L4.
    pub l4: u64,
    /// The L3 under it (also in slot 0 of the kernel L4).
    pub l3: u64,
    /// The L2.
    pub l2: u64,
    /// The L1.
    pub l1: u64,
    /// The user code page.
    pub code: u64,
    /// The kernel's L4.
    pub kernel_l4: u64,
}

/// Image addresses of the user tables, L4 first.
fn table_vas() -> [u64; 4] {
    [
        (&raw const USER_L4) as u64,
        (&raw const USER_L3) as u64,
        (&raw const USER_L2) as u64,
        (&raw const USER_L1) as u64,
    ]
}

/// Flags of a user page-table entry pointing at a lower table.
const TABLE_FLAGS: u64 = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED;

impl UserSpace {
    /// The frames (nothing is changed).
    pub fn frames() -> Self {
        let [l4, l3, l2, l1] = table_vas().map(mfn_of);
        let si = guest_shim::start_info();
        Self { l4, l3, l2, l1, code: mfn_of((&raw const USER_CODE) as u64), kernel_l4: mfn_of(si.pt_base) }
    }

    /// Copies the user code in and fills the four tables (still writable).
    pub fn fill(&self) {
        let blob = user_blob();
        let code = (&raw mut USER_CODE).cast::<u8>();
        // SAFETY: the blob is the assembled user code, at most a page long (`user_blob`
        // checks); the code page is ours and not yet mapped for the user.
        unsafe { core::ptr::copy_nonoverlapping(blob.as_ptr(), code, blob.len()) };
        let va = USER_CODE_VA;
        let entries = [
            ((&raw mut USER_L4).cast::<u64>(), table_index(va, 4), self.l3 << 12 | TABLE_FLAGS),
            ((&raw mut USER_L3).cast::<u64>(), table_index(va, 3), self.l2 << 12 | TABLE_FLAGS),
            ((&raw mut USER_L2).cast::<u64>(), table_index(va, 2), self.l1 << 12 | TABLE_FLAGS),
        ];
        let data = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_DIRTY | PTE_NX;
        let l1 = (&raw mut USER_L1).cast::<u64>();
        let pages = [
            (USER_CODE_VA, self.code << 12 | PTE_PRESENT | PTE_USER | PTE_ACCESSED),
            (USER_DATA_VA, mfn_of((&raw const USER_DATA) as u64) << 12 | data),
            (USER_STACK_VA, mfn_of((&raw const USER_STACK) as u64) << 12 | data),
        ];
        // SAFETY: the tables are our own zeroed statics, still mapped writable, not yet
        // page tables; every index is below 512.
        unsafe {
            for (table, index, value) in entries {
                write_volatile(table.add(index), value);
            }
            for (va, value) in pages {
                write_volatile(l1.add(table_index(va, 1)), value);
            }
        }
    }

    /// Remaps the four tables read-only in the kernel's mappings (`update_va_mapping`).
    pub fn protect(&self) -> Result<(), Errno> {
        let xen = guest_shim::hypercalls();
        for va in table_vas() {
            let pte = guest_shim::pt::lookup(va).pte().ok_or(Errno::EFAULT)?;
            // SAFETY: nothing writes the tables after `fill`; reads still work.
            unsafe { xen.update_va_mapping(va, pte & !PTE_RW, UvmfFlags::INVLPG) }?;
        }
        Ok(())
    }

    /// Pins the user L4 (`MMUEXT_PIN_L4_TABLE`), which validates the tree.
    pub fn pin(&self) -> Result<(), Errno> {
        // SAFETY: pinning changes no mapping of ours.
        unsafe {
            guest_shim::hypercalls().mmuext_op(&[MmuextOp::new(MMUEXT_PIN_L4_TABLE, self.l4, 0)], DOMID_SELF)
        }
        .map(drop)
    }

    /// Makes `mfn` the user page-table base (`MMUEXT_NEW_USER_BASEPTR`).
    pub fn set_user_base(mfn: u64) -> Result<(), Errno> {
        // SAFETY: the user base is only used in user mode, which these tests enter
        // only with a valid base.
        unsafe {
            guest_shim::hypercalls().mmuext_op(&[MmuextOp::new(MMUEXT_NEW_USER_BASEPTR, mfn, 0)], DOMID_SELF)
        }
        .map(drop)
    }

    /// Puts the user L3 in slot 0 of the kernel L4 (`mmu_update`), so the kernel sees
    /// user memory at user addresses.
    pub fn share_with_kernel(&self) -> Result<(), Errno> {
        let slot = self.kernel_l4 << 12 | (table_index(USER_CODE_VA, 4) as u64 * 8) | MMU_NORMAL_PT_UPDATE;
        let update = MmuUpdate { ptr: slot, val: self.l3 << 12 | TABLE_FLAGS };
        // SAFETY: slot 0 of the kernel L4 was empty: nothing of ours lives there.
        unsafe { guest_shim::hypercalls().mmu_update(&[update], DOMID_SELF) }.map(drop)
    }
}

/// The data page, through the kernel's image mapping.
pub fn user_data() -> *mut u64 {
    (&raw mut USER_DATA).cast::<u64>()
}

/// A page of the image nothing else uses (a writable data page).
pub fn scratch_page() -> u64 {
    static mut SCRATCH: Page = Page([0; 512]);
    (&raw const SCRATCH) as u64
}

/// The top of the kernel stack for entries from user mode.
pub fn kstack_top() -> u64 {
    user::kernel_stack_top()
}

// ---- Entry paths ----

/// Size of one trap stub.
const STUB_SIZE: u64 = 32;
/// Vectors whose exception frame has an error code (as in guest-shim).
const ERROR_CODE_VECTORS: u32 =
    1 << 8 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 14 | 1 << 17 | 1 << 21 | 1 << 29 | 1 << 30;

unsafe extern "C" {
    static um_trap_stubs: [u8; 256 * STUB_SIZE as usize];
    static um_trap_stubs_end: u8;
    fn um_syscall_entry();
    fn um_event_entry();
    static um_user_start: u8;
    static um_user_end: u8;
}

/// Our trap stub of `vector`.
pub fn stub_address(vector: u8) -> u64 {
    (&raw const um_trap_stubs) as u64 + vector as u64 * STUB_SIZE
}

/// The SYSCALL callback.
pub fn syscall_entry() -> u64 {
    um_syscall_entry as *const () as u64
}

/// The DPL our trap table gives `vector` by default (guest-shim's choice: 3 for #BP,
/// #OF and 0x80).
pub fn default_dpl(v: u8) -> u8 {
    if v == vector::BP || v == vector::OF || v == vector::INT80 { 3 } else { 0 }
}

/// Points vectors 0-31 and 0x80 at our stubs with [`default_dpl`].
pub fn install_gates() -> Result<(), Errno> {
    let mut table = [TrapInfo::new(0, 0, false, 0, 0); 34];
    for v in 0..32u8 {
        table[v as usize] = TrapInfo::new(v, default_dpl(v), false, FLAT_KERNEL_CS, stub_address(v));
    }
    table[32] = TrapInfo::new(vector::INT80, 3, false, FLAT_KERNEL_CS, stub_address(vector::INT80));
    // SAFETY: every entry points at its vector's stub, which forwards kernel-mode
    // exceptions to guest-shim's stubs unchanged; the table ends with a zero entry.
    unsafe { guest_shim::hypercalls().set_trap_table(&table) }
}

/// Registers one vector with `dpl`.
pub fn set_gate(v: u8, dpl: u8) -> Result<(), Errno> {
    let table =
        [TrapInfo::new(v, dpl, false, FLAT_KERNEL_CS, stub_address(v)), TrapInfo::new(0, 0, false, 0, 0)];
    // SAFETY: as in `install_gates`.
    unsafe { guest_shim::hypercalls().set_trap_table(&table) }
}

/// Sets up what the entry paths need: guest-shim's stubs to forward to, the iret stub,
/// the shared-info page, our trap-table entries, the event callback wrapper and the
/// kernel stack (`stack_switch`, by [`user::init`]). guest-shim's `traps::install`
/// must have run.
pub fn install_entry_paths() -> Result<(), Errno> {
    let stubs_len = (&raw const um_trap_stubs_end) as u64 - stub_address(0);
    assert_eq!(stubs_len, 256 * STUB_SIZE, "user-mode trap stubs are not {STUB_SIZE} bytes each");
    let xen = guest_shim::hypercalls();
    for (v, slot) in SHIM_STUBS.iter().enumerate() {
        slot.store(traps::stub_address(v as u8), Ordering::SeqCst);
    }
    SHIM_EVENT.store(traps::event_entry(), Ordering::SeqCst);
    let page = guest_shim::shared_info::map()?;
    SHARED.store(page.as_ptr() as u64, Ordering::SeqCst);
    install_gates()?;
    let event =
        CallbackRegister::new(CALLBACKTYPE_EVENT, CallbackFlags::empty(), um_event_entry as *const () as u64);
    // SAFETY: the wrapper records two words and jumps to guest-shim's event callback.
    unsafe { xen.callback_register(&event) }?;
    user::init()
}

/// Registers the SYSCALL callback, masking events on entry or not.
pub fn register_syscall(mask_events: bool) -> Result<(), Errno> {
    // SAFETY: the entry takes Xen's SYSCALL frame and returns with iret or `user::leave`.
    unsafe { user::register_syscall(syscall_entry(), mask_events) }
}

fn shared() -> *mut SharedInfo {
    SHARED.load(Ordering::Relaxed) as *mut SharedInfo
}

/// vCPU 0's `evtchn_upcall_mask`.
pub fn upcall_mask() -> u8 {
    // SAFETY: the page is mapped for good by `install_entry_paths`.
    unsafe { read_volatile(addr_of!((*shared()).vcpu_info[0].evtchn_upcall_mask)) }
}

/// Sets vCPU 0's `evtchn_upcall_mask`.
pub fn set_upcall_mask(mask: u8) {
    // SAFETY: as in `upcall_mask`; the byte is the guest's to write.
    unsafe { write_volatile(addr_of_mut!((*shared()).vcpu_info[0].evtchn_upcall_mask), mask) }
}

/// CR3 as a PV kernel reads it (Xen emulates the read; in user mode it is #GP).
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: Xen emulates `mov %cr3` for the guest kernel; no memory is touched.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}

/// `gs:[0]`.
///
/// # Safety
///
/// The GS base must point at mapped memory.
pub unsafe fn read_gs0() -> u64 {
    let v: u64;
    // SAFETY: the caller guarantees the address is mapped.
    unsafe { core::arch::asm!("mov {}, qword ptr gs:[0]", out(reg) v, options(nostack, readonly)) };
    v
}

/// `fs:[0]`.
///
/// # Safety
///
/// The FS base must point at mapped memory.
pub unsafe fn read_fs0() -> u64 {
    let v: u64;
    // SAFETY: the caller guarantees the address is mapped.
    unsafe { core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) v, options(nostack, readonly)) };
    v
}

/// Called by the stubs on every entry from user mode. Returns the iret flags to go
/// back to user mode with, or [`LEAVE`].
extern "C" fn dispatch(frame: *mut TrapFrame) -> u64 {
    // The mask first: nothing here may change it before it is read.
    let mask_at_entry = upcall_mask();
    // SAFETY: the stub passes the frame it built on this stack, live until it returns.
    let frame = unsafe { &mut *frame };
    let kind = frame.vector;
    let mut e =
        Entry { frame: *frame, frame_addr: &raw const frame.rip as u64, mask_at_entry, ..Entry::ZERO };
    if kind == vector::PF as u64 {
        // SAFETY: the shared-info page is mapped for good.
        e.cr2 = unsafe { read_volatile(addr_of!((*shared()).vcpu_info[0].arch.cr2)) };
    }
    if kind == KIND_SYSCALL {
        e.entry_rflags = SYSCALL_ENTRY_RFLAGS.load(Ordering::SeqCst);
    }
    if PROBE.load(Ordering::SeqCst) {
        e.cr3 = read_cr3();
        // SAFETY: a plain static of the image.
        e.kernel_only = unsafe { read_volatile(&raw const KERNEL_ONLY) };
    }
    if PROBE_SEGMENTS.load(Ordering::SeqCst) {
        // SAFETY: the test that sets PROBE_SEGMENTS points both bases at mapped memory.
        unsafe {
            e.gs0 = read_gs0();
            e.fs0 = read_fs0();
        }
    }
    if kind == KIND_SYSCALL || kind == vector::INT80 as u64 {
        let flags = if kind == KIND_SYSCALL { SYSCALL_RESUME_FLAGS.load(Ordering::SeqCst) } else { 0 };
        match frame.rax {
            SYS_COUNT => {
                frame.rax = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                return flags;
            }
            SYS_ECHO => {
                // SAFETY: see `last_echo`.
                unsafe { write_volatile(addr_of_mut!(LAST_ECHO), e) };
                frame.rax = ECHO_VALUE.load(Ordering::SeqCst);
                return flags;
            }
            _ => {}
        }
    }
    // SAFETY: see `last_echo`.
    unsafe { write_volatile(addr_of_mut!(LAST_EXIT), e) };
    // Back in the kernel's own context, events are masked as they were before `run`
    // (which restores the caller's mask); nothing may be delivered on the way there.
    set_upcall_mask(1);
    LEAVE
}

/// How to enter user mode: the `HYPERVISOR_iret` frame and two argument registers.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// User RIP.
    pub rip: u64,
    /// User RSP.
    pub rsp: u64,
    /// RFLAGS (IF: events unmasked in user mode).
    pub rflags: u64,
    /// `iret_context.flags` (`VGCF_in_syscall` or 0).
    pub flags: u64,
    /// CS (RPL 3: user mode).
    pub cs: u64,
    /// SS.
    pub ss: u64,
    /// RAX, RCX and R11 of the iret frame.
    pub rax: u64,
    /// See `rax`.
    pub rcx: u64,
    /// See `rax`.
    pub r11: u64,
    /// RDI in user mode.
    pub a0: u64,
    /// RSI in user mode.
    pub a1: u64,
}

impl Run {
    /// User program at `rip` with the user stack, IF set, flags 0, the flat user
    /// selectors and zero registers.
    pub fn at(rip: u64) -> Self {
        use guest_shim::pv_abi::arch_x86::{FLAT_USER_CS, FLAT_USER_SS};
        Self {
            rip,
            rsp: USER_STACK_TOP,
            rflags: RFLAGS_IF | RFLAGS_RESERVED,
            flags: 0,
            cs: FLAT_USER_CS as u64,
            ss: FLAT_USER_SS as u64,
            rax: 0,
            rcx: 0,
            r11: 0,
            a0: 0,
            a1: 0,
        }
    }

    /// With RDI and RSI.
    pub fn args(self, a0: u64, a1: u64) -> Self {
        Self { a0, a1, ..self }
    }
}

/// Enters user mode as `r` says and returns the entry that left it. The caller's
/// event mask is restored on the way back.
pub fn run(r: &Run) -> Entry {
    let mask = upcall_mask();
    let frame = IretContext {
        rax: r.rax,
        r11: r.r11,
        rcx: r.rcx,
        flags: r.flags,
        rip: r.rip,
        cs: r.cs,
        rflags: r.rflags,
        rsp: r.rsp,
        ss: r.ss,
    };
    // SAFETY: `install_entry_paths` ran `user::init`; the tests set the user base
    // first. Every way back (`dispatch` answering LEAVE) goes through `user::leave`.
    // User code only touches user pages.
    unsafe { user::enter(&frame, r.a0, r.a1) };
    set_upcall_mask(mask);
    // SAFETY: see `last_echo`.
    unsafe { read_volatile(addr_of!(LAST_EXIT)) }
}

core::arch::global_asm!(
    ".pushsection .text.user_mode_rt, \"ax\"",
    // ---- 256 trap stubs, 32 bytes apart ----
    // Kernel mode (saved CS RPL 0): on to guest-shim's stub with the frame as is.
    // User mode: pop RCX/R11, push a zero error code where Xen pushed none, push the
    // vector, and save the rest in um_common.
    ".balign 32",
    ".global um_trap_stubs",
    "um_trap_stubs:",
    ".set um_vec, 0",
    ".rept 256",
    ".if um_vec < 32",
    ".set um_ec, ({ec_mask} >> um_vec) & 1",
    ".else",
    ".set um_ec, 0",
    ".endif",
    ".if um_ec",
    "test byte ptr [rsp + 32], 3",
    ".else",
    "test byte ptr [rsp + 24], 3",
    ".endif",
    "jz 1f",
    "pop rcx",
    "pop r11",
    ".if um_ec == 0",
    "push 0",
    ".endif",
    ".byte 0x68",
    ".long um_vec",
    "jmp um_common",
    "1:",
    "jmp qword ptr [rip + {shim_stubs} + um_vec * 8]",
    ".balign 32",
    ".set um_vec, um_vec + 1",
    ".endr",
    ".global um_trap_stubs_end",
    "um_trap_stubs_end:",
    // ---- SYSCALL from user mode: {RCX, R11, RIP, CS, RFLAGS, RSP, SS} ----
    ".balign 16",
    ".global um_syscall_entry",
    "um_syscall_entry:",
    "pushfq",
    "pop qword ptr [rip + {entry_rflags}]",
    "pop rcx",
    "pop r11",
    "push 0",
    "push {kind_syscall}",
    "jmp um_common",
    // ---- The event callback: record, then guest-shim's callback ----
    ".balign 16",
    ".global um_event_entry",
    "um_event_entry:",
    "push rax",
    "mov rax, [rsp + 32]",
    "mov [rip + {ev_cs}], rax",
    "test al, 3",
    "jz 1f",
    "inc qword ptr [rip + {ev_user}]",
    "1:",
    "mov rax, [rsp + 24]",
    "mov [rip + {ev_rip}], rax",
    "pop rax",
    "jmp qword ptr [rip + {shim_event}]",
    // ---- Save the user registers, dispatch, go back or leave ----
    ".balign 16",
    "um_common:",
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "cld",
    "mov rdi, rsp",
    "mov rbx, rsp",
    "and rsp, -16",
    "call {dispatch}",
    "mov rsp, rbx",
    "cmp rax, -1",
    "je 2f",
    // The iret flags go where the error code was: RSP -> flags, RIP, CS, ...
    "mov [rsp + 16 * 8], rax",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "lea rsp, [rsp + 8]",
    "jmp {iret}",
    // Leave user mode for good: back to user::enter's caller.
    "2:",
    "jmp {leave}",
    ".popsection",
    ec_mask = const ERROR_CODE_VECTORS,
    shim_stubs = sym SHIM_STUBS,
    shim_event = sym SHIM_EVENT,
    entry_rflags = sym SYSCALL_ENTRY_RFLAGS,
    kind_syscall = const KIND_SYSCALL,
    ev_cs = sym EVENT_CS,
    ev_rip = sym EVENT_RIP,
    ev_user = sym EVENT_USER_COUNT,
    dispatch = sym dispatch,
    iret = sym user::iret,
    leave = sym user::leave,
);

// ---- User code ----
//
// Position-independent programs, copied to USER_CODE_VA. Each ends with a SYSCALL that
// leaves user mode (the `ud2` after it is never reached). Results are in registers,
// which the kernel reads from the exit frame.

core::arch::global_asm!(
    ".pushsection .text.user_mode_blob, \"ax\"",
    ".balign 16",
    ".global um_user_start",
    "um_user_start:",
    // Registers as iret left them: R12 = RCX, R13 = R11, R14 = RFLAGS, R15 = RSP.
    ".global u_regs",
    "u_regs:",
    "mov r12, rcx",
    "mov r13, r11",
    "pushfq",
    "pop r14",
    "mov r15, rsp",
    "mov eax, {exit}",
    "syscall",
    ".global u_regs_ret",
    "u_regs_ret:",
    "ud2",
    // SYSCALL with DF set.
    ".global u_std",
    "u_std:",
    "std",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // One bounce with known arguments; then R12 = RAX, R13 = RCX, R14 = R11, R15 = RSP
    // after it, RBX = RSP before it.
    ".global u_echo",
    "u_echo:",
    "mov rbx, rsp",
    "mov eax, {echo}",
    "mov edi, 0x1111",
    "mov esi, 0x2222",
    "mov edx, 0x3333",
    "mov r10d, 0x4444",
    "mov r8d, 0x5555",
    "mov r9d, 0x6666",
    "syscall",
    ".global u_echo_ret",
    "u_echo_ret:",
    "mov r12, rax",
    "mov r13, rcx",
    "mov r14, r11",
    "mov r15, rsp",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // int $0x80 with RCX/R11 set; then R12 = RAX, R13 = RCX, R14 = R11.
    ".global u_int80",
    "u_int80:",
    "mov ecx, 0xc1c1",
    "mov r11d, 0xd1d1",
    "mov eax, {echo}",
    "int 0x80",
    ".global u_int80_ret",
    "u_int80_ret:",
    "mov r12, rax",
    "mov r13, rcx",
    "mov r14, r11",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // RDI bounces of SYS_COUNT, the counter starting at RSI: R12 = last count,
    // R13 = answers that were not the expected next count.
    ".global u_count",
    "u_count:",
    "mov rbx, rdi",
    "mov r12, rsi",
    "xor r13d, r13d",
    "1:",
    "mov eax, {count}",
    "syscall",
    "inc r12",
    "cmp rax, r12",
    "je 3f",
    "inc r13",
    "3:",
    "dec rbx",
    "jnz 1b",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // Reads [RDI] into R12.
    ".global u_read",
    "u_read:",
    "mov rax, [rdi]",
    "mov r12, rax",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // Writes RSI to [RDI].
    ".global u_write",
    "u_write:",
    "mov [rdi], rsi",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // A privileged instruction.
    ".global u_priv",
    "u_priv:",
    "mov rax, cr3",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".global u_int3",
    "u_int3:",
    "int3",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".global u_ud2",
    "u_ud2:",
    "ud2",
    // int $0x82, the 32-bit PV hypercall vector.
    ".global u_int82",
    "u_int82:",
    "int 0x82",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // SYSCALL with RAX = RDI, RDI = RSI: a hypercall as a kernel would make it.
    ".global u_hcall",
    "u_hcall:",
    "mov rax, rdi",
    "mov rdi, rsi",
    "xor esi, esi",
    ".global u_hcall_sc",
    "u_hcall_sc:",
    "syscall",
    ".global u_hcall_ret",
    "u_hcall_ret:",
    "ud2",
    // Spins until [RDI] != 0 or RSI iterations: R12 = iterations, R13 = [RDI].
    ".global u_spin",
    "u_spin:",
    "xor r12d, r12d",
    ".global u_spin_loop",
    "u_spin_loop:",
    "cmp qword ptr [rdi], 0",
    "jne 4f",
    "inc r12",
    "cmp r12, rsi",
    "jb u_spin_loop",
    ".global u_spin_loop_end",
    "u_spin_loop_end:",
    "4:",
    "mov r13, [rdi]",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // GS and FS as the user sees them: R12 = gs:[0], R13 = fs:[0], then one bounce,
    // then R14 = gs:[0].
    ".global u_segs",
    "u_segs:",
    "mov r12, qword ptr gs:[0]",
    "mov r13, qword ptr fs:[0]",
    "mov eax, {echo}",
    "syscall",
    "mov r14, qword ptr gs:[0]",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".global um_user_end",
    "um_user_end:",
    ".popsection",
    exit = const SYS_EXIT,
    echo = const SYS_ECHO,
    count = const SYS_COUNT,
);

/// The user programs as assembled into the image.
fn user_blob() -> &'static [u8] {
    let start = &raw const um_user_start;
    let len = (&raw const um_user_end) as usize - start as usize;
    assert!(len as u64 <= PAGE, "user code is over a page");
    // SAFETY: the bytes between the two labels are the assembled user code, in the
    // image's read-only text.
    unsafe { core::slice::from_raw_parts(start, len) }
}

/// Where the user program starting at image label `label` lives in user mode.
pub fn user_va(label: *const u8) -> u64 {
    USER_CODE_VA + (label as u64 - (&raw const um_user_start) as u64)
}

/// The user programs' labels.
pub mod prog {
    unsafe extern "C" {
        /// See the blob.
        pub static u_regs: u8;
        /// See the blob.
        pub static u_regs_ret: u8;
        /// See the blob.
        pub static u_std: u8;
        /// See the blob.
        pub static u_echo: u8;
        /// See the blob.
        pub static u_echo_ret: u8;
        /// See the blob.
        pub static u_int80: u8;
        /// See the blob.
        pub static u_int80_ret: u8;
        /// See the blob.
        pub static u_count: u8;
        /// See the blob.
        pub static u_read: u8;
        /// See the blob.
        pub static u_write: u8;
        /// See the blob.
        pub static u_priv: u8;
        /// See the blob.
        pub static u_int3: u8;
        /// See the blob.
        pub static u_ud2: u8;
        /// See the blob.
        pub static u_int82: u8;
        /// See the blob.
        pub static u_hcall: u8;
        /// See the blob.
        pub static u_hcall_sc: u8;
        /// See the blob.
        pub static u_hcall_ret: u8;
        /// See the blob.
        pub static u_spin: u8;
        /// See the blob.
        pub static u_spin_loop: u8;
        /// See the blob.
        pub static u_spin_loop_end: u8;
        /// See the blob.
        pub static u_segs: u8;
    }
}
