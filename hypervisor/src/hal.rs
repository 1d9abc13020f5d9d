// SPDX-License-Identifier: MIT OR Apache-2.0
//! The narrow interfaces between the object logic and the machine: the arch
//! layer implements them on the target, recording fakes implement them in the
//! host tests.

use crate::mm::frame::Mfn;

pub const PAGE_SIZE: usize = 4096;

/// Byte access to machine frames (the hypervisor's direct map on the target).
/// Offsets are within one frame: `offset + len <= PAGE_SIZE`.
pub trait FrameMemory {
    // Reads serve the PV MMU (page-table validation) and the builder's tests.
    #[cfg_attr(target_os = "none", allow(dead_code))]
    fn read(&self, mfn: Mfn, offset: usize, buf: &mut [u8]);
    fn write(&mut self, mfn: Mfn, offset: usize, data: &[u8]);
    fn zero(&mut self, mfn: Mfn);

    #[cfg_attr(target_os = "none", allow(dead_code))]
    fn read_u64(&self, mfn: Mfn, index: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(mfn, index * 8, &mut b);
        u64::from_le_bytes(b)
    }

    fn write_u64(&mut self, mfn: Mfn, index: usize, value: u64) {
        self.write(mfn, index * 8, &value.to_le_bytes());
    }
}

/// Start and end of the hypervisor's hole in every guest address space.
const HOLE: core::ops::Range<u64> = 0xffff_8000_0000_0000..0xffff_8800_0000_0000;

/// Whether `v` is a canonical 48-bit virtual address.
pub fn canonical(v: u64) -> bool {
    let top = (v as i64) >> 47;
    top == 0 || top == -1
}

/// Whether `[va, va + len)` is a range the hypervisor may access on a
/// guest's behalf: it does not wrap, is canonical, and stays out of the
/// hypervisor's hole (which maps the hypervisor itself).
pub fn guest_range_ok(va: u64, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    let Some(end) = va.checked_add(len as u64) else {
        return false;
    };
    let lower_half = end <= 0x0000_8000_0000_0000;
    let upper_half = va >= HOLE.end;
    lower_half || upper_half
}

/// A guest address the hypervisor could not read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// What hypercall handlers may touch: the calling guest's virtual memory,
/// its page tables and frames, the TLB and the console.
pub trait Guest {
    fn copy_from(&mut self, va: u64, buf: &mut [u8]) -> Result<(), Fault>;
    fn copy_to(&mut self, va: u64, data: &[u8]) -> Result<(), Fault>;
    fn console_write(&mut self, bytes: &[u8]);
    /// Takes serial input for the guest (dom0); returns the bytes read.
    fn console_read(&mut self, buf: &mut [u8]) -> usize;
    /// The domain's page tables: the frame table and machine memory.
    fn mmu(&mut self) -> crate::mm::guest_pt::Mmu<'_, 'static>;
    /// The vCPU's base pointers (L4s): the kernel's, or the user's if any.
    fn baseptr(&self, user: bool) -> Option<Mfn>;
    /// Records a new base pointer (its reference is the caller's to take),
    /// loading it if that mode is running.
    fn set_baseptr(&mut self, user: bool, mfn: Option<Mfn>);
    /// MMU_MACHPHYS_UPDATE: the machine-to-phys entry of one of its frames.
    fn set_m2p(&mut self, mfn: Mfn, pfn: u64);
    /// The domain's current and maximum size in pages.
    fn reservation(&self) -> (u64, u64);
    /// A new, zeroed frame for the domain, within its maximum.
    fn alloc_page(&mut self) -> Option<Mfn>;
    /// The machine's RAM and free frames, in pages.
    fn page_counts(&self) -> (u64, u64);
    /// A new, zeroed frame the hypervisor shares with the domain (grant
    /// table frames): the domain may map it but never give it away.
    fn alloc_shared_page(&mut self) -> Option<Mfn>;
    /// The domain's grant table, with its page tables.
    fn gnttab(&mut self) -> (&mut crate::gnttab::GrantTable, crate::mm::guest_pt::Mmu<'_, 'static>);
    /// The grant table of `granter` (the caller's own or another existing
    /// domain's), with the caller's maptrack and page tables.
    fn gnttab_of(
        &mut self,
        granter: u16,
    ) -> Option<(
        &mut crate::gnttab::GrantTable,
        &mut crate::gnttab::Maptrack,
        crate::mm::guest_pt::Mmu<'_, 'static>,
    )>;
    /// The caller's maptrack and page tables.
    fn maptrack(&mut self) -> (&mut crate::gnttab::Maptrack, crate::mm::guest_pt::Mmu<'_, 'static>);
    /// Flushes the TLB: one address, or everything.
    fn flush_tlb(&mut self, va: Option<u64>);
    /// The calling vCPU's virtual IDT and callbacks.
    fn traps(&mut self) -> &mut crate::pv::traps::VcpuTraps;
    /// CR0.TS as the guest asked (`fpu_taskswitch`).
    fn set_fpu_ts(&mut self, on: bool);
    /// A `SEGBASE_*` base; non-canonical values are refused.
    fn set_segment_base(&mut self, which: u32, value: u64) -> Result<(), pv_abi::Errno>;
    /// The domain's event channels.
    fn event_channels(&mut self) -> &mut crate::evtchn::EventChannels;
    /// Marks a local port pending (2-level) and notes an upcall if due.
    fn deliver_event(&mut self, port: u32);
    /// EVTCHNOP_unmask's delivery side.
    fn unmask_event(&mut self, port: u32);
    /// EVTCHNOP_close: frees the port and clears its pending bit.
    fn close_event(&mut self, port: u32) -> Result<(), pv_abi::Errno>;
    /// The vCPU's one-shot timer: an absolute system time, or none.
    fn set_timer(&mut self, deadline: Option<u64>);
    /// Entry `index` of the guest's part of the GDT as the CPU sees it.
    fn write_gdt_entry(&mut self, index: usize, value: u64);
    /// Page `k` of the CPU's LDT: a checked descriptor page of the guest,
    /// or none (an empty page).
    fn map_ldt_page(&mut self, k: usize, frame: Option<Mfn>);
    /// Makes the first `entries` LDT entries the CPU's LDT (0: none).
    fn load_ldt(&mut self, entries: usize);
    /// The domain's scheduling state (shutdown code, watchdogs, pin).
    fn sched(&mut self) -> &mut crate::hypercall::SchedState;
    /// The watchdog deadlines changed: the timer must cover them.
    fn watchdogs_changed(&mut self);
    /// An event is due for delivery: upcall pending and events not masked.
    fn events_due(&self) -> bool;
    /// Whether `port`'s pending bit is set.
    fn event_pending(&self, port: u32) -> bool;
    /// Whether domain `dom` exists.
    fn domain_exists(&self, dom: u16) -> bool;
    /// The event channels of another existing domain.
    fn event_channels_of(&mut self, dom: u16) -> Option<&mut crate::evtchn::EventChannels>;
    /// The caller's event channels and another existing domain's, together.
    fn event_channels_with(
        &mut self,
        dom: u16,
    ) -> Option<(&mut crate::evtchn::EventChannels, &mut crate::evtchn::EventChannels)>;
    /// Marks `port` of another domain (or of the hypervisor's backends,
    /// DOMID_XEN) pending, waking its vCPU if that is what it waits for.
    fn deliver_event_to(&mut self, dom: u16, port: u32);
    /// XEN_DOMCTL_getdomaininfo's view of the first domain whose id is at
    /// least `dom` (Xen 4.17's rule), if any.
    fn domain_info(&self, dom: u16) -> Option<DomainInfo>;
    /// XEN_DOMCTL_pausedomain / unpausedomain / destroydomain of another
    /// domain (the handler checks the caller and the id).
    fn pause_domain(&mut self, dom: u16, pause: bool) -> Result<(), pv_abi::Errno>;
    fn destroy_domain(&mut self, dom: u16) -> Result<(), pv_abi::Errno>;
    /// VCPUOP_register_vcpu_info: vCPU 0's `vcpu_info` moves to `offset`
    /// (checked: within the page, aligned) in the domain's own frame `mfn`,
    /// which keeps a writable type while used; only once.
    fn register_vcpu_info(&mut self, mfn: Mfn, offset: usize) -> Result<(), pv_abi::Errno>;
    /// VCPUOP_register_runstate_memory_area: the guest address the vCPU's
    /// `vcpu_runstate_info` is kept at (0: none).
    fn set_runstate_area(&mut self, va: u64);
    /// SCHEDOP_remote_shutdown of another domain with a `SHUTDOWN_*` reason.
    fn shutdown_domain(&mut self, dom: u16, reason: u32) -> Result<(), pv_abi::Errno>;
}

/// What XEN_DOMCTL_getdomaininfo reports of a domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainInfo {
    pub domid: u16,
    /// `XEN_DOMINF_*` flags, the shutdown reason in their high byte.
    pub flags: u32,
    pub tot_pages: u64,
    pub max_pages: u64,
    pub shared_info_frame: u64,
    /// CPU time used, ns.
    pub cpu_time: u64,
    pub nr_online_vcpus: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn guest_ranges() {
        assert!(guest_range_ok(0x1000, 4096));
        assert!(guest_range_ok(0x7fff_ffff_f000, 4096));
        assert!(!guest_range_ok(0x7fff_ffff_f000, 4097)); // into the non-canonical gap
        assert!(!guest_range_ok(0xffff_8000_0000_0000, 8)); // the hole
        assert!(!guest_range_ok(0xffff_82d0_4020_0000, 1)); // the hypervisor's image
        assert!(!guest_range_ok(0xffff_87ff_ffff_fff8, 16));
        assert!(guest_range_ok(0xffff_8800_0000_0000, 8));
        assert!(guest_range_ok(0xffff_ffff_8000_0000, 4096));
        assert!(!guest_range_ok(0xffff_ffff_ffff_fff0, 32)); // wraps
        assert!(!guest_range_ok(0x0000_8000_0000_0000, 1)); // non-canonical
    }

    proptest! {
        /// No accepted range touches the hole or the non-canonical gap.
        #[test]
        fn accepted_ranges_avoid_the_hypervisor(va in any::<u64>(), len in 1usize..1 << 20) {
            if guest_range_ok(va, len) {
                let end = va + len as u64;
                prop_assert!(end <= HOLE.start || va >= HOLE.end);
                prop_assert!(end <= 0x0000_8000_0000_0000 || va >= 0xffff_8000_0000_0000);
            }
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A frame memory backed by a map, recording every frame written.
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct FakeMemory {
        pub frames: BTreeMap<u64, std::boxed::Box<[u8; PAGE_SIZE]>>,
    }

    impl FakeMemory {
        fn frame(&mut self, mfn: Mfn) -> &mut [u8; PAGE_SIZE] {
            self.frames.entry(mfn.0).or_insert_with(|| std::boxed::Box::new([0xa5; PAGE_SIZE]))
        }
    }

    /// Frames the fake guest (domain 0) owns in its frame table; frame 256 is
    /// another domain's, the next `FAKE_POOL` are free.
    pub const FAKE_FRAMES: core::ops::Range<u64> = 0..256;
    pub const FAKE_POOL: usize = 8;

    /// A guest whose memory is one flat window `[base, base + mem.len())`,
    /// owning frames `FAKE_FRAMES` (all zero).
    pub struct FakeGuest {
        pub base: u64,
        pub mem: std::vec::Vec<u8>,
        pub console: std::vec::Vec<u8>,
        pub input: std::vec::Vec<u8>,
        pub frames: FakeMemory,
        pub ft: crate::mm::frame_table::FrameTable<'static>,
        pub hv_slots: [u64; 16],
        pub baseptrs: [Option<Mfn>; 2],
        pub m2p: std::collections::BTreeMap<u64, u64>,
        /// Free frames the fake hypervisor hands out, and the domain's limit.
        pub pool: std::vec::Vec<u64>,
        pub max_pages: u64,
        pub flushes: std::vec::Vec<Option<u64>>,
        pub traps: crate::pv::traps::VcpuTraps,
        pub evtchn: crate::evtchn::EventChannels,
        pub delivered: std::vec::Vec<u32>,
        pub unmasked: std::vec::Vec<u32>,
        pub timer: Option<u64>,
        pub gdt: std::collections::BTreeMap<usize, u64>,
        pub ldt: std::collections::BTreeMap<usize, Mfn>,
        pub ldt_loaded: usize,
        pub sched: crate::hypercall::SchedState,
        pub gnttab: crate::gnttab::GrantTable,
        pub due: bool,
        pub pending: std::collections::BTreeSet<u32>,
        /// Other domains: their event channels and pause counts.
        pub others: std::collections::BTreeMap<u16, (crate::evtchn::EventChannels, u32)>,
        /// Other domains' grant tables, and the caller's maptrack.
        pub foreign_gnttab: std::collections::BTreeMap<u16, crate::gnttab::GrantTable>,
        pub maptrack: crate::gnttab::Maptrack,
        pub remote_delivered: std::vec::Vec<(u16, u32)>,
        pub destroyed: std::vec::Vec<u16>,
        pub runstate_area: Option<u64>,
        pub vcpu_info: Option<(u64, usize)>,
    }

    impl FakeGuest {
        pub fn new(base: u64, len: usize) -> Self {
            FakeGuest {
                base,
                mem: std::vec![0; len],
                console: std::vec::Vec::new(),
                input: std::vec::Vec::new(),
                frames: {
                    let mut m = FakeMemory::default();
                    FAKE_FRAMES.for_each(|f| m.zero(Mfn(f)));
                    m
                },
                ft: {
                    use crate::mm::frame_table::{FrameTable, PageInfo};
                    let mut pages = std::vec![PageInfo::allocated(0); FAKE_FRAMES.end as usize];
                    pages.push(PageInfo::allocated(1)); // another domain's frame
                    let free = PageInfo { owner: crate::mm::frame_table::Owner::Free, ..PageInfo::IO };
                    pages.extend([free; FAKE_POOL]);
                    FrameTable::new(std::boxed::Box::leak(pages.into_boxed_slice()))
                },
                hv_slots: [0; 16],
                baseptrs: [None; 2],
                m2p: Default::default(),
                pool: (FAKE_FRAMES.end + 1..FAKE_FRAMES.end + 1 + FAKE_POOL as u64).rev().collect(),
                max_pages: FAKE_FRAMES.end + 4,
                flushes: std::vec::Vec::new(),
                traps: Default::default(),
                evtchn: crate::evtchn::EventChannels::new(0, crate::evtchn::NR_PORTS_2L),
                delivered: std::vec::Vec::new(),
                unmasked: std::vec::Vec::new(),
                timer: None,
                gdt: Default::default(),
                ldt: Default::default(),
                ldt_loaded: 0,
                sched: Default::default(),
                gnttab: Default::default(),
                due: false,
                pending: Default::default(),
                others: Default::default(),
                foreign_gnttab: Default::default(),
                maptrack: Default::default(),
                remote_delivered: std::vec::Vec::new(),
                destroyed: std::vec::Vec::new(),
                runstate_area: None,
                vcpu_info: None,
            }
        }
        fn range(&self, va: u64, len: usize) -> Result<core::ops::Range<usize>, Fault> {
            let start = va.checked_sub(self.base).ok_or(Fault)? as usize;
            let end = start.checked_add(len).ok_or(Fault)?;
            if end <= self.mem.len() { Ok(start..end) } else { Err(Fault) }
        }
    }

    impl Guest for FakeGuest {
        fn copy_from(&mut self, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
            let r = self.range(va, buf.len())?;
            buf.copy_from_slice(&self.mem[r]);
            Ok(())
        }
        fn copy_to(&mut self, va: u64, data: &[u8]) -> Result<(), Fault> {
            let r = self.range(va, data.len())?;
            self.mem[r].copy_from_slice(data);
            Ok(())
        }
        fn console_write(&mut self, bytes: &[u8]) {
            self.console.extend_from_slice(bytes);
        }
        fn console_read(&mut self, buf: &mut [u8]) -> usize {
            let n = buf.len().min(self.input.len());
            for (b, i) in buf.iter_mut().zip(self.input.drain(..n)) {
                *b = i;
            }
            n
        }
        fn mmu(&mut self) -> crate::mm::guest_pt::Mmu<'_, 'static> {
            crate::mm::guest_pt::Mmu::new(&mut self.ft, &mut self.frames, 0, false, &self.hv_slots)
        }
        fn baseptr(&self, user: bool) -> Option<Mfn> {
            self.baseptrs[usize::from(user)]
        }
        fn set_baseptr(&mut self, user: bool, mfn: Option<Mfn>) {
            self.baseptrs[usize::from(user)] = mfn;
        }
        fn set_m2p(&mut self, mfn: Mfn, pfn: u64) {
            self.m2p.insert(mfn.0, pfn);
        }
        fn reservation(&self) -> (u64, u64) {
            let (_, _, _, owned) = self.ft.census();
            (owned - 1, self.max_pages) // less the other domain's frame
        }
        fn alloc_shared_page(&mut self) -> Option<Mfn> {
            let mfn = Mfn(self.pool.pop()?);
            self.frames.zero(mfn);
            self.ft.set(mfn.0, crate::mm::frame_table::PageInfo::shared(0));
            Some(mfn)
        }
        fn gnttab(&mut self) -> (&mut crate::gnttab::GrantTable, crate::mm::guest_pt::Mmu<'_, 'static>) {
            let mmu = crate::mm::guest_pt::Mmu::new(&mut self.ft, &mut self.frames, 0, false, &self.hv_slots);
            (&mut self.gnttab, mmu)
        }
        fn gnttab_of(
            &mut self,
            granter: u16,
        ) -> Option<(
            &mut crate::gnttab::GrantTable,
            &mut crate::gnttab::Maptrack,
            crate::mm::guest_pt::Mmu<'_, 'static>,
        )> {
            let gt = match granter {
                0 => &mut self.gnttab,
                d => self.foreign_gnttab.get_mut(&d)?,
            };
            let mmu = crate::mm::guest_pt::Mmu::new(&mut self.ft, &mut self.frames, 0, false, &self.hv_slots);
            Some((gt, &mut self.maptrack, mmu))
        }
        fn maptrack(&mut self) -> (&mut crate::gnttab::Maptrack, crate::mm::guest_pt::Mmu<'_, 'static>) {
            let mmu = crate::mm::guest_pt::Mmu::new(&mut self.ft, &mut self.frames, 0, false, &self.hv_slots);
            (&mut self.maptrack, mmu)
        }
        fn page_counts(&self) -> (u64, u64) {
            (self.ft.len() as u64, self.pool.len() as u64)
        }
        fn alloc_page(&mut self) -> Option<Mfn> {
            if self.reservation().0 >= self.max_pages {
                return None;
            }
            let mfn = Mfn(self.pool.pop()?);
            self.frames.zero(mfn);
            self.ft.set(mfn.0, crate::mm::frame_table::PageInfo::allocated(0));
            Some(mfn)
        }
        fn flush_tlb(&mut self, va: Option<u64>) {
            self.flushes.push(va);
        }
        fn traps(&mut self) -> &mut crate::pv::traps::VcpuTraps {
            &mut self.traps
        }
        fn set_fpu_ts(&mut self, on: bool) {
            self.traps.fpu_ts = on;
        }
        fn set_segment_base(&mut self, _which: u32, value: u64) -> Result<(), pv_abi::Errno> {
            if canonical(value) { Ok(()) } else { Err(pv_abi::Errno::EINVAL) }
        }
        fn event_channels(&mut self) -> &mut crate::evtchn::EventChannels {
            &mut self.evtchn
        }
        fn deliver_event(&mut self, port: u32) {
            self.delivered.push(port);
        }
        fn unmask_event(&mut self, port: u32) {
            self.unmasked.push(port);
        }
        fn close_event(&mut self, port: u32) -> Result<(), pv_abi::Errno> {
            if let Some((dom, peer)) = self.evtchn.close(port)?
                && let Some((e, _)) = self.others.get_mut(&dom)
            {
                e.peer_closed(peer, 0);
            }
            Ok(())
        }
        fn domain_exists(&self, dom: u16) -> bool {
            dom == 0 || self.others.contains_key(&dom)
        }
        fn event_channels_of(&mut self, dom: u16) -> Option<&mut crate::evtchn::EventChannels> {
            self.others.get_mut(&dom).map(|(e, _)| e)
        }
        fn event_channels_with(
            &mut self,
            dom: u16,
        ) -> Option<(&mut crate::evtchn::EventChannels, &mut crate::evtchn::EventChannels)> {
            let (e, _) = self.others.get_mut(&dom)?;
            Some((&mut self.evtchn, e))
        }
        fn deliver_event_to(&mut self, dom: u16, port: u32) {
            self.remote_delivered.push((dom, port));
        }
        fn domain_info(&self, dom: u16) -> Option<DomainInfo> {
            let id = if dom == 0 { 0 } else { *self.others.range(dom..).next()?.0 };
            let paused = self.others.get(&id).is_some_and(|(_, p)| *p > 0);
            let flags = if paused { pv_abi::domctl::XEN_DOMINF_PAUSED } else { 0 };
            Some(DomainInfo {
                domid: id,
                flags,
                tot_pages: 256,
                max_pages: 260,
                nr_online_vcpus: 1,
                ..Default::default()
            })
        }
        fn pause_domain(&mut self, dom: u16, pause: bool) -> Result<(), pv_abi::Errno> {
            let (_, count) = self.others.get_mut(&dom).ok_or(pv_abi::Errno::ESRCH)?;
            match (pause, *count) {
                (true, _) => *count += 1,
                (false, 0) => return Err(pv_abi::Errno::EINVAL),
                (false, _) => *count -= 1,
            }
            Ok(())
        }
        fn destroy_domain(&mut self, dom: u16) -> Result<(), pv_abi::Errno> {
            let (mut e, _) = self.others.remove(&dom).ok_or(pv_abi::Errno::ESRCH)?;
            for (_, port) in e.close_all() {
                self.evtchn.peer_closed(port, dom);
            }
            self.destroyed.push(dom);
            Ok(())
        }
        fn register_vcpu_info(&mut self, mfn: Mfn, offset: usize) -> Result<(), pv_abi::Errno> {
            if self.vcpu_info.is_some() {
                return Err(pv_abi::Errno::EINVAL);
            }
            self.vcpu_info = Some((mfn.0, offset));
            Ok(())
        }
        fn set_runstate_area(&mut self, va: u64) {
            self.runstate_area = Some(va);
        }
        fn shutdown_domain(&mut self, dom: u16, _reason: u32) -> Result<(), pv_abi::Errno> {
            self.destroy_domain(dom)
        }
        fn set_timer(&mut self, deadline: Option<u64>) {
            self.timer = deadline;
        }
        fn sched(&mut self) -> &mut crate::hypercall::SchedState {
            &mut self.sched
        }
        fn watchdogs_changed(&mut self) {}
        fn events_due(&self) -> bool {
            self.due
        }
        fn event_pending(&self, port: u32) -> bool {
            self.pending.contains(&port)
        }
        fn map_ldt_page(&mut self, k: usize, frame: Option<Mfn>) {
            match frame {
                Some(f) => self.ldt.insert(k, f),
                None => self.ldt.remove(&k),
            };
        }
        fn load_ldt(&mut self, entries: usize) {
            self.ldt_loaded = entries;
        }
        fn write_gdt_entry(&mut self, index: usize, value: u64) {
            if value == 0 {
                self.gdt.remove(&index);
            } else {
                self.gdt.insert(index, value);
            }
        }
    }

    impl FrameMemory for FakeMemory {
        fn read(&self, mfn: Mfn, offset: usize, buf: &mut [u8]) {
            let f = self.frames.get(&mfn.0).expect("read of a frame never written");
            buf.copy_from_slice(&f[offset..offset + buf.len()]);
        }
        fn write(&mut self, mfn: Mfn, offset: usize, data: &[u8]) {
            self.frame(mfn)[offset..offset + data.len()].copy_from_slice(data);
        }
        fn zero(&mut self, mfn: Mfn) {
            self.frame(mfn).fill(0);
        }
    }
}
