// SPDX-License-Identifier: MIT OR Apache-2.0
//! `hvrun`: boot the hypervisor (or Xen 4.17) with modules under QEMU, stream the serial
//! console, and say whether the run passed (DESIGN.md 4.2).

use std::fs::File;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use regex::Regex;

use tools::hvrun::outcome::{self, End};
use tools::hvrun::qemu::{self, Sink};
use tools::hvrun::spec::{self, ModuleSpec};
use tools::hvrun::{Accel, Kernel, RunConfig, XEN_IMAGE, iso, secs, status};

/// How long the `--kvm` probe boot may take to show console output.
const KVM_PROBE_LIMIT: Duration = Duration::from_secs(20);

#[derive(Parser, Debug)]
#[command(
    name = "hvrun",
    about = "Boot the hypervisor (or Xen 4.17) with modules under QEMU and check the serial console",
    long_about = "Builds a GRUB multiboot2 ISO with the hypervisor (or, with --xen, Debian's Xen 4.17) \
and the MODULEs in order, boots it in QEMU, streams the serial console to stdout, and exits 0 only if \
the run ended cleanly (exit code == --expect-exit, or --until matched), every --expect matched and no \
'RESULT <name> FAIL' line appeared. The last line printed starts with 'hvrun: ' and gives the verdict.",
    after_help = "Exit codes written by the hypervisor to port 0xf4 (QEMU exits with (code<<1)|1): \
0 poweroff, 1 reboot, 2 crash, 3 hypervisor panic, 4 bad boot configuration. Xen's end-of-run lines \
map to the same codes.\n\
hvrun's exit status: 0 ok; 1 failed expectation, RESULT FAIL or wrong exit code; 2 timeout; \
3 QEMU/GRUB/ISO/input error; 130 interrupted.\n\
GRUB rebuilds command lines from words: runs of spaces become one, a word with a space is passed \
in double quotes, and \\ ' \" inside words get a backslash. Modules are passed unmodified (no gunzip), \
except that for our hypervisor, which loads only ELF, a module that is a Linux bzImage (the first, dom0's \
kernel, or a domU's) is replaced by the ELF vmlinux inside it, extracted into the temporary directory \
(gzip, xz, lzma, lz4 or zstd; the same as `bzimage2elf IN OUT`). With --xen every module is passed as \
it is: Xen's own loader takes bzImages."
)]
struct Cli {
    /// Boot Debian's Xen 4.17 (/boot/xen-4.17-amd64.gz) instead of our hypervisor.
    #[arg(long)]
    xen: bool,
    /// Use KVM if a short probe boot shows it works, else TCG.
    #[arg(long, overrides_with = "tcg")]
    kvm: bool,
    /// Use TCG (the default).
    #[arg(long, overrides_with = "kvm")]
    tcg: bool,
    /// QEMU CPU model.
    #[arg(long, value_name = "MODEL", default_value = "max,-smap")]
    cpu: String,
    /// QEMU machine type (pc or q35).
    #[arg(long, value_name = "TYPE", default_value = "pc")]
    machine: String,
    /// Number of CPUs.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    smp: u32,
    /// Guest RAM in MiB.
    #[arg(long, value_name = "MiB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(16..))]
    mem: u64,
    /// Give up (and fail) after this many seconds from QEMU's start.
    #[arg(long, value_name = "S", default_value_t = 120.0, value_parser = parse_seconds)]
    timeout: f64,
    /// Options appended to the kernel's default command line
    /// (ours: "console=com1 com1=115200"; Xen: "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all").
    #[arg(
        long,
        value_name = "OPTIONS",
        default_value = "",
        hide_default_value = true,
        allow_hyphen_values = true
    )]
    cmdline: String,
    /// A regex that some console line must match (repeatable).
    #[arg(long = "expect", value_name = "REGEX", value_parser = parse_regex)]
    expects: Vec<Regex>,
    /// End the run successfully as soon as a console line matches this regex.
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    until: Option<Regex>,
    /// Type TEXT into the serial port when a console line first matches REGEX
    /// (repeatable; TEXT may use \n, \r, \t, \\ and \xNN, e.g. --send 'ready=>hello\n').
    #[arg(long = "send", value_name = "REGEX=>TEXT")]
    sends: Vec<tools::hvrun::Send>,
    /// The exit code a clean end has (ignored when --until matched).
    #[arg(long, value_name = "CODE", default_value_t = 0)]
    expect_exit: u32,
    /// Also write everything printed to this file.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// The kernel image to boot [default: <dir of hvrun>/../hypervisor.elf, or with --xen /boot/xen-4.17-amd64.gz].
    #[arg(long, value_name = "PATH")]
    hypervisor: Option<PathBuf>,
    /// Only build the ISO, to PATH, and exit.
    #[arg(long, value_name = "PATH")]
    iso_only: Option<PathBuf>,
    /// An extra argument for QEMU, appended as is (repeatable), e.g. --qemu-arg=-icount --qemu-arg=shift=0,sleep=off.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
    /// Modules in order, each PATH or PATH:CMDLINE (split at the first ':'): dom0 kernel (ELF, or a
    /// bzImage, extracted to ELF for our hypervisor), initrd, ...
    #[arg(value_name = "MODULE[:cmdline]", value_parser = parse_module)]
    modules: Vec<ModuleSpec>,
}

fn parse_regex(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| e.to_string())
}

fn parse_module(s: &str) -> Result<ModuleSpec, String> {
    s.parse()
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e7 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let is_usage_error = e.use_stderr();
            let _ = e.print();
            if !is_usage_error {
                return ExitCode::SUCCESS; // --help, --version
            }
            println!("hvrun: ERROR: bad command line");
            return ExitCode::from(status::INFRA as u8);
        }
    };
    let code = real_main(cli);
    ExitCode::from(code as u8)
}

fn infra(sink: &mut Sink, msg: impl std::fmt::Display) -> i32 {
    sink.note(&format!("hvrun: ERROR: {msg}"));
    status::INFRA
}

fn real_main(cli: Cli) -> i32 {
    let kernel = if cli.xen { Kernel::Xen } else { Kernel::Ours };
    let interactive = cli.expects.is_empty()
        && cli.until.is_none()
        && cli.sends.is_empty()
        && std::io::stdin().is_terminal();

    let log = match &cli.log {
        None => None,
        Some(p) => match File::create(p) {
            Ok(f) => Some(f),
            Err(e) => {
                let mut sink = Sink::new(None, false);
                return infra(&mut sink, format_args!("cannot create log file {}: {e}", p.display()));
            }
        },
    };
    let mut sink = Sink::new(log, interactive);

    let image: PathBuf = match (&cli.hypervisor, kernel) {
        (Some(p), _) => p.clone(),
        (None, Kernel::Xen) => PathBuf::from(XEN_IMAGE),
        (None, Kernel::Ours) => tools::hvrun::default_hypervisor_image(),
    };
    if let Err(e) = iso::check_inputs(&image, &cli.modules) {
        let hint = match (kernel, cli.hypervisor.is_some(), e.starts_with("kernel image")) {
            (Kernel::Ours, false, true) => " (run `make`, or pass --hypervisor PATH)",
            (Kernel::Xen, false, true) => " (install xen-hypervisor-4.17-amd64)",
            _ => "",
        };
        return infra(&mut sink, format_args!("{e}{hint}"));
    }
    let kernel_cmdline = spec::kernel_cmdline(kernel.default_cmdline(), &cli.cmdline);

    let work = match tempfile::Builder::new().prefix("hvrun.").tempdir() {
        Ok(d) => d,
        Err(e) => {
            return infra(&mut sink, format_args!("cannot create a temporary directory: {e}"));
        }
    };
    // Our hypervisor loads only ELF; Xen's loader takes a bzImage as it is.
    let mut modules = cli.modules.clone();
    if kernel == Kernel::Ours {
        match iso::convert_bzimages(work.path(), &mut modules) {
            Ok(lines) => lines.iter().for_each(|l| sink.note(&format!("hvrun: {l}"))),
            Err(e) => return infra(&mut sink, format_args!("{e:#}")),
        }
    }
    let iso_path = match &cli.iso_only {
        Some(p) => p.clone(),
        None => work.path().join("boot.iso"),
    };
    if let Err(e) = iso::build(work.path(), &iso_path, &image, &kernel_cmdline, &modules) {
        return infra(&mut sink, format_args!("building the ISO: {e:#}"));
    }
    if cli.iso_only.is_some() {
        sink.note(&format!(
            "hvrun: wrote {} ({} with {} module(s); command line: {kernel_cmdline})",
            iso_path.display(),
            image.display(),
            cli.modules.len()
        ));
        return status::OK;
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // Ctrl-C, SIGTERM, SIGHUP: kill QEMU, say so, clean up the temporary directory.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }

    let mut cfg = RunConfig {
        kernel,
        accel: Accel::Tcg,
        machine: cli.machine.clone(),
        cpu: cli.cpu.clone(),
        smp: cli.smp,
        mem_mib: cli.mem,
        timeout: Duration::from_secs_f64(cli.timeout),
        expects: cli.expects.clone(),
        until: cli.until.clone(),
        expect_exit: cli.expect_exit,
        interactive,
        extra_qemu_args: cli.qemu_args.clone(),
        sends: cli.sends.clone(),
    };
    if cli.kvm {
        match qemu::probe_kvm(&cfg, &iso_path, KVM_PROBE_LIMIT) {
            Ok(first) => {
                sink.note(&format!("hvrun: KVM probe ok (console output after {}); using KVM", secs(first)));
                cfg.accel = Accel::Kvm;
            }
            Err(why) => sink.note(&format!("hvrun: KVM probe failed ({why}); using TCG")),
        }
    }
    if interrupted.load(Ordering::SeqCst) {
        let v = outcome::verdict(&End::Interrupted, Duration::ZERO, cfg.expect_exit, &Default::default());
        sink.note(&v.line);
        return v.status;
    }

    let r = qemu::run(&cfg, &iso_path, cfg.accel, &mut sink, &interrupted);
    for (re, at) in &r.observed.expects {
        if let Some(at) = at {
            sink.note(&format!("hvrun: matched '{re}' at {}", secs(*at)));
        }
    }
    if let (Some(re), End::Until { at }) = (&r.observed.until, &r.end) {
        sink.note(&format!("hvrun: matched '{re}' (--until) at {}", secs(*at)));
    }
    let v = outcome::verdict(&r.end, r.elapsed, cfg.expect_exit, &r.observed);
    sink.note(&v.line);
    drop(work);
    v.status
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cli_parses_the_contract() {
        let c = Cli::try_parse_from([
            "hvrun",
            "--xen",
            "--kvm",
            "--smp",
            "2",
            "--mem",
            "4096",
            "--timeout",
            "60",
            "--cmdline",
            "loglvl=debug",
            "--expect",
            "^a",
            "--expect",
            "b$",
            "--until",
            "c",
            "--expect-exit",
            "2",
            "--log",
            "x.log",
            "--tcg",
            "k.elf:dom0 console=hvc0",
            "initrd",
        ])
        .unwrap();
        assert!(c.xen && c.tcg && !c.kvm, "the last of --kvm/--tcg wins");
        assert_eq!((c.smp, c.mem, c.timeout, c.expect_exit), (2, 4096, 60.0, 2));
        assert_eq!(c.expects.len(), 2);
        assert_eq!(c.modules.len(), 2);
        assert_eq!(c.modules[0].cmdline, "dom0 console=hvc0");
        assert_eq!(c.modules[1].path, Path::new("initrd"));

        let c =
            Cli::try_parse_from(["hvrun", "--cmdline", "-x", "--qemu-arg=-icount", "--qemu-arg", "shift=0"])
                .unwrap();
        assert_eq!(c.cmdline, "-x");
        assert_eq!(c.qemu_args, ["-icount", "shift=0"]);

        assert!(Cli::try_parse_from(["hvrun", "--expect", "("]).is_err());
        assert!(Cli::try_parse_from(["hvrun", "--timeout", "0"]).is_err());
        assert!(Cli::try_parse_from(["hvrun", ":x"]).is_err());
    }
}
