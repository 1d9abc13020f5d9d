// SPDX-License-Identifier: MIT OR Apache-2.0
//! The x86_64 machine layer: the only code with `unsafe` and `asm!`. It boots,
//! owns the CPU tables, page tables, APIC and ports, and offers small safe
//! functions to the generic code above.

pub mod apic;
mod boot;
pub mod cpu;
pub mod desc;
pub mod exit;
pub mod fpu;
pub mod guest;
pub mod heap;
pub mod layout;
pub mod mem;
pub mod paging;
pub mod rtc;
pub mod serial;
mod traps;

use crate::boot::{BootInfo, BootModule, RawArea, SymbolTables};
use multiboot2::{BootInformation, BootInformationHeader};

/// Called by `_start32` on the boot stack, in long mode, in the higher half.
#[unsafe(no_mangle)]
extern "C" fn arch_entry(mbi_phys: u32) -> ! {
    crate::console::init_early();
    desc::init();
    let info = read_boot_info(u64::from(mbi_phys));
    crate::hv_main(info)
}

/// Copies what the hypervisor needs out of the multiboot2 information, so that
/// nothing refers to the loader's memory afterwards (except modules and the
/// symbol table, which are reserved).
fn read_boot_info(mbi_phys: u64) -> Result<BootInfo, &'static str> {
    let header = mem::phys_to_virt(mbi_phys, 8).ok_or("boot information above 4 GiB")?;
    // SAFETY: the first 8 bytes are mapped (checked above); total_size is the
    // first u32 of the multiboot2 information.
    let total = unsafe { core::ptr::read_volatile(header as *const u32) };
    if total < 16 || !mbi_phys.is_multiple_of(8) {
        return Err("malformed boot information header");
    }
    mem::phys_to_virt(mbi_phys, u64::from(total)).ok_or("boot information above 4 GiB")?;
    // SAFETY: the whole structure is mapped (checked above) and the loader no
    // longer touches it.
    let mbi = unsafe { BootInformation::load(header as *const BootInformationHeader) }
        .map_err(|_| "malformed boot information (bad tag sequence)")?;

    let mut info = BootInfo { mbi: (mbi_phys, mbi_phys + u64::from(total)), ..BootInfo::default() };
    if let Some(tag) = mbi.command_line_tag() {
        info.set_cmdline(tag.cmdline().unwrap_or("<cmdline is not UTF-8>"));
    }
    if let Some(tag) = mbi.boot_loader_name_tag() {
        info.set_loader(tag.name().unwrap_or("?"));
    }
    if let Some(tag) = mbi.memory_map_tag() {
        for area in tag.memory_areas() {
            info.push_area(RawArea {
                base: area.start_address(),
                len: area.size(),
                typ: u32::from(area.typ()),
            });
        }
    }
    for module in mbi.module_tags() {
        info.push_module(BootModule::new(
            u64::from(module.start_address()),
            u64::from(module.end_address()),
            module.cmdline().unwrap_or("<cmdline is not UTF-8>"),
        ));
    }
    if let Some(sections) = mbi.elf_sections_tag() {
        // The symbol table's sh_link names its string table.
        let mut symtab = None;
        for s in sections.sections() {
            if s.sh_type == 2 && s.sh_addr != 0 {
                symtab = Some((s.sh_addr, s.sh_size, s.sh_link));
            }
        }
        if let Some((addr, size, link)) = symtab
            && let Some(str) = sections.sections().nth(link as usize)
            && str.sh_addr != 0
        {
            info.symbols = Some(SymbolTables { symtab: (addr, size), strtab: (str.sh_addr, str.sh_size) });
        }
    }
    Ok(info)
}

/// Reads (frame pointer, return address) pairs up the stack from `rbp`,
/// following only frames inside the hypervisor's own stacks.
pub fn walk_stack(mut rbp: u64, max: usize, mut f: impl FnMut(u64)) {
    let boot = core::ptr::addr_of!(boot::BOOT_STACK) as u64;
    let mut stacks = [(boot, boot + layout::BOOT_STACK_SIZE as u64); 4];
    stacks[1..].copy_from_slice(&desc::ist_stack_ranges());
    for _ in 0..max {
        let ok = rbp.is_multiple_of(8) && stacks.iter().any(|&(lo, hi)| rbp >= lo && rbp + 16 <= hi);
        if !ok {
            break;
        }
        // SAFETY: rbp points into one of the hypervisor's mapped stacks with
        // 16 readable bytes (checked above).
        let (next, ret) = unsafe {
            (core::ptr::read_volatile(rbp as *const u64), core::ptr::read_volatile((rbp + 8) as *const u64))
        };
        if ret == 0 {
            break;
        }
        f(ret);
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}

/// The caller's frame pointer (the hypervisor is built with frame pointers).
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reads a register.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}

/// `debug=fault`: a read of an unmapped hypervisor address, to show the
/// exception report.
#[inline(never)]
pub fn trigger_fault() {
    // An address in the hole that nothing maps (between IOREMAP and the image).
    let addr = layout::IOREMAP_VIRT_START + (1 << 30);
    // SAFETY: deliberately faults; the page-fault handler reports it and ends
    // the run, so the read never completes.
    let value = unsafe { core::ptr::read_volatile(addr as *const u64) };
    core::hint::black_box(value);
}

/// Enables interrupts and halts until one arrives, atomically (STI; HLT).
pub fn wait_for_interrupt() {
    ::x86_64::instructions::interrupts::enable_and_hlt();
    ::x86_64::instructions::interrupts::disable();
}
