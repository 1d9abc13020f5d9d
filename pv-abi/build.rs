// SPDX-License-Identifier: MIT OR Apache-2.0
//! Builds the conformance registry from the crate's own source.
//!
//! Every module under `src/` is scanned for
//! - structures declared with `xen_struct!` (a line `pub struct Name: "c type"`), and
//! - top-level constants (a line starting with `pub const NAME: TYPE =`).
//!
//! The result, `$OUT_DIR/registry.rs`, lists all of them for `layout::STRUCTS` and
//! `layout::CONSTS`, so a new item is checked against Xen's headers without anyone
//! having to remember to add it to a list. A `// C: <expression>` comment in the lines
//! just above a constant names the C expression to compare it with when the C name is
//! not simply the Rust name (or its case-insensitive match).
//!
//! `#[repr(C)]` written by hand (outside `xen_struct!`) is reported in
//! `layout::UNREGISTERED` and fails the conformance test.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Files that hold infrastructure, not mirrored items.
const SKIP: &[&str] = &["macros.rs", "layout.rs"];

fn main() {
    let src = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("src");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");

    let mut files = Vec::new();
    collect(&src, &mut files);
    files.sort();

    let mut structs = String::new();
    let mut consts = String::new();
    let mut unregistered = String::new();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file.file_name().unwrap().to_str().unwrap();
        if SKIP.contains(&name) {
            continue;
        }
        let module = module_path(&src, file);
        let text = fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix("pub struct ") {
                let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let after = rest[ident.len()..].trim_start();
                if let Some(after_colon) = after.strip_prefix(':')
                    && after_colon.trim_start().starts_with('"')
                {
                    writeln!(
                        structs,
                        "    &<{} as crate::layout::AbiStruct>::LAYOUT,",
                        rust_path(&module, &ident)
                    )
                    .unwrap();
                }
            }
            if trimmed.starts_with("#[repr(C") {
                writeln!(unregistered, "    \"{}:{}\",", file.strip_prefix(&src).unwrap().display(), i + 1)
                    .unwrap();
            }
            if let Some(rest) = line.strip_prefix("pub const ") {
                let Some((ident, rest)) = rest.split_once(':') else {
                    continue;
                };
                if !ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue; // `pub const fn ...`
                }
                let ty = rest.split('=').next().unwrap().trim();
                let c_expr = c_override(&lines, i);
                let path = rust_path(&module, ident.trim());
                let value = if ty == "&str" {
                    format!("crate::layout::ConstValue::Str({path})")
                } else {
                    format!("crate::layout::ConstValue::Int({path} as i128)")
                };
                let shown = if module.is_empty() {
                    ident.trim().to_string()
                } else {
                    format!("{module}::{}", ident.trim())
                };
                let c_expr = match c_expr {
                    Some(e) => format!("Some({e:?})"),
                    None => "None".to_string(),
                };
                writeln!(
                    consts,
                    "    crate::layout::ConstLayout {{ path: {shown:?}, c_expr: {c_expr}, value: {value} }},"
                )
                .unwrap();
            }
        }
    }

    let out = format!(
        "/// Every structure declared with `xen_struct!` in this crate.\n\
         pub static STRUCTS: &[&StructLayout] = &[\n{structs}];\n\n\
         /// Every top-level constant of this crate's modules.\n\
         pub static CONSTS: &[ConstLayout] = &[\n{consts}];\n\n\
         /// `#[repr(C)]` items written outside `xen_struct!` (file:line); must stay empty.\n\
         pub static UNREGISTERED: &[&str] = &[\n{unregistered}];\n"
    );
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("registry.rs");
    fs::write(dest, out).unwrap();
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/io/console.rs` -> `io::console`; `src/io/mod.rs` -> `io`; `src/lib.rs` -> ``.
fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> =
        rel.components().map(|c| c.as_os_str().to_str().unwrap().to_string()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_path(module: &str, ident: &str) -> String {
    if module.is_empty() { format!("crate::{ident}") } else { format!("crate::{module}::{ident}") }
}

/// A `// C: expr` line among the comment and attribute lines right above line `i`.
fn c_override(lines: &[&str], i: usize) -> Option<String> {
    for line in lines[..i].iter().rev() {
        let t = line.trim_start();
        if let Some(expr) = t.strip_prefix("// C:") {
            return Some(expr.trim().to_string());
        }
        if !(t.starts_with("//") || t.starts_with("#[")) {
            return None;
        }
    }
    None
}
