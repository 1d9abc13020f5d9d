// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guest: guest-shim's own runtime, in a real PV guest. The bump heap (feature
//! `alloc`), the console sink hook and line chunking, the stack guard page, the image
//! and hypercall-page placement, and read-only page walks. One `RESULT` line per
//! check, then `SUMMARY` and poweroff.

#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

use guest_shim::console::{self, LINE_MAX};
use guest_shim::pt::{self, PTE_RW, Walk};
use guest_shim::{Outcome, StartInfo, Tests, println};

guest_shim::entry!(start);

/// Size of the heap arena.
const HEAP_SIZE: usize = 256 * 1024;

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: guest_shim::heap::BumpHeap<HEAP_SIZE> = guest_shim::heap::BumpHeap::new();

/// Bytes in use on the heap (the host build uses the system allocator).
fn heap_used() -> usize {
    #[cfg(target_os = "none")]
    return HEAP.used();
    #[cfg(not(target_os = "none"))]
    return 0;
}

fn start(_si: &'static StartInfo) {
    let mut t = Tests::new();
    heap(&mut t);
    console_sink(&mut t);
    image(&mut t);
    stack(&mut t);
    t.finish()
}

fn heap(t: &mut Tests) {
    {
        let v: Vec<u64> = (0..10_000).collect();
        let sum: u64 = v.iter().sum();
        t.check("heap-vec", Outcome::eq(sum, 10_000 * 9_999 / 2));
        let s = format!("{}-{:x}", 12345, 0xbeef_u32);
        t.check("heap-format", Outcome::eq(s.as_str(), "12345-beef"));
        #[repr(align(4096))]
        struct Page([u8; 4096]);
        let page = Box::new(Page([7; 4096]));
        let addr = &*page as *const Page as usize;
        t.check(
            "heap-alignment",
            Outcome::ensure(
                addr.is_multiple_of(4096) && page.0[4095] == 7,
                format_args!("page at {addr:#x}"),
            ),
        );
    }
    t.check("heap-reuse", Outcome::eq(heap_used(), 0));
    let mut big = Vec::<u8>::new();
    t.check(
        "heap-exhaustion",
        Outcome::ensure(big.try_reserve(HEAP_SIZE * 2).is_err(), "reserving twice the arena succeeded"),
    );
}

/// What the capturing sink received.
static CAPTURED: spin::Mutex<Captured> = spin::Mutex::new(Captured { bytes: [0; 1024], len: 0, calls: 0 });

struct Captured {
    bytes: [u8; 1024],
    len: usize,
    calls: usize,
}

fn capture(chunk: &[u8]) {
    let mut c = CAPTURED.lock();
    let start = c.len;
    let n = chunk.len().min(c.bytes.len() - start);
    c.bytes[start..start + n].copy_from_slice(&chunk[..n]);
    c.len += n;
    c.calls += 1;
}

/// A long line through a capturing sink: it arrives in `LINE_MAX` chunks, intact.
fn console_sink(t: &mut Tests) {
    const LEN: usize = 600;
    let old = console::set_sink(capture);
    println!("{}", "x".repeat(LEN));
    console::set_sink(old);
    let c = CAPTURED.lock();
    let text = &c.bytes[..c.len];
    let intact = text.len() == LEN + 1 && text[..LEN].iter().all(|&b| b == b'x') && text[LEN] == b'\n';
    t.check(
        "console-sink",
        Outcome::ensure(intact, format_args!("captured {} bytes in {} calls", c.len, c.calls)),
    );
    t.check("console-chunks", Outcome::eq(c.calls, (LEN + 1).div_ceil(LINE_MAX)));
}

/// The image sits at the virtual base; the hypercall page is a page of it.
fn image(t: &mut Tests) {
    let image = guest_shim::image_range();
    t.check(
        "image-range",
        Outcome::ensure(
            image.start == guest_shim::notes::VIRT_BASE && image.end.is_multiple_of(4096),
            format_args!("image {image:#x?}"),
        ),
    );
    let page = guest_shim::hypercalls().page() as u64;
    t.check(
        "hypercall-page-in-image",
        Outcome::ensure(
            page.is_multiple_of(4096) && image.contains(&page),
            format_args!("hypercall page {page:#x}, image {image:#x?}"),
        ),
    );
}

/// The guard page below the runtime stack is unmapped; the stack above it is mapped
/// writable; we run on that stack.
fn stack(t: &mut Tests) {
    let guard = guest_shim::stack_guard();
    let walk = pt::lookup(guard);
    t.check(
        "stack-guard-unmapped",
        Outcome::ensure(
            matches!(walk, Walk::NotPresent { level: 1, .. }),
            format_args!("guard {guard:#x}: {walk:x?}"),
        ),
    );
    let bottom = guard + 4096;
    let walk = pt::lookup(bottom);
    t.check(
        "stack-mapped",
        Outcome::ensure(
            walk.pte().is_some_and(|pte| pte & PTE_RW != 0),
            format_args!("stack bottom {bottom:#x}: {walk:x?}"),
        ),
    );
    let local = 0u8;
    let sp = &local as *const u8 as u64;
    let top = bottom + guest_shim::STACK_SIZE as u64;
    t.check(
        "on-runtime-stack",
        Outcome::ensure(
            (bottom..top).contains(&sp),
            format_args!("local at {sp:#x}, stack {bottom:#x}..{top:#x}"),
        ),
    );
}

#[cfg(not(target_os = "none"))]
fn main() {}
