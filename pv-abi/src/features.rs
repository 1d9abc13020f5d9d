// SPDX-License-Identifier: MIT OR Apache-2.0
//! Feature bits reported by `XENVER_get_features`. Mirrors
//! `xen/include/public/features.h`.
//!
//! Each constant is a bit number in the feature map; word 0 ([`XenFeatures`]) is the
//! only word Xen 4.17 defines. A kernel lists the ones it needs in its
//! `XEN_ELFNOTE_FEATURES` note by name (`writable_page_tables`, ...).

use bitflags::bitflags;

/// The guest may write its page tables directly (emulated).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// The guest may write its descriptor tables directly.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// The physmap is translated by the hypervisor (PVH/HVM).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// The guest kernel runs in ring 0.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// x86_32 PAE: L3 tables may be above 4 GiB.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `MMU_PT_UPDATE_PRESERVE_AD` is available.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// x86_32: highmem assist.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// Grant mappings may carry available PTE bits.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// HVM: events through a callback vector.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// HVM: safe pvclock.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// HVM: PIRQs.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// The domain is the hardware domain.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENMEM_get_vnumainfo` honours vnodes in memory ops.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// Arm: SMCCC available.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// Linux may place the RSDP anywhere.
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// Memory is not 1:1 mapped (Arm).
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// Memory is 1:1 mapped (Arm).
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// Number of 32-bit feature words.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

bitflags! {
    /// Feature word 0 as bits (`1 << XENFEAT_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct XenFeatures: u32 {
        /// See [`XENFEAT_WRITABLE_PAGE_TABLES`].
        const WRITABLE_PAGE_TABLES = 1 << XENFEAT_WRITABLE_PAGE_TABLES;
        /// See [`XENFEAT_WRITABLE_DESCRIPTOR_TABLES`].
        const WRITABLE_DESCRIPTOR_TABLES = 1 << XENFEAT_WRITABLE_DESCRIPTOR_TABLES;
        /// See [`XENFEAT_AUTO_TRANSLATED_PHYSMAP`].
        const AUTO_TRANSLATED_PHYSMAP = 1 << XENFEAT_AUTO_TRANSLATED_PHYSMAP;
        /// See [`XENFEAT_SUPERVISOR_MODE_KERNEL`].
        const SUPERVISOR_MODE_KERNEL = 1 << XENFEAT_SUPERVISOR_MODE_KERNEL;
        /// See [`XENFEAT_PAE_PGDIR_ABOVE_4GB`].
        const PAE_PGDIR_ABOVE_4GB = 1 << XENFEAT_PAE_PGDIR_ABOVE_4GB;
        /// See [`XENFEAT_MMU_PT_UPDATE_PRESERVE_AD`].
        const MMU_PT_UPDATE_PRESERVE_AD = 1 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD;
        /// See [`XENFEAT_HIGHMEM_ASSIST`].
        const HIGHMEM_ASSIST = 1 << XENFEAT_HIGHMEM_ASSIST;
        /// See [`XENFEAT_GNTTAB_MAP_AVAIL_BITS`].
        const GNTTAB_MAP_AVAIL_BITS = 1 << XENFEAT_GNTTAB_MAP_AVAIL_BITS;
        /// See [`XENFEAT_HVM_CALLBACK_VECTOR`].
        const HVM_CALLBACK_VECTOR = 1 << XENFEAT_HVM_CALLBACK_VECTOR;
        /// See [`XENFEAT_HVM_SAFE_PVCLOCK`].
        const HVM_SAFE_PVCLOCK = 1 << XENFEAT_HVM_SAFE_PVCLOCK;
        /// See [`XENFEAT_HVM_PIRQS`].
        const HVM_PIRQS = 1 << XENFEAT_HVM_PIRQS;
        /// See [`XENFEAT_DOM0`].
        const DOM0 = 1 << XENFEAT_DOM0;
        /// See [`XENFEAT_MEMORY_OP_VNODE_SUPPORTED`].
        const MEMORY_OP_VNODE_SUPPORTED = 1 << XENFEAT_MEMORY_OP_VNODE_SUPPORTED;
        /// See [`XENFEAT_ARM_SMCCC_SUPPORTED`].
        const ARM_SMCCC_SUPPORTED = 1 << XENFEAT_ARM_SMCCC_SUPPORTED;
        /// See [`XENFEAT_LINUX_RSDP_UNRESTRICTED`].
        const LINUX_RSDP_UNRESTRICTED = 1 << XENFEAT_LINUX_RSDP_UNRESTRICTED;
        /// See [`XENFEAT_NOT_DIRECT_MAPPED`].
        const NOT_DIRECT_MAPPED = 1 << XENFEAT_NOT_DIRECT_MAPPED;
        /// See [`XENFEAT_DIRECT_MAPPED`].
        const DIRECT_MAPPED = 1 << XENFEAT_DIRECT_MAPPED;
    }
}

/// The `XENFEAT_*` bit number for a feature name as written in an ELF
/// `XEN_ELFNOTE_FEATURES` string (without a leading `!`).
pub fn feature_by_name(name: &str) -> Option<u32> {
    Some(match name {
        "writable_page_tables" => XENFEAT_WRITABLE_PAGE_TABLES,
        "writable_descriptor_tables" => XENFEAT_WRITABLE_DESCRIPTOR_TABLES,
        "auto_translated_physmap" => XENFEAT_AUTO_TRANSLATED_PHYSMAP,
        "supervisor_mode_kernel" => XENFEAT_SUPERVISOR_MODE_KERNEL,
        "pae_pgdir_above_4gb" => XENFEAT_PAE_PGDIR_ABOVE_4GB,
        "mmu_pt_update_preserve_ad" => XENFEAT_MMU_PT_UPDATE_PRESERVE_AD,
        "highmem_assist" => XENFEAT_HIGHMEM_ASSIST,
        "gnttab_map_avail_bits" => XENFEAT_GNTTAB_MAP_AVAIL_BITS,
        "hvm_callback_vector" => XENFEAT_HVM_CALLBACK_VECTOR,
        "hvm_safe_pvclock" => XENFEAT_HVM_SAFE_PVCLOCK,
        "hvm_pirqs" => XENFEAT_HVM_PIRQS,
        "dom0" => XENFEAT_DOM0,
        "memory_op_vnode_supported" => XENFEAT_MEMORY_OP_VNODE_SUPPORTED,
        "linux_rsdp_unrestricted" => XENFEAT_LINUX_RSDP_UNRESTRICTED,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(feature_by_name("writable_page_tables"), Some(0));
        assert_eq!(feature_by_name("dom0"), Some(XENFEAT_DOM0));
        assert_eq!(feature_by_name("nope"), None);
        assert_eq!(XenFeatures::DOM0.bits(), 1 << 11);
    }
}
