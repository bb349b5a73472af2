//! `/etc/group` (`name:x:gid:members`) and `/etc/gshadow`, read for name → gid lookups.

/// `(name, gid)` of every well-formed line.
pub fn entries(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 4).then_some(())?;
            Some((f[0].to_string(), f[2].parse().ok()?))
        })
        .collect()
}

/// The gid of group `name`.
pub fn gid_of(text: &str, name: &str) -> Option<u32> {
    entries(text)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, g)| g)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lookup() {
        assert_eq!(
            super::gid_of("root:x:0:\nutmp:x:43:\nbad", "utmp"),
            Some(43)
        );
    }
}

// Line-preserving editors (structured view), used by the apk installer and build.

/// A passwd-style group file being edited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    lines: Vec<String>,
}

/// One group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Group name.
    pub name: String,
    /// Numeric id.
    pub gid: u32,
    /// Supplementary members.
    pub members: Vec<String>,
}

fn parse_line(line: &str) -> Option<Entry> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 4 || f[0].is_empty() {
        return None;
    }
    Some(Entry {
        name: f[0].to_string(),
        gid: f[2].parse().ok()?,
        members: f[3]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

impl Group {
    /// Parses a group file (lines it cannot read are kept verbatim).
    pub fn parse(text: &str) -> Group {
        Group {
            lines: super::lines(text),
        }
    }

    /// Every well-formed entry.
    pub fn groups(&self) -> impl Iterator<Item = Entry> + '_ {
        self.lines.iter().filter_map(|l| parse_line(l))
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.groups().find(|g| g.name == name)
    }

    /// True when some entry has `gid`.
    pub fn gid_used(&self, gid: u32) -> bool {
        self.groups().any(|g| g.gid == gid)
    }

    /// Adds group `name` with `gid` unless it exists; returns true when added.
    pub fn ensure(&mut self, name: &str, gid: u32) -> bool {
        if self.get(name).is_some() {
            return false;
        }
        self.lines.push(format!("{name}:x:{gid}:"));
        true
    }

    /// Adds `user` to the members of group `name` (no-op if absent or already a member).
    pub fn add_member(&mut self, name: &str, user: &str) -> bool {
        for line in &mut self.lines {
            let Some(e) = parse_line(line) else { continue };
            if e.name != name || e.members.iter().any(|m| m == user) {
                continue;
            }
            if !line.ends_with(':') {
                line.push(',');
            }
            line.push_str(user);
            return true;
        }
        false
    }

    /// The file text.
    pub fn render(&self) -> String {
        super::join(&self.lines)
    }
}

#[cfg(test)]
mod editor_tests {
    use super::*;

    #[test]
    fn edits() {
        let mut g = Group::parse("root:x:0:root\nwheel:x:10:root,adm\nsshd:x:22:\n");
        assert!(g.ensure("app", 101));
        assert!(!g.ensure("sshd", 5));
        assert!(g.add_member("sshd", "app"));
        assert!(g.add_member("wheel", "app"));
        assert!(!g.add_member("wheel", "app"));
        assert_eq!(
            g.render(),
            "root:x:0:root\nwheel:x:10:root,adm,app\nsshd:x:22:app\napp:x:101:\n"
        );
        assert!(g.gid_used(22));
    }
}
