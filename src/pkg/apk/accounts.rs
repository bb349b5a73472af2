//! The one effect of install scripts worth reproducing: accounts. Alpine packages create
//! their users and groups in `.pre-install` with busybox `addgroup`/`adduser`; since no
//! script is run, those commands are read (never executed) and applied to `/etc/passwd`,
//! `/etc/group` and `/etc/shadow` through the `etc` editors, with busybox's id choice
//! (system ids: the first free one from 100). Anything else in a script is ignored, and
//! the script is still reported as not run.

use crate::etc::group::Group;
use crate::etc::passwd::{Passwd, User};
use crate::etc::shadow::Shadow;

/// First and last system id, as busybox allocates them.
const FIRST_SYSTEM_ID: u32 = 100;
const LAST_SYSTEM_ID: u32 = 999;

/// The three account files, edited together.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// `/etc/passwd`.
    pub passwd: Passwd,
    /// `/etc/group`.
    pub group: Group,
    /// `/etc/shadow`.
    pub shadow: Shadow,
    /// What was done, in words.
    pub log: Vec<String>,
}

/// Splits a script into simple commands (newlines, `;`, `&&`, `||`, `|`), dropping
/// comments and redirections, unquoting simple quotes.
fn commands(script: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in script.lines() {
        let line = line.split('#').next().unwrap_or("");
        for part in line.split([';', '|', '&']) {
            let words: Vec<String> = part
                .split_whitespace()
                .filter(|w| !w.contains('>') && !w.contains('<'))
                .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
                .collect();
            if !words.is_empty() {
                out.push(words);
            }
        }
    }
    out
}

impl Accounts {
    /// Parses the three files' texts.
    pub fn parse(passwd: &str, group: &str, shadow: &str) -> Accounts {
        Accounts {
            passwd: Passwd::parse(passwd),
            group: Group::parse(group),
            shadow: Shadow::parse(shadow),
            log: Vec::new(),
        }
    }

    fn free_gid(&self, want: Option<u32>) -> Option<u32> {
        if let Some(g) = want.filter(|g| !self.group.gid_used(*g)) {
            return Some(g);
        }
        (FIRST_SYSTEM_ID..=LAST_SYSTEM_ID).find(|g| !self.group.gid_used(*g))
    }

    fn free_uid(&self) -> Option<u32> {
        (FIRST_SYSTEM_ID..=LAST_SYSTEM_ID).find(|u| !self.passwd.uid_used(*u))
    }

    fn addgroup(&mut self, args: &[String]) {
        let mut gid = None;
        let mut pos = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-g" => gid = it.next().and_then(|g| g.parse().ok()),
                "-S" => {}
                s if s.starts_with('-') => return,
                _ => pos.push(a.clone()),
            }
        }
        match pos.as_slice() {
            [name] if self.group.get(name).is_none() => {
                if let Some(g) = self.free_gid(gid) {
                    self.group.ensure(name, g);
                    self.log.push(format!("group {name} (gid {g})"));
                }
            }
            [user, group] if self.group.add_member(group, user) => {
                self.log.push(format!("{user} joins group {group}"));
            }
            _ => {}
        }
    }

    fn adduser(&mut self, args: &[String]) {
        let (mut home, mut shell, mut group, mut gecos, mut uid) = (None, None, None, None, None);
        let mut pos = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-h" => home = it.next().cloned(),
                "-s" => shell = it.next().cloned(),
                "-G" => group = it.next().cloned(),
                "-g" => gecos = it.next().cloned(),
                "-u" => uid = it.next().and_then(|u| u.parse::<u32>().ok()),
                "-S" | "-D" | "-H" => {}
                s if s.starts_with('-') => return,
                _ => pos.push(a.clone()),
            }
        }
        let [name] = pos.as_slice() else { return };
        if self.passwd.get(name).is_some() {
            return;
        }
        let Some(uid) = uid
            .filter(|u| !self.passwd.uid_used(*u))
            .or_else(|| self.free_uid())
        else {
            return;
        };
        let gname = group.unwrap_or_else(|| name.clone());
        let gid = match self.group.get(&gname) {
            Some(g) => g.gid,
            None => {
                let Some(g) = self.free_gid(Some(uid)) else {
                    return;
                };
                self.group.ensure(&gname, g);
                self.log.push(format!("group {gname} (gid {g})"));
                g
            }
        };
        self.passwd.ensure(&User {
            name: name.clone(),
            uid,
            gid,
            gecos: gecos.unwrap_or_else(|| "Linux User,,,".into()),
            home: home.unwrap_or_else(|| format!("/home/{name}")),
            shell: shell.unwrap_or_else(|| "/bin/sh".into()),
        });
        self.shadow.ensure_locked(name);
        self.log.push(format!("user {name} (uid {uid}, gid {gid})"));
    }

    /// Name → id maps for resolving tar owners.
    pub fn ids(&self) -> super::install::Ids {
        super::install::Ids {
            users: self.passwd.users().map(|u| (u.name, u.uid)).collect(),
            groups: self.group.groups().map(|g| (g.name, g.gid)).collect(),
        }
    }

    /// Applies the account commands found in `script`.
    pub fn apply_script(&mut self, script: &str) {
        for cmd in commands(script) {
            let prog = cmd[0].rsplit('/').next().unwrap_or("");
            match prog {
                "addgroup" => self.addgroup(&cmd[1..]),
                "adduser" => self.adduser(&cmd[1..]),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_account_commands() {
        let mut a = Accounts::parse(
            "root:x:0:0:root:/root:/bin/sh\nsshd:x:22:22:sshd:/dev/null:/sbin/nologin\n",
            "root:x:0:root\nsshd:x:22:\nwww-data:x:82:\n",
            "root:*::0:::::\n",
        );
        a.apply_script(
            "#!/bin/sh\naddgroup -S nginx 2>/dev/null\nadduser -S -D -H -h /var/lib/nginx -s /sbin/nologin -G nginx -g nginx nginx 2>/dev/null\naddgroup nginx www-data 2>/dev/null\nexit 0\n",
        );
        a.apply_script("addgroup -S sshd; adduser -S -D -H sshd || true\nrm -rf /");
        assert_eq!(a.group.get("nginx").unwrap().gid, 100);
        let u = a.passwd.get("nginx").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_str(), u.shell.as_str()),
            (100, 100, "/var/lib/nginx", "/sbin/nologin")
        );
        assert_eq!(a.group.get("www-data").unwrap().members, ["nginx"]);
        assert_eq!(a.shadow.hash("nginx"), Some("!"));
        assert_eq!(
            a.passwd.get("sshd").unwrap().uid,
            22,
            "existing entries win"
        );
        assert_eq!(a.log.len(), 3);
    }
}
