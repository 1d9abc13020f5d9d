// SPDX-License-Identifier: MIT OR Apache-2.0
//! Publishes the path of the guests' linker script to the build scripts of the crates
//! that depend on this one, as `DEP_GUEST_SHIM_LINK_SCRIPT` (see `guest-build.rs`).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:link_script={dir}/link.ld");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
