//! `/etc/passwd` (`name:x:uid:gid:gecos:home:shell`), edited line-preservingly: existing
//! lines, comments and order stay as they are; new entries are appended.

/// One passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS field.
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

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
