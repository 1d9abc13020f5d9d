// SPDX-License-Identifier: MIT OR Apache-2.0
//! The serial console as lines.
//!
//! QEMU's `-serial stdio` gives raw bytes: `\r\n` line ends, GRUB's ANSI screen-control
//! sequences (the first line of every boot starts with `ESC[H ESC[J ESC[1;1H`), maybe
//! invalid UTF-8. Expectations are matched against clean lines: escape sequences and
//! control characters removed (a tab stays), invalid UTF-8 replaced.

/// Cleans one line of serial output (without its `\n`).
pub fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC/DCS/etc.: up to BEL or ST (ESC \).
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                // Character-set selection: ESC ( B and friends.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                // Any other two-byte escape (ESC 7, ESC c, ...).
                _ => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Splits a byte stream into lines. Feed it chunks; it returns the complete lines and
/// keeps the rest until the next `\n` or [`LineSplitter::finish`].
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Appends `chunk` and returns the raw bytes of each line it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                lines.push(std::mem::take(&mut self.pending));
            } else {
                self.pending.push(b);
            }
        }
        lines
    }

    /// The incomplete last line so far (a prompt, say).
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: the incomplete last line, if it has anything in it.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.pending);
        if rest.is_empty() { None } else { Some(rest) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_cr_and_grub_escapes() {
        assert_eq!(
            clean_line(b"\x1b[H\x1b[J\x1b[1;1H(XEN) Xen version 4.17.7 (Debian)\r"),
            "(XEN) Xen version 4.17.7 (Debian)"
        );
        assert_eq!(clean_line(b"\rerror: no multiboot header found."), "error: no multiboot header found.");
        assert_eq!(clean_line(b"\x1b[?25h   Minimal BASH-like"), "   Minimal BASH-like");
        assert_eq!(clean_line(b"\x1b]0;title\x07x\x1b]2;t\x1b\\y"), "xy");
        assert_eq!(clean_line(b"\x1b(Bcolour \x1b[1;31mred\x1b[0m"), "colour red");
        assert_eq!(clean_line(b"a\tb\x08c\x00"), "a\tbc");
        assert_eq!(clean_line(b"bad \xff utf8"), "bad \u{fffd} utf8");
        assert_eq!(clean_line(b"trailing escape \x1b"), "trailing escape ");
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"hel").is_empty());
        assert_eq!(s.push(b"lo\r\nwor"), vec![b"hello\r".to_vec()]);
        assert_eq!(s.pending(), b"wor");
        assert_eq!(s.push(b"ld\n\nlogin: "), vec![b"world".to_vec(), b"".to_vec()]);
        assert_eq!(s.finish(), Some(b"login: ".to_vec()));
        assert_eq!(s.finish(), None);
    }
}
