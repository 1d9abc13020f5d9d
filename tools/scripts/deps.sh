#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Installs what building and testing need, only when something is missing:
# Debian packages (QEMU, GRUB's BIOS image tools, Xen 4.17 for side-by-side
# runs, Xen's headers, busybox, Debian's cloud kernel as the Linux PV guest)
# and the Rust target for bare-metal builds.
set -euo pipefail

# linux-image-cloud-amd64 puts /boot/vmlinuz-<version>-cloud-amd64 (a CONFIG_XEN_PV
# bzImage) on the machine; it brings initramfs-tools (and cpio) along, whose initrd we
# do not use.
packages=(qemu-system-x86 grub-pc-bin grub-common xorriso mtools
          xen-hypervisor-4.17-amd64 libxen-dev busybox-static gcc make
          linux-image-cloud-amd64)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # A newer qemu-utils (from backports) blocks Debian 12's QEMU: take the
    # matching qemu-utils from bookworm along with it.
    extra=()
    if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q '^1:[1-9][0-9]\|^1:[89]'; then
        extra=(qemu-utils/bookworm)
    fi
    $sudo apt-get install -y -qq --allow-downgrades "${missing[@]}" "${extra[@]}" >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    echo "deps: adding the x86_64-unknown-none Rust target"
    rustup target add x86_64-unknown-none
fi
