// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: the PV LDT. `MMUEXT_SET_LDT` (mmuext_op command 13: `arg1` the linear
//! address of the LDT, `arg2` its number of entries) and segment loads through it.
//! One `RESULT` line per check, then `SUMMARY` and poweroff.
//!
//! What is checked, against what Xen 4.17 does (`arch/x86/mm.c`: `MMUEXT_SET_LDT`,
//! `new_guest_cr3`; `arch/x86/pv/descriptor-tables.c`: `check_descriptor`,
//! `validate_segdesc_page`, `pv_destroy_ldt`, `do_update_descriptor`;
//! `arch/x86/pv/mm.c`: `pv_map_ldt_shadow_page`; `arch/x86/traps.c`: the LDT mapping
//! fault):
//! - page A holds flat data DPL 3, the same not present, 64-bit code DPL 3, an empty
//!   slot, flat data DPL 0, a spare data slot and a 64-bit call gate; it is made
//!   read-only in our own mapping (as Linux does) and set with 8 entries. Loading
//!   LDT selectors (TI = 1, RPL 3) into DS/ES/FS/GS: the present entry loads, the
//!   not-present one is #NP(sel), an empty entry or one past the count #GP(sel); SS
//!   takes the data entry and refuses code, empty, RPL-0 (#GP) and not present (#SS);
//!   CS takes the code entry by a far return; the selector survives a hypercall;
//! - what validation does to the page, read back through our read-only mapping: DPL
//!   0 becomes 3, the call gate gets DPL 0 and its DPL in the RPL of the target
//!   selector (using it is #GP(gate), passed on as is to a 64-bit guest: Xen emulates
//!   gates only for 32-bit ones), the CPU's accessed bit lands in our page;
//! - `update_descriptor` on the LDT in use takes effect at the next load (not present
//!   <-> present), raises DPL 0 to 3 on the way in, refuses a TSS and an unaligned
//!   address (-EINVAL);
//! - the LDT page's type: writable mappings are refused (-EBUSY) once it is used, and
//!   allowed again as soon as the LDT moves elsewhere, is removed or the kernel base
//!   pointer changes;
//! - page B, with a TSS descriptor: accepted by SET_LDT, refused at use; a writable
//!   LDT page likewise; two pages A+B as one LDT, each mapped on its own first use;
//! - SET_LDT's arguments: unaligned, more than 8192 entries, in Xen's hole,
//!   non-canonical (-EINVAL), `DOMID_XEN` as the foreign domain (-EPERM); 0 entries
//!   removes the LDT whatever the address; LDTs at unmapped addresses are accepted and
//!   fault at use.
//!
//! What Xen 4.17 does that one might not expect (each is checked as found):
//! - SET_LDT only records base and count. Nothing is validated or typed until a
//!   segment load (or any LDT access) finds the descriptor's page unmapped in Xen's
//!   per-vCPU LDT area: then the whole page is validated and fixed up in place (the
//!   guest sees the raised DPLs in its own mapping), takes the descriptor-page type and
//!   is mapped there. Until then the page may even be mapped writable.
//! - When that fails (the page holds a TSS or any system descriptor but a call gate,
//!   is mapped writable somewhere, or is not mapped at all), the guest gets a #PF,
//!   error code 0, CR2 = the descriptor's address in the guest's LDT, not a #GP. A
//!   page that failed stays untyped.
//! - Call gates are accepted in the LDT (with their DPL moved into the target's RPL
//!   and the DPL cleared), so a 64-bit guest gets #GP(gate) when it uses one.
//! - The type reference is dropped at once, not lazily, when the LDT changes
//!   (`pv_destroy_ldt` in SET_LDT), and also on every switch to another kernel L4
//!   (`new_guest_cr3`): the LDT stays set and is mapped again at its next use. SET_LDT
//!   with the same base and count does nothing at all (the mapping stays).
//! - Only the base is range-checked: an LDT of 8192 entries at the last page of the
//!   lower half is accepted; a descriptor past the end of the lower half then gives
//!   #GP(selector) (Xen's LDT fault path turns the non-canonical address into that).
//!   `0xffff880000000000`, just after the hole, is a valid base.
//! - `nr_ents` is an `unsigned int`: the upper half of `arg2` is ignored.

#![cfg_attr(target_os = "none", no_std, no_main)]
// Probes return `Result<_, Trap>` (the whole saved context) by value, as
// `traps::catch` does.
#![allow(clippy::result_large_err)]

use guest_shim::mmu::{self, Page, Tree};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::arch_x86::FLAT_KERNEL_CS;
use guest_shim::pv_abi::xen::{DOMID_SELF, DOMID_XEN, DomId, MMUEXT_SET_LDT, MmuextOp};
use guest_shim::report::{all, is_trap};
use guest_shim::traps::{self, Trap, vector};
use guest_shim::{Hypercalls, Outcome, StartInfo, Tests, catch_asm, cpu, println};

guest_shim::entry!(start);

// ---- Descriptors ----

/// Descriptor bit: present.
const PRESENT: u64 = 1 << 47;
/// Descriptor bit: accessed (set by the CPU when it loads a code or data segment).
const ACCESSED: u64 = 1 << 40;
/// Flat 4 GiB read/write data, DPL 3, present, not accessed.
const DATA3: u64 = 0x00cf_f200_0000_ffff;
/// The same with DPL 0.
const DATA0: u64 = 0x00cf_9200_0000_ffff;
/// 64-bit execute/read code, DPL 3, present.
const CODE64: u64 = 0x00af_fa00_0000_ffff;
/// The low half of a 64-bit available TSS (type 9), base 0, limit 0x67, present.
const TSS64_LOW: u64 = 0x0000_8900_0000_0067;

/// A 64-bit call gate (two slots) to `target:offset` with `dpl`.
const fn call_gate(target: u16, offset: u64, dpl: u64) -> [u64; 2] {
    let low = (offset & 0xffff)
        | (target as u64) << 16
        | PRESENT
        | dpl << 45
        | 0xc << 40
        | ((offset >> 16) & 0xffff) << 48;
    [low, offset >> 32]
}

/// An LDT selector (TI = 1) with RPL 3 for entry `index`.
const fn sel(index: u16) -> u16 {
    index << 3 | 4 | 3
}

/// The error code of a fault on selector `sel` (the selector without its RPL).
const fn err(sel: u16) -> u64 {
    (sel & !3) as u64
}

/// Never mapped in this guest (the lower half is empty), page aligned.
const UNMAPPED: u64 = 0x0000_1234_5678_9000;
/// The first address after Xen's hole: canonical, the guest's, unmapped here.
const AFTER_HOLE: u64 = 0xffff_8800_0000_0000;
/// The last page of the lower half: an LDT of 8192 entries (64 KiB) there runs past
/// it into the non-canonical range.
const LAST_LOW_PAGE: u64 = 0x0000_7fff_ffff_f000;

// Page A, the main LDT: its entries.
const A_DATA: u16 = 0;
const A_NOT_PRESENT: u16 = 1;
const A_CODE: u16 = 2;
const A_EMPTY: u16 = 3;
const A_DPL0: u16 = 4;
const A_SPARE: u16 = 5;
const A_GATE: u16 = 6;
/// Entries of LDT A (the gate takes slots 6 and 7).
const A_ENTS: u16 = 8;
/// The call gate's target: A's code segment with RPL 0, at an address that is never
/// reached (it is unmapped, so a call that went through would fault there).
const GATE_TARGET: u16 = sel(A_CODE) & !3;
const GATE_OFFSET: u64 = UNMAPPED | 0xab8;

fn start(_si: &'static StartInfo) {
    let mut t = Tests::new();
    let xen = guest_shim::hypercalls();
    if let Err(e) = traps::install() {
        t.fail("install", format_args!("traps::install: {e}"));
        t.finish()
    }
    let (a, b) = match (mmu::alloc(), mmu::alloc()) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            t.fail("alloc", format_args!("two pool pages: {a:?} {b:?}"));
            t.finish()
        }
    };
    println!("ldt: page A pfn {:#x} mfn {:#x}, page B pfn {:#x} mfn {:#x}", a.pfn, a.mfn, b.pfn, b.mfn);

    let p = load_ds(sel(0));
    t.check("no-ldt-at-start-gp", is_trap(&p.r, vector::GP, err(sel(0)), p.at, None));

    main_ldt(&mut t, &xen, &a);
    descriptor_updates(&mut t, &xen, &a);
    base_switch(&mut t, &a);
    tss_page(&mut t, &a, &b);
    set_ldt_errors(&mut t, &b);
    removal(&mut t, &b);
    two_pages(&mut t, &a, &b);
    lazy_bases(&mut t);

    // SAFETY: the LDT is gone and the segment registers hold GDT selectors; nothing
    // refers to the pages any more.
    let freed = unsafe { mmu::free(a).and_then(|()| mmu::free(b)) };
    t.check("pages-freed", freed);
    t.finish()
}

// ---- Helpers ----

/// `MMUEXT_SET_LDT` for domain `dom`.
fn set_ldt_for(base: u64, ents: u64, dom: DomId) -> Result<(), Errno> {
    let op = [MmuextOp::new(MMUEXT_SET_LDT, base, ents)];
    // SAFETY: an LDT changes no mapping; the segment registers hold GDT selectors
    // whenever the LDT changes (every probe puts the previous selector back).
    unsafe { mmu::mmuext_op(&op, dom) }.map(drop).map_err(Errno::from)
}

/// `MMUEXT_SET_LDT` for ourselves.
fn set_ldt(base: u64, ents: u64) -> Result<(), Errno> {
    set_ldt_for(base, ents, DOMID_SELF)
}

/// Entry `index` of `page`, read through the guest's own (read-only) mapping.
fn entry(page: &Page, index: u16) -> u64 {
    // SAFETY: the page is ours and mapped at its kernel address for good (read-only
    // or writable); descriptors are plain data.
    unsafe { (page.va() as *const u64).add(index as usize).read_volatile() }
}

/// Writes `entries` from slot 0 of `page`, which must be mapped writable.
fn write_entries(page: &Page, entries: &[u64]) {
    for (i, e) in entries.iter().enumerate() {
        // SAFETY: the caller's page is writable and holds no Rust object; at most
        // eight slots of its 512 are written.
        unsafe { (page.va() as *mut u64).add(i).write_volatile(*e) };
    }
}

/// A segment load: the exception it raised, if any, where the load instruction is,
/// and what the register held right after it.
struct Load {
    r: Result<(), Trap>,
    at: u64,
    seen: u16,
}

impl Load {
    /// Pass if the load went through and the register held `sel`.
    fn loaded(&self, sel: u16) -> Outcome {
        match &self.r {
            Ok(()) => Outcome::eq(self.seen, sel),
            Err(trap) => Outcome::fail(format_args!("loading {sel:#x}: {trap}")),
        }
    }

    /// Pass if the load raised `vector` with the error code of `sel`.
    fn faulted(&self, vector: u8, sel: u16) -> Outcome {
        is_trap(&self.r, vector, err(sel), self.at, None)
    }

    /// Pass if the load raised a #PF at `cr2` (the descriptor's linear address).
    fn page_faulted(&self, cr2: u64) -> Outcome {
        is_trap(&self.r, vector::PF, 0, self.at, Some(cr2))
    }
}

/// Defines `fn $name(sel) -> Load` for segment register `$reg` (read with `$read`).
macro_rules! segment_load {
    ($name:ident, $reg:literal, $read:path) => {
        /// Loads `sel`, reads the register back and loads the previous selector again.
        fn $name(sel: u16) -> Load {
            let old = $read();
            let mut seen = 0u16;
            // SAFETY: the first instruction is the load: it faults without changing
            // the register, or it completes and the previous (valid) selector goes
            // back two instructions later; `catch` restores the stack and callee-saved
            // registers; the closure owns nothing.
            let (r, at) = unsafe {
                catch_asm!(
                    concat!("mov ", $reg, ", {sel:x}"),
                    concat!("mov {seen:x}, ", $reg),
                    concat!("mov ", $reg, ", {old:x}"),
                    sel = in(reg) sel,
                    old = in(reg) old,
                    seen = inout(reg) seen,
                )
            };
            Load { r, at, seen }
        }
    };
}

segment_load!(load_ds, "ds", cpu::ds);
segment_load!(load_es, "es", cpu::es);
segment_load!(load_fs, "fs", cpu::fs);
segment_load!(load_gs, "gs", cpu::gs);
segment_load!(load_ss, "ss", cpu::ss);

/// A probe of one segment register.
type Probe = fn(u16) -> Load;

/// The data segment registers and their probes.
const DATA_REGS: [(&str, Probe); 4] = [("ds", load_ds), ("es", load_es), ("fs", load_fs), ("gs", load_gs)];

/// A far return to `sel` (a 64-bit code segment) and back to Xen's flat kernel CS;
/// `seen` is the CS in between.
fn far_return_to(sel: u16) -> Load {
    let mut seen = 0u16;
    // SAFETY: RETFQ to the same privilege level pops RIP and CS: the first one goes on
    // at label 5 with CS = `sel`, the second back at label 6 with the flat CS. If the
    // first faults, `catch` restores the stack (with the two pushes) and registers.
    let (r, at) = unsafe {
        catch_asm!(
            "push {sel}",
            "lea {tmp}, [rip + 5f]",
            "push {tmp}",
            ".byte 0x48, 0xcb", // retfq
            "5:",
            "mov {seen:x}, cs",
            "push {kcs}",
            "lea {tmp}, [rip + 6f]",
            "push {tmp}",
            ".byte 0x48, 0xcb", // retfq
            "6:",
            sel = in(reg) sel as u64,
            kcs = in(reg) FLAT_KERNEL_CS as u64,
            tmp = out(reg) _,
            seen = inout(reg) seen,
        )
    };
    Load { r, at, seen }
}

/// A far call (or jump) through memory to `sel` (the offset is ignored for a gate).
fn far_transfer(sel: u16, jump: bool) -> Load {
    // m16:32: a 32-bit offset, then the selector.
    let target: [u16; 3] = [0, 0, sel];
    let ptr = &raw const target;
    // SAFETY: the far call or jump faults on the gate (DPL 0); if it went through it
    // would reach GATE_OFFSET, unmapped, and fault there: either way `catch` takes
    // over with the stack and registers it had.
    let (r, at) = unsafe {
        if jump {
            catch_asm!(".byte 0xff, 0x28", in("rax") ptr) // jmp far [rax]
        } else {
            catch_asm!(".byte 0xff, 0x18", in("rax") ptr) // call far [rax]
        }
    };
    Load { r, at, seen: 0 }
}

// ---- The main LDT: page A ----

fn main_ldt(t: &mut Tests, xen: &Hypercalls, a: &Page) {
    let gate = call_gate(GATE_TARGET, GATE_OFFSET, 3);
    write_entries(a, &[DATA3, DATA3 & !PRESENT, CODE64, 0, DATA0, DATA3, gate[0], gate[1]]);
    // As Linux does: an LDT page is read-only in the guest's own mappings.
    t.check("ldt-page-readonly", mmu::make_readonly(a));
    if !t.check("set-ldt", set_ldt(a.va(), A_ENTS as u64)) {
        return;
    }
    // SET_LDT only records base and count: the page is neither validated (the DPL-0
    // descriptor is as written) nor typed (a writable mapping is still allowed).
    t.check("set-ldt-leaves-page-as-written", Outcome::eq(entry(a, A_DPL0), DATA0));
    t.check("ldt-page-writable-before-use", mmu::make_writable(a));
    t.check("ldt-page-readonly-again", mmu::make_readonly(a));

    // Loads of each data segment register.
    for (reg, load) in DATA_REGS {
        let name = |what: &str| Name::new(format_args!("{reg}-{what}"));
        t.check(name("ldt-present").as_str(), load(sel(A_DATA)).loaded(sel(A_DATA)));
        t.check(
            name("ldt-not-present-np").as_str(),
            load(sel(A_NOT_PRESENT)).faulted(vector::NP, sel(A_NOT_PRESENT)),
        );
        t.check(name("ldt-empty-gp").as_str(), load(sel(A_EMPTY)).faulted(vector::GP, sel(A_EMPTY)));
        t.check(name("ldt-beyond-count-gp").as_str(), load(sel(A_ENTS)).faulted(vector::GP, sel(A_ENTS)));
    }
    // The first access validated the whole page: the DPL-0 entry now reads DPL 3 in
    // the guest's own mapping, and the gate has DPL 0 with its DPL in the target's RPL.
    t.check("ldt-validation-raises-dpl", Outcome::eq(entry(a, A_DPL0), DATA3));
    t.check("ldt-load-sets-accessed", Outcome::eq(entry(a, A_DATA), DATA3 | ACCESSED));
    t.check(
        "ldt-validation-call-gate",
        Outcome::eq([entry(a, A_GATE), entry(a, A_GATE + 1)], call_gate(GATE_TARGET | 3, GATE_OFFSET, 0)),
    );
    t.check("ds-ldt-dpl0-entry-loads", load_ds(sel(A_DPL0)).loaded(sel(A_DPL0)));
    t.check("ds-ldt-readable-code", load_ds(sel(A_CODE)).loaded(sel(A_CODE)));
    // An RPL-0 selector of a DPL-3 data segment is fine for DS (max(CPL, RPL) <= DPL).
    t.check("ds-ldt-rpl0", load_ds(sel(A_DATA) & !3).loaded(sel(A_DATA) & !3));

    // SS: writable data with DPL = RPL = CPL (3) only.
    t.check("ss-ldt-data", load_ss(sel(A_DATA)).loaded(sel(A_DATA)));
    t.check("ss-ldt-not-present-ss", load_ss(sel(A_NOT_PRESENT)).faulted(vector::SS, sel(A_NOT_PRESENT)));
    t.check("ss-ldt-code-gp", load_ss(sel(A_CODE)).faulted(vector::GP, sel(A_CODE)));
    t.check("ss-ldt-empty-gp", load_ss(sel(A_EMPTY)).faulted(vector::GP, sel(A_EMPTY)));
    t.check("ss-ldt-rpl0-gp", load_ss(sel(A_DATA) & !3).faulted(vector::GP, sel(A_DATA)));
    t.check("ss-ldt-beyond-count-gp", load_ss(sel(A_ENTS)).faulted(vector::GP, sel(A_ENTS)));

    // CS: the LDT's 64-bit code segment, by a far return.
    t.check("cs-ldt-code-far-return", far_return_to(sel(A_CODE)).loaded(sel(A_CODE)));
    t.check("cs-back-to-flat", Outcome::eq(cpu::cs(), FLAT_KERNEL_CS));
    // The call gate: DPL 0 after validation, so the CPU refuses it with #GP(gate), and
    // Xen hands that to a 64-bit guest as it is (it emulates gates for 32-bit ones).
    t.check("call-gate-far-call-gp", far_transfer(sel(A_GATE), false).faulted(vector::GP, sel(A_GATE)));
    t.check("call-gate-far-jump-gp", far_transfer(sel(A_GATE), true).faulted(vector::GP, sel(A_GATE)));

    // An LDT selector stays in DS across a hypercall.
    let p = load_ds_keep(sel(A_DATA));
    let kept = p.r.is_ok().then(|| {
        let _ = xen.xen_version();
        let ds = cpu::ds();
        restore_ds();
        ds
    });
    t.check("ds-ldt-kept-across-hypercall", Outcome::eq(kept, Some(sel(A_DATA))));

    // Once used, the page is a descriptor page: no writable mapping while it is the LDT.
    t.check("ldt-page-writable-refused", Outcome::eq(mmu::make_writable(a), Err(Errno::EBUSY)));
    // SET_LDT with the same base and count changes nothing (the mapping stays).
    t.check("set-ldt-same-again", set_ldt(a.va(), A_ENTS as u64));
    t.check("set-ldt-same-keeps-type", Outcome::eq(mmu::make_writable(a), Err(Errno::EBUSY)));
}

/// Loads `sel` into DS and leaves it there (see [`restore_ds`]).
fn load_ds_keep(sel: u16) -> Load {
    // SAFETY: one load, which faults without changing DS or completes; the closure
    // owns nothing. DS is not used for addressing in 64-bit mode.
    let (r, at) = unsafe { catch_asm!("mov ds, {:x}", in(reg) sel) };
    Load { r, at, seen: 0 }
}

/// Puts Xen's flat kernel data selector back in DS.
fn restore_ds() {
    use guest_shim::pv_abi::arch_x86::FLAT_KERNEL_DS;
    // SAFETY: Xen's flat data selector is always valid.
    unsafe { core::arch::asm!("mov ds, {:x}", in(reg) FLAT_KERNEL_DS, options(nomem, nostack)) };
}

/// A check name built from parts.
struct Name(guest_shim::report::FixedStr<64>);

impl Name {
    fn new(args: core::fmt::Arguments<'_>) -> Self {
        Self(guest_shim::report::FixedStr::format(args))
    }

    fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

// ---- update_descriptor on the LDT in use ----

fn descriptor_updates(t: &mut Tests, xen: &Hypercalls, a: &Page) {
    // SAFETY: (each update_descriptor below) the entry is one of the LDT's, and no
    // segment register holds its selector.
    let r = unsafe { xen.update_descriptor(a.entry_maddr(A_NOT_PRESENT as usize), DATA3) };
    t.check("update-descriptor-in-use", r);
    t.check("update-descriptor-now-present", load_ds(sel(A_NOT_PRESENT)).loaded(sel(A_NOT_PRESENT)));
    t.check("ldt-spare-present", load_ds(sel(A_SPARE)).loaded(sel(A_SPARE)));
    // SAFETY: as above.
    let r = unsafe { xen.update_descriptor(a.entry_maddr(A_SPARE as usize), DATA3 & !PRESENT) };
    t.check("update-descriptor-not-present", r);
    t.check("update-descriptor-now-np", load_ds(sel(A_SPARE)).faulted(vector::NP, sel(A_SPARE)));
    // The same check as the page validation: DPL 0 becomes 3 on the way in.
    // SAFETY: as above.
    let r = unsafe { xen.update_descriptor(a.entry_maddr(A_SPARE as usize), DATA0) };
    t.check("update-descriptor-dpl0", r);
    t.check("update-descriptor-dpl-raised", Outcome::eq(entry(a, A_SPARE), DATA3));
    t.check("update-descriptor-dpl0-loads", load_ds(sel(A_SPARE)).loaded(sel(A_SPARE)));
    // SAFETY: as above (refused).
    let r = unsafe { xen.update_descriptor(a.entry_maddr(A_SPARE as usize), TSS64_LOW) };
    t.check("update-descriptor-tss-einval", Outcome::eq(r, Err(Errno::EINVAL)));
    t.check("update-descriptor-tss-unchanged", Outcome::eq(entry(a, A_SPARE) & !ACCESSED, DATA3));
    // SAFETY: as above (refused).
    let r = unsafe { xen.update_descriptor(a.entry_maddr(A_SPARE as usize) + 4, DATA3) };
    t.check("update-descriptor-unaligned-einval", Outcome::eq(r, Err(Errno::EINVAL)));
    let gate = call_gate(GATE_TARGET, GATE_OFFSET, 3);
    // SAFETY: as above; the gate's second slot is already the same.
    let r = unsafe { xen.update_descriptor(a.entry_maddr(A_GATE as usize), gate[0]) };
    t.check("update-descriptor-call-gate", r);
    t.check(
        "update-descriptor-call-gate-fixed",
        Outcome::eq(entry(a, A_GATE), call_gate(GATE_TARGET | 3, GATE_OFFSET, 0)[0]),
    );
}

// ---- A base-pointer switch drops the LDT's mappings ----

fn base_switch(t: &mut Tests, a: &Page) {
    let mut tree: Tree = match Tree::new(true) {
        Ok(tree) => tree,
        Err(e) => {
            t.fail("cr3-tree", format_args!("an L4 with the kernel half: {e}"));
            return;
        }
    };
    if !t.check("cr3-tree", tree.pin()) {
        let _ = tree.destroy();
        return;
    }
    // SAFETY: the tree's L4 holds the kernel half of the current one: everything Rust
    // uses is mapped the same way.
    let switched = unsafe { mmu::new_baseptr(tree.l4().mfn) };
    if t.check("cr3-switch", switched) {
        // The LDT is still set, but its mapping (and the type reference) is gone: the
        // next use maps it again.
        t.check("cr3-switch-releases-ldt-page", mmu::make_writable(a));
        t.check("cr3-switch-ldt-page-readonly", mmu::make_readonly(a));
        t.check("cr3-switch-ldt-still-set", load_ds(sel(A_DATA)).loaded(sel(A_DATA)));
        t.check("cr3-switch-ldt-page-typed-again", Outcome::eq(mmu::make_writable(a), Err(Errno::EBUSY)));
        // SAFETY: the start-of-day tables map the kernel as before.
        let back = unsafe { mmu::new_baseptr(mmu::bootstrap_l4().mfn) };
        t.check("cr3-switch-back", back);
    }
    t.check("cr3-tree-destroyed", tree.destroy());
    // Type A again for the checks that follow (the switch back dropped it once more).
    t.check(
        "cr3-switch-back-ldt-in-use",
        all([
            load_ds(sel(A_DATA)).loaded(sel(A_DATA)),
            Outcome::eq(mmu::make_writable(a), Err(Errno::EBUSY)),
        ]),
    );
}

// ---- A page Xen cannot validate: page B ----

fn tss_page(t: &mut Tests, a: &Page, b: &Page) {
    write_entries(b, &[DATA3, 0, TSS64_LOW, 0]);
    t.check("tss-page-readonly", mmu::make_readonly(b));
    t.check("set-ldt-tss-page", set_ldt(b.va(), 4));
    // Moving the LDT away from A dropped the type reference its use took.
    t.check("ldt-switch-releases-old-page", mmu::make_writable(a));
    // The TSS makes validation fail, so the descriptor cannot be mapped: Xen hands the
    // guest the #PF, at the descriptor's address in the guest's LDT.
    let p = load_ds(sel(0));
    if let Err(trap) = &p.r {
        println!("ldt: loading through the page with a TSS: {trap}");
    }
    t.check("ldt-tss-page-pf", p.page_faulted(b.va()));
    t.check("ldt-tss-page-not-fixed-up", Outcome::eq(entry(b, 0), DATA3));
    t.check("ldt-tss-page-not-typed", mmu::make_writable(b));
    // A writable LDT page cannot be validated either: #PF again.
    write_entries(b, &[DATA3, 0, 0, 0]);
    t.check("ldt-writable-page-pf", load_ds(sel(0)).page_faulted(b.va()));
    t.check("ldt-fixed-page-readonly", mmu::make_readonly(b));
    t.check("ldt-fixed-page-loads", load_ds(sel(0)).loaded(sel(0)));
    t.check("ldt-fixed-page-typed", Outcome::eq(mmu::make_writable(b), Err(Errno::EBUSY)));
}

// ---- SET_LDT's refusals ----

fn set_ldt_errors(t: &mut Tests, b: &Page) {
    let cases: [(&str, u64, u64, Errno); 6] = [
        ("set-ldt-unaligned-einval", b.va() + 8, 4, Errno::EINVAL),
        ("set-ldt-too-many-entries-einval", b.va(), 8193, Errno::EINVAL),
        ("set-ldt-hole-start-einval", 0xffff_8000_0000_0000, 1, Errno::EINVAL),
        ("set-ldt-hole-directmap-einval", 0xffff_8300_0000_0000, 1, Errno::EINVAL),
        ("set-ldt-hole-last-page-einval", AFTER_HOLE - 4096, 1, Errno::EINVAL),
        ("set-ldt-non-canonical-einval", 0x0000_8000_0000_0000, 1, Errno::EINVAL),
    ];
    for (name, base, ents, errno) in cases {
        t.check(name, Outcome::eq(set_ldt(base, ents), Err(errno)));
    }
    t.check("set-ldt-domid-xen-eperm", Outcome::eq(set_ldt_for(b.va(), 4, DOMID_XEN), Err(Errno::EPERM)));
    // None of them changed the LDT.
    t.check(
        "set-ldt-errors-keep-ldt",
        all([load_ds(sel(0)).loaded(sel(0)), load_ds(sel(4)).faulted(vector::GP, sel(4))]),
    );
    // `nr_ents` is an `unsigned int` in `struct mmuext_op`: the upper half of `arg2` is
    // not part of the count (here 1 entry).
    t.check(
        "set-ldt-count-is-32-bits",
        all([
            set_ldt(b.va(), 1 << 32 | 1).into(),
            load_ds(sel(0)).loaded(sel(0)),
            load_ds(sel(1)).faulted(vector::GP, sel(1)),
        ]),
    );
    t.check("set-ldt-count-back", set_ldt(b.va(), 4));
}

// ---- Removing the LDT ----

fn removal(t: &mut Tests, b: &Page) {
    // With no entries the address is not looked at (here: unaligned, in Xen's hole).
    t.check("set-ldt-zero-entries-removes", set_ldt(0xffff_8000_0000_0001, 0));
    let p = load_ds(sel(0));
    t.check("no-ldt-after-remove-gp", p.faulted(vector::GP, sel(0)));
    // The type reference went with the LDT, at once.
    t.check("ldt-page-writable-after-remove", mmu::make_writable(b));
}

// ---- An LDT of two pages (A and B, adjacent in the kernel map) ----

fn two_pages(t: &mut Tests, a: &Page, b: &Page) {
    if b.va() != a.va() + 4096 {
        t.skip("two-page-ldt", format_args!("pages A and B are not adjacent ({:#x}, {:#x})", a.va(), b.va()));
        return;
    }
    // Both pages are writable again here (A since the switch to B, B since the removal).
    write_entries(a, &[DATA3]);
    write_entries(b, &[DATA3, DATA3 & !PRESENT]);
    t.check("two-page-ldt-readonly", mmu::make_readonly(a).and_then(|()| mmu::make_readonly(b)));
    // 514 entries: all of A, two of B.
    if !t.check("set-ldt-two-pages", set_ldt(a.va(), 514)) {
        return;
    }
    t.check("two-page-ldt-first-page-loads", load_ds(sel(0)).loaded(sel(0)));
    // Each page is mapped (and typed) on its own first use: B is not yet.
    t.check("two-page-ldt-second-page-untyped", mmu::make_writable(b));
    t.check("two-page-ldt-second-page-writable-pf", load_ds(sel(512)).page_faulted(b.va()));
    t.check("two-page-ldt-second-page-readonly", mmu::make_readonly(b));
    t.check("two-page-ldt-second-page-loads", load_ds(sel(512)).loaded(sel(512)));
    t.check("two-page-ldt-second-page-np", load_ds(sel(513)).faulted(vector::NP, sel(513)));
    t.check("two-page-ldt-beyond-count-gp", load_ds(sel(514)).faulted(vector::GP, sel(514)));
    t.check(
        "two-page-ldt-both-typed",
        all([
            Outcome::eq(mmu::make_writable(a), Err(Errno::EBUSY)),
            Outcome::eq(mmu::make_writable(b), Err(Errno::EBUSY)),
        ]),
    );
    t.check("two-page-ldt-remove", set_ldt(0, 0));
    t.check("two-page-ldt-released", mmu::make_writable(a).and_then(|()| mmu::make_writable(b)));
}

// ---- LDTs Xen accepts without looking: the fault comes at use ----

fn lazy_bases(t: &mut Tests) {
    // The largest LDT, at an unmapped address: the last selector is within the limit,
    // and its descriptor cannot be mapped.
    if t.check("set-ldt-8192-entries-unmapped", set_ldt(UNMAPPED, 8192)) {
        t.check("ldt-unmapped-last-entry-pf", load_ds(0xffff).page_faulted(UNMAPPED + 0xfff8));
    }
    if t.check("set-ldt-after-hole", set_ldt(AFTER_HOLE, 1)) {
        t.check("ldt-after-hole-pf", load_ds(sel(0)).page_faulted(AFTER_HOLE));
    }
    // An LDT that starts canonical and ends past the lower half: Xen 4.17 checks only
    // the base. A descriptor at a non-canonical address cannot be mapped, and Xen
    // turns that fault into the #GP(selector) the CPU would raise for it.
    if t.check("set-ldt-end-non-canonical-accepted", set_ldt(LAST_LOW_PAGE, 8192)) {
        t.check("ldt-last-low-page-pf", load_ds(sel(0)).page_faulted(LAST_LOW_PAGE));
        t.check("ldt-non-canonical-descriptor-gp", load_ds(sel(512)).faulted(vector::GP, sel(512)));
    }
    t.check("set-ldt-remove", set_ldt(0, 0));
    let p = load_ds(sel(0));
    t.check("no-ldt-at-end-gp", p.faulted(vector::GP, sel(0)));
}

#[cfg(not(target_os = "none"))]
fn main() {}
