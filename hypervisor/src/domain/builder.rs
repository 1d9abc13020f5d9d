// SPDX-License-Identifier: MIT OR Apache-2.0
//! The PV domain builder: lays out a 64-bit PV kernel's start of day exactly
//! as Xen's `xen.h` documents it, in the domain's own frames.
//!
//! One contiguous virtual region starts at `VIRT_BASE` and maps pfn N at
//! `VIRT_BASE + N * 4 KiB`, in this order, each element page aligned:
//! kernel, initrd, P2M list, start_info, bootstrap page tables (L4, L3, L2,
//! L1s), boot stack; the region then ends on a 4 MiB boundary with at least
//! 512 KiB to spare. Page-table frames are mapped read-only, everything else
//! read-write. `plan` checks the image against the domain's size without
//! touching memory; `build` writes the frames through [`FrameMemory`].
//!
//! With `XEN_ELFNOTE_INIT_P2M` (Linux gives 512 GiB) the P2M list is not in
//! the region: as Xen's `dom0_build.c` does, it is mapped writable at the
//! note's address by the frames right after the region (pfns
//! `first_p2m_pfn..first_p2m_pfn + nr_p2m_frames` of start_info), which hold
//! the page tables that mapping needs (those the bootstrap tables do not
//! already provide) and then the list. Those tables are not bootstrap
//! page-table frames (`nr_pt_frames` does not count them) and, as on Xen,
//! not mapped anywhere. Unlike Xen, which uses 2 MiB and 1 GiB pages where
//! the list is big and aligned enough, the list is mapped with 4 KiB pages
//! only: this hypervisor's PV MMU allows no large pages.

use crate::domain::elfnotes::XenNotes;
use crate::elf::Elf;
use crate::hal::{FrameMemory, PAGE_SIZE, guest_range_ok};
use crate::mm::frame::Mfn;
use core::fmt;
use pv_abi::features::{XENFEAT_DOM0, XENFEAT_SUPERVISOR_MODE_KERNEL};
use pv_abi::layout::UnionBytes;
use pv_abi::xen::{ConsoleDomU, SIF_INITDOMAIN, SIF_PRIVILEGED, StartInfo, StartInfoConsole};
use zerocopy::IntoBytes;

const PAGE: u64 = PAGE_SIZE as u64;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Guest page-table entry bits (the kernel runs in ring 3, so every level
/// carries USER, as Xen's adjust_guest_l*e makes it).
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const L1_RW: u64 = PTE_P | PTE_RW | PTE_USER | PTE_A;
const L1_RO: u64 = PTE_P | PTE_USER | PTE_A;
const UPPER: u64 = PTE_P | PTE_RW | PTE_USER | PTE_A | PTE_D;
/// The P2M list's pages outside the region: dirty already, as Xen maps them.
const L1_P2M: u64 = L1_RW | PTE_D;
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The hypervisor's L4 slots, copied into every guest L4.
pub const HYPERVISOR_L4_SLOTS: core::ops::Range<usize> = 256..272;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    NotXenKernel,
    /// Neither LOADER "generic" nor GUEST_OS "linux" (libelf's rule).
    Loader,
    XenVersion,
    /// SUPPORTED_FEATURES is given without XENFEAT_dom0, for dom0.
    NotDom0Kernel,
    NoVirtBase,
    NoEntry,
    BadAddress(&'static str),
    TooBig {
        need: u64,
        have: u64,
    },
    Unsupported(&'static str),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NotXenKernel => write!(f, "no Xen ELF notes: not a Xen PV kernel"),
            BuildError::Loader => write!(
                f,
                "Xen loads only kernels for its generic loader or Linux: XEN_ELFNOTE_LOADER must start \
                 with \"generic\" or XEN_ELFNOTE_GUEST_OS with \"linux\""
            ),
            BuildError::NotDom0Kernel => write!(
                f,
                "the kernel does not support running as dom0 (XEN_ELFNOTE_SUPPORTED_FEATURES and \
                 XEN_ELFNOTE_FEATURES lack XENFEAT_dom0)"
            ),
            BuildError::XenVersion => {
                write!(f, "XEN_ELFNOTE_XEN_VERSION must start with \"xen-3.0\"")
            }
            BuildError::NoVirtBase => write!(f, "no XEN_ELFNOTE_VIRT_BASE"),
            BuildError::NoEntry => write!(f, "no entry point"),
            BuildError::BadAddress(what) => write!(f, "{what}"),
            BuildError::TooBig { need, have } => write!(
                f,
                "the start of day needs {} KiB but the domain has {} KiB (raise dom0_mem)",
                need * 4,
                have * 4
            ),
            BuildError::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

/// Where everything goes, in pfns of the new domain and virtual addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub virt_base: u64,
    /// Load address minus p_paddr for every segment.
    pub load_bias: u64,
    pub kernel: (u64, u64),
    pub entry: u64,
    pub hypercall_page: Option<u64>,
    pub initrd: (u64, u64),
    /// The P2M list's address (start_info.mfn_list) and the end of its last
    /// page: in the region, or where XEN_ELFNOTE_INIT_P2M says.
    pub p2m: (u64, u64),
    /// The pfns after the region that hold the P2M list and the page tables
    /// mapping it, when it is outside the region (start_info's
    /// `first_p2m_pfn`, and `nr_p2m_frames` = their count; none otherwise).
    pub p2m_frames: (u64, u64),
    /// How many of `p2m_frames`, at their start, are page tables.
    pub p2m_tables: u64,
    pub start_info: u64,
    /// A domU's console ring page (after start_info, as Xen's toolstack
    /// places it); dom0 has none.
    pub console: Option<u64>,
    pub page_tables: (u64, u64),
    pub stack: u64,
    /// End of the bootstrap region (exclusive).
    pub v_end: u64,
    pub nr_pages: u64,
}

impl Layout {
    /// The pfn mapped at `va` in the bootstrap region.
    pub fn pfn(&self, va: u64) -> u64 {
        (va - self.virt_base) / PAGE
    }
    pub fn nr_pt_frames(&self) -> u64 {
        (self.page_tables.1 - self.page_tables.0) / PAGE
    }
    /// Whether the P2M list is mapped apart from the region (INIT_P2M).
    pub fn p2m_apart(&self) -> bool {
        self.p2m_frames.1 > self.p2m_frames.0
    }
    /// The pfn holding the P2M list's byte at `va`.
    pub fn p2m_pfn(&self, va: u64) -> u64 {
        if self.p2m_apart() {
            self.p2m_frames.0 + self.p2m_tables + (va / PAGE - self.p2m.0 / PAGE)
        } else {
            self.pfn(va)
        }
    }
}

/// Page-table frames needed to map `[base, end)` with 4 KiB pages inside one
/// L2 (one L4, one L3, one L2, one L1 per 2 MiB).
fn pt_frames(base: u64, end: u64) -> u64 {
    let l1s = end.div_ceil(2 * MIB) - base / (2 * MIB);
    3 + l1s
}

/// Page tables (L3s, L2s, L1s) needed to map the pages `[start, end)` with
/// 4 KiB pages next to the bootstrap region `[base, v_end)`, whose tables
/// are shared where both fall under the same entry.
fn tables_apart(start: u64, end: u64, base: u64, v_end: u64) -> u64 {
    if start >= end {
        return 0;
    }
    // One table per distinct index at the level above: a 512 GiB slot needs
    // an L3, a 1 GiB one an L2, a 2 MiB one an L1.
    [39u32, 30, 21]
        .iter()
        .map(|&shift| {
            let (first, last) = (start >> shift, (end - 1) >> shift);
            let (r_first, r_last) = (base >> shift, (v_end - 1) >> shift);
            let shared = (last.min(r_last) + 1).saturating_sub(first.max(r_first));
            last - first + 1 - shared
        })
        .sum()
}

/// Checks the image and computes the layout for a domain of `nr_pages`:
/// dom0 (`dom0`) or another domain (Xen's toolstack does not ask for
/// XENFEAT_dom0).
pub fn plan_for(
    elf: &Elf<'_>,
    notes: &XenNotes<'_>,
    nr_pages: u64,
    initrd_len: u64,
    dom0: bool,
) -> Result<Layout, BuildError> {
    if notes.count == 0 {
        return Err(BuildError::NotXenKernel);
    }
    // libelf's elf_xen_note_check: prefixes, and an absent note fails its part.
    let generic = notes.loader.is_some_and(|l| l.starts_with("generic"));
    let linux = notes.guest_os.is_some_and(|g| g.starts_with("linux"));
    if !generic && !linux {
        return Err(BuildError::Loader);
    }
    if !notes.xen_version.is_some_and(|v| v.starts_with("xen-3.0")) {
        return Err(BuildError::XenVersion);
    }
    // dom0_build.c asks for XENFEAT_dom0 only of kernels that list what
    // they support.
    if dom0 && notes.supported_features.is_some() && notes.feat_supported & (1 << XENFEAT_DOM0) == 0 {
        return Err(BuildError::NotDom0Kernel);
    }
    if notes.feat_required & (1 << XENFEAT_SUPERVISOR_MODE_KERNEL) != 0 {
        return Err(BuildError::Unsupported("a supervisor-mode kernel"));
    }
    let virt_base = notes.virt_base.ok_or(BuildError::NoVirtBase)?;
    // Xen's rule: segments load at p_paddr + VIRT_BASE - PADDR_OFFSET, and
    // with ELF notes an absent PADDR_OFFSET means 0 (libelf's
    // elf_xen_addr_calc_check).
    let paddr_offset = notes.paddr_offset.unwrap_or(0);
    let load_bias = virt_base.wrapping_sub(paddr_offset);
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for s in elf.segments() {
        let start = s.paddr.wrapping_add(load_bias);
        let end = start.checked_add(s.memsz).ok_or(BuildError::BadAddress("a segment wraps around"))?;
        lo = lo.min(start);
        hi = hi.max(end);
    }
    if lo < virt_base || lo % PAGE != 0 && lo / PAGE * PAGE < virt_base {
        return Err(BuildError::BadAddress("a segment lies below VIRT_BASE"));
    }
    if virt_base % PAGE != 0 {
        return Err(BuildError::BadAddress("VIRT_BASE is not page aligned"));
    }
    if virt_base < 0xffff_8800_0000_0000 {
        return Err(BuildError::Unsupported("a kernel outside the upper half above the hypervisor hole"));
    }
    let kernel = (lo / PAGE * PAGE, hi.next_multiple_of(PAGE));
    let entry = notes.entry.unwrap_or(elf.entry);
    if entry == 0 {
        return Err(BuildError::NoEntry);
    }
    if !(kernel.0..kernel.1).contains(&entry) {
        return Err(BuildError::BadAddress("the entry point is outside the kernel"));
    }
    if let Some(hp) = notes.hypercall_page
        && (hp % PAGE != 0 || !(kernel.0..kernel.1).contains(&hp))
    {
        return Err(BuildError::BadAddress("the hypercall page is not a page of the kernel"));
    }
    let list_len = nr_pages * 8;
    if let Some(base) = notes.init_p2m {
        // libelf refuses a P2M base inside the kernel; Xen does not check the
        // rest, but a list in the hypervisor's hole or past a canonical half
        // could not be mapped.
        if (lo..hi).contains(&base) {
            return Err(BuildError::BadAddress("XEN_ELFNOTE_INIT_P2M points into the kernel"));
        }
        if !guest_range_ok(base, list_len as usize)
            || base.checked_add(list_len).and_then(|e| e.checked_next_multiple_of(PAGE)).is_none()
        {
            return Err(BuildError::BadAddress(
                "the P2M list at XEN_ELFNOTE_INIT_P2M is not canonical or reaches into the hypervisor's hole",
            ));
        }
    }

    let initrd = (kernel.1, kernel.1 + initrd_len.next_multiple_of(PAGE));
    let (p2m, start_info) = match notes.init_p2m {
        // In the region, after the initrd.
        None => {
            let p2m = (initrd.1, initrd.1 + list_len.next_multiple_of(PAGE));
            (p2m, p2m.1)
        }
        // Apart: start_info follows the initrd.
        Some(base) => ((base, (base + list_len).next_multiple_of(PAGE)), initrd.1),
    };
    let console = (!dom0).then_some(start_info + PAGE);
    let pt_start = start_info + PAGE + if dom0 { 0 } else { PAGE };
    // The page tables map the region that contains them: iterate to a fixed point.
    let mut n_pt = 0;
    let (stack, v_end) = loop {
        let stack = pt_start + n_pt * PAGE;
        let v_end = (stack + PAGE + 512 * 1024).next_multiple_of(4 * MIB);
        let need = pt_frames(virt_base, v_end);
        if need <= n_pt {
            break (stack, v_end);
        }
        n_pt = need;
    };
    if (virt_base % GIB) + (v_end - virt_base) > GIB {
        return Err(BuildError::Unsupported("a bootstrap region larger than the 1 GiB Linux maps"));
    }
    let region_pages = (v_end - virt_base) / PAGE;
    let (mut p2m_frames, mut p2m_tables) = ((region_pages, region_pages), 0);
    if notes.init_p2m.is_some() {
        // dom0_build.c's test, ends included.
        if p2m.0 <= v_end && virt_base <= p2m.0 + list_len {
            return Err(BuildError::BadAddress(
                "the P2M list at XEN_ELFNOTE_INIT_P2M overlaps the bootstrap region",
            ));
        }
        let first_page = p2m.0 / PAGE * PAGE;
        p2m_tables = tables_apart(first_page, p2m.1, virt_base, v_end);
        p2m_frames.1 += p2m_tables + (p2m.1 - first_page) / PAGE;
    }
    let need = p2m_frames.1;
    if need > nr_pages {
        return Err(BuildError::TooBig { need, have: nr_pages });
    }
    Ok(Layout {
        virt_base,
        load_bias,
        kernel,
        entry,
        hypercall_page: notes.hypercall_page,
        initrd,
        p2m,
        p2m_frames,
        p2m_tables,
        start_info,
        console,
        page_tables: (pt_start, pt_start + n_pt * PAGE),
        stack,
        v_end,
        nr_pages,
    })
}

/// What the first vCPU starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartOfDay {
    pub rip: u64,
    pub rsp: u64,
    pub rsi: u64,
    pub cr3: Mfn,
}

/// Inputs of `build` beyond the layout.
pub struct BuildArgs<'a> {
    pub elf: &'a Elf<'a>,
    pub initrd: &'a [u8],
    pub cmdline: &'a str,
    /// pfn → mfn, `nr_pages` long.
    pub p2m: &'a [Mfn],
    pub shared_info: Mfn,
    pub privileged: bool,
    /// The console ring's event channel (with `Layout::console`).
    pub console_evtchn: Option<u32>,
    /// L4 entries 256..272 of the hypervisor's own page table.
    pub hypervisor_l4: &'a [u64; 16],
    /// Writes the hypercall stubs into a page.
    pub hypercall_page: fn(&mut [u8; PAGE_SIZE]),
}

/// Copies `data` to the domain's memory at virtual address `va`, in pages
/// `frame` finds (by the address of their first byte).
fn copy_via(mem: &mut impl FrameMemory, frame: impl Fn(u64) -> Mfn, va: u64, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        let at = va + done as u64;
        let off = (at % PAGE) as usize;
        let n = (PAGE_SIZE - off).min(data.len() - done);
        mem.write(frame(at / PAGE * PAGE), off, &data[done..done + n]);
        done += n;
    }
}

/// Copies `data` to the domain's memory at virtual address `va` (in the region).
fn copy_to(mem: &mut impl FrameMemory, l: &Layout, p2m: &[Mfn], va: u64, data: &[u8]) {
    copy_via(mem, |page| p2m[l.pfn(page) as usize], va, data);
}

/// Index of `va` in its table of `level` (0 = L1 ... 3 = L4).
fn idx(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 511) as usize
}

pub fn build(mem: &mut impl FrameMemory, l: &Layout, a: &BuildArgs<'_>) -> StartOfDay {
    let p2m = a.p2m;
    for &mfn in p2m {
        mem.zero(mfn);
    }
    for s in a.elf.segments() {
        copy_to(mem, l, p2m, s.paddr.wrapping_add(l.load_bias), a.elf.segment_bytes(&s));
    }
    if let Some(hp) = l.hypercall_page {
        let mut page = [0u8; PAGE_SIZE];
        (a.hypercall_page)(&mut page);
        mem.write(p2m[l.pfn(hp) as usize], 0, &page);
    }
    copy_to(mem, l, p2m, l.initrd.0, a.initrd);
    for (pfn, mfn) in p2m.iter().enumerate() {
        let va = l.p2m.0 + pfn as u64 * 8;
        copy_via(mem, |page| p2m[l.p2m_pfn(page) as usize], va, &mfn.0.to_le_bytes());
    }

    let mut si = StartInfo::default();
    si.magic[..14].copy_from_slice(b"xen-3.0-x86_64");
    si.nr_pages = l.nr_pages;
    si.shared_info = a.shared_info.addr();
    si.flags = if a.privileged { SIF_INITDOMAIN | SIF_PRIVILEGED } else { 0 };
    si.pt_base = l.page_tables.0;
    si.nr_pt_frames = l.nr_pt_frames();
    si.mfn_list = l.p2m.0;
    // As Xen: the first pfn after the region, even when no frame follows.
    si.first_p2m_pfn = l.p2m_frames.0;
    si.nr_p2m_frames = l.p2m_frames.1 - l.p2m_frames.0;
    if !a.initrd.is_empty() {
        si.mod_start = l.initrd.0;
        si.mod_len = a.initrd.len() as u64;
    }
    if let (Some(va), Some(evtchn)) = (l.console, a.console_evtchn) {
        let mfn = p2m[l.pfn(va) as usize].0;
        si.console = StartInfoConsole::from_member(&ConsoleDomU { mfn, evtchn, _pad: 0 });
    }
    let cmd = a.cmdline.as_bytes();
    let n = cmd.len().min(si.cmd_line.len() - 1);
    si.cmd_line[..n].copy_from_slice(&cmd[..n]);
    copy_to(mem, l, p2m, l.start_info, si.as_bytes());

    // Bootstrap page tables: [L4][L3][L2][L1...], mapping the region with 4 KiB pages.
    let pt_pfn = l.pfn(l.page_tables.0);
    let (l4, l3, l2) = (p2m[pt_pfn as usize], p2m[pt_pfn as usize + 1], p2m[pt_pfn as usize + 2]);
    for (i, &e) in a.hypervisor_l4.iter().enumerate() {
        mem.write_u64(l4, HYPERVISOR_L4_SLOTS.start + i, e);
    }
    mem.write_u64(l4, idx(l.virt_base, 3), l3.addr() | UPPER);
    mem.write_u64(l3, idx(l.virt_base, 2), l2.addr() | UPPER);
    let first_l1 = l.virt_base / (2 * MIB);
    let mut va = l.virt_base;
    while va < l.v_end {
        let l1 = p2m[(pt_pfn + 3 + (va / (2 * MIB) - first_l1)) as usize];
        if va.is_multiple_of(2 * MIB) || va == l.virt_base {
            mem.write_u64(l2, idx(va, 1), l1.addr() | UPPER);
        }
        let is_pt = (l.page_tables.0..l.page_tables.1).contains(&va);
        mem.write_u64(l1, idx(va, 0), p2m[l.pfn(va) as usize].addr() | if is_pt { L1_RO } else { L1_RW });
        va += PAGE;
    }
    if l.p2m_apart() {
        map_p2m_apart(mem, l, p2m, l4);
    }
    StartOfDay { rip: l.entry, rsp: l.stack + PAGE, rsi: l.start_info, cr3: l4 }
}

/// Maps the P2M list's pages (INIT_P2M) writable under the L4 `l4`, taking
/// the tables it lacks from the start of `l.p2m_frames` in the order the
/// walk needs them. They are zero: `build` cleared every frame.
fn map_p2m_apart(mem: &mut impl FrameMemory, l: &Layout, p2m: &[Mfn], l4: Mfn) {
    let mut next_table = l.p2m_frames.0;
    let mut va = l.p2m.0 / PAGE * PAGE;
    while va < l.p2m.1 {
        let mut table = l4;
        for level in (1..4).rev() {
            let e = mem.read_u64(table, idx(va, level));
            table = if e & PTE_P != 0 {
                Mfn((e & PTE_ADDR) / PAGE)
            } else {
                let new = p2m[next_table as usize];
                next_table += 1;
                mem.write_u64(table, idx(va, level), new.addr() | UPPER);
                new
            };
        }
        mem.write_u64(table, idx(va, 0), p2m[l.p2m_pfn(va) as usize].addr() | L1_P2M);
        va += PAGE;
    }
    debug_assert_eq!(next_table, l.p2m_frames.0 + l.p2m_tables, "plan counted other tables");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::elfnotes::{self, tests::note};
    use crate::hal::fake::FakeMemory;
    use crate::mm::frame_table::{FrameTable, PageInfo, PageType};
    use crate::mm::guest_pt::Mmu;
    use pv_abi::elfnote as n;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec::Vec;
    use zerocopy::FromBytes;

    const BASE: u64 = 0xffff_ffff_8000_0000;
    /// Where Linux asks for its P2M list: 512 GiB, L4 slot 1.
    const LINUX_P2M: u64 = 0x80_0000_0000;
    const HV: [u64; 16] = [0x1234_5000u64 | 3; 16];

    /// The notes Linux gives, with LOADER "generic" as guest-shim's guests.
    fn linux_notes(hypercall_page: bool) -> Vec<u8> {
        let mut notes = linux_notes_but_paddr_offset(hypercall_page);
        notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_PADDR_OFFSET, &0u64.to_le_bytes()));
        notes
    }

    fn linux_notes_but_paddr_offset(hypercall_page: bool) -> Vec<u8> {
        let mut notes = note(b"Xen\0", n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0");
        notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_LOADER, b"generic\0"));
        notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_VIRT_BASE, &BASE.to_le_bytes()));
        notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_ENTRY, &(BASE + 0x20_0010).to_le_bytes()));
        if hypercall_page {
            notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_HYPERCALL_PAGE, &(BASE + 0x20_1000).to_le_bytes()));
        }
        notes
    }

    /// A kernel image: one 8 KiB PT_LOAD at BASE + 2 MiB (paddr 2 MiB) with
    /// 16 KiB of bss, and a PT_NOTE with `notes`.
    fn image(notes: &[u8]) -> Vec<u8> {
        let text_off = 0x1000u64;
        let note_off = text_off + 0x2000;
        let mut b = crate::elf::tests::header(note_off as usize + notes.len(), 2);
        let ph = |b: &mut [u8], i: usize, typ: u32, off: u64, paddr: u64, filesz: u64, memsz: u64| {
            let at = 64 + i * 56;
            b[at..at + 4].copy_from_slice(&typ.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&(paddr + BASE).to_le_bytes());
            b[at + 24..at + 32].copy_from_slice(&paddr.to_le_bytes());
            b[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
            b[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
        };
        ph(&mut b, 0, 1, text_off, 0x20_0000, 0x2000, 0x6000);
        ph(&mut b, 1, 4, note_off, 0, notes.len() as u64, notes.len() as u64);
        for (i, byte) in b[text_off as usize..note_off as usize].iter_mut().enumerate() {
            *byte = (i % 251) as u8 + 1;
        }
        b[note_off as usize..].copy_from_slice(notes);
        b
    }

    fn kernel(hypercall_page: bool) -> Vec<u8> {
        image(&linux_notes(hypercall_page))
    }

    /// A kernel asking for its P2M list at `base`.
    fn init_p2m_kernel(base: u64) -> Vec<u8> {
        let mut notes = linux_notes(true);
        notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_INIT_P2M, &base.to_le_bytes()));
        image(&notes)
    }

    fn plan_of(img: &[u8], nr_pages: u64, initrd_len: u64) -> Result<Layout, BuildError> {
        let elf = Elf::parse(img).unwrap();
        let notes = elfnotes::parse(elf.note_segments()).unwrap();
        plan_for(&elf, &notes, nr_pages, initrd_len, true)
    }

    fn stubs(page: &mut [u8; PAGE_SIZE]) {
        page.fill(0xcc);
    }

    /// A built start of day and what it was built from.
    struct Built {
        l: Layout,
        sod: StartOfDay,
        mem: FakeMemory,
        p2m: Vec<Mfn>,
    }

    /// Plans and builds `img` for `nr_pages` in scattered machine frames, as
    /// the allocator may hand them out.
    fn build_of(img: &[u8], nr_pages: u64, initrd: &[u8]) -> Built {
        build_as(img, nr_pages, initrd, true)
    }

    /// As `build_of`, for dom0 or (with a console ring on port 1) a domU.
    fn build_as(img: &[u8], nr_pages: u64, initrd: &[u8], dom0: bool) -> Built {
        let elf = Elf::parse(img).unwrap();
        let notes = elfnotes::parse(elf.note_segments()).unwrap();
        let l = plan_for(&elf, &notes, nr_pages, initrd.len() as u64, dom0).unwrap();
        let p2m: Vec<Mfn> = (0..nr_pages).map(|p| Mfn(0x10000 + p * 3)).collect();
        let mut mem = FakeMemory::default();
        let sod = build(
            &mut mem,
            &l,
            &BuildArgs {
                elf: &elf,
                initrd,
                cmdline: "console=hvc0 root=/dev/xvda",
                p2m: &p2m,
                shared_info: Mfn(0x777),
                privileged: dom0,
                console_evtchn: (!dom0).then_some(1),
                hypervisor_l4: &HV,
                hypercall_page: stubs,
            },
        );
        Built { l, sod, mem, p2m }
    }

    /// Every mapping of the guest's half of the tables under `cr3`, as the
    /// MMU would walk them: (va, L1 entry), and each table with its level and
    /// how many entries point at it. Large pages fail the walk.
    fn tree(mem: &FakeMemory, cr3: Mfn) -> (BTreeMap<u64, u64>, BTreeMap<u64, (u32, u32)>) {
        let (mut leaves, mut tables) = (BTreeMap::new(), BTreeMap::new());
        tables.insert(cr3.0, (4, 1));
        let mut todo = std::vec![(cr3, 3u32, 0u64)];
        while let Some((table, level, va_base)) = todo.pop() {
            for i in 0..512u64 {
                if level == 3 && HYPERVISOR_L4_SLOTS.contains(&(i as usize)) {
                    continue;
                }
                let e = mem.read_u64(table, i as usize);
                if e & PTE_P == 0 {
                    continue;
                }
                let mut va = va_base | (i << (12 + 9 * level));
                if va & (1 << 47) != 0 {
                    va |= 0xffff_0000_0000_0000;
                }
                let next = Mfn((e & PTE_ADDR) / PAGE);
                if level == 0 {
                    assert!(leaves.insert(va, e).is_none());
                    continue;
                }
                assert_eq!(e & !PTE_ADDR, UPPER, "entry {i} of the level-{} table {table:?}", level + 1);
                let refs = tables.entry(next.0).or_insert((level, 0));
                assert_eq!(refs.0, level, "{next:?} used at two levels");
                refs.1 += 1;
                todo.push((next, level - 1, va));
            }
        }
        (leaves, tables)
    }

    /// Reads guest-virtual memory through the tables, as the guest would.
    fn read_va(mem: &FakeMemory, cr3: Mfn, va: u64, len: usize) -> Vec<u8> {
        let mut out = std::vec![0u8; len];
        let mut done = 0;
        while done < len {
            let at = va + done as u64;
            let mut table = cr3;
            for level in (0..4).rev() {
                let e = mem.read_u64(table, idx(at, level));
                assert_ne!(e & PTE_P, 0, "{at:#x} is not mapped (level {})", level + 1);
                table = Mfn((e & PTE_ADDR) / PAGE);
            }
            let off = (at % PAGE) as usize;
            let n = (PAGE_SIZE - off).min(len - done);
            mem.read(table, off, &mut out[done..done + n]);
            done += n;
        }
        out
    }

    /// What must hold of every start of day: the tables map exactly the
    /// region 1:1 (page tables read-only) and the P2M list, each frame once;
    /// the tables are exactly the bootstrap ones and the P2M's; the list and
    /// start_info say what they must; and the MMU accepts the whole tree.
    fn check(b: &mut Built) {
        let (l, cr3, p2m) = (&b.l, b.sod.cr3, &b.p2m);
        let (leaves, tables) = tree(&b.mem, cr3);
        let mut want = BTreeMap::new();
        let mut va = l.virt_base;
        while va < l.v_end {
            let is_pt = (l.page_tables.0..l.page_tables.1).contains(&va);
            want.insert(va, p2m[l.pfn(va) as usize].addr() | if is_pt { L1_RO } else { L1_RW });
            va += PAGE;
        }
        let mut want_tables: BTreeSet<u64> =
            (l.pfn(l.page_tables.0)..l.pfn(l.page_tables.1)).map(|pfn| p2m[pfn as usize].0).collect();
        if l.p2m_apart() {
            let mut va = l.p2m.0 / PAGE * PAGE;
            while va < l.p2m.1 {
                let pfn = l.p2m_pfn(va);
                assert!((l.p2m_frames.0 + l.p2m_tables..l.p2m_frames.1).contains(&pfn));
                assert!(want.insert(va, p2m[pfn as usize].addr() | L1_P2M).is_none(), "{va:#x} overlaps");
                va += PAGE;
            }
            want_tables
                .extend((l.p2m_frames.0..l.p2m_frames.0 + l.p2m_tables).map(|pfn| p2m[pfn as usize].0));
        } else {
            assert!(l.v_end >= l.p2m.1 && l.p2m.0 >= l.initrd.1);
        }
        assert_eq!(leaves, want, "the mappings");
        assert_eq!(tables.keys().copied().collect::<BTreeSet<_>>(), want_tables, "the page tables");
        assert!(tables.values().all(|&(_, refs)| refs == 1), "a table referenced twice");
        let mapped: BTreeSet<u64> = leaves.values().map(|e| e & PTE_ADDR).collect();
        assert_eq!(mapped.len(), leaves.len(), "a frame mapped twice");
        for (va, e) in &leaves {
            assert!(
                e & PTE_RW == 0 || !tables.contains_key(&((e & PTE_ADDR) / PAGE)),
                "{va:#x}: a writable table"
            );
        }

        let list = read_va(&b.mem, cr3, l.p2m.0, l.nr_pages as usize * 8);
        for (pfn, chunk) in list.chunks(8).enumerate() {
            assert_eq!(u64::from_le_bytes(chunk.try_into().unwrap()), p2m[pfn].0, "p2m[{pfn}]");
        }
        let si =
            StartInfo::read_from_bytes(&read_va(&b.mem, cr3, l.start_info, size_of::<StartInfo>())).unwrap();
        assert_eq!((si.pt_base, si.nr_pt_frames, si.mfn_list), (l.page_tables.0, l.nr_pt_frames(), l.p2m.0));
        assert_eq!(si.nr_pt_frames, pt_frames(l.virt_base, l.v_end), "only the region's tables");
        assert_eq!((si.first_p2m_pfn, si.nr_p2m_frames), (l.p2m_frames.0, l.p2m_frames.1 - l.p2m_frames.0));
        assert_eq!(si.first_p2m_pfn, l.pfn(l.v_end));
        assert!(l.p2m_frames.1 <= l.nr_pages);

        // The PV MMU's rules, as dom0.rs applies them: pin the L4.
        let top = p2m.iter().map(|m| m.0).max().unwrap() as usize + 1;
        let mut pages = std::vec![PageInfo::IO; top];
        for m in p2m {
            pages[m.0 as usize] = PageInfo::allocated(0);
        }
        let mut ft = FrameTable::new(&mut pages);
        let mut mmu = Mmu::new(&mut ft, &mut b.mem, 0, true, &HV);
        assert_eq!(mmu.pin(cr3, 4), Ok(()));
        for (&mfn, &(level, _)) in &tables {
            assert_eq!(mmu.table_level(Mfn(mfn)), Some(level as u8), "{mfn:#x}");
        }
        let p2m_page = mmu.ft.get((leaves[&(l.p2m.0 / PAGE * PAGE)] & PTE_ADDR) / PAGE).unwrap();
        assert_eq!(p2m_page.ty, PageType::Writable);
    }

    #[test]
    fn layout_follows_xen_h() {
        let l = plan_of(&kernel(false), 16384, 10_000).unwrap();
        assert_eq!(l.kernel, (BASE + 0x20_0000, BASE + 0x20_6000));
        assert_eq!(l.initrd, (l.kernel.1, l.kernel.1 + 3 * PAGE));
        assert_eq!(l.p2m, (l.initrd.1, l.initrd.1 + 32 * PAGE)); // 16384 * 8 bytes
        assert_eq!(l.start_info, l.p2m.1);
        assert_eq!(l.page_tables.0, l.start_info + PAGE);
        assert_eq!(l.stack, l.page_tables.1);
        assert_eq!(l.v_end % (4 * MIB), 0);
        assert!(l.v_end - (l.stack + PAGE) >= 512 * 1024);
        assert_eq!(l.nr_pt_frames(), 3 + (l.v_end - BASE) / (2 * MIB));
        assert_eq!(l.entry, BASE + 0x20_0010);
        assert!(!l.p2m_apart());
        assert_eq!(l.p2m_frames, (l.pfn(l.v_end), l.pfn(l.v_end)));
    }

    #[test]
    fn build_writes_the_start_of_day() {
        let img = kernel(true);
        let nr_pages = 4096;
        let initrd = std::vec![0x42u8; 5000];
        let mut b = build_of(&img, nr_pages, &initrd);
        let (l, sod, p2m) = (b.l, b.sod, b.p2m.clone());
        assert_eq!(sod.rsi, l.start_info);
        assert_eq!(sod.rsp, l.stack + PAGE);
        assert_eq!(sod.cr3, p2m[l.pfn(l.page_tables.0) as usize]);
        for (i, slot) in HYPERVISOR_L4_SLOTS.enumerate() {
            assert_eq!(b.mem.read_u64(sod.cr3, slot), HV[i]);
        }
        let read = |va: u64, len: usize| read_va(&b.mem, sod.cr3, va, len);
        // The segment, its zeroed bss, the stubs, the initrd.
        assert_eq!(read(BASE + 0x20_0000, 0x1000), img[0x1000..0x2000]);
        assert_eq!(read(BASE + 0x20_1000, 16), [0xcc; 16]);
        assert!(read(BASE + 0x20_2000, 0x4000).iter().all(|&b| b == 0));
        assert_eq!(read(l.initrd.0, 5000), initrd);
        let si = StartInfo::read_from_bytes(&read(l.start_info, size_of::<StartInfo>())).unwrap();
        assert_eq!(&si.magic[..15], b"xen-3.0-x86_64\0");
        assert_eq!(si.nr_pages, nr_pages);
        assert_eq!(si.shared_info, 0x777 * PAGE);
        assert_eq!(si.flags, SIF_INITDOMAIN | SIF_PRIVILEGED);
        assert_eq!((si.mod_start, si.mod_len), (l.initrd.0, 5000));
        assert!(si.cmd_line.starts_with(b"console=hvc0 root=/dev/xvda\0"));
        check(&mut b);
    }

    #[test]
    fn init_p2m_as_linux_asks() {
        // 64 MiB: a 128 KiB list at 512 GiB, in an L4 slot of its own.
        let nr_pages = 16384;
        let mut b = build_of(&init_p2m_kernel(LINUX_P2M), nr_pages, &[]);
        let l = b.l;
        assert!(l.p2m_apart());
        assert_eq!(l.p2m, (LINUX_P2M, LINUX_P2M + 32 * PAGE));
        // Nothing of it in the region: start_info follows the kernel.
        assert_eq!(l.start_info, l.kernel.1);
        assert_eq!(l.page_tables.0, l.start_info + PAGE);
        assert_eq!(l.v_end, BASE + 4 * MIB);
        assert_eq!(l.nr_pt_frames(), 5);
        // An L3, an L2 and an L1, then the 32 pages, right after the region.
        assert_eq!(l.p2m_tables, 3);
        assert_eq!(l.p2m_frames, (1024, 1024 + 35));
        assert_eq!(b.sod.cr3, b.p2m[l.pfn(l.page_tables.0) as usize]);
        check(&mut b);
        // The L4 entry for 512 GiB points at the first P2M frame.
        let e = b.mem.read_u64(b.sod.cr3, 1);
        assert_eq!(e, b.p2m[1024].addr() | UPPER);
    }

    #[test]
    fn init_p2m_shares_the_tables_it_can() {
        // (base, pages, tables the list needs of its own)
        let cases = [
            (BASE + GIB, 16384, 2),                 // the kernel's L4 slot: its L3
            (BASE + 512 * MIB, 16384, 1),           // the kernel's 1 GiB: its L2
            (BASE - 8 * MIB, 16384, 2),             // below the kernel, same L3
            (LINUX_P2M + 2 * MIB - PAGE, 16384, 4), // across 2 MiB: two L1s
            (LINUX_P2M + GIB - PAGE, 16384, 5),     // across 1 GiB: two L2s
            (LINUX_P2M + 0xffc, 4096, 3),           // unaligned: entries straddle pages
            (0x7fff_ffe0_0000, 16384, 3),           // the top of the lower half
        ];
        for (base, nr_pages, p2m_tables) in cases {
            let mut b = build_of(&init_p2m_kernel(base), nr_pages, &[0x17; 3000]);
            assert_eq!(b.l.p2m_tables, p2m_tables, "{base:#x}");
            let data = (b.l.p2m.1 - base / PAGE * PAGE) / PAGE;
            assert_eq!(b.l.p2m_frames.1 - b.l.p2m_frames.0, p2m_tables + data, "{base:#x}");
            check(&mut b);
        }
    }

    #[test]
    fn init_p2m_refusals() {
        let refused = |base: u64, nr_pages: u64| plan_of(&init_p2m_kernel(base), nr_pages, 0);
        // libelf: not inside the kernel.
        assert!(matches!(refused(BASE + 0x20_1000, 16384), Err(BuildError::BadAddress(_))));
        // dom0_build.c: not overlapping the region, whose ends count.
        let v_end = BASE + 4 * MIB;
        assert!(matches!(refused(BASE + MIB, 16384), Err(BuildError::BadAddress(_))));
        assert!(matches!(refused(v_end, 16384), Err(BuildError::BadAddress(_))));
        assert!(matches!(refused(BASE - 16384 * 8, 16384), Err(BuildError::BadAddress(_))));
        assert!(refused(v_end + 8, 16384).is_ok());
        assert!(refused(BASE - 16384 * 8 - 8, 16384).is_ok());
        // Not in the hypervisor's hole, not past the lower half, canonical.
        assert!(matches!(refused(0xffff_8000_0000_0000, 16384), Err(BuildError::BadAddress(_))));
        assert!(matches!(refused(0xffff_87ff_ffff_f000, 16384), Err(BuildError::BadAddress(_))));
        assert!(matches!(refused(0x7fff_ffff_f000, 16384), Err(BuildError::BadAddress(_))));
        assert!(matches!(refused(0x0000_8000_0000_0000, 16384), Err(BuildError::BadAddress(_))));
        assert!(matches!(refused(u64::MAX - 7, 16384), Err(BuildError::BadAddress(_))));
        // The domain holds the region, the list and its tables: 1024 + 3 + 3
        // pages for 1030 (a list of 8240 bytes).
        assert_eq!(refused(LINUX_P2M, 1024), Err(BuildError::TooBig { need: 1024 + 3 + 2, have: 1024 }));
        assert_eq!(refused(LINUX_P2M, 1029), Err(BuildError::TooBig { need: 1024 + 3 + 3, have: 1029 }));
        assert!(refused(LINUX_P2M, 1030).is_ok());
    }

    #[test]
    fn refusals() {
        let img = kernel(false);
        let elf = Elf::parse(&img).unwrap();
        let notes = elfnotes::parse(elf.note_segments()).unwrap();
        assert!(matches!(plan_for(&elf, &notes, 100, 0, true), Err(BuildError::TooBig { .. })));
        let none = XenNotes::default();
        assert_eq!(plan_for(&elf, &none, 4096, 0, true), Err(BuildError::NotXenKernel));
        let mut old = notes;
        old.xen_version = Some("xen-2.0");
        assert_eq!(plan_for(&elf, &old, 4096, 0, true), Err(BuildError::XenVersion));
        let mut low = notes;
        low.virt_base = Some(0x40_0000);
        low.paddr_offset = Some(0);
        assert!(matches!(plan_for(&elf, &low, 4096, 0, true), Err(BuildError::Unsupported(_))));
        let mut wild = notes;
        wild.entry = Some(1);
        assert!(matches!(plan_for(&elf, &wild, 4096, 0, true), Err(BuildError::BadAddress(_))));
        let mut hp = notes;
        hp.hypercall_page = Some(BASE + 0x20_0800);
        assert!(matches!(plan_for(&elf, &hp, 4096, 0, true), Err(BuildError::BadAddress(_))));
    }

    #[test]
    fn loader_or_linux() {
        let img = kernel(false);
        let elf = Elf::parse(&img).unwrap();
        let notes = elfnotes::parse(elf.note_segments()).unwrap();
        let with = |loader: Option<&'static str>, guest_os: Option<&'static str>| {
            let mut n = notes;
            (n.loader, n.guest_os) = (loader, guest_os);
            plan_for(&elf, &n, 4096, 0, true).map(|_| ())
        };
        // libelf: LOADER starting "generic", or GUEST_OS starting "linux".
        assert_eq!(with(Some("generic"), None), Ok(()));
        assert_eq!(with(Some("generic-ish"), Some("NetBSD")), Ok(()));
        assert_eq!(with(None, Some("linux")), Ok(()));
        assert_eq!(with(Some("xen-3.0"), Some("linux-6.1")), Ok(()));
        assert_eq!(with(None, None), Err(BuildError::Loader));
        assert_eq!(with(Some(""), Some("")), Err(BuildError::Loader));
        assert_eq!(with(Some("gener"), Some("Linux")), Err(BuildError::Loader));
        assert_eq!(with(None, Some("mini-os")), Err(BuildError::Loader));
        // Checked before the version, as libelf does.
        let mut both = notes;
        (both.loader, both.xen_version) = (None, None);
        assert_eq!(plan_for(&elf, &both, 4096, 0, true), Err(BuildError::Loader));
    }

    #[test]
    fn features_xen_refuses() {
        let img = kernel(false);
        let elf = Elf::parse(&img).unwrap();
        let notes = elfnotes::parse(elf.note_segments()).unwrap();
        let dom0 = 1 << XENFEAT_DOM0;
        // No SUPPORTED_FEATURES: nothing asked of dom0.
        assert!(plan_for(&elf, &notes, 4096, 0, true).is_ok());
        // SUPPORTED_FEATURES without XENFEAT_dom0 (there or in FEATURES).
        let mut no_dom0 = notes;
        no_dom0.supported_features = Some(1);
        no_dom0.feat_supported = 1;
        assert_eq!(plan_for(&elf, &no_dom0, 4096, 0, true), Err(BuildError::NotDom0Kernel));
        assert!(plan_for(&elf, &no_dom0, 4096, 0, false).is_ok());
        let mut in_features = no_dom0;
        in_features.feat_supported |= dom0;
        assert!(plan_for(&elf, &in_features, 4096, 0, true).is_ok());
        // A required supervisor-mode kernel; writable page tables are fine.
        let mut smk = notes;
        smk.feat_required = 1 << XENFEAT_SUPERVISOR_MODE_KERNEL;
        assert!(matches!(plan_for(&elf, &smk, 4096, 0, true), Err(BuildError::Unsupported(_))));
        let mut wpt = notes;
        wpt.feat_required = 1 << pv_abi::features::XENFEAT_WRITABLE_PAGE_TABLES;
        assert!(plan_for(&elf, &wpt, 4096, 0, true).is_ok());
        // Through the notes themselves.
        let mut raw = linux_notes(false);
        raw.extend(note(b"Xen\0", n::XEN_ELFNOTE_SUPPORTED_FEATURES, &0x8801u32.to_le_bytes()));
        raw.extend(note(b"Xen\0", n::XEN_ELFNOTE_FEATURES, b"!writable_page_tables|pae_pgdir_above_4gb\0"));
        assert!(plan_of(&image(&raw), 4096, 0).is_ok());
        let mut raw = linux_notes(false);
        raw.extend(note(b"Xen\0", n::XEN_ELFNOTE_SUPPORTED_FEATURES, &0x1u32.to_le_bytes()));
        assert_eq!(plan_of(&image(&raw), 4096, 0), Err(BuildError::NotDom0Kernel));
    }

    #[test]
    fn paddr_offset_defaults_to_zero() {
        // Without the note p_paddr is physical: segments load at VIRT_BASE + p_paddr.
        let l = plan_of(&image(&linux_notes_but_paddr_offset(false)), 4096, 0).unwrap();
        assert_eq!((l.load_bias, l.kernel.0), (BASE, BASE + 0x20_0000));
    }

    #[test]
    fn domu_console_page() {
        let img = image(&linux_notes(false));
        let b = build_as(&img, 4096, b"initrd", false);
        let l = b.l;
        assert_eq!(l.console, Some(l.start_info + PAGE), "after start_info, as Xen's toolstack");
        assert_eq!(l.page_tables.0, l.start_info + 2 * PAGE);
        let si =
            StartInfo::read_from_bytes(&read_va(&b.mem, b.sod.cr3, l.start_info, size_of::<StartInfo>()))
                .unwrap();
        assert_eq!(si.flags, 0, "not privileged, not the initial domain");
        let c: ConsoleDomU = si.console.get();
        assert_eq!((c.mfn, c.evtchn), (b.p2m[l.pfn(l.start_info + PAGE) as usize].0, 1));
        // Mapped writable in the region, and an empty ring.
        assert_eq!(read_va(&b.mem, b.sod.cr3, l.start_info + PAGE, 4096), std::vec![0u8; 4096]);
        let (leaves, _) = tree(&b.mem, b.sod.cr3);
        assert_ne!(leaves[&(l.start_info + PAGE)] & PTE_RW, 0);
        // dom0 has none.
        let d0 = build_as(&img, 4096, b"initrd", true);
        assert_eq!(d0.l.console, None);
        assert_eq!(d0.l.page_tables.0, d0.l.start_info + PAGE);
    }
}
