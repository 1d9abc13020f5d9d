// SPDX-License-Identifier: MIT OR Apache-2.0
//! `scenarios`: boot the hypervisor under QEMU through `build/bin/hvrun` for each
//! scenario in `scenarios.rs` and check what it prints. Run by `make test` after `make`.
//! Ends with one line `N passed, N failed`; exits non-zero if any failed.

mod harness;
mod scenarios;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use regex::Regex;

use harness::{GUARD_MARGIN, Runner, find_root, select, summary_line};

#[derive(Parser, Debug)]
#[command(name = "scenarios", about = "Run the QEMU boot scenarios through hvrun")]
struct Cli {
    /// Only the scenarios whose names match this regex [env: FILTER].
    #[arg(long, value_name = "REGEX")]
    filter: Option<String>,
    /// List the (selected) scenario names and exit.
    #[arg(long)]
    list: bool,
    /// How many scenarios run at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    jobs: usize,
    /// The repository root [default: up from the current directory, else where this was built].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The hvrun binary [default: <root>/build/bin/hvrun].
    #[arg(long, value_name = "PATH")]
    hvrun: Option<PathBuf>,
    /// Output lines shown for a failed scenario.
    #[arg(long, value_name = "N", default_value_t = 40)]
    tail: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter_text = cli.filter.clone().or_else(|| std::env::var("FILTER").ok()).filter(|f| !f.is_empty());
    let filter = match filter_text.as_deref().map(Regex::new).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("scenarios: bad filter: {e}");
            return ExitCode::from(2);
        }
    };
    let table = scenarios::all();
    let selected = select(&table, filter.as_ref());
    if cli.list {
        for s in &selected {
            println!("{}", s.name);
        }
        return ExitCode::SUCCESS;
    }
    if selected.is_empty() {
        println!("scenarios: no scenario matches '{}' (see --list)", filter_text.unwrap_or_default());
        println!("{}", summary_line(0, 0));
        return ExitCode::FAILURE;
    }
    let root = match find_root(cli.root.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scenarios: {e:#}");
            return ExitCode::from(2);
        }
    };
    let hvrun = cli.hvrun.clone().unwrap_or_else(|| root.join("build/bin/hvrun"));
    if !hvrun.is_file() {
        println!("scenarios: {} not found: run `make` first", hvrun.display());
        println!("{}", summary_line(0, selected.len()));
        return ExitCode::FAILURE;
    }
    let runner = Runner { root, hvrun, jobs: cli.jobs.max(1), guard_margin: GUARD_MARGIN, tail: cli.tail };
    println!(
        "scenarios: running {} of {} with {} ({} at a time)",
        selected.len(),
        table.len(),
        runner.hvrun.display(),
        runner.jobs
    );
    let _ = std::io::stdout().flush();
    let mut stdout = std::io::stdout();
    let outcomes = runner.run_all(&selected, &mut stdout);
    if outcomes.iter().all(|o| o.passed) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
