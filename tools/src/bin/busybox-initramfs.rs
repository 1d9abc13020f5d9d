// SPDX-License-Identifier: MIT OR Apache-2.0
//! `busybox-initramfs`: a gzip-compressed newc initramfs with Debian's static busybox,
//! applet symlinks, the usual mount points and a given `/init` (see `tools::initramfs`).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::Parser;

use tools::initramfs::{self, BusyboxInitramfs, S_IFCHR, S_IFDIR, S_IFLNK};

#[derive(Parser, Debug)]
#[command(
    name = "busybox-initramfs",
    about = "Build a gzip-compressed newc initramfs: static busybox, applet links, /dev /proc /sys /tmp, /init",
    long_about = "Writes OUT, a gzip-compressed newc cpio archive for a Linux initrd holding /bin/busybox (a \
static busybox, by default Debian's busybox-static), a symlink /bin/APPLET -> busybox for each applet, the \
directories /dev, /proc, /sys and /tmp, a /dev/console node, the --init file as /init (mode 0755) and any \
--file. With --list, prints the entries of an existing archive (gzip or not) instead.",
    after_help = "Default applets: sh mount umount mkdir mknod cat echo printf sleep true false test [ dd \
sha256sum md5sum cmp head tail wc grep ls uname dmesg sync seq hexdump od poweroff reboot halt."
)]
struct Cli {
    /// The /init script or program.
    #[arg(long, value_name = "FILE", required_unless_present = "list")]
    init: Option<PathBuf>,
    /// Where to write the archive.
    #[arg(long, short, value_name = "OUT", required_unless_present = "list")]
    output: Option<PathBuf>,
    /// The busybox binary to include (it must be static).
    #[arg(long, value_name = "PATH", default_value = initramfs::DEBIAN_BUSYBOX)]
    busybox: PathBuf,
    /// An applet to link, in addition to the defaults (repeatable).
    #[arg(long = "applet", value_name = "NAME")]
    applets: Vec<String>,
    /// Link only the --applet ones, not the defaults.
    #[arg(long)]
    no_default_applets: bool,
    /// An extra file, HOST_PATH=ARCHIVE_PATH (repeatable); parent directories are created,
    /// the permission bits are the host file's.
    #[arg(long = "file", value_name = "HOST=PATH")]
    files: Vec<String>,
    /// List the entries of ARCHIVE and exit.
    #[arg(long, value_name = "ARCHIVE", conflicts_with_all = ["init", "output"])]
    list: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("busybox-initramfs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read(p: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

fn run(cli: Cli) -> Result<(), String> {
    if let Some(archive) = &cli.list {
        let cpio = initramfs::gunzip_if_needed(&read(archive)?)?;
        let mut out = std::io::stdout().lock();
        for e in initramfs::read_newc(&cpio)? {
            let what = match e.kind() {
                S_IFDIR => "dir ".to_string(),
                S_IFLNK => format!("link -> {}", String::from_utf8_lossy(&e.data)),
                S_IFCHR => format!("char {}:{}", e.rdev.0, e.rdev.1),
                _ => format!("file {} bytes", e.data.len()),
            };
            // A closed pipe (`| head`) ends the listing quietly.
            if writeln!(out, "{:06o} /{} {what}", e.mode, e.name).is_err() {
                break;
            }
        }
        return Ok(());
    }
    let (Some(init), Some(output)) = (&cli.init, &cli.output) else {
        return Err("--init and --output are required".into());
    };
    let mut applets: Vec<String> = if cli.no_default_applets {
        Vec::new()
    } else {
        initramfs::DEFAULT_APPLETS.iter().map(|a| a.to_string()).collect()
    };
    for a in &cli.applets {
        if !applets.contains(a) {
            applets.push(a.clone());
        }
    }
    // A busybox built without an applet would leave a link that runs nothing useful.
    match Command::new(&cli.busybox).arg("--list").output() {
        Ok(out) if out.status.success() => {
            let known = String::from_utf8_lossy(&out.stdout);
            let known: Vec<&str> = known.lines().collect();
            let missing: Vec<&str> =
                applets.iter().map(String::as_str).filter(|a| !known.contains(a)).collect();
            if !missing.is_empty() {
                return Err(format!("{} has no applet {}", cli.busybox.display(), missing.join(", ")));
            }
        }
        _ => eprintln!("busybox-initramfs: cannot run {} --list; applets not checked", cli.busybox.display()),
    }
    let mut files = Vec::new();
    for f in &cli.files {
        let (host, path) = f.split_once('=').ok_or_else(|| format!("--file {f}: expected HOST=PATH"))?;
        let host = PathBuf::from(host);
        let perm = std::fs::metadata(&host)
            .map_err(|e| format!("cannot read {}: {e}", host.display()))?
            .permissions()
            .mode();
        files.push((path.to_string(), perm & 0o7777, read(&host)?));
    }
    let spec = BusyboxInitramfs { busybox: read(&cli.busybox)?, applets, init: read(init)?, files };
    let gz = spec.build()?;
    std::fs::write(output, &gz).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    println!(
        "busybox-initramfs: wrote {} ({} bytes; {} applets, {} extra files)",
        output.display(),
        gz.len(),
        spec.applets.len(),
        spec.files.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let c =
            Cli::try_parse_from(["b", "--init", "i", "-o", "o", "--applet", "vi", "--file", "a=b"]).unwrap();
        assert_eq!((c.applets.len(), c.files.len()), (1, 1));
        assert!(Cli::try_parse_from(["b", "--list", "x"]).is_ok());
        assert!(Cli::try_parse_from(["b", "--init", "i"]).is_err(), "--output is required");
        assert!(Cli::try_parse_from(["b", "--list", "x", "--init", "i"]).is_err());
    }

    /// The default applets the help text names are the ones linked.
    #[test]
    fn help_lists_the_defaults() {
        let help = Cli::command().render_long_help().to_string();
        let help: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains(&format!("Default applets: {}.", initramfs::DEFAULT_APPLETS.join(" "))),
            "{help}"
        );
    }
}
