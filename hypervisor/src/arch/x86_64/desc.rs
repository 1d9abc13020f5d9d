// SPDX-License-Identifier: MIT OR Apache-2.0
//! GDT, TSS and IDT. The GDT follows Xen's x86_64 layout: the first 14 pages
//! (entries 0..7167) will belong to the running guest, the hypervisor's own
//! descriptors start at byte 0xe000 (FIRST_RESERVED_GDT_BYTE), and the flat
//! ring-3 selectors guests use (FLAT_RING3_CS64 0xe033, FLAT_RING3_DS 0xe02b,
//! FLAT_RING3_CS32 0xe023) sit where SYSCALL/SYSRET expect them.

use super::layout::IST_STACK_SIZE;
use ::x86_64::instructions::tables::{lgdt, lidt, load_tss};
use ::x86_64::registers::segmentation::{CS, DS, ES, SS, Segment, SegmentSelector};
use ::x86_64::structures::DescriptorTablePointer;
use ::x86_64::structures::tss::TaskStateSegment;
use ::x86_64::{PrivilegeLevel, VirtAddr};

/// First GDT entry reserved for the hypervisor (byte 0xe000).
pub const FIRST_RESERVED_GDT_ENTRY: usize = 0xe000 / 8;
/// Ring-0 64-bit code.
pub const HYPERVISOR_CS: u16 = 0xe008;
/// Ring-0 data.
pub const HYPERVISOR_DS: u16 = 0xe010;
/// Ring-3 32-bit code (the SYSRET base).
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// Ring-3 data and stack.
pub const FLAT_RING3_DS: u16 = 0xe02b;
/// Ring-3 64-bit code.
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// The task state segment (a 16-byte system descriptor).
pub const TSS_SELECTOR: u16 = 0xe040;
/// The guest's LDT, as the hypervisor's copy (a 16-byte system descriptor).
const LDT_SELECTOR: u16 = 0xe050;
/// The most entries an LDT has.
pub const LDT_ENTRIES: usize = 8192;
const GDT_ENTRIES: usize = FIRST_RESERVED_GDT_ENTRY + 16;

/// IST slots (1-based, as in the gate descriptor).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;

#[repr(C, align(4096))]
struct Gdt([u64; GDT_ENTRIES]);

#[repr(C, align(16))]
struct IstStacks([[u8; IST_STACK_SIZE]; 3]);

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Gate([u64; 2]);

#[repr(C, align(4096))]
struct Idt([Gate; 256]);

static mut GDT: Gdt = Gdt([0; GDT_ENTRIES]);
static mut TSS: TaskStateSegment = TaskStateSegment::new();
static mut IST_STACKS: IstStacks = IstStacks([[0; IST_STACK_SIZE]; 3]);
static mut IDT: Idt = Idt([Gate([0; 2]); 256]);

unsafe extern "C" {
    /// 256 entry stubs of 16 bytes each (traps.rs).
    static trap_stubs: [u8; 256 * 16];
}

fn set_gdt(gdt: &mut Gdt, selector: u16, value: u64) {
    gdt.0[usize::from(selector >> 3)] = value;
}

/// Writes entry `index` of the guest's part of the GDT (a descriptor that
/// `pv::descriptor` accepted, copied from the guest's descriptor frames).
pub fn write_guest_gdt_entry(index: usize, value: u64) {
    assert!(index < FIRST_RESERVED_GDT_ENTRY);
    // SAFETY: one CPU; the hypervisor's own descriptors are above
    // FIRST_RESERVED_GDT_ENTRY and untouched; the CPU reads the GDT only on
    // segment loads, which cannot happen during this store.
    unsafe { core::ptr::addr_of_mut!(GDT.0[index]).write_volatile(value) }
}

/// Loads the guest's LDT (its first `entries` entries), or none.
pub fn load_guest_ldt(entries: usize) {
    let entries = entries.min(LDT_ENTRIES);
    if entries == 0 {
        // SAFETY: a null LDT selector disables the LDT.
        unsafe { core::arch::asm!("lldt {0:x}", in(reg) 0u16, options(nostack, preserves_flags)) };
        return;
    }
    let base = super::paging::LDT_VIRT_START;
    let limit = (entries * 8 - 1) as u64;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x82 << 40) // present, LDT
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    let index = usize::from(LDT_SELECTOR >> 3);
    // SAFETY: the LDT descriptor's two slots in the hypervisor's part of the
    // GDT belong to it alone; one CPU. The descriptor names the LDT window,
    // whose pages are checked guest descriptor pages or an empty page.
    unsafe {
        core::ptr::addr_of_mut!(GDT.0[index]).write_volatile(low);
        core::ptr::addr_of_mut!(GDT.0[index + 1]).write_volatile(base >> 32);
        core::arch::asm!("lldt {0:x}", in(reg) LDT_SELECTOR, options(nostack, preserves_flags));
    }
}

/// Builds and loads the GDT, TSS and IDT of the boot CPU.
pub fn init() {
    // SAFETY: called once on the boot CPU before interrupts are enabled, so
    // nothing else references these statics yet.
    let (gdt, tss, ist, idt) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(GDT),
            &mut *core::ptr::addr_of_mut!(TSS),
            &mut *core::ptr::addr_of_mut!(IST_STACKS),
            &mut *core::ptr::addr_of_mut!(IDT),
        )
    };

    for (i, stack) in ist.0.iter().enumerate() {
        let top = stack.as_ptr() as u64 + IST_STACK_SIZE as u64;
        tss.interrupt_stack_table[i] = VirtAddr::new(top);
    }
    // No I/O bitmap: the map base points past the TSS limit.
    tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;

    set_gdt(gdt, HYPERVISOR_CS, 0x00af_9a00_0000_ffff);
    set_gdt(gdt, HYPERVISOR_DS, 0x00cf_9200_0000_ffff);
    set_gdt(gdt, FLAT_RING3_CS32, 0x00cf_fa00_0000_ffff);
    set_gdt(gdt, FLAT_RING3_DS, 0x00cf_f200_0000_ffff);
    set_gdt(gdt, FLAT_RING3_CS64, 0x00af_fa00_0000_ffff);
    let base = tss as *const TaskStateSegment as u64;
    let limit = core::mem::size_of::<TaskStateSegment>() as u64 - 1;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40) // present, 64-bit available TSS
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    set_gdt(gdt, TSS_SELECTOR, low);
    gdt.0[usize::from(TSS_SELECTOR >> 3) + 1] = base >> 32;

    let stubs = core::ptr::addr_of!(trap_stubs) as u64;
    for (vector, gate) in idt.0.iter_mut().enumerate() {
        let ist = match vector {
            2 => IST_NMI,
            8 => IST_DOUBLE_FAULT,
            18 => IST_MACHINE_CHECK,
            _ => 0,
        };
        let handler = stubs + 16 * vector as u64;
        // INT3, INTO and `int $0x80` are allowed from ring 3 (guest kernels
        // use the first two; the last is the guests' system-call gate).
        let dpl: u64 = if matches!(vector, 3 | 4 | 0x80) { 3 } else { 0 };
        gate.0[0] = (handler & 0xffff)
            | (u64::from(HYPERVISOR_CS) << 16)
            | (u64::from(ist) << 32)
            | ((0x8e | (dpl << 5)) << 40) // present, DPL, 64-bit interrupt gate
            | (((handler >> 16) & 0xffff) << 48);
        gate.0[1] = handler >> 32;
    }

    let gdt_ptr = DescriptorTablePointer {
        limit: (GDT_ENTRIES * 8 - 1) as u16,
        base: VirtAddr::new(gdt.0.as_ptr() as u64),
    };
    let idt_ptr =
        DescriptorTablePointer { limit: (256 * 16 - 1) as u16, base: VirtAddr::new(idt.0.as_ptr() as u64) };
    // SAFETY: the tables are static, fully initialised above and stay valid
    // for the life of the hypervisor; the selectors name the entries set above.
    unsafe {
        lgdt(&gdt_ptr);
        CS::set_reg(SegmentSelector(HYPERVISOR_CS));
        SS::set_reg(SegmentSelector(HYPERVISOR_DS));
        DS::set_reg(SegmentSelector::new(0, PrivilegeLevel::Ring0));
        ES::set_reg(SegmentSelector::new(0, PrivilegeLevel::Ring0));
        load_tss(SegmentSelector(TSS_SELECTOR));
        lidt(&idt_ptr);
    }
    // The firmware may leave an LDT loaded: guests start with none.
    load_guest_ldt(0);
}

/// Sets the stack the CPU switches to on an interrupt or exception from ring 3.
pub fn set_rsp0(top: u64) {
    // SAFETY: a single aligned store into the TSS, which only the CPU reads
    // (on the next privilege change); the boot CPU is the only writer.
    unsafe { (*core::ptr::addr_of_mut!(TSS)).privilege_stack_table[0] = VirtAddr::new(top) };
}

/// The IST stack ranges, for the backtrace walker.
pub fn ist_stack_ranges() -> [(u64, u64); 3] {
    let base = core::ptr::addr_of!(IST_STACKS) as u64;
    let size = IST_STACK_SIZE as u64;
    [(base, base + size), (base + size, base + 2 * size), (base + 2 * size, base + 3 * size)]
}
