// SPDX-License-Identifier: MIT OR Apache-2.0
//! `hvrun`: boot the hypervisor (or Xen) with modules in QEMU and judge the run.
//!
//! The pieces, each testable on its own:
//! - [`spec`]: module specs (`path[:cmdline]`) and the `grub.cfg` text, with GRUB quoting;
//! - [`iso`]: the ISO tree and `grub-mkrescue`;
//! - [`console`]: turning QEMU's serial bytes into clean lines (no `\r`, no ANSI escapes);
//! - [`outcome`]: exit-code names, QEMU exit status → code, Xen's end-of-run lines, and
//!   the final verdict;
//! - [`qemu`]: the QEMU command line and the run loop (timeouts, kills, the KVM probe).

pub mod console;
pub mod iso;
pub mod outcome;
pub mod qemu;
pub mod spec;

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

/// Which kernel GRUB boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Our hypervisor (`build/hypervisor.elf`).
    Ours,
    /// Debian's Xen 4.17 (`/boot/xen-4.17-amd64.gz`).
    Xen,
}

impl Kernel {
    /// The command line each kernel gets before `--cmdline` is appended. Both kernels
    /// let a later option override an earlier one.
    pub fn default_cmdline(self) -> &'static str {
        match self {
            Kernel::Ours => "console=com1 com1=115200",
            Kernel::Xen => "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all",
        }
    }
}

/// Debian's Xen 4.17 image, booted by `--xen`.
pub const XEN_IMAGE: &str = "/boot/xen-4.17-amd64.gz";

/// QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// Everything a run needs once the command line has been parsed.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub kernel: Kernel,
    pub accel: Accel,
    pub machine: String,
    pub cpu: String,
    pub smp: u32,
    pub mem_mib: u64,
    pub timeout: Duration,
    pub expects: Vec<Regex>,
    pub until: Option<Regex>,
    pub expect_exit: u32,
    /// Pass the terminal through to QEMU (a tty, and nothing to wait for).
    pub interactive: bool,
    pub extra_qemu_args: Vec<String>,
    /// Serial input: when a console line first matches the regex, the bytes
    /// are typed into the serial port (each once, in order of matching).
    pub sends: Vec<Send>,
}

/// One `--send REGEX=>TEXT`.
#[derive(Clone, Debug)]
pub struct Send {
    pub on: Regex,
    pub bytes: Vec<u8>,
}

impl std::str::FromStr for Send {
    type Err = String;

    /// `REGEX=>TEXT`, split at the first `=>`; TEXT may use `\n`, `\r`,
    /// `\t`, `\\` and `\xNN`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (re, text) = s.split_once("=>").ok_or_else(|| format!("`{s}`: expected REGEX=>TEXT"))?;
        let on = Regex::new(re).map_err(|e| e.to_string())?;
        Ok(Send { on, bytes: unescape(text)? })
    }
}

fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let v = std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|_| hex.len() == 2)
                    .ok_or_else(|| format!("`{text}`: \\x needs two hex digits"))?;
                out.push(v);
            }
            other => return Err(format!("`{text}`: unknown escape \\{}", other.map_or('?', char::from))),
        }
    }
    Ok(out)
}

/// Process exit statuses of hvrun.
pub mod status {
    /// Ended cleanly, every expectation matched, no `RESULT ... FAIL`.
    pub const OK: i32 = 0;
    /// A missing expectation, a `RESULT ... FAIL` line or the wrong exit code.
    pub const FAIL: i32 = 1;
    /// The run did not end within `--timeout`.
    pub const TIMEOUT: i32 = 2;
    /// QEMU, GRUB, the ISO or the inputs failed: the run says nothing about the kernel.
    pub const INFRA: i32 = 3;
    /// Interrupted by a signal (SIGINT/SIGTERM/SIGHUP).
    pub const INTERRUPTED: i32 = 130;
}

/// Formats a duration as seconds with two decimals, e.g. `1.84 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The hypervisor image to boot when `--hypervisor` is not given: `<dir of the hvrun
/// executable>/../hypervisor.elf` (hvrun is `build/bin/hvrun`, the image
/// `build/hypervisor.elf`); when hvrun runs from `target/`, the repository's
/// `build/hypervisor.elf` as a fallback.
pub fn default_hypervisor_image() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(|d| d.parent()).map(|d| d.join("hypervisor.elf")));
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest.parent().unwrap_or(manifest).join("build/hypervisor.elf");
    match beside {
        Some(p) if p.exists() || !repo.exists() => p,
        _ => repo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_specs() {
        let s: Send = r"ready: \d+=>hi\n\x01\\".parse().unwrap();
        assert!(s.on.is_match("ready: 42"));
        assert_eq!(s.bytes, b"hi\n\x01\\");
        // Split at the first `=>`: the text may contain another.
        assert_eq!("a=>b=>c".parse::<Send>().unwrap().bytes, b"b=>c");
        assert!("no arrow".parse::<Send>().is_err());
        assert!("(=>x".parse::<Send>().is_err()); // a bad regex
        assert!(r"a=>\q".parse::<Send>().is_err());
        assert!(r"a=>\x4".parse::<Send>().is_err());
    }
}
