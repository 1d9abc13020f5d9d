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

use crate::domain::elfnotes::XenNotes;
use crate::elf::Elf;
use crate::hal::{FrameMemory, PAGE_SIZE};
use crate::mm::frame::Mfn;
use core::fmt;
use pv_abi::xen::{SIF_INITDOMAIN, SIF_PRIVILEGED, StartInfo};
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

/// The hypervisor's L4 slots, copied into every guest L4.
pub const HYPERVISOR_L4_SLOTS: core::ops::Range<usize> = 256..272;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    NotXenKernel,
    XenVersion,
    NoVirtBase,
    NoEntry,
    BadAddress(&'static str),
    TooBig { need: u64, have: u64 },
    Unsupported(&'static str),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NotXenKernel => write!(f, "no Xen ELF notes: not a Xen PV kernel"),
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
    pub p2m: (u64, u64),
    pub start_info: u64,
    pub page_tables: (u64, u64),
    pub stack: u64,
    /// End of the bootstrap region (exclusive).
    pub v_end: u64,
    pub nr_pages: u64,
}

impl Layout {
    pub fn pfn(&self, va: u64) -> u64 {
        (va - self.virt_base) / PAGE
    }
    pub fn nr_pt_frames(&self) -> u64 {
        (self.page_tables.1 - self.page_tables.0) / PAGE
    }
}

/// Page-table frames needed to map `[base, end)` with 4 KiB pages inside one
/// L2 (one L4, one L3, one L2, one L1 per 2 MiB).
fn pt_frames(base: u64, end: u64) -> u64 {
    let l1s = end.div_ceil(2 * MIB) - base / (2 * MIB);
    3 + l1s
}

/// Checks the image and computes the layout for a domain of `nr_pages`.
pub fn plan(
    elf: &Elf<'_>,
    notes: &XenNotes<'_>,
    nr_pages: u64,
    initrd_len: u64,
) -> Result<Layout, BuildError> {
    if notes.count == 0 {
        return Err(BuildError::NotXenKernel);
    }
    if !notes.xen_version.is_some_and(|v| v.starts_with("xen-3.0")) {
        return Err(BuildError::XenVersion);
    }
    if notes.features.is_some_and(|f| f.split('|').any(|x| x == "!supervisor_mode_kernel")) {
        return Err(BuildError::Unsupported("a supervisor-mode kernel"));
    }
    let virt_base = notes.virt_base.ok_or(BuildError::NoVirtBase)?;
    // Xen's rule: segments load at p_paddr + VIRT_BASE - PADDR_OFFSET, and an
    // absent PADDR_OFFSET means VIRT_BASE (p_paddr is then virtual already).
    let paddr_offset = notes.paddr_offset.unwrap_or(virt_base);
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
    if notes.init_p2m.is_some() {
        // Not honoured yet: the P2M list goes in the bootstrap region, which
        // Xen also does when it does not use the note.
    }

    let initrd = (kernel.1, kernel.1 + initrd_len.next_multiple_of(PAGE));
    let p2m = (initrd.1, initrd.1 + (nr_pages * 8).next_multiple_of(PAGE));
    let start_info = p2m.1;
    let pt_start = start_info + PAGE;
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
    let need = (v_end - virt_base) / PAGE;
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
        start_info,
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
    /// L4 entries 256..272 of the hypervisor's own page table.
    pub hypervisor_l4: &'a [u64; 16],
    /// Writes the hypercall stubs into a page.
    pub hypercall_page: fn(&mut [u8; PAGE_SIZE]),
}

/// Copies `data` to the domain's memory at virtual address `va` (in the region).
fn copy_to(mem: &mut impl FrameMemory, l: &Layout, p2m: &[Mfn], va: u64, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        let at = va + done as u64;
        let off = (at % PAGE) as usize;
        let n = (PAGE_SIZE - off).min(data.len() - done);
        mem.write(p2m[l.pfn(at) as usize], off, &data[done..done + n]);
        done += n;
    }
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
        mem.write_u64(p2m[l.pfn(va) as usize], (va % PAGE) as usize / 8, mfn.0);
    }

    let mut si = StartInfo::default();
    si.magic[..14].copy_from_slice(b"xen-3.0-x86_64");
    si.nr_pages = l.nr_pages;
    si.shared_info = a.shared_info.addr();
    si.flags = if a.privileged { SIF_INITDOMAIN | SIF_PRIVILEGED } else { 0 };
    si.pt_base = l.page_tables.0;
    si.nr_pt_frames = l.nr_pt_frames();
    si.mfn_list = l.p2m.0;
    if !a.initrd.is_empty() {
        si.mod_start = l.initrd.0;
        si.mod_len = a.initrd.len() as u64;
    }
    let cmd = a.cmdline.as_bytes();
    let n = cmd.len().min(si.cmd_line.len() - 1);
    si.cmd_line[..n].copy_from_slice(&cmd[..n]);
    copy_to(mem, l, p2m, l.start_info, si.as_bytes());

    // Bootstrap page tables: [L4][L3][L2][L1...], mapping the region with 4 KiB pages.
    let pt_pfn = l.pfn(l.page_tables.0);
    let (l4, l3, l2) = (p2m[pt_pfn as usize], p2m[pt_pfn as usize + 1], p2m[pt_pfn as usize + 2]);
    let idx = |va: u64, level: u32| ((va >> (12 + 9 * level)) & 511) as usize;
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
    StartOfDay { rip: l.entry, rsp: l.stack + PAGE, rsi: l.start_info, cr3: l4 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::elfnotes::{self, tests::note};
    use crate::hal::fake::FakeMemory;
    use pv_abi::elfnote as n;
    use zerocopy::FromBytes;

    const BASE: u64 = 0xffff_ffff_8000_0000;

    /// A kernel image: one 8 KiB PT_LOAD at BASE + 2 MiB (paddr 2 MiB) with
    /// 16 KiB of bss, and a PT_NOTE with the notes Linux gives.
    fn kernel(hypercall_page: bool) -> std::vec::Vec<u8> {
        let mut notes = note(b"Xen\0", n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0");
        notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_VIRT_BASE, &BASE.to_le_bytes()));
        notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_PADDR_OFFSET, &0u64.to_le_bytes()));
        notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_ENTRY, &(BASE + 0x20_0010).to_le_bytes()));
        if hypercall_page {
            notes.extend(note(b"Xen\0", n::XEN_ELFNOTE_HYPERCALL_PAGE, &(BASE + 0x20_1000).to_le_bytes()));
        }
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
        b[note_off as usize..].copy_from_slice(&notes);
        b
    }

    fn stubs(page: &mut [u8; PAGE_SIZE]) {
        page.fill(0xcc);
    }

    #[test]
    fn layout_follows_xen_h() {
        let img = kernel(false);
        let elf = Elf::parse(&img).unwrap();
        let notes = elfnotes::parse(elf.note_segments()).unwrap();
        let l = plan(&elf, &notes, 16384, 10_000).unwrap();
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
    }

    #[test]
    fn build_writes_the_start_of_day() {
        let img = kernel(true);
        let elf = Elf::parse(&img).unwrap();
        let notes = elfnotes::parse(elf.note_segments()).unwrap();
        let nr_pages = 4096;
        let l = plan(&elf, &notes, nr_pages, 5000).unwrap();
        // Scattered machine frames, as the allocator may hand them out.
        let p2m: std::vec::Vec<Mfn> = (0..nr_pages).map(|p| Mfn(0x10000 + p * 3)).collect();
        let initrd = std::vec![0x42u8; 5000];
        let hv = [0x1234_5000u64 | 3; 16];
        let mut mem = FakeMemory::default();
        let sod = build(
            &mut mem,
            &l,
            &BuildArgs {
                elf: &elf,
                initrd: &initrd,
                cmdline: "console=hvc0 root=/dev/xvda",
                p2m: &p2m,
                shared_info: Mfn(0x777),
                privileged: true,
                hypervisor_l4: &hv,
                hypercall_page: stubs,
            },
        );
        assert_eq!(sod.rsi, l.start_info);
        assert_eq!(sod.rsp, l.stack + PAGE);
        assert_eq!(sod.cr3, p2m[l.pfn(l.page_tables.0) as usize]);

        // Walk the page tables like the MMU would, for every page of the region.
        let walk = |mem: &FakeMemory, va: u64| -> u64 {
            let mut table = sod.cr3;
            for level in (1..4).rev() {
                let e = mem.read_u64(table, ((va >> (12 + 9 * level)) & 511) as usize);
                assert_eq!(e & UPPER, UPPER, "level {level} entry for {va:#x}");
                table = Mfn((e & 0x000f_ffff_ffff_f000) / PAGE);
            }
            mem.read_u64(table, ((va >> 12) & 511) as usize)
        };
        let mut va = BASE;
        while va < l.v_end {
            let pte = walk(&mem, va);
            assert_eq!(pte & 0x000f_ffff_ffff_f000, p2m[l.pfn(va) as usize].addr(), "{va:#x}");
            let is_pt = (l.page_tables.0..l.page_tables.1).contains(&va);
            assert_eq!(pte & PTE_RW == 0, is_pt, "{va:#x}: only page tables are read-only");
            va += PAGE;
        }
        let l4 = sod.cr3;
        for (i, slot) in HYPERVISOR_L4_SLOTS.enumerate() {
            assert_eq!(mem.read_u64(l4, slot), hv[i]);
        }
        let read = |mem: &FakeMemory, va: u64, len: usize| {
            let mut out = std::vec![0u8; len];
            let mut done = 0;
            while done < len {
                let at = va + done as u64;
                let off = (at % PAGE) as usize;
                let n = (PAGE_SIZE - off).min(len - done);
                mem.read(p2m[l.pfn(at) as usize], off, &mut out[done..done + n]);
                done += n;
            }
            out
        };
        // The segment, its zeroed bss, the stubs, the initrd and the P2M list.
        assert_eq!(read(&mem, BASE + 0x20_0000, 0x1000), img[0x1000..0x2000]);
        assert_eq!(read(&mem, BASE + 0x20_1000, 16), [0xcc; 16]);
        assert!(read(&mem, BASE + 0x20_2000, 0x4000).iter().all(|&b| b == 0));
        assert_eq!(read(&mem, l.initrd.0, 5000), initrd);
        let list = read(&mem, l.p2m.0, nr_pages as usize * 8);
        for (pfn, chunk) in list.chunks(8).enumerate() {
            assert_eq!(u64::from_le_bytes(chunk.try_into().unwrap()), p2m[pfn].0);
        }
        let si =
            StartInfo::read_from_bytes(&read(&mem, l.start_info, core::mem::size_of::<StartInfo>())).unwrap();
        assert_eq!(&si.magic[..15], b"xen-3.0-x86_64\0");
        assert_eq!(si.nr_pages, nr_pages);
        assert_eq!(si.shared_info, 0x777 * PAGE);
        assert_eq!(si.flags, SIF_INITDOMAIN | SIF_PRIVILEGED);
        assert_eq!((si.pt_base, si.nr_pt_frames, si.mfn_list), (l.page_tables.0, l.nr_pt_frames(), l.p2m.0));
        assert_eq!((si.mod_start, si.mod_len), (l.initrd.0, 5000));
        assert!(si.cmd_line.starts_with(b"console=hvc0 root=/dev/xvda\0"));
    }

    #[test]
    fn refusals() {
        let img = kernel(false);
        let elf = Elf::parse(&img).unwrap();
        let notes = elfnotes::parse(elf.note_segments()).unwrap();
        assert!(matches!(plan(&elf, &notes, 100, 0), Err(BuildError::TooBig { .. })));
        let none = XenNotes::default();
        assert_eq!(plan(&elf, &none, 4096, 0), Err(BuildError::NotXenKernel));
        let mut old = notes;
        old.xen_version = Some("xen-2.0");
        assert_eq!(plan(&elf, &old, 4096, 0), Err(BuildError::XenVersion));
        let mut low = notes;
        low.virt_base = Some(0x40_0000);
        low.paddr_offset = Some(0);
        assert!(matches!(plan(&elf, &low, 4096, 0), Err(BuildError::Unsupported(_))));
        let mut wild = notes;
        wild.entry = Some(1);
        assert!(matches!(plan(&elf, &wild, 4096, 0), Err(BuildError::BadAddress(_))));
        let mut hp = notes;
        hp.hypercall_page = Some(BASE + 0x20_0800);
        assert!(matches!(plan(&elf, &hp, 4096, 0), Err(BuildError::BadAddress(_))));
    }
}
