// SPDX-License-Identifier: MIT OR Apache-2.0
//! Xen's x86_64 PV guest interface, as typed Rust.
//!
//! This crate mirrors the public headers of Xen 4.17 (`xen/include/public/`, installed
//! by Debian's `libxen-dev` under `/usr/include/xen/`) that a hypervisor speaking Xen's
//! PV ABI and its guests share: hypercall numbers, error numbers, and every structure
//! and constant that crosses the guest boundary. It is `no_std` and never allocates.
//!
//! - Modules are named after the header they mirror, and say so in their first line:
//!   [`xen`] (`xen.h`), [`arch_x86`] (`arch-x86/xen.h`, `xen-x86_64.h`), [`elfnote`],
//!   [`errno`], [`event_channel`], [`grant_table`], [`sched`], [`vcpu`], [`memory`],
//!   [`version`], [`features`], [`callback`], [`physdev`], [`platform`], [`domctl`],
//!   [`sysctl`], [`io`] (`console`, `xs_wire`, `ring`, `blkif`, `netif`), and
//!   [`hypercall`] for the `__HYPERVISOR_*` numbers.
//! - Names follow Xen: `struct start_info` is [`xen::StartInfo`], `EVTCHNOP_bind_virq`
//!   is [`event_channel::EVTCHNOP_BIND_VIRQ`] (constants are upper case;
//!   `__HYPERVISOR_mmu_update` is [`hypercall::HYPERVISOR_MMU_UPDATE`]). Fields keep
//!   Xen's names, with a trailing `_` for Rust keywords (`type_`, `ref_`, `in_`).
//! - Every mirrored structure is `#[repr(C)]` and derives zerocopy's `FromBytes`,
//!   `IntoBytes`, `KnownLayout` and `Immutable`, so guest memory can be read and written
//!   as these types without `unsafe`. Padding that C leaves implicit is an explicit
//!   `_pad` field; C unions are storage of the right size and alignment read with
//!   [`layout::UnionBytes`]. Guest pointers are [`xen::GuestHandle`]s (64-bit).
//! - Flag sets also exist as `bitflags` types ([`xen::SifFlags`],
//!   [`grant_table::GtfFlags`], ...), built from the raw constants.
//! - Errors: [`Errno`] (alias [`XenError`]) holds Xen's errno values and converts from
//!   and to the negative values hypercalls return in RAX.
//!
//! # Conformance
//!
//! `tests/conformance.rs` compiles a C program against Xen's headers that prints the
//! size, alignment and every field offset and size of each mirrored structure, the
//! value of each constant and every errno, and compares them with this crate. The list
//! is generated from the Rust source by `build.rs` ([`layout::STRUCTS`],
//! [`layout::CONSTS`]), so a new item cannot be left unchecked.
//!
//! # Guest side
//!
//! With the `guest` feature (x86_64 only), `guest::Hypercalls` calls every hypercall
//! through the hypercall page with typed arguments. A minimal guest prints a line and
//! powers off:
//!
//! ```no_run
//! # #[cfg(feature = "guest")]
//! fn start_of_day(hypercall_page: *const u8) -> Result<(), pv_abi::XenError> {
//!     use pv_abi::guest::Hypercalls;
//!     use pv_abi::sched::SHUTDOWN_POWEROFF;
//!
//!     // SAFETY: the domain builder filled the page named by the kernel's
//!     // XEN_ELFNOTE_HYPERCALL_PAGE note with the hypercall stubs.
//!     let xen = unsafe { Hypercalls::new(hypercall_page) };
//!     xen.console_write(b"hello from a PV guest\n")?;
//!     let (major, minor) = xen.xen_version();
//!     assert!(major >= 3, "running on Xen {major}.{minor}?");
//!     xen.sched_shutdown(SHUTDOWN_POWEROFF)
//! }
//! ```
#![no_std]
#![deny(missing_docs)]

#[macro_use]
mod macros;

pub mod arch_x86;
pub mod callback;
pub mod domctl;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod features;
pub mod grant_table;
#[cfg(all(feature = "guest", target_arch = "x86_64"))]
pub mod guest;
pub mod hypercall;
pub mod io;
pub mod layout;
pub mod memory;
pub mod physdev;
pub mod platform;
pub mod sched;
pub mod sysctl;
pub mod vcpu;
pub mod version;
pub mod xen;

pub use errno::{Errno, XenError};
