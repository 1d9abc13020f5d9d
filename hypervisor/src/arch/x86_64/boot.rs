// SPDX-License-Identifier: MIT OR Apache-2.0
//! Multiboot2 header and the 32-bit entry: GRUB enters `_start32` in protected
//! mode with paging off. We build boot page tables that map the first 4 GiB
//! at 0 (so the switch to long mode can continue at the same address), at
//! `IMAGE_VIRT_OFFSET` (where the image is linked) and at the start of the
//! direct map (so that pointers made during boot stay valid once the final
//! tables are live), enter long mode and call
//! `arch_entry(mbi_phys)` on the boot stack in the higher half.

use super::layout::{BOOT_STACK_SIZE, IMAGE_VIRT_OFFSET};

/// Boot page tables and stack, in .bss (zeroed by `_start32` itself).
#[repr(C, align(4096))]
pub struct BootTables {
    pml4: [u64; 512],
    pdpt: [u64; 512],
    pd: [[u64; 512]; 4],
}

#[unsafe(no_mangle)]
static mut BOOT_TABLES: BootTables = BootTables { pml4: [0; 512], pdpt: [0; 512], pd: [[0; 512]; 4] };

#[repr(C, align(16))]
pub struct Stack<const N: usize>(pub [u8; N]);

#[unsafe(no_mangle)]
pub(super) static mut BOOT_STACK: Stack<BOOT_STACK_SIZE> = Stack([0; BOOT_STACK_SIZE]);

core::arch::global_asm!(
    r#"
    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long 0xe85250d6                      // magic
    .long 0                               // architecture: i386 protected mode
    .long mb2_header_end - mb2_header
    .long -(0xe85250d6 + (mb2_header_end - mb2_header))
    // entry address tag: the physical address of _start32
    .balign 8
    .short 3, 0
    .long 12
    .long _start32 - {off}
    // end tag
    .balign 8
    .short 0, 0
    .long 8
mb2_header_end:

    .section .text.boot, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    mov edi, eax                          // multiboot2 magic
    mov esi, ebx                          // boot information (physical)

    // Zero .bss: it holds the boot stack and page tables.
    mov edx, edi
    mov edi, offset __bss_start - {off}
    mov ecx, offset __bss_end - {off}
    sub ecx, edi
    xor eax, eax
    rep stosb
    mov edi, edx
    mov esp, offset BOOT_STACK - {off} + {stack}

    cmp edi, 0x36d76289
    jne 22f
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb 23f
    mov eax, 0x80000001
    cpuid
    bt edx, 29                            // long mode
    jnc 23f
    bt edx, 20                            // NX
    jnc 23f

    // PD: 2048 x 2 MiB pages over the first 4 GiB.
    mov edi, offset BOOT_TABLES - {off} + 8192
    xor ecx, ecx
21:  mov eax, ecx
    shl eax, 21
    or eax, 0x83                          // present, writable, 2 MiB
    mov edx, ecx
    shr edx, 11                           // high bits of (ecx << 21)
    mov [edi + ecx * 8], eax
    mov [edi + ecx * 8 + 4], edx
    inc ecx
    cmp ecx, 2048
    jne 21b
    // PDPT slots 0..3 (identity) and 321..324 (IMAGE_VIRT_OFFSET) -> the PDs.
    mov edi, offset BOOT_TABLES - {off} + 4096
    mov eax, offset BOOT_TABLES - {off} + 8192 + 3
    xor ecx, ecx
24:  mov [edi + ecx * 8], eax
    mov [edi + ecx * 8 + 321 * 8], eax
    add eax, 4096
    inc ecx
    cmp ecx, 4
    jne 24b
    // PML4 slots 0, 261 (IMAGE_VIRT_OFFSET) and 262 (DIRECTMAP) -> the PDPT.
    mov edi, offset BOOT_TABLES - {off}
    mov eax, offset BOOT_TABLES - {off} + 4096 + 3
    mov [edi], eax
    mov [edi + 261 * 8], eax
    mov [edi + 262 * 8], eax              // DIRECTMAP_VIRT_START
    mov cr3, edi

    mov eax, cr4
    or eax, 1 << 5                        // PAE
    mov cr4, eax
    mov ecx, 0xc0000080                   // EFER
    rdmsr
    or eax, (1 << 8) | (1 << 11)          // LME, NXE
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16)         // PG, WP
    mov cr0, eax

    lgdt [boot_gdt_ptr - {off}]
    .byte 0xea                            // ljmp 0x08:25f (physical)
    .long 25f - {off}
    .short 0x08

    // Not booted by a multiboot2 loader, or no long mode / NX: say so on COM1.
22:  mov esi, offset boot_msg_magic - {off}
    jmp 26f
23:  mov esi, offset boot_msg_cpu - {off}
26:  mov dx, 0x3f8
27:  lodsb
    test al, al
    jz 28f
    out dx, al
    jmp 27b
28:  mov al, 4                             // exit code: bad boot configuration
    mov dx, 0xf4
    out dx, al
29:  hlt
    jmp 29b

    .code64
25:  mov eax, 0x10
    mov ds, eax
    mov es, eax
    mov ss, eax
    xor eax, eax
    mov fs, eax
    mov gs, eax
    movabs rax, offset boot_high64
    jmp rax
boot_high64:
    movabs rsp, offset BOOT_STACK + {stack}
    xor ebp, ebp
    mov edi, esi                          // arch_entry(mbi_phys)
    call arch_entry
31: hlt
    jmp 31b

    .section .rodata
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff              // 0x08: 64-bit code
    .quad 0x00cf92000000ffff              // 0x10: data
boot_gdt_ptr:
    .short boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt - {off}
boot_msg_magic:
    .asciz "hypervisor: not started by a multiboot2 loader; halting\r\n"
boot_msg_cpu:
    .asciz "hypervisor: this CPU lacks long mode or NX; halting\r\n"
    .text
"#,
    off = const IMAGE_VIRT_OFFSET,
    stack = const BOOT_STACK_SIZE,
);
