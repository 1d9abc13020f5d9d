// SPDX-License-Identifier: MIT OR Apache-2.0
//! Xen's ELF notes (`elfnote.h`): what a PV kernel tells its domain builder.
//! Notes with the owner "Xen" are read from the image's PT_NOTE segments;
//! malformed notes are refused, unknown ones ignored.

use core::fmt;
use pv_abi::elfnote as n;

/// The notes the builder honours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenNotes<'a> {
    pub entry: Option<u64>,
    pub hypercall_page: Option<u64>,
    pub virt_base: Option<u64>,
    pub paddr_offset: Option<u64>,
    pub init_p2m: Option<u64>,
    pub xen_version: Option<&'a str>,
    pub guest_os: Option<&'a str>,
    pub loader: Option<&'a str>,
    pub features: Option<&'a str>,
    /// XEN_ELFNOTE_SUPPORTED_FEATURES: XENFEAT_* bits the kernel supports.
    pub supported_features: Option<u32>,
    pub mod_start_pfn: bool,
    /// Xen notes seen (of any type).
    pub count: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteError {
    /// A note header or payload runs past its segment.
    Truncated,
    /// A numeric note with a payload that is not 1, 2, 4 or 8 bytes.
    BadNumber(u32),
    /// A string note that is not NUL-terminated UTF-8.
    BadString(u32),
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::Truncated => write!(f, "an ELF note runs past its segment"),
            NoteError::BadNumber(t) => write!(f, "Xen ELF note {t} has a bad numeric payload"),
            NoteError::BadString(t) => write!(f, "Xen ELF note {t} is not a NUL-terminated string"),
        }
    }
}

fn number(desc: &[u8], typ: u32) -> Result<u64, NoteError> {
    Ok(match desc.len() {
        1 => u64::from(desc[0]),
        2 => u64::from(u16::from_le_bytes([desc[0], desc[1]])),
        4 => u64::from(u32::from_le_bytes(desc.try_into().map_err(|_| NoteError::BadNumber(typ))?)),
        8 => u64::from_le_bytes(desc.try_into().map_err(|_| NoteError::BadNumber(typ))?),
        _ => return Err(NoteError::BadNumber(typ)),
    })
}

fn string(desc: &[u8], typ: u32) -> Result<&str, NoteError> {
    let end = desc.iter().position(|&b| b == 0).ok_or(NoteError::BadString(typ))?;
    core::str::from_utf8(&desc[..end]).map_err(|_| NoteError::BadString(typ))
}

/// Reads the Xen notes of every segment in `segments`.
pub fn parse<'a>(segments: impl Iterator<Item = &'a [u8]>) -> Result<XenNotes<'a>, NoteError> {
    let mut notes = XenNotes::default();
    for mut seg in segments {
        while seg.len() >= 12 {
            let word = |at: usize| u32::from_le_bytes([seg[at], seg[at + 1], seg[at + 2], seg[at + 3]]);
            let (namesz, descsz, typ) = (word(0) as usize, word(4) as usize, word(8));
            let name_end = 12usize.checked_add(namesz).ok_or(NoteError::Truncated)?;
            let desc_start = name_end.next_multiple_of(4);
            let desc_end = desc_start.checked_add(descsz).ok_or(NoteError::Truncated)?;
            if desc_end > seg.len() {
                return Err(NoteError::Truncated);
            }
            let name = &seg[12..name_end];
            let desc = &seg[desc_start..desc_end];
            if name == b"Xen\0" {
                notes.count += 1;
                match typ {
                    n::XEN_ELFNOTE_ENTRY => notes.entry = Some(number(desc, typ)?),
                    n::XEN_ELFNOTE_HYPERCALL_PAGE => notes.hypercall_page = Some(number(desc, typ)?),
                    n::XEN_ELFNOTE_VIRT_BASE => notes.virt_base = Some(number(desc, typ)?),
                    n::XEN_ELFNOTE_PADDR_OFFSET => notes.paddr_offset = Some(number(desc, typ)?),
                    n::XEN_ELFNOTE_INIT_P2M => notes.init_p2m = Some(number(desc, typ)?),
                    n::XEN_ELFNOTE_SUPPORTED_FEATURES => {
                        notes.supported_features = Some(number(desc, typ)? as u32)
                    }
                    n::XEN_ELFNOTE_MOD_START_PFN => notes.mod_start_pfn = number(desc, typ)? != 0,
                    n::XEN_ELFNOTE_XEN_VERSION => notes.xen_version = Some(string(desc, typ)?),
                    n::XEN_ELFNOTE_GUEST_OS => notes.guest_os = Some(string(desc, typ)?),
                    n::XEN_ELFNOTE_LOADER => notes.loader = Some(string(desc, typ)?),
                    n::XEN_ELFNOTE_FEATURES => notes.features = Some(string(desc, typ)?),
                    _ => {}
                }
            }
            seg = &seg[desc_end.next_multiple_of(4).min(seg.len())..];
        }
    }
    Ok(notes)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodes one note as a linker would.
    pub fn note(name: &[u8], typ: u32, desc: &[u8]) -> std::vec::Vec<u8> {
        let mut v = std::vec::Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&typ.to_le_bytes());
        v.extend_from_slice(name);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn linux_like_notes() {
        let mut seg = note(b"Xen\0", n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0");
        seg.extend(note(b"Xen\0", n::XEN_ELFNOTE_VIRT_BASE, &0xffff_ffff_8000_0000u64.to_le_bytes()));
        seg.extend(note(b"Xen\0", n::XEN_ELFNOTE_ENTRY, &0xffff_ffff_8304_e1c0u64.to_le_bytes()));
        seg.extend(note(b"GNU\0", 3, &[1, 2, 3, 4, 5])); // another owner: skipped
        seg.extend(note(b"Xen\0", n::XEN_ELFNOTE_SUPPORTED_FEATURES, &0x8801u32.to_le_bytes()));
        seg.extend(note(b"Xen\0", n::XEN_ELFNOTE_FEATURES, b"!writable_page_tables|pae_pgdir_above_4gb\0"));
        let notes = parse([seg.as_slice()].into_iter()).unwrap();
        assert_eq!(notes.count, 5);
        assert_eq!(notes.xen_version, Some("xen-3.0"));
        assert_eq!(notes.virt_base, Some(0xffff_ffff_8000_0000));
        assert_eq!(notes.entry, Some(0xffff_ffff_8304_e1c0));
        assert_eq!(notes.supported_features, Some(0x8801));
        assert_eq!(notes.features, Some("!writable_page_tables|pae_pgdir_above_4gb"));
    }

    #[test]
    fn malformed_notes_are_refused() {
        let good = note(b"Xen\0", n::XEN_ELFNOTE_ENTRY, &7u64.to_le_bytes());
        assert_eq!(parse([&good[..good.len() - 4]].into_iter()), Err(NoteError::Truncated));
        let odd = note(b"Xen\0", n::XEN_ELFNOTE_ENTRY, &[1, 2, 3]);
        assert_eq!(parse([odd.as_slice()].into_iter()), Err(NoteError::BadNumber(1)));
        let unterminated = note(b"Xen\0", n::XEN_ELFNOTE_LOADER, b"generic");
        assert_eq!(parse([unterminated.as_slice()].into_iter()), Err(NoteError::BadString(8)));
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse([huge.as_slice()].into_iter()), Err(NoteError::Truncated));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse([bytes.as_slice()].into_iter());
        }
    }
}
