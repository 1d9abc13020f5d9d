// SPDX-License-Identifier: MIT OR Apache-2.0
//! The hypervisor command line. Options use Xen's names and value syntax where
//! Xen has the option (`console=`, `com1=`, `loglvl=`, `guest_loglvl=`,
//! `dom0_mem=`, `dom0_max_vcpus=`); `debug=` is ours. Unknown options and bad
//! values are reported, never fatal: the option keeps its default.

use heapless::Vec;

/// Xen's log levels (`loglvl=` and `guest_loglvl=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    None,
    Error,
    Warning,
    Info,
    Debug,
    All,
}

/// An amount of memory in `dom0_mem=`: bytes plus a percentage of host RAM;
/// negative means "all but".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MemSize {
    pub negative: bool,
    pub bytes: u64,
    pub percent: u8,
}

impl MemSize {
    /// Resolves against the host's RAM in bytes.
    pub fn resolve(&self, host: u64) -> u64 {
        let amount = self.bytes.saturating_add(host / 100 * u64::from(self.percent));
        if self.negative { host.saturating_sub(amount) } else { amount.min(host) }
    }
}

/// `dom0_mem=[min:<sz>,][max:<sz>,][<sz>]`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dom0Mem {
    pub amount: Option<MemSize>,
    pub min: Option<MemSize>,
    pub max: Option<MemSize>,
}

/// Our debugging hooks (`debug=fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Debug {
    /// Take a page fault in the hypervisor after boot, to show the report.
    pub fault: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `console=com1` (the only console we drive; `none` silences it).
    pub serial_console: bool,
    /// `com1=<baud>[,8n1]`
    pub com1_baud: u32,
    pub loglvl: LogLevel,
    pub guest_loglvl: LogLevel,
    pub dom0_mem: Dom0Mem,
    pub dom0_max_vcpus: Option<u32>,
    pub debug: Debug,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            serial_console: true,
            com1_baud: 115_200,
            loglvl: LogLevel::Info,
            guest_loglvl: LogLevel::Info,
            dom0_mem: Dom0Mem::default(),
            dom0_max_vcpus: None,
            debug: Debug::default(),
        }
    }
}

/// A problem with one option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diag<'a> {
    Unknown(&'a str),
    BadValue {
        option: &'a str,
        value: &'a str,
        why: &'static str,
    },
    /// Accepted but has no effect here.
    Ignored {
        option: &'a str,
        why: &'static str,
    },
    /// More problems than we keep.
    TooMany,
}

impl core::fmt::Display for Diag<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Diag::Unknown(o) => write!(f, "cmdline: unknown option '{o}' (ignored)"),
            Diag::BadValue { option, value, why } => {
                write!(f, "cmdline: bad value for {option}: '{value}' ({why}; default kept)")
            }
            Diag::Ignored { option, why } => write!(f, "cmdline: {option}: {why}"),
            Diag::TooMany => write!(f, "cmdline: more problems than shown"),
        }
    }
}

pub const MAX_DIAGS: usize = 16;

pub struct Parsed<'a> {
    pub options: Options,
    pub diags: Vec<Diag<'a>, MAX_DIAGS>,
}

pub fn parse(line: &str) -> Parsed<'_> {
    let mut p = Parsed { options: Options::default(), diags: Vec::new() };
    let mut words = line.split_ascii_whitespace().peekable();
    // Some loaders put the image's path first.
    if words.peek().is_some_and(|w| w.starts_with('/') && !w.contains('=')) {
        words.next();
    }
    for word in words {
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        if let Err(d) = apply(&mut p.options, name, value) {
            let d = match d {
                Problem::Unknown => Diag::Unknown(name),
                Problem::Bad(why) => Diag::BadValue { option: name, value: value.unwrap_or(""), why },
                Problem::Ignored(why) => Diag::Ignored { option: name, why },
            };
            // The last slot says that more were dropped.
            if p.diags.len() + 1 < MAX_DIAGS {
                let _ = p.diags.push(d);
            } else if p.diags.len() + 1 == MAX_DIAGS {
                let _ = p.diags.push(Diag::TooMany);
            }
        }
    }
    p
}

enum Problem {
    Unknown,
    Bad(&'static str),
    Ignored(&'static str),
}

fn apply(o: &mut Options, name: &str, value: Option<&str>) -> Result<(), Problem> {
    fn need(v: Option<&str>) -> Result<&str, Problem> {
        v.filter(|v| !v.is_empty()).ok_or(Problem::Bad("a value is required"))
    }
    match name {
        "console" => {
            let mut serial = false;
            for c in need(value)?.split(',') {
                match c {
                    "com1" => serial = true,
                    "none" => {}
                    "vga" | "com2" | "dbgp" | "ehci" | "xhci" => {
                        return Err(Problem::Ignored("only com1 is supported as a console"));
                    }
                    _ => return Err(Problem::Bad("expected com1 or none")),
                }
            }
            o.serial_console = serial;
        }
        "com1" => {
            let v = need(value)?;
            let (speed, rest) = v.split_once(',').unwrap_or((v, ""));
            let speed = speed.split('/').next().unwrap_or("");
            let baud = match speed {
                "auto" => o.com1_baud,
                s => s
                    .parse::<u32>()
                    .ok()
                    .filter(|b| (50..=115_200).contains(b))
                    .ok_or(Problem::Bad("baud must be 50..115200 or auto"))?,
            };
            let dps = rest.split(',').next().unwrap_or("");
            if !(dps.is_empty() || dps.eq_ignore_ascii_case("8n1")) {
                return Err(Problem::Bad("only 8n1 framing is supported"));
            }
            o.com1_baud = baud;
        }
        "loglvl" | "guest_loglvl" => {
            let v = need(value)?;
            // `<level>[/<rate-limited level>]`: we do not rate-limit.
            let level = parse_loglvl(v.split('/').next().unwrap_or(""))
                .ok_or(Problem::Bad("expected none, error, warning, info, debug or all"))?;
            if let Some(limited) = v.split_once('/').map(|(_, l)| l) {
                parse_loglvl(limited).ok_or(Problem::Bad("bad rate-limited level"))?;
            }
            if name == "loglvl" {
                o.loglvl = level;
            } else {
                o.guest_loglvl = level;
            }
        }
        "dom0_mem" => {
            o.dom0_mem = parse_dom0_mem(need(value)?).ok_or(Problem::Bad(
                "expected [min:<size>,][max:<size>,][<size>] with sizes like 512M, 1G, -256M or 50%",
            ))?
        }
        "dom0_max_vcpus" => {
            let n = need(value)?.parse::<u32>().ok().filter(|&n| (1..=128).contains(&n));
            o.dom0_max_vcpus = Some(n.ok_or(Problem::Bad("expected a number of vCPUs, 1..128"))?);
        }
        "debug" => match need(value)? {
            "fault" => o.debug.fault = true,
            _ => return Err(Problem::Bad("expected fault")),
        },
        _ => return Err(Problem::Unknown),
    }
    Ok(())
}

fn parse_loglvl(s: &str) -> Option<LogLevel> {
    Some(match s {
        "none" => LogLevel::None,
        "error" => LogLevel::Error,
        "warning" => LogLevel::Warning,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "all" => LogLevel::All,
        _ => return None,
    })
}

fn parse_dom0_mem(v: &str) -> Option<Dom0Mem> {
    let mut m = Dom0Mem::default();
    for part in v.split(',') {
        if let Some(s) = part.strip_prefix("min:") {
            m.min = Some(parse_memsize(s)?);
        } else if let Some(s) = part.strip_prefix("max:") {
            m.max = Some(parse_memsize(s)?);
        } else {
            m.amount = Some(parse_memsize(part)?);
        }
    }
    Some(m)
}

/// `[-]<size>[+<frac>%]` or `[-]<frac>%`; sizes take Xen's suffixes
/// (B, K, M, G, T; no suffix means KiB, as in Xen).
pub fn parse_memsize(s: &str) -> Option<MemSize> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (size, frac) = match s.strip_suffix('%') {
        Some(body) => match body.rsplit_once('+') {
            Some((size, frac)) => (Some(size), Some(frac)),
            None => (None, Some(body)),
        },
        None => (Some(s), None),
    };
    let bytes = match size {
        Some(size) => parse_size(size)?,
        None => 0,
    };
    let percent = match frac {
        Some(f) => f.parse::<u8>().ok().filter(|&p| p < 100)?,
        None => 0,
    };
    Some(MemSize { negative, bytes, percent })
}

fn parse_size(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let shift = match &s[digits..] {
        "T" | "t" => 40,
        "G" | "g" => 30,
        "M" | "m" => 20,
        "K" | "k" | "" => 10,
        "B" | "b" => 0,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults() {
        let p = parse("");
        assert_eq!(p.options, Options::default());
        assert!(p.diags.is_empty());
    }

    #[test]
    fn xen_options() {
        let p = parse(
            "console=com1 com1=9600,8n1 loglvl=debug/warning guest_loglvl=all dom0_mem=min:128M,max:1G,512M dom0_max_vcpus=2",
        );
        assert!(p.diags.is_empty(), "{:?}", p.diags);
        let o = p.options;
        assert_eq!(o.com1_baud, 9600);
        assert_eq!(o.loglvl, LogLevel::Debug);
        assert_eq!(o.guest_loglvl, LogLevel::All);
        assert_eq!(o.dom0_mem.amount.unwrap().resolve(u64::MAX), 512 << 20);
        assert_eq!(o.dom0_mem.min.unwrap().bytes, 128 << 20);
        assert_eq!(o.dom0_mem.max.unwrap().bytes, 1 << 30);
        assert_eq!(o.dom0_max_vcpus, Some(2));
    }

    #[test]
    fn loader_path_first_word_is_skipped() {
        let p = parse("/boot/hv loglvl=error");
        assert!(p.diags.is_empty());
        assert_eq!(p.options.loglvl, LogLevel::Error);
    }

    #[test]
    fn unknown_and_malformed_are_reported_and_defaults_kept() {
        let p = parse("frobnicate=1 dom0_mem=banana loglvl=loud com1=0 debug noreboot console=vga");
        let d = &p.diags;
        assert_eq!(d[0], Diag::Unknown("frobnicate"));
        assert!(matches!(d[1], Diag::BadValue { option: "dom0_mem", value: "banana", .. }));
        assert!(matches!(d[2], Diag::BadValue { option: "loglvl", value: "loud", .. }));
        assert!(matches!(d[3], Diag::BadValue { option: "com1", .. }));
        assert!(matches!(d[4], Diag::BadValue { option: "debug", value: "", .. }));
        assert_eq!(d[5], Diag::Unknown("noreboot"));
        assert!(matches!(d[6], Diag::Ignored { option: "console", .. }));
        assert_eq!(p.options, Options::default());
        let shown = std::format!("{}", d[1]);
        assert_eq!(
            shown,
            "cmdline: bad value for dom0_mem: 'banana' (expected [min:<size>,][max:<size>,][<size>] with sizes like 512M, 1G, -256M or 50%; default kept)"
        );
    }

    #[test]
    fn sizes() {
        let host = 4u64 << 30;
        assert_eq!(parse_memsize("1G").unwrap().resolve(host), 1 << 30);
        assert_eq!(parse_memsize("1024").unwrap().resolve(host), 1 << 20); // KiB by default
        assert_eq!(parse_memsize("-1G").unwrap().resolve(host), 3 << 30);
        assert_eq!(parse_memsize("25%").unwrap().resolve(host), host / 100 * 25);
        assert_eq!(parse_memsize("1G+25%").unwrap().resolve(host), (1 << 30) + host / 100 * 25);
        assert_eq!(parse_memsize("64T").unwrap().resolve(host), host);
        assert!(parse_memsize("99999999999999999999G").is_none());
        assert!(parse_memsize("100%").is_none());
        assert!(parse_memsize("").is_none());
        assert!(parse_memsize("12Q").is_none());
    }

    #[test]
    fn diagnostics_are_bounded() {
        let line = "x ".repeat(100);
        let p = parse(&line);
        assert_eq!(p.diags.len(), MAX_DIAGS);
        assert!(p.diags.contains(&Diag::TooMany));
    }

    proptest! {
        #[test]
        fn never_panics(line in ".{0,300}") {
            let _ = parse(&line);
        }

        #[test]
        fn option_soup_never_panics(words in prop::collection::vec(
            ("(console|com1|loglvl|guest_loglvl|dom0_mem|dom0_max_vcpus|debug|x)", "[=,:/%+a-z0-9-]{0,12}"), 0..20)) {
            let line: std::string::String = words.iter().map(|(a, b)| std::format!("{a}={b} ")).collect();
            let _ = parse(&line);
        }
    }
}
