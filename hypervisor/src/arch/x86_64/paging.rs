// SPDX-License-Identifier: MIT OR Apache-2.0
//! The hypervisor's own page tables: the image with W^X per section, a
//! non-executable direct map of RAM, and uncached MMIO windows.

use super::layout::{DIRECTMAP_VIRT_START, IMAGE_VIRT_OFFSET, IOREMAP_VIRT_START};
use super::mem::{PAGE_SIZE, phys_to_virt, zero_frame};
use ::x86_64::structures::paging::mapper::MapToError;
use ::x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame, Size2MiB,
    Size4KiB,
};
use ::x86_64::{PhysAddr, VirtAddr};

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static __build_id_note: u8;
    static __build_id_note_end: u8;
}

/// The ELF note the linker wrote with the image's build id (name "GNU",
/// type 3), as bytes; empty if there is none.
pub fn build_id_note() -> &'static [u8] {
    let start = core::ptr::addr_of!(__build_id_note);
    let len = core::ptr::addr_of!(__build_id_note_end) as usize - start as usize;
    // SAFETY: the linker script places the note between these symbols in
    // .rodata, which is mapped read-only for the hypervisor's lifetime.
    unsafe { core::slice::from_raw_parts(start, len) }
}

/// The image's section boundaries (virtual addresses).
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    pub start: u64,
    pub text_end: u64,
    pub rodata_end: u64,
    pub end: u64,
}

pub fn image_layout() -> ImageLayout {
    ImageLayout {
        start: core::ptr::addr_of!(__image_start) as u64,
        text_end: core::ptr::addr_of!(__text_end) as u64,
        rodata_end: core::ptr::addr_of!(__rodata_end) as u64,
        end: core::ptr::addr_of!(__image_end) as u64,
    }
}

/// Physical range of the image.
pub fn image_phys() -> (u64, u64) {
    let l = image_layout();
    (l.start - IMAGE_VIRT_OFFSET, l.end - IMAGE_VIRT_OFFSET)
}

struct Frames<'a>(&'a mut dyn FnMut() -> Option<u64>);

// SAFETY: the closure hands out distinct, unused frames from the frame
// allocator; each is zeroed before the mapper uses it as a table.
unsafe impl FrameAllocator<Size4KiB> for Frames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let pa = (self.0)()?;
        zero_frame(pa);
        Some(PhysFrame::containing_address(PhysAddr::new(pa)))
    }
}

#[derive(Debug)]
pub struct OutOfFrames;

impl<S: ::x86_64::structures::paging::PageSize> From<MapToError<S>> for OutOfFrames {
    fn from(_: MapToError<S>) -> Self {
        OutOfFrames
    }
}

/// Builds the final tables and switches to them. `ram` lists page-aligned RAM
/// ranges for the direct map; `alloc` yields zeroable free frames below 4 GiB.
pub fn build_and_switch(
    ram: &[(u64, u64)],
    apic_phys: u64,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<(), OutOfFrames> {
    let mut frames = Frames(alloc);
    let root = frames.allocate_frame().ok_or(OutOfFrames)?;
    let root_va = phys_to_virt(root.start_address().as_u64(), PAGE_SIZE).ok_or(OutOfFrames)?;
    let offset = phys_to_virt(0, 0).ok_or(OutOfFrames)?;
    // SAFETY: `root` is a zeroed frame we own, mapped at `root_va`; the early
    // window maps all of the first 4 GiB at `offset`, where `alloc` takes
    // its frames.
    let mut mapper =
        unsafe { OffsetPageTable::new(&mut *(root_va as *mut PageTable), VirtAddr::new(offset)) };

    let image = image_layout();
    let mut va = image.start;
    while va < image.end {
        let flags = if va < image.text_end {
            F::PRESENT | F::GLOBAL
        } else if va < image.rodata_end {
            F::PRESENT | F::GLOBAL | F::NO_EXECUTE
        } else {
            F::PRESENT | F::WRITABLE | F::GLOBAL | F::NO_EXECUTE
        };
        map_4k(&mut mapper, &mut frames, va, va - IMAGE_VIRT_OFFSET, flags)?;
        va += PAGE_SIZE;
    }

    let data = F::PRESENT | F::WRITABLE | F::GLOBAL | F::NO_EXECUTE;
    let mut limit = 0;
    for &(start, end) in ram {
        let mut pa = start;
        while pa < end {
            let va = DIRECTMAP_VIRT_START + pa;
            if pa % (2 << 20) == 0 && end - pa >= 2 << 20 {
                let page = Page::<Size2MiB>::containing_address(VirtAddr::new(va));
                let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(pa));
                // SAFETY: maps RAM into the direct map, which nothing else uses yet.
                unsafe { mapper.map_to(page, frame, data | F::HUGE_PAGE, &mut frames)?.ignore() };
                pa += 2 << 20;
            } else {
                map_4k(&mut mapper, &mut frames, va, pa, data)?;
                pa += PAGE_SIZE;
            }
        }
        limit = limit.max(end);
    }

    let mmio = F::PRESENT | F::WRITABLE | F::GLOBAL | F::NO_EXECUTE | F::NO_CACHE | F::WRITE_THROUGH;
    map_4k(&mut mapper, &mut frames, IOREMAP_VIRT_START, apic_phys, mmio)?;

    // SAFETY: the new tables map the running image at the same addresses
    // (the code, the boot stack and every static) and the direct map that
    // `use_direct_map` switches physical accesses to.
    unsafe {
        ::x86_64::registers::control::Cr3::write(root, ::x86_64::registers::control::Cr3Flags::empty());
    }
    super::mem::use_direct_map(limit);
    Ok(())
}

fn map_4k(
    mapper: &mut OffsetPageTable<'_>,
    frames: &mut Frames<'_>,
    va: u64,
    pa: u64,
    flags: F,
) -> Result<(), OutOfFrames> {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
    let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(pa));
    // SAFETY: every caller maps a distinct, previously unmapped virtual page
    // (of the new tables, or of the M2P range in the live ones), so no
    // existing translation changes and no TLB entry goes stale.
    unsafe { mapper.map_to(page, frame, flags, frames)?.ignore() };
    Ok(())
}

/// Maps `len` bytes at physical `pa` read-only, user-accessible and
/// non-executable at `va` in the live tables: how the machine-to-phys table
/// appears in every guest (its L4 slot is copied into each guest's L4).
pub fn map_for_guests_readonly(
    va: u64,
    pa: u64,
    len: u64,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<(), OutOfFrames> {
    let mut frames = Frames(alloc);
    let root = super::cpu::read_cr3();
    let root_va = phys_to_virt(root, PAGE_SIZE).ok_or(OutOfFrames)?;
    // SAFETY: the live L4, reached through the direct map, which maps every
    // frame the page tables use; only pages of the still-unused `va` range
    // are added, so no existing mapping changes.
    let mut mapper = unsafe {
        OffsetPageTable::new(&mut *(root_va as *mut PageTable), VirtAddr::new(DIRECTMAP_VIRT_START))
    };
    let flags = F::PRESENT | F::USER_ACCESSIBLE | F::NO_EXECUTE;
    let mut off = 0;
    while off < len {
        map_4k(&mut mapper, &mut frames, va + off, pa + off, flags)?;
        off += PAGE_SIZE;
    }
    Ok(())
}

/// The guest LDT window (in the per-domain area, whose L4 slot every guest
/// L4 shares): page `k` maps page `k` of the running vCPU's LDT once a
/// segment load has put it in use, else an empty page. The CPU reads the
/// guest's own (checked, read-only to it) frames there, and sets their
/// accessed bits, as on Xen.
pub const LDT_VIRT_START: u64 = super::layout::PERDOMAIN_VIRT_START;
/// Pages of the window: the largest LDT (8192 entries).
pub const LDT_WINDOW_PAGES: u64 = 16;
/// The empty page unused window pages map (its physical address).
static LDT_EMPTY: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Builds the LDT window's page tables, every page mapping an empty page.
pub fn prepare_ldt_window(alloc: &mut dyn FnMut() -> Option<u64>) -> Result<(), OutOfFrames> {
    let empty = alloc().ok_or(OutOfFrames)?;
    zero_frame(empty);
    LDT_EMPTY.store(empty, core::sync::atomic::Ordering::Relaxed);
    let mut frames = Frames(alloc);
    let root = super::cpu::read_cr3();
    let root_va = phys_to_virt(root, PAGE_SIZE).ok_or(OutOfFrames)?;
    // SAFETY: the live L4 through the direct map; only pages of the unused
    // window are added, so no existing mapping changes.
    let mut mapper = unsafe {
        OffsetPageTable::new(&mut *(root_va as *mut PageTable), VirtAddr::new(DIRECTMAP_VIRT_START))
    };
    // Mapped writable, so that the tables above the window are too (the CPU
    // writes accessed bits through it); then each page goes to the empty
    // page read-only until a guest page is put there.
    let flags = F::PRESENT | F::WRITABLE | F::NO_EXECUTE;
    for k in 0..LDT_WINDOW_PAGES {
        map_4k(&mut mapper, &mut frames, LDT_VIRT_START + k * PAGE_SIZE, empty, flags)?;
        set_ldt_page(k, None);
    }
    Ok(())
}

/// Maps page `k` of the LDT window to a guest's descriptor page (writable
/// for the CPU's accessed bits; the frame has the descriptor page type), or
/// back to the empty page.
pub fn set_ldt_page(k: u64, frame: Option<u64>) {
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    assert!(k < LDT_WINDOW_PAGES);
    let va = LDT_VIRT_START + k * PAGE_SIZE;
    let entry = match frame {
        Some(pa) => (pa & ADDR) | (F::PRESENT | F::WRITABLE | F::NO_EXECUTE).bits(),
        None => LDT_EMPTY.load(core::sync::atomic::Ordering::Relaxed) | (F::PRESENT | F::NO_EXECUTE).bits(),
    };
    let mut table = super::cpu::read_cr3() & ADDR;
    for level in (1..4).rev() {
        let index = (va >> (12 + 9 * level)) & 511;
        let table_va = phys_to_virt(table, PAGE_SIZE).expect("page tables are in the direct map");
        // SAFETY: reads an entry of the live tables through the direct map;
        // prepare_ldt_window built this path.
        table = unsafe { core::ptr::read_volatile((table_va as *const u64).add(index as usize)) } & ADDR;
    }
    let l1_va = phys_to_virt(table, PAGE_SIZE).expect("page tables are in the direct map");
    // SAFETY: the window's own L1 entry; nothing but the LDT uses the window,
    // and the stale translation is flushed right after.
    unsafe { core::ptr::write_volatile((l1_va as *mut u64).add(((va >> 12) & 511) as usize), entry) };
    ::x86_64::instructions::tlb::flush(VirtAddr::new(va));
}

/// The virtual address of the local APIC's registers.
pub const APIC_VIRT: u64 = IOREMAP_VIRT_START;
