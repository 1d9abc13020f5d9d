// SPDX-License-Identifier: MIT OR Apache-2.0
//! Running QEMU: the command line, the serial console stream, the end of the run.
//!
//! Two threads read QEMU's stdout (the serial port) and stderr and send [`Event`]s; the
//! main loop prints and matches lines, and decides when the run is over: QEMU exits by
//! itself (isa-debug-exit, reset), or hvrun kills it on `--until`, on Xen's end-of-run
//! lines, on a `PANIC` after which the machine hangs, on GRUB failing, on the timeout,
//! or when hvrun itself is interrupted.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::console::{LineSplitter, clean_line};
use super::outcome::{self, End, Observed, QemuExit};
use super::spec::GRUB_FAILED_MARKER;
use super::{Accel, Kernel, RunConfig, secs};

/// After Xen's `Panic on CPU` line, how long to wait for the closing `****` line.
const XEN_PANIC_GRACE: Duration = Duration::from_secs(2);
/// After our `PANIC` line, how long QEMU gets to exit by itself.
const OUR_PANIC_GRACE: Duration = Duration::from_secs(5);
/// How long an incomplete line that matches `--until` gets to complete.
const PARTIAL_LINE_GRACE: Duration = Duration::from_millis(500);
/// How often the main loop looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(100);

/// The QEMU binary (`HVRUN_QEMU` overrides it).
pub fn qemu_binary() -> String {
    std::env::var("HVRUN_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// The QEMU arguments for booting `iso` under `accel`.
pub fn qemu_args(cfg: &RunConfig, iso: &Path, accel: Accel) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-machine".into(),
        cfg.machine.clone(),
        "-cpu".into(),
        cfg.cpu.clone(),
        "-m".into(),
        cfg.mem_mib.to_string(),
        "-smp".into(),
        cfg.smp.to_string(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        "stdio".into(),
        "-monitor".into(),
        "none".into(),
        "-no-reboot".into(),
        "-device".into(),
        "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
        "-cdrom".into(),
        iso.display().to_string(),
        "-boot".into(),
        "d".into(),
        "-accel".into(),
        accel.name().into(),
    ];
    a.extend(cfg.extra_qemu_args.iter().cloned());
    a
}

/// A shell-like rendering of a command line, for the log.
pub fn render_command(program: &str, args: &[String]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_-+=,./:@%".contains(c)) {
            s.push_str(a);
        } else {
            s.push_str(&format!("'{}'", a.replace('\'', r"'\''")));
        }
    }
    s
}

/// What the reader threads report.
#[derive(Debug)]
pub enum Event {
    /// A complete, cleaned serial line and when it arrived.
    Line(String, Instant),
    /// The incomplete last serial line so far (a prompt), cleaned.
    Partial(String, Instant),
    /// A line QEMU wrote to stderr.
    Stderr(String),
    /// QEMU closed its stdout (it is exiting); how many serial bytes it sent in all.
    StdoutEof { bytes: u64 },
}

/// Where hvrun's output goes: stdout (flushed per line) and the `--log` file.
pub struct Sink {
    log: Option<File>,
    /// Serial lines are already on stdout (interactive raw passthrough): log them only.
    serial_raw_passthrough: bool,
}

impl Sink {
    pub fn new(log: Option<File>, serial_raw_passthrough: bool) -> Self {
        Sink { log, serial_raw_passthrough }
    }

    fn write_stdout(text: &str) {
        let mut out = io::stdout().lock();
        // A closed stdout (`hvrun | head`) must not stop the run.
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn write_log(&mut self, text: &str) {
        if let Some(f) = &mut self.log {
            let _ = writeln!(f, "{text}");
        }
    }

    /// One line of hvrun's own.
    pub fn note(&mut self, text: &str) {
        Self::write_stdout(text);
        self.write_log(text);
    }

    /// One serial line.
    pub fn serial(&mut self, text: &str) {
        if !self.serial_raw_passthrough {
            Self::write_stdout(text);
        }
        self.write_log(text);
    }

    /// One line of QEMU's stderr.
    pub fn stderr(&mut self, text: &str) {
        let mut err = io::stderr().lock();
        let _ = writeln!(err, "{text}");
        self.write_log(text);
    }
}

/// A running QEMU with its reader threads.
struct Qemu {
    child: Child,
    /// The serial port's input, when the run types into it (`--send`).
    stdin: Option<std::process::ChildStdin>,
    rx: Receiver<Event>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    killed: bool,
}

impl Qemu {
    /// Starts QEMU. `interactive`: stdin from the terminal and serial bytes straight to
    /// stdout; `partials`: report incomplete last lines (for `--until` on a prompt).
    fn spawn(args: &[String], interactive: bool, partials: bool, input: bool) -> Result<Qemu, String> {
        let program = qemu_binary();
        let mut cmd = Command::new(&program);
        let stdin = match (interactive, input) {
            (true, _) => Stdio::inherit(),
            (false, true) => Stdio::piped(),
            (false, false) => Stdio::null(),
        };
        cmd.args(args).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: runs in the child between fork and exec and only makes the
            // async-signal-safe prctl system call: QEMU is killed when hvrun dies, so a
            // killed hvrun never leaves a QEMU behind.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child =
            cmd.spawn().map_err(|e| format!("cannot run {program}: {e} (install qemu-system-x86)"))?;
        let started = Instant::now();
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![
            spawn_stdout_reader(stdout, tx.clone(), interactive, partials),
            spawn_stderr_reader(stderr, tx),
        ];
        Ok(Qemu { child, stdin, rx, readers, started, killed: false })
    }

    fn kill(&mut self) {
        if !self.killed {
            self.killed = true;
            let _ = self.child.kill();
        }
    }

    /// Waits for QEMU and its readers; returns its exit and the stderr lines still queued.
    fn finish(mut self) -> (Option<std::process::ExitStatus>, Vec<String>) {
        let status = self.child.wait().ok();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let rest = self
            .rx
            .try_iter()
            .filter_map(|e| match e {
                Event::Stderr(l) => Some(l),
                _ => None,
            })
            .collect();
        (status, rest)
    }
}

fn spawn_stdout_reader(
    mut stdout: impl Read + Send + 'static,
    tx: Sender<Event>,
    passthrough: bool,
    partials: bool,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut split = LineSplitter::default();
        let mut buf = [0u8; 8192];
        let mut bytes = 0u64;
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            bytes += n as u64;
            if passthrough {
                let mut out = io::stdout().lock();
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
            let now = Instant::now();
            for raw in split.push(&buf[..n]) {
                if tx.send(Event::Line(clean_line(&raw), now)).is_err() {
                    return;
                }
            }
            if partials && !split.pending().is_empty() {
                let _ = tx.send(Event::Partial(clean_line(split.pending()), now));
            }
        }
        if let Some(raw) = split.finish() {
            let _ = tx.send(Event::Line(clean_line(&raw), Instant::now()));
        }
        let _ = tx.send(Event::StdoutEof { bytes });
    })
}

fn spawn_stderr_reader(stderr: impl Read + Send + 'static, tx: Sender<Event>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut r = io::BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match io::BufRead::read_until(&mut r, b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(Event::Stderr(clean_line(&line))).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// A run that ends later unless QEMU exits first.
#[derive(Debug)]
enum Pending {
    /// Xen printed `Panic on CPU`: collecting the reason until the closing `****`.
    XenPanic { reason: Option<String> },
    /// Our hypervisor printed a `PANIC` line.
    OurPanic { line: String },
}

impl Pending {
    fn end(&self) -> End {
        match self {
            Pending::XenPanic { reason } => {
                End::Code { code: 3, detail: Some(format!("Xen: {}", reason.as_deref().unwrap_or("panic"))) }
            }
            Pending::OurPanic { line } => {
                End::Code { code: 3, detail: Some(format!("machine did not exit after '{line}'")) }
            }
        }
    }
}

/// Strips Xen's `(XEN) ` prefix (and a timestamp, if console_timestamps is on).
fn xen_text(line: &str) -> String {
    let t = line.trim_start();
    let t = t.strip_prefix("(XEN)").unwrap_or(t).trim_start();
    let t = if t.starts_with('[') { t.split_once(']').map(|(_, r)| r.trim_start()).unwrap_or(t) } else { t };
    t.to_string()
}

/// The result of one boot.
#[derive(Debug)]
pub struct RunResult {
    pub end: End,
    /// From QEMU's start to the end of the run.
    pub elapsed: Duration,
    pub observed: Observed,
}

/// Boots `iso` under `accel`, streams the console to `sink`, and returns how it ended.
pub fn run(
    cfg: &RunConfig,
    iso: &Path,
    accel: Accel,
    sink: &mut Sink,
    interrupted: &AtomicBool,
) -> RunResult {
    let mut observed = Observed {
        expects: cfg.expects.iter().map(|r| (r.as_str().to_string(), None)).collect(),
        until: cfg.until.as_ref().map(|r| r.as_str().to_string()),
        result_fails: Vec::new(),
    };
    let args = qemu_args(cfg, iso, accel);
    sink.note(&format!("hvrun: {}", render_command(&qemu_binary(), &args)));
    let mut q = match Qemu::spawn(&args, cfg.interactive, cfg.until.is_some(), !cfg.sends.is_empty()) {
        Ok(q) => q,
        Err(e) => {
            return RunResult { end: End::Infra(e), elapsed: Duration::ZERO, observed };
        }
    };
    let start = q.started;
    let deadline = start + cfg.timeout;
    let mut end: Option<End> = None;
    let mut ended_at: Option<Instant> = None;
    let mut pending: Option<(Instant, Pending)> = None;
    // When `--until` first matched the incomplete last line.
    let mut partial_until: Option<Instant> = None;
    let mut grub_errors: Vec<String> = Vec::new();
    let mut stderr_lines: Vec<String> = Vec::new();
    let mut serial_bytes = 0u64;
    let mut sent = vec![false; cfg.sends.len()];

    let mut finish = |q: &mut Qemu, e: End, end: &mut Option<End>, at: Instant| {
        if end.is_none() {
            *end = Some(e);
            ended_at = Some(at);
            q.kill();
        }
    };

    loop {
        let now = Instant::now();
        if end.is_none() {
            if interrupted.load(Ordering::SeqCst) {
                finish(&mut q, End::Interrupted, &mut end, now);
            } else if now >= deadline {
                finish(&mut q, End::Timeout(cfg.timeout), &mut end, now);
            } else if let Some(t) = partial_until.filter(|t| now >= *t + PARTIAL_LINE_GRACE) {
                finish(&mut q, End::Until { at: t - start }, &mut end, now);
            } else if let Some((at, p)) = &pending
                && now >= *at
            {
                let e = p.end();
                finish(&mut q, e, &mut end, now);
            }
        }
        let mut wait = POLL;
        if end.is_none() {
            wait = wait.min(deadline.saturating_duration_since(now));
            if let Some((at, _)) = &pending {
                wait = wait.min(at.saturating_duration_since(now));
            }
            if let Some(t) = partial_until {
                wait = wait.min((t + PARTIAL_LINE_GRACE).saturating_duration_since(now));
            }
        }
        let ev = match q.rx.recv_timeout(wait) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match ev {
            Event::Stderr(l) => {
                sink.stderr(&l);
                stderr_lines.push(l);
            }
            Event::StdoutEof { bytes } => {
                serial_bytes = bytes;
                break;
            }
            Event::Partial(text, t) => {
                // A prompt with no newline yet: give the line a moment to complete, so
                // that it is printed whole, then end on it anyway.
                if end.is_none()
                    && partial_until.is_none()
                    && cfg.until.as_ref().is_some_and(|u| u.is_match(&text))
                {
                    partial_until = Some(t);
                }
            }
            Event::Line(text, t) => {
                sink.serial(&text);
                let at = t - start;
                for (i, send) in cfg.sends.iter().enumerate() {
                    if !sent[i] && send.on.is_match(&text) {
                        sent[i] = true;
                        if let Some(stdin) = q.stdin.as_mut() {
                            use std::io::Write;
                            let _ = stdin.write_all(&send.bytes).and_then(|()| stdin.flush());
                        }
                    }
                }
                for (i, re) in cfg.expects.iter().enumerate() {
                    if observed.expects[i].1.is_none() && re.is_match(&text) {
                        observed.expects[i].1 = Some(at);
                    }
                }
                if outcome::is_result_fail(&text) {
                    observed.result_fails.push(text.clone());
                }
                if end.is_some() {
                    continue;
                }
                if cfg.until.as_ref().is_some_and(|u| u.is_match(&text)) {
                    finish(&mut q, End::Until { at }, &mut end, t);
                    continue;
                }
                if text.starts_with("error: ") && grub_errors.len() < 5 {
                    grub_errors.push(text.clone());
                }
                if text == GRUB_FAILED_MARKER {
                    let why = if grub_errors.is_empty() {
                        "no error shown".to_string()
                    } else {
                        grub_errors.join(" ")
                    };
                    finish(&mut q, End::Infra(format!("GRUB could not boot the image: {why}")), &mut end, t);
                    continue;
                }
                match cfg.kernel {
                    Kernel::Xen => {
                        if let Some((_, Pending::XenPanic { reason })) = &mut pending {
                            if outcome::is_xen_panic_box_line(&text) {
                                let e = Pending::XenPanic { reason: reason.take() }.end();
                                finish(&mut q, e, &mut end, t);
                            } else if reason.is_none() && !xen_text(&text).is_empty() {
                                *reason = Some(xen_text(&text));
                            }
                        } else if let Some(x) = outcome::xen_end_line(&text) {
                            if x.panic {
                                pending = Some((t + XEN_PANIC_GRACE, Pending::XenPanic { reason: None }));
                            } else {
                                let e = End::Code {
                                    code: x.code,
                                    detail: Some(format!("Xen: {}", xen_text(&text))),
                                };
                                finish(&mut q, e, &mut end, t);
                            }
                        }
                    }
                    Kernel::Ours => {
                        if pending.is_none() && outcome::is_our_panic_line(&text) {
                            pending = Some((t + OUR_PANIC_GRACE, Pending::OurPanic { line: text.clone() }));
                        }
                    }
                }
            }
        }
    }

    let (status, rest) = q.finish();
    for l in rest {
        sink.stderr(&l);
        stderr_lines.push(l);
    }
    let exited_at = Instant::now();
    let end = end.unwrap_or_else(|| {
        ended_at = Some(exited_at);
        let Some(status) = status else {
            return End::Infra("lost track of QEMU".into());
        };
        let first_err = stderr_lines.iter().find(|l| !l.trim().is_empty()).cloned().unwrap_or_default();
        match outcome::classify_exit_status(status) {
            // QEMU's own start-up failures exit 1 as well: tell them apart by the
            // missing serial output and the message on stderr.
            QemuExit::DebugExit(0) if serial_bytes == 0 && !first_err.is_empty() => {
                End::Infra(format!("QEMU failed: {first_err}"))
            }
            QemuExit::DebugExit(code) => End::Code { code, detail: None },
            QemuExit::NoCode => match &pending {
                Some((_, p)) => p.end(),
                None => End::Reset,
            },
            QemuExit::Error(c) => End::Infra(format!("QEMU exited with status {c}: {first_err}")),
            QemuExit::Signal(s) => End::Infra(format!("QEMU was killed by signal {s}: {first_err}")),
        }
    });
    let elapsed = ended_at.unwrap_or(exited_at) - start;
    RunResult { end, elapsed, observed }
}

/// Boots `iso` under KVM for at most `limit` and checks that the kernel gets to print
/// something (a first console line that is not GRUB's). Returns when it did.
pub fn probe_kvm(cfg: &RunConfig, iso: &Path, limit: Duration) -> Result<Duration, String> {
    let kvm = Path::new("/dev/kvm");
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(kvm) {
        return Err(format!("cannot open /dev/kvm: {e}"));
    }
    let args = qemu_args(cfg, iso, Accel::Kvm);
    let mut q = Qemu::spawn(&args, false, false, false)?;
    let deadline = q.started + limit;
    let mut stderr_lines = Vec::new();
    let result = loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match q.rx.recv_timeout(wait) {
            Ok(Event::Line(text, t)) => {
                let text = text.trim();
                if text == GRUB_FAILED_MARKER {
                    break Err("GRUB could not boot the image".to_string());
                }
                if !text.is_empty() && !text.starts_with("error: ") {
                    break Ok(t - q.started);
                }
            }
            Ok(Event::Stderr(l)) => stderr_lines.push(l),
            Ok(Event::Partial(..)) => {}
            Ok(Event::StdoutEof { .. }) | Err(RecvTimeoutError::Disconnected) => {
                break Err("QEMU exited".to_string());
            }
            Err(RecvTimeoutError::Timeout) => {
                break Err(format!("no console output within {}", secs(limit)));
            }
        }
    };
    q.kill();
    let (status, rest) = q.finish();
    stderr_lines.extend(rest);
    result.map_err(|why| {
        let mut why = why;
        if let Some(st) = status.filter(|_| why == "QEMU exited") {
            use std::os::unix::process::ExitStatusExt;
            why = match (st.code(), st.signal()) {
                (Some(c), _) => format!("QEMU exited with status {c}"),
                (None, Some(s)) => format!("QEMU died of signal {s}"),
                _ => why,
            };
        }
        match stderr_lines.iter().find(|l| !l.trim().is_empty()) {
            Some(l) => format!("{why}: {l}"),
            None => why,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RunConfig {
        RunConfig {
            kernel: Kernel::Ours,
            accel: Accel::Tcg,
            machine: "pc".into(),
            cpu: "max,-smap".into(),
            smp: 2,
            mem_mib: 128,
            timeout: Duration::from_secs(5),
            expects: vec![],
            until: None,
            expect_exit: 0,
            interactive: false,
            extra_qemu_args: vec!["-icount".into(), "shift=0,sleep=off".into()],
            sends: vec![],
        }
    }

    #[test]
    fn qemu_command_line() {
        let a = qemu_args(&cfg(), Path::new("/tmp/x.iso"), Accel::Tcg).join(" ");
        assert_eq!(
            a,
            "-machine pc -cpu max,-smap -m 128 -smp 2 -display none -serial stdio -monitor none \
             -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -cdrom /tmp/x.iso -boot d \
             -accel tcg -icount shift=0,sleep=off"
        );
        assert!(qemu_args(&cfg(), Path::new("x"), Accel::Kvm).join(" ").contains("-accel kvm"));
    }

    #[test]
    fn rendering_quotes_what_needs_it() {
        assert_eq!(render_command("q", &["-m".into(), "a b".into(), "it's".into()]), r"q -m 'a b' 'it'\''s'");
    }

    #[test]
    fn xen_prefix_is_stripped() {
        assert_eq!(xen_text("(XEN) Could not construct domain 0"), "Could not construct domain 0");
        assert_eq!(xen_text("(XEN) [    2.100] Panic on CPU 0:"), "Panic on CPU 0:");
        assert_eq!(xen_text("plain"), "plain");
    }
}
