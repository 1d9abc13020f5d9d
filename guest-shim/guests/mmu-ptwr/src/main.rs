// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: writable page tables ("ptwr") as dom0. A 64-bit PV kernel may write
//! the entries of its L1 tables with ordinary instructions although the tables are
//! mapped read-only: the write faults, and Xen decodes and emulates it as a checked
//! update of the entry (`arch/x86/pv/ro-page-fault.c`: `pv_ro_page_fault`,
//! `ptwr_emulated_update`; `arch/x86/mm.c`: `get_page_from_l1e`; `arch/x86/traps.c`:
//! `fixup_page_fault`). One `RESULT` line per check, then `SUMMARY` and poweroff.
//!
//! The test L1 is a page of this image (`TEST_L1`, so that RIP-relative operands can
//! name it), mapped read-only at its kernel address, pinned as an L1 and hooked into
//! the start-of-day L2 at `TEST_VA`; entry `s` maps `TEST_VA + s * 4096`. Each check
//! takes fresh entries, sets the starting value with `mmu_update`, writes directly,
//! then compares the entry (read through the read-only mapping) with what
//! `mmu_update` stores for the value the instruction computes (`canon`: a direct
//! write must be exactly a checked update), and looks at the effect through
//! `TEST_VA` (after `MMUEXT_INVLPG_LOCAL`: nothing is flushed for an emulated write)
//! by reading, writing, or catching the #PF. The `stored-*` checks compare with
//! Xen's own rule instead (`stored`).
//!
//! What is checked, against what Xen 4.17 does:
//! - emulated 8-byte writes: `mov` through register-indirect, disp8, disp32, SIB with
//!   displacement, REX-extended registers, RIP-relative and immediate operands;
//!   `xchg` (the old entry returned); `cmpxchg` with and without `lock` (success: ZF=1
//!   and the entry changed; failure: ZF=0, RAX = the current entry, entry unchanged);
//!   `lock btr`/`bts`/`btc` on the RW and present bits (CF = the old bit), also with
//!   the bit number in a register; `lock and`/`or` with immediates, `and`/`or` with
//!   registers; each time the mapping becomes readable and writable, read-only or
//!   not present; a pinned L1 that no L2 references is emulated too;
//! - what is stored: Xen adds `_PAGE_USER` and its "guest kernel" bit 52 to a present
//!   entry without `_PAGE_USER`, and `_PAGE_GLOBAL` to a user one; the available bits
//!   are kept; a non-present entry is stored as written; a frame past RAM (I/O memory
//!   dom0 may map) gets PCD|PWT;
//! - partial writes, merged with the rest of the entry and checked as a whole: 4 bytes
//!   to the low half (another frame), to the high half (NX; an address bit beyond the
//!   physical width is refused), 2 bytes and 1 byte; an 8-byte write that is not
//!   naturally aligned is refused;
//! - refused writes arrive as the #PF the write took (error code present + write,
//!   CR2 the written address, RIP the instruction, a `cmpxchg`'s RAX as it was) with
//!   the entry unchanged: mapping a page table writable (the L1 itself, the
//!   start-of-day L4), a frame the domain does not own (Xen's first M2P frame), an
//!   address bit beyond the physical width (for dom0 no L1 *flag* bit is disallowed:
//!   the bits left are guest-available or cache attributes, so the reserved bits Xen
//!   refuses are the address bits above the width, `-EPERM` in `get_page_from_l1e`),
//!   also through a locked RMW and `cmpxchg`; mapping a page table read-only is
//!   allowed and the L1 shows its own entry;
//! - direct writes to the start-of-day L2, L3 and L4, and to a read-only page with no
//!   table type, are never emulated (#PF);
//! - instructions: `rep stosq` and `movsq` are emulated (see below); SSE stores
//!   (`movq`, `movdqu`) and `lock cmpxchg16b` are not: the guest gets the #PF;
//! - a write from guest user mode through a user read-only mapping of the L1 is not
//!   emulated: #PF with error code present + write + user (module `user`);
//! - 10000 direct writes mapping and unmapping a page read back right each time, leave
//!   the entry empty, and leave no reference behind: the page can be pinned as an L1
//!   afterwards (which needs its writable-type count back at 0);
//! - `VMASST_TYPE_writable_pagetables` can be turned on and off.
//!
//! What Xen 4.17 does that one might not expect (each is checked as found):
//! - For dom0 the VM assist changes nothing: direct writes are emulated before it is
//!   enabled and after it is disabled. `fixup_page_fault` calls `pv_ro_page_fault`
//!   for the hardware domain on any write fault on a present page (for the read-only
//!   MMIO ranges), and that tries the L1 emulation whatever the assists.
//! - The emulator is Xen's general x86 one, not a list of "write one operand"
//!   instructions: a 2-byte or 1-byte `mov` is merged into the entry like a 4-byte
//!   one; `rep stosq` is emulated one iteration per fault (the instruction restarts
//!   until RCX is 0, RCX/RDI advance as on hardware); `movsq` reads its source from
//!   ordinary memory and writes the entry. Only what the ptwr `write`/`cmpxchg` hooks
//!   refuse (more than 8 bytes, not naturally aligned) or what needs the FPU (SSE,
//!   which the ptwr emulation has no hook for) gets the #PF.
//! - The new entry is checked, the old one is not looked at: a plain `mov` replaces a
//!   writable mapping with a read-only one, or anything with a non-present value.
//! - A refused write is the hardware #PF as it was (present + write, the user bit
//!   cleared for the kernel), not an error code of the check that failed.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod user;

use guest_shim::StartInfo;

guest_shim::entry!(start);

#[cfg(not(target_os = "none"))]
fn start(_si: &'static StartInfo) {
    guest_shim::println!("the mmu-ptwr guest runs only in a PV guest");
}

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
fn start(si: &'static StartInfo) {
    tests::run(si)
}

#[cfg(target_os = "none")]
#[allow(clippy::result_large_err, reason = "`traps::catch` returns the whole saved context by value")]
mod tests {
    use core::cell::Cell;
    use core::fmt::{Debug, Display};
    use core::ptr::read_volatile;

    use guest_shim::mmu::{self, KERNEL_RO, KERNEL_RW, Level, Page, TABLE};
    use guest_shim::notes::VIRT_BASE;
    use guest_shim::pt::{PTE_NX, PTE_PRESENT, PTE_RW, PTE_USER, pte_mfn};
    use guest_shim::pv_abi::Errno;
    use guest_shim::pv_abi::memory::{XENMEM_MACHPHYS_MFN_LIST, XenMachphysMfnList};
    use guest_shim::pv_abi::xen::{
        GuestHandle, VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES,
    };
    use guest_shim::report::need;
    use guest_shim::traps::{self, Trap, pf, vector};
    use guest_shim::{Outcome, StartInfo, Tests, catch_asm, println};

    use crate::user::{self, USER_CODE_VA, USER_TABLE_VA, UserSpace};

    /// The start-of-day L2 slot the test L1 is hooked into: 768 MiB past `VIRT_BASE`,
    /// beyond the pages of a dom0 of up to 768 MiB.
    const L2_SLOT: usize = 384;
    /// The addresses the test L1 maps.
    const TEST_VA: u64 = VIRT_BASE + (L2_SLOT as u64) * (2 << 20);
    /// The entry written with a RIP-relative operand (its offset is an assembler constant).
    const RIP_SLOT: usize = 511;
    /// The entry [`canon`] uses.
    const SCRATCH_SLOT: usize = 510;
    /// Xen's `_PAGE_GUEST_KERNEL`: bit 52, set by Xen in kernel mappings of 64-bit PV
    /// guests.
    const GUEST_KERNEL: u64 = 1 << 52;
    /// `_PAGE_GLOBAL`.
    const PTE_GLOBAL: u64 = 1 << 8;
    /// Cache-disable and write-through: what Xen adds to dom0 mappings of I/O memory.
    const PCD_PWT: u64 = 0x18;
    /// Software-available entry bits: 9-11 and 53-58 (bit 52 is Xen's, 59-62 are
    /// protection keys where the CPU has them).
    const AVAILABLE_BITS: u64 = 0xe00 | 0x3f << 53;
    /// An address bit beyond any physical address width.
    const BEYOND_WIDTH: u64 = 1 << 51;
    /// Direct writes in the map/unmap loop.
    const LOOP_WRITES: u32 = 10_000;
    /// Tags of the data pages' contents.
    const TAG_A: u64 = 0xa;
    const TAG_B: u64 = 0xb;

    #[repr(C, align(4096))]
    struct TablePage([u64; 512]);

    /// The test L1: zeroed with `.bss`, then only ever written by the hypervisor.
    static mut TEST_L1: TablePage = TablePage([0; 512]);

    /// Everything the checks share.
    struct Env {
        t: Tests,
        /// The test L1 as a page of the guest.
        l1: Page,
        /// Data pages filled with `TAG_A` / `TAG_B` words.
        a: Page,
        b: Page,
        /// The start-of-day tables on the way to `TEST_VA`.
        l4: Page,
        l3: Page,
        l2: Page,
        /// A frame Xen owns (the M2P's first), if the hypervisor names one.
        xen_frame: Option<u64>,
        /// `XENMEM_maximum_ram_page`.
        max_ram_page: u64,
        /// The next unused entry of the test L1.
        next: Cell<usize>,
    }

    impl Env {
        /// `n` fresh entries, the first aligned to `n` (for 16-byte writes).
        fn slots(&self, n: usize) -> usize {
            let s = self.next.get().next_multiple_of(n);
            assert!(s + n <= SCRATCH_SLOT, "out of test entries");
            self.next.set(s + n);
            s
        }

        /// A fresh entry.
        fn slot(&self) -> usize {
            self.slots(1)
        }

        /// A fresh entry holding `val` (set with `mmu_update`).
        fn slot_with(&self, val: u64) -> Result<usize, Outcome> {
            let s = self.slot();
            set(s, val)?;
            Ok(s)
        }
    }

    /// A check's result: `Err` carries the failing (or skipping) outcome.
    type Check = Result<(), Outcome>;

    fn verdict(c: Check) -> Outcome {
        c.err().unwrap_or(Outcome::Pass)
    }

    fn eq<T: PartialEq + Debug>(what: &str, actual: T, expected: T) -> Check {
        if actual == expected {
            Ok(())
        } else {
            Err(Outcome::fail(format_args!("{what}: got {actual:#x?}, expected {expected:#x?}")))
        }
    }

    fn fail(why: impl Display) -> Outcome {
        Outcome::fail(why)
    }

    // ---- The test L1 ----

    fn l1_va() -> u64 {
        (&raw const TEST_L1) as u64
    }

    /// The address of entry `s` in the test L1's read-only mapping.
    fn entry_va(s: usize) -> u64 {
        l1_va() + s as u64 * 8
    }

    /// Entry `s`, read through the read-only mapping.
    fn entry(s: usize) -> u64 {
        // SAFETY: the test L1 is a static, always mapped (read-only); the hypervisor
        // changes it under us, hence the volatile read.
        unsafe { read_volatile(entry_va(s) as *const u64) }
    }

    /// The address entry `s` maps.
    const fn tva(s: usize) -> u64 {
        TEST_VA + s as u64 * 4096
    }

    /// The entry Xen stores for `v` in a 64-bit PV L1 (`adjust_guest_l1e`): a present
    /// kernel entry (no `_PAGE_USER`) gets `_PAGE_USER` and `_PAGE_GUEST_KERNEL`, a
    /// present user one `_PAGE_GLOBAL`.
    const fn stored(v: u64) -> u64 {
        let mut v = v;
        if v & PTE_PRESENT != 0 {
            if v & PTE_USER == 0 {
                v |= GUEST_KERNEL | PTE_USER;
            }
            if v & GUEST_KERNEL == 0 {
                v |= PTE_GLOBAL | PTE_USER;
            }
        }
        v
    }

    /// What the hypervisor stores for `v` through `mmu_update`, in the scratch entry:
    /// the value a direct write of `v` must leave (on Xen, [`stored`]`(v)`).
    fn canon(v: u64) -> Result<u64, Outcome> {
        set(SCRATCH_SLOT, v)?;
        let e = entry(SCRATCH_SLOT);
        set(SCRATCH_SLOT, 0)?;
        Ok(e)
    }

    /// Sets entry `s` to `val` with `mmu_update` and flushes what it maps.
    fn set(s: usize, val: u64) -> Check {
        // SAFETY: the test L1 maps only `TEST_VA`, which nothing but these checks uses.
        let r = unsafe { mmu::set_entry(page_of_l1().mfn, s, val) };
        r.map_err(|e| fail(format_args!("mmu_update of entry {s} to {val:#x}: {e}")))?;
        flush(s)
    }

    fn page_of_l1() -> Page {
        let pfn = (l1_va() - VIRT_BASE) / 4096;
        Page { pfn, mfn: mmu::pfn_to_mfn(pfn).unwrap_or(u64::MAX) }
    }

    /// Flushes the mapping of entry `s` from the TLB.
    fn flush(s: usize) -> Check {
        mmu::invlpg_local(tva(s)).map_err(|e| fail(format_args!("invlpg {:#x}: {e}", tva(s))))
    }

    // ---- Looking at a mapping ----

    /// The value word `i` of a page tagged `tag` holds.
    const fn word(tag: u64, i: usize) -> u64 {
        tag << 32 | i as u64
    }

    /// Fills `page` (mapped writable) with `tag`'s words.
    fn fill(page: &Page, tag: u64) {
        let p = page.va() as *mut u64;
        for i in 0..512 {
            // SAFETY: the page is ours, from the pool, mapped writable; no Rust object
            // lives there.
            unsafe { p.add(i).write_volatile(word(tag, i)) };
        }
    }

    /// Word `i` of the page at `va`, or the exception reading it raised.
    fn peek(va: u64, i: usize) -> Result<u64, Trap> {
        // SAFETY: a read has no side effect; if `va` is not mapped the #PF ends the closure.
        unsafe { traps::catch(|| read_volatile((va as *const u64).add(i))) }
    }

    /// Writes word `i` of the page at `va`, or returns the exception it raised.
    fn poke(va: u64, i: usize, v: u64) -> Result<(), Trap> {
        // SAFETY: only test pages mapped at `TEST_VA` are written (or the write faults).
        unsafe { traps::catch(|| ((va as *mut u64).add(i)).write_volatile(v)) }
    }

    /// Whether `t` is a #PF at `cr2` with exactly `error` as the error code.
    fn is_pf(t: &Trap, cr2: u64, error: u64) -> bool {
        t.vector() == vector::PF && t.cr2 == cr2 && t.error_code() == error
    }

    /// Entry `s` maps the page tagged `tag`, readable, and writable if `writable`
    /// (else a write takes a #PF, present + write).
    fn maps(s: usize, tag: u64, writable: bool) -> Check {
        flush(s)?;
        let va = tva(s);
        let first = peek(va, 0).map_err(|t| fail(format_args!("reading {va:#x}: {t}")))?;
        let last = peek(va, 511).map_err(|t| fail(format_args!("reading {va:#x}: {t}")))?;
        eq("mapped page's words 0 and 511", (first, last), (word(tag, 0), word(tag, 511)))?;
        let probe = 0x5eed_0000 | s as u64;
        match (poke(va, 1, probe), writable) {
            (Ok(()), true) => {
                let back = peek(va, 1).map_err(|t| fail(format_args!("rereading {va:#x}: {t}")))?;
                poke(va, 1, word(tag, 1)).map_err(|t| fail(format_args!("restoring {va:#x}: {t}")))?;
                eq("word written through the mapping", back, probe)
            }
            (Ok(()), false) => {
                let _ = poke(va, 1, word(tag, 1));
                Err(fail(format_args!("{va:#x} is writable, expected read-only")))
            }
            (Err(t), false) if is_pf(&t, va + 8, pf::PRESENT | pf::WRITE) => Ok(()),
            (Err(t), _) => Err(fail(format_args!("writing {va:#x}: {t}"))),
        }
    }

    /// Entry `s` maps nothing: a read takes a not-present #PF.
    fn unmapped(s: usize) -> Check {
        flush(s)?;
        let va = tva(s);
        match peek(va, 0) {
            Err(t) if is_pf(&t, va, 0) => Ok(()),
            Err(t) => Err(fail(format_args!("reading {va:#x}: {t}, expected a not-present #PF"))),
            Ok(v) => Err(fail(format_args!("{va:#x} is readable ({v:#x}), expected not present"))),
        }
    }

    /// A direct write that must have been emulated: its outputs, or why not.
    fn emulated<R>(r: Result<R, Trap>) -> Result<R, Outcome> {
        r.map_err(|t| fail(format_args!("not emulated: {t}")))
    }

    /// A direct write that must have been refused: the #PF of the write itself
    /// (present + write from kernel mode) at `at` for address `cr2`.
    fn refused<R: Debug>(r: Result<R, Trap>, at: u64, cr2: u64) -> Result<Trap, Outcome> {
        match r {
            Err(t) if is_pf(&t, cr2, pf::PRESENT | pf::WRITE) && t.rip() == at => Ok(t),
            Err(t) => Err(fail(format_args!("{t}, expected #PF error 0x3 at rip {at:#x} cr2 {cr2:#x}"))),
            Ok(v) => Err(fail(format_args!("emulated ({v:?}), expected a #PF"))),
        }
    }

    /// Entry `s` still holds `before` and maps the page tagged `tag` read-write.
    fn unchanged(s: usize, before: u64, tag: u64) -> Check {
        eq("entry", entry(s), before)?;
        maps(s, tag, true)
    }

    // ---- Setup ----

    /// The `XENMEM_machphys_mfn_list` first frame.
    fn m2p_frame() -> Result<u64, Errno> {
        let mut frames = [0u64; 4];
        let mut arg = XenMachphysMfnList {
            max_extents: frames.len() as u32,
            extent_start: GuestHandle::from_ptr(frames.as_mut_ptr()),
            ..Default::default()
        };
        // SAFETY: the hypervisor writes at most `max_extents` MFNs into `frames`.
        unsafe { guest_shim::hypercalls().memory_op(XENMEM_MACHPHYS_MFN_LIST, &mut arg) }?;
        if arg.nr_extents == 0 {
            return Err(Errno::ENOENT);
        }
        Ok(frames[0])
    }

    /// The start-of-day table below entry `index` of `table`.
    fn below(table: &Page, index: usize) -> Result<Page, Errno> {
        let e = mmu::read_entry(table.mfn, index).ok_or(Errno::EFAULT)?;
        if e & PTE_PRESENT == 0 {
            return Err(Errno::ENOENT);
        }
        Page::from_mfn(pte_mfn(e)).ok_or(Errno::EFAULT)
    }

    fn vm_assist(cmd: u32) -> Result<(), Errno> {
        guest_shim::hypercalls().vm_assist(cmd, VMASST_TYPE_WRITABLE_PAGETABLES)
    }

    pub fn run(si: &'static StartInfo) {
        let mut t = Tests::new();
        need(&mut t, "traps-install", traps::install());
        let stats = need(&mut t, "pool-init", mmu::init());
        let xen = guest_shim::hypercalls();
        let max_ram_page = need(&mut t, "maximum-ram-page", xen.maximum_ram_page());
        let l1 = page_of_l1();
        println!(
            "mmu-ptwr: nr_pages {} pool {:?} test L1 pfn {:#x} mfn {:#x} at {:#x}, maps {TEST_VA:#x}",
            si.nr_pages,
            stats,
            l1.pfn,
            l1.mfn,
            l1.va()
        );
        let l4 = mmu::bootstrap_l4();
        let l3 = need(&mut t, "bootstrap-l3", below(&l4, guest_shim::pt::table_index(TEST_VA, 4)));
        let l2 = need(&mut t, "bootstrap-l2", below(&l3, guest_shim::pt::table_index(TEST_VA, 3)));
        // TEST_VA must be past the pool's pages (the pool maps those at their pfn).
        let free_slot = mmu::read_entry(l2.mfn, L2_SLOT) == Some(0)
            && (TEST_VA - VIRT_BASE) / 4096 >= si.nr_pages
            && mmu::read_entry(l2.mfn, L2_SLOT + 1) == Some(0);
        need(
            &mut t,
            "test-va-free",
            if free_slot { Ok(()) } else { Err("the L2 slots at TEST_VA are in use (dom0 over 768 MiB?)") },
        );
        let a = need(&mut t, "alloc", mmu::alloc());
        let b = need(&mut t, "alloc", mmu::alloc());
        fill(&a, TAG_A);
        fill(&b, TAG_B);
        let mut env =
            Env { t, l1, a, b, l4, l3, l2, xen_frame: m2p_frame().ok(), max_ram_page, next: Cell::new(0) };
        setup_l1(&mut env);
        without_vm_assist(&mut env);
        // As Linux does; for dom0 it changes nothing (see `vm_assist_off`).
        env.t.check("vm-assist-enable", vm_assist(VMASST_CMD_ENABLE));

        movs(&mut env);
        what_is_stored(&mut env);
        xchg_cmpxchg(&mut env);
        bit_tests(&mut env);
        and_or(&mut env);
        partial(&mut env);
        refusals(&mut env);
        other_tables(&mut env);
        instructions(&mut env);
        user_mode(&mut env);
        write_loop(&mut env);
        vm_assist_off(&mut env);
        teardown(env);
    }

    /// Makes the test L1 a pinned L1, read-only at its kernel address, hooked in at
    /// `TEST_VA`; the run ends if that fails.
    fn setup_l1(env: &mut Env) {
        let (l1, l2) = (env.l1, env.l2);
        let check = (|| {
            mmu::make_readonly(&l1).map_err(|e| fail(format_args!("make_readonly: {e}")))?;
            mmu::pin(Level::L1, l1.mfn).map_err(|e| fail(format_args!("pin: {e}")))?;
            // SAFETY: the slot was empty; the new L1 maps nothing yet.
            unsafe { mmu::set_entry(l2.mfn, L2_SLOT, l1.pte(TABLE)) }
                .map_err(|e| fail(format_args!("hook into the L2: {e}")))?;
            let pte = mmu::lookup(l1.va()).pte().ok_or_else(|| fail("the test L1 is not mapped"))?;
            eq("test L1 mapping RW bit", pte & PTE_RW, 0)?;
            eq("make_writable of the pinned L1", mmu::make_writable(&l1), Err(Errno::EBUSY))?;
            unmapped(0)
        })();
        let ok = check.is_ok();
        env.t.check("l1-setup", verdict(check));
        if !ok {
            env.t.summary();
            guest_shim::poweroff()
        }
    }

    /// Without the VM assist, dom0's direct writes are emulated all the same (Xen
    /// tries the read-only-page path for the hardware domain whatever its assists).
    fn without_vm_assist(env: &mut Env) {
        let check = (|| {
            let s = env.slot();
            let v = env.a.pte(KERNEL_RW);
            emulated(mov(s, v).0)?;
            eq("entry", entry(s), canon(v)?)?;
            maps(s, TAG_A, true)
        })();
        env.t.check("dom0-emulated-without-vm-assist", verdict(check));
    }

    // ---- mov ----

    fn movs(env: &mut Env) {
        let v = env.a.pte(KERNEL_RW);
        let after = |s: usize| -> Check {
            eq("entry", entry(s), canon(v)?)?;
            maps(s, TAG_A, true)
        };

        let s = env.slot();
        // SAFETY: a write to the test L1, which maps only TEST_VA; a fault ends the
        // closure and is returned. The same holds for each block below.
        let (r, _) =
            unsafe { catch_asm!("mov qword ptr [{p}], {v}", p = in(reg) entry_va(s), v = in(reg) v) };
        env.t.check("mov-indirect", verdict(emulated(r).and_then(|()| after(s))));

        let s = env.slot();
        // SAFETY: as above.
        let (r, _) =
            unsafe { catch_asm!("mov qword ptr [{p} + 8], {v}", p = in(reg) entry_va(s) - 8, v = in(reg) v) };
        env.t.check("mov-disp8", verdict(emulated(r).and_then(|()| after(s))));

        let s = env.slot();
        // SAFETY: as above.
        let (r, _) = unsafe {
            catch_asm!("mov qword ptr [{p} + 0x12345], {v}", p = in(reg) entry_va(s) - 0x12345, v = in(reg) v)
        };
        env.t.check("mov-disp32", verdict(emulated(r).and_then(|()| after(s))));

        let s = env.slot();
        // SAFETY: as above.
        let (r, _) = unsafe {
            catch_asm!(
                "mov qword ptr [{b} + {i} * 8 + 0x10], {v}",
                b = in(reg) l1_va() - 0x10,
                i = in(reg) s,
                v = in(reg) v
            )
        };
        env.t.check("mov-sib-disp", verdict(emulated(r).and_then(|()| after(s))));

        let s = env.slot();
        // SAFETY: as above.
        let (r, _) = unsafe {
            catch_asm!(
                "mov qword ptr [r12 + r13 * 8 - 8], r14",
                in("r12") l1_va(),
                in("r13") s + 1,
                in("r14") v
            )
        };
        env.t.check("mov-rex-sib", verdict(emulated(r).and_then(|()| after(s))));

        // SAFETY: as above.
        let (r, _) = unsafe {
            catch_asm!(
                "mov qword ptr [rip + {l1} + {off}], {v}",
                l1 = sym TEST_L1,
                off = const RIP_SLOT * 8,
                v = in(reg) v
            )
        };
        env.t.check("mov-rip-relative", verdict(emulated(r).and_then(|()| after(RIP_SLOT))));

        // An immediate: zero unmaps.
        let check = (|| {
            let s = env.slot_with(v)?;
            // SAFETY: as above.
            let (r, _) = unsafe { catch_asm!("mov qword ptr [{p}], 0", p = in(reg) entry_va(s)) };
            emulated(r)?;
            eq("entry", entry(s), 0)?;
            unmapped(s)
        })();
        env.t.check("mov-imm-unmap", verdict(check));

        // Read-only over read-write: the old entry is not looked at.
        let check = (|| {
            let s = env.slot_with(v)?;
            let ro = env.a.pte(KERNEL_RO);
            // SAFETY: as above.
            let (r, _) =
                unsafe { catch_asm!("mov qword ptr [{p}], {v}", p = in(reg) entry_va(s), v = in(reg) ro) };
            emulated(r)?;
            eq("entry", entry(s), canon(ro)?)?;
            maps(s, TAG_A, false)
        })();
        env.t.check("mov-readonly-over-rw", verdict(check));
    }

    /// Writes `v` to entry `s` with a plain `mov`; the trap if it faulted, and where.
    fn mov(s: usize, v: u64) -> (Result<(), Trap>, u64) {
        // SAFETY: a write to the test L1, which maps only TEST_VA; a fault ends the
        // closure and is returned.
        unsafe { catch_asm!("mov qword ptr [{p}], {v}", p = in(reg) entry_va(s), v = in(reg) v) }
    }

    /// What Xen stores for various values written directly.
    fn what_is_stored(env: &mut Env) {
        // A user mapping gets the global bit.
        let check = (|| {
            let s = env.slot();
            let v = env.b.pte(mmu::USER_RW);
            emulated(mov(s, v).0)?;
            eq("entry", entry(s), v | PTE_GLOBAL)?;
            eq("stored() model", stored(v), v | PTE_GLOBAL)?;
            eq("what mmu_update stores", canon(v)?, entry(s))?;
            maps(s, TAG_B, true)
        })();
        env.t.check("stored-user-entry-global", verdict(check));

        // A kernel mapping gets _PAGE_USER and bit 52.
        let check = (|| {
            let s = env.slot();
            let v = env.b.pte(KERNEL_RW);
            emulated(mov(s, v).0)?;
            eq("entry", entry(s), v | PTE_USER | GUEST_KERNEL)?;
            eq("stored() model", stored(v), v | PTE_USER | GUEST_KERNEL)?;
            eq("what mmu_update stores", canon(v)?, entry(s))?;
            maps(s, TAG_B, true)
        })();
        env.t.check("stored-kernel-entry-user-bit52", verdict(check));

        // The software-available bits (9-11, 53-58) are the guest's: kept.
        let check = (|| {
            let s = env.slot();
            let v = env.b.pte(KERNEL_RW) | AVAILABLE_BITS;
            emulated(mov(s, v).0)?;
            eq("entry", entry(s), v | PTE_USER | GUEST_KERNEL)?;
            eq("what mmu_update stores", canon(v)?, entry(s))?;
            maps(s, TAG_B, true)
        })();
        env.t.check("stored-available-bits-kept", verdict(check));

        // A non-present entry (a swap entry, say) is stored as written.
        let check = (|| {
            let s = env.slot();
            let v = 0x0000_0ab0_cdef_1062;
            emulated(mov(s, v).0)?;
            eq("entry", entry(s), v)?;
            eq("what mmu_update stores", canon(v)?, entry(s))?;
            unmapped(s)
        })();
        env.t.check("stored-not-present-as-is", verdict(check));

        // A frame past the end of RAM is I/O memory dom0 may map, made uncacheable.
        let check = (|| {
            let s = env.slot();
            let frame = env.max_ram_page + 0x1000;
            let v = frame << 12 | KERNEL_RO;
            emulated(mov(s, v).0)?;
            eq("entry", entry(s), stored(v) | PCD_PWT)?;
            eq("what mmu_update stores", canon(v)?, entry(s))?;
            mov(s, 0).0.map_err(|t| fail(format_args!("clearing: {t}")))
        })();
        env.t.check("stored-mmio-uncached", verdict(check));
    }

    // ---- xchg, cmpxchg ----

    fn xchg_cmpxchg(env: &mut Env) {
        let (va, vb) = (env.a.pte(KERNEL_RW), env.b.pte(KERNEL_RW));

        let check = (|| {
            let s = env.slot_with(va)?;
            let before = entry(s);
            let mut reg = vb;
            // SAFETY: a write to the test L1 (see `mov`).
            let (r, _) = unsafe {
                catch_asm!("xchg qword ptr [{p}], {v}", p = in(reg) entry_va(s), v = inout(reg) reg)
            };
            emulated(r)?;
            eq("old entry in the register", reg, before)?;
            eq("entry", entry(s), canon(vb)?)?;
            maps(s, TAG_B, true)
        })();
        env.t.check("xchg", verdict(check));

        for (name, locked) in [("cmpxchg-success", true), ("cmpxchg-nolock-success", false)] {
            let check = (|| {
                let s = env.slot_with(va)?;
                let mut rax = entry(s);
                let mut zf = 0u8;
                let r = if locked {
                    // SAFETY: as above.
                    unsafe {
                        catch_asm!(
                            "lock cmpxchg qword ptr [{p}], {n}",
                            "setz {z}",
                            p = in(reg) entry_va(s),
                            n = in(reg) vb,
                            z = inout(reg_byte) zf,
                            inout("rax") rax
                        )
                    }
                } else {
                    // SAFETY: as above.
                    unsafe {
                        catch_asm!(
                            "cmpxchg qword ptr [{p}], {n}",
                            "setz {z}",
                            p = in(reg) entry_va(s),
                            n = in(reg) vb,
                            z = inout(reg_byte) zf,
                            inout("rax") rax
                        )
                    }
                };
                emulated(r.0)?;
                eq("ZF", zf, 1)?;
                eq("RAX", rax, canon(va)?)?;
                eq("entry", entry(s), canon(vb)?)?;
                maps(s, TAG_B, true)
            })();
            env.t.check(name, verdict(check));
        }

        let check = (|| {
            let s = env.slot_with(va)?;
            // The expected value is wrong: B's entry, while the entry maps A.
            let mut rax = canon(vb)?;
            let mut zf = 1u8;
            // SAFETY: as above.
            let (r, _) = unsafe {
                catch_asm!(
                    "lock cmpxchg qword ptr [{p}], {n}",
                    "setz {z}",
                    p = in(reg) entry_va(s),
                    n = in(reg) 0u64,
                    z = inout(reg_byte) zf,
                    inout("rax") rax
                )
            };
            emulated(r)?;
            eq("ZF", zf, 0)?;
            eq("RAX (the current entry)", rax, canon(va)?)?;
            unchanged(s, canon(va)?, TAG_A)
        })();
        env.t.check("cmpxchg-failure", verdict(check));
    }

    // ---- bts, btr, btc ----

    /// Runs `$insn` (a bit test on `qword ptr [{p}]`) on a fresh entry holding `$start`;
    /// returns CF and the entry's slot, or why the write was not emulated.
    macro_rules! bit_test {
        ($env:expr, $start:expr, $insn:literal $(, $($op:tt)*)?) => {{
            let s = $env.slot_with($start)?;
            let mut cf = 0xffu8;
            // SAFETY: a write to the test L1 (see `mov`).
            let (r, _) = unsafe {
                catch_asm!(
                    $insn,
                    "setc {c}",
                    p = in(reg) entry_va(s),
                    c = inout(reg_byte) cf
                    $(, $($op)*)?
                )
            };
            emulated(r)?;
            (cf, s)
        }};
    }

    fn bit_tests(env: &mut Env) {
        let rw = env.a.pte(KERNEL_RW);
        let ro = env.a.pte(KERNEL_RO);

        let check = (|| {
            let (cf, s) = bit_test!(env, rw, "lock btr qword ptr [{p}], 1");
            eq("CF", cf, 1)?;
            eq("entry", entry(s), canon(rw)? & !PTE_RW)?;
            maps(s, TAG_A, false)
        })();
        env.t.check("lock-btr-rw", verdict(check));

        let check = (|| {
            let (cf, s) = bit_test!(env, ro, "lock bts qword ptr [{p}], 1");
            eq("CF", cf, 0)?;
            eq("entry", entry(s), canon(ro)? | PTE_RW)?;
            maps(s, TAG_A, true)
        })();
        env.t.check("lock-bts-rw", verdict(check));

        let check = (|| {
            let (cf, s) = bit_test!(env, rw, "lock btr qword ptr [{p}], 0");
            eq("CF", cf, 1)?;
            eq("entry", entry(s), canon(rw)? & !PTE_PRESENT)?;
            unmapped(s)
        })();
        env.t.check("lock-btr-present", verdict(check));

        let check = (|| {
            let (cf, s) = bit_test!(env, rw & !PTE_PRESENT, "lock bts qword ptr [{p}], 0");
            eq("CF", cf, 0)?;
            eq("entry", entry(s), canon(rw)?)?;
            maps(s, TAG_A, true)
        })();
        env.t.check("lock-bts-present", verdict(check));

        let check = (|| {
            let (cf, s) = bit_test!(env, rw, "lock btc qword ptr [{p}], 1");
            eq("CF", cf, 1)?;
            eq("entry", entry(s), canon(rw)? & !PTE_RW)?;
            maps(s, TAG_A, false)
        })();
        env.t.check("lock-btc-rw", verdict(check));

        // The bit number in a register; setting a bit that is set changes nothing.
        let check = (|| {
            let (cf, s) = bit_test!(env, rw, "lock bts qword ptr [{p}], {b}", b = in(reg) 1u64);
            eq("CF", cf, 1)?;
            unchanged(s, canon(rw)?, TAG_A)
        })();
        env.t.check("lock-bts-reg-already-set", verdict(check));
    }

    // ---- and, or ----

    /// Runs `$insn` on `qword ptr [{p}]` of a fresh entry holding `$start`; returns the
    /// entry's slot.
    macro_rules! rmw {
        ($env:expr, $start:expr, $insn:literal $(, $($op:tt)*)?) => {{
            let s = $env.slot_with($start)?;
            // SAFETY: a write to the test L1 (see `mov`).
            let (r, _) = unsafe { catch_asm!($insn, p = in(reg) entry_va(s) $(, $($op)*)?) };
            emulated(r)?;
            s
        }};
    }

    fn and_or(env: &mut Env) {
        let rw = env.a.pte(KERNEL_RW);
        let ro = env.a.pte(KERNEL_RO);

        let check = (|| {
            let s = rmw!(env, rw, "lock and qword ptr [{p}], -3");
            eq("entry", entry(s), canon(rw)? & !PTE_RW)?;
            maps(s, TAG_A, false)
        })();
        env.t.check("lock-and-imm-rw", verdict(check));

        let check = (|| {
            let s = rmw!(env, ro, "lock or qword ptr [{p}], 2");
            eq("entry", entry(s), canon(ro)? | PTE_RW)?;
            maps(s, TAG_A, true)
        })();
        env.t.check("lock-or-imm-rw", verdict(check));

        let check = (|| {
            let s = rmw!(env, rw, "lock and qword ptr [{p}], -2");
            eq("entry", entry(s), canon(rw)? & !PTE_PRESENT)?;
            unmapped(s)
        })();
        env.t.check("lock-and-imm-present", verdict(check));

        let check = (|| {
            let s = rmw!(env, rw & !PTE_PRESENT, "lock or qword ptr [{p}], 1");
            eq("entry", entry(s), canon(rw)?)?;
            maps(s, TAG_A, true)
        })();
        env.t.check("lock-or-imm-present", verdict(check));

        let check = (|| {
            let s = rmw!(env, rw, "and qword ptr [{p}], {m}", m = in(reg) !PTE_RW);
            eq("entry", entry(s), canon(rw)? & !PTE_RW)?;
            maps(s, TAG_A, false)
        })();
        env.t.check("and-reg-rw", verdict(check));

        let check = (|| {
            let s = rmw!(env, ro, "or qword ptr [{p}], {m}", m = in(reg) PTE_RW);
            eq("entry", entry(s), canon(ro)? | PTE_RW)?;
            maps(s, TAG_A, true)
        })();
        env.t.check("or-reg-rw", verdict(check));
    }

    // ---- Partial writes ----

    fn partial(env: &mut Env) {
        let (va, vb) = (env.a.pte(KERNEL_RW), env.b.pte(KERNEL_RW));

        // The low half: another frame (both below 4 GiB), the high half kept.
        let check = (|| {
            if va >> 32 != 0 || vb >> 32 != 0 {
                return Err(Outcome::skip("the data pages are above 4 GiB"));
            }
            let s = env.slot_with(va)?;
            // SAFETY: a write to the test L1 (see `mov`).
            let (r, _) = unsafe {
                catch_asm!("mov dword ptr [{p}], {v:e}", p = in(reg) entry_va(s), v = in(reg) vb as u32 as u64)
            };
            emulated(r)?;
            eq("entry", entry(s), canon(vb)?)?;
            maps(s, TAG_B, true)
        })();
        env.t.check("mov32-low-half", verdict(check));

        // The high half: NX (allowed when the CPU has it; Xen's QEMU CPU does).
        let check = (|| {
            let s = env.slot_with(va)?;
            let high = (canon(va)? | PTE_NX) >> 32;
            // SAFETY: as above.
            let (r, _) = unsafe {
                catch_asm!("mov dword ptr [{p} + 4], {v:e}", p = in(reg) entry_va(s), v = in(reg) high)
            };
            emulated(r)?;
            eq("entry", entry(s), canon(va)? | PTE_NX)?;
            maps(s, TAG_A, true)
        })();
        env.t.check("mov32-high-half-nx", verdict(check));

        // The high half with an address bit beyond the physical width: refused.
        let check = (|| {
            let s = env.slot_with(va)?;
            let before = entry(s);
            let high = (before | BEYOND_WIDTH) >> 32;
            // SAFETY: as above.
            let (r, at) = unsafe {
                catch_asm!("mov dword ptr [{p} + 4], {v:e}", p = in(reg) entry_va(s), v = in(reg) high)
            };
            refused(r, at, entry_va(s) + 4)?;
            unchanged(s, before, TAG_A)
        })();
        env.t.check("mov32-high-half-beyond-width-refused", verdict(check));

        // Two bytes: RW cleared.
        let check = (|| {
            let s = env.slot_with(va)?;
            let low = (canon(va)? & !PTE_RW) & 0xffff;
            // SAFETY: as above.
            let (r, _) =
                unsafe { catch_asm!("mov word ptr [{p}], {v:x}", p = in(reg) entry_va(s), v = in(reg) low) };
            emulated(r)?;
            eq("entry", entry(s), canon(va)? & !PTE_RW)?;
            maps(s, TAG_A, false)
        })();
        env.t.check("mov16-merged", verdict(check));

        // One byte: present cleared.
        let check = (|| {
            let s = env.slot_with(va)?;
            let low = ((canon(va)? & !PTE_PRESENT) & 0xff) as u8;
            // SAFETY: as above.
            let (r, _) = unsafe {
                catch_asm!("mov byte ptr [{p}], {v}", p = in(reg) entry_va(s), v = in(reg_byte) low)
            };
            emulated(r)?;
            eq("entry", entry(s), canon(va)? & !PTE_PRESENT)?;
            unmapped(s)
        })();
        env.t.check("mov8-merged", verdict(check));

        // Only naturally aligned writes: 8 bytes at offset 4 span two entries.
        let check = (|| {
            let s = env.slots(2);
            set(s, va)?;
            set(s + 1, va)?;
            // SAFETY: as above.
            let (r, at) = unsafe {
                catch_asm!("mov qword ptr [{p} + 4], {v}", p = in(reg) entry_va(s), v = in(reg) va)
            };
            refused(r, at, entry_va(s) + 4)?;
            unchanged(s, canon(va)?, TAG_A)?;
            unchanged(s + 1, canon(va)?, TAG_A)
        })();
        env.t.check("mov64-misaligned-refused", verdict(check));
    }

    // ---- Refused writes ----

    /// A `mov` of `bad` over an entry mapping A: the #PF, nothing changed.
    fn refuse(env: &Env, bad: u64) -> Check {
        let va = env.a.pte(KERNEL_RW);
        let s = env.slot_with(va)?;
        let (r, at) = mov(s, bad);
        refused(r, at, entry_va(s))?;
        unchanged(s, canon(va)?, TAG_A)
    }

    fn refusals(env: &mut Env) {
        let va = env.a.pte(KERNEL_RW);
        let o = verdict(refuse(env, env.l1.pte(KERNEL_RW)));
        env.t.check("refuse-own-l1-writable", o);
        let o = verdict(refuse(env, env.l4.pte(KERNEL_RW)));
        env.t.check("refuse-l4-writable", o);
        let o = match env.xen_frame {
            Some(f) => verdict(refuse(env, f << 12 | KERNEL_RO)),
            None => Outcome::skip("XENMEM_machphys_mfn_list names no frame"),
        };
        env.t.check("refuse-xen-frame", o);
        let o = verdict(refuse(env, va | BEYOND_WIDTH));
        env.t.check("refuse-beyond-width", o);

        // The same refusals through a read-modify-write and a cmpxchg.
        let check = (|| {
            let s = env.slot_with(va)?;
            // SAFETY: a write to the test L1 (see `mov`).
            let (r, at) = unsafe {
                catch_asm!("lock or qword ptr [{p}], {m}", p = in(reg) entry_va(s), m = in(reg) BEYOND_WIDTH)
            };
            refused(r, at, entry_va(s))?;
            unchanged(s, canon(va)?, TAG_A)
        })();
        env.t.check("refuse-lock-or-beyond-width", verdict(check));

        let check = (|| {
            let s = env.slot_with(va)?;
            let old = entry(s);
            // SAFETY: as above.
            let (r, at) = unsafe {
                catch_asm!(
                    "lock cmpxchg qword ptr [{p}], {n}",
                    p = in(reg) entry_va(s),
                    n = in(reg) env.l1.pte(KERNEL_RW),
                    inout("rax") old => _
                )
            };
            let t = refused(r, at, entry_va(s))?;
            eq("RAX at the fault", t.frame.rax, old)?;
            unchanged(s, old, TAG_A)
        })();
        env.t.check("refuse-cmpxchg-l1-writable", verdict(check));

        // A page table read-only is fine: the L1 shows itself.
        let check = (|| {
            let s = env.slot();
            let v = env.l1.pte(KERNEL_RO);
            emulated(mov(s, v).0)?;
            eq("entry", entry(s), canon(v)?)?;
            flush(s)?;
            let seen = peek(tva(s), s).map_err(|t| fail(format_args!("reading {:#x}: {t}", tva(s))))?;
            eq("the L1 through its own entry", seen, canon(v)?)
        })();
        env.t.check("map-own-l1-readonly", verdict(check));
    }

    // ---- L2, L3, L4 and pages that are no L1 ----

    /// A direct `mov` of `val` into entry `index` of `table` (mapped read-only):
    /// refused with the #PF, the entry unchanged.
    fn direct_refused(table: &Page, index: usize, val: u64) -> Check {
        let before = mmu::read_entry(table.mfn, index).ok_or_else(|| fail("table not readable"))?;
        let p = table.va() + index as u64 * 8;
        // SAFETY: the table is mapped read-only: the write faults, or the hypervisor
        // applies it; every value written here is a harmless entry (an alias of a
        // table that is already there, or nothing).
        let (r, at) = unsafe { catch_asm!("mov qword ptr [{p}], {v}", p = in(reg) p, v = in(reg) val) };
        refused(r, at, p)?;
        eq("entry", mmu::read_entry(table.mfn, index), Some(before))
    }

    /// The first empty slot of `table` in `range`.
    fn empty_slot(table: &Page, range: core::ops::Range<usize>) -> Result<usize, Outcome> {
        range
            .into_iter()
            .find(|&i| mmu::read_entry(table.mfn, i) == Some(0))
            .ok_or_else(|| Outcome::skip("no empty slot"))
    }

    fn other_tables(env: &mut Env) {
        let check = direct_refused(&env.l2, L2_SLOT + 1, env.l1.pte(TABLE));
        env.t.check("l2-write-not-emulated", verdict(check));
        let check = (|| {
            let slot = empty_slot(&env.l3, 0..512)?;
            direct_refused(&env.l3, slot, env.l2.pte(TABLE))
        })();
        env.t.check("l3-write-not-emulated", verdict(check));
        let check = (|| {
            let slot = empty_slot(&env.l4, 1..256)?;
            direct_refused(&env.l4, slot, env.l3.pte(TABLE))
        })();
        env.t.check("l4-write-not-emulated", verdict(check));

        // A pinned L1 that no L2 references: its entries are emulated as well.
        let check = (|| {
            let page = mmu::alloc_table().map_err(|e| fail(format_args!("alloc_table: {e}")))?;
            let pinned = mmu::pin(Level::L1, page.mfn).map_err(|e| fail(format_args!("pin: {e}")));
            let v = env.a.pte(KERNEL_RO);
            let p = page.va() + 16;
            let result = pinned.and_then(|()| {
                // SAFETY: the page is a pinned L1 of ours that nothing uses; the write
                // faults or changes its entry 2.
                let (r, _) = unsafe { catch_asm!("mov qword ptr [{p}], {v}", p = in(reg) p, v = in(reg) v) };
                emulated(r)?;
                // SAFETY: the page is mapped (read-only).
                eq("entry", unsafe { read_volatile(p as *const u64) }, canon(v)?)
            });
            let unpinned = mmu::unpin(page.mfn);
            // SAFETY: nothing refers to the page.
            let freed = unsafe { mmu::free(page) };
            result?;
            unpinned.map_err(|e| fail(format_args!("unpin: {e}")))?;
            freed.map_err(|e| fail(format_args!("free: {e}")))
        })();
        env.t.check("pinned-unhooked-l1-emulated", verdict(check));

        // A read-only page that has no table type: a plain #PF.
        let check = (|| {
            let page = mmu::alloc_table().map_err(|e| fail(format_args!("alloc_table: {e}")))?;
            let p = page.va() + 8;
            let v = env.a.pte(KERNEL_RO);
            // SAFETY: the page is ours and read-only; the write faults or lands there.
            let (r, at) = unsafe { catch_asm!("mov qword ptr [{p}], {v}", p = in(reg) p, v = in(reg) v) };
            let result = refused(r, at, p).map(drop);
            // SAFETY: nothing refers to the page.
            let freed = unsafe { mmu::free(page) };
            result?;
            // SAFETY: the page is mapped (writable again after `free`).
            eq("word written", unsafe { read_volatile(p as *const u64) }, 0)?;
            freed.map_err(|e| fail(format_args!("free: {e}")))
        })();
        env.t.check("untyped-page-write-not-emulated", verdict(check));
    }

    // ---- Instructions ----

    fn instructions(env: &mut Env) {
        let (va, vb) = (env.a.pte(KERNEL_RW), env.b.pte(KERNEL_RW));

        // rep stosq over two entries: emulated one iteration per fault.
        let check = (|| {
            let s = env.slots(2);
            set(s, va)?;
            set(s + 1, va)?;
            let (mut rcx, mut rdi) = (2u64, entry_va(s));
            // SAFETY: writes entries s and s + 1 of the test L1 (DF is clear in Rust code).
            let (r, _) = unsafe { catch_asm!("rep stosq", inout("rcx") rcx, inout("rdi") rdi, in("rax") vb) };
            emulated(r)?;
            eq("RCX, RDI after", (rcx, rdi), (0, entry_va(s) + 16))?;
            eq("entries", (entry(s), entry(s + 1)), (canon(vb)?, canon(vb)?))?;
            maps(s, TAG_B, true)?;
            maps(s + 1, TAG_B, true)
        })();
        env.t.check("rep-stosq-emulated", verdict(check));

        // movsq: the source is read from ordinary memory.
        let check = (|| {
            let s = env.slot_with(va)?;
            let src = [vb];
            let (mut rsi, mut rdi) = (src.as_ptr() as u64, entry_va(s));
            // SAFETY: reads `src`, writes entry s of the test L1.
            let (r, _) = unsafe { catch_asm!("movsq", inout("rsi") rsi, inout("rdi") rdi) };
            emulated(r)?;
            eq("RSI, RDI after", (rsi, rdi), (src.as_ptr() as u64 + 8, entry_va(s) + 8))?;
            eq("entry", entry(s), canon(vb)?)?;
            maps(s, TAG_B, true)
        })();
        env.t.check("movsq-emulated", verdict(check));

        // SSE needs CR0.TS clear; the guest's virtual TS may be set at boot.
        // SAFETY: nothing in this guest uses the FPU state otherwise.
        let ts = unsafe { guest_shim::hypercalls().fpu_taskswitch(false) };
        env.t.check("fpu-taskswitch-clear", ts);

        // movq [mem], xmm0 (8 bytes): needs the FPU, which Xen's ptwr emulation lacks.
        let check = (|| {
            let s = env.slot_with(va)?;
            // SAFETY: writes entry s of the test L1 or faults. XMM0 is not declared
            // clobbered (the target has no SSE registers to name): nothing else in this
            // soft-float guest uses it.
            let (r, at) = unsafe {
                catch_asm!("movq xmm0, rax", "movq qword ptr [{p}], xmm0", p = in(reg) entry_va(s), in("rax") vb)
            };
            // `movq xmm0, rax` is 5 bytes (66 48 0f 6e c0).
            refused(r, at + 5, entry_va(s))?;
            unchanged(s, canon(va)?, TAG_A)
        })();
        env.t.check("sse-movq-not-emulated", verdict(check));

        // movdqu [mem], xmm0 (16 bytes, two entries).
        let check = (|| {
            let s = env.slots(2);
            set(s, va)?;
            set(s + 1, va)?;
            let src = [vb, vb];
            // SAFETY: as above; reads `src`.
            let (r, at) = unsafe {
                catch_asm!(
                    "movdqu xmm0, xmmword ptr [rsi]",
                    "movdqu xmmword ptr [{p}], xmm0",
                    p = in(reg) entry_va(s),
                    in("rsi") src.as_ptr()
                )
            };
            // `movdqu xmm0, [rsi]` is 4 bytes (f3 0f 6f 06).
            refused(r, at + 4, entry_va(s))?;
            unchanged(s, canon(va)?, TAG_A)?;
            unchanged(s + 1, canon(va)?, TAG_A)
        })();
        env.t.check("sse-movdqu-not-emulated", verdict(check));

        // lock cmpxchg16b (16 bytes): more than the emulated cmpxchg takes.
        let check = (|| {
            let s = env.slots(2);
            set(s, va)?;
            set(s + 1, va)?;
            let (lo, hi) = (entry(s), entry(s + 1));
            // SAFETY: writes entries s and s + 1 or faults; RBX (which asm! cannot name)
            // is swapped in and back out around the instruction.
            let (r, at) = unsafe {
                catch_asm!(
                    "xchg rsi, rbx",
                    "lock cmpxchg16b xmmword ptr [{p}]",
                    "xchg rsi, rbx",
                    p = in(reg) entry_va(s),
                    inout("rax") lo => _,
                    inout("rdx") hi => _,
                    inout("rsi") vb => _,
                    in("rcx") vb
                )
            };
            // `xchg rsi, rbx` is 3 bytes (48 87 de).
            refused(r, at + 3, entry_va(s))?;
            unchanged(s, canon(va)?, TAG_A)?;
            unchanged(s + 1, canon(va)?, TAG_A)
        })();
        env.t.check("cmpxchg16b-not-emulated", verdict(check));
    }

    // ---- User mode ----

    fn user_mode(env: &mut Env) {
        let va = env.a.pte(KERNEL_RW);
        let us = match UserSpace::new(env.l1.mfn) {
            Ok(us) => us,
            Err((step, e)) => {
                env.t.fail("user-write-not-emulated", format_args!("user-mode setup: {step}: {e}"));
                return;
            }
        };
        let check = (|| {
            let s = env.slot_with(va)?;
            let uaddr = USER_TABLE_VA + s as u64 * 8;
            let f = user::write_from_user(uaddr, env.b.pte(KERNEL_RW));
            let want = user::UserFault {
                vector: vector::PF,
                error_code: pf::PRESENT | pf::WRITE | pf::USER,
                cr2: uaddr,
                rip: USER_CODE_VA,
            };
            eq("exception from user mode", f, want)?;
            unchanged(s, canon(va)?, TAG_A)
        })();
        env.t.check("user-write-not-emulated", verdict(check));
        env.t.check("user-teardown", us.destroy());
    }

    // ---- Many writes ----

    fn write_loop(env: &mut Env) {
        let c = match mmu::alloc() {
            Ok(c) => c,
            Err(e) => {
                env.t.fail("loop-map-unmap", format_args!("alloc: {e}"));
                return;
            }
        };
        let s = env.slot();
        let p = entry_va(s);
        let map = c.pte(KERNEL_RW);
        let check = (|| {
            let want_map = canon(map)?;
            // SAFETY: writes entry s of the test L1 only; a fault ends the loop.
            let r = unsafe {
                traps::catch(|| {
                    let mut wrong = 0u32;
                    let mut first_wrong = None;
                    for i in 0..LOOP_WRITES {
                        let (v, want) = if i % 2 == 0 { (map, want_map) } else { (0, 0) };
                        core::arch::asm!("mov qword ptr [{p}], {v}", p = in(reg) p, v = in(reg) v);
                        let got = entry(s);
                        if got != want {
                            wrong += 1;
                            first_wrong.get_or_insert((i, got, want));
                        }
                    }
                    (wrong, first_wrong)
                })
            };
            let (wrong, first) = emulated(r)?;
            if wrong != 0 {
                return Err(fail(format_args!("{wrong} entries read back wrong, first {first:#x?}")));
            }
            eq("final entry", entry(s), 0)?;
            unmapped(s)?;
            // Once more, mapped: the page (zeroed by `alloc`) is there.
            emulated(mov(s, map).0)?;
            flush(s)?;
            eq("word 0 through the mapping", peek(tva(s), 0).ok(), Some(0))?;
            emulated(mov(s, 0).0)?;
            unmapped(s)
        })();
        env.t.check("loop-map-unmap", verdict(check));

        // No reference left behind: with no writable mapping, the page can be an L1.
        let check = (|| {
            mmu::make_readonly(&c).map_err(|e| fail(format_args!("make_readonly: {e}")))?;
            mmu::pin(Level::L1, c.mfn).map_err(|e| fail(format_args!("pin as L1: {e}")))?;
            mmu::unpin(c.mfn).map_err(|e| fail(format_args!("unpin: {e}")))?;
            mmu::make_writable(&c).map_err(|e| fail(format_args!("make_writable: {e}")))
        })();
        env.t.check("loop-references-balanced", verdict(check));
        // SAFETY: nothing maps or uses the page any more.
        if let Err(e) = unsafe { mmu::free(c) } {
            env.t.fail("loop-references-balanced", format_args!("free: {e}"));
        }
    }

    /// The VM assist off again: for dom0, direct writes are still emulated. It is
    /// turned back on before anything else happens.
    fn vm_assist_off(env: &mut Env) {
        let check = (|| {
            vm_assist(VMASST_CMD_DISABLE).map_err(|e| fail(format_args!("vm_assist disable: {e}")))?;
            let (va, vb) = (env.a.pte(KERNEL_RW), env.b.pte(KERNEL_RW));
            let s = env.slot_with(va)?;
            let emulated_off = emulated(mov(s, vb).0);
            vm_assist(VMASST_CMD_ENABLE).map_err(|e| fail(format_args!("vm_assist enable: {e}")))?;
            emulated_off?;
            eq("entry", entry(s), canon(vb)?)?;
            maps(s, TAG_B, true)
        })();
        env.t.check("vm-assist-disable-dom0-still-emulated", verdict(check));
    }

    /// Unhooks and unpins the test L1 (its entries' references go with its type) and
    /// gives the pages back.
    fn teardown(mut env: Env) -> ! {
        let check = (|| {
            // SAFETY: only the test mappings at TEST_VA go away.
            unsafe { mmu::set_entry(env.l2.mfn, L2_SLOT, 0) }
                .map_err(|e| fail(format_args!("unhook: {e}")))?;
            mmu::unpin(env.l1.mfn).map_err(|e| fail(format_args!("unpin: {e}")))?;
            mmu::make_writable(&env.l1).map_err(|e| fail(format_args!("make_writable: {e}")))?;
            // SAFETY: nothing maps the data pages but their own kernel addresses now.
            unsafe { mmu::free(env.a).and(mmu::free(env.b)) }.map_err(|e| fail(format_args!("free: {e}")))?;
            let s = mmu::stats();
            eq("pool pages in use", s.in_use, 0)
        })();
        env.t.check("teardown", verdict(check));
        env.t.finish()
    }
}
