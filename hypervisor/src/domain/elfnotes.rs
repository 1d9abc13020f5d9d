// SPDX-License-Identifier: MIT OR Apache-2.0
//! Xen's ELF notes (`elfnote.h`): what a PV kernel tells its domain builder.
//! Notes with the owner "Xen" are read from the image's PT_NOTE segments;
//! malformed notes are refused, unknown ones ignored. `XEN_ELFNOTE_FEATURES`
//! is read as Xen's libelf reads it (`elf_xen_parse_features`): a required
//! feature (`!name`) that libelf does not know refuses the image.

use core::fmt;
use pv_abi::elfnote as n;
use pv_abi::features as f;

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
    /// XENFEAT_* bits the kernel supports: SUPPORTED_FEATURES and every name
    /// in FEATURES (libelf's `f_supported`).
    pub feat_supported: u32,
    /// XENFEAT_* bits FEATURES marks required with `!` (libelf's `f_required`).
    pub feat_required: u32,
    pub mod_start_pfn: bool,
    /// Xen notes seen (of any type).
    pub count: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteError<'a> {
    /// A note header or payload runs past its segment.
    Truncated,
    /// A numeric note with a payload that is not 1, 2, 4 or 8 bytes.
    BadNumber(u32),
    /// A string note that is not UTF-8.
    BadString(u32),
    /// XEN_ELFNOTE_FEATURES requires (`!name`) a feature libelf does not know.
    UnknownFeature(&'a str),
}

impl fmt::Display for NoteError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::Truncated => write!(f, "an ELF note runs past its segment"),
            NoteError::BadNumber(t) => write!(f, "Xen ELF note {t} has a bad numeric payload"),
            NoteError::BadString(t) => write!(f, "Xen ELF note {t} is not a UTF-8 string"),
            NoteError::UnknownFeature(name) => write!(
                f,
                "XEN_ELFNOTE_FEATURES requires \"{name}\", which Xen does not know (it refuses the kernel)"
            ),
        }
    }
}

/// The feature names libelf knows, with their XENFEAT_* bit. Others, even
/// ones Xen defines, are unknown to it: ignored, or refused when required.
const FEATURE_NAMES: [(&str, u32); 7] = [
    ("writable_page_tables", f::XENFEAT_WRITABLE_PAGE_TABLES),
    ("writable_descriptor_tables", f::XENFEAT_WRITABLE_DESCRIPTOR_TABLES),
    ("auto_translated_physmap", f::XENFEAT_AUTO_TRANSLATED_PHYSMAP),
    ("supervisor_mode_kernel", f::XENFEAT_SUPERVISOR_MODE_KERNEL),
    ("pae_pgdir_above_4gb", f::XENFEAT_PAE_PGDIR_ABOVE_4GB),
    ("hvm_callback_vector", f::XENFEAT_HVM_CALLBACK_VECTOR),
    ("dom0", f::XENFEAT_DOM0),
];

/// libelf reads a feature name into a 64-byte buffer: a longer one is cut
/// after 63 bytes and the rest read as the next name.
const FEATURE_NAME_MAX: usize = 63;

/// Reads a FEATURES string (`name|!name|...`) into (supported, required)
/// XENFEAT_* bits.
pub fn parse_features(s: &str) -> Result<(u32, u32), NoteError<'_>> {
    let (mut supported, mut required) = (0u32, 0u32);
    let mut rest = s.as_bytes();
    while !rest.is_empty() {
        let head = &rest[..rest.len().min(FEATURE_NAME_MAX)];
        let (token, used) = match head.iter().position(|&b| b == b'|') {
            Some(bar) => (&head[..bar], bar + 1),
            None => (head, head.len()),
        };
        rest = &rest[used..];
        let (name, is_required) = match token.strip_prefix(b"!") {
            Some(name) => (name, true),
            None => (token, false),
        };
        match FEATURE_NAMES.iter().find(|(known, _)| known.as_bytes() == name) {
            Some(&(_, bit)) => {
                supported |= 1 << bit;
                if is_required {
                    required |= 1 << bit;
                }
            }
            // A cut may split a character: name what is valid of it.
            None if is_required => {
                return Err(NoteError::UnknownFeature(name.utf8_chunks().next().map_or("", |c| c.valid())));
            }
            None => {}
        }
    }
    Ok((supported, required))
}

fn number(desc: &[u8], typ: u32) -> Result<u64, NoteError<'static>> {
    Ok(match desc.len() {
        1 => u64::from(desc[0]),
        2 => u64::from(u16::from_le_bytes([desc[0], desc[1]])),
        4 => u64::from(u32::from_le_bytes(desc.try_into().map_err(|_| NoteError::BadNumber(typ))?)),
        8 => u64::from_le_bytes(desc.try_into().map_err(|_| NoteError::BadNumber(typ))?),
        _ => return Err(NoteError::BadNumber(typ)),
    })
}

/// A string note: up to its first NUL, or all of it without one (Linux
/// writes XEN_ELFNOTE_FEATURES with `.ascii`; Xen reads on into the note's
/// zero padding).
fn string(desc: &[u8], typ: u32) -> Result<&str, NoteError<'_>> {
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    core::str::from_utf8(&desc[..end]).map_err(|_| NoteError::BadString(typ))
}

/// Reads the Xen notes of every segment in `segments`.
pub fn parse<'a>(segments: impl Iterator<Item = &'a [u8]>) -> Result<XenNotes<'a>, NoteError<'a>> {
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
                        let bits = number(desc, typ)? as u32;
                        notes.supported_features = Some(bits);
                        notes.feat_supported |= bits;
                    }
                    n::XEN_ELFNOTE_MOD_START_PFN => notes.mod_start_pfn = number(desc, typ)? != 0,
                    n::XEN_ELFNOTE_XEN_VERSION => notes.xen_version = Some(string(desc, typ)?),
                    n::XEN_ELFNOTE_GUEST_OS => notes.guest_os = Some(string(desc, typ)?),
                    n::XEN_ELFNOTE_LOADER => notes.loader = Some(string(desc, typ)?),
                    n::XEN_ELFNOTE_FEATURES => {
                        let features = string(desc, typ)?;
                        let (supported, required) = parse_features(features)?;
                        notes.features = Some(features);
                        notes.feat_supported |= supported;
                        notes.feat_required |= required;
                    }
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
    fn features_as_libelf_reads_them() {
        use f::*;
        let bit = |b: u32| 1u32 << b;
        assert_eq!(parse_features(""), Ok((0, 0)));
        assert_eq!(
            parse_features("!writable_page_tables|pae_pgdir_above_4gb"),
            Ok((
                bit(XENFEAT_WRITABLE_PAGE_TABLES) | bit(XENFEAT_PAE_PGDIR_ABOVE_4GB),
                bit(XENFEAT_WRITABLE_PAGE_TABLES)
            ))
        );
        // Unknown names are ignored unless required; XENFEAT names libelf does
        // not list are unknown to it.
        assert_eq!(parse_features("frobnicate||dom0|gnttab_map_avail_bits"), Ok((bit(XENFEAT_DOM0), 0)));
        assert_eq!(parse_features("dom0|!frobnicate"), Err(NoteError::UnknownFeature("frobnicate")));
        assert_eq!(
            parse_features("!gnttab_map_avail_bits"),
            Err(NoteError::UnknownFeature("gnttab_map_avail_bits"))
        );
        assert_eq!(parse_features("!"), Err(NoteError::UnknownFeature("")));
        // Names are cut after 63 bytes, the rest read as the next name.
        let long = std::format!("{}dom0", "x".repeat(63));
        assert_eq!(parse_features(&long), Ok((bit(XENFEAT_DOM0), 0)));
        let long = std::format!("!{}", "y".repeat(70));
        assert_eq!(parse_features(&long), Err(NoteError::UnknownFeature(&long[1..63])));
        let cut = std::format!("!{}é", "z".repeat(61));
        assert_eq!(parse_features(&cut), Err(NoteError::UnknownFeature(&cut[1..62])));
    }

    #[test]
    fn features_from_both_notes() {
        let mut seg = note(b"Xen\0", n::XEN_ELFNOTE_FEATURES, b"dom0|!supervisor_mode_kernel\0");
        seg.extend(note(b"Xen\0", n::XEN_ELFNOTE_SUPPORTED_FEATURES, &1u32.to_le_bytes()));
        let notes = parse([seg.as_slice()].into_iter()).unwrap();
        assert_eq!(notes.supported_features, Some(1));
        assert_eq!(
            notes.feat_supported,
            (1 << f::XENFEAT_DOM0) | (1 << f::XENFEAT_SUPERVISOR_MODE_KERNEL) | 1
        );
        assert_eq!(notes.feat_required, 1 << f::XENFEAT_SUPERVISOR_MODE_KERNEL);
        let bad = note(b"Xen\0", n::XEN_ELFNOTE_FEATURES, b"!writable_page_tables|!fast_path\0");
        assert_eq!(parse([bad.as_slice()].into_iter()), Err(NoteError::UnknownFeature("fast_path")));
    }

    #[test]
    fn malformed_notes_are_refused() {
        let good = note(b"Xen\0", n::XEN_ELFNOTE_ENTRY, &7u64.to_le_bytes());
        assert_eq!(parse([&good[..good.len() - 4]].into_iter()), Err(NoteError::Truncated));
        let odd = note(b"Xen\0", n::XEN_ELFNOTE_ENTRY, &[1, 2, 3]);
        assert_eq!(parse([odd.as_slice()].into_iter()), Err(NoteError::BadNumber(1)));
        let unterminated = note(b"Xen\0", n::XEN_ELFNOTE_LOADER, b"generic");
        assert_eq!(parse([unterminated.as_slice()].into_iter()).map(|n| n.loader), Ok(Some("generic")));
        let not_utf8 = note(b"Xen\0", n::XEN_ELFNOTE_LOADER, b"gen\xffric\0");
        assert_eq!(parse([not_utf8.as_slice()].into_iter()), Err(NoteError::BadString(8)));
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
