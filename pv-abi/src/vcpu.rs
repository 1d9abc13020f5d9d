// SPDX-License-Identifier: MIT OR Apache-2.0
//! vCPU operations. Mirrors `xen/include/public/vcpu.h`.
//!
//! `HYPERVISOR_vcpu_op(cmd, vcpuid, arg)`: bring vCPUs up and down, timers, and
//! registering `vcpu_info` and runstate areas outside the shared-info page.

/// Set a vCPU's initial state ([`crate::arch_x86::VcpuGuestContext`]).
pub const VCPUOP_INITIALISE: u32 = 0;
/// Start a vCPU.
pub const VCPUOP_UP: u32 = 1;
/// Stop a vCPU.
pub const VCPUOP_DOWN: u32 = 2;
/// Returns 1 if the vCPU is up.
pub const VCPUOP_IS_UP: u32 = 3;
/// Copy the runstate ([`VcpuRunstateInfo`]).
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// Register an area the hypervisor keeps the runstate in.
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// Start a periodic timer ([`VcpuSetPeriodicTimer`]).
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// Stop it.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// Arm a one-shot timer ([`VcpuSetSingleshotTimer`]).
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// Disarm it.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// Move this vCPU's `vcpu_info` to guest memory ([`VcpuRegisterVcpuInfo`]).
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// Send an NMI to the vCPU.
pub const VCPUOP_SEND_NMI: u32 = 11;
/// Physical APIC/ACPI id (dom0, [`VcpuGetPhysid`]).
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// Register a secondary `vcpu_time_info` area.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;

/// Running on a physical CPU.
pub const RUNSTATE_RUNNING: i32 = 0;
/// Runnable, waiting for a CPU.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// Blocked.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// Offline or preempted by the hypervisor.
pub const RUNSTATE_OFFLINE: i32 = 3;
/// Set in `state_entry_time` while the hypervisor updates the area.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;
/// Fail with `-ETIME` if the one-shot timeout is already in the past.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1;

xen_struct! {
    /// Time spent in each runstate (`struct vcpu_runstate_info`).
    pub struct VcpuRunstateInfo: "struct vcpu_runstate_info" {
        /// Current `RUNSTATE_*`.
        pub state: i32,
        /// Padding before `state_entry_time`.
        pub _pad: u32 as pad,
        /// System time the current state was entered.
        pub state_entry_time: u64,
        /// Nanoseconds spent in each state.
        pub time: [u64; 4],
    }

    /// `VCPUOP_register_runstate_memory_area` (`struct vcpu_register_runstate_memory_area`).
    pub struct VcpuRegisterRunstateMemoryArea: "struct vcpu_register_runstate_memory_area" {
        /// Guest virtual address of a [`VcpuRunstateInfo`].
        pub addr: u64,
    }

    /// `VCPUOP_set_periodic_timer` (`struct vcpu_set_periodic_timer`).
    pub struct VcpuSetPeriodicTimer: "struct vcpu_set_periodic_timer" {
        /// Period in ns.
        pub period_ns: u64,
    }

    /// `VCPUOP_set_singleshot_timer` (`struct vcpu_set_singleshot_timer`).
    pub struct VcpuSetSingleshotTimer: "struct vcpu_set_singleshot_timer" {
        /// Absolute system time to fire at.
        pub timeout_abs_ns: u64,
        /// `VCPU_SSHOTTMR_future`.
        pub flags: u32,
        /// Padding after `flags`.
        pub _pad: u32 as pad,
    }

    /// `VCPUOP_register_vcpu_info` (`struct vcpu_register_vcpu_info`).
    pub struct VcpuRegisterVcpuInfo: "struct vcpu_register_vcpu_info" {
        /// Frame holding the new `vcpu_info`.
        pub mfn: u64,
        /// Offset in the frame; the structure may not cross a page.
        pub offset: u32,
        /// Unused.
        pub rsvd: u32,
    }

    /// `VCPUOP_get_physid` (`struct vcpu_get_physid`).
    pub struct VcpuGetPhysid: "struct vcpu_get_physid" {
        /// APIC id in bits 0-31, ACPI id in bits 32-63.
        pub phys_id: u64,
    }

    /// `VCPUOP_register_vcpu_time_memory_area` (`struct vcpu_register_time_memory_area`).
    pub struct VcpuRegisterTimeMemoryArea: "struct vcpu_register_time_memory_area" {
        /// Guest virtual address of a `vcpu_time_info`.
        pub addr: u64,
    }
}

impl VcpuGetPhysid {
    /// The x86 APIC id (`xen_vcpu_physid_to_x86_apicid`).
    pub const fn apic_id(&self) -> u32 {
        self.phys_id as u32
    }

    /// The ACPI id (`xen_vcpu_physid_to_x86_acpiid`).
    pub const fn acpi_id(&self) -> u32 {
        (self.phys_id >> 32) as u32
    }
}
