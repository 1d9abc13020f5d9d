// SPDX-License-Identifier: MIT OR Apache-2.0
//! Links the bare-metal hypervisor with its own script: the image runs in the
//! hypervisor hole but is loaded by GRUB at low physical addresses.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-none" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
        // The 32-bit boot code uses absolute 32-bit relocations; the image is
        // linked at a fixed address, never relocated.
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
        // A SHA-1 of the image, which XENVER_build_id reports as Xen does.
        println!("cargo:rustc-link-arg-bins=--build-id=sha1");
    }
    println!("cargo:rerun-if-changed=link.ld");
}
