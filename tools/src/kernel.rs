// SPDX-License-Identifier: MIT OR Apache-2.0
//! Kernel images: the ELF `vmlinux` inside a Linux bzImage, and its Xen ELF notes.
//!
//! The hypervisor loads only ELF (parsing boot formats belongs in the tools, not in
//! ring 0), so hvrun hands it the ELF that a bzImage carries. The x86 boot protocol
//! (Linux's `Documentation/arch/x86/boot.rst`) has a setup header in the first sector:
//! `setup_sects` at 0x1f1 (0 means 4), the magic `"HdrS"` at 0x202, the protocol version
//! at 0x206 and, from version 2.08 on, `payload_offset` and `payload_length` at 0x248 and
//! 0x24c, counted from the start of the protected-mode part, which follows the
//! `setup_sects + 1` sectors of real-mode setup code.
//!
//! The payload is the compressed `vmlinux.bin`: the stripped ELF, on relocatable kernels
//! followed by the relocation table that the decompressor applies (we drop that tail, so
//! the output is just the ELF). Its last four bytes are the decompressed size: gzip's own
//! ISIZE, and for every other format the size that Linux's `size_append` writes after the
//! stream. Every format is checked against it, which also bounds what we decompress.
//!
//! Compressions: gzip (`flate2`), xz with the x86 BCJ filter Linux uses and legacy `.lzma`
//! (`lzma-rust2`), LZ4 in the *legacy* frame (`lz4 -l`: magic 0x184C2102, then chunks of
//! `[u32 compressed size][LZ4 block]`, each at most 8 MiB decompressed; blocks by
//! `lz4_flex`), zstd (`ruzstd`). bzip2 and LZO are recognised and refused by name.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use pv_abi::elfnote::*;

/// Offset of `setup_sects` in a bzImage.
const SETUP_SECTS: usize = 0x1f1;
/// Offset of the `"HdrS"` magic.
const HDRS: usize = 0x202;
/// Offset of the boot protocol version.
const VERSION: usize = 0x206;
/// Offset of `payload_offset` (then `payload_length` at +4).
const PAYLOAD_OFFSET: usize = 0x248;
/// The first protocol version with the payload fields (2.08).
const PAYLOAD_PROTOCOL: u16 = 0x0208;

/// The LZ4 legacy frame's magic, also in front of each concatenated stream.
const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// The most one LZ4 legacy chunk decompresses to.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const SHT_NOBITS: u32 = 8;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;

/// A compression that a bzImage payload can have (Linux's `CONFIG_KERNEL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Lzma,
    Lz4,
    Zstd,
    /// Recognised, not supported.
    Bzip2,
    /// Recognised, not supported.
    Lzo,
}

impl Compression {
    /// The leading bytes of each format (Linux's `lib/decompress.c` checks the same).
    const MAGICS: [(&'static [u8], Compression); 7] = [
        (&[0x1f, 0x8b], Compression::Gzip),
        (b"\xfd7zXZ\0", Compression::Xz),
        (&[0x5d, 0x00, 0x00], Compression::Lzma),
        (&[0x02, 0x21, 0x4c, 0x18], Compression::Lz4),
        (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
        (b"BZh", Compression::Bzip2),
        (b"\x89LZO", Compression::Lzo),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lzma => "lzma",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Lzo => "lzo",
        }
    }

    /// The compression of `payload`, by its magic bytes.
    pub fn detect(payload: &[u8]) -> Option<Compression> {
        Self::MAGICS.iter().find(|(magic, _)| payload.starts_with(magic)).map(|&(_, c)| c)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an image could not be turned into a PV kernel ELF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Neither a bzImage nor an ELF; the first bytes.
    NotKernel { head: Vec<u8> },
    /// A bzImage whose header or payload bounds are unusable.
    BadBzImage(String),
    /// The payload starts with no magic we know; its first bytes.
    UnknownCompression { magic: Vec<u8> },
    /// A compression we recognise but do not decompress.
    UnsupportedCompression(Compression),
    /// The compressed stream is damaged or truncated, or its size disagrees.
    Corrupt { compression: Compression, why: String },
    /// Not an ELF64 little-endian x86-64 image (`from_bzimage`: the decompressed payload).
    BadElf { from_bzimage: bool, why: String },
    /// An ELF without any note owned by "Xen" in its PT_NOTE segments.
    NoXenNotes,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotKernel { head } => write!(
                f,
                "not a bzImage (no \"HdrS\" at 0x202) nor an ELF; it starts with {}",
                if head.is_empty() { "nothing (empty file)".to_string() } else { hex(head) }
            ),
            Error::BadBzImage(why) => write!(f, "bad bzImage: {why}"),
            Error::UnknownCompression { magic } => write!(
                f,
                "bzImage payload has an unknown compression (it starts with {}; \
                 supported: gzip, xz, lzma, lz4, zstd)",
                hex(magic)
            ),
            Error::UnsupportedCompression(c) => write!(
                f,
                "bzImage payload is {c}-compressed, which is not supported (supported: gzip, xz, lzma, lz4, \
                 zstd)"
            ),
            Error::Corrupt { compression, why } => {
                write!(f, "corrupt {compression} stream in the bzImage payload: {why}")
            }
            Error::BadElf { from_bzimage: true, why } => {
                write!(f, "the bzImage's decompressed payload is not an ELF64 x86-64 kernel: {why}")
            }
            Error::BadElf { from_bzimage: false, why } => write!(f, "not an ELF64 x86-64 kernel: {why}"),
            Error::NoXenNotes => f.write_str(
                "the kernel has no Xen ELF notes (no PT_NOTE segment holds a note owned by \"Xen\"): \
                 not a PV kernel (Linux needs CONFIG_XEN_PV)",
            ),
        }
    }
}

impl std::error::Error for Error {}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Whether `bytes` start like a bzImage (the setup header's `"HdrS"`).
pub fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.get(HDRS..HDRS + 4) == Some(b"HdrS")
}

/// Whether `bytes` start with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// The parts of a bzImage's setup header that locate the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BzImage<'a> {
    /// Boot protocol version, e.g. 0x020f for 2.15.
    pub protocol: u16,
    /// Where the protected-mode part starts in the file.
    pub pm_start: usize,
    /// The compressed kernel.
    pub payload: &'a [u8],
}

impl<'a> BzImage<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if !is_bzimage(bytes) {
            return Err(Error::NotKernel { head: bytes.iter().take(16).copied().collect() });
        }
        let bad = |why: String| Error::BadBzImage(why);
        let protocol = u16_at(bytes, VERSION).ok_or_else(|| bad("header truncated".into()))?;
        if protocol < PAYLOAD_PROTOCOL {
            return Err(bad(format!(
                "boot protocol {}.{:02} has no payload fields (they came with 2.08)",
                protocol >> 8,
                protocol & 0xff
            )));
        }
        let sects = match bytes[SETUP_SECTS] {
            0 => 4,
            n => usize::from(n),
        };
        let pm_start = (sects + 1) * 512;
        let (off, len) = match (u32_at(bytes, PAYLOAD_OFFSET), u32_at(bytes, PAYLOAD_OFFSET + 4)) {
            (Some(o), Some(l)) => (o as usize, l as usize),
            _ => return Err(bad(format!("{} bytes: the setup header is truncated", bytes.len()))),
        };
        let start = pm_start + off;
        let end = start + len;
        if end > bytes.len() {
            return Err(bad(format!(
                "the payload ({len} bytes at {start:#x}) ends past the end of the file ({} bytes): truncated",
                bytes.len()
            )));
        }
        if len < 8 {
            return Err(bad(format!("the payload is only {len} bytes")));
        }
        Ok(BzImage { protocol, pm_start, payload: &bytes[start..end] })
    }
}

/// Decompresses a bzImage payload, checking the result's size against the payload's
/// trailing size field.
pub fn decompress(payload: &[u8]) -> Result<(Compression, Vec<u8>), Error> {
    let compression = Compression::detect(payload)
        .ok_or_else(|| Error::UnknownCompression { magic: payload.iter().take(8).copied().collect() })?;
    let corrupt = |why: String| Error::Corrupt { compression, why };
    let Some(split) = payload.len().checked_sub(4) else {
        return Err(corrupt(format!("only {} bytes", payload.len())));
    };
    let expected = u32_at(payload, split).unwrap_or(0) as usize;
    // gzip's ISIZE belongs to the stream; the other formats end before Linux's size field.
    let stream = if compression == Compression::Gzip { payload } else { &payload[..split] };
    // One byte more than expected, so a longer stream shows up as a size mismatch.
    let limit = expected as u64 + 1;
    // The size field is only a hint until checked: a damaged one must not reserve gigabytes.
    let mut out = Vec::with_capacity(expected.min(256 << 20));
    let io = |e: std::io::Error| e.to_string();
    match compression {
        Compression::Gzip => {
            flate2::read::GzDecoder::new(stream)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(io)
                .map_err(corrupt)?;
        }
        Compression::Xz => {
            lzma_rust2::XzReader::new(stream, false)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(io)
                .map_err(corrupt)?;
        }
        Compression::Lzma => {
            lzma_rust2::LzmaReader::new_mem_limit(stream, u32::MAX, None)
                .map_err(io)
                .map_err(corrupt)?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(io)
                .map_err(corrupt)?;
        }
        Compression::Lz4 => unlz4_legacy(stream, expected, &mut out).map_err(corrupt)?,
        Compression::Zstd => unzstd(stream, limit, &mut out).map_err(corrupt)?,
        Compression::Bzip2 | Compression::Lzo => return Err(Error::UnsupportedCompression(compression)),
    }
    if out.len() > expected {
        return Err(corrupt(format!(
            "decompresses to more than the {expected} bytes of the payload's size field"
        )));
    }
    if out.len() < expected {
        return Err(corrupt(format!(
            "decompressed to {} bytes, but the payload's size field says {expected}",
            out.len()
        )));
    }
    Ok((compression, out))
}

/// The legacy LZ4 frame (`lz4 -l`, as Linux writes it): chunks of
/// `[u32 compressed size][block]`, a repeated magic starting a concatenated stream.
fn unlz4_legacy(mut input: &[u8], expected: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while !input.is_empty() {
        let Some(size) = u32_at(input, 0) else {
            return Err(format!("{} stray byte(s) after the last chunk", input.len()));
        };
        input = &input[4..];
        if size == LZ4_LEGACY_MAGIC {
            continue;
        }
        let size = size as usize;
        if size > input.len() {
            return Err(format!("a chunk of {size} bytes but only {} left: truncated", input.len()));
        }
        let (chunk, rest) = input.split_at(size);
        let n = lz4_flex::block::decompress_into(chunk, &mut block)
            .map_err(|e| format!("chunk at output offset {}: {e}", out.len()))?;
        if out.len() + n > expected {
            return Err(format!("decompresses past the payload's size field ({expected} bytes)"));
        }
        out.extend_from_slice(&block[..n]);
        input = rest;
    }
    Ok(())
}

/// One or more zstd frames.
fn unzstd(mut input: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<(), String> {
    while !input.is_empty() {
        let room = limit.saturating_sub(out.len() as u64);
        let dec = ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(|e| e.to_string())?;
        dec.take(room).read_to_end(out).map_err(|e| e.to_string())?;
        if out.len() as u64 >= limit {
            break;
        }
    }
    Ok(())
}

/// One Xen ELF note: its type (`XEN_ELFNOTE_*`) and descriptor bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenNote {
    pub kind: u32,
    pub desc: Vec<u8>,
}

/// A note's value, as `elfnote.h` defines each type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteValue {
    Str(String),
    Num(u64),
    /// `L1_MFN_VALID`: (mask, value) pairs; anything else of a numeric list.
    Nums(Vec<u64>),
    Bytes(Vec<u8>),
}

impl XenNote {
    /// The type's name without the `XEN_ELFNOTE_` prefix, e.g. `GUEST_OS`.
    pub fn name(&self) -> Cow<'static, str> {
        let name = match self.kind {
            XEN_ELFNOTE_INFO => "INFO",
            XEN_ELFNOTE_ENTRY => "ENTRY",
            XEN_ELFNOTE_HYPERCALL_PAGE => "HYPERCALL_PAGE",
            XEN_ELFNOTE_VIRT_BASE => "VIRT_BASE",
            XEN_ELFNOTE_PADDR_OFFSET => "PADDR_OFFSET",
            XEN_ELFNOTE_XEN_VERSION => "XEN_VERSION",
            XEN_ELFNOTE_GUEST_OS => "GUEST_OS",
            XEN_ELFNOTE_GUEST_VERSION => "GUEST_VERSION",
            XEN_ELFNOTE_LOADER => "LOADER",
            XEN_ELFNOTE_PAE_MODE => "PAE_MODE",
            XEN_ELFNOTE_FEATURES => "FEATURES",
            XEN_ELFNOTE_BSD_SYMTAB => "BSD_SYMTAB",
            XEN_ELFNOTE_HV_START_LOW => "HV_START_LOW",
            XEN_ELFNOTE_L1_MFN_VALID => "L1_MFN_VALID",
            XEN_ELFNOTE_SUSPEND_CANCEL => "SUSPEND_CANCEL",
            XEN_ELFNOTE_INIT_P2M => "INIT_P2M",
            XEN_ELFNOTE_MOD_START_PFN => "MOD_START_PFN",
            XEN_ELFNOTE_SUPPORTED_FEATURES => "SUPPORTED_FEATURES",
            XEN_ELFNOTE_PHYS32_ENTRY => "PHYS32_ENTRY",
            other => return Cow::Owned(format!("type {other:#x}")),
        };
        Cow::Borrowed(name)
    }

    pub fn value(&self) -> NoteValue {
        let d = &self.desc;
        match self.kind {
            XEN_ELFNOTE_INFO
            | XEN_ELFNOTE_XEN_VERSION
            | XEN_ELFNOTE_GUEST_OS
            | XEN_ELFNOTE_GUEST_VERSION
            | XEN_ELFNOTE_LOADER
            | XEN_ELFNOTE_PAE_MODE
            | XEN_ELFNOTE_FEATURES
            | XEN_ELFNOTE_BSD_SYMTAB => {
                let text = d.split(|&b| b == 0).next().unwrap_or_default();
                NoteValue::Str(String::from_utf8_lossy(text).into_owned())
            }
            XEN_ELFNOTE_L1_MFN_VALID if !d.is_empty() && d.len().is_multiple_of(8) => {
                NoteValue::Nums(d.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect())
            }
            _ if matches!(d.len(), 1 | 2 | 4 | 8) => {
                let mut le = [0u8; 8];
                le[..d.len()].copy_from_slice(d);
                NoteValue::Num(u64::from_le_bytes(le))
            }
            _ => NoteValue::Bytes(d.clone()),
        }
    }

    /// The note's descriptor as a number, for the numeric types.
    pub fn num(&self) -> Option<u64> {
        match self.value() {
            NoteValue::Num(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for XenNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = ", self.name())?;
        match self.value() {
            NoteValue::Str(s) => write!(f, "{s:?}"),
            NoteValue::Num(n) => write!(f, "{n:#x}"),
            NoteValue::Nums(ns) => {
                let ns: Vec<String> = ns.iter().map(|n| format!("{n:#x}")).collect();
                write!(f, "[{}]", ns.join(", "))
            }
            NoteValue::Bytes(b) => write!(f, "[{}]", hex(&b)),
        }
    }
}

/// What the ELF checks found: where the file's contents end and the Xen notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// The end of the last header table, segment or section in the file.
    pub extent: usize,
    pub entry: u64,
    pub notes: Vec<XenNote>,
}

/// Checks that `bytes` are an ELF64 little-endian x86-64 image with a loadable segment
/// and Xen notes in its PT_NOTE segments (what the hypervisor's builder reads).
pub fn check_elf(bytes: &[u8], from_bzimage: bool) -> Result<ElfInfo, Error> {
    let bad = |why: String| Error::BadElf { from_bzimage, why };
    if !is_elf(bytes) {
        return Err(bad(format!("no ELF magic (it starts with {})", hex(&bytes[..bytes.len().min(8)]))));
    }
    if bytes.len() < EHDR_SIZE {
        return Err(bad(format!("{} bytes: shorter than an ELF64 header", bytes.len())));
    }
    if bytes[4] != 2 {
        return Err(bad(format!("ELF class {} (not ELFCLASS64)", bytes[4])));
    }
    if bytes[5] != 1 {
        return Err(bad(format!("ELF data encoding {} (not little-endian)", bytes[5])));
    }
    let machine = u16_at(bytes, 18).unwrap_or(0);
    if machine != EM_X86_64 {
        return Err(bad(format!("e_machine {machine} (not EM_X86_64 = {EM_X86_64})")));
    }
    let field = |at: usize| u64_at(bytes, at).unwrap_or(0);
    let half = |at: usize| usize::from(u16_at(bytes, at).unwrap_or(0));
    let entry = field(24);
    let (phoff, shoff) = (field(32), field(40));
    let (phentsize, phnum, shentsize, mut shnum) = (half(54), half(56), half(58), half(60));

    // A table of `num` entries of `size` bytes at `off`, inside the file.
    let table = |what: &str, off: u64, size: usize, num: usize| -> Result<std::ops::Range<usize>, Error> {
        usize::try_from(off)
            .ok()
            .and_then(|start| Some(start..start.checked_add(size.checked_mul(num)?)?))
            .filter(|r| r.end <= bytes.len())
            .ok_or_else(|| {
                bad(format!("the {what} ({num} x {size} bytes at {off:#x}) lie past the end of the file"))
            })
    };
    if phnum == 0 {
        return Err(bad("no program headers".into()));
    }
    if phentsize != PHDR_SIZE {
        return Err(bad(format!("e_phentsize {phentsize} (not {PHDR_SIZE})")));
    }
    let phdrs = table("program headers", phoff, PHDR_SIZE, phnum)?;
    let mut extent = EHDR_SIZE.max(phdrs.end);

    // Extended numbering: with more sections than fit, e_shnum is 0 and section 0 has the count.
    if shnum == 0 && shoff != 0 {
        shnum = usize::try_from(u64_at(bytes, shoff as usize + 32).unwrap_or(0)).unwrap_or(usize::MAX);
    }
    if shnum > 0 {
        if shentsize != SHDR_SIZE {
            return Err(bad(format!("e_shentsize {shentsize} (not {SHDR_SIZE})")));
        }
        let shdrs = table("section headers", shoff, SHDR_SIZE, shnum)?;
        extent = extent.max(shdrs.end);
        for s in shdrs.step_by(SHDR_SIZE) {
            if u32_at(bytes, s + 4) == Some(SHT_NOBITS) {
                continue;
            }
            let (off, size) = (field(s + 24), field(s + 32));
            let end = off.checked_add(size).filter(|&e| e <= bytes.len() as u64).ok_or_else(|| {
                bad(format!("a section ({size:#x} bytes at {off:#x}) lies past the end of the file"))
            })?;
            extent = extent.max(end as usize);
        }
    }

    let mut notes = Vec::new();
    let mut loads = 0;
    for p in phdrs.step_by(PHDR_SIZE) {
        let kind = u32_at(bytes, p).unwrap_or(0);
        let (off, filesz, align) = (field(p + 8), field(p + 32), field(p + 48));
        let seg = table("bytes of a segment", off, 1, usize::try_from(filesz).unwrap_or(usize::MAX))?;
        extent = extent.max(seg.end);
        match kind {
            PT_LOAD => loads += 1,
            PT_NOTE => read_notes(&bytes[seg], align, &mut notes).map_err(bad)?,
            _ => {}
        }
    }
    if loads == 0 {
        return Err(bad("no PT_LOAD segment".into()));
    }
    if notes.is_empty() {
        return Err(Error::NoXenNotes);
    }
    Ok(ElfInfo { extent, entry, notes })
}

/// Appends the Xen notes of one PT_NOTE segment. Fields are padded to 4 bytes, or to 8 in
/// a segment aligned to 8 (as `.note.gnu.property` is on x86-64).
fn read_notes(mut seg: &[u8], align: u64, notes: &mut Vec<XenNote>) -> Result<(), String> {
    let pad = |n: usize| if align == 8 { n.next_multiple_of(8) } else { n.next_multiple_of(4) };
    while seg.len() >= 12 {
        let namesz = u32_at(seg, 0).unwrap_or(0) as usize;
        let descsz = u32_at(seg, 4).unwrap_or(0) as usize;
        let kind = u32_at(seg, 8).unwrap_or(0);
        let name_end = 12 + namesz;
        let desc_start = 12 + pad(namesz);
        let desc_end = desc_start.checked_add(descsz).filter(|&e| e <= seg.len() && name_end <= seg.len());
        let Some(desc_end) = desc_end else {
            return Err(format!(
                "a note (name {namesz} bytes, descriptor {descsz} bytes) overruns its segment"
            ));
        };
        let name = seg[12..name_end].strip_suffix(&[0]).unwrap_or(&seg[12..name_end]);
        if name == XEN_ELFNOTE_OWNER.as_bytes() {
            notes.push(XenNote { kind, desc: seg[desc_start..desc_end].to_vec() });
        }
        seg = &seg[pad(desc_end).min(seg.len())..];
    }
    Ok(())
}

/// Where a kernel ELF came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The input was the ELF itself.
    Elf,
    /// Extracted from a bzImage.
    BzImage { protocol: u16, compression: Compression, compressed: usize },
}

/// A PV kernel as an ELF image, ready for the hypervisor's loader.
#[derive(Debug, Clone)]
pub struct KernelElf<'a> {
    pub source: Source,
    pub elf: Cow<'a, [u8]>,
    /// Bytes after the ELF in the decompressed payload (the relocation table), dropped.
    pub dropped_tail: usize,
    pub entry: u64,
    pub notes: Vec<XenNote>,
}

impl KernelElf<'_> {
    /// The first note of a type.
    pub fn note(&self, kind: u32) -> Option<&XenNote> {
        self.notes.iter().find(|n| n.kind == kind)
    }

    /// One line saying what was done, e.g. `bzImage (boot protocol 2.15, lz4, 14063308 bytes)
    /// -> ELF of 53243444 bytes`.
    pub fn summary(&self) -> String {
        match self.source {
            Source::Elf => format!("ELF of {} bytes, passed through", self.elf.len()),
            Source::BzImage { protocol, compression, compressed } => format!(
                "bzImage (boot protocol {}.{:02}, {compression}, {compressed} bytes) -> ELF of {} bytes{}",
                protocol >> 8,
                protocol & 0xff,
                self.elf.len(),
                if self.dropped_tail > 0 {
                    format!(" ({} bytes of relocations after it dropped)", self.dropped_tail)
                } else {
                    String::new()
                }
            ),
        }
    }
}

/// The PV kernel ELF of `image`: a bzImage's decompressed `vmlinux`, or an ELF unchanged.
/// Either way it must be an ELF64 x86-64 image with Xen notes.
pub fn extract(image: &[u8]) -> Result<KernelElf<'_>, Error> {
    if is_elf(image) {
        let info = check_elf(image, false)?;
        return Ok(KernelElf {
            source: Source::Elf,
            elf: Cow::Borrowed(image),
            dropped_tail: 0,
            entry: info.entry,
            notes: info.notes,
        });
    }
    let bz = BzImage::parse(image)?;
    let (compression, mut elf) = decompress(bz.payload)?;
    let info = check_elf(&elf, true)?;
    let dropped_tail = elf.len() - info.extent;
    elf.truncate(info.extent);
    Ok(KernelElf {
        source: Source::BzImage { protocol: bz.protocol, compression, compressed: bz.payload.len() },
        elf: Cow::Owned(elf),
        dropped_tail,
        entry: info.entry,
        notes: info.notes,
    })
}

/// Synthetic kernel images for the unit tests (here and in hvrun).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use std::io::Write;

    /// One note with owner `owner`, padded to 4 bytes.
    pub(crate) fn note(owner: &str, kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(owner.len() as u32 + 1).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(owner.as_bytes());
        n.push(0);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    pub(crate) fn xen_notes() -> Vec<u8> {
        let mut notes = note("GNU", 3, &[0xab; 20]); // a build id, not ours
        notes.extend(note("Xen", XEN_ELFNOTE_GUEST_OS, b"linux\0"));
        notes.extend(note("Xen", XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
        notes.extend(note("Xen", XEN_ELFNOTE_VIRT_BASE, &0xffff_ffff_8000_0000u64.to_le_bytes()));
        notes.extend(note("Xen", XEN_ELFNOTE_ENTRY, &0xffff_ffff_8100_0000u64.to_le_bytes()));
        notes.extend(note("Xen", XEN_ELFNOTE_SUPPORTED_FEATURES, &0x801u32.to_le_bytes()));
        notes.extend(note(
            "Xen",
            XEN_ELFNOTE_L1_MFN_VALID,
            &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        ));
        notes.extend(note("Xen", XEN_ELFNOTE_FEATURES, b"!writable_page_tables\0"));
        notes
    }

    /// A small ELF64 x86-64 executable: header, two program headers (PT_LOAD over some
    /// "code", PT_NOTE over `notes`), then `code_len` bytes of a pattern that compresses
    /// a little, then a section header table (null + one PROGBITS + one NOBITS).
    pub(crate) fn elf_with(notes: &[u8], code_len: usize) -> Vec<u8> {
        let code_off = EHDR_SIZE + 2 * PHDR_SIZE;
        let notes_off = code_off + code_len;
        let shoff = (notes_off + notes.len()).next_multiple_of(8);
        let mut e = vec![0u8; shoff + 3 * SHDR_SIZE];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2; // ELFCLASS64
        e[5] = 1; // little-endian
        e[6] = 1; // EV_CURRENT
        e[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        e[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        e[20..24].copy_from_slice(&1u32.to_le_bytes());
        e[24..32].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
        e[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        e[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        e[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
        e[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        e[56..58].copy_from_slice(&2u16.to_le_bytes());
        e[58..60].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
        e[60..62].copy_from_slice(&3u16.to_le_bytes());
        let phdr = |e: &mut Vec<u8>, at: usize, kind: u32, off: usize, len: usize, align: u64| {
            e[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            e[at + 8..at + 16].copy_from_slice(&(off as u64).to_le_bytes());
            e[at + 16..at + 24].copy_from_slice(&(0xffff_ffff_8100_0000 + off as u64).to_le_bytes());
            e[at + 32..at + 40].copy_from_slice(&(len as u64).to_le_bytes());
            e[at + 40..at + 48].copy_from_slice(&(len as u64).to_le_bytes());
            e[at + 48..at + 56].copy_from_slice(&align.to_le_bytes());
        };
        phdr(&mut e, EHDR_SIZE, PT_LOAD, 0, notes_off + notes.len(), 0x20_0000);
        phdr(&mut e, EHDR_SIZE + PHDR_SIZE, PT_NOTE, notes_off, notes.len(), 4);
        for (i, b) in e[code_off..notes_off].iter_mut().enumerate() {
            *b = (i % 251) as u8 ^ (i / 4096) as u8;
        }
        e[notes_off..notes_off + notes.len()].copy_from_slice(notes);
        let sh = shoff + SHDR_SIZE;
        e[sh + 4..sh + 8].copy_from_slice(&1u32.to_le_bytes()); // PROGBITS
        e[sh + 24..sh + 32].copy_from_slice(&(code_off as u64).to_le_bytes());
        e[sh + 32..sh + 40].copy_from_slice(&(code_len as u64).to_le_bytes());
        let sh = shoff + 2 * SHDR_SIZE;
        e[sh + 4..sh + 8].copy_from_slice(&SHT_NOBITS.to_le_bytes()); // .bss: no file bytes
        e[sh + 24..sh + 32].copy_from_slice(&(shoff as u64).to_le_bytes());
        e[sh + 32..sh + 40].copy_from_slice(&(1u64 << 40).to_le_bytes());
        e
    }

    pub(crate) fn test_elf() -> Vec<u8> {
        elf_with(&xen_notes(), 40_000)
    }

    /// Stand-in for the relocation table that follows the ELF in a relocatable kernel's payload.
    pub(crate) const RELOCS: &[u8] = &[0x5a; 300];

    /// What Linux's build puts in the payload: the compressed stream, plus the
    /// decompressed size for every format but gzip (whose trailer has it).
    pub(crate) fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut out = match c {
            Compression::Gzip => {
                let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                z.write_all(data).unwrap();
                return z.finish().unwrap();
            }
            Compression::Xz => {
                // As scripts/xz_wrap.sh: CRC32 check, the x86 BCJ filter before LZMA2.
                let mut opts = lzma_rust2::XzOptions::with_preset(6);
                opts.set_check_sum_type(lzma_rust2::CheckType::Crc32);
                opts.prepend_pre_filter(lzma_rust2::FilterType::BcjX86, 0);
                let mut w = lzma_rust2::XzWriter::new(Vec::new(), opts).unwrap();
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            Compression::Lzma => {
                // As `lzma -9` from a pipe: unknown size in the header, an end marker.
                let opts = lzma_rust2::LzmaOptions::with_preset(9);
                let mut w = lzma_rust2::LzmaWriter::new_use_header(Vec::new(), &opts, None).unwrap();
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            Compression::Lz4 => {
                // Small chunks so that several are needed, and a second stream's magic in between.
                let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
                for (i, chunk) in data.chunks(16 << 10).enumerate() {
                    if i == 1 {
                        out.extend_from_slice(&LZ4_LEGACY_MAGIC.to_le_bytes());
                    }
                    let block = lz4_flex::block::compress(chunk);
                    out.extend_from_slice(&(block.len() as u32).to_le_bytes());
                    out.extend_from_slice(&block);
                }
                out
            }
            Compression::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
            Compression::Bzip2 => b"BZh91AY&SY".to_vec(),
            Compression::Lzo => b"\x89LZO\0\r\n\x1a\n".to_vec(),
        };
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    /// A bzImage around `payload`: 2 setup sectors after the boot sector, 0x100 bytes of
    /// "decompressor" before the payload, 64 after it.
    pub(crate) fn bzimage(payload: &[u8]) -> Vec<u8> {
        let pm_start = 3 * 512;
        let off = 0x100;
        let mut b = vec![0xccu8; pm_start + off + payload.len() + 64];
        b[SETUP_SECTS] = 2;
        b[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        b[HDRS..HDRS + 4].copy_from_slice(b"HdrS");
        b[VERSION..VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        b[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&(off as u32).to_le_bytes());
        b[PAYLOAD_OFFSET + 4..PAYLOAD_OFFSET + 8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b[pm_start + off..pm_start + off + payload.len()].copy_from_slice(payload);
        b
    }

    pub(crate) fn vmlinux_bin() -> Vec<u8> {
        [test_elf(), RELOCS.to_vec()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    const SUPPORTED: [Compression; 5] =
        [Compression::Gzip, Compression::Xz, Compression::Lzma, Compression::Lz4, Compression::Zstd];

    #[test]
    fn each_compression_extracts_the_elf() {
        let elf = test_elf();
        for c in SUPPORTED {
            let image = bzimage(&compress(c, &vmlinux_bin()));
            let k = extract(&image).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(k.elf.as_ref(), elf.as_slice(), "{c}: the ELF without the relocations");
            assert_eq!(k.dropped_tail, RELOCS.len(), "{c}");
            assert!(
                matches!(k.source, Source::BzImage { compression, protocol: 0x20f, .. } if compression == c)
            );
            assert_eq!(k.entry, 0xffff_ffff_8100_0000);
            assert_eq!(k.note(XEN_ELFNOTE_GUEST_OS).unwrap().value(), NoteValue::Str("linux".into()));
            assert!(
                k.summary().starts_with(&format!("bzImage (boot protocol 2.15, {c}, ")),
                "{}",
                k.summary()
            );
        }
    }

    #[test]
    fn notes_are_read_and_shown() {
        let image = bzimage(&compress(Compression::Gzip, &test_elf()));
        let k = extract(&image).unwrap();
        assert_eq!(k.dropped_tail, 0);
        let shown: Vec<String> = k.notes.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            shown,
            [
                "GUEST_OS = \"linux\"",
                "XEN_VERSION = \"xen-3.0\"",
                "VIRT_BASE = 0xffffffff80000000",
                "ENTRY = 0xffffffff81000000",
                "SUPPORTED_FEATURES = 0x801",
                "L1_MFN_VALID = [0x1, 0x1]",
                "FEATURES = \"!writable_page_tables\"",
            ]
        );
        assert_eq!(k.note(XEN_ELFNOTE_VIRT_BASE).and_then(XenNote::num), Some(0xffff_ffff_8000_0000));
        assert_eq!(XenNote { kind: 0x99, desc: vec![1, 2, 3] }.to_string(), "type 0x99 = [01 02 03]");
    }

    #[test]
    fn an_elf_passes_through_unchanged() {
        let elf = [test_elf(), b"trailing".to_vec()].concat();
        let k = extract(&elf).unwrap();
        assert!(matches!(k.elf, Cow::Borrowed(_)));
        assert_eq!(k.elf.as_ref(), elf.as_slice());
        assert_eq!(k.source, Source::Elf);
        assert_eq!(k.notes.len(), 7);
    }

    #[test]
    fn not_a_kernel() {
        let err = extract(b"MZ\x90\0 hello").unwrap_err();
        assert_eq!(err, Error::NotKernel { head: b"MZ\x90\0 hello".to_vec() });
        assert!(
            err.to_string().contains("not a bzImage (no \"HdrS\" at 0x202) nor an ELF; it starts with 4d 5a")
        );
        assert!(extract(b"").unwrap_err().to_string().contains("empty file"));
    }

    #[test]
    fn bad_headers_are_named() {
        let good = bzimage(&compress(Compression::Gzip, &test_elf()));

        let mut old = good.clone();
        old[VERSION..VERSION + 2].copy_from_slice(&0x0207u16.to_le_bytes());
        let err = extract(&old).unwrap_err().to_string();
        assert!(err.contains("boot protocol 2.07 has no payload fields"), "{err}");

        let err = extract(&good[..good.len() - 100]).unwrap_err().to_string();
        assert!(err.starts_with("bad bzImage: the payload (") && err.contains("truncated"), "{err}");

        let err = extract(&good[..0x210]).unwrap_err().to_string();
        assert!(err.contains("setup header is truncated"), "{err}");

        // setup_sects = 0 means 4: the payload moves and is out of bounds here.
        let mut zero = good.clone();
        zero[SETUP_SECTS] = 0;
        assert!(matches!(extract(&zero), Err(Error::UnknownCompression { .. }) | Err(Error::BadBzImage(_))));
    }

    #[test]
    fn unknown_and_unsupported_compressions() {
        let err = extract(&bzimage(b"\x12\x34\x56\x78\x9a\xbc\xde\xf0 and more")).unwrap_err();
        assert_eq!(err, Error::UnknownCompression { magic: b"\x12\x34\x56\x78\x9a\xbc\xde\xf0".to_vec() });
        assert!(err.to_string().contains("unknown compression (it starts with 12 34 56 78 9a bc de f0;"));
        for c in [Compression::Bzip2, Compression::Lzo] {
            let err = extract(&bzimage(&compress(c, &test_elf()))).unwrap_err();
            assert_eq!(err, Error::UnsupportedCompression(c));
            assert!(err.to_string().contains(&format!("{c}-compressed, which is not supported")));
        }
    }

    #[test]
    fn truncated_streams_are_corrupt() {
        for c in SUPPORTED {
            let payload = compress(c, &vmlinux_bin());
            // Cut the stream in the middle, keeping a (now wrong) size field at the end.
            let mut cut = payload[..payload.len() / 2].to_vec();
            cut.extend_from_slice(&payload[payload.len() - 4..]);
            match extract(&bzimage(&cut)) {
                Err(Error::Corrupt { compression, why }) => assert_eq!(compression, c, "{why}"),
                other => panic!("{c}: {other:?}"),
            }
        }
    }

    /// Flipped bytes inside the stream: gzip and xz (CRC32, as Linux's xz_wrap.sh asks)
    /// always notice; LZ4's legacy frame and `.lzma` have no checksum, so a flip in a
    /// literal can decode to different bytes. None of it may panic.
    #[test]
    fn damaged_streams() {
        for c in SUPPORTED {
            let payload = compress(c, &vmlinux_bin());
            for at in (16..payload.len() - 8).step_by(payload.len() / 37) {
                let mut bad = payload.clone();
                for b in &mut bad[at..at + 4] {
                    *b ^= 0xa5;
                }
                let image = bzimage(&bad);
                let r = extract(&image);
                if matches!(c, Compression::Gzip | Compression::Xz) {
                    assert!(
                        matches!(r, Err(Error::Corrupt { compression, .. }) if compression == c),
                        "{c}@{at}"
                    );
                }
            }
        }
        // An LZ4 chunk whose size field runs past the end of the stream.
        let mut lz4 = compress(Compression::Lz4, &vmlinux_bin());
        lz4[4..8].copy_from_slice(&1_000_000u32.to_le_bytes());
        let err = extract(&bzimage(&lz4)).unwrap_err().to_string();
        assert!(
            err.starts_with("corrupt lz4 stream in the bzImage payload: a chunk of 1000000 bytes"),
            "{err}"
        );
    }

    #[test]
    fn size_field_mismatch_is_corrupt() {
        for c in SUPPORTED {
            let mut payload = compress(c, &vmlinux_bin());
            let n = payload.len();
            let wrong = (vmlinux_bin().len() as u32 - 1).to_le_bytes();
            payload[n - 4..].copy_from_slice(&wrong);
            let err = extract(&bzimage(&payload)).unwrap_err();
            assert!(matches!(err, Error::Corrupt { compression, .. } if compression == c), "{c}: {err}");
            if c != Compression::Gzip {
                // gzip checks its own ISIZE first; ours is the message elsewhere.
                let msg = err.to_string();
                assert!(msg.contains("size field"), "{c}: {msg}");
            }
        }
    }

    #[test]
    fn payload_must_be_an_elf_with_xen_notes() {
        let err = extract(&bzimage(&compress(Compression::Lz4, &[0x90; 5000]))).unwrap_err();
        assert!(matches!(err, Error::BadElf { from_bzimage: true, .. }), "{err}");
        assert!(
            err.to_string().starts_with(
                "the bzImage's decompressed payload is not an ELF64 x86-64 kernel: no ELF magic"
            )
        );

        let no_xen = elf_with(&note("GNU", 3, &[1; 20]), 1000);
        let err = extract(&bzimage(&compress(Compression::Zstd, &no_xen))).unwrap_err();
        assert_eq!(err, Error::NoXenNotes);
        assert!(err.to_string().contains("CONFIG_XEN_PV"));
        assert_eq!(extract(&no_xen).unwrap_err(), Error::NoXenNotes);
    }

    #[test]
    fn elf_defects_are_named() {
        let good = test_elf();
        let with = |at: usize, bytes: &[u8]| {
            let mut e = good.clone();
            e[at..at + bytes.len()].copy_from_slice(bytes);
            match extract(&e) {
                Err(Error::BadElf { from_bzimage: false, why }) => why,
                other => panic!("{other:?}"),
            }
        };
        assert!(with(4, &[1]).contains("ELF class 1"));
        assert!(with(5, &[2]).contains("not little-endian"));
        assert!(with(18, &3u16.to_le_bytes()).contains("e_machine 3"));
        assert!(with(56, &0u16.to_le_bytes()).contains("no program headers"));
        assert!(with(56, &900u16.to_le_bytes()).contains("program headers (900 x 56 bytes"));
        assert!(with(32, &u64::MAX.to_le_bytes()).contains("past the end"));
        assert!(with(40, &(1u64 << 33).to_le_bytes()).contains("section headers"));
        // The PT_LOAD turned into PT_NULL.
        assert!(with(EHDR_SIZE, &0u32.to_le_bytes()).contains("no PT_LOAD"));
        // A note segment longer than the file.
        assert!(with(EHDR_SIZE + PHDR_SIZE + 32, &(1u64 << 30).to_le_bytes()).contains("past the end"));
        let short = extract(&good[..40]).unwrap_err().to_string();
        assert!(short.contains("shorter than an ELF64 header"), "{short}");
    }

    #[test]
    fn malformed_notes_are_named() {
        let mut notes = xen_notes();
        let n = notes.len();
        // The last note claims a descriptor longer than the segment.
        let last = n - note("Xen", XEN_ELFNOTE_FEATURES, b"!writable_page_tables\0").len();
        notes[last + 4..last + 8].copy_from_slice(&4096u32.to_le_bytes());
        let err = extract(&elf_with(&notes, 100)).unwrap_err().to_string();
        assert!(err.contains("overruns its segment"), "{err}");
    }

    /// Debian's `linux-image-cloud-amd64` (installed by tools/scripts/deps.sh): the real
    /// kernel the Linux guests boot. Missing is a failure, not a skip.
    #[test]
    fn debian_cloud_kernel() {
        let mut found: Vec<_> = std::fs::read_dir("/boot")
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        found.retain(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("vmlinuz-") && name.ends_with("-cloud-amd64")
        });
        found.sort();
        let path = found.last().unwrap_or_else(|| {
            panic!(
                "no /boot/vmlinuz-*-cloud-amd64: install Debian's linux-image-cloud-amd64 \
                 (`make deps` does it, via tools/scripts/deps.sh)"
            )
        });
        let image = std::fs::read(path).unwrap();
        assert!(is_bzimage(&image), "{} is not a bzImage", path.display());
        let k = extract(&image).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("{}: {}", path.display(), k.summary());
        for n in &k.notes {
            println!("  {n}");
        }
        assert!(matches!(k.source, Source::BzImage { compression: Compression::Lz4, .. }), "{:?}", k.source);
        let text = |kind| match k.note(kind).map(XenNote::value) {
            Some(NoteValue::Str(s)) => s,
            other => panic!("note {kind}: {other:?}"),
        };
        assert_eq!(text(XEN_ELFNOTE_GUEST_OS), "linux");
        assert_eq!(text(XEN_ELFNOTE_XEN_VERSION), "xen-3.0");
        assert!(text(XEN_ELFNOTE_GUEST_VERSION).starts_with("2."), "Linux says 2.6");
        let num = |kind| k.note(kind).and_then(XenNote::num).unwrap_or_else(|| panic!("note {kind}"));
        assert_eq!(num(XEN_ELFNOTE_VIRT_BASE), 0xffff_ffff_8000_0000);
        assert_eq!(num(XEN_ELFNOTE_ENTRY) >> 32, 0xffff_ffff, "ENTRY in the kernel's top 2 GiB");
        // No HYPERCALL_PAGE check: Linux dropped the hypercall page (XSA-466, in 6.1.y too) and
        // issues `syscall` itself, so this kernel has no such note.
        assert!(k.note(XEN_ELFNOTE_INIT_P2M).is_some());
        assert!(k.note(XEN_ELFNOTE_FEATURES).is_some() || k.note(XEN_ELFNOTE_SUPPORTED_FEATURES).is_some());
    }
}
