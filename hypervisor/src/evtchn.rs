// SPDX-License-Identifier: MIT OR Apache-2.0
//! Event channels within a domain (Xen's `common/event_channel.c` idea): the
//! port state machine, apart from the delivery format (the 2-level ABI of
//! `shared_info`: a pending and a mask bit per port, a selector word per
//! vCPU, and `evtchn_upcall_pending`), which `deliver_2l` implements over
//! the [`Bits2l`] view of the shared page.
//!
//! Invariants (host-tested): port 0 is never allocated; a VIRQ is bound to
//! at most one port; an interdomain pair always points at each other;
//! closing one end of a pair leaves the other unbound for the same domain.

use alloc::vec::Vec;
use pv_abi::Errno;
use pv_abi::xen::NR_VIRQS;

/// Ports of the 2-level ABI on x86_64: 64 selector bits × 64 ports.
pub const NR_PORTS_2L: u32 = 64 * 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    Free,
    /// Allocated, waiting for `remote` to bind to it.
    Unbound {
        remote: u16,
    },
    /// Connected to `port` of domain `dom`.
    Interdomain {
        dom: u16,
        port: u32,
    },
    Virq(u32),
    Ipi,
}

#[derive(Clone, Debug)]
pub struct EventChannels {
    domid: u16,
    ports: Vec<PortState>,
    virqs: [Option<u32>; NR_VIRQS as usize],
    limit: u32,
}

impl EventChannels {
    pub fn new(domid: u16, limit: u32) -> Self {
        EventChannels {
            domid,
            ports: Vec::new(),
            virqs: [None; NR_VIRQS as usize],
            limit: limit.min(NR_PORTS_2L),
        }
    }

    /// Whether `port` is a port number this domain's ABI has (bound or not).
    pub fn in_range(&self, port: u32) -> bool {
        port < self.limit
    }

    pub fn state(&self, port: u32) -> Option<PortState> {
        self.ports.get(port as usize).copied().filter(|&s| s != PortState::Free)
    }

    fn alloc(&mut self, state: PortState) -> Result<u32, Errno> {
        let free = (1..self.ports.len()).find(|&p| self.ports[p] == PortState::Free);
        let port = match free {
            Some(p) => p,
            None if (self.ports.len().max(1) as u32) < self.limit => {
                if self.ports.is_empty() {
                    self.ports.push(PortState::Free); // port 0: reserved
                }
                self.ports.push(PortState::Free);
                self.ports.len() - 1
            }
            None => return Err(Errno::ENOSPC),
        };
        self.ports[port] = state;
        Ok(port as u32)
    }

    /// EVTCHNOP_alloc_unbound: a port waiting for `remote` to bind to it.
    pub fn alloc_unbound(&mut self, remote: u16) -> Result<u32, Errno> {
        self.alloc(PortState::Unbound { remote })
    }

    /// EVTCHNOP_bind_interdomain to a port of this same domain.
    pub fn bind_interdomain_self(&mut self, remote_port: u32) -> Result<u32, Errno> {
        match self.state(remote_port) {
            Some(PortState::Unbound { remote }) if remote == self.domid => {}
            _ => return Err(Errno::EINVAL),
        }
        let local = self.alloc(PortState::Interdomain { dom: self.domid, port: remote_port })?;
        self.ports[remote_port as usize] = PortState::Interdomain { dom: self.domid, port: local };
        Ok(local)
    }

    /// EVTCHNOP_bind_interdomain between two domains: `remote_port` of
    /// `remote` must be unbound for `local`'s domain; both ends then point at
    /// each other. Returns the new local port.
    pub fn bind_interdomain(local: &mut Self, remote: &mut Self, remote_port: u32) -> Result<u32, Errno> {
        match remote.state(remote_port) {
            Some(PortState::Unbound { remote: r }) if r == local.domid => {}
            _ => return Err(Errno::EINVAL),
        }
        let port = local.alloc(PortState::Interdomain { dom: remote.domid, port: remote_port })?;
        remote.ports[remote_port as usize] = PortState::Interdomain { dom: local.domid, port };
        Ok(port)
    }

    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<u32, Errno> {
        if virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if vcpu != 0 {
            return Err(Errno::ENOENT);
        }
        if self.virqs[virq as usize].is_some() {
            return Err(Errno::EEXIST);
        }
        let port = self.alloc(PortState::Virq(virq))?;
        self.virqs[virq as usize] = Some(port);
        Ok(port)
    }

    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<u32, Errno> {
        if vcpu != 0 {
            return Err(Errno::ENOENT);
        }
        self.alloc(PortState::Ipi)
    }

    /// EVTCHNOP_close. For one end of a pair with another domain, returns
    /// that end (domain, port): the caller makes it unbound ([`peer_closed`]).
    ///
    /// [`peer_closed`]: EventChannels::peer_closed
    pub fn close(&mut self, port: u32) -> Result<Option<(u16, u32)>, Errno> {
        let state = self.state(port).ok_or(Errno::EINVAL)?;
        let mut remote = None;
        match state {
            PortState::Virq(v) => self.virqs[v as usize] = None,
            // A pair within the domain: the other end waits for it again.
            PortState::Interdomain { dom, port: peer } if dom == self.domid && peer != port => {
                self.ports[peer as usize] = PortState::Unbound { remote: self.domid };
            }
            PortState::Interdomain { dom, port: peer } if dom != self.domid => remote = Some((dom, peer)),
            _ => {}
        }
        self.ports[port as usize] = PortState::Free;
        Ok(remote)
    }

    /// The other end of `port`'s pair, in domain `by`, was closed: `port`
    /// waits for `by` to bind again, as in Xen.
    pub fn peer_closed(&mut self, port: u32, by: u16) {
        if let Some(PortState::Interdomain { dom, .. }) = self.state(port)
            && dom == by
        {
            self.ports[port as usize] = PortState::Unbound { remote: by };
        }
    }

    /// Closes every port (the domain is going away); returns the other
    /// domains' ends that must be told.
    pub fn close_all(&mut self) -> Vec<(u16, u32)> {
        let mut peers = Vec::new();
        for port in 1..self.ports.len() as u32 {
            if let Ok(Some(peer)) = self.close(port) {
                peers.push(peer);
            }
        }
        peers
    }

    /// EVTCHNOP_send: the port to mark pending and its domain, if any.
    pub fn send(&self, port: u32) -> Result<Option<(u16, u32)>, Errno> {
        match self.state(port).ok_or(Errno::EINVAL)? {
            PortState::Interdomain { dom, port: peer } => Ok(Some((dom, peer))),
            PortState::Ipi => Ok(Some((self.domid, port))),
            PortState::Unbound { .. } => Ok(None),
            PortState::Virq(_) => Err(Errno::EINVAL),
            PortState::Free => Err(Errno::EINVAL),
        }
    }

    /// A port whose other end is the hypervisor itself (`backend`, e.g.
    /// DOMID_XEN for a domU's console ring): sends reach the hypervisor.
    pub fn bind_backend(&mut self, backend: u16) -> Result<u32, Errno> {
        self.alloc(PortState::Interdomain { dom: backend, port: 0 })
    }

    /// The port a VIRQ is bound to.
    pub fn virq_port(&self, virq: u32) -> Option<u32> {
        self.virqs.get(virq as usize).copied().flatten()
    }
}

/// The 2-level event bits of one vCPU in the shared-info page.
pub trait Bits2l {
    /// Sets the pending bit of `port`; returns its old value.
    fn test_and_set_pending(&mut self, port: u32) -> bool;
    fn pending(&self, port: u32) -> bool;
    fn masked(&self, port: u32) -> bool;
    fn clear_mask(&mut self, port: u32);
    /// Clears the pending bit of a closed port, so a later channel that
    /// reuses the number does not inherit a stale event.
    fn clear_pending(&mut self, port: u32);
    /// Sets selector bit `word`; returns its old value.
    fn test_and_set_selector(&mut self, word: u32) -> bool;
    fn set_upcall_pending(&mut self);
}

/// Marks `port` pending; returns true when the vCPU must be told (upcall).
pub fn deliver_2l(bits: &mut impl Bits2l, port: u32) -> bool {
    if bits.test_and_set_pending(port) || bits.masked(port) || bits.test_and_set_selector(port / 64) {
        return false;
    }
    bits.set_upcall_pending();
    true
}

/// EVTCHNOP_unmask: clears the mask and delivers what was held back.
pub fn unmask_2l(bits: &mut impl Bits2l, port: u32) -> bool {
    bits.clear_mask(port);
    if bits.pending(port) && !bits.test_and_set_selector(port / 64) {
        bits.set_upcall_pending();
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Default)]
    struct Bits {
        pending: std::collections::BTreeSet<u32>,
        mask: std::collections::BTreeSet<u32>,
        sel: u64,
        upcall: bool,
    }

    impl Bits2l for Bits {
        fn test_and_set_pending(&mut self, port: u32) -> bool {
            !self.pending.insert(port)
        }
        fn pending(&self, port: u32) -> bool {
            self.pending.contains(&port)
        }
        fn masked(&self, port: u32) -> bool {
            self.mask.contains(&port)
        }
        fn clear_mask(&mut self, port: u32) {
            self.mask.remove(&port);
        }
        fn clear_pending(&mut self, port: u32) {
            self.pending.remove(&port);
        }
        fn test_and_set_selector(&mut self, word: u32) -> bool {
            let old = self.sel & (1 << word) != 0;
            self.sel |= 1 << word;
            old
        }
        fn set_upcall_pending(&mut self) {
            self.upcall = true;
        }
    }

    #[test]
    fn self_interdomain_pair_and_close() {
        let mut e = EventChannels::new(0, NR_PORTS_2L);
        let a = e.alloc_unbound(0).unwrap();
        assert_eq!(a, 1);
        let b = e.bind_interdomain_self(a).unwrap();
        assert_eq!(e.send(a), Ok(Some((0, b))));
        assert_eq!(e.send(b), Ok(Some((0, a))));
        assert_eq!(e.bind_interdomain_self(a), Err(Errno::EINVAL), "already bound");
        e.close(b).unwrap();
        assert_eq!(e.state(a), Some(PortState::Unbound { remote: 0 }));
        assert_eq!(e.send(a), Ok(None));
        assert_eq!(e.close(b), Err(Errno::EINVAL));
        assert_eq!(e.alloc_unbound(0), Ok(b), "lowest free port is reused");
    }

    #[test]
    fn pair_across_domains() {
        let (mut a, mut b) = (EventChannels::new(0, NR_PORTS_2L), EventChannels::new(1, NR_PORTS_2L));
        let pa = a.alloc_unbound(1).unwrap();
        assert_eq!(EventChannels::bind_interdomain(&mut b, &mut a, 99), Err(Errno::EINVAL));
        let other = a.alloc_unbound(2).unwrap();
        assert_eq!(EventChannels::bind_interdomain(&mut b, &mut a, other), Err(Errno::EINVAL), "not for us");
        let pb = EventChannels::bind_interdomain(&mut b, &mut a, pa).unwrap();
        assert_eq!(a.state(pa), Some(PortState::Interdomain { dom: 1, port: pb }));
        assert_eq!(b.send(pb), Ok(Some((0, pa))));
        assert_eq!(EventChannels::bind_interdomain(&mut b, &mut a, pa), Err(Errno::EINVAL), "bound already");
        assert_eq!(b.close(pb), Ok(Some((0, pa))));
        a.peer_closed(pa, 1);
        assert_eq!(a.state(pa), Some(PortState::Unbound { remote: 1 }));
        a.peer_closed(other, 1);
        assert_eq!(
            a.state(other),
            Some(PortState::Unbound { remote: 2 }),
            "only ends paired with the closer"
        );
    }

    #[test]
    fn virqs_and_ipis() {
        let mut e = EventChannels::new(0, NR_PORTS_2L);
        let t = e.bind_virq(0, 0).unwrap();
        assert_eq!(e.bind_virq(0, 0), Err(Errno::EEXIST));
        assert_eq!(e.bind_virq(NR_VIRQS, 0), Err(Errno::EINVAL));
        assert_eq!(e.bind_virq(1, 3), Err(Errno::ENOENT));
        assert_eq!(e.virq_port(0), Some(t));
        assert_eq!(e.send(t), Err(Errno::EINVAL));
        let i = e.bind_ipi(0).unwrap();
        assert_eq!(e.send(i), Ok(Some((0, i))));
        e.close(t).unwrap();
        assert_eq!(e.virq_port(0), None);
        assert_eq!(e.send(0), Err(Errno::EINVAL));
        assert_eq!(e.send(9999), Err(Errno::EINVAL));
    }

    #[test]
    fn port_limit() {
        let mut e = EventChannels::new(0, 4);
        assert_eq!((e.bind_ipi(0), e.bind_ipi(0), e.bind_ipi(0)), (Ok(1), Ok(2), Ok(3)));
        assert_eq!(e.bind_ipi(0), Err(Errno::ENOSPC));
    }

    #[test]
    fn delivery_respects_mask_and_selector() {
        let mut b = Bits::default();
        assert!(deliver_2l(&mut b, 70));
        assert!(b.upcall && b.sel == 1 << 1);
        assert!(!deliver_2l(&mut b, 70), "already pending");
        b.mask.insert(5);
        b.upcall = false;
        assert!(!deliver_2l(&mut b, 5), "masked: held back");
        assert!(!b.upcall);
        assert!(unmask_2l(&mut b, 5), "unmask delivers");
        assert!(b.upcall);
    }

    proptest! {
        /// Random operations on two domains keep the invariants: pairs point
        /// at each other (within a domain or across), each VIRQ has at most
        /// one port, port 0 stays free, closing one end unbinds the other.
        #[test]
        fn invariants(ops in prop::collection::vec((0u8..7, any::<bool>(), 0u32..40), 0..160)) {
            let mut d = [EventChannels::new(0, 32), EventChannels::new(1, 32)];
            for (op, side, n) in ops {
                let (i, j) = if side { (1, 0) } else { (0, 1) };
                let [a, b] = &mut d;
                let (me, other) = if side { (b, a) } else { (a, b) };
                let _ = match op {
                    0 => me.alloc_unbound(if n % 2 == 0 { i as u16 } else { j as u16 }).map(|_| ()),
                    1 => me.bind_interdomain_self(n).map(|_| ()),
                    2 => me.bind_virq(n % (NR_VIRQS + 2), 0).map(|_| ()),
                    3 => me.bind_ipi(0).map(|_| ()),
                    4 => me.close(n).map(|peer| {
                        if let Some((dom, port)) = peer {
                            assert_eq!(dom, j as u16);
                            other.peer_closed(port, i as u16);
                        }
                    }),
                    5 => EventChannels::bind_interdomain(me, other, n).map(|_| ()),
                    _ => me.send(n).map(|_| ()),
                };
                for (k, e) in d.iter().enumerate() {
                    prop_assert_eq!(e.state(0), None);
                    for p in 1..e.ports.len() as u32 {
                        match e.state(p) {
                            Some(PortState::Interdomain { dom, port }) => {
                                let peer = d[dom as usize].state(port);
                                prop_assert_eq!(peer, Some(PortState::Interdomain { dom: k as u16, port: p }));
                            }
                            Some(PortState::Virq(v)) => prop_assert_eq!(e.virq_port(v), Some(p)),
                            _ => {}
                        }
                    }
                    for v in 0..NR_VIRQS {
                        if let Some(p) = e.virq_port(v) {
                            prop_assert_eq!(e.state(p), Some(PortState::Virq(v)));
                        }
                    }
                }
            }
        }

        /// A domain going away leaves no port of another domain pointing at it.
        #[test]
        fn close_all_unbinds_every_peer(binds in 1usize..20) {
            let (mut a, mut b) = (EventChannels::new(0, 64), EventChannels::new(1, 64));
            for _ in 0..binds {
                let p = b.alloc_unbound(0).unwrap();
                EventChannels::bind_interdomain(&mut a, &mut b, p).unwrap();
            }
            for (dom, port) in b.close_all() {
                prop_assert_eq!(dom, 0);
                a.peer_closed(port, 1);
            }
            for p in 1..a.ports.len() as u32 {
                prop_assert_eq!(a.state(p), Some(PortState::Unbound { remote: 1 }));
            }
            prop_assert!((1..64).all(|p| b.state(p).is_none()));
        }

        /// 2-level delivery loses nothing and invents nothing: a sent port is
        /// pending until the guest handles it, an unmasked pending port is
        /// always findable through its selector bit, and once everything is
        /// unmasked and drained each sent port has been handled exactly once
        /// (sends while pending coalesce, as the ABI says).
        #[test]
        fn delivery_exactly_once(ops in prop::collection::vec((0u8..4, 0u32..130), 0..200)) {
            let mut b = Bits::default();
            let mut outstanding = std::collections::BTreeSet::new();
            // What an upcall does: take the selector, handle the pending
            // unmasked ports of each word in it.
            let drain = |b: &mut Bits, outstanding: &mut std::collections::BTreeSet<u32>| {
                b.upcall = false;
                let sel = core::mem::take(&mut b.sel);
                let ready: std::vec::Vec<u32> = b
                    .pending
                    .iter()
                    .copied()
                    .filter(|p| sel & (1 << (p / 64)) != 0 && !b.mask.contains(p))
                    .collect();
                for p in ready {
                    b.pending.remove(&p);
                    if !outstanding.remove(&p) {
                        return Err(p); // handled without a send
                    }
                }
                Ok(())
            };
            for (op, port) in ops {
                match op {
                    0 => {
                        deliver_2l(&mut b, port);
                        outstanding.insert(port);
                    }
                    1 => {
                        b.mask.insert(port);
                    }
                    2 => {
                        unmask_2l(&mut b, port);
                    }
                    _ => prop_assert_eq!(drain(&mut b, &mut outstanding), Ok(())),
                }
                for p in &outstanding {
                    prop_assert!(b.pending(*p), "port {} sent but not pending", p);
                }
                for p in &b.pending {
                    if !b.masked(*p) {
                        prop_assert!(b.sel & (1 << (p / 64)) != 0, "port {} pending, unmasked, not findable", p);
                    }
                }
            }
            for p in b.mask.clone() {
                unmask_2l(&mut b, p);
            }
            prop_assert_eq!(drain(&mut b, &mut outstanding), Ok(()));
            prop_assert!(outstanding.is_empty() && b.pending.is_empty());
        }
    }
}
