// SPDX-License-Identifier: MIT OR Apache-2.0
//! `hvbench` (installed as `build/bin/bench` by `make bench`; the cargo name differs
//! from the `bench` guest's so their host builds don't collide): runs the benchmark guests on this hypervisor and on Xen 4.17 in the same
//! QEMU and reports ours/Xen for every figure, in two measures (DESIGN.md 4.5):
//!
//! - **path length**: QEMU with `-icount shift=0,sleep=off`, where the guest's TSC
//!   advances one tick per guest instruction: the guest's `cycles/op` are instructions
//!   per operation, repeatable to the instruction. One run per hypervisor.
//! - **wall time**: plain TCG, the median of `--runs` runs (a sanity check: TCG wall
//!   time mostly measures QEMU).
//!
//! A guest prints `BENCH <name> <value> <unit>` lines (DESIGN.md 4.4) and may print
//! `BENCH-SKIP <name>: why`. A run whose `hvrun` exits non-zero is reported as failed,
//! with hvrun's verdict line, never as a number; its figures are not used.
//!
//! **Between domains** (ours only): when `bench.elf` is among the guests (and without
//! `--no-interdomain`), a second setup, `bench-interdomain`, boots it twice, as dom0
//! with the command line `interdomain` and as domU 1 with `peer` (see the guest's
//! `interdomain.rs`), for the event-channel round trip, the domain switch and the grant
//! copies and maps between domains. Xen 4.17 boots no domU without a toolstack, so this
//! setup runs on ours only: its tables and JSON have no Xen column or ratio (they say
//! so) and give instead the same-domain figure of ours it compares with (from the
//! `bench` setup: `evtchn-rtt` for `evtchn-rtt-interdomain`, `sched-yield` for
//! `domain-switch`, the row without `-interdomain` for the grants); the SVG shows its
//! figures in a panel of their own.
//!
//! Output: a table per setup and measure on stdout, `results.json` (every raw value,
//! medians and ratios), `results.svg` (a bar chart of the ratios, and the ours-only
//! figures) and one console log per run under `logs/`, all in `--out` (default
//! `build/bench`). Exit status: 0 if every run succeeded, 1 if some run failed (the
//! results are written anyway), 2 on a usage or I/O error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    bin_name = "bench",
    about = "Run the benchmark guests on this hypervisor and on Xen 4.17 and report ours/Xen"
)]
struct Cli {
    /// The runner [default: hvrun next to this binary, else build/bin/hvrun].
    #[arg(long, value_name = "PATH")]
    hvrun: Option<PathBuf>,
    /// Where results.json, results.svg and logs/ go.
    #[arg(long, value_name = "DIR", default_value = "build/bench")]
    out: PathBuf,
    /// Wall-time runs per hypervisor (the median is reported).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Timeout of one run, in seconds (hvrun --timeout).
    #[arg(long, value_name = "S", default_value_t = 300)]
    timeout: u32,
    /// Extra options for Xen's command line (hvrun --xen --cmdline).
    #[arg(long, value_name = "OPTIONS", default_value = "dom0_mem=64M")]
    xen_cmdline: String,
    /// Only one measure: "path" or "wall" (default: both).
    #[arg(long, value_name = "MEASURE", value_parser = ["path", "wall"])]
    only: Option<String>,
    /// Leave out the setup between domains (bench.elf as dom0 and as a domU; ours only).
    #[arg(long)]
    no_interdomain: bool,
    /// Benchmark guests [default: build/guests/bench*.elf].
    guests: Vec<PathBuf>,
}

/// How a figure is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Measure {
    /// Short name (`path`, `wall`), used in file names and JSON.
    key: &'static str,
    /// Heading of its table.
    title: &'static str,
    /// Extra QEMU arguments, each passed as `--qemu-arg=ARG`.
    qemu_args: &'static [&'static str],
    /// What the guest's `cycles` are under this measure.
    unit_note: &'static str,
}

const PATH: Measure = Measure {
    key: "path",
    title: "path length (QEMU -icount shift=0,sleep=off)",
    qemu_args: &["-icount", "shift=0,sleep=off"],
    unit_note: "guest instructions per operation, or per KiB copied for cycles/KiB \
                (1 TSC tick = 1 instruction)",
};

const WALL: Measure = Measure {
    key: "wall",
    title: "wall time (plain TCG)",
    qemu_args: &[],
    unit_note: "TSC cycles per operation, or per KiB copied for cycles/KiB, under TCG \
                (QEMU's virtual TSC, host time)",
};

/// Which hypervisor a run boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Hv {
    Ours,
    Xen,
}

impl Hv {
    fn key(self) -> &'static str {
        match self {
            Hv::Ours => "ours",
            Hv::Xen => "xen",
        }
    }
}

/// What `make bench` boots for one set of figures: hvrun's modules and the
/// hypervisors that can run them.
#[derive(Clone, Debug, PartialEq)]
struct Setup {
    /// Its name in tables, log file names and the JSON.
    name: String,
    /// hvrun's module arguments (`PATH[:cmdline]`), dom0 first.
    modules: Vec<String>,
    /// Why Xen 4.17 does not run it (`None`: both hypervisors do).
    ours_only: Option<&'static str>,
    /// What the figures mean, beyond the guest's own lines (printed and in the JSON).
    notes: &'static [&'static str],
}

/// The dom0 command line of the interdomain setup, and the domU's module line.
const INTERDOMAIN_DOM0: &str = "interdomain";
const INTERDOMAIN_DOMU: &str = "domu name=bench-peer mem=16 -- peer";

const INTERDOMAIN_WHY: &str = "Xen 4.17 boots no domU without a toolstack: ours only, no Xen column or ratio";

const INTERDOMAIN_NOTES: &[&str] = &[
    "two copies of the bench guest on one CPU: dom0 (`interdomain`) and domU 1 (`peer`, 16 MiB); the TSC \
     counts the instructions of both domains and of the hypervisor",
    "evtchn-rtt-interdomain: dom0 sends on its interdomain port, the domU wakes from SCHEDOP_poll on its end \
     and sends back, dom0 waits for the answer (pending bit, else SCHEDOP_poll; events masked, no upcalls): \
     per round trip, two domain switches; `same domain` is evtchn-rtt (two sends and two upcalls in one \
     domain, no switch)",
    "domain-switch: both domains runnable, passing a turn in a granted page and each calling SCHEDOP_yield \
     after its move: half a round, median over the 10-round batches in which no yield of either side came \
     back to its own domain (exactly two switches per round there; the guest prints how many counted); \
     `same domain` is sched-yield (the same hypercall with nothing else to run)",
    "gnttab-*-interdomain: as the same-domain rows, on grants the domU made out to dom0 (copies from \
     source.domid = 1 into dom0's frames; maps with GNTMAP_host_map)",
];

impl Setup {
    /// A benchmark guest alone as dom0, on both hypervisors.
    fn guest(path: &Path) -> Setup {
        let name = path.file_stem().map_or_else(|| "guest".into(), |s| s.to_string_lossy().into_owned());
        Setup { name, modules: vec![path.display().to_string()], ours_only: None, notes: &[] }
    }

    /// `bench.elf` as dom0 and as domU 1 (ours only).
    fn interdomain(bench: &Path) -> Setup {
        let path = bench.display();
        Setup {
            name: "bench-interdomain".into(),
            modules: vec![format!("{path}:{INTERDOMAIN_DOM0}"), format!("{path}:{INTERDOMAIN_DOMU}")],
            ours_only: Some(INTERDOMAIN_WHY),
            notes: INTERDOMAIN_NOTES,
        }
    }

    fn hypervisors(&self) -> &'static [Hv] {
        if self.ours_only.is_some() { &[Hv::Ours] } else { &[Hv::Ours, Hv::Xen] }
    }
}

/// The same-domain figure an interdomain one compares with.
fn same_domain_name(name: &str) -> Option<String> {
    match name {
        "domain-switch" => Some("sched-yield".into()),
        _ if name.contains("-interdomain") => Some(name.replacen("-interdomain", "", 1)),
        _ => None,
    }
}

/// What one `BENCH` line says.
#[derive(Clone, Debug, PartialEq)]
struct Figure {
    value: f64,
    unit: String,
}

/// The `BENCH` and `BENCH-SKIP` lines of one console log.
#[derive(Clone, Debug, Default, PartialEq)]
struct Parsed {
    /// Benchmarks in the order they were printed, with their figures.
    figures: Vec<(String, Figure)>,
    /// Benchmarks the guest skipped, with why.
    skipped: Vec<(String, String)>,
}

/// Finds `BENCH <name> <value> <unit>` and `BENCH-SKIP <name>: why` lines anywhere in
/// a line (a hypervisor may prefix guest output, e.g. `(d0) `).
fn parse_console(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(i) = line.find("BENCH-SKIP ") {
            let rest = &line[i + "BENCH-SKIP ".len()..];
            let (name, why) = rest.split_once(':').unwrap_or((rest, ""));
            out.skipped.push((name.trim().to_string(), why.trim().to_string()));
        } else if let Some(i) = line.find("BENCH ") {
            let mut words = line[i + "BENCH ".len()..].split_whitespace();
            let (Some(name), Some(value), Some(unit), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if !value.is_finite() {
                continue;
            }
            let figure = Figure { value, unit: unit.to_string() };
            match out.figures.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = figure,
                None => out.figures.push((name.to_string(), figure)),
            }
        }
    }
    out
}

/// The median (the mean of the two middle values for an even count); `None` if empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// One hvrun invocation.
#[derive(Clone, Debug)]
struct Run {
    hv: Hv,
    index: u32,
    /// hvrun's exit code (`None`: killed by a signal or not started).
    exit_code: Option<i32>,
    /// hvrun's verdict (its last `hvrun: ` line) or why it did not start.
    verdict: String,
    log: PathBuf,
    seconds: f64,
    parsed: Parsed,
}

impl Run {
    fn ok(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// `ours run 2: hvrun exit 2: hvrun: timeout ...`.
    fn failure(&self) -> String {
        let code = self.exit_code.map_or_else(|| "no exit code".to_string(), |c| format!("exit {c}"));
        format!(
            "{} run {}: hvrun {code}: {} (log {})",
            self.hv.key(),
            self.index,
            self.verdict,
            self.log.display()
        )
    }
}

/// Runs `hvrun` once and collects its console output.
fn run_once(
    cli: &Cli,
    hvrun: &Path,
    setup: &Setup,
    measure: Measure,
    hv: Hv,
    index: u32,
    logs: &Path,
) -> Result<Run> {
    let stem = &setup.name;
    let log = logs.join(format!("{stem}-{}-{}-{index}.log", measure.key, hv.key()));
    let mut cmd = Command::new(hvrun);
    cmd.arg("--timeout").arg(cli.timeout.to_string());
    if hv == Hv::Xen {
        cmd.arg("--xen").arg("--cmdline").arg(&cli.xen_cmdline);
    }
    for a in measure.qemu_args {
        cmd.arg(format!("--qemu-arg={a}"));
    }
    cmd.args(&setup.modules);
    eprintln!("bench: {} {} {} run {index}: {}", stem, measure.key, hv.key(), shell_words(&cmd));
    let started = Instant::now();
    let output = cmd.output();
    let seconds = started.elapsed().as_secs_f64();
    let (exit_code, text) = match output {
        Ok(o) => {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            (o.status.code(), text)
        }
        Err(e) => (None, format!("hvrun: cannot run {}: {e}\n", hvrun.display())),
    };
    std::fs::write(&log, &text).with_context(|| format!("writing {}", log.display()))?;
    let verdict = text
        .lines()
        .rev()
        .find(|l| l.starts_with("hvrun: "))
        .unwrap_or("hvrun: (no verdict line)")
        .trim()
        .to_string();
    let run = Run { hv, index, exit_code, verdict, log, seconds, parsed: parse_console(&text) };
    if run.ok() {
        eprintln!("bench:   ok in {seconds:.1} s, {} figures", run.parsed.figures.len());
    } else {
        eprintln!("bench:   FAILED: {}", run.failure());
    }
    Ok(run)
}

/// The command as a shell would take it (for the progress lines).
fn shell_words(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a table cell holds for one hypervisor.
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    /// The median over the runs, all of which succeeded and printed the figure.
    Value { median: f64, unit: String },
    /// Some run failed: no number.
    Failed,
    /// The guest said it skipped it.
    Skipped(String),
    /// The runs succeeded but did not print it.
    Missing,
    /// This hypervisor does not run the setup, and why.
    NotRun(String),
}

impl Cell {
    fn value(&self) -> Option<f64> {
        match self {
            Cell::Value { median, .. } => Some(*median),
            _ => None,
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Value { median, .. } => format_value(*median),
            Cell::Failed => "FAILED".into(),
            Cell::Skipped(_) => "skipped".into(),
            Cell::Missing => "missing".into(),
            Cell::NotRun(_) => "n/a".into(),
        }
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.1}") }
}

/// The cell of benchmark `name` from `runs` (all of one hypervisor).
fn cell(runs: &[Run], name: &str) -> Cell {
    if runs.is_empty() || runs.iter().any(|r| !r.ok()) {
        return Cell::Failed;
    }
    let mut values = Vec::new();
    let mut unit = String::new();
    for r in runs {
        match r.parsed.figures.iter().find(|(n, _)| n == name) {
            Some((_, f)) => {
                values.push(f.value);
                unit.clone_from(&f.unit);
            }
            None => {
                return match r.parsed.skipped.iter().find(|(n, _)| n == name) {
                    Some((_, why)) => Cell::Skipped(why.clone()),
                    None => Cell::Missing,
                };
            }
        }
    }
    match median(&values) {
        Some(median) => Cell::Value { median, unit },
        None => Cell::Missing,
    }
}

/// One benchmark under one measure.
#[derive(Clone, Debug)]
struct Row {
    name: String,
    ours: Cell,
    xen: Cell,
}

impl Row {
    /// The guest's unit for this figure (`cycles/op`, `cycles/KiB`), from either side.
    fn unit(&self) -> &str {
        match (&self.ours, &self.xen) {
            (Cell::Value { unit, .. }, _) | (_, Cell::Value { unit, .. }) => unit,
            _ => "-",
        }
    }

    fn ratio(&self) -> Option<f64> {
        match (self.ours.value(), self.xen.value()) {
            (Some(o), Some(x)) if x != 0.0 => Some(o / x),
            _ => None,
        }
    }
}

/// Every run of one guest under one measure, and the rows made of them.
struct MeasureResult {
    measure: Measure,
    runs: BTreeMap<Hv, Vec<Run>>,
    rows: Vec<Row>,
}

impl MeasureResult {
    /// `not_run`: the hypervisors that do not run the setup, with why.
    fn new(measure: Measure, runs: BTreeMap<Hv, Vec<Run>>, not_run: &[(Hv, &str)]) -> Self {
        // Benchmark names in the order the guest printed them, from any run.
        let mut names: Vec<String> = Vec::new();
        for r in runs.values().flatten() {
            for n in r.parsed.figures.iter().map(|(n, _)| n).chain(r.parsed.skipped.iter().map(|(n, _)| n)) {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        let empty = Vec::new();
        let cell_of = |hv: Hv, name: &str| match not_run.iter().find(|(h, _)| *h == hv) {
            Some((_, why)) => Cell::NotRun(why.to_string()),
            None => cell(runs.get(&hv).unwrap_or(&empty), name),
        };
        let rows = names
            .into_iter()
            .map(|name| Row { ours: cell_of(Hv::Ours, &name), xen: cell_of(Hv::Xen, &name), name })
            .collect();
        Self { measure, runs, rows }
    }

    fn failures(&self) -> Vec<String> {
        self.runs.values().flatten().filter(|r| !r.ok()).map(Run::failure).collect()
    }
}

struct SetupResult {
    setup: Setup,
    measures: Vec<MeasureResult>,
}

impl SetupResult {
    fn ours_only(&self) -> bool {
        self.setup.ours_only.is_some()
    }
}

/// Ours' figure for benchmark `name` under `measure` in a two-hypervisor setup: what an
/// ours-only figure is compared with.
fn same_domain(results: &[SetupResult], measure: Measure, name: &str) -> Option<(String, f64)> {
    let counterpart = same_domain_name(name)?;
    results
        .iter()
        .filter(|g| !g.ours_only())
        .flat_map(|g| &g.measures)
        .filter(|m| m.measure == measure)
        .find_map(|m| {
            let r = m.rows.iter().find(|r| r.name == counterpart)?;
            Some((counterpart.clone(), r.ours.value()?))
        })
}

/// The table of one measure, with failure and skip notes below it. An ours-only setup
/// has no Xen column; it shows the same-domain figure of ours it compares with.
fn table(g: &SetupResult, m: &MeasureResult, runs_per_hv: u32, all: &[SetupResult]) -> String {
    let mut s = String::new();
    let runs = if runs_per_hv == 1 { "1 run".to_string() } else { format!("median of {runs_per_hv} runs") };
    let modules = g.setup.modules.join(" ");
    let _ = writeln!(
        s,
        "\n== {} ({modules}): {} ({runs}; {})",
        g.setup.name, m.measure.title, m.measure.unit_note
    );
    let width = m.rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    match g.setup.ours_only {
        None => {
            let _ = writeln!(s, "{:<width$}  {:>10}  {:>10}  {:>9}  unit", "name", "ours", "xen", "ours/xen");
            for r in &m.rows {
                let ratio = r.ratio().map_or_else(|| "-".to_string(), |x| format!("{x:.3}"));
                let (ours, xen, unit) = (r.ours.show(), r.xen.show(), r.unit());
                let _ = writeln!(s, "{:<width$}  {ours:>10}  {xen:>10}  {ratio:>9}  {unit}", r.name);
            }
        }
        Some(why) => {
            let _ = writeln!(s, "({why})");
            let _ = writeln!(
                s,
                "{:<width$}  {:>10}  {:<10}  {:<24}  {:>10}  {:>7}",
                "name", "ours", "unit", "same domain (ours)", "", "ratio"
            );
            for r in &m.rows {
                let (ours, unit) = (r.ours.show(), r.unit());
                let (other, value, ratio) = match same_domain(all, m.measure, &r.name) {
                    Some((n, v)) => {
                        let ratio = r.ours.value().map_or_else(|| "-".into(), |o| format!("{:.3}", o / v));
                        (n, format_value(v), ratio)
                    }
                    None => ("-".into(), String::new(), "-".into()),
                };
                let _ = writeln!(
                    s,
                    "{:<width$}  {ours:>10}  {unit:<10}  {other:<24}  {value:>10}  {ratio:>7}",
                    r.name
                );
            }
        }
    }
    if m.rows.is_empty() {
        let _ = writeln!(s, "(no BENCH lines)");
    }
    for f in m.failures() {
        let _ = writeln!(s, "  failed run: {f}");
    }
    for r in &m.rows {
        for (hv, c) in [("ours", &r.ours), ("xen", &r.xen)] {
            if let Cell::Skipped(why) = c {
                let _ = writeln!(s, "  {} skipped on {hv}: {why}", r.name);
            }
        }
    }
    for n in g.setup.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    s
}

// ---- JSON, by hand (no serde for one file) ----

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

fn json_cell(c: &Cell) -> String {
    match c {
        Cell::Value { median, unit } => format!(
            "{{\"status\": \"ok\", \"median\": {}, \"unit\": {}}}",
            json_num(Some(*median)),
            json_str(unit)
        ),
        Cell::Failed => "{\"status\": \"failed\"}".into(),
        Cell::Skipped(why) => format!("{{\"status\": \"skipped\", \"why\": {}}}", json_str(why)),
        Cell::Missing => "{\"status\": \"missing\"}".into(),
        Cell::NotRun(why) => format!("{{\"status\": \"not-run\", \"why\": {}}}", json_str(why)),
    }
}

fn json_run(r: &Run) -> String {
    let figures = r
        .parsed
        .figures
        .iter()
        .map(|(n, f)| {
            format!(
                "{}: {{\"value\": {}, \"unit\": {}}}",
                json_str(n),
                json_num(Some(f.value)),
                json_str(&f.unit)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let skipped = r
        .parsed
        .skipped
        .iter()
        .map(|(n, why)| format!("{}: {}", json_str(n), json_str(why)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{{\"run\": {}, \"ok\": {}, \"exit_code\": {}, \"verdict\": {}, \"seconds\": {:.3}, \
         \"log\": {}, \"figures\": {{{figures}}}, \"skipped\": {{{skipped}}}}}",
        r.index,
        r.ok(),
        r.exit_code.map_or_else(|| "null".into(), |c| c.to_string()),
        json_str(&r.verdict),
        r.seconds,
        json_str(&r.log.display().to_string()),
    )
}

/// The JSON of a list of strings.
fn json_strs<S: AsRef<str>>(v: &[S]) -> String {
    let items = v.iter().map(|x| json_str(x.as_ref())).collect::<Vec<_>>().join(", ");
    format!("[{items}]")
}

fn results_json(results: &[SetupResult], cli: &Cli, hvrun: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{{");
    let _ = writeln!(s, "  \"hvrun\": {},", json_str(&hvrun.display().to_string()));
    let _ = writeln!(s, "  \"xen_cmdline\": {},", json_str(&cli.xen_cmdline));
    let _ = writeln!(s, "  \"wall_runs\": {},", cli.runs);
    let _ = writeln!(s, "  \"guests\": [");
    for (gi, g) in results.iter().enumerate() {
        let _ = writeln!(s, "    {{");
        // "guest": dom0's kernel, as before setups had more than one module.
        let dom0 = g.setup.modules.first().map_or("", |m| m.split_once(':').map_or(m.as_str(), |(p, _)| p));
        let _ = writeln!(s, "      \"guest\": {},", json_str(dom0));
        let _ = writeln!(s, "      \"setup\": {},", json_str(&g.setup.name));
        let _ = writeln!(s, "      \"modules\": {},", json_strs(&g.setup.modules));
        let _ = writeln!(s, "      \"ours_only\": {},", g.ours_only());
        let why = g.setup.ours_only.map_or_else(|| "null".into(), json_str);
        let _ = writeln!(s, "      \"xen_not_run\": {why},");
        let _ = writeln!(s, "      \"notes\": {},", json_strs(g.setup.notes));
        let _ = writeln!(s, "      \"measures\": [");
        for (mi, m) in g.measures.iter().enumerate() {
            let qemu_args = m.measure.qemu_args.iter().map(|a| json_str(a)).collect::<Vec<_>>().join(", ");
            let _ = writeln!(s, "        {{");
            let _ = writeln!(s, "          \"measure\": {},", json_str(m.measure.key));
            let _ = writeln!(s, "          \"title\": {},", json_str(m.measure.title));
            let _ = writeln!(s, "          \"meaning\": {},", json_str(m.measure.unit_note));
            let _ = writeln!(s, "          \"qemu_args\": [{qemu_args}],");
            let _ = writeln!(s, "          \"benchmarks\": [");
            for (ri, r) in m.rows.iter().enumerate() {
                let comma = if ri + 1 < m.rows.len() { "," } else { "" };
                // Ours-only rows: the same-domain figure of ours they compare with.
                let same = match same_domain(results, m.measure, &r.name) {
                    Some((n, v)) if g.ours_only() => format!(
                        ", \"same_domain\": {{\"name\": {}, \"ours\": {}, \"ratio\": {}}}",
                        json_str(&n),
                        json_num(Some(v)),
                        json_num(r.ours.value().map(|o| o / v))
                    ),
                    _ => String::new(),
                };
                let _ = writeln!(
                    s,
                    "            {{\"name\": {}, \"ours\": {}, \"xen\": {}, \"ratio\": {}{same}}}{comma}",
                    json_str(&r.name),
                    json_cell(&r.ours),
                    json_cell(&r.xen),
                    json_num(r.ratio())
                );
            }
            let _ = writeln!(s, "          ],");
            let _ = writeln!(s, "          \"runs\": {{");
            let hvs: Vec<_> = m.runs.iter().collect();
            for (hi, (hv, runs)) in hvs.iter().enumerate() {
                let list = runs.iter().map(json_run).collect::<Vec<_>>().join(",\n              ");
                let comma = if hi + 1 < hvs.len() { "," } else { "" };
                let _ = writeln!(
                    s,
                    "            {}: [\n              {list}\n            ]{comma}",
                    json_str(hv.key())
                );
            }
            let _ = writeln!(s, "          }}");
            let comma = if mi + 1 < g.measures.len() { "," } else { "" };
            let _ = writeln!(s, "        }}{comma}");
        }
        let _ = writeln!(s, "      ]");
        let comma = if gi + 1 < results.len() { "," } else { "" };
        let _ = writeln!(s, "    }}{comma}");
    }
    let _ = writeln!(s, "  ]");
    let _ = writeln!(s, "}}");
    s
}

// ---- SVG bar chart of the ratios, by hand ----

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Bars: one group per (setup, benchmark) of the setups both hypervisors run, one bar
/// per measure, height = ours/xen; a dashed line at 1.0 (parity). A missing ratio is
/// drawn as a grey "n/a" label. Below, the ours-only setups' figures (no ratio to draw)
/// in a panel of their own: see [`ours_only_panel`].
fn results_svg(results: &[SetupResult]) -> String {
    const COLORS: [&str; 2] = ["#4878d0", "#ee854a"];
    // Groups in order: (label, [ratio per measure]).
    let mut measures: Vec<Measure> = Vec::new();
    for g in results {
        for m in &g.measures {
            if !measures.contains(&m.measure) {
                measures.push(m.measure);
            }
        }
    }
    let mut groups: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    let compared: Vec<&SetupResult> = results.iter().filter(|g| !g.ours_only()).collect();
    for g in &compared {
        let stem = &g.setup.name;
        for m in &g.measures {
            let mi = measures.iter().position(|x| *x == m.measure).unwrap_or(0);
            for r in &m.rows {
                let label = if compared.len() > 1 { format!("{stem}/{}", r.name) } else { r.name.clone() };
                let gi = match groups.iter().position(|(l, _)| *l == label) {
                    Some(i) => i,
                    None => {
                        groups.push((label, vec![None; measures.len()]));
                        groups.len() - 1
                    }
                };
                groups[gi].1[mi] = r.ratio();
            }
        }
    }
    let max = groups.iter().flat_map(|(_, v)| v.iter().flatten()).fold(1.0f64, |a, &b| a.max(b));
    let top = (max * 1.15).max(1.25);
    // The legend is one line per measure below the title.
    let plot_top = 44.0 + 16.0 * measures.len() as f64;
    let (left, right, plot_h, bottom) = (60.0, 20.0, 300.0, 90.0);
    let bar_w = 26.0;
    let group_w = bar_w * measures.len().max(1) as f64 + 30.0;
    let width = (left + right + group_w * groups.len().max(1) as f64).max(420.0);
    let chart_h = plot_top + plot_h + bottom;
    let (panel, panel_w, panel_h) = ours_only_panel(results, &measures, chart_h, left, &COLORS);
    let (svg_w, height) = (width.max(panel_w), chart_h + panel_h);
    let y = |v: f64| plot_top + plot_h * (1.0 - v / top);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{svg_w:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {svg_w:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">ours / Xen 4.17 \
         (lower is better; 1.0 = parity)</text>"
    );
    // Legend.
    for (i, m) in measures.iter().enumerate() {
        let ly = 30.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{ly}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            COLORS[i % COLORS.len()],
            left + 16.0,
            ly + 10.0,
            xml_escape(m.title)
        );
    }
    // Axis and grid.
    let step = if top > 4.0 { 1.0 } else { 0.25 };
    let mut t = 0.0;
    while t <= top + 1e-9 {
        let yy = y(t);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{t:.2}</text>",
            width - right,
            left - 6.0,
            yy + 4.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{plot_top}\" x2=\"{left}\" y2=\"{:.1}\" stroke=\"black\"/>\
         <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
        plot_top + plot_h,
        plot_top + plot_h,
        width - right,
        plot_top + plot_h
    );
    // Bars.
    for (g, (label, ratios)) in groups.iter().enumerate() {
        let gx = left + 15.0 + g as f64 * group_w;
        for (i, r) in ratios.iter().enumerate() {
            let x = gx + i as f64 * bar_w;
            match r {
                Some(v) => {
                    let yy = y(*v);
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x:.1}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                         fill=\"{}\"><title>{}: {} = {v:.3}</title></rect>\
                         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{v:.2}</text>",
                        bar_w - 4.0,
                        plot_top + plot_h - yy,
                        COLORS[i % COLORS.len()],
                        xml_escape(label),
                        measures[i].key,
                        x + (bar_w - 4.0) / 2.0,
                        yy - 3.0
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\" \
                         fill=\"#888\">n/a</text>",
                        x + (bar_w - 4.0) / 2.0,
                        plot_top + plot_h - 4.0
                    );
                }
            }
        }
        let cx = gx + bar_w * ratios.len() as f64 / 2.0;
        let ly = plot_top + plot_h + 14.0;
        let _ = writeln!(
            s,
            "<text x=\"{cx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" \
             transform=\"rotate(-30 {cx:.1} {ly:.1})\">{}</text>",
            xml_escape(label)
        );
    }
    // Parity.
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#c00\" \
         stroke-dasharray=\"6 4\"/>",
        y(1.0),
        width - right,
        y(1.0)
    );
    s.push_str(&panel);
    s.push_str("</svg>\n");
    s
}

/// The ours-only setups' figures, from `top` down: one line per benchmark, one bar per
/// measure (its colour in `colors`), each measure scaled to its own largest figure
/// here, with the value and unit written after the bar. Returns the SVG elements, the
/// width they need and their height (0 without ours-only figures).
fn ours_only_panel(
    results: &[SetupResult],
    measures: &[Measure],
    top: f64,
    left: f64,
    colors: &[&str],
) -> (String, f64, f64) {
    let mut lines: Vec<(String, Vec<Option<Figure>>)> = Vec::new();
    let mut why = None;
    let ours_only: Vec<&SetupResult> = results.iter().filter(|g| g.ours_only()).collect();
    for g in &ours_only {
        why = why.or(g.setup.ours_only);
        for m in &g.measures {
            let mi = measures.iter().position(|x| *x == m.measure).unwrap_or(0);
            for r in &m.rows {
                let label =
                    if ours_only.len() > 1 { format!("{}/{}", g.setup.name, r.name) } else { r.name.clone() };
                let li = match lines.iter().position(|(l, _)| *l == label) {
                    Some(i) => i,
                    None => {
                        lines.push((label, vec![None; measures.len()]));
                        lines.len() - 1
                    }
                };
                lines[li].1[mi] = r.ours.value().map(|value| Figure { value, unit: r.unit().to_string() });
            }
        }
    }
    let Some(why) = why else { return (String::new(), 0.0, 0.0) };
    // Per measure, the largest figure (per op and per KiB alike: the bars only show
    // proportions within a measure; the numbers are written out).
    let max: Vec<f64> = (0..measures.len())
        .map(|i| lines.iter().filter_map(|(_, v)| v[i].as_ref().map(|f| f.value)).fold(0.0, f64::max))
        .collect();
    let (label_w, bar_max, bar_h) = (330.0, 300.0, 11.0);
    let line_h = (bar_h + 2.0) * measures.len().max(1) as f64 + 8.0;
    let head = 50.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{:.1}\" font-size=\"14\" font-weight=\"bold\">ours only, between domains \
         (lower is better)</text>\n<text x=\"{left}\" y=\"{:.1}\">{}; bars scaled to the largest figure \
         of each measure</text>",
        top + 20.0,
        top + 38.0,
        xml_escape(why)
    );
    for (li, (label, values)) in lines.iter().enumerate() {
        let ly = top + head + li as f64 * line_h;
        let _ = writeln!(
            s,
            "<text x=\"{left}\" y=\"{:.1}\">{}</text>",
            ly + bar_h * measures.len() as f64 / 2.0 + 4.0,
            xml_escape(label)
        );
        for (mi, v) in values.iter().enumerate() {
            let (x, y) = (left + label_w, ly + mi as f64 * (bar_h + 2.0));
            match v {
                Some(Figure { value: v, unit }) => {
                    let w = if max[mi] > 0.0 { (v / max[mi] * bar_max).max(1.0) } else { 1.0 };
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bar_h}\" fill=\"{}\">\
                         <title>{}: {} = {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{} \
                         {} ({})</text>",
                        colors[mi % colors.len()],
                        xml_escape(label),
                        measures[mi].key,
                        format_value(*v),
                        x + w + 4.0,
                        y + bar_h - 1.0,
                        format_value(*v),
                        xml_escape(unit),
                        measures[mi].key
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#888\">n/a ({})</text>",
                        y + bar_h - 1.0,
                        measures[mi].key
                    );
                }
            }
        }
    }
    let width = left + label_w + bar_max + 190.0;
    (s, width, head + line_h * lines.len() as f64 + 20.0)
}

/// hvrun next to this binary (build/bin or target/release), else build/bin/hvrun.
fn default_hvrun() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let sibling = dir.join("hvrun");
        if sibling.is_file() {
            return sibling;
        }
    }
    PathBuf::from("build/bin/hvrun")
}

/// build/guests/bench*.elf, sorted.
fn default_guests() -> Result<Vec<PathBuf>> {
    let dir = Path::new("build/guests");
    let mut guests: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {} (run `make` first)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("bench") && n.ends_with(".elf"))
        })
        .collect();
    guests.sort();
    if guests.is_empty() {
        bail!("no benchmark guests (build/guests/bench*.elf): run `make` first");
    }
    Ok(guests)
}

/// Every guest alone on both hypervisors; then, if `interdomain` and `bench.elf` is one
/// of them, the interdomain setup (ours only).
fn setups(guests: &[PathBuf], interdomain: bool) -> Vec<Setup> {
    let mut setups: Vec<Setup> = guests.iter().map(|g| Setup::guest(g)).collect();
    let bench = guests.iter().find(|g| g.file_name().is_some_and(|n| n == "bench.elf"));
    if let (true, Some(bench)) = (interdomain, bench) {
        setups.push(Setup::interdomain(bench));
    }
    setups
}

fn run(cli: &Cli) -> Result<bool> {
    let hvrun = cli.hvrun.clone().unwrap_or_else(default_hvrun);
    let guests = if cli.guests.is_empty() { default_guests()? } else { cli.guests.clone() };
    for g in &guests {
        if !g.is_file() {
            bail!("no such guest: {}", g.display());
        }
    }
    let logs = cli.out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let measures: Vec<Measure> = match cli.only.as_deref() {
        Some("path") => vec![PATH],
        Some("wall") => vec![WALL],
        _ => vec![PATH, WALL],
    };

    let setups = setups(&guests, !cli.no_interdomain);

    let mut results = Vec::new();
    for setup in setups {
        let not_run: Vec<(Hv, &str)> = setup.ours_only.map(|why| (Hv::Xen, why)).into_iter().collect();
        let mut per_measure = Vec::new();
        for &measure in &measures {
            // -icount runs are deterministic: one each is enough.
            let n = if measure == PATH { 1 } else { cli.runs };
            let mut runs: BTreeMap<Hv, Vec<Run>> = BTreeMap::new();
            // Interleave the hypervisors so that drift of the host hits both alike.
            for i in 1..=n {
                for &hv in setup.hypervisors() {
                    let r = run_once(cli, &hvrun, &setup, measure, hv, i, &logs)?;
                    runs.entry(hv).or_default().push(r);
                }
            }
            per_measure.push(MeasureResult::new(measure, runs, &not_run));
        }
        results.push(SetupResult { setup, measures: per_measure });
    }

    let mut all_ok = true;
    for g in &results {
        for m in &g.measures {
            let n = if m.measure == PATH { 1 } else { cli.runs };
            print!("{}", table(g, m, n, &results));
            all_ok &= m.failures().is_empty();
        }
    }
    let json = cli.out.join("results.json");
    std::fs::write(&json, results_json(&results, cli, &hvrun))
        .with_context(|| format!("writing {}", json.display()))?;
    let svg = cli.out.join("results.svg");
    std::fs::write(&svg, results_svg(&results)).with_context(|| format!("writing {}", svg.display()))?;
    println!("\nbench: wrote {} and {} (console logs in {})", json.display(), svg.display(), logs.display());
    if !all_ok {
        println!("bench: some runs FAILED (see above); their figures are not reported");
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_run(hv: Hv, text: &str) -> Run {
        Run {
            hv,
            index: 1,
            exit_code: Some(0),
            verdict: "hvrun: ok".into(),
            log: PathBuf::from("x.log"),
            seconds: 1.0,
            parsed: parse_console(text),
        }
    }

    #[test]
    fn parses_bench_lines() {
        let p = parse_console(
            "noise\n(d0) BENCH null-hypercall 301.0 cycles/op\r\nBENCH bad x y\n\
             BENCH-SKIP trap-bounce: no traps\nBENCH too many words here x\n",
        );
        assert_eq!(
            p.figures,
            vec![("null-hypercall".to_string(), Figure { value: 301.0, unit: "cycles/op".into() })]
        );
        assert_eq!(p.skipped, vec![("trap-bounce".to_string(), "no traps".to_string())]);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn failed_runs_are_never_numbers() {
        let good = ok_run(Hv::Ours, "BENCH a 10 cycles/op\n");
        let mut bad = ok_run(Hv::Xen, "BENCH a 5 cycles/op\n");
        bad.exit_code = Some(2);
        let mut runs = BTreeMap::new();
        runs.insert(Hv::Ours, vec![good]);
        runs.insert(Hv::Xen, vec![bad]);
        let m = MeasureResult::new(PATH, runs, &[]);
        assert_eq!(m.rows.len(), 1);
        assert_eq!(m.rows[0].xen, Cell::Failed);
        assert_eq!(m.rows[0].ratio(), None);
        assert_eq!(m.failures().len(), 1);
        let g = SetupResult { setup: Setup::guest(Path::new("g.elf")), measures: vec![m] };
        let t = table(&g, &g.measures[0], 1, &[]);
        assert!(t.contains("FAILED") && t.contains("failed run: xen run 1: hvrun exit 2"));
    }

    #[test]
    fn ratio_and_outputs() {
        let mut runs = BTreeMap::new();
        runs.insert(Hv::Ours, vec![ok_run(Hv::Ours, "BENCH a 30 cycles/op\nBENCH-SKIP b: why\n")]);
        runs.insert(Hv::Xen, vec![ok_run(Hv::Xen, "BENCH a 20 cycles/op\nBENCH b 1 cycles/KiB\n")]);
        let m = MeasureResult::new(PATH, runs, &[]);
        assert_eq!(m.rows[0].ratio(), Some(1.5));
        assert_eq!(m.rows[1].ours, Cell::Skipped("why".into()));
        assert_eq!((m.rows[0].unit(), m.rows[1].unit()), ("cycles/op", "cycles/KiB"));
        let setup = Setup::guest(Path::new("build/guests/bench.elf"));
        let results = [SetupResult { setup, measures: vec![m] }];
        let t = table(&results[0], &results[0].measures[0], 1, &results);
        assert!(t.lines().any(|l| l.starts_with("b ") && l.ends_with("  cycles/KiB")), "{t}");
        let svg = results_svg(&results);
        assert!(svg.starts_with("<svg") && svg.contains("1.50") && svg.contains("n/a"));
        let cli = Cli::parse_from(["bench"]);
        let json = results_json(&results, &cli, Path::new("hvrun"));
        assert!(json.contains("\"ratio\": 1.5"));
        assert!(json.contains("\"status\": \"skipped\""));
    }

    #[test]
    fn setups_add_the_interdomain_run_for_bench_elf() {
        let guests = [PathBuf::from("build/guests/bench.elf"), PathBuf::from("build/guests/bench-x.elf")];
        let s = setups(&guests, true);
        assert_eq!(
            s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["bench", "bench-x", "bench-interdomain"]
        );
        assert_eq!(s[0].modules, ["build/guests/bench.elf"]);
        assert_eq!(s[0].hypervisors(), [Hv::Ours, Hv::Xen]);
        assert_eq!(
            s[2].modules,
            [
                "build/guests/bench.elf:interdomain",
                "build/guests/bench.elf:domu name=bench-peer mem=16 -- peer"
            ]
        );
        assert_eq!(s[2].hypervisors(), [Hv::Ours]);
        assert_eq!(setups(&guests, false).len(), 2);
        assert_eq!(setups(&guests[1..], true).len(), 1);
        assert_eq!(same_domain_name("domain-switch").as_deref(), Some("sched-yield"));
        assert_eq!(
            same_domain_name("gnttab-copy-4k-interdomain-per-kib").as_deref(),
            Some("gnttab-copy-4k-per-kib")
        );
        assert_eq!(same_domain_name("null-hypercall"), None);
    }

    #[test]
    fn ours_only_setups_have_no_xen_column() {
        let mut runs = BTreeMap::new();
        runs.insert(Hv::Ours, vec![ok_run(Hv::Ours, "BENCH evtchn-rtt 2500 cycles/op\n")]);
        runs.insert(Hv::Xen, vec![ok_run(Hv::Xen, "BENCH evtchn-rtt 2000 cycles/op\n")]);
        let same = SetupResult {
            setup: Setup::guest(Path::new("build/guests/bench.elf")),
            measures: vec![MeasureResult::new(PATH, runs, &[])],
        };
        let mut runs = BTreeMap::new();
        runs.insert(
            Hv::Ours,
            vec![ok_run(
                Hv::Ours,
                "(d0) BENCH evtchn-rtt-interdomain 5000 cycles/op\nBENCH-SKIP domain-switch: no\n",
            )],
        );
        let inter = SetupResult {
            setup: Setup::interdomain(Path::new("build/guests/bench.elf")),
            measures: vec![MeasureResult::new(PATH, runs, &[(Hv::Xen, INTERDOMAIN_WHY)])],
        };
        let results = [same, inter];
        let m = &results[1].measures[0];
        assert_eq!(m.rows[0].xen, Cell::NotRun(INTERDOMAIN_WHY.into()));
        assert_eq!(m.rows[0].ratio(), None);
        assert_eq!(m.failures().len(), 0);
        assert_eq!(
            same_domain(&results, PATH, "evtchn-rtt-interdomain"),
            Some(("evtchn-rtt".into(), 2500.0))
        );
        let t = table(&results[1], m, 1, &results);
        assert!(!t.contains("ours/xen") && t.contains(INTERDOMAIN_WHY), "{t}");
        assert!(t.lines().any(|l| l.starts_with("evtchn-rtt-interdomain ") && l.ends_with("2.000")), "{t}");
        assert!(t.contains("domain-switch skipped on ours: no"), "{t}");
        let json = results_json(&results, &Cli::parse_from(["bench"]), Path::new("hvrun"));
        assert!(json.contains("\"ours_only\": true") && json.contains("\"status\": \"not-run\""), "{json}");
        assert!(json.contains("\"same_domain\": {\"name\": \"evtchn-rtt\", \"ours\": 2500, \"ratio\": 2}"));
        let svg = results_svg(&results);
        assert!(svg.contains("ours only") && svg.contains(">evtchn-rtt-interdomain</text>"), "{svg}");
        // Only the compared setup makes ratio bars.
        assert!(svg.contains("1.25") && !svg.contains("bench/evtchn-rtt"), "{svg}");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }
}
