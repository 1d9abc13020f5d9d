// SPDX-License-Identifier: MIT OR Apache-2.0
//! Guest-side hypercalls through the hypercall page (feature `guest`, x86_64 only).
//!
//! The hypervisor (or domain builder) fills the page named by the kernel's
//! `XEN_ELFNOTE_HYPERCALL_PAGE` note with one 32-byte stub per hypercall number; a
//! stub loads the number into EAX and executes SYSCALL. [`Hypercalls`] calls those
//! stubs with the arguments in RDI, RSI, RDX, R10 and R8 and turns the result in RAX
//! into `Result<_, XenError>`. `HYPERVISOR_iret` is special: the guest jumps to its
//! stub with a frame on the stack, see [`Hypercalls::iret`].
//!
//! Wrappers are safe when the call can only read or write the argument buffers it is
//! given. Calls that change the address space, descriptor tables, entry points or
//! frames the guest owns (page-table updates, grant mappings, callbacks, memory
//! reservations, ...) are `unsafe fn`s with the contract written on each.
//!
//! ```no_run
//! use pv_abi::guest::Hypercalls;
//! use pv_abi::sched::SHUTDOWN_POWEROFF;
//!
//! fn start_of_day(hypercall_page: *const u8) -> Result<(), pv_abi::XenError> {
//!     // SAFETY: the builder filled this page with stubs (XEN_ELFNOTE_HYPERCALL_PAGE).
//!     let xen = unsafe { Hypercalls::new(hypercall_page) };
//!     xen.console_write(b"hello from a PV guest\n")?;
//!     let (major, minor) = xen.xen_version();
//!     let _ = (major, minor);
//!     xen.sched_shutdown(SHUTDOWN_POWEROFF)
//! }
//! ```

use core::arch::asm;
use core::mem::{offset_of, size_of};

use zerocopy::{FromZeros, Immutable, IntoBytes};

use crate::arch_x86::{IretContext, TrapInfo, VcpuGuestContext, XenCallback};
use crate::callback::{CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER, CallbackRegister, CallbackUnregister};
use crate::domctl::*;
use crate::errno::XenError;
use crate::event_channel::*;
use crate::grant_table::*;
use crate::hypercall::*;
use crate::memory::*;
use crate::physdev::*;
use crate::platform::{XENPF_GET_CPUINFO, XENPF_SETTIME64, XenPlatformOp, XenpfPcpuinfo, XenpfSettime64};
use crate::sched::*;
use crate::sysctl::*;
use crate::vcpu::*;
use crate::version::*;
use crate::xen::*;
use crate::{Errno, layout::UnionBytes};

/// The hypercall page of a PV guest and typed calls through it.
#[derive(Clone, Copy, Debug)]
pub struct Hypercalls {
    page: usize,
}

/// Address of a value, as a hypercall argument.
fn addr<T: ?Sized>(v: &T) -> u64 {
    v as *const T as *const u8 as usize as u64
}

/// Address of a mutable value, as a hypercall argument.
fn addr_mut<T: ?Sized>(v: &mut T) -> u64 {
    v as *mut T as *mut u8 as usize as u64
}

/// A slice length as a hypercall count argument.
fn count<T>(s: &[T]) -> u64 {
    s.len() as u64
}

impl Hypercalls {
    /// Uses the hypercall page at `page`.
    ///
    /// # Safety
    ///
    /// `page` must be the guest's hypercall page, filled by the hypervisor with Xen's
    /// stubs, mapped executable for as long as this value (or a copy) is used.
    pub unsafe fn new(page: *const u8) -> Self {
        Self { page: page as usize }
    }

    /// The hypercall page.
    pub fn page(&self) -> *const u8 {
        self.page as *const u8
    }

    /// Calls hypercall `nr` with five arguments and returns RAX unchanged.
    ///
    /// # Safety
    ///
    /// The call must be valid for its arguments: any pointer among them must be valid
    /// for what hypercall `nr` reads or writes through it, and the effects of the call
    /// (on mappings, control flow, memory given away) must not break the caller's
    /// invariants.
    #[inline]
    pub unsafe fn call(&self, nr: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
        let entry = self.page + nr as usize * HYPERCALL_STUB_SIZE;
        let ret: i64;
        // SAFETY: the caller guarantees the page holds Xen's stubs and the arguments are
        // valid for hypercall `nr`. The stub sets EAX and executes SYSCALL; RCX and R11
        // and all argument registers are treated as clobbered (Xen's debug builds
        // poison unused argument registers). Memory is clobbered (no `nomem`), and the
        // stack is used by `call`, so `nostack` is not given.
        unsafe {
            asm!(
                "call {entry}",
                entry = in(reg) entry,
                inlateout("rdi") a1 => _,
                inlateout("rsi") a2 => _,
                inlateout("rdx") a3 => _,
                inlateout("r10") a4 => _,
                inlateout("r8") a5 => _,
                lateout("rax") ret,
                out("rcx") _,
                out("r11") _,
                out("r9") _,
            );
        }
        ret
    }

    /// [`Hypercalls::call`] with the result checked as a Xen errno.
    ///
    /// # Safety
    ///
    /// As for [`Hypercalls::call`].
    #[inline]
    pub unsafe fn call_checked(
        &self,
        nr: u32,
        a1: u64,
        a2: u64,
        a3: u64,
        a4: u64,
        a5: u64,
    ) -> Result<u64, XenError> {
        // SAFETY: forwarded contract.
        Errno::check(unsafe { self.call(nr, a1, a2, a3, a4, a5) })
    }

    /// A `cmd, *arg` hypercall whose only memory effect is on `*arg`.
    fn op_on<T: IntoBytes>(&self, nr: u32, cmd: u32, arg: &mut T) -> Result<u64, XenError> {
        // SAFETY: callers use this only for commands that read and write nothing but
        // the argument structure, which is valid and exclusively borrowed for the call.
        unsafe { self.call_checked(nr, cmd as u64, addr_mut(arg), 0, 0, 0) }
    }

    /// A `cmd, *arg` hypercall that only reads `*arg`.
    fn op_in<T: Immutable>(&self, nr: u32, cmd: u32, arg: &T) -> Result<u64, XenError> {
        // SAFETY: callers use this only for commands that read nothing but the argument
        // structure and write nothing the caller can observe.
        unsafe { self.call_checked(nr, cmd as u64, addr(arg), 0, 0, 0) }
    }

    // ---- HYPERVISOR_iret ----

    /// Returns from an exception or event frame through the `iret` stub.
    ///
    /// Pushes the guest part of `frame` (`flags` to `ss`), loads RAX, R11 and RCX from
    /// it and jumps to the stub, which pushes them and enters the hypervisor.
    ///
    /// # Safety
    ///
    /// `frame` must describe a valid return context (code selector, stack and
    /// instruction pointer the guest may resume at); nothing after the call runs.
    pub unsafe fn iret(&self, frame: &IretContext) -> ! {
        let entry = self.page + HYPERVISOR_IRET as usize * HYPERCALL_STUB_SIZE;
        // SAFETY: the caller guarantees `frame` is a valid return context; the stub
        // consumes the frame built here on the current stack and never returns.
        unsafe {
            asm!(
                "push qword ptr [rdi + {ss}]",
                "push qword ptr [rdi + {rsp}]",
                "push qword ptr [rdi + {rflags}]",
                "push qword ptr [rdi + {cs}]",
                "push qword ptr [rdi + {rip}]",
                "push qword ptr [rdi + {flags}]",
                "mov rax, qword ptr [rdi + {rax}]",
                "mov r11, qword ptr [rdi + {r11}]",
                "mov rcx, qword ptr [rdi + {rcx}]",
                "jmp rsi",
                in("rdi") frame as *const IretContext,
                in("rsi") entry,
                ss = const offset_of!(IretContext, ss),
                rsp = const offset_of!(IretContext, rsp),
                rflags = const offset_of!(IretContext, rflags),
                cs = const offset_of!(IretContext, cs),
                rip = const offset_of!(IretContext, rip),
                flags = const offset_of!(IretContext, flags),
                rax = const offset_of!(IretContext, rax),
                r11 = const offset_of!(IretContext, r11),
                rcx = const offset_of!(IretContext, rcx),
                options(noreturn),
            )
        }
    }

    // ---- console_io ----

    /// Writes `text` to the hypervisor console (`CONSOLEIO_write`).
    pub fn console_write(&self, text: &[u8]) -> Result<(), XenError> {
        // SAFETY: the hypervisor only reads `text`.
        unsafe {
            self.call_checked(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE as u64, count(text), addr(text), 0, 0)
        }
        .map(drop)
    }

    /// Reads pending console input into `buf` (`CONSOLEIO_read`, dom0); returns bytes read.
    pub fn console_read(&self, buf: &mut [u8]) -> Result<usize, XenError> {
        let len = count(buf);
        // SAFETY: the hypervisor writes at most `len` bytes into `buf`.
        unsafe { self.call_checked(HYPERVISOR_CONSOLE_IO, CONSOLEIO_READ as u64, len, addr_mut(buf), 0, 0) }
            .map(|n| n as usize)
    }

    // ---- sched_op ----

    /// Gives up the CPU (`SCHEDOP_yield`).
    pub fn sched_yield(&self) -> Result<(), XenError> {
        // SAFETY: no memory argument.
        unsafe { self.call_checked(HYPERVISOR_SCHED_OP, SCHEDOP_YIELD as u64, 0, 0, 0, 0) }.map(drop)
    }

    /// Blocks until an event is pending (`SCHEDOP_block`); unmask events first.
    pub fn sched_block(&self) -> Result<(), XenError> {
        // SAFETY: no memory argument.
        unsafe { self.call_checked(HYPERVISOR_SCHED_OP, SCHEDOP_BLOCK as u64, 0, 0, 0, 0) }.map(drop)
    }

    /// Shuts the domain down with a `SHUTDOWN_*` reason (`SCHEDOP_shutdown`). Returns
    /// only for `SHUTDOWN_suspend` (after resume) or on error.
    pub fn sched_shutdown(&self, reason: u32) -> Result<(), XenError> {
        let mut arg = SchedShutdown { reason };
        self.op_on(HYPERVISOR_SCHED_OP, SCHEDOP_SHUTDOWN, &mut arg).map(drop)
    }

    /// Records a shutdown reason for a later crash or exit (`SCHEDOP_shutdown_code`).
    pub fn sched_shutdown_code(&self, reason: u32) -> Result<(), XenError> {
        let mut arg = SchedShutdown { reason };
        self.op_on(HYPERVISOR_SCHED_OP, SCHEDOP_SHUTDOWN_CODE, &mut arg).map(drop)
    }

    /// Blocks until one of `ports` is pending or system time `timeout` (0: none)
    /// passes (`SCHEDOP_poll`).
    pub fn sched_poll(&self, ports: &[EvtchnPort], timeout: u64) -> Result<(), XenError> {
        let mut arg = SchedPoll {
            ports: GuestHandle::from_ptr(ports.as_ptr()),
            nr_ports: ports.len() as u32,
            _pad: 0,
            timeout,
        };
        self.op_on(HYPERVISOR_SCHED_OP, SCHEDOP_POLL, &mut arg).map(drop)
    }

    /// Shuts another domain down (`SCHEDOP_remote_shutdown`, privileged).
    pub fn sched_remote_shutdown(&self, domain_id: DomId, reason: u32) -> Result<(), XenError> {
        let mut arg = SchedRemoteShutdown { domain_id, _pad: 0, reason };
        self.op_on(HYPERVISOR_SCHED_OP, SCHEDOP_REMOTE_SHUTDOWN, &mut arg).map(drop)
    }

    /// Arms (`id` 0: allocates), re-arms or (`timeout` 0) stops a watchdog
    /// (`SCHEDOP_watchdog`); returns the watchdog id when allocating.
    pub fn sched_watchdog(&self, id: u32, timeout: u32) -> Result<u32, XenError> {
        let mut arg = SchedWatchdog { id, timeout };
        self.op_on(HYPERVISOR_SCHED_OP, SCHEDOP_WATCHDOG, &mut arg).map(|r| r as u32)
    }

    /// Temporarily pins this vCPU to `pcpu` (-1 ends it; `SCHEDOP_pin_override`, dom0).
    pub fn sched_pin_override(&self, pcpu: i32) -> Result<(), XenError> {
        let mut arg = SchedPinOverride { pcpu };
        self.op_on(HYPERVISOR_SCHED_OP, SCHEDOP_PIN_OVERRIDE, &mut arg).map(drop)
    }

    // ---- set_timer_op ----

    /// Arms the one-shot timer for absolute system time `timeout_ns` (0 cancels).
    pub fn set_timer_op(&self, timeout_ns: u64) -> Result<(), XenError> {
        // SAFETY: no memory argument.
        unsafe { self.call_checked(HYPERVISOR_SET_TIMER_OP, timeout_ns, 0, 0, 0, 0) }.map(drop)
    }

    // ---- xen_version ----

    /// `(major, minor)` of the hypervisor (`XENVER_version`).
    pub fn xen_version(&self) -> (u16, u16) {
        // SAFETY: XENVER_version takes no buffer.
        let ret = unsafe { self.call(HYPERVISOR_XEN_VERSION, XENVER_VERSION as u64, 0, 0, 0, 0) };
        split_version(ret as u32)
    }

    /// Copies a fixed-size version item (`XENVER_*`) into a value of its type.
    fn version_into<T: IntoBytes + FromZeros>(&self, cmd: u32) -> Result<T, XenError> {
        let mut out = T::new_zeroed();
        // SAFETY: for the commands used with this helper the hypervisor writes exactly
        // `size_of::<T>()` bytes into `out`.
        unsafe { self.call_checked(HYPERVISOR_XEN_VERSION, cmd as u64, addr_mut(&mut out), 0, 0, 0) }?;
        Ok(out)
    }

    /// Extra version string (`XENVER_extraversion`).
    pub fn xen_extraversion(&self) -> Result<XenExtraversion, XenError> {
        self.version_into(XENVER_EXTRAVERSION)
    }

    /// Build information (`XENVER_compile_info`).
    pub fn xen_compile_info(&self) -> Result<XenCompileInfo, XenError> {
        self.version_into(XENVER_COMPILE_INFO)
    }

    /// Capabilities string (`XENVER_capabilities`).
    pub fn xen_capabilities(&self) -> Result<XenCapabilitiesInfo, XenError> {
        self.version_into(XENVER_CAPABILITIES)
    }

    /// Changeset string (`XENVER_changeset`).
    pub fn xen_changeset(&self) -> Result<XenChangesetInfo, XenError> {
        self.version_into(XENVER_CHANGESET)
    }

    /// Start of the hypervisor's virtual area (`XENVER_platform_parameters`).
    pub fn xen_platform_parameters(&self) -> Result<XenPlatformParameters, XenError> {
        self.version_into(XENVER_PLATFORM_PARAMETERS)
    }

    /// Hypervisor command line (`XENVER_commandline`, privileged).
    pub fn xen_commandline(&self) -> Result<XenCommandline, XenError> {
        self.version_into(XENVER_COMMANDLINE)
    }

    /// Feature word `index` (`XENVER_get_features`).
    pub fn xen_get_features(&self, index: u32) -> Result<u32, XenError> {
        let mut info = XenFeatureInfo { submap_idx: index, submap: 0 };
        self.op_on(HYPERVISOR_XEN_VERSION, XENVER_GET_FEATURES, &mut info)?;
        Ok(info.submap)
    }

    /// Page size (`XENVER_pagesize`).
    pub fn xen_pagesize(&self) -> Result<u64, XenError> {
        // SAFETY: XENVER_pagesize takes no buffer.
        unsafe { self.call_checked(HYPERVISOR_XEN_VERSION, XENVER_PAGESIZE as u64, 0, 0, 0, 0) }
    }

    // ---- event_channel_op ----

    /// An event-channel command whose only memory effect is on its argument structure.
    fn evtchn<T: IntoBytes>(&self, cmd: u32, arg: &mut T) -> Result<(), XenError> {
        self.op_on(HYPERVISOR_EVENT_CHANNEL_OP, cmd, arg).map(drop)
    }

    /// The deprecated `event_channel_op_compat` with an [`EvtchnOp`] wrapper (for old
    /// kernels' sake; new code uses the typed `evtchn_*` calls).
    pub fn event_channel_op_compat(&self, op: &mut EvtchnOp) -> Result<(), XenError> {
        // SAFETY: the compat commands (those in the `evtchn_op` union) only read and
        // write the wrapper.
        unsafe { self.call_checked(HYPERVISOR_EVENT_CHANNEL_OP_COMPAT, addr_mut(op), 0, 0, 0, 0) }.map(drop)
    }

    /// Allocates a port of `dom` that `remote_dom` may bind (`EVTCHNOP_alloc_unbound`).
    pub fn evtchn_alloc_unbound(&self, dom: DomId, remote_dom: DomId) -> Result<EvtchnPort, XenError> {
        let mut a = EvtchnAllocUnbound { dom, remote_dom, port: 0 };
        self.evtchn(EVTCHNOP_ALLOC_UNBOUND, &mut a)?;
        Ok(a.port)
    }

    /// Connects to `remote_port` of `remote_dom` (`EVTCHNOP_bind_interdomain`).
    pub fn evtchn_bind_interdomain(
        &self,
        remote_dom: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, XenError> {
        let mut a = EvtchnBindInterdomain { remote_dom, _pad: 0, remote_port, local_port: 0 };
        self.evtchn(EVTCHNOP_BIND_INTERDOMAIN, &mut a)?;
        Ok(a.local_port)
    }

    /// Binds `virq` on `vcpu` to a new port (`EVTCHNOP_bind_virq`).
    pub fn evtchn_bind_virq(&self, virq: u32, vcpu: u32) -> Result<EvtchnPort, XenError> {
        let mut a = EvtchnBindVirq { virq, vcpu, port: 0 };
        self.evtchn(EVTCHNOP_BIND_VIRQ, &mut a)?;
        Ok(a.port)
    }

    /// Binds physical IRQ `pirq` to a new port (`EVTCHNOP_bind_pirq`).
    pub fn evtchn_bind_pirq(&self, pirq: u32, flags: u32) -> Result<EvtchnPort, XenError> {
        let mut a = EvtchnBindPirq { pirq, flags, port: 0 };
        self.evtchn(EVTCHNOP_BIND_PIRQ, &mut a)?;
        Ok(a.port)
    }

    /// Allocates an IPI port delivered to `vcpu` (`EVTCHNOP_bind_ipi`).
    pub fn evtchn_bind_ipi(&self, vcpu: u32) -> Result<EvtchnPort, XenError> {
        let mut a = EvtchnBindIpi { vcpu, port: 0 };
        self.evtchn(EVTCHNOP_BIND_IPI, &mut a)?;
        Ok(a.port)
    }

    /// Closes `port` (`EVTCHNOP_close`).
    pub fn evtchn_close(&self, port: EvtchnPort) -> Result<(), XenError> {
        self.evtchn(EVTCHNOP_CLOSE, &mut EvtchnClose { port })
    }

    /// Signals the remote end of `port` (`EVTCHNOP_send`).
    pub fn evtchn_send(&self, port: EvtchnPort) -> Result<(), XenError> {
        self.evtchn(EVTCHNOP_SEND, &mut EvtchnSend { port })
    }

    /// State of `port` of `dom` (`EVTCHNOP_status`).
    pub fn evtchn_status(&self, dom: DomId, port: EvtchnPort) -> Result<EvtchnStatus, XenError> {
        let mut a = EvtchnStatus { dom, port, ..Default::default() };
        self.evtchn(EVTCHNOP_STATUS, &mut a)?;
        Ok(a)
    }

    /// Delivers `port`'s events to `vcpu` (`EVTCHNOP_bind_vcpu`).
    pub fn evtchn_bind_vcpu(&self, port: EvtchnPort, vcpu: u32) -> Result<(), XenError> {
        self.evtchn(EVTCHNOP_BIND_VCPU, &mut EvtchnBindVcpu { port, vcpu })
    }

    /// Unmasks `port` (`EVTCHNOP_unmask`).
    pub fn evtchn_unmask(&self, port: EvtchnPort) -> Result<(), XenError> {
        self.evtchn(EVTCHNOP_UNMASK, &mut EvtchnUnmask { port })
    }

    /// Closes all ports of `dom` (`EVTCHNOP_reset`).
    pub fn evtchn_reset(&self, dom: DomId) -> Result<(), XenError> {
        self.evtchn(EVTCHNOP_RESET, &mut EvtchnReset { dom })
    }

    /// Sets `port`'s FIFO priority (`EVTCHNOP_set_priority`).
    pub fn evtchn_set_priority(&self, port: EvtchnPort, priority: u32) -> Result<(), XenError> {
        self.evtchn(EVTCHNOP_SET_PRIORITY, &mut EvtchnSetPriority { port, priority })
    }

    /// Switches to FIFO delivery for `vcpu` (`EVTCHNOP_init_control`); returns the
    /// number of link bits.
    ///
    /// # Safety
    ///
    /// Frame `control_gfn` (at `offset`) becomes the hypervisor-written control block
    /// for good: no Rust object may live there except one built for this purpose.
    pub unsafe fn evtchn_init_control(
        &self,
        control_gfn: u64,
        offset: u32,
        vcpu: u32,
    ) -> Result<u8, XenError> {
        let mut a = EvtchnInitControl { control_gfn, offset, vcpu, link_bits: 0, _pad: [0; 7] };
        self.evtchn(EVTCHNOP_INIT_CONTROL, &mut a)?;
        Ok(a.link_bits)
    }

    /// Adds frame `array_gfn` as a page of FIFO event words (`EVTCHNOP_expand_array`).
    ///
    /// # Safety
    ///
    /// The frame becomes hypervisor-written event words for good.
    pub unsafe fn evtchn_expand_array(&self, array_gfn: u64) -> Result<(), XenError> {
        self.evtchn(EVTCHNOP_EXPAND_ARRAY, &mut EvtchnExpandArray { array_gfn })
    }

    // ---- grant_table_op ----

    /// `HYPERVISOR_grant_table_op(cmd, ops, ops.len())` on any operation array;
    /// returns the hypercall's result (per-entry results are in each `status`).
    ///
    /// # Safety
    ///
    /// `cmd` must match `T`, and the operations' effects (mappings created or removed at
    /// `host_addr`, frames copied into or given away) must not break the caller's
    /// memory invariants.
    pub unsafe fn grant_table_op<T: IntoBytes>(&self, cmd: u32, ops: &mut [T]) -> Result<u64, XenError> {
        let n = count(ops);
        // SAFETY: forwarded contract; `ops` is valid for `n` entries.
        unsafe { self.call_checked(HYPERVISOR_GRANT_TABLE_OP, cmd as u64, addr_mut(ops), n, 0, 0) }
    }

    /// A grant operation whose only memory effect is on the one argument structure.
    fn gnttab_one<T: IntoBytes>(&self, cmd: u32, arg: &mut T) -> Result<(), XenError> {
        // SAFETY: used only for commands that read and write nothing but `arg` and the
        // buffers it names, which the safe callers own for the call.
        unsafe { self.grant_table_op(cmd, core::slice::from_mut(arg)) }.map(drop)
    }

    /// Maps granted frames (`GNTTABOP_map_grant_ref`).
    ///
    /// # Safety
    ///
    /// Each `host_addr` must be an address (or PTE) the caller has reserved for the
    /// mapping; nothing else may be mapped there.
    pub unsafe fn gnttab_map_grant_ref(&self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.grant_table_op(GNTTABOP_MAP_GRANT_REF, ops) }.map(drop)
    }

    /// Unmaps granted frames (`GNTTABOP_unmap_grant_ref`).
    ///
    /// # Safety
    ///
    /// No reference into the unmapped pages may be used afterwards.
    pub unsafe fn gnttab_unmap_grant_ref(&self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.grant_table_op(GNTTABOP_UNMAP_GRANT_REF, ops) }.map(drop)
    }

    /// Copies between granted and local frames (`GNTTABOP_copy`).
    ///
    /// # Safety
    ///
    /// Local destination frames must be memory the caller may overwrite.
    pub unsafe fn gnttab_copy(&self, ops: &mut [GnttabCopy]) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.grant_table_op(GNTTABOP_COPY, ops) }.map(drop)
    }

    /// Transfers frames to other domains (`GNTTABOP_transfer`).
    ///
    /// # Safety
    ///
    /// The frames given away must no longer be used by the caller.
    pub unsafe fn gnttab_transfer(&self, ops: &mut [GnttabTransfer]) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.grant_table_op(GNTTABOP_TRANSFER, ops) }.map(drop)
    }

    /// Unmaps grants and puts other mappings in their place (`GNTTABOP_unmap_and_replace`).
    ///
    /// # Safety
    ///
    /// As for [`Hypercalls::gnttab_unmap_grant_ref`].
    pub unsafe fn gnttab_unmap_and_replace(&self, ops: &mut [GnttabUnmapAndReplace]) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.grant_table_op(GNTTABOP_UNMAP_AND_REPLACE, ops) }.map(drop)
    }

    /// Fills `frames` with the frames of `dom`'s grant table, growing it to
    /// `frames.len()` (`GNTTABOP_setup_table`); returns the `GNTST_*` status.
    pub fn gnttab_setup_table(&self, dom: DomId, frames: &mut [XenPfn]) -> Result<i16, XenError> {
        let mut a = GnttabSetupTable {
            dom,
            nr_frames: frames.len() as u32,
            frame_list: GuestHandle::from_ptr(frames.as_mut_ptr()),
            ..Default::default()
        };
        self.gnttab_one(GNTTABOP_SETUP_TABLE, &mut a)?;
        Ok(a.status)
    }

    /// Current and maximum table frames of `dom` (`GNTTABOP_query_size`).
    pub fn gnttab_query_size(&self, dom: DomId) -> Result<GnttabQuerySize, XenError> {
        let mut a = GnttabQuerySize { dom, ..Default::default() };
        self.gnttab_one(GNTTABOP_QUERY_SIZE, &mut a)?;
        Ok(a)
    }

    /// Dumps `dom`'s table to the hypervisor console (`GNTTABOP_dump_table`).
    pub fn gnttab_dump_table(&self, dom: DomId) -> Result<i16, XenError> {
        let mut a = GnttabDumpTable { dom, status: 0 };
        self.gnttab_one(GNTTABOP_DUMP_TABLE, &mut a)?;
        Ok(a.status)
    }

    /// Selects table format `version` (`GNTTABOP_set_version`); returns the version in use.
    pub fn gnttab_set_version(&self, version: u32) -> Result<u32, XenError> {
        let mut a = GnttabSetVersion { version };
        self.gnttab_one(GNTTABOP_SET_VERSION, &mut a)?;
        Ok(a.version)
    }

    /// Table format of `dom` (`GNTTABOP_get_version`).
    pub fn gnttab_get_version(&self, dom: DomId) -> Result<u32, XenError> {
        let mut a = GnttabGetVersion { dom, pad: 0, version: 0 };
        self.gnttab_one(GNTTABOP_GET_VERSION, &mut a)?;
        Ok(a.version)
    }

    /// Fills `frames` with `dom`'s v2 status frames (`GNTTABOP_get_status_frames`).
    pub fn gnttab_get_status_frames(&self, dom: DomId, frames: &mut [u64]) -> Result<i16, XenError> {
        let mut a = GnttabGetStatusFrames {
            nr_frames: frames.len() as u32,
            dom,
            status: 0,
            frame_list: GuestHandle::from_ptr(frames.as_mut_ptr()),
        };
        self.gnttab_one(GNTTABOP_GET_STATUS_FRAMES, &mut a)?;
        Ok(a.status)
    }

    /// Swaps two entries of the caller's table (`GNTTABOP_swap_grant_ref`).
    pub fn gnttab_swap_grant_ref(&self, ref_a: GrantRef, ref_b: GrantRef) -> Result<i16, XenError> {
        let mut a = GnttabSwapGrantRef { ref_a, ref_b, status: 0, _pad: 0 };
        self.gnttab_one(GNTTABOP_SWAP_GRANT_REF, &mut a)?;
        Ok(a.status)
    }

    // ---- MMU ----

    /// Applies page-table and M2P updates for domain `foreign` (`DOMID_SELF` usually)
    /// (`HYPERVISOR_mmu_update`); returns how many were done.
    ///
    /// # Safety
    ///
    /// The updates must not unmap or remap memory the caller's Rust code still uses,
    /// nor map anything where Rust objects are expected.
    pub unsafe fn mmu_update(&self, reqs: &[MmuUpdate], foreign: DomId) -> Result<u32, XenError> {
        let mut done = 0u32;
        // SAFETY: forwarded contract; `reqs` is valid for its length and `done` is a
        // valid out-parameter.
        unsafe {
            self.call_checked(
                HYPERVISOR_MMU_UPDATE,
                addr(reqs),
                count(reqs),
                addr_mut(&mut done),
                foreign as u64,
                0,
            )
        }?;
        Ok(done)
    }

    /// Runs extended MMU operations (`HYPERVISOR_mmuext_op`); returns how many were done.
    ///
    /// # Safety
    ///
    /// As for [`Hypercalls::mmu_update`]: pinning, base-pointer switches, LDT changes and
    /// page copies must preserve the caller's memory invariants; vCPU masks named in the
    /// operations must be valid.
    pub unsafe fn mmuext_op(&self, ops: &[MmuextOp], foreign: DomId) -> Result<u32, XenError> {
        let mut done = 0u32;
        // SAFETY: forwarded contract.
        unsafe {
            self.call_checked(
                HYPERVISOR_MMUEXT_OP,
                addr(ops),
                count(ops),
                addr_mut(&mut done),
                foreign as u64,
                0,
            )
        }?;
        Ok(done)
    }

    /// Writes the PTE mapping virtual address `va` (`HYPERVISOR_update_va_mapping`);
    /// `flags` is a `UVMF_*` combination.
    ///
    /// # Safety
    ///
    /// The new mapping must preserve the caller's memory invariants.
    pub unsafe fn update_va_mapping(&self, va: u64, pte: u64, flags: UvmfFlags) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_UPDATE_VA_MAPPING, va, pte, flags.bits(), 0, 0) }.map(drop)
    }

    /// Like [`Hypercalls::update_va_mapping`] with a frame of domain `dom`
    /// (`HYPERVISOR_update_va_mapping_otherdomain`).
    ///
    /// # Safety
    ///
    /// As for [`Hypercalls::update_va_mapping`].
    pub unsafe fn update_va_mapping_otherdomain(
        &self,
        va: u64,
        pte: u64,
        flags: UvmfFlags,
        dom: DomId,
    ) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe {
            self.call_checked(HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN, va, pte, flags.bits(), dom as u64, 0)
        }
        .map(drop)
    }

    /// Enables or disables a VM assist (`HYPERVISOR_vm_assist`, `VMASST_*`).
    pub fn vm_assist(&self, cmd: u32, assist: u32) -> Result<(), XenError> {
        // SAFETY: no memory argument; assists change how later updates are validated.
        unsafe { self.call_checked(HYPERVISOR_VM_ASSIST, cmd as u64, assist as u64, 0, 0, 0) }.map(drop)
    }

    // ---- CPU state ----

    /// Installs the virtual IDT (`HYPERVISOR_set_trap_table`); a zero `address` entry
    /// must end the table.
    ///
    /// # Safety
    ///
    /// Every handler must be a valid entry point for its vector.
    pub unsafe fn set_trap_table(&self, table: &[TrapInfo]) -> Result<(), XenError> {
        // SAFETY: forwarded contract; the hypervisor reads the table up to its end entry.
        unsafe { self.call_checked(HYPERVISOR_SET_TRAP_TABLE, addr(table), 0, 0, 0, 0) }.map(drop)
    }

    /// Sets the event, failsafe and SYSCALL entry points (`HYPERVISOR_set_callbacks`).
    ///
    /// # Safety
    ///
    /// Each address must be a valid callback entry point.
    pub unsafe fn set_callbacks(
        &self,
        event: XenCallback,
        failsafe: XenCallback,
        syscall: XenCallback,
    ) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_SET_CALLBACKS, event, failsafe, syscall, 0, 0) }.map(drop)
    }

    /// Registers a callback (`CALLBACKOP_register`).
    ///
    /// # Safety
    ///
    /// `cb.address` must be a valid entry point for `cb.type_`.
    pub unsafe fn callback_register(&self, cb: &CallbackRegister) -> Result<(), XenError> {
        self.op_in(HYPERVISOR_CALLBACK_OP, CALLBACKOP_REGISTER, cb).map(drop)
    }

    /// Unregisters a callback type (`CALLBACKOP_unregister`).
    pub fn callback_unregister(&self, type_: u16) -> Result<(), XenError> {
        self.op_in(HYPERVISOR_CALLBACK_OP, CALLBACKOP_UNREGISTER, &CallbackUnregister { type_, _unused: 0 })
            .map(drop)
    }

    /// Sets the kernel stack for the next entry (`HYPERVISOR_stack_switch`).
    ///
    /// # Safety
    ///
    /// `ss:sp` must be a valid kernel stack.
    pub unsafe fn stack_switch(&self, ss: u64, sp: u64) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_STACK_SWITCH, ss, sp, 0, 0, 0) }.map(drop)
    }

    /// Sets a segment base (`HYPERVISOR_set_segment_base`, `SEGBASE_*`).
    ///
    /// # Safety
    ///
    /// Changing FS or GS base must not break thread-local or per-CPU data in use.
    pub unsafe fn set_segment_base(&self, which: u32, value: u64) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_SET_SEGMENT_BASE, which as u64, value, 0, 0, 0) }.map(drop)
    }

    /// Sets (`true`) or clears CR0.TS (`HYPERVISOR_fpu_taskswitch`).
    ///
    /// # Safety
    ///
    /// With TS set the next FPU/SSE instruction raises #NM; a handler must exist.
    pub unsafe fn fpu_taskswitch(&self, set: bool) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_FPU_TASKSWITCH, set as u64, 0, 0, 0, 0) }.map(drop)
    }

    /// Writes debug register `reg` (`HYPERVISOR_set_debugreg`).
    ///
    /// # Safety
    ///
    /// Breakpoints raise #DB; a handler must exist.
    pub unsafe fn set_debugreg(&self, reg: u32, value: u64) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_SET_DEBUGREG, reg as u64, value, 0, 0, 0) }.map(drop)
    }

    /// Reads debug register `reg` (`HYPERVISOR_get_debugreg`). A value in the top 4095
    /// bytes of the address space is indistinguishable from an error.
    pub fn get_debugreg(&self, reg: u32) -> Result<u64, XenError> {
        // SAFETY: no memory argument.
        unsafe { self.call_checked(HYPERVISOR_GET_DEBUGREG, reg as u64, 0, 0, 0, 0) }
    }

    /// Writes descriptor `desc` at machine address `ma` of a GDT or LDT page
    /// (`HYPERVISOR_update_descriptor`).
    ///
    /// # Safety
    ///
    /// Segments in use must stay valid.
    pub unsafe fn update_descriptor(&self, ma: u64, desc: u64) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_UPDATE_DESCRIPTOR, ma, desc, 0, 0, 0) }.map(drop)
    }

    /// Installs a GDT made of `frames` with `entries` descriptors (`HYPERVISOR_set_gdt`).
    ///
    /// # Safety
    ///
    /// Segments in use must stay valid; the frames become read-only descriptor pages.
    pub unsafe fn set_gdt(&self, frames: &[XenPfn], entries: u32) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_SET_GDT, addr(frames), entries as u64, 0, 0, 0) }.map(drop)
    }

    // ---- multicall ----

    /// Runs a batch of hypercalls (`HYPERVISOR_multicall`); each entry's `result` holds
    /// its return value.
    ///
    /// # Safety
    ///
    /// Every entry must be a valid call as for [`Hypercalls::call`].
    pub unsafe fn multicall(&self, calls: &mut [MulticallEntry]) -> Result<(), XenError> {
        let n = count(calls);
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_MULTICALL, addr_mut(calls), n, 0, 0, 0) }.map(drop)
    }

    // ---- memory_op ----

    /// `HYPERVISOR_memory_op(cmd, arg)` with any argument.
    ///
    /// # Safety
    ///
    /// `T` must be `cmd`'s argument type, every buffer it names must be valid, and the
    /// effect (frames given away or added, physmap changes) must preserve the caller's
    /// memory invariants.
    pub unsafe fn memory_op<T>(&self, cmd: u32, arg: &mut T) -> Result<u64, XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_MEMORY_OP, cmd as u64, addr_mut(arg), 0, 0, 0) }
    }

    /// Where the M2P table is mapped (`XENMEM_machphys_mapping`).
    pub fn machphys_mapping(&self) -> Result<XenMachphysMapping, XenError> {
        let mut m = XenMachphysMapping::default();
        self.op_on(HYPERVISOR_MEMORY_OP, XENMEM_MACHPHYS_MAPPING, &mut m)?;
        Ok(m)
    }

    /// Fills `buf` with the domain's e820 map (`XENMEM_memory_map`); returns the entries.
    pub fn memory_map(&self, buf: &mut [u8]) -> Result<u32, XenError> {
        self.memory_map_cmd(XENMEM_MEMORY_MAP, buf)
    }

    /// Fills `buf` with the host's e820 map (`XENMEM_machine_memory_map`, dom0).
    pub fn machine_memory_map(&self, buf: &mut [u8]) -> Result<u32, XenError> {
        self.memory_map_cmd(XENMEM_MACHINE_MEMORY_MAP, buf)
    }

    fn memory_map_cmd(&self, cmd: u32, buf: &mut [u8]) -> Result<u32, XenError> {
        const E820_ENTRY_SIZE: usize = 20;
        let mut m = XenMemoryMap {
            nr_entries: (buf.len() / E820_ENTRY_SIZE) as u32,
            _pad: 0,
            buffer: GuestHandle::from_ptr(buf.as_mut_ptr()),
        };
        self.op_on(HYPERVISOR_MEMORY_OP, cmd, &mut m)?;
        Ok(m.nr_entries)
    }

    /// A per-domain count query (`XENMEM_current_reservation`, `maximum_reservation`,
    /// `maximum_gpfn`) for `dom`.
    pub fn memory_query(&self, cmd: u32, dom: DomId) -> Result<u64, XenError> {
        match cmd {
            XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION | XENMEM_MAXIMUM_GPFN => {
                let mut d = dom;
                self.op_on(HYPERVISOR_MEMORY_OP, cmd, &mut d)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Highest machine frame of the host (`XENMEM_maximum_ram_page`).
    pub fn maximum_ram_page(&self) -> Result<u64, XenError> {
        // SAFETY: no memory argument.
        unsafe { self.call_checked(HYPERVISOR_MEMORY_OP, XENMEM_MAXIMUM_RAM_PAGE as u64, 0, 0, 0, 0) }
    }

    /// Adds or removes frames (`XENMEM_increase_reservation`, `decrease_reservation`,
    /// `populate_physmap`); returns the extents done.
    ///
    /// # Safety
    ///
    /// `cmd` must be one of those; `extents` is read and written as the command
    /// defines; frames given back must no longer be used.
    pub unsafe fn memory_reservation(
        &self,
        cmd: u32,
        extents: &mut [XenPfn],
        order: u32,
        mem_flags: u32,
        dom: DomId,
    ) -> Result<u64, XenError> {
        let mut r = XenMemoryReservation {
            extent_start: GuestHandle::from_ptr(extents.as_mut_ptr()),
            nr_extents: extents.len() as u64,
            extent_order: order,
            mem_flags,
            domid: dom,
            _pad: [0; 6],
        };
        // SAFETY: forwarded contract.
        unsafe { self.memory_op(cmd, &mut r) }
    }

    /// Maps a special frame into the physmap (`XENMEM_add_to_physmap`).
    ///
    /// # Safety
    ///
    /// Whatever was mapped at `xatp.gpfn` must no longer be used.
    pub unsafe fn add_to_physmap(&self, xatp: &mut XenAddToPhysmap) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.memory_op(XENMEM_ADD_TO_PHYSMAP, xatp) }.map(drop)
    }

    // ---- vcpu_op ----

    fn vcpu(&self, cmd: u32, vcpu: u32, arg: u64) -> Result<u64, XenError> {
        // SAFETY: used only for commands without argument or with an argument
        // structure the safe caller owns for the call.
        unsafe { self.call_checked(HYPERVISOR_VCPU_OP, cmd as u64, vcpu as u64, arg, 0, 0) }
    }

    /// Sets an offline vCPU's initial state (`VCPUOP_initialise`).
    ///
    /// # Safety
    ///
    /// The context must be a valid starting state (page tables, stack, entry point).
    pub unsafe fn vcpu_initialise(&self, vcpu: u32, ctxt: &VcpuGuestContext) -> Result<(), XenError> {
        self.vcpu(VCPUOP_INITIALISE, vcpu, addr(ctxt)).map(drop)
    }

    /// Starts a vCPU (`VCPUOP_up`).
    pub fn vcpu_up(&self, vcpu: u32) -> Result<(), XenError> {
        self.vcpu(VCPUOP_UP, vcpu, 0).map(drop)
    }

    /// Stops a vCPU (`VCPUOP_down`).
    pub fn vcpu_down(&self, vcpu: u32) -> Result<(), XenError> {
        self.vcpu(VCPUOP_DOWN, vcpu, 0).map(drop)
    }

    /// Whether a vCPU is up (`VCPUOP_is_up`).
    pub fn vcpu_is_up(&self, vcpu: u32) -> Result<bool, XenError> {
        self.vcpu(VCPUOP_IS_UP, vcpu, 0).map(|r| r != 0)
    }

    /// A vCPU's runstate (`VCPUOP_get_runstate_info`).
    pub fn vcpu_runstate_info(&self, vcpu: u32) -> Result<VcpuRunstateInfo, XenError> {
        let mut info = VcpuRunstateInfo::default();
        self.vcpu(VCPUOP_GET_RUNSTATE_INFO, vcpu, addr_mut(&mut info))?;
        Ok(info)
    }

    /// Starts a periodic timer (`VCPUOP_set_periodic_timer`).
    pub fn vcpu_set_periodic_timer(&self, vcpu: u32, period_ns: u64) -> Result<(), XenError> {
        let t = VcpuSetPeriodicTimer { period_ns };
        self.vcpu(VCPUOP_SET_PERIODIC_TIMER, vcpu, addr(&t)).map(drop)
    }

    /// Stops the periodic timer (`VCPUOP_stop_periodic_timer`).
    pub fn vcpu_stop_periodic_timer(&self, vcpu: u32) -> Result<(), XenError> {
        self.vcpu(VCPUOP_STOP_PERIODIC_TIMER, vcpu, 0).map(drop)
    }

    /// Arms a one-shot timer (`VCPUOP_set_singleshot_timer`).
    pub fn vcpu_set_singleshot_timer(
        &self,
        vcpu: u32,
        timeout_abs_ns: u64,
        flags: u32,
    ) -> Result<(), XenError> {
        let t = VcpuSetSingleshotTimer { timeout_abs_ns, flags, _pad: 0 };
        self.vcpu(VCPUOP_SET_SINGLESHOT_TIMER, vcpu, addr(&t)).map(drop)
    }

    /// Disarms it (`VCPUOP_stop_singleshot_timer`).
    pub fn vcpu_stop_singleshot_timer(&self, vcpu: u32) -> Result<(), XenError> {
        self.vcpu(VCPUOP_STOP_SINGLESHOT_TIMER, vcpu, 0).map(drop)
    }

    /// Sends an NMI to a vCPU (`VCPUOP_send_nmi`).
    pub fn vcpu_send_nmi(&self, vcpu: u32) -> Result<(), XenError> {
        self.vcpu(VCPUOP_SEND_NMI, vcpu, 0).map(drop)
    }

    /// Physical ids of a vCPU (`VCPUOP_get_physid`, dom0).
    pub fn vcpu_get_physid(&self, vcpu: u32) -> Result<VcpuGetPhysid, XenError> {
        let mut p = VcpuGetPhysid::default();
        self.vcpu(VCPUOP_GET_PHYSID, vcpu, addr_mut(&mut p))?;
        Ok(p)
    }

    /// Moves a vCPU's `vcpu_info` into guest memory (`VCPUOP_register_vcpu_info`).
    ///
    /// # Safety
    ///
    /// The frame area becomes hypervisor-written for good.
    pub unsafe fn vcpu_register_vcpu_info(&self, vcpu: u32, mfn: u64, offset: u32) -> Result<(), XenError> {
        let r = VcpuRegisterVcpuInfo { mfn, offset, rsvd: 0 };
        self.vcpu(VCPUOP_REGISTER_VCPU_INFO, vcpu, addr(&r)).map(drop)
    }

    /// Registers the runstate area (`VCPUOP_register_runstate_memory_area`).
    ///
    /// # Safety
    ///
    /// `area` stays hypervisor-written until the vCPU registers another one.
    pub unsafe fn vcpu_register_runstate_memory_area(
        &self,
        vcpu: u32,
        area: *mut VcpuRunstateInfo,
    ) -> Result<(), XenError> {
        let r = VcpuRegisterRunstateMemoryArea { addr: area as usize as u64 };
        self.vcpu(VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, vcpu, addr(&r)).map(drop)
    }

    /// Registers a secondary time area (`VCPUOP_register_vcpu_time_memory_area`).
    ///
    /// # Safety
    ///
    /// `area` stays hypervisor-written until the vCPU registers another one.
    pub unsafe fn vcpu_register_time_memory_area(
        &self,
        vcpu: u32,
        area: *mut VcpuTimeInfo,
    ) -> Result<(), XenError> {
        let r = VcpuRegisterTimeMemoryArea { addr: area as usize as u64 };
        self.vcpu(VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA, vcpu, addr(&r)).map(drop)
    }

    // ---- physdev_op ----

    /// `HYPERVISOR_physdev_op(cmd, arg)` with any argument.
    ///
    /// # Safety
    ///
    /// `T` must be `cmd`'s argument type and any buffer or frame it names must be valid
    /// for the command (`set_iobitmap` keeps using its bitmap, `pirq_eoi_gmfn` keeps
    /// writing its frame).
    pub unsafe fn physdev_op<T>(&self, cmd: u32, arg: &mut T) -> Result<u64, XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_PHYSDEV_OP, cmd as u64, addr_mut(arg), 0, 0, 0) }
    }

    /// The deprecated `physdev_op_compat` with a [`PhysdevOp`] wrapper.
    ///
    /// # Safety
    ///
    /// As for [`Hypercalls::physdev_op`] with the wrapped command.
    pub unsafe fn physdev_op_compat(&self, op: &mut PhysdevOp) -> Result<(), XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_PHYSDEV_OP_COMPAT, addr_mut(op), 0, 0, 0, 0) }.map(drop)
    }

    /// End of interrupt for `irq` (`PHYSDEVOP_eoi`).
    pub fn physdev_eoi(&self, irq: u32) -> Result<(), XenError> {
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_EOI, &mut PhysdevEoi { irq }).map(drop)
    }

    /// Flags of PIRQ `irq` (`PHYSDEVOP_irq_status_query`).
    pub fn physdev_irq_status_query(&self, irq: u32) -> Result<IrqStatusFlags, XenError> {
        let mut q = PhysdevIrqStatusQuery { irq, flags: 0 };
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_IRQ_STATUS_QUERY, &mut q)?;
        Ok(IrqStatusFlags::from_bits_retain(q.flags))
    }

    /// Sets the kernel's I/O privilege level (`PHYSDEVOP_set_iopl`).
    pub fn physdev_set_iopl(&self, iopl: u32) -> Result<(), XenError> {
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_SET_IOPL, &mut PhysdevSetIopl { iopl }).map(drop)
    }

    /// Maps a GSI or MSI to a PIRQ (`PHYSDEVOP_map_pirq`); `map.pirq` holds the result.
    pub fn physdev_map_pirq(&self, map: &mut PhysdevMapPirq) -> Result<(), XenError> {
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_MAP_PIRQ, map).map(drop)
    }

    /// Unmaps a PIRQ (`PHYSDEVOP_unmap_pirq`).
    pub fn physdev_unmap_pirq(&self, domid: DomId, pirq: i32) -> Result<(), XenError> {
        let mut u = PhysdevUnmapPirq { domid, _pad: 0, pirq };
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_UNMAP_PIRQ, &mut u).map(drop)
    }

    /// Sets a GSI's trigger mode and polarity (`PHYSDEVOP_setup_gsi`).
    pub fn physdev_setup_gsi(&self, gsi: i32, triggering: u8, polarity: u8) -> Result<(), XenError> {
        let mut g = PhysdevSetupGsi { gsi, triggering, polarity, _pad: 0 };
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_SETUP_GSI, &mut g).map(drop)
    }

    /// An unused PIRQ of `type_` (`PHYSDEVOP_get_free_pirq`).
    pub fn physdev_get_free_pirq(&self, type_: i32) -> Result<u32, XenError> {
        let mut g = PhysdevGetFreePirq { type_, pirq: 0 };
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_GET_FREE_PIRQ, &mut g)?;
        Ok(g.pirq)
    }

    /// Registers a PCI device (`PHYSDEVOP_pci_device_add`, no optional array).
    pub fn physdev_pci_device_add(&self, dev: &mut PhysdevPciDeviceAdd) -> Result<(), XenError> {
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_PCI_DEVICE_ADD, dev).map(drop)
    }

    /// Unregisters a PCI device (`PHYSDEVOP_pci_device_remove`).
    pub fn physdev_pci_device_remove(&self, dev: &mut PhysdevPciDevice) -> Result<(), XenError> {
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_PCI_DEVICE_REMOVE, dev).map(drop)
    }

    /// Reports an MMCONFIG area (`PHYSDEVOP_pci_mmcfg_reserved`).
    pub fn physdev_pci_mmcfg_reserved(&self, r: &mut PhysdevPciMmcfgReserved) -> Result<(), XenError> {
        self.op_on(HYPERVISOR_PHYSDEV_OP, PHYSDEVOP_PCI_MMCFG_RESERVED, r).map(drop)
    }

    // ---- platform_op, domctl, sysctl ----

    /// `HYPERVISOR_platform_op` with any command (dom0).
    ///
    /// # Safety
    ///
    /// Buffers named inside `op` must be valid; commands such as microcode updates or
    /// MTRR changes must not break the caller's invariants.
    pub unsafe fn platform_op(&self, op: &mut XenPlatformOp) -> Result<u64, XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_PLATFORM_OP, addr_mut(op), 0, 0, 0, 0) }
    }

    /// Sets the host wallclock (`XENPF_settime64`).
    pub fn platform_settime64(&self, secs: u64, nsecs: u32, system_time: u64) -> Result<(), XenError> {
        let mut op =
            XenPlatformOp::new(XENPF_SETTIME64, &XenpfSettime64 { secs, nsecs, mbz: 0, system_time });
        // SAFETY: settime64 names no buffer.
        unsafe { self.platform_op(&mut op) }.map(drop)
    }

    /// Information on physical CPU `cpu` (`XENPF_get_cpuinfo`).
    pub fn platform_pcpu_info(&self, cpu: u32) -> Result<XenpfPcpuinfo, XenError> {
        let mut op =
            XenPlatformOp::new(XENPF_GET_CPUINFO, &XenpfPcpuinfo { xen_cpuid: cpu, ..Default::default() });
        // SAFETY: get_cpuinfo names no buffer.
        unsafe { self.platform_op(&mut op) }?;
        Ok(op.u.get())
    }

    /// `HYPERVISOR_domctl` with any command (toolstack).
    ///
    /// # Safety
    ///
    /// Buffers named inside `op` must be valid for the command.
    pub unsafe fn domctl(&self, op: &mut XenDomctl) -> Result<u64, XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_DOMCTL, addr_mut(op), 0, 0, 0, 0) }
    }

    /// A domctl whose argument names no buffer; returns the updated union.
    fn domctl_plain<T: IntoBytes + Immutable>(
        &self,
        cmd: u32,
        dom: DomId,
        arg: &T,
    ) -> Result<XenDomctl, XenError> {
        let mut op = XenDomctl::new(cmd, dom, arg);
        // SAFETY: used only for commands whose argument names no buffer.
        unsafe { self.domctl(&mut op) }?;
        Ok(op)
    }

    /// Creates a domain (`XEN_DOMCTL_createdomain`); `dom` 0 picks a free id. Returns it.
    pub fn domctl_createdomain(&self, dom: DomId, config: &XenDomctlCreatedomain) -> Result<DomId, XenError> {
        self.domctl_plain(XEN_DOMCTL_CREATEDOMAIN, dom, config).map(|op| op.domain)
    }

    /// Destroys a domain (`XEN_DOMCTL_destroydomain`).
    pub fn domctl_destroydomain(&self, dom: DomId) -> Result<(), XenError> {
        self.domctl_plain(XEN_DOMCTL_DESTROYDOMAIN, dom, &()).map(drop)
    }

    /// Pauses a domain (`XEN_DOMCTL_pausedomain`).
    pub fn domctl_pausedomain(&self, dom: DomId) -> Result<(), XenError> {
        self.domctl_plain(XEN_DOMCTL_PAUSEDOMAIN, dom, &()).map(drop)
    }

    /// Unpauses a domain (`XEN_DOMCTL_unpausedomain`).
    pub fn domctl_unpausedomain(&self, dom: DomId) -> Result<(), XenError> {
        self.domctl_plain(XEN_DOMCTL_UNPAUSEDOMAIN, dom, &()).map(drop)
    }

    /// Information on a domain (`XEN_DOMCTL_getdomaininfo`).
    pub fn domctl_getdomaininfo(&self, dom: DomId) -> Result<XenDomctlGetdomaininfo, XenError> {
        self.domctl_plain(XEN_DOMCTL_GETDOMAININFO, dom, &()).map(|op| op.u.get())
    }

    /// Sets the number of vCPUs (`XEN_DOMCTL_max_vcpus`).
    pub fn domctl_max_vcpus(&self, dom: DomId, max: u32) -> Result<(), XenError> {
        self.domctl_plain(XEN_DOMCTL_MAX_VCPUS, dom, &XenDomctlMaxVcpus { max }).map(drop)
    }

    /// Sets the memory limit (`XEN_DOMCTL_max_mem`).
    pub fn domctl_max_mem(&self, dom: DomId, max_memkb: u64) -> Result<(), XenError> {
        self.domctl_plain(XEN_DOMCTL_MAX_MEM, dom, &XenDomctlMaxMem { max_memkb }).map(drop)
    }

    /// Sets the guest address size (`XEN_DOMCTL_set_address_size`).
    pub fn domctl_set_address_size(&self, dom: DomId, size: u32) -> Result<(), XenError> {
        self.domctl_plain(XEN_DOMCTL_SET_ADDRESS_SIZE, dom, &XenDomctlAddressSize { size }).map(drop)
    }

    /// Sets TSC parameters (`XEN_DOMCTL_settscinfo`).
    pub fn domctl_settscinfo(&self, dom: DomId, info: &XenDomctlTscInfo) -> Result<(), XenError> {
        self.domctl_plain(XEN_DOMCTL_SETTSCINFO, dom, info).map(drop)
    }

    /// Writes hypercall stubs into frame `gmfn` of `dom` (`XEN_DOMCTL_hypercall_init`).
    pub fn domctl_hypercall_init(&self, dom: DomId, gmfn: u64) -> Result<(), XenError> {
        self.domctl_plain(XEN_DOMCTL_HYPERCALL_INIT, dom, &XenDomctlHypercallInit { gmfn }).map(drop)
    }

    /// Sets vCPU `vcpu` of `dom` to `ctxt` (`XEN_DOMCTL_setvcpucontext`).
    pub fn domctl_setvcpucontext(
        &self,
        dom: DomId,
        vcpu: u32,
        ctxt: &VcpuGuestContext,
    ) -> Result<(), XenError> {
        let arg = XenDomctlVcpucontext { vcpu, _pad: 0, ctxt: GuestHandle::from_ptr(ctxt) };
        let mut op = XenDomctl::new(XEN_DOMCTL_SETVCPUCONTEXT, dom, &arg);
        // SAFETY: the hypervisor only reads `ctxt`.
        unsafe { self.domctl(&mut op) }.map(drop)
    }

    /// Reads vCPU `vcpu` of `dom` into `ctxt` (`XEN_DOMCTL_getvcpucontext`).
    pub fn domctl_getvcpucontext(
        &self,
        dom: DomId,
        vcpu: u32,
        ctxt: &mut VcpuGuestContext,
    ) -> Result<(), XenError> {
        let arg = XenDomctlVcpucontext { vcpu, _pad: 0, ctxt: GuestHandle::new(addr_mut(ctxt)) };
        let mut op = XenDomctl::new(XEN_DOMCTL_GETVCPUCONTEXT, dom, &arg);
        // SAFETY: the hypervisor writes one `VcpuGuestContext` into `ctxt`.
        unsafe { self.domctl(&mut op) }.map(drop)
    }

    /// Replaces each frame of `dom` in `frames` by itself with its page type in the
    /// top bits (`XEN_DOMCTL_getpageframeinfo3`).
    pub fn domctl_getpageframeinfo3(&self, dom: DomId, frames: &mut [XenPfn]) -> Result<(), XenError> {
        let arg =
            XenDomctlGetpageframeinfo3 { num: count(frames), array: GuestHandle::new(addr_mut(frames)) };
        let mut op = XenDomctl::new(XEN_DOMCTL_GETPAGEFRAMEINFO3, dom, &arg);
        // SAFETY: the hypervisor reads and writes `frames.len()` entries of `frames`.
        unsafe { self.domctl(&mut op) }.map(drop)
    }

    /// `HYPERVISOR_sysctl` with any command (toolstack).
    ///
    /// # Safety
    ///
    /// Buffers named inside `op` must be valid for the command.
    pub unsafe fn sysctl(&self, op: &mut XenSysctl) -> Result<u64, XenError> {
        // SAFETY: forwarded contract.
        unsafe { self.call_checked(HYPERVISOR_SYSCTL, addr_mut(op), 0, 0, 0, 0) }
    }

    /// Host information (`XEN_SYSCTL_physinfo`).
    pub fn sysctl_physinfo(&self) -> Result<XenSysctlPhysinfo, XenError> {
        let mut op = XenSysctl::new(XEN_SYSCTL_PHYSINFO, &());
        // SAFETY: physinfo names no buffer.
        unsafe { self.sysctl(&mut op) }?;
        Ok(op.u.get())
    }

    /// Information on domains from `first` on, into `out` (`XEN_SYSCTL_getdomaininfolist`);
    /// returns the entries written.
    pub fn sysctl_getdomaininfolist(
        &self,
        first: DomId,
        out: &mut [XenDomctlGetdomaininfo],
    ) -> Result<usize, XenError> {
        let arg = XenSysctlGetdomaininfolist {
            first_domain: first,
            max_domains: out.len() as u32,
            buffer: GuestHandle::new(addr_mut(out)),
            ..Default::default()
        };
        let mut op = XenSysctl::new(XEN_SYSCTL_GETDOMAININFOLIST, &arg);
        // SAFETY: the hypervisor writes at most `out.len()` entries into `out`.
        unsafe { self.sysctl(&mut op) }?;
        let done: XenSysctlGetdomaininfolist = op.u.get();
        Ok(done.num_domains as usize)
    }

    /// Reads the hypervisor console ring into `buf` (`XEN_SYSCTL_readconsole`); with
    /// `index`, reads incrementally from `*index` and advances it. Returns bytes read.
    pub fn sysctl_readconsole(
        &self,
        buf: &mut [u8],
        clear: bool,
        index: Option<&mut u32>,
    ) -> Result<usize, XenError> {
        let arg = XenSysctlReadconsole {
            clear: clear as u8,
            incremental: index.is_some() as u8,
            index: index.as_ref().map_or(0, |i| **i),
            buffer: GuestHandle::new(addr_mut(buf)),
            count: buf.len() as u32,
            ..Default::default()
        };
        let mut op = XenSysctl::new(XEN_SYSCTL_READCONSOLE, &arg);
        // SAFETY: the hypervisor writes at most `buf.len()` bytes into `buf`.
        unsafe { self.sysctl(&mut op) }?;
        let done: XenSysctlReadconsole = op.u.get();
        if let Some(i) = index {
            *i = done.index;
        }
        Ok(done.count as usize)
    }
}

// The wrappers pass structures by address; make sure the sizes the hypervisor reads
// are what these helpers assume.
const _: () = assert!(size_of::<DomId>() == 2);

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in hypercall page: stub `nr` returns `rdi + rsi + rdx + r10 + r8 + nr`,
    /// which checks the register convention without entering a hypervisor.
    const fn fake_page() -> [u8; 4096] {
        let mut page = [0xcc_u8; 4096];
        let mut nr = 0;
        while nr < 128 {
            let stub: [u8; 22] = [
                0x48, 0x89, 0xf8, // mov rax, rdi
                0x48, 0x01, 0xf0, // add rax, rsi
                0x48, 0x01, 0xd0, // add rax, rdx
                0x4c, 0x01, 0xd0, // add rax, r10
                0x4c, 0x01, 0xc0, // add rax, r8
                0x48, 0x05, nr as u8, 0, 0, 0,    // add rax, imm32
                0xc3, // ret
            ];
            let mut i = 0;
            while i < stub.len() {
                page[nr * HYPERCALL_STUB_SIZE + i] = stub[i];
                i += 1;
            }
            nr += 1;
        }
        page
    }

    #[repr(align(4096))]
    struct Page([u8; 4096]);

    // SAFETY: the section only holds this constant page of code bytes.
    #[unsafe(link_section = ".text")]
    static FAKE_PAGE: Page = Page(fake_page());

    #[test]
    fn register_convention() {
        // SAFETY: FAKE_PAGE is executable and holds a stub for every number used.
        let xen = unsafe { Hypercalls::new(FAKE_PAGE.0.as_ptr()) };
        // SAFETY: the fake stubs touch no memory.
        let ret = unsafe { xen.call(HYPERVISOR_VCPU_OP, 1, 20, 300, 4000, 50000) };
        assert_eq!(ret, 54321 + HYPERVISOR_VCPU_OP as i64);
        assert_eq!(xen.set_timer_op(1000), Ok(()));
        assert_eq!(xen.xen_version(), (0, HYPERVISOR_XEN_VERSION as u16));
        // A "negative errno" result comes back as an error.
        // SAFETY: as above.
        let err = unsafe { xen.call_checked(0, (-22i64) as u64, 0, 0, 0, 0) };
        assert_eq!(err, Err(Errno::EINVAL));
    }
}
