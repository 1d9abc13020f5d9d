// SPDX-License-Identifier: MIT OR Apache-2.0
//! The bootable ISO: a tree with `boot/hv`, `boot/m0..`, `boot/grub/grub.cfg`, made into
//! an image by `grub-mkrescue` (BIOS GRUB from grub-pc-bin, with xorriso).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::spec::{self, ModuleSpec};
use crate::kernel;

/// Checks that the kernel image and every module are readable regular files.
pub fn check_inputs(kernel_image: &Path, modules: &[ModuleSpec]) -> Result<(), String> {
    let check = |what: &str, p: &Path| -> Result<(), String> {
        match fs::metadata(p) {
            Ok(m) if m.is_file() => fs::File::open(p)
                .map(|_| ())
                .map_err(|e| format!("{what} {} cannot be read: {e}", p.display())),
            Ok(_) => Err(format!("{what} {} is not a regular file", p.display())),
            Err(e) => Err(format!("{what} {} not found: {e}", p.display())),
        }
    };
    check("kernel image", kernel_image)?;
    for (i, m) in modules.iter().enumerate() {
        check(&format!("module {i}"), &m.path)?;
    }
    Ok(())
}

/// Replaces each module that is a bzImage with the ELF `vmlinux` inside it, written to
/// `work` as `m<index>.elf`: our hypervisor loads only ELF (DESIGN: boot formats are parsed
/// in the tools, never in ring 0). Other modules are left as they are. Returns one line per
/// conversion, for the console.
pub fn convert_bzimages(work: &Path, modules: &mut [ModuleSpec]) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for (i, m) in modules.iter_mut().enumerate() {
        let mut head = Vec::new();
        let file = fs::File::open(&m.path).with_context(|| format!("module {i} {}", m.path.display()))?;
        file.take(0x206).read_to_end(&mut head)?;
        if !kernel::is_bzimage(&head) {
            continue;
        }
        let image = fs::read(&m.path).with_context(|| format!("module {i} {}", m.path.display()))?;
        let k = kernel::extract(&image).with_context(|| format!("module {i} {}", m.path.display()))?;
        let elf = work.join(format!("m{i}.elf"));
        fs::write(&elf, &k.elf).with_context(|| format!("writing {}", elf.display()))?;
        done.push(format!("module {i} {}: {}", m.path.display(), k.summary()));
        m.path = elf;
    }
    Ok(done)
}

/// Links `from` to `to`, or copies it when a hard link is not possible.
fn place(from: &Path, to: &Path) -> Result<()> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Lays out the ISO tree under `root` (which must not exist yet).
pub fn make_tree(
    root: &Path,
    kernel_image: &Path,
    kernel_cmdline: &str,
    modules: &[ModuleSpec],
) -> Result<()> {
    let boot = root.join("boot");
    fs::create_dir_all(boot.join("grub")).with_context(|| format!("creating {}", boot.display()))?;
    place(kernel_image, &root.join(spec::KERNEL_ISO_PATH.trim_start_matches('/')))?;
    for (i, m) in modules.iter().enumerate() {
        place(&m.path, &root.join(spec::module_iso_path(i).trim_start_matches('/')))?;
    }
    let cmdlines: Vec<&str> = modules.iter().map(|m| m.cmdline.as_str()).collect();
    let cfg = spec::grub_cfg(kernel_cmdline, &cmdlines);
    fs::write(boot.join("grub/grub.cfg"), cfg).context("writing grub.cfg")?;
    Ok(())
}

/// Runs `grub-mkrescue -o iso root`, quietly; its output is shown only if it fails.
pub fn mkrescue(root: &Path, iso: &Path) -> Result<()> {
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(iso)
        .arg(root)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run grub-mkrescue (install grub-pc-bin, grub-common, xorriso and mtools)")?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("grub-mkrescue failed ({}):\n{}", out.status, tail.join("\n"));
    }
    if !iso.is_file() {
        bail!("grub-mkrescue succeeded but wrote no {}", iso.display());
    }
    Ok(())
}

/// Builds the ISO at `iso`, using `work` (an empty scratch directory) for the tree.
pub fn build(
    work: &Path,
    iso: &Path,
    kernel_image: &Path,
    kernel_cmdline: &str,
    modules: &[ModuleSpec],
) -> Result<()> {
    let root: PathBuf = work.join("iso-root");
    make_tree(&root, kernel_image, kernel_cmdline, modules)?;
    mkrescue(&root, iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_layout() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernel");
        let m = dir.path().join("module");
        fs::write(&k, b"kernel").unwrap();
        fs::write(&m, b"").unwrap();
        let mods: Vec<ModuleSpec> = vec![
            format!("{}:dom0 console=hvc0", m.display()).parse().unwrap(),
            format!("{}", k.display()).parse().unwrap(),
        ];
        check_inputs(&k, &mods).unwrap();
        let root = dir.path().join("root");
        make_tree(&root, &k, "console=com1", &mods).unwrap();
        assert_eq!(fs::read(root.join("boot/hv")).unwrap(), b"kernel");
        assert_eq!(fs::read(root.join("boot/m0")).unwrap(), b"");
        assert_eq!(fs::read(root.join("boot/m1")).unwrap(), b"kernel");
        let cfg = fs::read_to_string(root.join("boot/grub/grub.cfg")).unwrap();
        assert!(cfg.contains("multiboot2 /boot/hv console=com1\n"));
        assert!(cfg.contains("module2 --nounzip /boot/m0 dom0 console=hvc0\n"));
        assert!(cfg.contains("module2 --nounzip /boot/m1\n"));
    }

    #[test]
    fn bzimage_modules_become_elf() {
        use crate::kernel::Compression;
        use crate::kernel::fixtures::{bzimage, compress, test_elf, vmlinux_bin};
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
        let bz = dir.path().join("vmlinuz");
        let elf = dir.path().join("guest.elf");
        let initrd = dir.path().join("initrd");
        fs::write(&bz, bzimage(&compress(Compression::Lz4, &vmlinux_bin()))).unwrap();
        fs::write(&elf, test_elf()).unwrap();
        fs::write(&initrd, b"070701").unwrap();
        let mut mods: Vec<ModuleSpec> = vec![
            format!("{}:console=hvc0", bz.display()).parse().unwrap(),
            format!("{}", initrd.display()).parse().unwrap(),
            format!("{}:domu name=a", elf.display()).parse().unwrap(),
            format!("{}:domu name=b", bz.display()).parse().unwrap(),
        ];
        let lines = convert_bzimages(&work, &mut mods).unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("module 0 {}: bzImage (boot protocol 2.15, lz4, ", bz.display()))
        );
        assert_eq!(mods[0].path, work.join("m0.elf"));
        assert_eq!(mods[0].cmdline, "console=hvc0");
        assert_eq!((mods[1].path.as_path(), mods[2].path.as_path()), (initrd.as_path(), elf.as_path()));
        assert_eq!(mods[3].path, work.join("m3.elf"));
        assert_eq!(fs::read(work.join("m0.elf")).unwrap(), test_elf());

        // A bad bzImage is named with its module.
        fs::write(&bz, bzimage(b"\x42\x5a\x68 not really bzip2")).unwrap();
        let mut mods = vec![format!("{}", bz.display()).parse().unwrap()];
        let err = format!("{:#}", convert_bzimages(&work, &mut mods).unwrap_err());
        assert!(err.starts_with(&format!("module 0 {}: ", bz.display())), "{err}");
        assert!(err.contains("bzip2-compressed, which is not supported"), "{err}");
    }

    #[test]
    fn missing_inputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernel");
        let err = check_inputs(&k, &[]).unwrap_err();
        assert!(err.starts_with("kernel image ") && err.contains("not found"), "{err}");
        fs::write(&k, b"k").unwrap();
        let mods = vec!["/nonexistent/dom0:x".parse().unwrap()];
        let err = check_inputs(&k, &mods).unwrap_err();
        assert!(err.starts_with("module 0 /nonexistent/dom0 not found"), "{err}");
        let mods = vec![ModuleSpec { path: dir.path().to_path_buf(), cmdline: String::new() }];
        assert!(check_inputs(&k, &mods).unwrap_err().contains("not a regular file"));
    }
}
