// SPDX-License-Identifier: MIT OR Apache-2.0
//! Host tools for the hypervisor project.
//!
//! - [`hvrun`]: builds a GRUB multiboot2 ISO with the hypervisor (or Xen 4.17) and its
//!   modules, boots it in QEMU, streams the serial console and gives a verdict
//!   (DESIGN.md 4.2). The binary is `src/bin/hvrun.rs`; the logic lives here so that it
//!   can be unit-tested on the host.
//! - [`kernel`]: the ELF `vmlinux` inside a Linux bzImage (gzip, xz, lzma, lz4, zstd) and
//!   its Xen ELF notes; hvrun uses it for bzImage modules, `bzimage2elf` by hand.
//! - [`initramfs`]: a gzip-compressed newc initramfs with a static busybox and an `/init`
//!   for Linux guests (`busybox-initramfs`).

pub mod hvrun;
pub mod initramfs;
pub mod kernel;
