//! `/etc/passwd`: `name:password:uid:gid:gecos:home:shell` lines. Edits append or change
//! one entry; comments, blank lines and unknown lines are kept as they are.

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
mod tests {
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
