// SPDX-License-Identifier: MIT OR Apache-2.0
//! The build script of every guest (each guest's Cargo.toml says
//! `build = "../../guest-build.rs"`): for `x86_64-unknown-none`, link the binary with
//! guest-shim's linker script at a fixed address. Host builds (`cargo test`) are left
//! alone; there the guest is a dummy program.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-none" {
        let script = std::env::var("DEP_GUEST_SHIM_LINK_SCRIPT")
            .expect("guest-shim publishes its linker script; add it as a dependency");
        println!("cargo:rustc-link-arg-bins=-T{script}");
        // Linked at the kernel virtual base, never relocated.
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
        println!("cargo:rerun-if-changed={script}");
    }
    println!("cargo:rerun-if-env-changed=DEP_GUEST_SHIM_LINK_SCRIPT");
}
