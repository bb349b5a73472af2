//! `/etc/apk/repositories`: one repository per line, `#` comments, blank lines, and an
//! optional leading `@tag` (`@edge https://…/edge/main`) that makes the repository serve
//! only dependencies pinned with `name@tag`.

/// One repository line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `@tag`, without the `@`.
    pub tag: Option<String>,
    /// The base URL (`<base>/<branch>/<repo>`; the client adds `/<arch>/...`).
    pub url: String,
}

/// Parses the file. Lines that are not `[@tag] URL` are skipped (apk ignores them too).
pub fn parse(text: &str) -> Vec<Repository> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let (tag, url) = match first.strip_prefix('@') {
            Some(t) => match words.next() {
                Some(u) if !t.is_empty() => (Some(t.to_string()), u),
                _ => continue,
            },
            None => (None, first),
        };
        out.push(Repository {
            tag,
            url: url.trim_end_matches('/').to_string(),
        });
    }
    out
}

/// Replaces the scheme and host (`scheme://host[:port]`) of `url` with `mirror`'s,
/// keeping the path. `None` when `url` has no `scheme://host` part.
pub fn with_mirror(url: &str, mirror: &str) -> Option<String> {
    let (_, after_scheme) = url.split_once("://")?;
    let path = after_scheme
        .find('/')
        .map(|i| &after_scheme[i..])
        .unwrap_or("");
    Some(format!("{}{path}", mirror.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_tags_comments() {
        let r = parse("# main\nhttps://m.example/alpine/v3.20/main/\n\n@edge http://m.example/alpine/edge/testing\n@ broken\n");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].url, "https://m.example/alpine/v3.20/main");
        assert_eq!(r[1].tag.as_deref(), Some("edge"));
    }

    #[test]
    fn mirror_replaces_the_host_only() {
        assert_eq!(
            with_mirror(
                "https://m.example/alpine/v3.20/main",
                "http://127.0.0.1:8080/"
            )
            .as_deref(),
            Some("http://127.0.0.1:8080/alpine/v3.20/main")
        );
        assert_eq!(with_mirror("/local/repo", "http://x"), None);
    }
}
