// SPDX-License-Identifier: MIT OR Apache-2.0
//! `bzimage2elf`: the ELF `vmlinux` inside a Linux bzImage, as the hypervisor loads it
//! (hvrun does the same for each bzImage module), with its Xen ELF notes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use tools::kernel;

#[derive(Parser, Debug)]
#[command(
    name = "bzimage2elf",
    about = "Extract the ELF vmlinux from a Linux bzImage and show its Xen ELF notes",
    long_about = "Reads IN, a Linux bzImage (gzip, xz, lzma, lz4 or zstd payload) or an ELF, checks that \
the kernel inside is an ELF64 x86-64 image with Xen ELF notes (a PV kernel), prints what it found and \
the notes, and writes the ELF to OUT if given. An ELF input is written unchanged; from a bzImage, the \
relocation table after the ELF is dropped.",
    after_help = "Exit status: 0 ok; 1 not a PV kernel image (the reason is printed); 2 cannot read or write."
)]
struct Cli {
    /// The bzImage (e.g. /boot/vmlinuz-6.1.0-*-cloud-amd64) or ELF to read.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// Where to write the ELF (nothing is written without it).
    #[arg(value_name = "OUT")]
    output: Option<PathBuf>,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let image = match std::fs::read(&cli.input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bzimage2elf: cannot read {}: {e}", cli.input.display());
            return ExitCode::from(2);
        }
    };
    let k = match kernel::extract(&image) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("bzimage2elf: {}: {e}", cli.input.display());
            return ExitCode::from(1);
        }
    };
    if !cli.quiet {
        println!("{}: {}", cli.input.display(), k.summary());
        println!("ELF e_entry {:#x} (a PV guest starts at the ENTRY note); Xen notes:", k.entry);
        for n in &k.notes {
            println!("  {n}");
        }
    }
    if let Some(out) = &cli.output {
        if let Err(e) = std::fs::write(out, &k.elf) {
            eprintln!("bzimage2elf: cannot write {}: {e}", out.display());
            return ExitCode::from(2);
        }
        if !cli.quiet {
            println!("wrote {} ({} bytes)", out.display(), k.elf.len());
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["bzimage2elf", "-q", "vmlinuz", "out.elf"]).unwrap();
        assert!(c.quiet && c.output.is_some());
        assert!(Cli::try_parse_from(["bzimage2elf"]).is_err());
    }
}
