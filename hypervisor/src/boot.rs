// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the boot loader handed over, copied out of the multiboot2 information
//! into plain bounded structures. Everything here is untrusted input.

use heapless::{String, Vec};

pub const CMDLINE_MAX: usize = 1024;
pub const MODULE_CMDLINE_MAX: usize = 512;
pub const MAX_MODULES: usize = 16;
pub const MAX_AREAS: usize = 128;

/// One entry of the loader's memory map.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawArea {
    pub base: u64,
    pub len: u64,
    pub typ: u32,
}

/// A boot module: `[start, end)` physical and its command line.
#[derive(Clone, Debug, Default)]
pub struct BootModule {
    pub start: u64,
    pub end: u64,
    pub cmdline: String<MODULE_CMDLINE_MAX>,
    pub cmdline_truncated: bool,
}

impl BootModule {
    pub fn new(start: u64, end: u64, cmdline: &str) -> Self {
        let mut m = BootModule { start, end, ..Default::default() };
        m.cmdline_truncated = copy_truncated(&mut m.cmdline, cmdline);
        m
    }

    /// Length, or `None` when the loader reported an end before the start.
    pub fn len(&self) -> Option<u64> {
        self.end.checked_sub(self.start)
    }
}

/// Where GRUB loaded the image's symbol and string tables (physical).
#[derive(Clone, Copy, Debug, Default)]
pub struct SymbolTables {
    pub symtab: (u64, u64),
    pub strtab: (u64, u64),
}

#[derive(Clone, Debug, Default)]
pub struct BootInfo {
    pub cmdline: String<CMDLINE_MAX>,
    pub cmdline_truncated: bool,
    pub loader: String<64>,
    pub areas: Vec<RawArea, MAX_AREAS>,
    pub areas_dropped: usize,
    pub modules: Vec<BootModule, MAX_MODULES>,
    pub modules_dropped: usize,
    /// The multiboot2 information itself, `[start, end)`.
    pub mbi: (u64, u64),
    pub symbols: Option<SymbolTables>,
}

impl BootInfo {
    pub fn set_cmdline(&mut self, s: &str) {
        self.cmdline_truncated = copy_truncated(&mut self.cmdline, s);
    }

    pub fn set_loader(&mut self, s: &str) {
        copy_truncated(&mut self.loader, s);
    }

    pub fn push_area(&mut self, a: RawArea) {
        if self.areas.push(a).is_err() {
            self.areas_dropped += 1;
        }
    }

    pub fn push_module(&mut self, m: BootModule) {
        if self.modules.push(m).is_err() {
            self.modules_dropped += 1;
        }
    }
}

/// Copies as much of `src` as fits (on a char boundary); true if cut.
fn copy_truncated<const N: usize>(dst: &mut String<N>, src: &str) -> bool {
    dst.clear();
    for c in src.chars() {
        if dst.push(c).is_err() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cmdlines_are_cut_on_char_boundaries() {
        let long = "é".repeat(600);
        let m = BootModule::new(0, 10, &long);
        assert!(m.cmdline_truncated);
        assert_eq!(m.cmdline.len(), MODULE_CMDLINE_MAX);
        let m = BootModule::new(10, 5, "x");
        assert_eq!(m.len(), None);
    }

    #[test]
    fn too_many_modules_are_counted() {
        let mut b = BootInfo::default();
        for i in 0..MAX_MODULES + 3 {
            b.push_module(BootModule::new(i as u64, i as u64 + 1, ""));
        }
        assert_eq!(b.modules.len(), MAX_MODULES);
        assert_eq!(b.modules_dropped, 3);
    }
}
