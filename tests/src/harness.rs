// SPDX-License-Identifier: MIT OR Apache-2.0
//! The scenario machinery: a [`Scenario`] is a name, hvrun arguments, optional setup
//! (files made in a per-scenario temporary directory) and optional checks over the
//! captured output. [`run_all`] runs them through `build/bin/hvrun`, a few at a time, and
//! prints `PASS`/`FAIL` lines and the closing `N passed, N failed`.
//!
//! Arguments may use `{root}` (the repository), `{build}` (`<root>/build`) and `{tmp}`
//! (the scenario's temporary directory); they are expanded before hvrun runs.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use regex::Regex;

/// What a setup step gets: where things are.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub root: PathBuf,
    pub build: PathBuf,
    /// The scenario's own temporary directory (removed afterwards).
    pub tmp: PathBuf,
}

impl Ctx {
    /// Expands `{root}`, `{build}` and `{tmp}` in `s`.
    pub fn expand(&self, s: &str) -> String {
        s.replace("{root}", &self.root.to_string_lossy())
            .replace("{build}", &self.build.to_string_lossy())
            .replace("{tmp}", &self.tmp.to_string_lossy())
    }
}

/// What a scenario printed, for checks.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// hvrun's stdout: the serial console and hvrun's own `hvrun: ` lines.
    pub lines: Vec<String>,
    /// hvrun's exit status (None if it was killed).
    pub status: Option<i32>,
}

impl RunOutput {
    /// The capture groups of the first line that matches `re` (group 0 is the whole match).
    pub fn captures(&self, re: &str) -> Option<Vec<String>> {
        let re = Regex::new(re).ok()?;
        self.lines.iter().find_map(|l| {
            re.captures(l)
                .map(|c| c.iter().map(|m| m.map_or(String::new(), |m| m.as_str().to_string())).collect())
        })
    }

    /// Group `group` of the first line matching `re`, as a number.
    pub fn number(&self, re: &str, group: usize) -> Result<u64, String> {
        let caps = self.captures(re).ok_or_else(|| format!("no line matches '{re}'"))?;
        let text = caps.get(group).ok_or_else(|| format!("'{re}' has no group {group}"))?;
        text.parse().map_err(|_| format!("'{text}' (group {group} of '{re}') is not a number"))
    }

    /// hvrun's last line (its verdict).
    pub fn last_line(&self) -> &str {
        self.lines.iter().rev().find(|l| !l.trim().is_empty()).map_or("", |l| l.as_str())
    }
}

/// A check over a scenario's output: `Err(reason)` fails the scenario.
pub type Check = Box<dyn Fn(&RunOutput) -> Result<(), String> + Send + Sync>;
/// A setup step, run before hvrun (e.g. writing a module file under `ctx.tmp`).
pub type Setup = Box<dyn Fn(&Ctx) -> Result<()> + Send + Sync>;

/// One scenario. Build it with the methods below; see `scenarios.rs`.
pub struct Scenario {
    pub name: &'static str,
    /// hvrun arguments (templates), options first.
    pub args: Vec<String>,
    /// `PATH[:cmdline]` module specs (templates), in order.
    pub modules: Vec<String>,
    /// hvrun's `--timeout`; the harness kills hvrun [`GUARD_MARGIN`] later.
    pub timeout_s: u64,
    pub setups: Vec<Setup>,
    pub checks: Vec<Check>,
}

/// The default per-scenario timeout.
pub const DEFAULT_TIMEOUT_S: u64 = 90;
/// How long after its own timeout hvrun gets before the harness kills it.
pub const GUARD_MARGIN: Duration = Duration::from_secs(30);

impl Scenario {
    pub fn new(name: &'static str) -> Self {
        Scenario {
            name,
            args: Vec::new(),
            modules: Vec::new(),
            timeout_s: DEFAULT_TIMEOUT_S,
            setups: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Any hvrun arguments, as they are.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Boot Xen 4.17 instead of our hypervisor.
    pub fn xen(self) -> Self {
        self.args(["--xen"])
    }

    pub fn mem(self, mib: u64) -> Self {
        self.args(["--mem".to_string(), mib.to_string()])
    }

    /// Appended to the kernel's default command line.
    pub fn cmdline(self, options: &str) -> Self {
        self.args(["--cmdline", options])
    }

    /// A regex that some console line must match.
    pub fn expect(self, re: &str) -> Self {
        self.args(["--expect", re])
    }

    /// End the run successfully when a line matches.
    pub fn until(self, re: &str) -> Self {
        self.args(["--until", re])
    }

    /// Types `text` into the serial port when a line matches `on` (hvrun --send).
    pub fn send(self, on: &str, text: &str) -> Self {
        self.args(["--send".to_string(), format!("{on}=>{text}")])
    }

    pub fn expect_exit(self, code: u32) -> Self {
        self.args(["--expect-exit".to_string(), code.to_string()])
    }

    pub fn timeout(mut self, seconds: u64) -> Self {
        self.timeout_s = seconds;
        self
    }

    /// A module: `path` (a template) with its command line.
    pub fn module(mut self, path: &str, cmdline: &str) -> Self {
        self.modules.push(if cmdline.is_empty() { path.to_string() } else { format!("{path}:{cmdline}") });
        self
    }

    pub fn setup(mut self, f: impl Fn(&Ctx) -> Result<()> + Send + Sync + 'static) -> Self {
        self.setups.push(Box::new(f));
        self
    }

    pub fn check(mut self, f: impl Fn(&RunOutput) -> Result<(), String> + Send + Sync + 'static) -> Self {
        self.checks.push(Box::new(f));
        self
    }

    /// Whether the scenario boots Xen (or names its own image).
    fn picks_own_kernel(&self) -> bool {
        self.args.iter().any(|a| a == "--xen" || a == "--hypervisor" || a.starts_with("--hypervisor="))
    }

    /// The full hvrun command line for this scenario.
    pub fn hvrun_args(&self, ctx: &Ctx) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        if !self.picks_own_kernel() {
            a.push("--hypervisor".into());
            a.push(ctx.build.join("hypervisor.elf").to_string_lossy().into_owned());
        }
        a.extend(["--timeout".to_string(), self.timeout_s.to_string()]);
        a.extend(self.args.iter().map(|s| ctx.expand(s)));
        if !self.modules.is_empty() {
            a.push("--".into());
            a.extend(self.modules.iter().map(|s| ctx.expand(s)));
        }
        a
    }
}

/// A check that group `group` of the first line matching `re` is a number in `lo..=hi`.
pub fn number_in_range(
    re: &'static str,
    group: usize,
    lo: u64,
    hi: u64,
) -> impl Fn(&RunOutput) -> Result<(), String> {
    move |out| {
        let n = out.number(re, group)?;
        if (lo..=hi).contains(&n) { Ok(()) } else { Err(format!("{n} (from '{re}') is not in {lo}..={hi}")) }
    }
}

/// Bytes from a small xorshift generator: random enough for a garbage module, and the
/// same for the same seed.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The result of one scenario.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub passed: bool,
    pub duration: Duration,
    /// Why it failed.
    pub reason: String,
    /// All it printed (stdout and stderr as they came).
    pub output: Vec<String>,
}

impl Outcome {
    /// `PASS  name  (1.9 s)` or `FAIL  name  (1.9 s): reason`, then on failure the last
    /// `tail` lines of output, indented.
    pub fn report(&self, tail: usize) -> String {
        let secs = format!("{:.1} s", self.duration.as_secs_f64());
        if self.passed {
            return format!("PASS  {}  ({secs})\n", self.name);
        }
        let mut s = format!("FAIL  {}  ({secs}): {}\n", self.name, self.reason);
        let skip = self.output.len().saturating_sub(tail);
        for l in &self.output[skip..] {
            s.push_str("    ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// How to run scenarios.
#[derive(Debug, Clone)]
pub struct Runner {
    pub root: PathBuf,
    pub hvrun: PathBuf,
    pub jobs: usize,
    pub guard_margin: Duration,
    pub tail: usize,
}

impl Runner {
    pub fn build_dir(&self) -> PathBuf {
        self.root.join("build")
    }

    /// Runs one scenario to its outcome.
    pub fn run_one(&self, sc: &Scenario) -> Outcome {
        let t0 = Instant::now();
        let fail = |reason: String, output: Vec<String>| Outcome {
            name: sc.name.to_string(),
            passed: false,
            duration: t0.elapsed(),
            reason,
            output,
        };
        let tmp = match tempfile::Builder::new().prefix(&format!("scenario.{}.", sc.name)).tempdir() {
            Ok(t) => t,
            Err(e) => return fail(format!("cannot create a temporary directory: {e}"), vec![]),
        };
        let ctx = Ctx { root: self.root.clone(), build: self.build_dir(), tmp: tmp.path().to_path_buf() };
        for setup in &sc.setups {
            if let Err(e) = setup(&ctx) {
                return fail(format!("setup: {e:#}"), vec![]);
            }
        }
        let args = sc.hvrun_args(&ctx);
        let limit = Duration::from_secs(sc.timeout_s) + self.guard_margin;
        let run = match run_captured(&self.hvrun, &args, limit) {
            Ok(r) => r,
            Err(e) => {
                return fail(format!("cannot run {}: {e:#}", self.hvrun.display()), vec![]);
            }
        };
        let out = RunOutput { lines: run.stdout, status: run.status.and_then(|s| s.code()) };
        let mut reasons = Vec::new();
        if run.guard_killed {
            reasons.push(format!(
                "killed by the harness after {} s (hvrun did not stop by itself)",
                limit.as_secs()
            ));
        } else if out.status != Some(0) {
            let last = out.last_line();
            reasons.push(if last.is_empty() {
                format!("hvrun exited with {} and printed nothing", describe(run.status))
            } else {
                last.to_string()
            });
        }
        for check in &sc.checks {
            if let Err(why) = check(&out) {
                reasons.push(format!("check: {why}"));
            }
        }
        Outcome {
            name: sc.name.to_string(),
            passed: reasons.is_empty(),
            duration: t0.elapsed(),
            reason: reasons.join("; "),
            output: run.combined,
        }
    }

    /// Runs `scenarios`, `self.jobs` at a time, printing each outcome to `out` as it
    /// comes and then the closing `N passed, N failed` line. Returns the outcomes in
    /// table order.
    pub fn run_all(&self, scenarios: &[&Scenario], out: &mut (dyn Write + Send)) -> Vec<Outcome> {
        let queue: Mutex<VecDeque<(usize, &Scenario)>> =
            Mutex::new(scenarios.iter().copied().enumerate().collect());
        let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; scenarios.len()]);
        let out = Mutex::new(out);
        thread::scope(|s| {
            for _ in 0..self.jobs.max(1) {
                s.spawn(|| {
                    loop {
                        let Some((i, sc)) = queue.lock().expect("queue").pop_front() else {
                            break;
                        };
                        let o = self.run_one(sc);
                        {
                            let mut w = out.lock().expect("output");
                            let _ = w.write_all(o.report(self.tail).as_bytes());
                            let _ = w.flush();
                        }
                        results.lock().expect("results")[i] = Some(o);
                    }
                });
            }
        });
        let results: Vec<Outcome> = results.into_inner().expect("results").into_iter().flatten().collect();
        let passed = results.iter().filter(|o| o.passed).count();
        let w = out.into_inner().expect("output");
        let _ = writeln!(w, "{}", summary_line(passed, results.len() - passed));
        let _ = w.flush();
        results
    }
}

/// The closing line that `make test` and CI read.
pub fn summary_line(passed: usize, failed: usize) -> String {
    format!("{passed} passed, {failed} failed")
}

fn describe(st: Option<ExitStatus>) -> String {
    match st {
        Some(s) => s.to_string(),
        None => "an unknown status".into(),
    }
}

/// What a child process printed and how it ended.
#[derive(Debug, Default)]
pub struct Captured {
    pub stdout: Vec<String>,
    /// stdout and stderr lines interleaved as they arrived.
    pub combined: Vec<String>,
    pub status: Option<ExitStatus>,
    /// It ran past its limit and was killed.
    pub guard_killed: bool,
}

/// Runs `program args`, capturing its output, killing it after `limit`.
pub fn run_captured(program: &Path, args: &[String], limit: Duration) -> Result<Captured> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: runs in the child between fork and exec and only makes the
        // async-signal-safe prctl system call: if the harness dies, hvrun gets SIGTERM and
        // stops its QEMU. (The spawning worker thread lives until the child is reaped.)
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().with_context(|| format!("spawning {}", program.display()))?;
    let combined = Arc::new(Mutex::new(Vec::new()));
    let stdout_lines = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        reader(child.stdout.take().expect("piped"), Arc::clone(&combined), Some(Arc::clone(&stdout_lines))),
        reader(child.stderr.take().expect("piped"), Arc::clone(&combined), None),
    ];
    let deadline = Instant::now() + limit;
    let mut guard_killed = false;
    let status = loop {
        match child.try_wait()? {
            Some(st) => break st,
            None if Instant::now() >= deadline => {
                guard_killed = true;
                let _ = child.kill();
                break child.wait()?;
            }
            None => thread::sleep(Duration::from_millis(50)),
        }
    };
    // Normally the readers see EOF at once; a grandchild that kept the pipes open must
    // not hang the harness, so give them a few seconds and take what they have.
    let readers_deadline = Instant::now() + Duration::from_secs(5);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < readers_deadline {
        thread::sleep(Duration::from_millis(20));
    }
    for r in readers {
        if r.is_finished() && r.join().is_err() {
            bail!("an output reader panicked");
        }
    }
    let take = |v: Arc<Mutex<Vec<String>>>| std::mem::take(&mut *v.lock().expect("lines"));
    Ok(Captured { stdout: take(stdout_lines), combined: take(combined), status: Some(status), guard_killed })
}

fn reader(
    stream: impl Read + Send + 'static,
    combined: Arc<Mutex<Vec<String>>>,
    own: Option<Arc<Mutex<Vec<String>>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                    if let Some(own) = &own {
                        own.lock().expect("lines").push(line.clone());
                    }
                    combined.lock().expect("lines").push(line);
                }
            }
        }
    })
}

/// The repository root: `explicit` if given, else the first directory up from the
/// current one that has a `Makefile` and a workspace `Cargo.toml`, else the one this
/// binary was built from.
pub fn find_root(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let is_root = |d: &Path| {
        d.join("Makefile").is_file()
            && std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|s| s.contains("[workspace]"))
    };
    if let Ok(cwd) = std::env::current_dir()
        && let Some(d) = cwd.ancestors().find(|d| is_root(d))
    {
        return Ok(d.to_path_buf());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf);
    match built_from {
        Some(d) if d.join("Cargo.toml").is_file() => Ok(d),
        _ => bail!("cannot find the repository root (a directory with Makefile and Cargo.toml); use --root"),
    }
}

/// The scenarios whose names match `filter`.
pub fn select<'a>(all: &'a [Scenario], filter: Option<&Regex>) -> Vec<&'a Scenario> {
    all.iter().filter(|s| filter.is_none_or(|f| f.is_match(s.name))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ctx() -> Ctx {
        Ctx { root: "/r".into(), build: "/r/build".into(), tmp: "/t/x".into() }
    }

    #[test]
    fn templates_expand() {
        assert_eq!(ctx().expand("{build}/hypervisor.elf:dom0 {tmp}"), "/r/build/hypervisor.elf:dom0 /t/x");
        assert_eq!(ctx().expand("{root}/Makefile"), "/r/Makefile");
        assert_eq!(ctx().expand("plain"), "plain");
    }

    #[test]
    fn hvrun_arguments() {
        let sc = Scenario::new("x")
            .mem(128)
            .expect("^a b")
            .expect_exit(2)
            .module("{build}/k:dom0 x", "")
            .module("{tmp}/i", "initrd-test");
        assert_eq!(
            sc.hvrun_args(&ctx()),
            [
                "--hypervisor",
                "/r/build/hypervisor.elf",
                "--timeout",
                "90",
                "--mem",
                "128",
                "--expect",
                "^a b",
                "--expect-exit",
                "2",
                "--",
                "/r/build/k:dom0 x",
                "/t/x/i:initrd-test"
            ]
        );
        let xen = Scenario::new("x").xen().until("v").timeout(30);
        assert_eq!(xen.hvrun_args(&ctx()), ["--timeout", "30", "--xen", "--until", "v"]);
    }

    #[test]
    fn output_helpers() {
        let out = RunOutput {
            lines: vec![
                "junk".into(),
                "RAM: 126 MiB usable, 120 MiB free".into(),
                "hvrun: ok (exit code 0) in 1 s".into(),
                "".into(),
            ],
            status: Some(0),
        };
        assert_eq!(out.number(r"RAM: (\d+) MiB usable, (\d+) MiB free", 1), Ok(126));
        assert_eq!(out.number(r"RAM: (\d+) MiB usable, (\d+) MiB free", 2), Ok(120));
        assert!(out.number(r"ROM: (\d+)", 1).unwrap_err().contains("no line matches"));
        assert!(out.number(r"RAM: (\d+)", 3).unwrap_err().contains("no group 3"));
        assert_eq!(out.last_line(), "hvrun: ok (exit code 0) in 1 s");
        assert!(number_in_range(r"RAM: (\d+) MiB usable", 1, 120, 128)(&out).is_ok());
        let err = number_in_range(r"RAM: (\d+) MiB usable", 1, 2030, 2048)(&out).unwrap_err();
        assert_eq!(err, r"126 (from 'RAM: (\d+) MiB usable') is not in 2030..=2048");
    }

    #[test]
    fn report_lines() {
        let mut o = Outcome {
            name: "boot".into(),
            passed: true,
            duration: Duration::from_millis(1940),
            reason: String::new(),
            output: (1..=50).map(|i| format!("line {i}")).collect(),
        };
        assert_eq!(o.report(40), "PASS  boot  (1.9 s)\n");
        o.passed = false;
        o.reason = "hvrun: FAIL: timeout after 60 s".into();
        let r = o.report(40);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[0], "FAIL  boot  (1.9 s): hvrun: FAIL: timeout after 60 s");
        assert_eq!(lines.len(), 41);
        assert_eq!(lines[1], "    line 11");
        assert_eq!(lines[40], "    line 50");
        assert_eq!(summary_line(3, 1), "3 passed, 1 failed");
    }

    #[test]
    fn random_bytes_are_deterministic_and_varied() {
        let a = pseudo_random_bytes(65536, 42);
        assert!(a == pseudo_random_bytes(65536, 42));
        assert!(a != pseudo_random_bytes(65536, 43));
        let distinct: std::collections::HashSet<u8> = a.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    /// The whole machinery against a fake hvrun (a shell script): pass, fail with its
    /// last line, a failing check, a setup error, and the guard kill.
    #[test]
    fn runs_a_fake_hvrun() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("hvrun");
        std::fs::write(
            &fake,
            "#!/bin/sh\n\
             case \"$*\" in\n\
             *hang*) exec sleep 30 ;;\n\
             *bad*) echo 'serial'; echo 'oops' >&2; echo 'hvrun: FAIL: missing expectation x'; exit 1 ;;\n\
             *) echo \"args: $*\"; echo 'RAM: 126 MiB usable, 100 MiB free'; echo 'hvrun: ok (exit code 0: poweroff) in 0.1 s' ;;\n\
             esac\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let runner = Runner {
            root: dir.path().to_path_buf(),
            hvrun: fake,
            jobs: 2,
            guard_margin: Duration::from_millis(200),
            tail: 40,
        };
        let table = [
            Scenario::new("good").mem(128).check(number_in_range(r"RAM: (\d+) MiB usable", 1, 120, 128)),
            Scenario::new("bad").cmdline("bad"),
            Scenario::new("check").check(number_in_range(r"RAM: (\d+) MiB usable", 1, 2030, 2048)),
            Scenario::new("setup").setup(|_| anyhow::bail!("no such file")),
            Scenario::new("hang").cmdline("hang").timeout(0),
            Scenario::new("tmpfile")
                .setup(|c| Ok(std::fs::write(c.tmp.join("m"), b"x")?))
                .module("{tmp}/m", "initrd-test")
                .check(|o| {
                    let args = o.captures(r"^args: .* -- (\S+):initrd-test$").ok_or("no module arg")?;
                    if Path::new(&args[1]).is_file() { Ok(()) } else { Err(format!("{} missing", args[1])) }
                }),
        ];
        let sel: Vec<&Scenario> = table.iter().collect();
        let mut printed: Vec<u8> = Vec::new();
        let outcomes = runner.run_all(&sel, &mut printed);
        let printed = String::from_utf8(printed).unwrap();
        let by = |n: &str| outcomes.iter().find(|o| o.name == n).unwrap().clone();
        assert!(by("good").passed, "{:?}", by("good"));
        assert!(by("tmpfile").passed, "{:?}", by("tmpfile"));
        assert_eq!(by("bad").reason, "hvrun: FAIL: missing expectation x");
        assert!(by("bad").output.contains(&"oops".to_string()));
        assert_eq!(by("check").reason, r"check: 126 (from 'RAM: (\d+) MiB usable') is not in 2030..=2048");
        assert_eq!(by("setup").reason, "setup: no such file");
        assert!(by("hang").reason.starts_with("killed by the harness"), "{}", by("hang").reason);
        assert!(by("hang").duration < Duration::from_secs(10));
        assert_eq!(printed.lines().last(), Some("2 passed, 4 failed"));
        assert!(printed.lines().any(|l| l.starts_with("FAIL  bad  (")));
        assert!(printed.lines().any(|l| l == "    oops"));
    }

    #[test]
    fn selection() {
        let all = vec![
            Scenario::new("boot-banner-128m"),
            Scenario::new("boot-banner-2g"),
            Scenario::new("xen-banner"),
        ];
        let names = |f: Option<&str>| {
            let re = f.map(|f| Regex::new(f).unwrap());
            select(&all, re.as_ref()).iter().map(|s| s.name).collect::<Vec<_>>()
        };
        assert_eq!(names(None).len(), 3);
        assert_eq!(names(Some("^boot-")), ["boot-banner-128m", "boot-banner-2g"]);
        assert_eq!(names(Some("xen|2g")), ["boot-banner-2g", "xen-banner"]);
        assert!(names(Some("nothing")).is_empty());
    }
}
