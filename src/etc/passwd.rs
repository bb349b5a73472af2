//! `/etc/passwd` (`name:x:uid:gid:gecos:home:shell`), edited line-preservingly: existing
//! lines, comments and order stay as they are; new entries are appended.

/// One passwd entry (the deb installer's name for [`User`]).
pub type PasswdEntry = User;

/// Entries of a passwd file; malformed lines are skipped (they are kept when editing).
pub fn entries(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() != 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                gecos: f[4].to_string(),
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

/// The lowest id in `range` not in `used` (adduser's `--system` allocation).
pub fn first_free(
    used: impl IntoIterator<Item = u32>,
    range: std::ops::RangeInclusive<u32>,
) -> Option<u32> {
    let used: std::collections::BTreeSet<u32> = used.into_iter().collect();
    range.into_iter().find(|i| !used.contains(i))
}

/// `text` with `e` appended (unless the name exists, then unchanged).
pub fn add(text: &str, e: &PasswdEntry) -> String {
    if entries(text).iter().any(|x| x.name == e.name) {
        return text.to_string();
    }
    let mut s = text.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&format!(
        "{}:x:{}:{}:{}:{}:{}\n",
        e.name, e.uid, e.gid, e.gecos, e.home, e.shell
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_keeps_existing_lines_and_allocates_system_ids() {
        let t = "root:x:0:0:root:/root:/bin/bash\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin";
        let uid = first_free(entries(t).iter().map(|e| e.uid), 100..=999).unwrap();
        assert_eq!(uid, 100);
        let e = PasswdEntry {
            name: "sshd".into(),
            uid,
            gid: 65534,
            gecos: String::new(),
            home: "/run/sshd".into(),
            shell: "/usr/sbin/nologin".into(),
        };
        let out = add(t, &e);
        assert!(out.starts_with(t));
        assert!(out.ends_with("sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"));
        assert_eq!(add(&out, &e), out);
    }
}

// Line-preserving editors (structured view), used by the apk installer and build.

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Comment field.
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// A passwd file being edited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passwd {
    lines: Vec<String>,
}

fn parse_line(line: &str) -> Option<User> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 7 || f[0].is_empty() {
        return None;
    }
    Some(User {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        gecos: f[4].to_string(),
        home: f[5].to_string(),
        shell: f[6].to_string(),
    })
}

impl Passwd {
    /// Parses a passwd file (never fails: lines it cannot read are kept verbatim).
    pub fn parse(text: &str) -> Passwd {
        Passwd {
            lines: super::lines(text),
        }
    }

    /// Every well-formed entry.
    pub fn users(&self) -> impl Iterator<Item = User> + '_ {
        self.lines.iter().filter_map(|l| parse_line(l))
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<User> {
        self.users().find(|u| u.name == name)
    }

    /// True when some entry has `uid`.
    pub fn uid_used(&self, uid: u32) -> bool {
        self.users().any(|u| u.uid == uid)
    }

    /// Adds `user` unless an entry with that name exists; returns true when added.
    pub fn ensure(&mut self, user: &User) -> bool {
        if self.get(&user.name).is_some() {
            return false;
        }
        self.lines.push(format!(
            "{}:x:{}:{}:{}:{}:{}",
            user.name, user.uid, user.gid, user.gecos, user.home, user.shell
        ));
        true
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
    fn keeps_lines_and_adds_once() {
        let text =
            "root:x:0:0:root:/root:/bin/sh\n# note\nsshd:x:22:22:sshd:/dev/null:/sbin/nologin\n";
        let mut p = Passwd::parse(text);
        assert_eq!(p.render(), text);
        assert_eq!(p.get("sshd").unwrap().uid, 22);
        let u = User {
            name: "app".into(),
            uid: 100,
            gid: 101,
            gecos: "app".into(),
            home: "/var/empty".into(),
            shell: "/sbin/nologin".into(),
        };
        assert!(p.ensure(&u));
        assert!(!p.ensure(&u));
        assert!(p
            .render()
            .ends_with("app:x:100:101:app:/var/empty:/sbin/nologin\n"));
        assert!(p.uid_used(100));
    }
}
