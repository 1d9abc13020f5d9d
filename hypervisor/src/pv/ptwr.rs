// SPDX-License-Identifier: MIT OR Apache-2.0
//! Writable page tables, emulated (Xen's "ptwr"): a 64-bit PV kernel writes
//! its L1 entries with ordinary instructions, which fault because the tables
//! are mapped read-only; the hypervisor decodes the instruction, computes the
//! new entry and applies it as a checked update. Decoded: the instructions
//! that write one memory operand in place (MOV of 1, 2, 4 or 8 bytes, XCHG,
//! CMPXCHG, AND/OR and BTS/BTR/BTC of 4 or 8) and one iteration of STOS and
//! MOVS (a REP string runs one element per fault, as in Xen). A narrow write
//! is merged into the rest of the entry. The faulting address (CR2) is the
//! operand's address, so the addressing mode only matters for its length.

/// What an emulated write does to its operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Mov,
    Xchg,
    Cmpxchg,
    And,
    Or,
    Bts,
    Btr,
    Btc,
}

/// The instruction's source operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// A general register, by number (REX.R included).
    Reg(u8),
    /// AH, CH, DH or BH: bits 8-15 of register 0-3 (byte ops without REX).
    HighByte(u8),
    /// An immediate, already sign-extended to 64 bits.
    Imm(u64),
    /// MOVS: the element at RSI.
    AtRsi,
}

/// A string store: STOS (from RAX) or MOVS (from RSI); REP repeats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringOp {
    pub movs: bool,
    pub rep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtWrite {
    pub kind: Kind,
    pub src: Src,
    /// Operand size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    pub len: u8,
    pub string: Option<StringOp>,
}

/// Decodes the write at the start of `bytes`, if it is one we emulate.
pub fn decode(bytes: &[u8]) -> Option<PtWrite> {
    let mut i = 0;
    // LOCK and segment prefixes do not change an emulated write; 0x66 makes
    // it 16-bit; REP (F3) only goes with the string stores.
    let (mut opsize16, mut rep) = (false, false);
    loop {
        match *bytes.get(i)? {
            0xf0 | 0x2e | 0x36 | 0x3e | 0x26 => {}
            0x66 => opsize16 = true,
            0xf3 => rep = true,
            _ => break,
        }
        i += 1;
    }
    let rex = match *bytes.get(i)? {
        b @ 0x40..=0x4f => {
            i += 1;
            b
        }
        _ => 0,
    };
    let wide = if rex & 8 != 0 {
        8
    } else if opsize16 {
        2
    } else {
        4
    };
    let mut op = u16::from(*bytes.get(i)?);
    i += 1;
    if let 0xaa | 0xab | 0xa4 | 0xa5 = op {
        let size = if op & 1 == 0 { 1 } else { wide };
        let string = Some(StringOp { movs: op & 0xfe == 0xa4, rep });
        let src = if op & 0xfe == 0xa4 { Src::AtRsi } else { Src::Reg(0) };
        return Some(PtWrite { kind: Kind::Mov, src, size, len: i as u8, string });
    }
    if rep {
        return None;
    }
    if op == 0x0f {
        op = 0x0f00 | u16::from(*bytes.get(i)?);
        i += 1;
    }
    let modrm = *bytes.get(i)?;
    i += 1;
    let (md, reg, rm) = (modrm >> 6, ((modrm >> 3) & 7) | ((rex & 4) << 1), modrm & 7);
    if md == 3 {
        return None; // a register destination: not a memory write
    }
    // The rest of the addressing mode: SIB and displacement.
    if rm == 4 {
        let sib = *bytes.get(i)?;
        i += 1;
        if md == 0 && sib & 7 == 5 {
            i += 4;
        }
    }
    i += match (md, rm) {
        (0, 5) => 4, // RIP-relative
        (1, _) => 1,
        (2, _) => 4,
        _ => 0,
    };
    let imm = |i: &mut usize, n: usize| -> Option<u64> {
        let b = bytes.get(*i..*i + n)?;
        *i += n;
        Some(match n {
            1 => b[0] as i8 as i64 as u64,
            2 => i16::from_le_bytes(b.try_into().ok()?) as i64 as u64,
            _ => i32::from_le_bytes(b.try_into().ok()?) as i64 as u64,
        })
    };
    // A byte register without REX: 4-7 are AH, CH, DH, BH.
    let byte_reg = if rex == 0 && (4..8).contains(&reg) { Src::HighByte(reg - 4) } else { Src::Reg(reg) };
    let imm_wide = if wide == 2 { 2 } else { 4 };
    let (kind, src, size) = match (op, reg & 7) {
        (0x88, _) => (Kind::Mov, byte_reg, 1),
        (0xc6, 0) => (Kind::Mov, Src::Imm(imm(&mut i, 1)?), 1),
        // Byte AND/OR: Linux's fork write-protects a PTE with `andb $~2`.
        (0x08, _) => (Kind::Or, byte_reg, 1),
        (0x20, _) => (Kind::And, byte_reg, 1),
        (0x80, 1) => (Kind::Or, Src::Imm(imm(&mut i, 1)? & 0xff), 1),
        (0x80, 4) => (Kind::And, Src::Imm(imm(&mut i, 1)? & 0xff), 1),
        (0x89, _) => (Kind::Mov, Src::Reg(reg), wide),
        (0xc7, 0) => (Kind::Mov, Src::Imm(imm(&mut i, imm_wide)?), wide),
        _ if wide == 2 => return None,
        (0x87, _) => (Kind::Xchg, Src::Reg(reg), wide),
        (0x09, _) => (Kind::Or, Src::Reg(reg), wide),
        (0x21, _) => (Kind::And, Src::Reg(reg), wide),
        (0x81, 1) => (Kind::Or, Src::Imm(imm(&mut i, 4)?), wide),
        (0x81, 4) => (Kind::And, Src::Imm(imm(&mut i, 4)?), wide),
        (0x83, 1) => (Kind::Or, Src::Imm(imm(&mut i, 1)?), wide),
        (0x83, 4) => (Kind::And, Src::Imm(imm(&mut i, 1)?), wide),
        (0x0fb1, _) => (Kind::Cmpxchg, Src::Reg(reg), wide),
        (0x0fab, _) => (Kind::Bts, Src::Reg(reg), wide),
        (0x0fb3, _) => (Kind::Btr, Src::Reg(reg), wide),
        (0x0fbb, _) => (Kind::Btc, Src::Reg(reg), wide),
        (0x0fba, 5) => (Kind::Bts, Src::Imm(imm(&mut i, 1)? & 0xff), wide),
        (0x0fba, 6) => (Kind::Btr, Src::Imm(imm(&mut i, 1)? & 0xff), wide),
        (0x0fba, 7) => (Kind::Btc, Src::Imm(imm(&mut i, 1)? & 0xff), wide),
        _ => return None,
    };
    // The displacement must have been there too.
    let len = u8::try_from(i).ok().filter(|&l| l <= 15 && usize::from(l) <= bytes.len())?;
    Some(PtWrite { kind, src, size, len, string: None })
}

/// RFLAGS bits an emulated write may change.
pub const FLAGS_CF: u64 = 1 << 0;
pub const FLAGS_PF: u64 = 1 << 2;
pub const FLAGS_ZF: u64 = 1 << 6;
pub const FLAGS_SF: u64 = 1 << 7;
pub const FLAGS_OF: u64 = 1 << 11;

/// The outcome of an emulated write on an 8-byte entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effect {
    /// The entry after the write.
    pub entry: u64,
    /// A register the instruction writes (XCHG's source, CMPXCHG's RAX).
    pub reg: Option<(u8, u64)>,
    /// RFLAGS bits to clear, then bits to set.
    pub flags_clear: u64,
    pub flags_set: u64,
}

/// Applies `w` to the entry `old`, the operand at byte `offset` of it (a
/// multiple of the operand's size: misaligned writes are not emulated).
/// `src` is the source's value (register, immediate or element); `rax` the
/// accumulator (CMPXCHG).
pub fn apply(w: &PtWrite, old: u64, offset: usize, src: u64, rax: u64) -> Option<Effect> {
    let bits = u32::from(w.size) * 8;
    let mask = if w.size == 8 { u64::MAX } else { (1u64 << bits) - 1 };
    if !offset.is_multiple_of(usize::from(w.size)) || offset + usize::from(w.size) > 8 {
        return None;
    }
    let shift = offset as u32 * 8;
    let o = (old >> shift) & mask;
    let src = src & mask;
    let mut e = Effect { entry: old, reg: None, flags_clear: 0, flags_set: 0 };
    let logic = |n: u64| {
        let mut f = 0;
        if n == 0 {
            f |= FLAGS_ZF;
        }
        if n >> (bits - 1) & 1 != 0 {
            f |= FLAGS_SF;
        }
        if (n as u8).count_ones().is_multiple_of(2) {
            f |= FLAGS_PF;
        }
        f
    };
    let n = match w.kind {
        Kind::Mov => src,
        Kind::Xchg => {
            if let Src::Reg(r) = w.src {
                e.reg = Some((r, o));
            }
            src
        }
        Kind::Cmpxchg => {
            e.flags_clear = FLAGS_ZF;
            if rax & mask == o {
                e.flags_set = FLAGS_ZF;
                src
            } else {
                e.reg = Some((0, o));
                o
            }
        }
        Kind::And | Kind::Or => {
            let n = if w.kind == Kind::And { o & src } else { o | src };
            e.flags_clear = FLAGS_CF | FLAGS_PF | FLAGS_ZF | FLAGS_SF | FLAGS_OF;
            e.flags_set = logic(n);
            n
        }
        Kind::Bts | Kind::Btr | Kind::Btc => {
            let bit = 1u64 << (src % u64::from(bits));
            e.flags_clear = FLAGS_CF;
            e.flags_set = if o & bit != 0 { FLAGS_CF } else { 0 };
            match w.kind {
                Kind::Bts => o | bit,
                Kind::Btr => o & !bit,
                _ => o ^ bit,
            }
        }
    };
    e.entry = (old & !(mask << shift)) | (n << shift);
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(bytes: &[u8]) -> Option<PtWrite> {
        decode(bytes)
    }

    #[test]
    fn the_writes_linux_uses() {
        let w = |kind, src, size, len| Some(PtWrite { kind, src, size, len, string: None });
        // mov %rsi,(%rdi)
        assert_eq!(d(&[0x48, 0x89, 0x37]), w(Kind::Mov, Src::Reg(6), 8, 3));
        // mov %r8,0x10(%rax,%rcx,8)
        assert_eq!(d(&[0x4c, 0x89, 0x44, 0xc8, 0x10]), w(Kind::Mov, Src::Reg(8), 8, 5));
        // movq $0x0,(%rdi)
        assert_eq!(d(&[0x48, 0xc7, 0x07, 0, 0, 0, 0]), w(Kind::Mov, Src::Imm(0), 8, 7));
        // xchg %rax,(%rdx)
        assert_eq!(d(&[0x48, 0x87, 0x02]), w(Kind::Xchg, Src::Reg(0), 8, 3));
        // lock cmpxchg %rcx,(%rdx)
        assert_eq!(d(&[0xf0, 0x48, 0x0f, 0xb1, 0x0a]), w(Kind::Cmpxchg, Src::Reg(1), 8, 5));
        // lock btrq $0x1,(%rdi)   (clear _PAGE_RW)
        assert_eq!(d(&[0xf0, 0x48, 0x0f, 0xba, 0x37, 0x01]), w(Kind::Btr, Src::Imm(1), 8, 6));
        // lock andq $-3,(%rdi)
        assert_eq!(d(&[0xf0, 0x48, 0x83, 0x27, 0xfd]), w(Kind::And, Src::Imm(!2), 8, 5));
        // Linux 6.1's ptep_set_wrprotect: `ds andb $0xfd, (%r15)`.
        assert_eq!(d(&[0x3e, 0x41, 0x80, 0x27, 0xfd]), w(Kind::And, Src::Imm(0xfd), 1, 5));
        assert_eq!(d(&[0x80, 0x0f, 0x02]), w(Kind::Or, Src::Imm(2), 1, 3));
        assert_eq!(d(&[0x20, 0x27]), w(Kind::And, Src::HighByte(0), 1, 2));
        assert_eq!(d(&[0x40, 0x08, 0x27]), w(Kind::Or, Src::Reg(4), 1, 3));
        let e =
            apply(&w(Kind::And, Src::Imm(0xfd), 1, 5).unwrap(), 0x8000_0000_1234_5067, 0, 0xfd, 0).unwrap();
        assert_eq!(e.entry, 0x8000_0000_1234_5065, "RW cleared, the rest kept");
        // mov %eax,0x4(%rdi): a 4-byte write
        assert_eq!(d(&[0x89, 0x47, 0x04]), w(Kind::Mov, Src::Reg(0), 4, 3));
        // mov %rax,0x1000(%rip)
        assert_eq!(d(&[0x48, 0x89, 0x05, 0, 0x10, 0, 0]).map(|w| w.len), Some(7));
        // mov %ax,(%rdi); movw $0x1234,(%rdi); mov %bh,(%rdi); mov %sil,(%rdi); movb $7,(%rdi)
        assert_eq!(d(&[0x66, 0x89, 0x07]), w(Kind::Mov, Src::Reg(0), 2, 3));
        assert_eq!(d(&[0x66, 0xc7, 0x07, 0x34, 0x12]), w(Kind::Mov, Src::Imm(0x1234), 2, 5));
        assert_eq!(d(&[0x88, 0x3f]), w(Kind::Mov, Src::HighByte(3), 1, 2));
        assert_eq!(d(&[0x40, 0x88, 0x37]), w(Kind::Mov, Src::Reg(6), 1, 3));
        assert_eq!(d(&[0xc6, 0x07, 0x07]), w(Kind::Mov, Src::Imm(7), 1, 3));
        // rep stosq; movsq
        let s = |movs, rep| Some(StringOp { movs, rep });
        assert_eq!(d(&[0xf3, 0x48, 0xab]).map(|w| (w.size, w.len, w.string)), Some((8, 3, s(false, true))));
        assert_eq!(
            d(&[0x48, 0xa5]).map(|w| (w.src, w.size, w.string)),
            Some((Src::AtRsi, 8, s(true, false)))
        );
    }

    #[test]
    fn what_is_not_a_page_table_write() {
        assert_eq!(d(&[0x48, 0x89, 0xc7]), None); // mov %rax,%rdi: no memory
        assert_eq!(d(&[0x48, 0x8b, 0x07]), None); // a load
        assert_eq!(d(&[0x66, 0x87, 0x07]), None); // 16-bit xchg
        assert_eq!(d(&[0xf3, 0x48, 0x89, 0x07]), None); // rep on a mov
        assert_eq!(d(&[0x48, 0x89]), None); // cut short
        assert_eq!(d(&[]), None);
    }

    #[test]
    fn effects() {
        let mov = PtWrite { kind: Kind::Mov, src: Src::Reg(6), size: 8, len: 3, string: None };
        assert_eq!(apply(&mov, 5, 0, 0x1234_5067, 0).unwrap().entry, 0x1234_5067);
        assert_eq!(apply(&mov, 5, 4, 7, 0), None); // misaligned 8-byte write
        let mov32 = PtWrite { size: 4, ..mov };
        assert_eq!(apply(&mov32, 0x1111_2222_3333_4444, 4, 0xabcd, 0).unwrap().entry, 0x0000_abcd_3333_4444);
        let mov8 = PtWrite { size: 1, ..mov };
        assert_eq!(apply(&mov8, 0x1111_2222_3333_4444, 1, 0xab, 0).unwrap().entry, 0x1111_2222_3333_ab44);
        assert_eq!(apply(&PtWrite { size: 2, ..mov }, 0, 3, 1, 0), None); // misaligned
        let xchg = PtWrite { kind: Kind::Xchg, ..mov };
        assert_eq!(apply(&xchg, 9, 0, 0, 0).unwrap().reg, Some((6, 9)));
        let cx = PtWrite { kind: Kind::Cmpxchg, ..mov };
        let hit = apply(&cx, 9, 0, 10, 9).unwrap();
        assert_eq!((hit.entry, hit.reg, hit.flags_set), (10, None, FLAGS_ZF));
        let miss = apply(&cx, 9, 0, 10, 8).unwrap();
        assert_eq!((miss.entry, miss.reg, miss.flags_set), (9, Some((0, 9)), 0));
        let btr = PtWrite { kind: Kind::Btr, src: Src::Imm(1), ..mov };
        let e = apply(&btr, 0x67, 0, 1, 0).unwrap();
        assert_eq!((e.entry, e.flags_set), (0x65, FLAGS_CF));
        let and = PtWrite { kind: Kind::And, src: Src::Imm(0), ..mov };
        assert_eq!(apply(&and, 0x67, 0, 0, 0).unwrap().flags_set, FLAGS_ZF | FLAGS_PF);
    }

    proptest! {
        /// Decoding never panics and never claims more than 15 bytes or
        /// more bytes than it was given.
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Some(w) = decode(&bytes) {
                prop_assert!(usize::from(w.len) <= bytes.len() && w.len <= 15);
                prop_assert!(matches!(w.size, 1 | 2 | 4 | 8));
            }
        }

        /// A 4-byte write changes only its half of the entry.
        #[test]
        fn half_writes_keep_the_other_half(old in any::<u64>(), v in any::<u64>(), upper in any::<bool>()) {
            let w = PtWrite { kind: Kind::Mov, src: Src::Reg(0), size: 4, len: 2, string: None };
            let e = apply(&w, old, if upper { 4 } else { 0 }, v, 0).unwrap().entry;
            let keep = if upper { 0xffff_ffff } else { 0xffff_ffff_0000_0000 };
            prop_assert_eq!(e & keep, old & keep);
        }
    }
}
