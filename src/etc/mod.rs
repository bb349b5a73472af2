//! Parsers and line-preserving editors for `/etc` text formats. Pure text in, text out:
//! nothing here touches the tree or the host. Account databases ([`passwd`], [`group`],
//! [`shadow`]), apt sources ([`apt_sources`]) and apk's repository list
//! ([`apk_repositories`]).

pub mod apk_repositories;
pub mod apt_sources;
pub mod group;
pub mod passwd;
pub mod shadow;

/// Splits `text` into lines.
pub(crate) fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

/// Joins lines with a final newline (none for an empty file).
pub(crate) fn join(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}
