//! Users and groups from the recipe, through the line-preserving `/etc` editors: groups
//! first, then users (a primary group named like the user when no gid is given), locked in
//! `/etc/shadow` unless a hash is given, with a home directory they own. Existing entries
//! are kept as they are.

use crate::etc::group::Group as GroupFile;
use crate::etc::passwd::{Passwd, User as PasswdUser};
use crate::etc::shadow::Shadow;
use crate::tree::{Meta, Time, Tree};

use super::{meta_or, put_dir, read_text, OverlayError};

/// A group to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// Name.
    pub name: String,
    /// gid (default: the first free from 1000).
    pub gid: Option<u32>,
}

/// A user to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// uid (default: the first free from 1000).
    pub uid: Option<u32>,
    /// Primary gid (default: a group named like the user).
    pub gid: Option<u32>,
    /// Home (default `/home/NAME`).
    pub home: Option<String>,
    /// Shell (default `/bin/sh`).
    pub shell: Option<String>,
    /// Supplementary groups (must exist).
    pub groups: Vec<String>,
    /// SHA-512 crypt hash (default: locked).
    pub password_hash: Option<String>,
}

fn first_free(used: impl Fn(u32) -> bool) -> u32 {
    (1000..60000).find(|i| !used(*i)).unwrap_or(60000)
}

/// Adds `groups` and `users`.
pub fn apply(
    tree: &mut Tree,
    groups: &[GroupSpec],
    users: &[UserSpec],
    time: Time,
) -> Result<(), OverlayError> {
    if groups.is_empty() && users.is_empty() {
        return Ok(());
    }
    let mut g = GroupFile::parse(&read_text(tree, "/etc/group").unwrap_or_default());
    let mut p = Passwd::parse(&read_text(tree, "/etc/passwd").unwrap_or_default());
    let mut s = Shadow::parse(&read_text(tree, "/etc/shadow").unwrap_or_default());
    for spec in groups {
        let gid = spec.gid.unwrap_or_else(|| first_free(|i| g.gid_used(i)));
        g.ensure(&spec.name, gid);
    }
    for u in users {
        if p.get(&u.name).is_some() {
            continue;
        }
        let uid = u.uid.unwrap_or_else(|| first_free(|i| p.uid_used(i)));
        let gid = match u.gid {
            Some(gid) => gid,
            None => match g.get(&u.name) {
                Some(e) => e.gid,
                None => {
                    let gid = if g.gid_used(uid) {
                        first_free(|i| g.gid_used(i))
                    } else {
                        uid
                    };
                    g.ensure(&u.name, gid);
                    gid
                }
            },
        };
        for sup in &u.groups {
            if g.get(sup).is_none() {
                return Err(OverlayError::new(
                    "/etc/group",
                    format!(
                        "user {}: group {sup:?} does not exist; add it under [[groups]]",
                        u.name
                    ),
                ));
            }
            g.add_member(sup, &u.name);
        }
        let home = u
            .home
            .clone()
            .unwrap_or_else(|| format!("/home/{}", u.name));
        p.ensure(&PasswdUser {
            name: u.name.clone(),
            uid,
            gid,
            gecos: String::new(),
            home: home.clone(),
            shell: u.shell.clone().unwrap_or_else(|| "/bin/sh".into()),
        });
        match &u.password_hash {
            Some(h) => s.set_hash(&u.name, h),
            None => {
                s.ensure_locked(&u.name);
            }
        }
        if tree.lookup(home.as_bytes()).is_none() {
            put_dir(tree, &home, 0o755, (uid, gid), time)?;
        }
    }
    for (path, text, mode) in [
        ("/etc/group", g.render(), 0o644),
        ("/etc/passwd", p.render(), 0o644),
        ("/etc/shadow", s.render(), 0o640),
    ] {
        let meta = meta_or(tree, path, Meta::new(mode, time), time);
        tree.write_file(path.as_bytes(), text.as_bytes(), meta)
            .map_err(|e| OverlayError::new(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups() {
        let mut t = Tree::new();
        let m = Meta::new(0o644, Time::secs(1));
        t.write_file(
            b"/etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n",
            m.clone(),
        )
        .unwrap();
        t.write_file(b"/etc/group", b"root:x:0:\nwheel:x:10:root\n", m.clone())
            .unwrap();
        t.write_file(
            b"/etc/shadow",
            b"root:*:0:::::\n",
            Meta::new(0o640, Time::secs(1)).owned(0, 42),
        )
        .unwrap();
        let groups = [GroupSpec {
            name: "ops".into(),
            gid: Some(2000),
        }];
        let users = [UserSpec {
            name: "app".into(),
            uid: None,
            gid: None,
            home: None,
            shell: None,
            groups: vec!["wheel".into(), "ops".into()],
            password_hash: None,
        }];
        apply(&mut t, &groups, &users, Time::secs(5)).unwrap();
        let passwd = String::from_utf8(t.read_file(b"/etc/passwd").unwrap()).unwrap();
        assert!(
            passwd.ends_with("app:x:1000:1000::/home/app:/bin/sh\n"),
            "{passwd}"
        );
        let group = String::from_utf8(t.read_file(b"/etc/group").unwrap()).unwrap();
        assert_eq!(
            group,
            "root:x:0:\nwheel:x:10:root,app\nops:x:2000:app\napp:x:1000:\n"
        );
        let shadow = String::from_utf8(t.read_file(b"/etc/shadow").unwrap()).unwrap();
        assert!(shadow.contains("app:!:"), "{shadow}");
        assert_eq!(t.inode(t.lookup(b"/etc/shadow").unwrap()).meta.gid, 42);
        let h = t.inode(t.lookup(b"/home/app").unwrap()).meta.clone();
        assert_eq!((h.uid, h.gid), (1000, 1000));
        let bad = [UserSpec {
            groups: vec!["nope".into()],
            name: "b".into(),
            ..users[0].clone()
        }];
        assert!(apply(&mut t, &[], &bad, Time::secs(5)).is_err());
    }
}
