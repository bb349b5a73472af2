//! Debian version numbers (`[epoch:]upstream[-revision]`) and their ordering, per Debian
//! policy §5.6.12: epochs compare numerically, then upstream and revision alternate
//! non-digit runs (letters before non-letters, `~` before everything, even the end) and
//! digit runs compared as numbers.

use std::cmp::Ordering;
use std::fmt;

/// A parsed Debian version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// The epoch (0 when absent).
    pub epoch: u64,
    /// The upstream part.
    pub upstream: String,
    /// The Debian revision (empty when absent).
    pub revision: String,
}

/// A string that is not a Debian version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a debian version ([epoch:]upstream[-revision])")]
pub struct BadVersion(pub String);

impl std::str::FromStr for Version {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Version, BadVersion> {
        let bad = || BadVersion(s.to_string());
        let t = s.trim();
        if t.is_empty() || t.chars().any(|c| c.is_whitespace()) {
            return Err(bad());
        }
        let (epoch, rest) = match t.split_once(':') {
            Some((e, r)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                (e.parse::<u64>().map_err(|_| bad())?, r)
            }
            None => (0, t),
        };
        let (upstream, revision) = match rest.rfind('-') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if upstream.is_empty() || (rest.contains('-') && revision.is_empty()) {
            return Err(bad());
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !upstream.chars().all(ok) || !revision.chars().all(|c| ok(c) && c != '-' && c != ':') {
            return Err(bad());
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(&self.upstream, &other.upstream))
            .then_with(|| compare_part(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Weight of one character in a non-digit run (dpkg's `order()`): `~` lowest, then the
/// end of the string, then letters, then everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// Compares an upstream version or a revision the way dpkg's `verrevcmp` does.
pub fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit run.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // Digit run, compared as numbers without overflow: skip zeros, then length, then text.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let si = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let sj = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let c = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

/// A version relation operator in a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (and the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// Parses `<<`, `<=`, `=`, `>=`, `>>` (and the obsolete `<`, `>`).
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    /// Whether `have OP want` holds.
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        let c = have.cmp(want);
        match self {
            Op::Lt => c == Ordering::Less,
            Op::Le => c != Ordering::Greater,
            Op::Eq => c == Ordering::Equal,
            Op::Ge => c != Ordering::Less,
            Op::Gt => c == Ordering::Greater,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn policy_examples_order_as_dpkg_does() {
        // (a, b, ordering) from Debian policy §5.6.12 and dpkg's own test suite.
        let table = [
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.0~~", "1.0~~a", Ordering::Less),
            ("1.0~~a", "1.0~", Ordering::Less),
            ("1.0~", "1.0", Ordering::Less),
            ("1.0", "1.0a", Ordering::Less),
            ("1.0a", "1.0+", Ordering::Less),
            ("1:1.0", "2.0", Ordering::Greater),
            ("1.0-1", "1.0-1", Ordering::Equal),
            ("1.0", "1.0-0", Ordering::Equal),
            ("0:1.0", "1.0", Ordering::Equal),
            ("1.10", "1.9", Ordering::Greater),
            ("1.01", "1.1", Ordering::Equal),
            ("2.36-9+deb12u4", "2.36-9", Ordering::Greater),
            ("3.0.22-1~deb12u2", "3.0.22-1", Ordering::Less),
            ("1:9.2p1-2+deb12u10", "1:9.2p1-2+deb12u9", Ordering::Greater),
            ("7.6.q-32", "7.6.q-31", Ordering::Greater),
            ("a", "", Ordering::Greater),
            ("0.0.17+nmu1", "0.0.17", Ordering::Greater),
            ("99999999999999999999999", "1", Ordering::Greater),
        ];
        for (a, b, want) in table {
            let got = if b.is_empty() {
                compare_part(a, b)
            } else {
                v(a).cmp(&v(b))
            };
            assert_eq!(got, want, "{a} vs {b}");
        }
    }

    #[test]
    fn parse_rejects_malformed_versions() {
        for bad in ["", "a:1", "1:", "1.0-", "1 0", "1.0_1"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
        assert_eq!(v("1:2.3-4-5").revision, "5");
        assert_eq!(v("1:2.3-4-5").upstream, "2.3-4");
        assert_eq!(v("1:2.3-4").to_string(), "1:2.3-4");
    }

    #[test]
    fn ten_thousand_random_pairs_agree_with_dpkg() {
        let dpkg = std::process::Command::new("dpkg").arg("--version").output();
        if dpkg.is_err() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("dpkg is not on the host; CI must have it");
            }
            eprintln!("skipped: dpkg is not on the host");
            return;
        }
        // A small deterministic generator; characters chosen to hit every ordering rule.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let alphabet = b"0123456789~.+ab";
        let gen = |next: &mut dyn FnMut(u64) -> u64| {
            let mut s = String::new();
            if next(4) == 0 {
                s.push_str(&format!("{}:", next(3)));
            }
            s.push(char::from(b'0' + next(10) as u8));
            for _ in 0..next(6) {
                s.push(char::from(alphabet[next(alphabet.len() as u64) as usize]));
            }
            if next(2) == 0 {
                s.push('-');
                s.push(char::from(alphabet[next(12) as usize]));
                for _ in 0..next(3) {
                    s.push(char::from(alphabet[next(alphabet.len() as u64) as usize]));
                }
            }
            s
        };
        let pairs: Vec<(String, String)> = (0..10_000)
            .map(|_| (gen(&mut next), gen(&mut next)))
            .collect();
        // Two shells (one per core) running dpkg per pair, printing <, = or >.
        let run = |chunk: &[(String, String)]| {
            let mut script = String::new();
            for (a, b) in chunk {
                script.push_str(&format!(
                    "if dpkg --compare-versions '{a}' lt '{b}'; then echo '<'; elif dpkg --compare-versions '{a}' eq '{b}'; then echo '='; else echo '>'; fi\n"
                ));
            }
            let mut child = std::process::Command::new("sh")
                .arg("-s")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
            child.wait_with_output().unwrap().stdout
        };
        let (first, second) = pairs.split_at(pairs.len() / 2);
        let mut stdout = Vec::new();
        std::thread::scope(|s| {
            let h = s.spawn(|| run(second));
            stdout = run(first);
            stdout.extend(h.join().unwrap());
        });

        let lines: Vec<&str> = std::str::from_utf8(&stdout).unwrap().lines().collect();
        assert_eq!(lines.len(), pairs.len());
        for ((a, b), line) in pairs.iter().zip(lines) {
            let want = match line {
                "<" => Ordering::Less,
                "=" => Ordering::Equal,
                _ => Ordering::Greater,
            };
            assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
        }
    }
}
