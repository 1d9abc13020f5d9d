// SPDX-License-Identifier: MIT OR Apache-2.0
//! How a run ended, and the verdict.
//!
//! Exit codes (DESIGN.md 4.6, plus 4): the hypervisor writes code `c` to the
//! isa-debug-exit port 0xf4 and QEMU exits with `(c << 1) | 1`. Xen halts instead, so a
//! Xen run ends on one of its end-of-run console lines, mapped to the same codes.

use std::process::ExitStatus;
use std::time::Duration;

use super::{secs, status};

/// The name of an exit code.
pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "poweroff",
        1 => "reboot",
        2 => "crash",
        3 => "hypervisor panic",
        4 => "bad boot configuration",
        _ => "unknown code",
    }
}

/// What QEMU's exit status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuExit {
    /// The guest wrote this code to isa-debug-exit.
    DebugExit(u32),
    /// Exit status 0: reset (a triple fault, with `-no-reboot`) or powered off by other
    /// means than isa-debug-exit.
    NoCode,
    /// An even non-zero status: not something isa-debug-exit produces.
    Error(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Maps QEMU's exit status (`code`, or the `signal` that killed it) to a [`QemuExit`].
pub fn classify_qemu_exit(code: Option<i32>, signal: Option<i32>) -> QemuExit {
    match code {
        Some(0) => QemuExit::NoCode,
        Some(c) if c & 1 == 1 => QemuExit::DebugExit((c as u32) >> 1),
        Some(c) => QemuExit::Error(c),
        None => QemuExit::Signal(signal.unwrap_or(0)),
    }
}

/// [`classify_qemu_exit`] for a real [`ExitStatus`].
pub fn classify_exit_status(st: ExitStatus) -> QemuExit {
    use std::os::unix::process::ExitStatusExt;
    classify_qemu_exit(st.code(), st.signal())
}

/// One of Xen's end-of-run console lines (`xen/common/shutdown.c`, `drivers/char/console.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XenEnd {
    pub code: u32,
    /// A panic: keep reading until the closing `****` line (or a short grace period) so
    /// the reason is captured.
    pub panic: bool,
}

/// Recognises Xen's end-of-run lines: `Hardware Dom0 halted: halting machine` → 0,
/// `Hardware Dom0 shutdown: rebooting machine` → 1, `Hardware Dom0 crashed: ...` → 2,
/// `Hardware Dom0 shutdown: watchdog rebooting machine` → 2, `Panic on CPU N:` → 3.
pub fn xen_end_line(line: &str) -> Option<XenEnd> {
    let end = |code| Some(XenEnd { code, panic: false });
    if line.contains("Panic on CPU") {
        Some(XenEnd { code: 3, panic: true })
    } else if line.contains("Dom0 halted") {
        end(0)
    } else if line.contains("Dom0 shutdown: watchdog") {
        end(2)
    } else if line.contains("Dom0 shutdown: rebooting machine") || line.contains("Dom0 rebooted") {
        end(1)
    } else if line.contains("Dom0 crashed") {
        end(2)
    } else {
        None
    }
}

/// The closing line of a Xen panic box: `(XEN) ****************************************`.
pub fn is_xen_panic_box_line(line: &str) -> bool {
    line.contains("****")
}

/// Our hypervisor's panic text starts a line with `PANIC`.
pub fn is_our_panic_line(line: &str) -> bool {
    line.starts_with("PANIC")
}

/// A test guest's failed check (DESIGN.md 4.4): at the start of the line for dom0, or
/// after the `(dN) ` prefix the hypervisor puts before a domU's console lines.
pub fn is_result_fail(line: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^(\(d[0-9]+\) )?RESULT \S+ FAIL").expect("valid regex"))
        .is_match(line)
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// An exit code: from isa-debug-exit (`detail` None) or from a console line (Xen's
    /// end-of-run lines, or our `PANIC` with a machine that did not exit by itself).
    Code { code: u32, detail: Option<String> },
    /// QEMU exited 0 without an isa-debug-exit code.
    Reset,
    /// `--until` matched at this time.
    Until { at: Duration },
    /// `--timeout` ran out.
    Timeout(Duration),
    /// QEMU, GRUB or the inputs failed.
    Infra(String),
    /// hvrun got SIGINT/SIGTERM/SIGHUP.
    Interrupted,
}

/// What the run showed besides its end.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Each `--expect` regex and when it first matched.
    pub expects: Vec<(String, Option<Duration>)>,
    /// The `--until` regex, if any.
    pub until: Option<String>,
    /// The `RESULT ... FAIL` lines.
    pub result_fails: Vec<String>,
}

/// hvrun's exit status and its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: i32,
    pub line: String,
}

/// Judges a run: it passes only if it ended cleanly (the expected exit code, or
/// `--until` matched), every `--expect` matched and no `RESULT ... FAIL` appeared.
pub fn verdict(end: &End, elapsed: Duration, expect_exit: u32, seen: &Observed) -> Verdict {
    let mut reasons: Vec<String> = Vec::new();
    let mut st = status::OK;
    let mut ok_how = String::new();
    match end {
        End::Infra(msg) => {
            return Verdict { status: status::INFRA, line: format!("hvrun: ERROR: {msg}") };
        }
        End::Interrupted => {
            return Verdict {
                status: status::INTERRUPTED,
                line: format!("hvrun: FAIL: interrupted after {}", secs(elapsed)),
            };
        }
        End::Timeout(t) => {
            st = status::TIMEOUT;
            reasons.push(format!("timeout after {} s", t.as_secs_f64()));
        }
        End::Reset => {
            st = status::FAIL;
            reasons.push("machine reset without exit code (triple fault?)".into());
        }
        End::Until { at } => {
            let re = seen.until.as_deref().unwrap_or("?");
            ok_how = format!("'{re}' matched at {}", secs(*at));
        }
        End::Code { code, detail } => {
            let detail = detail.as_ref().map(|d| format!(", {d}")).unwrap_or_default();
            if *code == expect_exit {
                ok_how = format!("exit code {code}: {}{detail}", code_name(*code));
            } else {
                st = status::FAIL;
                reasons
                    .push(format!("exit code {code} ({}{detail}), expected {expect_exit}", code_name(*code)));
            }
        }
    }
    if let (Some(re), false) = (&seen.until, matches!(end, End::Until { .. })) {
        reasons.push(format!("'{re}' (--until) never matched"));
    }
    if let Some(first) = seen.result_fails.first() {
        let more = match seen.result_fails.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        reasons.push(format!("{first}{more}"));
    }
    for (re, at) in &seen.expects {
        if at.is_none() {
            reasons.push(format!("missing expectation '{re}'"));
        }
    }
    if reasons.is_empty() {
        Verdict { status: status::OK, line: format!("hvrun: ok ({ok_how}) in {}", secs(elapsed)) }
    } else {
        if st == status::OK {
            st = status::FAIL;
        }
        Verdict { status: st, line: format!("hvrun: FAIL: {}", reasons.join("; ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_status_to_code() {
        assert_eq!(classify_qemu_exit(Some(1), None), QemuExit::DebugExit(0));
        assert_eq!(classify_qemu_exit(Some(3), None), QemuExit::DebugExit(1));
        assert_eq!(classify_qemu_exit(Some(5), None), QemuExit::DebugExit(2));
        assert_eq!(classify_qemu_exit(Some(7), None), QemuExit::DebugExit(3));
        assert_eq!(classify_qemu_exit(Some(9), None), QemuExit::DebugExit(4));
        assert_eq!(classify_qemu_exit(Some(255), None), QemuExit::DebugExit(127));
        assert_eq!(classify_qemu_exit(Some(0), None), QemuExit::NoCode);
        assert_eq!(classify_qemu_exit(Some(2), None), QemuExit::Error(2));
        assert_eq!(classify_qemu_exit(None, Some(9)), QemuExit::Signal(9));
    }

    #[test]
    fn code_names() {
        assert_eq!(code_name(0), "poweroff");
        assert_eq!(code_name(1), "reboot");
        assert_eq!(code_name(2), "crash");
        assert_eq!(code_name(3), "hypervisor panic");
        assert_eq!(code_name(4), "bad boot configuration");
        assert_eq!(code_name(77), "unknown code");
    }

    #[test]
    fn xen_end_lines() {
        let code = |l: &str| xen_end_line(l).map(|e| (e.code, e.panic));
        assert_eq!(code("(XEN) Hardware Dom0 halted: halting machine"), Some((0, false)));
        assert_eq!(code("(XEN) Hardware Dom0 shutdown: rebooting machine"), Some((1, false)));
        assert_eq!(code("(XEN) Dom0 rebooted"), Some((1, false)));
        assert_eq!(code("(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds."), Some((2, false)));
        assert_eq!(code("(XEN) Hardware Dom0 shutdown: watchdog rebooting machine"), Some((2, false)));
        assert_eq!(code("(XEN) Panic on CPU 0:"), Some((3, true)));
        assert_eq!(code("(XEN) [    1.234] Panic on CPU 1:"), Some((3, true)));
        assert_eq!(code("(XEN) Xen version 4.17.7 (Debian)"), None);
        assert_eq!(code("(XEN) *** Building a PV Dom0 ***"), None);
        assert!(is_xen_panic_box_line("(XEN) ****************************************"));
        assert!(!is_xen_panic_box_line("(XEN) Could not construct domain 0"));
    }

    #[test]
    fn panic_and_result_lines() {
        assert!(is_our_panic_line("PANIC at src/main.rs:10: oops"));
        assert!(!is_our_panic_line("no PANIC here"));
        assert!(is_result_fail("RESULT evtchn_bind FAIL: -22"));
        assert!(!is_result_fail("RESULT evtchn_bind PASS"));
        assert!(!is_result_fail("RESULT evtchn_bind SKIP: no FAIL"));
        assert!(!is_result_fail(" RESULT x FAIL"));
        // A domU's lines, as the hypervisor prefixes them.
        assert!(is_result_fail("(d1) RESULT x FAIL: y"));
        assert!(is_result_fail("(d32) RESULT bind-interdomain FAIL: -3"));
        assert!(!is_result_fail("(d1) RESULT x PASS"));
        assert!(!is_result_fail("(d1) RESULT x SKIP: no FAIL"));
        assert!(!is_result_fail("(d1)  RESULT x FAIL"));
        assert!(!is_result_fail("(dx) RESULT x FAIL"));
        assert!(!is_result_fail("(d) RESULT x FAIL"));
        assert!(!is_result_fail("x (d1) RESULT x FAIL"));
    }

    fn observed(expects: &[(&str, Option<f64>)]) -> Observed {
        Observed {
            expects: expects.iter().map(|(r, t)| (r.to_string(), t.map(Duration::from_secs_f64))).collect(),
            ..Observed::default()
        }
    }

    #[test]
    fn verdicts() {
        let t = Duration::from_millis(2310);
        let all = observed(&[("banner", Some(1.84))]);
        let code = |c| End::Code { code: c, detail: None };

        let v = verdict(&code(0), t, 0, &all);
        assert_eq!(v, Verdict { status: 0, line: "hvrun: ok (exit code 0: poweroff) in 2.31 s".into() });

        let v = verdict(&code(3), t, 0, &all);
        assert_eq!(v.status, 1);
        assert_eq!(v.line, "hvrun: FAIL: exit code 3 (hypervisor panic), expected 0");

        let v = verdict(&code(2), t, 2, &observed(&[("RAM: ...", None)]));
        assert_eq!(v.status, 1);
        assert_eq!(v.line, "hvrun: FAIL: missing expectation 'RAM: ...'");

        let v = verdict(&End::Timeout(Duration::from_secs(60)), t, 0, &all);
        assert_eq!(v, Verdict { status: 2, line: "hvrun: FAIL: timeout after 60 s".into() });

        let v = verdict(&End::Reset, t, 0, &all);
        assert_eq!(v.status, 1);
        assert!(v.line.contains("machine reset without exit code (triple fault?)"));

        let v = verdict(&End::Infra("QEMU failed".into()), t, 0, &all);
        assert_eq!(v, Verdict { status: 3, line: "hvrun: ERROR: QEMU failed".into() });

        let mut seen = all.clone();
        seen.result_fails = vec!["RESULT a FAIL: x".into(), "RESULT b FAIL: y".into()];
        let v = verdict(&code(0), t, 0, &seen);
        assert_eq!(v.line, "hvrun: FAIL: RESULT a FAIL: x (and 1 more)");
    }

    #[test]
    fn until_verdicts() {
        let t = Duration::from_millis(1900);
        let mut seen = observed(&[("Xen version", Some(1.84))]);
        seen.until = Some("Xen version".into());
        let v = verdict(&End::Until { at: Duration::from_millis(1840) }, t, 0, &seen);
        assert_eq!(v.line, "hvrun: ok ('Xen version' matched at 1.84 s) in 1.90 s");
        // The exit code does not matter once --until matched, but an --until that never
        // matched is a failure even with the right exit code.
        let v = verdict(&End::Code { code: 0, detail: None }, t, 0, &seen);
        assert_eq!(v.status, 1);
        assert_eq!(v.line, "hvrun: FAIL: 'Xen version' (--until) never matched");
    }

    #[test]
    fn detail_is_shown() {
        let end = End::Code { code: 3, detail: Some("Xen: Could not construct domain 0".into()) };
        let v = verdict(&end, Duration::from_secs(1), 0, &Observed::default());
        assert_eq!(
            v.line,
            "hvrun: FAIL: exit code 3 (hypervisor panic, Xen: Could not construct domain 0), expected 0"
        );
    }
}
