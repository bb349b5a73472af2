//! APK version strings and their order, as apk-package(5) and apk-tools' `version.c` define
//! them: `number{.number}...{letter}{_suffix{number}}...{-r#}` with suffixes ordered
//! `alpha < beta < pre < rc < (none) < cvs < svn < git < hg < p`. Invalid tails compare the
//! way apk-tools compares them (the valid prefix decides, then token kinds), so every input
//! has an order and nothing panics. Also the constraint operators of dependencies
//! (`<`, `<=`, `=`, `>=`, `>`, `~`).

use std::cmp::Ordering;

/// What kind of token comes next while scanning a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tok {
    Invalid,
    DigitOrZero,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
}

const PRE_SUFFIXES: [&[u8]; 4] = [b"alpha", b"beta", b"pre", b"rc"];
const POST_SUFFIXES: [&[u8]; 5] = [b"cvs", b"svn", b"git", b"hg", b"p"];

/// A scanner over one version string.
struct Scan<'a> {
    s: &'a [u8],
    tok: Tok,
}

impl Scan<'_> {
    /// Decides the kind of the token starting at the cursor, consuming a separator.
    fn next_kind(&mut self) {
        let prev = self.tok;
        let c = self.s.first().copied().unwrap_or(0);
        let mut n = Tok::Invalid;
        if self.s.is_empty() || c == 0 {
            n = Tok::End;
        } else if matches!(prev, Tok::Digit | Tok::DigitOrZero) && c.is_ascii_lowercase() {
            n = Tok::Letter;
        } else if prev == Tok::Letter && c.is_ascii_digit() {
            n = Tok::Digit;
        } else if prev == Tok::Suffix && c.is_ascii_digit() {
            n = Tok::SuffixNo;
        } else {
            match c {
                b'.' => n = Tok::DigitOrZero,
                b'_' => n = Tok::Suffix,
                b'-' if self.s.get(1) == Some(&b'r') => {
                    n = Tok::RevisionNo;
                    self.s = &self.s[1..];
                }
                _ => {}
            }
            self.s = &self.s[1..];
        }
        if n < prev {
            let allowed = (n == Tok::DigitOrZero && prev == Tok::Digit)
                || (n == Tok::Suffix && prev == Tok::SuffixNo)
                || (n == Tok::Digit && prev == Tok::Letter);
            if !allowed {
                n = Tok::Invalid;
            }
        }
        self.tok = n;
    }

    /// Reads the value of the current token and moves to the next one.
    fn value(&mut self) -> i64 {
        if self.s.is_empty() {
            self.tok = Tok::End;
            return 0;
        }
        let mut i = 0usize;
        let mut v: i64 = 0;
        let mut forced: Option<Tok> = None;
        match self.tok {
            Tok::DigitOrZero if self.s[0] == b'0' => {
                // Leading zeros (apk-tools 2.14): skip all but the last zero and count them
                // as a negative token ("1.01" < "1.1", "1.001" < "1.01"); the remaining
                // digits follow as a number token.
                while i + 1 < self.s.len() && self.s[i + 1] == b'0' {
                    i += 1;
                }
                forced = Some(Tok::Digit);
                v = -(i as i64);
            }
            Tok::DigitOrZero | Tok::Digit | Tok::SuffixNo | Tok::RevisionNo => {
                while i < self.s.len() && self.s[i].is_ascii_digit() {
                    v = v
                        .saturating_mul(10)
                        .saturating_add(i64::from(self.s[i] - b'0'));
                    i += 1;
                }
                if i >= 18 {
                    // Too many digits for apk-tools' 64-bit tokens: invalid.
                    self.tok = Tok::Invalid;
                    return -1;
                }
            }
            Tok::Letter => {
                v = i64::from(self.s[0]);
                i = 1;
            }
            Tok::Suffix => {
                if let Some(p) = PRE_SUFFIXES.iter().position(|p| self.s.starts_with(p)) {
                    i = PRE_SUFFIXES[p].len();
                    v = p as i64 - PRE_SUFFIXES.len() as i64;
                } else if let Some(p) = POST_SUFFIXES.iter().position(|p| self.s.starts_with(p)) {
                    i = POST_SUFFIXES[p].len();
                    v = p as i64;
                } else {
                    self.tok = Tok::Invalid;
                    return -1;
                }
            }
            Tok::Invalid | Tok::End => {
                self.tok = Tok::Invalid;
                return -1;
            }
        }
        self.s = &self.s[i..];
        if self.s.is_empty() {
            self.tok = Tok::End;
        } else if let Some(t) = forced {
            self.tok = t;
        } else {
            self.next_kind();
        }
        v
    }
}

/// True when `v` is a well-formed APK version.
pub fn is_valid(v: &str) -> bool {
    let mut s = Scan {
        s: v.as_bytes(),
        tok: Tok::Digit,
    };
    if v.is_empty() {
        return false;
    }
    while !matches!(s.tok, Tok::End | Tok::Invalid) {
        s.value();
    }
    s.tok == Tok::End
}

/// Compares two versions; with `fuzzy`, a version equals any longer version it prefixes
/// (`1.2 ~ 1.2.3`).
pub fn compare_fuzzy(a: &str, b: &str, fuzzy: bool) -> Ordering {
    let mut x = Scan {
        s: a.as_bytes(),
        tok: Tok::Digit,
    };
    let mut y = Scan {
        s: b.as_bytes(),
        tok: Tok::Digit,
    };
    let (mut xv, mut yv) = (0i64, 0i64);
    while x.tok == y.tok && !matches!(x.tok, Tok::End | Tok::Invalid) && xv == yv {
        xv = x.value();
        yv = y.value();
    }
    match xv.cmp(&yv) {
        Ordering::Equal => {}
        o => return o,
    }
    if x.tok == y.tok || fuzzy {
        return Ordering::Equal;
    }
    // Equal so far: the longer one is greater unless what follows is a pre-release suffix.
    if x.tok == Tok::Suffix {
        let mut t = Scan { s: x.s, tok: x.tok };
        if t.value() < 0 {
            return Ordering::Less;
        }
    }
    if y.tok == Tok::Suffix {
        let mut t = Scan { s: y.s, tok: y.tok };
        if t.value() < 0 {
            return Ordering::Greater;
        }
    }
    // A later token kind (e.g. the end) sorts lower.
    y.tok.cmp(&x.tok)
}

/// Compares two versions in apk order.
pub fn compare(a: &str, b: &str) -> Ordering {
    compare_fuzzy(a, b, false)
}

/// A version constraint operator of a dependency atom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `<`
    Less,
    /// `<=`
    LessEq,
    /// `=`
    Eq,
    /// `>=`
    GreaterEq,
    /// `>`
    Greater,
    /// `~`: equal on the given prefix (`~1.2` matches `1.2.3`).
    Fuzzy,
    /// `>~`: greater, or equal on the prefix.
    GreaterFuzzy,
    /// `<~`: less, or equal on the prefix.
    LessFuzzy,
}

impl Op {
    /// Parses an operator as written in `D:` and `.PKGINFO` (`<`, `<=`, `=`, `>=`, `>`,
    /// `~`, `=~`, `>~`, `<~`).
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Less,
            "<=" => Op::LessEq,
            "=" => Op::Eq,
            ">=" => Op::GreaterEq,
            ">" => Op::Greater,
            "~" | "=~" | "~=" => Op::Fuzzy,
            ">~" | "~>" => Op::GreaterFuzzy,
            "<~" | "~<" => Op::LessFuzzy,
            _ => return None,
        })
    }

    /// The operator as apk writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Less => "<",
            Op::LessEq => "<=",
            Op::Eq => "=",
            Op::GreaterEq => ">=",
            Op::Greater => ">",
            Op::Fuzzy => "~",
            Op::GreaterFuzzy => ">~",
            Op::LessFuzzy => "<~",
        }
    }

    /// True when version `have` satisfies `<op> want`.
    pub fn matches(self, have: &str, want: &str) -> bool {
        let fuzzy = matches!(self, Op::Fuzzy | Op::GreaterFuzzy | Op::LessFuzzy);
        let o = compare_fuzzy(have, want, fuzzy);
        match self {
            Op::Less => o == Ordering::Less,
            Op::LessEq | Op::LessFuzzy => o != Ordering::Greater,
            Op::Eq | Op::Fuzzy => o == Ordering::Equal,
            Op::GreaterEq | Op::GreaterFuzzy => o != Ordering::Less,
            Op::Greater => o == Ordering::Greater,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample of apk-tools' `test/version.data` (each line `a <op> b`), restated.
    const VECTORS: &str = "\
2.34 > 0.1.0_alpha
23_foo > 4_beta
1.0 < 1.0bc
0.1.0_alpha = 0.1.0_alpha
0.1.0_alpha < 0.1.3_alpha
0.1.0_alpha2 > 0.1.0_alpha
0.1.0_alpha < 2.2.39-r1
1.0.4-r3 < 1.0.4-r4
1.1 > 1.1_alpha1
1.2.1 > 1.2
1.2 < 1.3_alpha
1.3_alpha < 1.3_alpha2
0.8_beta4 < 4.8-r1
3.10.18-r1 > 2.3.0b-r1
2.3.0b-r1 < 2.3.0b-r2
0.12.3 > 0.12
0.12 < 0.13_beta1
3.1_p16 < 3.1_p17
1.06-r6 < 006
006 > 1.0.0
1.2.2-r1 > 1.2.2
2.59 < 20050718-r1
3.9.8-r5 > 2.01.01_alpha10
1.0 > 0.99.3.20040818
1.39 > 1.00_beta2
2.8.9-r1 > 2.8.9
20060720 > 3.0.20060720
3.0.20060720 < 20060720
2.5.1-r8 < 2.5.1a-r1
1.3.5-r10 > 1.3.5-r8
20040401 > 2.0.0_rc3-r1
3.0.0-r2 < 021109-r3
0.9.16-r1 < 3.9_pre20060124
1.1.7 < 6b-r7
0.10.0 < 0.10.1_rc1
1.0-r1 > 0.15.1b
0.15.1b-r2 > 0.15.1b
22.7-r1 < 22.7.3-r1
22.7 > 2.1_pre20
2.10.1 > 02.08.01b
3.81 > 1.6d
1.6d > 1.2.07.8
1.07-r1 < 1.07.5
20061003 > 0.1_pre20060810
0.59s-r11 < 0.65
4.20 > 0.20070118
0.20070118 < 0.20070207_rc1
4.5_p1-r1 > 4.5_p1
4.5_p1 > 0.9.8c-r1
0.9.8c-r1 < 0.9.8d
2.2.3-r2 < 013
1.7 < 1.7b
1.8.5 < 1.8.5_p2
2.9.11_pre20051101-r3 > 2.9.11_pre20051101
1.6.8_p12-r1 > 1.6.8_p9-r2
0.9.28-r2 < 0.9.28.1
0.9.28.1 < 087-r1
104-r11 > 104-r9
20040406-r1 > 2.12r-r4
2.12r-r4 < 2.12r-r5
7.0.17 < 7.0.174
1.2.9.1-r1 > 1.2.9.1
1.3-r0 < 1.3.1-r0
1.3_pre1-r1 < 1.3.2
1.0_p10-r0 > 1.0_p9-r0
0.1.0_alpha_pre2 < 0.1.0_alpha
1.0.0_pre20191002222144-r0 < 1.0.0_pre20210530193627-r0
6.0_pre1 < 6.0
6.1_pre1 < 6.1
6.0_p1 > 6.0
6.1_p1 > 6.1
";

    #[test]
    fn apk_tools_version_vectors() {
        for line in VECTORS.lines() {
            let mut it = line.split_whitespace();
            let (a, op, b) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            let want = match op {
                "<" => Ordering::Less,
                "=" => Ordering::Equal,
                ">" => Ordering::Greater,
                _ => unreachable!(),
            };
            assert_eq!(compare(a, b), want, "{line}");
            assert_eq!(compare(b, a), want.reverse(), "{line} (reversed)");
        }
    }

    /// The whole apk-tools test file, when a copy is at `$APK_VERSION_DATA` (not shipped).
    #[test]
    fn apk_tools_version_data_file() {
        let Ok(path) = std::env::var("APK_VERSION_DATA") else {
            return;
        };
        let text = std::fs::read_to_string(path).unwrap();
        let mut n = 0;
        for line in text.lines() {
            let line = line.split('#').next().unwrap().trim();
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 3 {
                continue;
            }
            let want = match f[1] {
                "<" => Ordering::Less,
                "=" => Ordering::Equal,
                ">" => Ordering::Greater,
                _ => continue,
            };
            assert_eq!(compare(f[0], f[2]), want, "{line}");
            n += 1;
        }
        assert!(n > 700);
    }

    #[test]
    fn suffix_order_and_revisions() {
        let order = [
            "1.0_alpha",
            "1.0_beta",
            "1.0_pre",
            "1.0_rc",
            "1.0",
            "1.0-r1",
            "1.0_cvs",
            "1.0_svn",
            "1.0_git",
            "1.0_hg",
            "1.0_p",
            "1.0_p1",
            "1.0a",
            "1.0b",
            "1.0.1",
        ];
        for w in order.windows(2) {
            assert_eq!(compare(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
        assert_eq!(compare("10.0_p1-r0", "9.9_p1-r9"), Ordering::Greater);
    }

    #[test]
    fn validity() {
        for v in ["1", "1.2.3", "1.2a_rc3-r4", "9.8_p1-r0", "2024.01.01"] {
            assert!(is_valid(v), "{v}");
        }
        for v in ["", "1.0bc", "1.0_foo", "1.0-x", "1.0-"] {
            assert!(!is_valid(v), "{v}");
        }
    }

    #[test]
    fn operators() {
        assert!(Op::GreaterEq.matches("1.2-r0", "1.2"));
        assert!(!Op::Less.matches("1.2", "1.2"));
        assert!(Op::Fuzzy.matches("1.2.3-r4", "1.2"));
        assert!(!Op::Fuzzy.matches("1.3", "1.2"));
        assert!(Op::Eq.matches("3.3.2-r0", "3.3.2-r0"));
        assert!(!Op::Eq.matches("3.3.2-r1", "3.3.2-r0"));
        assert_eq!(Op::parse(">="), Some(Op::GreaterEq));
        assert_eq!(Op::parse("=>"), None);
    }

    #[test]
    fn odd_input_never_panics() {
        for v in [
            "-",
            "_",
            ".",
            "-r",
            "1-r",
            "1_",
            "0000",
            "\u{0}",
            "1.\u{0}2",
            "99999999999999999999999",
        ] {
            let _ = compare(v, "1.0");
            let _ = compare("1.0", v);
            let _ = is_valid(v);
        }
    }
}
