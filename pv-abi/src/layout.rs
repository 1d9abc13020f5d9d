// SPDX-License-Identifier: MIT OR Apache-2.0
//! Layout records of the mirrored items, for the conformance test.
//!
//! Every structure declared through `xen_struct!` implements [`AbiStruct`]; the build
//! script scans the source and lists all of them in [`STRUCTS`] and every top-level
//! constant in [`CONSTS`]. `tests/conformance.rs` prints the same facts from Xen's C
//! headers and compares. Nothing here is needed at run time.
//!
//! [`UnionBytes`] is the accessor used for C unions, which are mirrored as plain
//! storage of the right size and alignment.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// One field of a mirrored structure.
#[derive(Clone, Copy, Debug)]
pub struct FieldLayout {
    /// Rust field name.
    pub name: &'static str,
    /// C member designator (`None` for padding or union storage that C does not name).
    pub c_name: Option<&'static str>,
    /// `offset_of!` on the Rust side.
    pub offset: usize,
    /// `size_of` of the field's Rust type.
    pub size: usize,
}

/// One mirrored structure.
#[derive(Clone, Copy, Debug)]
pub struct StructLayout {
    /// `module_path!()` where it is declared.
    pub module: &'static str,
    /// Rust type name.
    pub name: &'static str,
    /// C type expression it mirrors (`struct start_info`, `__typeof__(...)`).
    pub c_type: &'static str,
    /// C expression for the size, when it is not `sizeof(c_type)`.
    pub c_size: Option<&'static str>,
    /// `size_of` on the Rust side.
    pub size: usize,
    /// `align_of` on the Rust side.
    pub align: usize,
    /// The fields, in declaration order.
    pub fields: &'static [FieldLayout],
}

/// Implemented by every structure declared with `xen_struct!`.
pub trait AbiStruct {
    /// The structure's layout as Rust sees it.
    const LAYOUT: StructLayout;
}

/// The value of a mirrored constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstValue {
    /// Any integer constant, widened.
    Int(i128),
    /// A string constant (`XS_WRITE_NONE`).
    Str(&'static str),
}

/// One mirrored constant.
#[derive(Clone, Copy, Debug)]
pub struct ConstLayout {
    /// Module-relative Rust path (`xen::SIF_PRIVILEGED`).
    pub path: &'static str,
    /// C expression to compare with, when it is not the Rust name's C counterpart.
    pub c_expr: Option<&'static str>,
    /// The Rust value.
    pub value: ConstValue,
}

include!(concat!(env!("OUT_DIR"), "/registry.rs"));

/// Typed access to storage that mirrors a C union.
///
/// `get` reads a member from the start of the storage, `set` writes one there and
/// leaves the remaining bytes alone. A member larger than the union does not compile.
pub trait UnionBytes: FromBytes + IntoBytes + Immutable + KnownLayout + Sized {
    /// Reads the union as member type `T`.
    fn get<T: FromBytes>(&self) -> T {
        const { assert!(core::mem::size_of::<T>() <= core::mem::size_of::<Self>()) };
        match T::read_from_prefix(self.as_bytes()) {
            Ok((value, _)) => value,
            Err(_) => unreachable!("member fits by the assertion above"),
        }
    }

    /// Writes member `value` at the start of the union.
    fn set<T: IntoBytes + Immutable>(&mut self, value: &T) {
        const { assert!(core::mem::size_of::<T>() <= core::mem::size_of::<Self>()) };
        let src = value.as_bytes();
        self.as_mut_bytes()[..src.len()].copy_from_slice(src);
    }

    /// Builds the union from member `value`, zero-filling the rest.
    fn from_member<T: IntoBytes + Immutable>(value: &T) -> Self {
        let mut this = Self::new_zeroed();
        this.set(value);
        this
    }
}
