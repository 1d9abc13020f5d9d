// SPDX-License-Identifier: MIT OR Apache-2.0
//! The command line of a boot-time domU module (DESIGN 4.3): after dom0's
//! kernel (and initrd), a module whose command line starts with the word
//! `domu` is an unprivileged domain to build at boot:
//!
//! ```text
//! domu name=N mem=MiB [vcpus=N] [initrd=INDEX] [weight=W] [cap=C] -- guest cmdline
//! ```
//!
//! Options are whitespace-separated `key=value` words, each at most once, in
//! any order. The first word that is exactly `--` ends them; the rest of the
//! line, less the whitespace that follows `--`, is the guest's command line
//! verbatim (it may be empty and may contain anything, `--` included).
//! Without `--` the guest's command line is empty. `vcpus=` defaults to 1,
//! as in xl; `weight=` and `cap=` are the credit scheduler's (Xen's names and
//! ranges). The parser checks syntax and ranges only: whether the initrd
//! module exists, whether there is memory enough, and whether more than one
//! vCPU can run are the caller's to check.

use crate::sched::DEFAULT_WEIGHT;
use heapless::String;

/// Longest domain name, as for the `(dN)` log prefix and `xl list`.
pub const NAME_MAX: usize = 32;
/// Longest guest command line: start_info's `MAX_GUEST_CMDLINE` (1024) less
/// the terminating NUL.
pub const CMDLINE_MAX: usize = 1023;
/// Smallest domain, MiB.
pub const MEM_MIN_MIB: u32 = 4;
/// Most vCPUs a boot-time domU may ask for.
pub const VCPUS_MAX: u32 = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomuConfig {
    pub name: String<NAME_MAX>,
    pub mem_mib: u32,
    pub vcpus: u32,
    /// Index of the module to use as the initrd, counted as the boot loader
    /// lists modules (0 is dom0's kernel).
    pub initrd: Option<u32>,
    pub weight: u16,
    /// Percent of one CPU, 0 = no cap; at most 100 per vCPU.
    pub cap: u16,
    pub cmdline: String<CMDLINE_MAX>,
}

/// What is wrong with a domU command line; borrows the offending text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError<'a> {
    /// The line does not start with the word `domu`.
    NotDomu,
    Unknown(&'a str),
    Missing(&'static str),
    Duplicate(&'static str),
    BadValue {
        option: &'static str,
        value: &'a str,
        why: &'static str,
    },
    CmdlineTooLong(usize),
}

impl core::fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::NotDomu => write!(f, "domu: the command line does not start with 'domu'"),
            ConfigError::Unknown(o) => write!(f, "domu: unknown option '{o}'"),
            ConfigError::Missing(o) => write!(f, "domu: {o}= is missing"),
            ConfigError::Duplicate(o) => write!(f, "domu: {o}= given more than once"),
            ConfigError::BadValue { option, value, why } => {
                write!(f, "domu: bad value for {option}: '{value}' ({why})")
            }
            ConfigError::CmdlineTooLong(n) => {
                write!(f, "domu: the guest command line is {n} bytes, at most {CMDLINE_MAX}")
            }
        }
    }
}

/// Renders the command line that `parse` reads back as `self`.
impl core::fmt::Display for DomuConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "domu name={} mem={} vcpus={}", self.name, self.mem_mib, self.vcpus)?;
        if let Some(i) = self.initrd {
            write!(f, " initrd={i}")?;
        }
        write!(f, " weight={} cap={} -- {}", self.weight, self.cap, self.cmdline)
    }
}

/// Whether a module's command line asks for a domU.
pub fn is_domu(line: &str) -> bool {
    line.split_ascii_whitespace().next() == Some("domu")
}

pub fn parse(line: &str) -> Result<DomuConfig, ConfigError<'_>> {
    let mut words = Words { rest: line };
    if words.next() != Some("domu") {
        return Err(ConfigError::NotDomu);
    }
    let (mut name, mut mem, mut vcpus, mut initrd, mut weight, mut cap) =
        (None, None, None, None, None, None);
    let mut cmdline = "";
    while let Some(word) = words.next() {
        if word == "--" {
            cmdline = words.rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
            break;
        }
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let (option, slot): (&'static str, &mut Option<&str>) = match key {
            "name" => ("name", &mut name),
            "mem" => ("mem", &mut mem),
            "vcpus" => ("vcpus", &mut vcpus),
            "initrd" => ("initrd", &mut initrd),
            "weight" => ("weight", &mut weight),
            "cap" => ("cap", &mut cap),
            _ => return Err(ConfigError::Unknown(word)),
        };
        if slot.is_some() {
            return Err(ConfigError::Duplicate(option));
        }
        if value.is_empty() {
            return Err(ConfigError::BadValue { option, value, why: "a value is required" });
        }
        *slot = Some(value);
    }

    let name = name.ok_or(ConfigError::Missing("name"))?;
    let name_ok = name.len() <= NAME_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let name = String::try_from(name).ok().filter(|_| name_ok).ok_or(ConfigError::BadValue {
        option: "name",
        value: name,
        why: "1 to 32 of A-Z a-z 0-9 _ . -",
    })?;

    let mem = mem.ok_or(ConfigError::Missing("mem"))?;
    let mem_mib = number(mem)
        .filter(|&m| m >= u64::from(MEM_MIN_MIB))
        .and_then(|m| u32::try_from(m).ok())
        .ok_or(ConfigError::BadValue { option: "mem", value: mem, why: "a number of MiB, at least 4" })?;

    let vcpus = match vcpus {
        None => 1,
        Some(v) => number(v)
            .filter(|n| (1..=u64::from(VCPUS_MAX)).contains(n))
            .ok_or(ConfigError::BadValue { option: "vcpus", value: v, why: "a number of vCPUs, 1 to 32" })?
            as u32,
    };

    let initrd = match initrd {
        None => None,
        Some(i) => Some(number(i).and_then(|n| u32::try_from(n).ok()).ok_or(ConfigError::BadValue {
            option: "initrd",
            value: i,
            why: "a module index",
        })?),
    };

    let weight = match weight {
        None => DEFAULT_WEIGHT,
        Some(w) => number(w).filter(|n| (1..=65535).contains(n)).ok_or(ConfigError::BadValue {
            option: "weight",
            value: w,
            why: "1 to 65535",
        })? as u16,
    };

    let cap = match cap {
        None => 0,
        Some(c) => number(c).filter(|&n| n <= 100 * u64::from(vcpus)).ok_or(ConfigError::BadValue {
            option: "cap",
            value: c,
            why: "a percentage of one CPU, 0 (none) to 100 per vCPU",
        })? as u16,
    };

    let cmdline = String::try_from(cmdline).map_err(|_| ConfigError::CmdlineTooLong(cmdline.len()))?;
    Ok(DomuConfig { name, mem_mib, vcpus, initrd, weight, cap, cmdline })
}

/// A decimal number: digits only (no sign, no base prefix), at most u64.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whitespace-separated words that leave the unread rest of the line
/// visible, so the text after `--` is taken verbatim.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
        let (word, rest) = s.split_at(end);
        self.rest = rest;
        Some(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::format;
    use std::string::ToString;

    fn bad(line: &str) -> (&'static str, &str) {
        match parse(line) {
            Err(ConfigError::BadValue { option, value, .. }) => (option, value),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn full_line() {
        let c =
            parse("domu name=web-1.x_y mem=256 vcpus=2 initrd=3 weight=512 cap=150 -- root=/dev/xvda1 ro")
                .unwrap();
        assert_eq!(c.name.as_str(), "web-1.x_y");
        assert_eq!((c.mem_mib, c.vcpus, c.initrd, c.weight, c.cap), (256, 2, Some(3), 512, 150));
        assert_eq!(c.cmdline.as_str(), "root=/dev/xvda1 ro");
    }

    #[test]
    fn defaults_and_any_order() {
        let c = parse("domu mem=4 name=a").unwrap();
        assert_eq!((c.vcpus, c.initrd, c.weight, c.cap), (1, None, 256, 0));
        assert_eq!(c.cmdline.as_str(), "", "no -- : empty guest command line");
        let c = parse("  domu\tname=a   mem=4 --").unwrap();
        assert_eq!(c.cmdline.as_str(), "");
        assert_eq!(parse("domu name=a mem=4 --    ").unwrap().cmdline.as_str(), "");
    }

    #[test]
    fn guest_cmdline_is_verbatim_after_the_first_double_dash() {
        let c = parse("domu name=a mem=8 --  x -- y=1  name=z  \"q\" ").unwrap();
        assert_eq!(c.cmdline.as_str(), "x -- y=1  name=z  \"q\" ");
        assert_eq!(c.name.as_str(), "a");
        let c = parse("domu name=a mem=8 -- --").unwrap();
        assert_eq!(c.cmdline.as_str(), "--");
        // `--x` is not the separator.
        assert_eq!(parse("domu name=a mem=8 --x"), Err(ConfigError::Unknown("--x")));
    }

    #[test]
    fn not_a_domu() {
        assert!(is_domu("domu name=a"));
        assert!(is_domu("domu"));
        assert!(!is_domu("domux name=a"));
        assert!(!is_domu("console=hvc0"));
        assert!(!is_domu(""));
        assert_eq!(parse("domux name=a mem=4"), Err(ConfigError::NotDomu));
        assert_eq!(parse(""), Err(ConfigError::NotDomu));
    }

    #[test]
    fn missing_unknown_duplicate() {
        assert_eq!(parse("domu"), Err(ConfigError::Missing("name")));
        assert_eq!(parse("domu name=a -- mem=4"), Err(ConfigError::Missing("mem")));
        assert_eq!(parse("domu name=a mem=4 memory=5"), Err(ConfigError::Unknown("memory=5")));
        assert_eq!(parse("domu name=a mem=4 quiet"), Err(ConfigError::Unknown("quiet")));
        assert_eq!(parse("domu name=a mem=4 name=b"), Err(ConfigError::Duplicate("name")));
        assert_eq!(parse("domu name=a mem=4 cap=1 cap=1"), Err(ConfigError::Duplicate("cap")));
        assert_eq!(bad("domu name mem=4"), ("name", ""));
        assert_eq!(bad("domu name=a mem="), ("mem", ""));
    }

    #[test]
    fn bad_values_name_the_option() {
        assert_eq!(bad("domu name=a mem=3"), ("mem", "3"));
        assert_eq!(bad("domu name=a mem=4M"), ("mem", "4M"));
        assert_eq!(bad("domu name=a mem=+8"), ("mem", "+8"));
        assert_eq!(bad("domu name=a mem=4294967296"), ("mem", "4294967296"));
        assert_eq!(bad("domu name=a mem=99999999999999999999999"), ("mem", "99999999999999999999999"));
        assert_eq!(bad("domu name=a mem=4 vcpus=0"), ("vcpus", "0"));
        assert_eq!(bad("domu name=a mem=4 vcpus=33"), ("vcpus", "33"));
        assert_eq!(bad("domu name=a mem=4 initrd=x"), ("initrd", "x"));
        assert_eq!(bad("domu name=a mem=4 weight=0"), ("weight", "0"));
        assert_eq!(bad("domu name=a mem=4 weight=65536"), ("weight", "65536"));
        assert_eq!(bad("domu name=a mem=4 cap=101"), ("cap", "101"));
        assert_eq!(bad("domu cap=201 vcpus=2 name=a mem=4"), ("cap", "201"), "checked against vcpus");
        assert_eq!(parse("domu cap=200 vcpus=2 name=a mem=4").unwrap().cap, 200);
        assert_eq!(parse("domu name=a mem=4 vcpus=32 weight=65535 initrd=0").unwrap().weight, 65535);
    }

    #[test]
    fn names() {
        let long = "n".repeat(NAME_MAX);
        assert_eq!(parse(&format!("domu name={long} mem=4")).unwrap().name.as_str(), long);
        let longer = "n".repeat(NAME_MAX + 1);
        assert_eq!(bad(&format!("domu name={longer} mem=4")).0, "name");
        for n in ["a/b", "a:b", "é", "a,b", "a=b"] {
            assert_eq!(bad(&format!("domu name={n} mem=4")), ("name", n));
        }
    }

    #[test]
    fn cmdline_length() {
        let ok = "x".repeat(CMDLINE_MAX);
        assert_eq!(parse(&format!("domu name=a mem=4 -- {ok}")).unwrap().cmdline.len(), CMDLINE_MAX);
        let long = "x".repeat(CMDLINE_MAX + 1);
        assert_eq!(parse(&format!("domu name=a mem=4 -- {long}")), Err(ConfigError::CmdlineTooLong(1024)));
    }

    #[test]
    fn errors_read_well() {
        let e = |l| parse(l).unwrap_err().to_string();
        assert_eq!(e("domu name=a mem=2"), "domu: bad value for mem: '2' (a number of MiB, at least 4)");
        assert_eq!(e("domu name=a"), "domu: mem= is missing");
        assert_eq!(e("domu name=a mem=4 x=1"), "domu: unknown option 'x=1'");
        assert_eq!(e("domu name=a name=a"), "domu: name= given more than once");
    }

    fn config() -> impl Strategy<Value = DomuConfig> {
        (
            "[A-Za-z0-9_.-]{1,32}",
            MEM_MIN_MIB..=u32::MAX,
            1..=VCPUS_MAX,
            prop::option::of(any::<u32>()),
            1u16..=65535,
            any::<u16>(),
            // Anything not starting with whitespace (that is the separator's).
            "([^\\s\\p{C}][^\\p{C}]{0,40})?",
        )
            .prop_map(|(name, mem_mib, vcpus, initrd, weight, cap, cmdline)| DomuConfig {
                name: String::try_from(name.as_str()).unwrap(),
                mem_mib,
                vcpus,
                initrd,
                weight,
                cap: (u32::from(cap) % (100 * vcpus + 1)) as u16,
                cmdline: String::try_from(cmdline.as_str()).unwrap(),
            })
    }

    proptest! {
        #[test]
        fn never_panics(line in ".{0,200}") {
            let _ = parse(&line);
            let _ = parse(&format!("domu {line}"));
        }

        #[test]
        fn option_soup_never_panics(words in prop::collection::vec(
            ("(name|mem|vcpus|initrd|weight|cap|x|--)", "[=a-z0-9. -]{0,12}"), 0..12)) {
            let line: std::string::String = words.iter().map(|(a, b)| format!("{a}={b} ")).collect();
            let _ = parse(&format!("domu {line}"));
        }

        #[test]
        fn rendered_config_parses_back(c in config()) {
            let line = c.to_string();
            prop_assert!(is_domu(&line));
            prop_assert_eq!(parse(&line), Ok(c));
        }
    }
}
