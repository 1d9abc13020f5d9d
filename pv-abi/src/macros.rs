// SPDX-License-Identifier: MIT OR Apache-2.0
//! The declaration macro for mirrored structures.
//!
//! `xen_struct!` defines each structure as `#[repr(C)]` with the zerocopy derives and
//! records its size, alignment and every field's offset and size in an
//! [`AbiStruct`](crate::layout::AbiStruct) impl, which the conformance test compares
//! with the C compiler's view of Xen's headers.
//!
//! ```text
//! xen_struct! {
//!     /// Doc line.
//!     pub struct Name: "C type expression" {
//!         /// Doc line.
//!         pub field: Type,                 // same name in C
//!         pub type_: u16 as "type",        // C name differs
//!         pub _pad: [u8; 4] as pad,        // padding C leaves implicit: not checked
//!         pub raw: [u64; 2] as raw,        // storage of a C union: not checked
//!     }
//! }
//! ```
//!
//! An optional `, size = "C expression"` after the C type replaces `sizeof(type)` for
//! structures that mirror only a header of the C type (shared rings).

macro_rules! xen_struct {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident : $cty:literal $(, size = $csize:literal)? {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $fty:ty $(as $fc:tt)?
            ),* $(,)?
        }
    )*) => {$(
        $(#[$meta])*
        #[repr(C)]
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq,
            zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable,
        )]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $fty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                <Self as zerocopy::FromZeros>::new_zeroed()
            }
        }

        impl $crate::layout::AbiStruct for $name {
            const LAYOUT: $crate::layout::StructLayout = $crate::layout::StructLayout {
                module: module_path!(),
                name: stringify!($name),
                c_type: $cty,
                c_size: xen_struct!(@opt $($csize)?),
                size: core::mem::size_of::<$name>(),
                align: core::mem::align_of::<$name>(),
                fields: &[$(
                    $crate::layout::FieldLayout {
                        name: stringify!($field),
                        c_name: xen_struct!(@cname $field $($fc)?),
                        offset: core::mem::offset_of!($name, $field),
                        size: core::mem::size_of::<$fty>(),
                    },
                )*],
            };
        }
    )*};
    (@opt) => { None };
    (@opt $e:literal) => { Some($e) };
    (@cname $f:ident) => { Some(stringify!($f)) };
    (@cname $f:ident pad) => { None };
    (@cname $f:ident raw) => { None };
    (@cname $f:ident $c:literal) => { Some($c) };
}
