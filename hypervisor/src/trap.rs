// SPDX-License-Identifier: MIT OR Apache-2.0
//! Traps taken in the hypervisor: the uniform frame the entry stubs build,
//! dispatch by vector, and the exception and panic reports (vector, error
//! code, registers, CR2/CR3 and a symbolized backtrace), after which the run
//! ends with the panic exit code.

use crate::arch;
use crate::console::emergency_print;
use core::sync::atomic::{AtomicU64, Ordering};

/// The frame the entry stubs push: general registers, then the vector and
/// error code, then what the CPU pushed.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// General register by its x86 encoding (0 = RAX ... 4 = RSP ... 15 = R15).
    pub fn gpr(&self, n: u8) -> u64 {
        match n & 15 {
            0 => self.rax,
            1 => self.rcx,
            2 => self.rdx,
            3 => self.rbx,
            4 => self.rsp,
            5 => self.rbp,
            6 => self.rsi,
            7 => self.rdi,
            8 => self.r8,
            9 => self.r9,
            10 => self.r10,
            11 => self.r11,
            12 => self.r12,
            13 => self.r13,
            14 => self.r14,
            _ => self.r15,
        }
    }

    pub fn set_gpr(&mut self, n: u8, v: u64) {
        let r = match n & 15 {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            4 => &mut self.rsp,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            _ => &mut self.r15,
        };
        *r = v;
    }
}

/// Timer interrupts taken since boot.
pub static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);

const NAMES: [(&str, &str); 32] = [
    ("#DE", "Divide Error"),
    ("#DB", "Debug"),
    ("NMI", "Non-Maskable Interrupt"),
    ("#BP", "Breakpoint"),
    ("#OF", "Overflow"),
    ("#BR", "BOUND Range Exceeded"),
    ("#UD", "Invalid Opcode"),
    ("#NM", "Device Not Available"),
    ("#DF", "Double Fault"),
    ("#CSO", "Coprocessor Segment Overrun"),
    ("#TS", "Invalid TSS"),
    ("#NP", "Segment Not Present"),
    ("#SS", "Stack-Segment Fault"),
    ("#GP", "General Protection"),
    ("#PF", "Page Fault"),
    ("#15", "Reserved"),
    ("#MF", "x87 Floating-Point Error"),
    ("#AC", "Alignment Check"),
    ("#MC", "Machine Check"),
    ("#XM", "SIMD Floating-Point"),
    ("#VE", "Virtualization Exception"),
    ("#CP", "Control Protection"),
    ("#22", "Reserved"),
    ("#23", "Reserved"),
    ("#24", "Reserved"),
    ("#25", "Reserved"),
    ("#26", "Reserved"),
    ("#27", "Reserved"),
    ("#HV", "Hypervisor Injection"),
    ("#VC", "VMM Communication"),
    ("#SX", "Security Exception"),
    ("#31", "Reserved"),
];

pub fn dispatch(frame: &mut TrapFrame) {
    let from_guest = frame.cs & 3 == 3 && (frame.vector < 32 || frame.vector == u64::from(crate::pv::INT80));
    if from_guest || frame.vector == arch::guest::SYSCALL_VECTOR {
        return crate::pv::from_guest(frame);
    }
    // A guest pointer that faulted inside a copy, or a guest selector that
    // faulted on its load: resume at the fixup.
    if let Some(fixup) = arch::guest::copy_fixup(frame.rip, frame.vector) {
        frame.rip = fixup;
        return;
    }
    match frame.vector {
        0..=31 => exception(frame),
        v if v == u64::from(arch::apic::TIMER_VECTOR) => {
            TIMER_TICKS.fetch_add(1, Ordering::Relaxed);
            arch::apic::eoi();
            crate::pv::on_timer(frame);
        }
        v if v == u64::from(arch::apic::SERIAL_VECTOR) => {
            let any = crate::console::receive();
            arch::apic::eoi_8259();
            if any {
                crate::pv::on_console_input(frame);
            }
        }
        v if v == u64::from(arch::apic::SPURIOUS_VECTOR) => {}
        v => {
            log::warn!("unexpected interrupt vector {v:#x}");
            arch::apic::eoi();
        }
    }
}

/// Set while a report is printed, so that a fault inside it ends the run
/// instead of recursing.
static REPORTING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn exception(f: &TrapFrame) -> ! {
    if REPORTING.swap(true, Ordering::SeqCst) {
        emergency_print(format_args!(
            "\n*** nested exception {} at {:#x} while reporting\n",
            f.vector, f.rip
        ));
        arch::exit::exit(crate::exit_code::PANIC);
    }
    let (short, name) = NAMES[f.vector as usize];
    emergency_print(format_args!(
        "\n*** EXCEPTION {short} {name} (vector {}) in the hypervisor, error code {:#x}{}\n",
        f.vector,
        f.error_code,
        if f.vector == 14 { page_fault_bits(f.error_code) } else { "" },
    ));
    emergency_print(format_args!(
        "RIP={:016x} CS={:04x} RFLAGS={:016x}\nRSP={:016x} SS={:04x} CR2={:016x} CR3={:016x}\n",
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.ss,
        arch::cpu::read_cr2(),
        arch::cpu::read_cr3(),
    ));
    emergency_print(format_args!(
        "RAX={:016x} RBX={:016x} RCX={:016x} RDX={:016x}\nRSI={:016x} RDI={:016x} RBP={:016x} R8 ={:016x}\n\
         R9 ={:016x} R10={:016x} R11={:016x} R12={:016x}\nR13={:016x} R14={:016x} R15={:016x}\n",
        f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15,
    ));
    backtrace(Some(f.rip), f.rbp);
    arch::exit::exit(crate::exit_code::PANIC)
}

fn page_fault_bits(code: u64) -> &'static str {
    match code & 0x1f {
        0x00 => " [read, not present]",
        0x02 => " [write, not present]",
        0x01 => " [read, protection]",
        0x03 => " [write, protection]",
        0x10 => " [instruction fetch, not present]",
        0x11 => " [instruction fetch, protection]",
        _ => " [see SDM for bits]",
    }
}

/// Prints `rip` and the return addresses up the frame-pointer chain, with
/// demangled function names from the image's symbol table.
pub fn backtrace(rip: Option<u64>, rbp: u64) {
    emergency_print(format_args!("backtrace:\n"));
    let mut n = 0;
    if let Some(rip) = rip {
        print_frame(0, rip);
        n = 1;
    }
    arch::walk_stack(rbp, 32, |ret| {
        // The return address points after the call: look up the call itself.
        print_frame(n, ret.wrapping_sub(1));
        n += 1;
    });
}

fn print_frame(n: usize, addr: u64) {
    match crate::symbol_tables().and_then(|(s, t)| crate::symbols::lookup(s, t, addr)) {
        Some((name, off)) => emergency_print(format_args!(
            "  #{n:<2} {addr:016x} {:#}+{off:#x}\n",
            rustc_demangle::demangle(name)
        )),
        None => emergency_print(format_args!("  #{n:<2} {addr:016x} ?\n")),
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if REPORTING.swap(true, Ordering::SeqCst) {
        emergency_print(format_args!("\n*** nested panic while reporting: {info}\n"));
        arch::exit::exit(crate::exit_code::PANIC);
    }
    emergency_print(format_args!("\n*** PANIC in the hypervisor: {}\n", info));
    backtrace(None, arch::frame_pointer());
    arch::exit::exit(crate::exit_code::PANIC)
}
