// SPDX-License-Identifier: MIT OR Apache-2.0
//! `xen_version`: the Xen-ABI version we implement (4.17) and its sub-ops.
//! Features are reported only when they really work.

use super::{Args, Caller, Outcome};
use crate::hal::Guest;
use pv_abi::Errno;
use pv_abi::version::*;
use zerocopy::{FromBytes, IntoBytes};

/// The ABI version we are compatible with.
pub const MAJOR: u32 = 4;
pub const MINOR: u32 = 17;

/// XENFEAT_* bits of submap 0 that this hypervisor honours:
/// MMU_PT_UPDATE_PRESERVE_AD, and GNTTAB_MAP_AVAIL_BITS (a grant map's flags
/// bits 16-18 land in the PTE's available bits 9-11).
pub const FEATURES_0: u32 = (1 << pv_abi::features::XENFEAT_MMU_PT_UPDATE_PRESERVE_AD)
    | (1 << pv_abi::features::XENFEAT_GNTTAB_MAP_AVAIL_BITS);

/// Copies `text` NUL-padded into an `N`-byte buffer in the guest.
fn put_str<const N: usize>(guest: &mut dyn Guest, va: u64, text: &str) -> Result<i64, Errno> {
    let mut buf = [0u8; N];
    let n = text.len().min(N - 1);
    buf[..n].copy_from_slice(&text.as_bytes()[..n]);
    guest.copy_to(va, &buf)?;
    Ok(0)
}

pub fn xen_version(caller: &Caller<'_>, guest: &mut dyn Guest, args: &Args) -> Outcome {
    let arg = args[1];
    let r = match super::int(args[0]) {
        Ok(XENVER_VERSION) => Ok(i64::from((MAJOR << 16) | MINOR)),
        Ok(XENVER_EXTRAVERSION) => put_str::<XEN_EXTRAVERSION_LEN>(guest, arg, ".0-rs"),
        Ok(XENVER_COMPILE_INFO) => {
            let mut info = XenCompileInfo::default();
            let fill = |dst: &mut [u8], s: &str| dst[..s.len()].copy_from_slice(s.as_bytes());
            fill(&mut info.compiler, "rustc");
            fill(&mut info.compile_by, "hypervisor");
            fill(&mut info.compile_domain, "localhost");
            fill(&mut info.compile_date, env!("CARGO_PKG_VERSION"));
            guest.copy_to(arg, info.as_bytes()).map(|_| 0).map_err(Errno::from)
        }
        Ok(XENVER_CAPABILITIES) => put_str::<XEN_CAPABILITIES_INFO_LEN>(guest, arg, "xen-3.0-x86_64"),
        Ok(XENVER_CHANGESET) => put_str::<XEN_CHANGESET_INFO_LEN>(guest, arg, "rust"),
        Ok(XENVER_PLATFORM_PARAMETERS) => {
            let p = XenPlatformParameters { virt_start: pv_abi::arch_x86::HYPERVISOR_VIRT_START };
            guest.copy_to(arg, p.as_bytes()).map(|_| 0).map_err(Errno::from)
        }
        Ok(XENVER_GET_FEATURES) => get_features(caller, guest, arg),
        // A non-null argument is an error: there is nothing to write.
        Ok(XENVER_PAGESIZE) if arg != 0 => Err(Errno::EINVAL),
        Ok(XENVER_PAGESIZE) => Ok(4096),
        Ok(XENVER_GUEST_HANDLE) => guest.copy_to(arg, &[0u8; 16]).map(|_| 0).map_err(Errno::from),
        Ok(XENVER_COMMANDLINE) if !caller.privileged => Err(Errno::EPERM),
        Ok(XENVER_COMMANDLINE) => put_str::<XEN_COMMANDLINE_LEN>(guest, arg, caller.hv_cmdline),
        Ok(XENVER_BUILD_ID) if !caller.privileged => Err(Errno::EPERM),
        Ok(XENVER_BUILD_ID) => build_id(caller, guest, arg),
        _ => Err(Errno::ENOSYS),
    };
    Outcome::from(r)
}

/// XENVER_build_id: a null argument asks for the size; else the argument is
/// `{ u32 len; u8 buf[len] }` and gets the id if `len` is big enough.
fn build_id(caller: &Caller<'_>, guest: &mut dyn Guest, arg: u64) -> Result<i64, Errno> {
    let id = caller.build_id;
    if id.is_empty() {
        return Err(Errno::ENODATA);
    }
    if arg == 0 {
        return Ok(id.len() as i64);
    }
    let mut len = [0u8; 4];
    guest.copy_from(arg, &mut len)?;
    match u32::from_le_bytes(len) as usize {
        0 => Err(Errno::EINVAL),
        n if n < id.len() => Err(Errno::ENOBUFS),
        _ => {
            guest.copy_to(arg + 4, id)?;
            Ok(id.len() as i64)
        }
    }
}

fn get_features(caller: &Caller<'_>, guest: &mut dyn Guest, arg: u64) -> Result<i64, Errno> {
    let mut fi = XenFeatureInfo::default();
    guest.copy_from(arg, fi.as_mut_bytes())?;
    let mut fi = XenFeatureInfo::read_from_bytes(fi.as_bytes()).unwrap_or_default();
    fi.submap = match fi.submap_idx {
        // XENFEAT_dom0: this domain runs as the hardware domain.
        0 if caller.privileged => FEATURES_0 | (1 << pv_abi::features::XENFEAT_DOM0),
        0 => FEATURES_0,
        // XENFEAT_NR_SUBMAPS is 1.
        _ => return Err(Errno::EINVAL),
    };
    guest.copy_to(arg, fi.as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fake::FakeGuest;
    use crate::hypercall::tests::{BASE, DOM0, DOMU};

    #[test]
    fn version_and_strings() {
        let mut g = FakeGuest::new(BASE, 4096);
        let call =
            |c, g: &mut FakeGuest, cmd: u32, arg| xen_version(c, g, &[u64::from(cmd), arg, 0, 0, 0, 0]);
        assert_eq!(call(&DOM0, &mut g, XENVER_VERSION, 0), Outcome::Return(0x4_0011));
        assert_eq!(call(&DOM0, &mut g, XENVER_CAPABILITIES, BASE), Outcome::Return(0));
        assert!(g.mem.starts_with(b"xen-3.0-x86_64\0"));
        assert_eq!(call(&DOM0, &mut g, XENVER_COMMANDLINE, BASE), Outcome::Return(0));
        assert!(g.mem.starts_with(b"console=com1 loglvl=all\0"));
        assert_eq!(call(&DOMU, &mut g, XENVER_COMMANDLINE, BASE), Outcome::Return(-1));
        assert_eq!(call(&DOM0, &mut g, XENVER_CAPABILITIES, 0x10), Outcome::Return(-14));
        assert_eq!(call(&DOM0, &mut g, 4242, BASE), Outcome::Return(-38));
        assert_eq!(call(&DOM0, &mut g, XENVER_PAGESIZE, 0), Outcome::Return(4096));
        g.mem[..8].copy_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(call(&DOM0, &mut g, XENVER_GET_FEATURES, BASE), Outcome::Return(0));
        assert_eq!(u32::from_le_bytes(g.mem[4..8].try_into().unwrap()), FEATURES_0 | 1 << 11);
        g.mem[..8].fill(0);
        assert_eq!(call(&DOMU, &mut g, XENVER_GET_FEATURES, BASE), Outcome::Return(0));
        assert_eq!(u32::from_le_bytes(g.mem[4..8].try_into().unwrap()), FEATURES_0);
        g.mem[..4].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(call(&DOM0, &mut g, XENVER_GET_FEATURES, BASE), Outcome::Return(-22));
    }
}
