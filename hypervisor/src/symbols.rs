// SPDX-License-Identifier: MIT OR Apache-2.0
//! Address-to-symbol lookup over the image's own ELF symbol table, which GRUB
//! loads for us (the multiboot2 ELF-sections tag). Used by the exception and
//! panic reports.

const SYM_SIZE: usize = 24;
const STT_FUNC: u8 = 2;

/// The function containing `addr`, and the offset into it.
pub fn lookup<'a>(symtab: &[u8], strtab: &'a [u8], addr: u64) -> Option<(&'a str, u64)> {
    let mut best: Option<(u32, u64, u64)> = None; // (name offset, value, size)
    for sym in symtab.chunks_exact(SYM_SIZE) {
        let name = u32::from_le_bytes(sym[0..4].try_into().ok()?);
        let info = sym[4];
        let value = u64::from_le_bytes(sym[8..16].try_into().ok()?);
        let size = u64::from_le_bytes(sym[16..24].try_into().ok()?);
        if info & 0xf != STT_FUNC || value > addr {
            continue;
        }
        let inside = addr < value.saturating_add(size.max(1));
        if inside && best.is_none_or(|(_, v, _)| value >= v) {
            best = Some((name, value, size));
        }
    }
    let (name, value, _) = best?;
    let start = usize::try_from(name).ok()?;
    let bytes = strtab.get(start..)?;
    let end = bytes.iter().position(|&b| b == 0)?;
    Some((core::str::from_utf8(&bytes[..end]).ok()?, addr - value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name: u32, value: u64, size: u64, typ: u8) -> [u8; 24] {
        let mut s = [0u8; 24];
        s[0..4].copy_from_slice(&name.to_le_bytes());
        s[4] = typ;
        s[8..16].copy_from_slice(&value.to_le_bytes());
        s[16..24].copy_from_slice(&size.to_le_bytes());
        s
    }

    #[test]
    fn finds_the_containing_function() {
        let strtab = b"\0alpha\0beta\0data\0";
        let mut symtab = std::vec::Vec::new();
        symtab.extend_from_slice(&sym(0, 0, 0, 0));
        symtab.extend_from_slice(&sym(1, 0x1000, 0x100, STT_FUNC));
        symtab.extend_from_slice(&sym(7, 0x1100, 0x80, STT_FUNC));
        symtab.extend_from_slice(&sym(12, 0x1180, 0x1000, 1)); // an object: ignored
        assert_eq!(lookup(&symtab, strtab, 0x1010), Some(("alpha", 0x10)));
        assert_eq!(lookup(&symtab, strtab, 0x1100), Some(("beta", 0)));
        assert_eq!(lookup(&symtab, strtab, 0x1200), None);
        assert_eq!(lookup(&symtab, strtab, 0xfff), None);
        // A name offset past the string table is not trusted.
        let bad = sym(999, 0x1000, 0x100, STT_FUNC);
        assert_eq!(lookup(&bad, strtab, 0x1000), None);
    }
}
