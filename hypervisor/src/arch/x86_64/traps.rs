// SPDX-License-Identifier: MIT OR Apache-2.0
//! Interrupt and exception entry: 256 stubs of 16 bytes that push a uniform
//! frame and call `trap::dispatch` in the generic layer.

pub use crate::trap::TrapFrame;

// Vectors for which the CPU pushes an error code.
core::arch::global_asm!(
    r#"
    .section .text.traps, "ax"
    .balign 16
    .global trap_stubs
trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    push 0
    .endif
    push vec
    jmp trap_common
    .set vec, vec + 1
    .endr

    .global trap_common
trap_common:
    push r15
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rbp
    push rdi
    push rsi
    push rdx
    push rcx
    push rbx
    push rax
    cld
    mov rdi, rsp
    call {dispatch}
    .global trap_return
trap_return:
    pop rax
    pop rbx
    pop rcx
    pop rdx
    pop rsi
    pop rdi
    pop rbp
    pop r8
    pop r9
    pop r10
    pop r11
    pop r12
    pop r13
    pop r14
    pop r15
    add rsp, 16
    iretq
    .text
"#,
    dispatch = sym trap_entry,
);

extern "C" fn trap_entry(frame: &mut TrapFrame) {
    crate::trap::dispatch(frame);
}
