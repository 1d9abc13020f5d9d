// SPDX-License-Identifier: MIT OR Apache-2.0
//! A busybox initramfs for Linux guests: a gzip-compressed `newc` cpio archive.
//!
//! The archive holds Debian's static busybox as `/bin/busybox`, a symlink to it for each
//! applet, the directories `/dev`, `/proc`, `/sys`, `/tmp` (mount points), a
//! `/dev/console` node (so that `/init` has a console even before devtmpfs is mounted),
//! the caller's `/init` script, and any extra files. Entries are in an order Linux's
//! unpacker can create (parents first), owned by root, with mtime 0 so that the same
//! inputs give the same bytes.
//!
//! The `newc` format (Linux's `Documentation/driver-api/early-userspace/buffer-format.rst`):
//! per entry a 110-byte ASCII header, `"070701"` and 13 fields of 8 hex digits (ino, mode,
//! uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize,
//! check), then the NUL-terminated name, padded to 4 bytes, then the data, padded to 4
//! bytes; a symlink's data is its target. The entry `TRAILER!!!` ends the archive.

use std::collections::BTreeSet;
use std::io::Write;

/// The magic of a `newc` header (no checksum).
const NEWC_MAGIC: &[u8; 6] = b"070701";
const NEWC_HEADER: usize = 110;
const TRAILER: &str = "TRAILER!!!";

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

/// Where Debian's busybox-static installs busybox.
pub const DEBIAN_BUSYBOX: &str = "/bin/busybox";

/// The applets linked by default: what a test `/init` needs to mount the pseudo file
/// systems, print, read and hash devices, wait, and power off.
pub const DEFAULT_APPLETS: &[&str] = &[
    "sh",
    "mount",
    "umount",
    "mkdir",
    "mknod",
    "cat",
    "echo",
    "printf",
    "sleep",
    "true",
    "false",
    "test",
    "[",
    "dd",
    "sha256sum",
    "md5sum",
    "cmp",
    "head",
    "tail",
    "wc",
    "grep",
    "ls",
    "uname",
    "dmesg",
    "sync",
    "seq",
    "hexdump",
    "od",
    "poweroff",
    "reboot",
    "halt",
];

/// A `newc` archive being written.
#[derive(Debug, Default)]
pub struct Cpio {
    out: Vec<u8>,
    next_ino: u32,
    /// Paths already in the archive, to create parent directories once.
    paths: BTreeSet<String>,
}

impl Cpio {
    pub fn new() -> Self {
        Self::default()
    }

    /// `path` without leading or trailing slashes, as cpio stores names.
    fn clean(path: &str) -> Result<String, String> {
        let p = path.trim_matches('/');
        if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(format!("bad archive path {path:?}"));
        }
        Ok(p.to_string())
    }

    /// Adds any missing parent directories of `path` (mode 0755).
    fn parents(&mut self, path: &str) {
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            let dir = &path[..at + slash];
            if !self.paths.contains(dir) {
                self.entry(dir.to_string(), S_IFDIR | 0o755, 2, (0, 0), &[]);
            }
            at += slash + 1;
        }
    }

    fn entry(&mut self, name: String, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_ino += 1;
        let ino = if name == TRAILER { 0 } else { self.next_ino };
        let fields =
            [ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(NEWC_MAGIC);
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
        self.paths.insert(name);
    }

    fn pad(&mut self) {
        self.out.resize(self.out.len().next_multiple_of(4), 0);
    }

    fn add(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), String> {
        let name = Self::clean(path)?;
        if self.paths.contains(&name) {
            return Err(format!("{path:?} is already in the archive"));
        }
        self.parents(&name);
        self.entry(name, mode, nlink, rdev, data);
        Ok(())
    }

    /// A directory; `perm` is the permission bits (e.g. 0o755).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), String> {
        self.add(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<(), String> {
        self.add(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        self.add(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<(), String> {
        self.add(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER.to_string(), 0, 1, (0, 0), &[]);
        self.out
    }
}

/// One entry read back from a `newc` archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

impl Entry {
    pub fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }
}

/// Reads a `newc` archive (without the trailer entry); the checker for tests and `--list`.
pub fn read_newc(mut bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut offset = 0;
    loop {
        if bytes.len() < NEWC_HEADER {
            return Err(format!("truncated header at offset {offset} (no {TRAILER})"));
        }
        if &bytes[..6] != NEWC_MAGIC {
            return Err(format!("no newc magic at offset {offset}"));
        }
        let field = |i: usize| -> Result<u32, String> {
            let text = std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).map_err(|e| e.to_string())?;
            u32::from_str_radix(text, 16).map_err(|e| format!("header field {i} at offset {offset}: {e}"))
        };
        let (mode, uid, gid, size) = (field(1)?, field(2)?, field(3)?, field(6)? as usize);
        let (rdev, namesize) = ((field(9)?, field(10)?), field(11)? as usize);
        let name_end = NEWC_HEADER + namesize;
        let data_start = name_end.next_multiple_of(4);
        let data_end = data_start + size;
        if namesize == 0 || data_end > bytes.len() {
            return Err(format!("entry at offset {offset} runs past the end of the archive"));
        }
        let name = &bytes[NEWC_HEADER..name_end - 1];
        let name = String::from_utf8(name.to_vec()).map_err(|e| format!("entry at offset {offset}: {e}"))?;
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry { name, mode, uid, gid, rdev, data: bytes[data_start..data_end].to_vec() });
        let next = data_end.next_multiple_of(4).min(bytes.len());
        bytes = &bytes[next..];
        offset += next;
    }
}

/// What goes into a busybox initramfs.
#[derive(Debug, Clone)]
pub struct BusyboxInitramfs {
    /// The busybox binary (a static one: nothing else is in the archive).
    pub busybox: Vec<u8>,
    /// Applets to link to `/bin/busybox` as `/bin/<applet>`.
    pub applets: Vec<String>,
    /// The `/init` script (or program), made executable.
    pub init: Vec<u8>,
    /// Extra files: (archive path, permission bits, contents).
    pub files: Vec<(String, u32, Vec<u8>)>,
}

impl BusyboxInitramfs {
    /// The uncompressed `newc` archive.
    pub fn cpio(&self) -> Result<Vec<u8>, String> {
        let mut c = Cpio::new();
        for d in ["bin", "dev", "proc", "sys", "tmp"] {
            c.dir(d, if d == "tmp" { 0o1777 } else { 0o755 })?;
        }
        c.char_dev("dev/console", 0o600, 5, 1)?;
        c.file("bin/busybox", 0o755, &self.busybox)?;
        for a in &self.applets {
            if a == "busybox" || a.is_empty() || a.contains('/') {
                return Err(format!("bad applet name {a:?}"));
            }
            c.symlink(&format!("bin/{a}"), "busybox")?;
        }
        c.file("init", 0o755, &self.init)?;
        for (path, perm, data) in &self.files {
            c.file(path, *perm, data)?;
        }
        Ok(c.finish())
    }

    /// The gzip-compressed archive, as Linux takes it as an initrd.
    pub fn build(&self) -> Result<Vec<u8>, String> {
        let cpio = self.cpio()?;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&cpio).and_then(|_| z.finish()).map_err(|e| format!("gzip: {e}"))
    }
}

/// Un-gzips `bytes` if they are gzip, else returns them as they are.
pub fn gunzip_if_needed(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
        .map_err(|e| format!("gunzip: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BusyboxInitramfs {
        BusyboxInitramfs {
            busybox: b"\x7fELF not really busybox".to_vec(),
            applets: ["sh", "mount", "poweroff"].map(String::from).to_vec(),
            init: b"#!/bin/sh\necho hi\npoweroff -f\n".to_vec(),
            files: vec![("etc/test/data.bin".into(), 0o644, vec![1, 2, 3, 4, 5])],
        }
    }

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn archive_reads_back() {
        let gz = sample().build().unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let entries = read_newc(&gunzip_if_needed(&gz).unwrap()).unwrap();
        assert_eq!(
            names(&entries),
            [
                "bin",
                "dev",
                "proc",
                "sys",
                "tmp",
                "dev/console",
                "bin/busybox",
                "bin/sh",
                "bin/mount",
                "bin/poweroff",
                "init",
                "etc",
                "etc/test",
                "etc/test/data.bin"
            ]
        );
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        assert_eq!(get("bin").mode, S_IFDIR | 0o755);
        assert_eq!(get("tmp").mode, S_IFDIR | 0o1777);
        assert_eq!((get("dev/console").mode, get("dev/console").rdev), (S_IFCHR | 0o600, (5, 1)));
        assert_eq!(get("bin/busybox").data, sample().busybox);
        assert_eq!((get("bin/sh").kind(), get("bin/sh").data.as_slice()), (S_IFLNK, &b"busybox"[..]));
        assert_eq!(get("init").mode, S_IFREG | 0o755);
        assert_eq!(get("init").data, sample().init);
        assert_eq!(get("etc/test").kind(), S_IFDIR);
        assert_eq!(get("etc/test/data.bin").data, [1, 2, 3, 4, 5]);
        assert!(entries.iter().all(|e| e.uid == 0 && e.gid == 0));
        // Same inputs, same bytes.
        assert_eq!(sample().build().unwrap(), gz);
    }

    #[test]
    fn layout_is_newc() {
        let mut c = Cpio::new();
        c.file("a", 0o644, b"xyz").unwrap();
        let out = c.finish();
        // Header, "a\0" padded to 112 + 4, 3 bytes of data padded to 4.
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001"); // ino
        assert_eq!(&out[14..22], b"000081a4"); // S_IFREG | 0644
        assert_eq!(&out[54..62], b"00000003"); // filesize
        assert_eq!(&out[94..102], b"00000002"); // namesize with the NUL
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..116], b"xyz\0");
        assert_eq!(&out[116..122], b"070701");
        assert!(out[116..].windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn bad_paths_and_duplicates_are_refused() {
        let mut c = Cpio::new();
        for bad in ["", "/", "a//b", "../x", "a/./b"] {
            assert!(c.file(bad, 0o644, b"").is_err(), "{bad:?}");
        }
        c.dir("/d/", 0o755).unwrap();
        assert!(c.dir("d", 0o755).unwrap_err().contains("already in the archive"));
        let mut b = sample();
        b.applets.push("busybox".into());
        assert!(b.cpio().unwrap_err().contains("bad applet name"));
        let mut b = sample();
        b.files.push(("init".into(), 0o755, vec![]));
        assert!(b.cpio().unwrap_err().contains("\"init\" is already in the archive"));
    }

    #[test]
    fn truncated_archives_are_named() {
        let cpio = sample().cpio().unwrap();
        assert!(read_newc(&cpio[..cpio.len() - 120]).unwrap_err().contains("no TRAILER!!!"));
        // The trailer is 124 bytes; the last file's 5 data bytes (padded to 8) come before it.
        assert!(read_newc(&cpio[..cpio.len() - 124 - 6]).unwrap_err().contains("runs past the end"));
        let odc = [b"070707".as_slice(), &[b'0'; 120]].concat();
        assert_eq!(read_newc(&odc).unwrap_err(), "no newc magic at offset 0");
    }

    /// GNU cpio (installed along with Debian's kernel's initramfs-tools) lists the archive
    /// as Linux's unpacker will see it; busybox's cpio when GNU cpio is missing.
    #[test]
    fn cpio_tool_lists_the_archive() {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initrd.cpio");
        std::fs::write(&path, sample().cpio().unwrap()).unwrap();
        let run = |cmd: &mut Command| {
            cmd.stdin(std::fs::File::open(&path).unwrap()).stderr(Stdio::null()).output().ok()
        };
        let out = run(Command::new("cpio").args(["-t", "--quiet"]))
            .filter(|o| o.status.success())
            .or_else(|| run(Command::new(DEBIAN_BUSYBOX).args(["cpio", "-t"])))
            .expect("neither cpio nor busybox cpio could be run");
        let listed = String::from_utf8_lossy(&out.stdout);
        let listed: Vec<&str> = listed.lines().collect();
        let ours = read_newc(&sample().cpio().unwrap()).unwrap();
        assert_eq!(listed, names(&ours));
    }
}
