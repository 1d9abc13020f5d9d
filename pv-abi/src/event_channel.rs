// SPDX-License-Identifier: MIT OR Apache-2.0
//! Event channels. Mirrors `xen/include/public/event_channel.h`.
//!
//! `HYPERVISOR_event_channel_op(cmd, arg)`: one `EVTCHNOP_*` command and a pointer to
//! its argument structure, which the hypervisor updates in place (`OUT` fields).
//! 2-level delivery uses the bitmaps in `shared_info`; FIFO delivery uses
//! [`EvtchnFifoControlBlock`] and per-port event words.

use crate::layout::UnionBytes;
use crate::xen::DomId;

/// An event-channel port (`evtchn_port_t`).
pub type EvtchnPort = u32;
/// One FIFO event word (`event_word_t`).
pub type EventWord = u32;

/// Connect to a port another domain allocated with `alloc_unbound`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// Bind a VIRQ on a vCPU to a new port.
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// Bind a physical IRQ (PIRQ) to a new port.
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// Close a port.
pub const EVTCHNOP_CLOSE: u32 = 3;
/// Signal the remote end of a port.
pub const EVTCHNOP_SEND: u32 = 4;
/// Query a port's state.
pub const EVTCHNOP_STATUS: u32 = 5;
/// Allocate a port that a given remote domain may bind.
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// Allocate a port for inter-vCPU notifications.
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// Deliver a port's events to another vCPU.
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// Unmask a port, re-raising a pending event.
pub const EVTCHNOP_UNMASK: u32 = 9;
/// Close all of a domain's ports.
pub const EVTCHNOP_RESET: u32 = 10;
/// Switch to FIFO delivery: register a vCPU's control block.
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// FIFO: add a page of event words.
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// FIFO: set a port's priority.
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// The PIRQ may be shared with other domains.
pub const BIND_PIRQ__WILL_SHARE: u32 = 1;

/// Port is free.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// Port waits for a remote domain to bind.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// Port is connected to another domain's port.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// Port is bound to a PIRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// Port is bound to a VIRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// Port is an IPI port.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// Number of ports with 2-level delivery (64 * 64 on x86_64).
pub const EVTCHN_2L_NR_CHANNELS: usize = 4096;
/// FIFO: highest priority.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// FIFO: default priority.
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// FIFO: lowest priority.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// FIFO: number of queues per vCPU.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = 16;
/// FIFO event word: pending bit.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
/// FIFO event word: masked bit.
pub const EVTCHN_FIFO_MASKED: u32 = 30;
/// FIFO event word: linked bit.
pub const EVTCHN_FIFO_LINKED: u32 = 29;
/// FIFO event word: busy bit.
pub const EVTCHN_FIFO_BUSY: u32 = 28;
/// FIFO event word: width of the link field.
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
/// FIFO event word: mask of the link field.
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// FIFO: number of ports.
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

xen_struct! {
    /// `EVTCHNOP_alloc_unbound` (`struct evtchn_alloc_unbound`).
    pub struct EvtchnAllocUnbound: "struct evtchn_alloc_unbound" {
        /// IN: domain that owns the new port (`DOMID_SELF`).
        pub dom: DomId,
        /// IN: domain allowed to bind it.
        pub remote_dom: DomId,
        /// OUT: the new port.
        pub port: EvtchnPort,
    }

    /// `EVTCHNOP_bind_interdomain` (`struct evtchn_bind_interdomain`).
    pub struct EvtchnBindInterdomain: "struct evtchn_bind_interdomain" {
        /// IN: remote domain.
        pub remote_dom: DomId,
        /// Padding before `remote_port`.
        pub _pad: u16 as pad,
        /// IN: remote port, allocated unbound for us.
        pub remote_port: EvtchnPort,
        /// OUT: our new port.
        pub local_port: EvtchnPort,
    }

    /// `EVTCHNOP_bind_virq` (`struct evtchn_bind_virq`).
    pub struct EvtchnBindVirq: "struct evtchn_bind_virq" {
        /// IN: `VIRQ_*`.
        pub virq: u32,
        /// IN: vCPU to deliver to.
        pub vcpu: u32,
        /// OUT: the new port.
        pub port: EvtchnPort,
    }

    /// `EVTCHNOP_bind_pirq` (`struct evtchn_bind_pirq`).
    pub struct EvtchnBindPirq: "struct evtchn_bind_pirq" {
        /// IN: physical IRQ.
        pub pirq: u32,
        /// IN: `BIND_PIRQ__WILL_SHARE`.
        pub flags: u32,
        /// OUT: the new port.
        pub port: EvtchnPort,
    }

    /// `EVTCHNOP_bind_ipi` (`struct evtchn_bind_ipi`).
    pub struct EvtchnBindIpi: "struct evtchn_bind_ipi" {
        /// IN: vCPU to deliver to.
        pub vcpu: u32,
        /// OUT: the new port.
        pub port: EvtchnPort,
    }

    /// `EVTCHNOP_close` (`struct evtchn_close`).
    pub struct EvtchnClose: "struct evtchn_close" {
        /// IN: port to close.
        pub port: EvtchnPort,
    }

    /// `EVTCHNOP_send` (`struct evtchn_send`).
    pub struct EvtchnSend: "struct evtchn_send" {
        /// IN: local port whose remote end is signalled.
        pub port: EvtchnPort,
    }

    /// `EVTCHNOP_status` (`struct evtchn_status`).
    pub struct EvtchnStatus: "struct evtchn_status" {
        /// IN: domain owning the port.
        pub dom: DomId,
        /// Padding before `port`.
        pub _pad: u16 as pad,
        /// IN: port.
        pub port: EvtchnPort,
        /// OUT: `EVTCHNSTAT_*`.
        pub status: u32,
        /// OUT: vCPU the port notifies.
        pub vcpu: u32,
        /// OUT: details by `status`; see the accessors.
        pub u: [u32; 2],
    }

    /// `EVTCHNOP_bind_vcpu` (`struct evtchn_bind_vcpu`).
    pub struct EvtchnBindVcpu: "struct evtchn_bind_vcpu" {
        /// IN: port.
        pub port: EvtchnPort,
        /// IN: vCPU to notify from now on.
        pub vcpu: u32,
    }

    /// `EVTCHNOP_unmask` (`struct evtchn_unmask`).
    pub struct EvtchnUnmask: "struct evtchn_unmask" {
        /// IN: port.
        pub port: EvtchnPort,
    }

    /// `EVTCHNOP_reset` (`struct evtchn_reset`).
    pub struct EvtchnReset: "struct evtchn_reset" {
        /// IN: domain (`DOMID_SELF`).
        pub dom: DomId,
    }

    /// `EVTCHNOP_init_control` (`struct evtchn_init_control`).
    pub struct EvtchnInitControl: "struct evtchn_init_control" {
        /// IN: frame of the control block.
        pub control_gfn: u64,
        /// IN: offset of the control block in that frame.
        pub offset: u32,
        /// IN: vCPU.
        pub vcpu: u32,
        /// OUT: number of link bits the hypervisor uses.
        pub link_bits: u8,
        /// Unused.
        pub _pad: [u8; 7],
    }

    /// `EVTCHNOP_expand_array` (`struct evtchn_expand_array`).
    pub struct EvtchnExpandArray: "struct evtchn_expand_array" {
        /// IN: frame of the new event-word page.
        pub array_gfn: u64,
    }

    /// `EVTCHNOP_set_priority` (`struct evtchn_set_priority`).
    pub struct EvtchnSetPriority: "struct evtchn_set_priority" {
        /// IN: port.
        pub port: EvtchnPort,
        /// IN: `EVTCHN_FIFO_PRIORITY_*` range.
        pub priority: u32,
    }

    /// The argument of the deprecated `event_channel_op_compat` (`struct evtchn_op`).
    pub struct EvtchnOp: "struct evtchn_op" {
        /// `EVTCHNOP_*`.
        pub cmd: u32,
        /// The command's argument structure.
        pub u: EvtchnOpArgs,
    }

    /// The argument union of [`EvtchnOp`].
    pub struct EvtchnOpArgs: "__typeof__(((struct evtchn_op *)0)->u)" {
        /// Union storage.
        pub raw: [u32; 6] as raw,
    }

    /// Per-vCPU FIFO control block (`struct evtchn_fifo_control_block`).
    pub struct EvtchnFifoControlBlock: "struct evtchn_fifo_control_block" {
        /// Bitmap of queues with events.
        pub ready: u32,
        /// Reserved.
        pub _rsvd: u32,
        /// Head port of each priority queue.
        pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
    }
}

impl UnionBytes for EvtchnOpArgs {}

impl EvtchnStatus {
    /// `EVTCHNSTAT_unbound`: the domain allowed to bind.
    pub const fn unbound_dom(&self) -> DomId {
        self.u[0] as DomId
    }

    /// `EVTCHNSTAT_interdomain`: the remote domain and port.
    pub const fn interdomain(&self) -> (DomId, EvtchnPort) {
        (self.u[0] as DomId, self.u[1])
    }

    /// `EVTCHNSTAT_pirq`: the PIRQ.
    pub const fn pirq(&self) -> u32 {
        self.u[0]
    }

    /// `EVTCHNSTAT_virq`: the VIRQ.
    pub const fn virq(&self) -> u32 {
        self.u[0]
    }

    /// Sets the unbound-domain detail (hypervisor side).
    pub const fn set_unbound(&mut self, dom: DomId) {
        self.u = [dom as u32, 0];
    }

    /// Sets the interdomain details (hypervisor side).
    pub const fn set_interdomain(&mut self, dom: DomId, port: EvtchnPort) {
        self.u = [dom as u32, port];
    }

    /// Sets the PIRQ or VIRQ detail (hypervisor side).
    pub const fn set_irq(&mut self, irq: u32) {
        self.u = [irq, 0];
    }
}
