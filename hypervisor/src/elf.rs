// SPDX-License-Identifier: MIT OR Apache-2.0
//! First look at a kernel image: is it a complete ELF64 x86-64 executable?
//! Every offset and size is checked against the module's length before use.
//! (The PV domain builder reads the Xen notes and loads the segments.)

use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    Empty,
    /// Shorter than the 64-byte ELF header.
    TruncatedHeader(usize),
    BadMagic,
    /// Class, byte order, version or machine is not ELF64 little-endian x86-64.
    NotX86_64,
    NotExecutable,
    BadPhdrSize(u16),
    NoSegments,
    /// The program header table ends past the file.
    TruncatedPhdrs {
        end: u64,
        len: usize,
    },
    /// A segment's file bytes end past the file.
    TruncatedSegment {
        index: usize,
        end: u64,
        len: usize,
    },
    /// A segment claims less memory than file bytes, or wraps around.
    BadSegment(usize),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::Empty => write!(f, "empty (0 bytes)"),
            ElfError::TruncatedHeader(n) => {
                write!(f, "truncated: {n} bytes, an ELF header needs 64")
            }
            ElfError::BadMagic => write!(f, "not an ELF64 x86-64 image (no ELF magic)"),
            ElfError::NotX86_64 => write!(f, "not an ELF64 x86-64 image (class, byte order or machine)"),
            ElfError::NotExecutable => write!(f, "not an executable ELF image"),
            ElfError::BadPhdrSize(n) => {
                write!(f, "malformed: program header size {n}, expected 56")
            }
            ElfError::NoSegments => write!(f, "malformed: no loadable segments"),
            ElfError::TruncatedPhdrs { end, len } => {
                write!(f, "truncated: program headers end at byte {end}, the image has {len}")
            }
            ElfError::TruncatedSegment { index, end, len } => {
                write!(f, "truncated: segment {index} ends at byte {end}, the image has {len}")
            }
            ElfError::BadSegment(i) => write!(f, "malformed: segment {i} has inconsistent sizes"),
        }
    }
}

/// A loadable segment, as the program header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub flags: u32,
}

/// A checked ELF64 image.
#[derive(Clone, Copy, Debug)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    pub entry: u64,
    phoff: u64,
    phnum: u16,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PHDR_SIZE: u16 = 56;

impl<'a> Elf<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.is_empty() {
            return Err(ElfError::Empty);
        }
        if bytes.len() < 64 {
            return Err(if bytes.len() >= 4 && &bytes[..4] != b"\x7fELF" {
                ElfError::BadMagic
            } else {
                ElfError::TruncatedHeader(bytes.len())
            });
        }
        if &bytes[..4] != b"\x7fELF" {
            return Err(ElfError::BadMagic);
        }
        // ELFCLASS64, little endian, version 1, EM_X86_64.
        if bytes[4] != 2 || bytes[5] != 1 || bytes[6] != 1 || u16_at(bytes, 18) != 62 {
            return Err(ElfError::NotX86_64);
        }
        if u16_at(bytes, 16) != 2 {
            return Err(ElfError::NotExecutable);
        }
        let phentsize = u16_at(bytes, 54);
        if phentsize != PHDR_SIZE {
            return Err(ElfError::BadPhdrSize(phentsize));
        }
        let elf = Elf { bytes, entry: u64_at(bytes, 24), phoff: u64_at(bytes, 32), phnum: u16_at(bytes, 56) };
        let end = elf.phoff.saturating_add(u64::from(elf.phnum) * u64::from(PHDR_SIZE));
        if end > bytes.len() as u64 {
            return Err(ElfError::TruncatedPhdrs { end, len: bytes.len() });
        }
        let mut loads = 0;
        for (index, s) in elf.segments().enumerate() {
            let file_end = s.offset.checked_add(s.filesz).ok_or(ElfError::BadSegment(index))?;
            if file_end > bytes.len() as u64 {
                return Err(ElfError::TruncatedSegment { index, end: file_end, len: bytes.len() });
            }
            if s.memsz < s.filesz || s.vaddr.checked_add(s.memsz).is_none() {
                return Err(ElfError::BadSegment(index));
            }
            loads += 1;
        }
        if loads == 0 {
            return Err(ElfError::NoSegments);
        }
        Ok(elf)
    }

    /// The PT_LOAD segments (headers already bounds-checked by `parse`).
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        self.headers(PT_LOAD)
    }

    /// The file bytes of each PT_NOTE segment that lies inside the image.
    pub fn note_segments(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.headers(PT_NOTE).filter_map(|s| {
            let start = usize::try_from(s.offset).ok()?;
            let end = start.checked_add(usize::try_from(s.filesz).ok()?)?;
            self.bytes.get(start..end)
        })
    }

    /// The file bytes of a loadable segment (checked against the image by `parse`).
    pub fn segment_bytes(&self, s: &Segment) -> &'a [u8] {
        let start = s.offset as usize;
        &self.bytes[start..start + s.filesz as usize]
    }

    fn headers(&self, kind: u32) -> impl Iterator<Item = Segment> + '_ {
        (0..usize::from(self.phnum)).filter_map(move |i| {
            let at = self.phoff as usize + i * usize::from(PHDR_SIZE);
            let h = &self.bytes[at..at + usize::from(PHDR_SIZE)];
            (u32_at(h, 0) == kind).then(|| Segment {
                flags: u32_at(h, 4),
                offset: u64_at(h, 8),
                vaddr: u64_at(h, 16),
                paddr: u64_at(h, 24),
                filesz: u64_at(h, 32),
                memsz: u64_at(h, 40),
            })
        })
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `len` bytes starting with an ELF64 x86-64 executable header whose
    /// `phnum` program headers follow it at offset 64 (entry left 0).
    pub fn header(len: usize, phnum: u16) -> std::vec::Vec<u8> {
        let mut b = std::vec![0u8; len];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&phnum.to_le_bytes());
        b
    }

    /// A minimal valid image: header, one PT_LOAD of 16 bytes at offset 120.
    fn image() -> std::vec::Vec<u8> {
        let mut b = header(136, 1);
        b[24..32].copy_from_slice(&0xffff_ffff_8000_0000u64.to_le_bytes());
        let ph = 64;
        b[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        b[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&16u64.to_le_bytes());
        b[ph + 40..ph + 48].copy_from_slice(&32u64.to_le_bytes());
        b
    }

    #[test]
    fn valid_image() {
        let b = image();
        let e = Elf::parse(&b).unwrap();
        assert_eq!(e.entry, 0xffff_ffff_8000_0000);
        assert_eq!(e.segments().count(), 1);
    }

    #[test]
    fn each_defect_is_named() {
        assert_eq!(Elf::parse(&[]).unwrap_err(), ElfError::Empty);
        assert_eq!(Elf::parse(&image()[..40]).unwrap_err(), ElfError::TruncatedHeader(40));
        assert!(matches!(Elf::parse(&image()[..100]).unwrap_err(), ElfError::TruncatedPhdrs { .. }));
        assert!(matches!(Elf::parse(&image()[..130]).unwrap_err(), ElfError::TruncatedSegment { .. }));
        let mut b = image();
        b[0] = b'M';
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::BadMagic);
        let mut b = image();
        b[18] = 3;
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::NotX86_64);
        let mut b = image();
        b[64 + 40..64 + 48].copy_from_slice(&8u64.to_le_bytes());
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::BadSegment(0));
        let mut b = image();
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Elf::parse(&b).unwrap_err(), ElfError::TruncatedPhdrs { .. }));
    }

    proptest! {
        /// Garbage and corrupted images never panic.
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400), flips in prop::collection::vec((0usize..136, any::<u8>()), 0..8)) {
            let _ = Elf::parse(&bytes);
            let mut b = image();
            for (at, v) in flips { b[at] = v; }
            if let Ok(e) = Elf::parse(&b) { let _ = e.segments().count(); }
        }
    }
}
