//! deb822 control paragraphs: `Field: value` lines, continuation lines starting with a space
//! or tab (folded and multi-line fields), paragraphs separated by blank lines, `#` comments
//! (allowed in sources files). Used for `control`, `Packages`, `Release`, `status` and
//! `.sources` files. Field names compare case-insensitively; order is kept.

/// A control file that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A line that is neither a field, a continuation, a comment nor blank.
    #[error("line {line}: expected `Field: value`, found {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line, shortened.
        text: String,
    },
    /// A continuation line before any field.
    #[error("line {0}: continuation line without a field before it")]
    Orphan(usize),
}

/// One paragraph: fields in file order; values keep their continuation lines (joined with
/// `\n`, leading space of each continuation kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    /// `(name, value)` in file order.
    pub fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of `name` (case-insensitive), trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// The raw value of `name`, continuation lines included.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (replacing it in place, or appending).
    pub fn set(&mut self, name: &str, value: &str) {
        match self
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(f) => f.1 = value.to_string(),
            None => self.fields.push((name.to_string(), value.to_string())),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// A folded field as one line (continuations joined with spaces).
    pub fn folded(&self, name: &str) -> Option<String> {
        self.raw(name).map(|v| {
            v.split('\n')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    /// Writes the paragraph as deb822 text (no trailing blank line).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (n, v) in &self.fields {
            s.push_str(n);
            s.push(':');
            if !v.starts_with('\n') && !v.is_empty() {
                s.push(' ');
            }
            s.push_str(v);
            s.push('\n');
        }
        s
    }
}

/// Parses every paragraph of `text`.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, ControlError> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some(last) = cur.fields.last_mut() else {
                return Err(ControlError::Orphan(i + 1));
            };
            last.1.push('\n');
            last.1.push_str(line);
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ControlError::BadLine {
                line: i + 1,
                text: line.chars().take(60).collect(),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ControlError::BadLine {
                line: i + 1,
                text: line.chars().take(60).collect(),
            });
        }
        cur.fields
            .push((name.to_string(), value.trim().to_string()));
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_fields_and_continuations() {
        let t = "Package: a\nDescription: short\n long line\n .\n more\n\n\n# comment\nPackage: b\r\nDepends: x,\n y\n";
        let p = parse(t).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].get("package"), Some("a"));
        assert_eq!(
            p[0].raw("Description"),
            Some("short\n long line\n .\n more")
        );
        assert_eq!(p[1].folded("Depends").as_deref(), Some("x, y"));
        assert_eq!(parse(&p[0].to_text()).unwrap()[0], p[0]);
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        assert_eq!(parse(" x\n"), Err(ControlError::Orphan(1)));
        assert!(matches!(
            parse("nocolon\n"),
            Err(ControlError::BadLine { line: 1, .. })
        ));
        assert!(parse("").unwrap().is_empty());
    }
}
