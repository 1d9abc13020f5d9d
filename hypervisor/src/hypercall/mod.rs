// SPDX-License-Identifier: MIT OR Apache-2.0
//! Hypercall dispatch: one declarative table, number → handler, with the
//! privilege each needs. Handlers are thin: they decode their arguments, call
//! the object module and encode the result. Unknown or unimplemented numbers
//! answer -ENOSYS and are logged once each, so the log shows what a guest tried.

mod console;
mod domctl;
mod evtchn;
mod gnttab;
mod memory;
mod mm;
mod physdev;
mod sched;
mod sysctl;
mod traps;
mod vcpu;
mod version;

use crate::hal::{Fault, Guest};
#[cfg(target_os = "none")]
pub use mm::{LdtFault, invalidate_ldt, ldt_fault, new_baseptr};
use pv_abi::Errno;
use pv_abi::hypercall as nr;
pub use sched::{PollWait, SchedState};

/// The six argument registers: RDI, RSI, RDX, R10, R8, R9.
pub type Args = [u64; 6];

/// What the caller of a handler does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Return this value in RAX.
    Return(i64),
    /// The domain shut itself down with this `SHUTDOWN_*` reason.
    Shutdown(u32),
    /// SCHEDOP_block: wait for an event (then return 0).
    Block,
    /// SCHEDOP_yield: let another vCPU run (then return 0).
    Yield,
    /// SCHEDOP_poll: wait for a listed port or the deadline (then return 0).
    Poll(alloc::boxed::Box<PollWait>),
    /// `iret` inside a multicall: it takes effect and ends the batch; its
    /// result (the frame's RAX) goes to the entry at this address.
    Iret { result_at: u64 },
}

impl From<Result<i64, Errno>> for Outcome {
    fn from(r: Result<i64, Errno>) -> Self {
        Outcome::Return(r.unwrap_or_else(Errno::to_ret))
    }
}

impl From<Fault> for Errno {
    fn from(_: Fault) -> Self {
        Errno::EFAULT
    }
}

/// A C `int`/`unsigned int` argument (a command, a count, a vCPU): Xen reads
/// only the low 32 bits of the register, so upper garbage must not change
/// the meaning (the hostile guest showed that Xen does exactly this).
pub fn int(v: u64) -> Result<u32, core::convert::Infallible> {
    Ok(v as u32)
}

/// A structure from guest memory (a fault is -EFAULT).
fn read<T: zerocopy::FromBytes + zerocopy::IntoBytes>(guest: &mut dyn Guest, va: u64) -> Result<T, Errno> {
    let mut v = T::new_zeroed();
    guest.copy_from(va, v.as_mut_bytes())?;
    Ok(v)
}

/// Who is calling.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub domid: u16,
    pub privileged: bool,
    /// The hypervisor's command line (XENVER_commandline).
    pub hv_cmdline: &'a str,
    /// One past the highest machine frame (XENMEM_maximum_ram_page).
    pub max_page: u64,
    /// The TSC's frequency (XEN_SYSCTL_physinfo).
    pub tsc_khz: u32,
    /// The M2P table's frames: first and count (XENMEM_machphys_mfn_list).
    pub m2p_frames: (u64, u64),
    /// The image's build id (XENVER_build_id), empty if there is none.
    pub build_id: &'a [u8],
    /// The machine's memory map (XENMEM_machine_memory_map).
    pub host_memory_map: &'a [crate::boot::RawArea],
    /// System time (ns since boot), read only by the handlers that need it.
    pub now: fn() -> u64,
}

type Handler = fn(&Caller<'_>, &mut dyn Guest, &Args) -> Outcome;

pub struct Entry {
    pub nr: u32,
    pub handler: Handler,
    /// Only privileged domains may call it (others get -EPERM).
    pub privileged: bool,
}

macro_rules! hypercalls {
    ($($nr:path => $handler:path $(, $attr:ident)?;)*) => {
        /// Every hypercall the hypervisor implements.
        pub const TABLE: &[Entry] = &[$(
            Entry { nr: $nr, handler: $handler, privileged: hypercalls!(@privileged $($attr)?) },
        )*];
    };
    (@privileged privileged) => { true };
    (@privileged) => { false };
}

hypercalls! {
    nr::HYPERVISOR_SET_TRAP_TABLE => traps::set_trap_table;
    nr::HYPERVISOR_SET_GDT => traps::set_gdt;
    nr::HYPERVISOR_STACK_SWITCH => traps::stack_switch;
    nr::HYPERVISOR_SET_CALLBACKS => traps::set_callbacks;
    nr::HYPERVISOR_FPU_TASKSWITCH => traps::fpu_taskswitch;
    nr::HYPERVISOR_SET_DEBUGREG => traps::set_debugreg;
    nr::HYPERVISOR_GET_DEBUGREG => traps::get_debugreg;
    nr::HYPERVISOR_MMU_UPDATE => mm::mmu_update;
    nr::HYPERVISOR_UPDATE_VA_MAPPING => mm::update_va_mapping;
    nr::HYPERVISOR_MMUEXT_OP => mm::mmuext_op;
    nr::HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN => mm::update_va_mapping_otherdomain;
    nr::HYPERVISOR_SET_TIMER_OP => evtchn::set_timer_op;
    nr::HYPERVISOR_UPDATE_DESCRIPTOR => traps::update_descriptor;
    nr::HYPERVISOR_MULTICALL => multicall;
    nr::HYPERVISOR_VM_ASSIST => vm_assist;
    nr::HYPERVISOR_EVENT_CHANNEL_OP_COMPAT => evtchn::event_channel_op_compat;
    nr::HYPERVISOR_CONSOLE_IO => console::console_io, privileged;
    nr::HYPERVISOR_XEN_VERSION => version::xen_version;
    nr::HYPERVISOR_MEMORY_OP => memory::memory_op;
    nr::HYPERVISOR_GRANT_TABLE_OP => gnttab::grant_table_op;
    nr::HYPERVISOR_VCPU_OP => vcpu::vcpu_op;
    nr::HYPERVISOR_SET_SEGMENT_BASE => traps::set_segment_base;
    nr::HYPERVISOR_CALLBACK_OP => traps::callback_op;
    nr::HYPERVISOR_EVENT_CHANNEL_OP => evtchn::event_channel_op;
    nr::HYPERVISOR_PHYSDEV_OP => physdev::physdev_op;
    nr::HYPERVISOR_SCHED_OP => sched::sched_op;
    nr::HYPERVISOR_SCHED_OP_COMPAT => sched::sched_op_compat;
    nr::HYPERVISOR_SYSCTL => sysctl::sysctl, privileged;
    nr::HYPERVISOR_DOMCTL => domctl::domctl;
}

/// Fills a hypercall page with Xen's 64-bit PV stubs (32 bytes each; the
/// bytes are part of the ABI): `push %rcx; push %r11; mov $nr,%eax; syscall;
/// pop %r11; pop %rcx; ret`, and for `iret`, which does not return,
/// `push %rcx; push %r11; push %rax; mov $23,%eax; syscall`.
pub fn write_hypercall_page(page: &mut [u8; 4096]) {
    page.fill(0xcc); // int3 between stubs
    for (n, stub) in page.chunks_exact_mut(32).enumerate() {
        let n = n as u32;
        let imm = n.to_le_bytes();
        if n == nr::HYPERVISOR_IRET {
            stub[..11]
                .copy_from_slice(&[0x51, 0x41, 0x53, 0x50, 0xb8, imm[0], imm[1], imm[2], imm[3], 0x0f, 0x05]);
        } else {
            stub[..14].copy_from_slice(&[
                0x51, 0x41, 0x53, 0xb8, imm[0], imm[1], imm[2], imm[3], 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3,
            ]);
        }
    }
}

/// `multicall(entries, nr)`: each entry's hypercall runs in order and its
/// result is written back. `iret` and nested multicalls are refused per
/// entry; a shutdown ends the batch; `SCHEDOP_block` inside a batch returns
/// at once (there is no continuation to resume the rest after a wake-up).
fn multicall(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    use pv_abi::xen::MulticallEntry;
    use zerocopy::{FromZeros, IntoBytes};
    let (list, count) = (args[0], args[1] as u32);
    let size = core::mem::size_of::<MulticallEntry>() as u64;
    // The list's start must be guest memory even when it is empty, as in
    // Xen; each entry is checked as it is read.
    if !crate::hal::guest_range_ok(list, 1) {
        return Outcome::Return(Errno::EFAULT.to_ret());
    }
    for i in 0..u64::from(count) {
        let at = list.wrapping_add(i * size);
        let mut e = MulticallEntry::new_zeroed();
        if guest.copy_from(at, e.as_mut_bytes()).is_err() {
            return Outcome::Return(Errno::EFAULT.to_ret());
        }
        let result = match e.op {
            op if op == u64::from(nr::HYPERVISOR_MULTICALL) => Errno::EINVAL.to_ret(),
            // As in Xen, iret takes effect and ends the batch.
            op if op == u64::from(nr::HYPERVISOR_IRET) => {
                return Outcome::Iret {
                    result_at: at + core::mem::offset_of!(MulticallEntry, result) as u64,
                };
            }
            op => match dispatch(caller, guest, op, &e.args) {
                Outcome::Return(v) => v,
                Outcome::Block | Outcome::Poll(_) | Outcome::Yield => 0,
                o @ (Outcome::Shutdown(_) | Outcome::Iret { .. }) => return o,
            },
        };
        e.result = result as u64;
        if guest.copy_to(at, e.as_bytes()).is_err() {
            return Outcome::Return(Errno::EFAULT.to_ret());
        }
    }
    Outcome::Return(0)
}

/// `vm_assist(cmd, type)`: the assists a 64-bit PV guest may turn on or
/// off are recorded and acknowledged as Xen does. (The writable-page-table
/// emulation they name comes with the PV MMU.)
fn vm_assist(_caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    use pv_abi::xen::*;
    const VALID: u64 = (1 << VMASST_TYPE_4GB_SEGMENTS)
        | (1 << VMASST_TYPE_4GB_SEGMENTS_NOTIFY)
        | (1 << VMASST_TYPE_WRITABLE_PAGETABLES)
        | (1 << VMASST_TYPE_PAE_EXTENDED_CR3)
        | (1 << VMASST_TYPE_ARCHITECTURAL_IOPL)
        | (1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG)
        | (1 << VMASST_TYPE_M2P_STRICT);
    let (cmd, typ) = (args[0] as u32, args[1] as u32);
    if typ >= 64 || VALID & (1 << typ) == 0 {
        return Outcome::Return(Errno::EINVAL.to_ret());
    }
    let assists = &mut guest.traps().vm_assist;
    match cmd {
        VMASST_CMD_ENABLE => *assists |= 1 << typ,
        VMASST_CMD_DISABLE => *assists &= !(1 << typ),
        _ => return Outcome::Return(Errno::EINVAL.to_ret()),
    }
    Outcome::Return(0)
}

/// Numbers already logged as unimplemented.
static LOGGED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// TABLE's index of each hypercall number below 64 (u8::MAX: none), so that
/// dispatch is one lookup.
const BY_NUMBER: [u8; 64] = {
    let mut by = [u8::MAX; 64];
    let mut i = 0;
    while i < TABLE.len() {
        assert!(
            TABLE[i].nr < 64 && by[TABLE[i].nr as usize] == u8::MAX,
            "hypercall numbers are unique, below 64"
        );
        by[TABLE[i].nr as usize] = i as u8;
        i += 1;
    }
    by
};

/// Sub-ops (hypercall, first argument) already reported as not implemented.
static UNIMPLEMENTED: spin::Mutex<heapless::Vec<(u64, u64), 64>> = spin::Mutex::new(heapless::Vec::new());

/// Whether a hypercall's -ENOSYS for this sub-op is news (logged once: the
/// log shows what a guest tried; a guest cannot flood it).
fn first_unimplemented(number: u64, subop: u64) -> bool {
    let mut seen = UNIMPLEMENTED.lock();
    !seen.contains(&(number, subop)) && seen.push((number, subop)).is_ok()
}

pub fn dispatch(caller: &Caller<'_>, guest: &mut dyn Guest, number: u64, args: &Args) -> Outcome {
    let index = usize::try_from(number).ok().and_then(|n| BY_NUMBER.get(n)).copied();
    let entry = index.and_then(|i| TABLE.get(usize::from(i)));
    match entry {
        Some(e) if e.privileged && !caller.privileged => Outcome::Return(Errno::EPERM.to_ret()),
        Some(e) => {
            let out = (e.handler)(caller, guest, args);
            if out == Outcome::Return(Errno::ENOSYS.to_ret()) && first_unimplemented(number, args[0]) {
                let name = u32::try_from(number).ok().and_then(nr::name).unwrap_or("unknown");
                log::warn!(
                    "(d{}) {name} sub-op {} not implemented: -ENOSYS; args {:#x} {:#x} {:#x} {:#x} {:#x}",
                    caller.domid,
                    args[0],
                    args[0],
                    args[1],
                    args[2],
                    args[3],
                    args[4]
                );
            }
            out
        }
        None => {
            let bit = 1u64 << (number % 64);
            if LOGGED.fetch_or(bit, core::sync::atomic::Ordering::Relaxed) & bit == 0 {
                let name = u32::try_from(number).ok().and_then(nr::name).unwrap_or("unknown");
                log::warn!(
                    "(d{}) hypercall {number} ({name}) not implemented: -ENOSYS; args {:#x} {:#x} {:#x} {:#x} {:#x}",
                    caller.domid,
                    args[0],
                    args[1],
                    args[2],
                    args[3],
                    args[4]
                );
            }
            Outcome::Return(Errno::ENOSYS.to_ret())
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    #[test]
    fn unimplemented_subops_are_reported_once() {
        // Hypercall numbers no real one has, so other tests cannot interfere.
        assert!(first_unimplemented(1000, 7));
        assert!(!first_unimplemented(1000, 7), "once");
        assert!(first_unimplemented(1000, 8), "per sub-op");
        assert!(first_unimplemented(1001, 7), "per hypercall");
    }
    use crate::hal::fake::FakeGuest;

    pub const DOM0: Caller<'static> = Caller {
        domid: 0,
        privileged: true,
        hv_cmdline: "console=com1 loglvl=all",
        max_page: 0x8000,
        tsc_khz: 1_000_000,
        m2p_frames: (0x1000, 1024),
        build_id: &[],
        host_memory_map: &[],
        now: fake_now,
    };
    pub const DOMU: Caller<'static> = Caller {
        domid: 1,
        privileged: false,
        hv_cmdline: "",
        max_page: 0x8000,
        tsc_khz: 1_000_000,
        m2p_frames: (0x1000, 1024),
        build_id: &[],
        host_memory_map: &[],
        now: fake_now,
    };
    pub const BASE: u64 = 0xffff_ffff_8000_0000;
    /// The system time the test callers see.
    pub const NOW: u64 = 1_000_000;
    fn fake_now() -> u64 {
        NOW
    }

    #[test]
    fn multicall_runs_each_entry() {
        use pv_abi::xen::MulticallEntry;
        use zerocopy::{FromBytes, IntoBytes};
        let mut g = FakeGuest::new(BASE, 4096);
        let entries = [
            MulticallEntry { op: u64::from(nr::HYPERVISOR_XEN_VERSION), result: 0, args: [0; 6] },
            MulticallEntry { op: 999, result: 0, args: [0; 6] },
            MulticallEntry { op: u64::from(nr::HYPERVISOR_MULTICALL), result: 0, args: [0; 6] },
            MulticallEntry { op: u64::from(nr::HYPERVISOR_IRET), result: 0, args: [0; 6] },
        ];
        for (i, e) in entries.iter().enumerate() {
            g.mem[i * 64..i * 64 + 64].copy_from_slice(e.as_bytes());
        }
        let call = |g: &mut FakeGuest, list, n| {
            dispatch(&DOM0, g, u64::from(nr::HYPERVISOR_MULTICALL), &[list, n, 0, 0, 0, 0])
        };
        assert_eq!(call(&mut g, BASE, 3), Outcome::Return(0));
        let result = |g: &FakeGuest, i: usize| {
            MulticallEntry::read_from_bytes(&g.mem[i * 64..i * 64 + 64]).unwrap().result as i64
        };
        assert_eq!((result(&g, 0), result(&g, 1), result(&g, 2)), (0x4_0011, -38, -22));
        // iret takes effect and ends the batch: its result is the caller's to write.
        assert_eq!(call(&mut g, BASE, 4), Outcome::Iret { result_at: BASE + 3 * 64 + 8 });
        assert_eq!(call(&mut g, 0x10, 1), Outcome::Return(-14));
        assert_eq!(call(&mut g, BASE, 0), Outcome::Return(0));
        // A shutdown inside a batch ends it.
        let sd = MulticallEntry {
            op: u64::from(nr::HYPERVISOR_SCHED_OP),
            result: 0,
            args: [2, BASE + 1024, 0, 0, 0, 0],
        };
        g.mem[..64].copy_from_slice(sd.as_bytes());
        g.mem[1024..1028].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(call(&mut g, BASE, 3), Outcome::Shutdown(0));
    }

    #[test]
    fn hypercall_page_stubs() {
        let mut page = [0u8; 4096];
        write_hypercall_page(&mut page);
        assert_eq!(
            &page[29 * 32..29 * 32 + 14],
            &[0x51, 0x41, 0x53, 0xb8, 29, 0, 0, 0, 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3]
        );
        assert_eq!(&page[23 * 32..23 * 32 + 11], &[0x51, 0x41, 0x53, 0x50, 0xb8, 23, 0, 0, 0, 0x0f, 0x05]);
        assert_eq!(page[29 * 32 + 14], 0xcc);
    }

    #[test]
    fn table_has_no_duplicates_and_names_exist() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(nr::name(a.nr).is_some(), "{} has no name", a.nr);
            assert!(TABLE[i + 1..].iter().all(|b| b.nr != a.nr), "{} twice", a.nr);
        }
    }

    #[test]
    fn unknown_numbers_are_enosys_and_privilege_is_checked() {
        let mut g = FakeGuest::new(BASE, 4096);
        assert_eq!(dispatch(&DOM0, &mut g, 999, &[0; 6]), Outcome::Return(-38));
        assert_eq!(dispatch(&DOM0, &mut g, u64::MAX, &[0; 6]), Outcome::Return(-38));
        let args = [u64::from(pv_abi::xen::CONSOLEIO_WRITE), 2, BASE, 0, 0, 0];
        assert_eq!(dispatch(&DOMU, &mut g, u64::from(nr::HYPERVISOR_CONSOLE_IO), &args), Outcome::Return(-1));
        assert_eq!(dispatch(&DOM0, &mut g, u64::from(nr::HYPERVISOR_CONSOLE_IO), &args), Outcome::Return(0));
    }
}
