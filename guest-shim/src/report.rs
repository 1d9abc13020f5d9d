// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test guests' verdicts, in the format of DESIGN.md 4.4:
//!
//! ```text
//! RESULT <test> PASS
//! RESULT <test> FAIL: why
//! RESULT <test> SKIP: why
//! SUMMARY pass=N fail=N skip=N
//! ```
//!
//! [`Tests`] prints each line as a check is made and counts them; [`Tests::finish`]
//! prints the summary and powers the domain off (the FAIL lines carry the verdict, so
//! the exit is the same either way). Dropping a `Tests` without finishing prints a
//! FAIL, so a forgotten `finish` cannot pass silently. [`expect_err`], [`all`],
//! [`need`], [`is_trap`] and [`no_trap`] are the small helpers most test guests want.
//!
//! ```no_run
//! use guest_shim::{Outcome, Tests};
//!
//! fn start(si: &'static guest_shim::StartInfo) {
//!     let mut t = Tests::new();
//!     t.check("start-info-aligned", si as *const _ as u64 % 4096 == 0);
//!     t.check_eq("nr-pt-frames-nonzero", si.nr_pt_frames > 0, true);
//!     t.check("console-io", guest_shim::hypercalls().console_write(b""));
//!     t.check("magic", Outcome::ensure(
//!         si.magic_str().starts_with(b"xen-3.0-x86_64"),
//!         format_args!("magic {:?}", core::str::from_utf8(si.magic_str())),
//!     ));
//!     t.skip("grant-tables", "not written yet");
//!     t.finish()
//! }
//! ```

use core::fmt::{self, Debug, Display, Write};

use pv_abi::Errno;

use crate::traps::{self, Trap};

/// Longest FAIL/SKIP reason kept (longer ones are cut, ending in `...`).
pub const WHY_MAX: usize = 200;

/// A string of at most `N` bytes built with `write!`; what does not fit is cut at a
/// character boundary and the text ends in `...`.
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    buf: [u8; N],
    len: usize,
    cut: bool,
}

impl<const N: usize> FixedStr<N> {
    /// An empty string.
    pub const fn new() -> Self {
        Self { buf: [0; N], len: 0, cut: false }
    }

    /// `args`, formatted and cut to fit.
    pub fn format(args: fmt::Arguments<'_>) -> Self {
        let mut s = Self::new();
        let _ = s.write_fmt(args);
        s
    }

    /// The text (with `...` at the end if it was cut).
    pub fn as_str(&self) -> &str {
        // Only whole characters are ever copied in (see `write_str`).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }

    /// Whether text was cut.
    pub fn was_cut(&self) -> bool {
        self.cut
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for FixedStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Ok(());
        }
        const ELLIPSIS: &str = "...";
        if self.len + s.len() <= N {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        // Keep what fits before "...", on a character boundary.
        let room = N.saturating_sub(ELLIPSIS.len());
        if self.len > room {
            self.len = room;
            while self.len > 0 && !is_char_start(self.buf[self.len]) {
                self.len -= 1;
            }
        } else {
            let mut take = room - self.len;
            while take > 0 && !s.is_char_boundary(take) {
                take -= 1;
            }
            self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
            self.len += take;
        }
        let tail = ELLIPSIS.len().min(N - self.len);
        self.buf[self.len..self.len + tail].copy_from_slice(&ELLIPSIS.as_bytes()[..tail]);
        self.len += tail;
        self.cut = true;
        Ok(())
    }
}

fn is_char_start(b: u8) -> bool {
    (b as i8) >= -0x40
}

impl<const N: usize> Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Debug::fmt(self.as_str(), f)
    }
}

/// A FAIL or SKIP reason.
pub type Why = FixedStr<WHY_MAX>;

/// The verdict of one check.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The check held.
    Pass,
    /// The check did not hold, and why.
    Fail(Why),
    /// The check could not be made, and why.
    Skip(Why),
}

impl Outcome {
    /// A failure with a formatted reason: `Outcome::fail(format_args!("got {x}"))`.
    pub fn fail(why: impl Display) -> Self {
        Self::Fail(Why::format(format_args!("{why}")))
    }

    /// A skip with a formatted reason.
    pub fn skip(why: impl Display) -> Self {
        Self::Skip(Why::format(format_args!("{why}")))
    }

    /// Pass if `cond`, else fail with `why`.
    pub fn ensure(cond: bool, why: impl Display) -> Self {
        if cond { Self::Pass } else { Self::fail(why) }
    }

    /// Pass if `actual == expected`, else fail showing both (`{:#x?}`: integers in hex).
    pub fn eq<T: PartialEq + Debug>(actual: T, expected: T) -> Self {
        if actual == expected {
            Self::Pass
        } else {
            Self::Fail(Why::format(format_args!("got {actual:#x?}, expected {expected:#x?}")))
        }
    }

    /// Pass if `r` is `Ok(expected)`; else fail with the error or both values.
    pub fn ok_eq<T: PartialEq + Debug, E: Display>(r: Result<T, E>, expected: T) -> Self {
        match r {
            Ok(actual) => Self::eq(actual, expected),
            Err(e) => Self::fail(e),
        }
    }

    /// Whether this is a pass.
    pub fn passed(&self) -> bool {
        matches!(self, Self::Pass)
    }
}

/// Pass if `r` failed with exactly `want`; else fail saying what it did instead (a
/// negative check of a hypercall's error code).
pub fn expect_err<T: Debug>(r: Result<T, Errno>, want: Errno) -> Outcome {
    match r {
        Err(e) if e == want => Outcome::Pass,
        Err(e) => Outcome::fail(format_args!("got {e}, expected {want}")),
        Ok(v) => Outcome::fail(format_args!("succeeded ({v:?}), expected {want}")),
    }
}

/// The first failing (or skipped) outcome of several, or a pass: one check made of
/// several conditions.
pub fn all(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
    outcomes.into_iter().find(|o| !o.passed()).unwrap_or(Outcome::Pass)
}

/// A result the rest of the run depends on: `Ok` gives its value (and prints
/// nothing); `Err` fails check `name` with the error, prints the summary and powers
/// the domain off, since nothing after it could run.
pub fn need<T, E: Display>(t: &mut Tests, name: &str, r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            t.fail(name, e);
            t.summary();
            crate::poweroff()
        }
    }
}

/// Pass if `r` (from [`traps::catch`]) is the exception `vector`
/// with error code `error` at `rip`, and [`Trap::cr2`] `cr2` (`None`: 0, as for any
/// exception but #PF).
pub fn is_trap<T>(r: &Result<T, Trap>, vector: u8, error: u64, rip: u64, cr2: Option<u64>) -> Outcome {
    match r {
        Ok(_) => Outcome::fail(format_args!("no exception, expected {}", traps::name(vector as u64))),
        Err(trap) => {
            let want = (vector, error, rip, cr2.unwrap_or(0));
            let got = (trap.vector(), trap.error_code(), trap.rip(), trap.cr2);
            Outcome::ensure(
                got == want,
                format_args!(
                    "got {trap}, expected {} error {error:#x} at rip {rip:#x} cr2 {:#x}",
                    traps::name(vector as u64),
                    want.3
                ),
            )
        }
    }
}

/// Pass if `r` (from [`traps::catch`]) completed without an
/// exception.
pub fn no_trap<T>(r: &Result<T, Trap>) -> Outcome {
    match r {
        Ok(_) => Outcome::Pass,
        Err(trap) => Outcome::fail(format_args!("unexpected {trap}")),
    }
}

/// `true` passes; `false` fails with "condition is false" (prefer
/// [`Outcome::ensure`] to say more).
impl From<bool> for Outcome {
    fn from(ok: bool) -> Self {
        Outcome::ensure(ok, "condition is false")
    }
}

/// `Ok` passes; `Err(e)` fails with `e`'s `Display`.
impl<T, E: Display> From<Result<T, E>> for Outcome {
    fn from(r: Result<T, E>) -> Self {
        match r {
            Ok(_) => Outcome::Pass,
            Err(e) => Outcome::fail(e),
        }
    }
}

/// Counts of verdicts so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Checks that passed.
    pub pass: u32,
    /// Checks that failed.
    pub fail: u32,
    /// Checks that were skipped.
    pub skip: u32,
}

/// A test run: prints one `RESULT` line per check and counts them. See the
/// [module documentation](self).
///
/// `W` is where the lines go: the console ([`console::Writer`](crate::console::Writer))
/// in a guest, a `String` in host unit tests.
#[must_use = "a test run must end with `finish()` (or `summary()`)"]
pub struct Tests<W: Write = crate::console::Writer> {
    out: W,
    counts: Counts,
    finished: bool,
}

impl Tests<crate::console::Writer> {
    /// A run printing to the console.
    pub fn new() -> Self {
        Self::with_writer(crate::console::Writer)
    }

    /// Prints the `SUMMARY` line and powers the domain off.
    pub fn finish(mut self) -> ! {
        self.summary();
        crate::poweroff()
    }
}

impl Default for Tests<crate::console::Writer> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Write> Tests<W> {
    /// A run printing to `out`.
    pub fn with_writer(out: W) -> Self {
        Self { out, counts: Counts::default(), finished: false }
    }

    /// Records and prints the outcome of check `name` (a `bool`, a `Result` or an
    /// [`Outcome`]); returns whether it passed.
    ///
    /// `name` is one word (`[A-Za-z0-9_.:/-]`): others are printed with `_` in place
    /// of the bad characters and the check fails, so a line is never misparsed.
    pub fn check(&mut self, name: &str, outcome: impl Into<Outcome>) -> bool {
        let mut outcome = outcome.into();
        if !valid_name(name) {
            outcome = Outcome::fail(format_args!("bad test name {name:?}"));
        }
        let shown = ShownName(name);
        let _ = match &outcome {
            Outcome::Pass => {
                self.counts.pass += 1;
                writeln!(self.out, "RESULT {shown} PASS")
            }
            Outcome::Fail(why) => {
                self.counts.fail += 1;
                writeln!(self.out, "RESULT {shown} FAIL: {}", OneLine(why.as_str()))
            }
            Outcome::Skip(why) => {
                self.counts.skip += 1;
                writeln!(self.out, "RESULT {shown} SKIP: {}", OneLine(why.as_str()))
            }
        };
        outcome.passed()
    }

    /// [`check`](Self::check) with [`Outcome::eq`].
    pub fn check_eq<T: PartialEq + Debug>(&mut self, name: &str, actual: T, expected: T) -> bool {
        self.check(name, Outcome::eq(actual, expected))
    }

    /// Records a passing check.
    pub fn pass(&mut self, name: &str) {
        self.check(name, Outcome::Pass);
    }

    /// Records a failing check.
    pub fn fail(&mut self, name: &str, why: impl Display) {
        self.check(name, Outcome::fail(why));
    }

    /// Records a check that could not be made.
    pub fn skip(&mut self, name: &str, why: impl Display) {
        self.check(name, Outcome::skip(why));
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Prints the `SUMMARY` line and ends the run (without shutting down); returns the
    /// counts.
    pub fn summary(&mut self) -> Counts {
        let Counts { pass, fail, skip } = self.counts;
        let _ = writeln!(self.out, "SUMMARY pass={pass} fail={fail} skip={skip}");
        self.finished = true;
        self.counts
    }

    /// The writer (after [`summary`](Self::summary), to inspect what was printed).
    pub fn into_writer(mut self) -> W
    where
        W: Default,
    {
        if !self.finished {
            self.summary();
        }
        core::mem::take(&mut self.out)
    }
}

impl<W: Write> Drop for Tests<W> {
    fn drop(&mut self) {
        if !self.finished {
            self.fail("tests-finished", "the run ended without Tests::finish()");
            self.summary();
        }
    }
}

/// Whether `name` is one printable word.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(name_byte_ok)
}

fn name_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-')
}

/// A test name with bad characters shown as `_` (an empty one as `_`).
struct ShownName<'a>(&'a str);

impl Display for ShownName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_char('_');
        }
        for c in self.0.chars() {
            let ok = c.is_ascii() && name_byte_ok(c as u8);
            f.write_char(if ok { c } else { '_' })?;
        }
        Ok(())
    }
}

/// A reason with line breaks shown as spaces, so a verdict stays on its line.
struct OneLine<'a>(&'a str);

impl Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            f.write_char(if c == '\n' || c == '\r' { ' ' } else { c })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn run(f: impl FnOnce(&mut Tests<String>)) -> String {
        let mut t = Tests::with_writer(String::new());
        f(&mut t);
        t.into_writer()
    }

    #[test]
    fn expect_err_and_all() {
        assert!(expect_err::<()>(Err(Errno::EINVAL), Errno::EINVAL).passed());
        let wrong = expect_err::<()>(Err(Errno::EPERM), Errno::EINVAL);
        assert!(matches!(wrong, Outcome::Fail(ref w) if w.as_str().starts_with("got ")));
        assert!(
            matches!(expect_err(Ok(7), Errno::EINVAL), Outcome::Fail(ref w) if w.as_str().contains("(7)"))
        );
        assert!(all([Outcome::Pass, Outcome::Pass]).passed());
        assert!(matches!(all([Outcome::Pass, Outcome::fail("x"), Outcome::skip("y")]), Outcome::Fail(_)));
        assert!(all([]).passed());
    }

    #[test]
    fn lines_and_summary() {
        let out = run(|t| {
            assert!(t.check("a", true));
            assert!(!t.check("b", false));
            assert!(!t.check("c", Err::<(), _>("no luck")));
            assert!(t.check("d", Ok::<u8, &str>(3)));
            t.skip("e", "later");
            assert!(!t.check_eq("f", 0xe02b_u16, 0xe033));
            assert_eq!(t.counts(), Counts { pass: 2, fail: 3, skip: 1 });
        });
        assert_eq!(
            out,
            "RESULT a PASS\n\
             RESULT b FAIL: condition is false\n\
             RESULT c FAIL: no luck\n\
             RESULT d PASS\n\
             RESULT e SKIP: later\n\
             RESULT f FAIL: got 0xe02b, expected 0xe033\n\
             SUMMARY pass=2 fail=3 skip=1\n"
        );
    }

    #[test]
    fn bad_names_fail() {
        let out = run(|t| {
            assert!(!t.check("two words", true));
            assert!(!t.check("", true));
        });
        assert!(out.starts_with("RESULT two_words FAIL: bad test name \"two words\"\n"));
        assert!(out.contains("RESULT _ FAIL: bad test name \"\"\n"));
        assert!(out.ends_with("SUMMARY pass=0 fail=2 skip=0\n"));
    }

    #[test]
    fn reasons_stay_on_one_line() {
        let out = run(|t| t.fail("x", "line one\nline two"));
        assert!(out.starts_with("RESULT x FAIL: line one line two\n"));
    }

    #[test]
    fn drop_without_finish_fails() {
        use core::cell::RefCell;
        use std::rc::Rc;
        /// A writer that survives the `Tests` it is moved into.
        #[derive(Default, Clone)]
        struct Shared(Rc<RefCell<String>>);
        impl Write for Shared {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.borrow_mut().push_str(s);
                Ok(())
            }
        }
        let shared = Shared::default();
        {
            let mut t = Tests::with_writer(shared.clone());
            t.pass("a");
        }
        assert_eq!(
            *shared.0.borrow(),
            "RESULT a PASS\n\
             RESULT tests-finished FAIL: the run ended without Tests::finish()\n\
             SUMMARY pass=1 fail=1 skip=0\n"
        );
    }

    #[test]
    fn fixed_str_cuts_on_char_boundaries() {
        let s = FixedStr::<8>::format(format_args!("{}", "abc"));
        assert_eq!(s.as_str(), "abc");
        assert!(!s.was_cut());
        let s = FixedStr::<8>::format(format_args!("{}", "abcdefghijkl"));
        assert_eq!(s.as_str(), "abcde...");
        assert!(s.was_cut());
        // "é" is two bytes: never split.
        let s = FixedStr::<8>::format(format_args!("abcd{}", "ééé"));
        assert_eq!(s.as_str(), "abcd...");
        let s = FixedStr::<8>::format(format_args!("{}{}", "abcdef", "ghijk"));
        assert_eq!(s.as_str(), "abcde...");
        let s = FixedStr::<2>::format(format_args!("abc"));
        assert_eq!(s.as_str(), "..");
    }

    #[test]
    fn outcome_helpers() {
        assert!(Outcome::eq(1, 1).passed());
        assert!(Outcome::ok_eq(Ok::<_, &str>(2), 2).passed());
        match Outcome::ok_eq(Err::<u8, _>("EINVAL"), 2) {
            Outcome::Fail(why) => assert_eq!(why.as_str(), "EINVAL"),
            o => panic!("{o:?}"),
        }
        assert!(Outcome::ensure(true, "x").passed());
        match Outcome::ensure(false, format_args!("n={}", 5)) {
            Outcome::Fail(why) => assert_eq!(why.as_str(), "n=5"),
            o => panic!("{o:?}"),
        }
        match Outcome::skip("later") {
            Outcome::Skip(why) => assert_eq!(why.as_str(), "later"),
            o => panic!("{o:?}"),
        }
    }
}
