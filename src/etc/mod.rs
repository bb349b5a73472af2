//! `/etc` text formats, parsed and edited in place so every line rootsmith does not touch
//! stays byte for byte as it was: the account databases ([`passwd`], [`group`],
//! [`shadow`]) and apk's repository list ([`apk_repositories`]). Pure text in, text out;
//! nothing here knows about the tree.

pub mod apk_repositories;
pub mod group;
pub mod passwd;
pub mod shadow;

/// Splits `text` into lines keeping a missing final newline in mind.
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
