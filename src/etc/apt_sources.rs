//! apt sources: deb822 `*.sources` files and one-line `sources.list` entries
//! (`deb [opt=value ...] URI SUITE [COMPONENT...]`), with `Signed-By` as paths,
//! fingerprints or an inline armoured key block.

/// Where a source's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedBy {
    /// Keyring files.
    Paths(Vec<String>),
    /// Fingerprints to pick from the default trusted keys.
    Fingerprints(Vec<String>),
    /// An armoured key block written inline.
    Inline(String),
}

/// One source: every URI × suite combination is a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// Archive root URIs.
    pub uris: Vec<String>,
    /// Suites (`bookworm`, `bookworm-updates`, or an exact path ending in `/`).
    pub suites: Vec<String>,
    /// Components.
    pub components: Vec<String>,
    /// `Signed-By`, if any.
    pub signed_by: Option<SignedBy>,
    /// `Architectures` restriction, if any.
    pub architectures: Vec<String>,
}

/// A sources file that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: line {line}: {why}")]
pub struct SourcesError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

fn parse_signed_by(v: &str) -> Option<SignedBy> {
    if v.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        // deb822 folding: a line of `.` is an empty line.
        let text = v
            .lines()
            .map(|l| {
                let l = l.trim();
                if l == "." {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        return Some(SignedBy::Inline(text));
    }
    let items: Vec<String> = v
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if items.is_empty() {
        None
    } else if items
        .iter()
        .all(|i| i.starts_with('/') || i.starts_with('.'))
    {
        Some(SignedBy::Paths(items))
    } else {
        Some(SignedBy::Fingerprints(items))
    }
}

/// Parses a deb822 `.sources` file; disabled entries (`Enabled: no`) and non-`deb` types
/// are dropped.
pub fn parse_deb822(file: &str, text: &str) -> Result<Vec<AptSource>, SourcesError> {
    let mut out = Vec::new();
    // Paragraphs of (name, value) with continuation lines kept.
    let mut para: Vec<(String, String)> = Vec::new();
    let mut start = 1;
    let mut flush = |para: &mut Vec<(String, String)>, line: usize| -> Result<(), SourcesError> {
        if para.is_empty() {
            return Ok(());
        }
        let get = |n: &str| {
            para.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        };
        let words = |n: &str| -> Vec<String> {
            get(n)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let enabled = get("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        let types = words("Types");
        if enabled && types.iter().any(|t| t == "deb") {
            let s = AptSource {
                uris: words("URIs"),
                suites: words("Suites"),
                components: words("Components"),
                signed_by: get("Signed-By").and_then(parse_signed_by),
                architectures: words("Architectures"),
            };
            if s.uris.is_empty() || s.suites.is_empty() {
                return Err(SourcesError {
                    file: file.into(),
                    line,
                    why: "a deb entry needs URIs and Suites".into(),
                });
            }
            out.push(s);
        }
        para.clear();
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            flush(&mut para, start)?;
            start = i + 2;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            match para.last_mut() {
                Some(last) => {
                    last.1.push('\n');
                    last.1.push_str(line);
                }
                None => {
                    return Err(SourcesError {
                        file: file.into(),
                        line: i + 1,
                        why: "continuation line without a field".into(),
                    })
                }
            }
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(SourcesError {
                file: file.into(),
                line: i + 1,
                why: format!("expected `Field: value`, found {line:?}"),
            });
        };
        para.push((k.trim().to_string(), v.trim().to_string()));
    }
    flush(&mut para, start)?;
    Ok(out)
}

/// Parses one-line entries (a `sources.list` file, or a `--apt-source` argument).
pub fn parse_one_line(file: &str, text: &str) -> Result<Vec<AptSource>, SourcesError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let err = |why: String| SourcesError {
            file: file.into(),
            line: i + 1,
            why,
        };
        let (kind, mut rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| err(format!("{line:?} is not `deb URI SUITE COMPONENT...`")))?;
        if kind == "deb-src" {
            continue;
        }
        if kind != "deb" {
            return Err(err(format!(
                "unknown type {kind:?}: expected deb or deb-src"
            )));
        }
        rest = rest.trim();
        let mut opts: Vec<(String, String)> = Vec::new();
        if let Some(r) = rest.strip_prefix('[') {
            let (o, after) = r
                .split_once(']')
                .ok_or_else(|| err("`[` options without `]`".into()))?;
            for kv in o.split_whitespace() {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| err(format!("option {kv:?} is not key=value")))?;
                opts.push((k.to_ascii_lowercase(), v.to_string()));
            }
            rest = after.trim();
        }
        let words: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
        if words.len() < 2 {
            return Err(err("expected a URI and a suite".into()));
        }
        let opt = |k: &str| opts.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        out.push(AptSource {
            uris: vec![words[0].clone()],
            suites: vec![words[1].clone()],
            components: words[2..].to_vec(),
            signed_by: opt("signed-by").and_then(|v| parse_signed_by(&v)),
            architectures: opt("arch")
                .map(|a| a.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Replaces the scheme and host of `uri` with those of `mirror` (keeping the path), or,
/// when `mirror` has a path, replaces everything up to the archive root's last path
/// component (`http://m/debian` → `http://MIRROR/debian`).
pub fn with_mirror(uri: &str, mirror: &str) -> String {
    let split = |u: &str| -> (String, String) {
        let after = u.find("://").map_or(0, |i| i + 3);
        match u[after..].find('/') {
            Some(j) => (u[..after + j].to_string(), u[after + j..].to_string()),
            None => (u.to_string(), String::new()),
        }
    };
    let (_, path) = split(uri);
    let (mhost, mpath) = split(mirror.trim_end_matches('/'));
    if mpath.is_empty() {
        format!("{mhost}{path}")
    } else {
        mirror.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_with_paths_fingerprints_and_inline_keys() {
        let t = "Types: deb\nURIs: http://a/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb-src\nURIs: http://a/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://b/x\nSuites: s\nEnabled: no\n\nTypes: deb\nURIs: http://c/\nSuites: s\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----\n\nTypes: deb\nURIs: http://d/\nSuites: s\nSigned-By: 4D64FEC119C2029067D6E791F8D2585B8783D481\n";
        let s = parse_deb822("x.sources", t).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        assert!(matches!(&s[0].signed_by, Some(SignedBy::Paths(p)) if p[0].ends_with(".gpg")));
        assert!(matches!(&s[1].signed_by, Some(SignedBy::Inline(k)) if k.contains("\n\nabc\n")));
        assert!(matches!(&s[2].signed_by, Some(SignedBy::Fingerprints(f)) if f.len() == 1));
    }

    #[test]
    fn one_line_with_options() {
        let s = parse_one_line("l", "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://x/debian bookworm main contrib\ndeb-src http://x/ y z\n").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].components, ["main", "contrib"]);
        assert_eq!(s[0].architectures, ["amd64"]);
        assert_eq!(s[0].signed_by, Some(SignedBy::Paths(vec!["/k.gpg".into()])));
        assert!(parse_one_line("l", "deb [x http://a b").is_err());
        assert!(parse_one_line("l", "rpm http://a b").is_err());
    }

    #[test]
    fn mirror_replaces_the_host() {
        assert_eq!(
            with_mirror("http://deb.example/debian", "http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/debian"
        );
        assert_eq!(
            with_mirror("http://deb.example/debian", "http://127.0.0.1:8080/repo/"),
            "http://127.0.0.1:8080/repo"
        );
    }
}
