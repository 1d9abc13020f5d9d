// SPDX-License-Identifier: MIT OR Apache-2.0
//! The smallest PV guest: says hello, shows what it runs on, powers off.
//!
//! Copy this directory to start a new guest (rename the package in Cargo.toml).
//! Build: `make` (or `cargo build --release --target x86_64-unknown-none -p hello`),
//! then boot it as dom0 of Xen: `build/bin/hvrun --xen build/guests/hello.elf`.

// A bare-metal program on the guest target; on the host (`cargo test --workspace`)
// an empty one, so the workspace builds everywhere.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_shim::{StartInfo, println};

// `start` is the guest's main. guest-shim's runtime calls it once the guest is set up
// (stack, console) and powers the domain off when it returns; a panic prints the
// message and crashes the domain.
guest_shim::entry!(start);

fn start(si: &'static StartInfo) {
    println!("hello from a PV guest");

    // Hypercalls go through the hypercall page that Xen filled for us.
    let xen = guest_shim::hypercalls();
    let (major, minor) = xen.xen_version();
    println!("running on Xen {major}.{minor}");

    // start_info describes the domain: magic, memory, flags, command line...
    let magic = core::str::from_utf8(si.magic_str()).unwrap_or("?");
    let cmdline = core::str::from_utf8(si.cmdline()).unwrap_or("?");
    println!("start_info magic: {magic}");
    println!("{} pages, command line \"{cmdline}\"", si.nr_pages);
}

#[cfg(not(target_os = "none"))]
fn main() {}
