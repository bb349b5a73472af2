//! Unpacking a verified package's data stream into the staging tree and recording what
//! it brought: directories and files with owners and modes as the tar says, the
//! `APK-TOOLS.checksum.SHA1` PAX record checked against the content (for symlinks, the
//! target) and kept for the database's `Z:`. Existing symlinks to directories are kept
//! (tar `--keep-directory-symlink`), and a file owned by another package is not
//! overwritten unless this one `replaces` it.

use std::collections::HashMap;

use sha1::Digest as _;

use super::db::{DbDir, DbFile};
use super::dep::Dep;
use super::index::Identity;
use crate::tree::{Kind, Tree};
use crate::unpack::{EntryError, UnpackOptions};

/// Why a package could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The data stream is broken.
    #[error("{pkg}: data stream: {why}")]
    Stream {
        /// `name-version`.
        pkg: String,
        /// What went wrong.
        why: String,
    },
    /// One entry could not be applied.
    #[error("{pkg}: {path}: {source}")]
    Entry {
        /// `name-version`.
        pkg: String,
        /// The entry path.
        path: String,
        /// What went wrong.
        source: EntryError,
    },
    /// A file's content does not match its recorded checksum.
    #[error(
        "{pkg}: {path}: content does not match its APK-TOOLS.checksum.SHA1: the package is corrupt"
    )]
    Checksum {
        /// `name-version`.
        pkg: String,
        /// The file.
        path: String,
    },
    /// The file belongs to another package.
    #[error("{pkg}: /{path} is already owned by {owner}: the packages conflict (neither replaces the other)")]
    FileConflict {
        /// `name-version`.
        pkg: String,
        /// The file.
        path: String,
        /// The owning package's name.
        owner: String,
    },
}

/// User and group ids by name, from the tree's `/etc/passwd` and `/etc/group`: apk
/// resolves a tar entry's owner by name in the target root, falling back to the number.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    /// User name → uid.
    pub users: HashMap<String, u32>,
    /// Group name → gid.
    pub groups: HashMap<String, u32>,
}

impl Ids {
    fn apply(&self, tree: &mut Tree, abs: &str, uname: &Option<String>, gname: &Option<String>) {
        let Some(id) = tree.lookup_nofollow(abs.as_bytes()) else {
            return;
        };
        let m = &mut tree.inode_mut(id).meta;
        if let Some(u) = uname.as_ref().and_then(|n| self.users.get(n)) {
            m.uid = *u;
        }
        if let Some(g) = gname.as_ref().and_then(|n| self.groups.get(n)) {
            m.gid = *g;
        }
    }
}

fn hex_sha1(v: &[u8]) -> Option<[u8; 20]> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if s.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Unpacks `data_gz` (the package's raw data member) into `tree`. `owners` maps paths
/// (no leading `/`) to the name of the package owning them; it is updated.
pub fn extract(
    tree: &mut Tree,
    data_gz: &[u8],
    pkg: &str,
    nv: &str,
    replaces: &[Dep],
    owners: &mut HashMap<String, String>,
    ids: &Ids,
) -> Result<Vec<DbDir>, InstallError> {
    let stream = |why: String| InstallError::Stream {
        pkg: nv.to_string(),
        why,
    };
    let mut dirs: Vec<DbDir> = Vec::new();
    let mut dir_at: HashMap<String, usize> = HashMap::new();
    let opts = UnpackOptions::default();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(data_gz));
    let entries = ar.entries().map_err(|e| stream(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| stream(e.to_string()))?;
        let raw = entry.path_bytes().into_owned();
        let names = crate::tree::path::normalize(&raw).ok_or_else(|| InstallError::Entry {
            pkg: nv.to_string(),
            path: String::from_utf8_lossy(&raw).into_owned(),
            source: EntryError::Traversal,
        })?;
        if names.is_empty() {
            continue;
        }
        let rel = String::from_utf8_lossy(&names.join(&b'/')).into_owned();
        let abs = format!("/{rel}");
        let entry_err = |source: EntryError| InstallError::Entry {
            pkg: nv.to_string(),
            path: rel.clone(),
            source,
        };
        let mut want = None;
        if let Some(exts) = entry.pax_extensions().map_err(|e| stream(e.to_string()))? {
            for ext in exts.flatten() {
                if ext.key_bytes() == b"APK-TOOLS.checksum.SHA1" {
                    want = hex_sha1(ext.value_bytes());
                }
            }
        }
        let etype = entry.header().entry_type();
        let name_of = |n: Option<&[u8]>| {
            n.filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
        };
        let uname = name_of(entry.header().username_bytes());
        let gname = name_of(entry.header().groupname_bytes());
        let header_acl = || -> (u32, u32, u16) {
            let h = entry.header();
            (
                h.uid()
                    .ok()
                    .and_then(|u| u32::try_from(u).ok())
                    .unwrap_or(0),
                h.gid()
                    .ok()
                    .and_then(|g| u32::try_from(g).ok())
                    .unwrap_or(0),
                (h.mode().unwrap_or(0o755) & 0o7777) as u16,
            )
        };
        if etype.is_dir() {
            let kept_symlink = matches!(
                tree.lookup_nofollow(abs.as_bytes())
                    .map(|id| &tree.inode(id).kind),
                Some(Kind::Symlink(_))
            ) && tree
                .lookup(abs.as_bytes())
                .is_some_and(|id| tree.inode(id).is_dir());
            let mut acl = header_acl();
            if !kept_symlink {
                crate::unpack::archive::apply_entry(tree, &mut entry, &opts, None)
                    .map_err(entry_err)?;
                ids.apply(tree, &abs, &uname, &gname);
                if let Some(id) = tree.lookup_nofollow(abs.as_bytes()) {
                    let m = &tree.inode(id).meta;
                    acl = (m.uid, m.gid, acl.2);
                }
            }
            match dir_at.get(&rel) {
                Some(&i) => dirs[i].acl = Some(acl),
                None => {
                    dir_at.insert(rel.clone(), dirs.len());
                    dirs.push(DbDir {
                        name: rel.clone(),
                        acl: Some(acl),
                        files: Vec::new(),
                    });
                }
            }
            continue;
        }
        if let Some(owner) = owners.get(&rel) {
            if owner != pkg && !replaces.iter().any(|r| &r.name == owner) {
                return Err(InstallError::FileConflict {
                    pkg: nv.to_string(),
                    path: rel,
                    owner: owner.clone(),
                });
            }
        }
        crate::unpack::archive::apply_entry(tree, &mut entry, &opts, None).map_err(entry_err)?;
        ids.apply(tree, &abs, &uname, &gname);
        let id = tree
            .lookup_nofollow(abs.as_bytes())
            .ok_or_else(|| stream(format!("{rel} vanished after unpacking")))?;
        let inode = tree.inode(id);
        let found: Option<[u8; 20]> = match &inode.kind {
            Kind::File(c) => {
                let bytes = tree
                    .store()
                    .read_all(c)
                    .map_err(|e| stream(format!("{rel}: {e}")))?;
                Some(sha1::Sha1::digest(&bytes).into())
            }
            Kind::Symlink(t) => Some(sha1::Sha1::digest(t).into()),
            _ => None,
        };
        if let (Some(w), Some(f)) = (want, found) {
            if w != f {
                return Err(InstallError::Checksum {
                    pkg: nv.to_string(),
                    path: rel,
                });
            }
        }
        let m = &inode.meta;
        let mode = if matches!(inode.kind, Kind::Symlink(_)) {
            0o777
        } else {
            m.mode
        };
        let acl = (m.uid, m.gid, mode);
        let (dir, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), rel.clone()),
        };
        let di = match dir_at.get(&dir) {
            Some(&i) => i,
            None => {
                dir_at.insert(dir.clone(), dirs.len());
                dirs.push(DbDir {
                    name: dir,
                    acl: None,
                    files: Vec::new(),
                });
                dirs.len() - 1
            }
        };
        dirs[di].files.push(DbFile {
            name,
            acl: Some(acl),
            checksum: found.map(Identity),
        });
        owners.insert(rel, pkg.to_string());
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// `(path, "dir" or "file", owner name, content, APK-TOOLS.checksum.SHA1)`.
    type Entry<'a> = (&'a str, &'a str, Option<&'a str>, &'a [u8], Option<&'a str>);

    fn data(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, user, body, sum) in entries {
            if let Some(sum) = sum {
                b.append_pax_extensions([("APK-TOOLS.checksum.SHA1", sum.as_bytes())])
                    .unwrap();
            }
            let mut h = tar::Header::new_ustar();
            h.set_uid(5000);
            h.set_gid(5000);
            if let Some(u) = user {
                h.set_username(u).unwrap();
                h.set_groupname(u).unwrap();
            }
            match *kind {
                "dir" => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o750);
                    h.set_size(0);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
                _ => {
                    h.set_mode(0o640);
                    h.set_size(body.len() as u64);
                    b.append_data(&mut h, path, *body).unwrap();
                }
            }
        }
        let t = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t).unwrap();
        gz.finish().unwrap()
    }

    const HI_SHA1: &str = "c22b5f9178342609428d6f51b2c5af4c0bde6a42"; // sha1("hi")

    #[test]
    fn owners_resolve_by_name_and_checksums_are_checked() {
        let gz = data(&[
            ("var/lib/app", "dir", Some("app"), b"", None),
            ("var/lib/app/f", "file", Some("app"), b"hi", Some(HI_SHA1)),
            ("var/lib/app/g", "file", Some("nobody-known"), b"hi", None),
        ]);
        let mut t = Tree::new();
        let ids = Ids {
            users: [("app".to_string(), 101)].into(),
            groups: [("app".to_string(), 102)].into(),
        };
        let mut owners = HashMap::new();
        let dirs = extract(&mut t, &gz, "p", "p-1-r0", &[], &mut owners, &ids).unwrap();
        let f = t.lookup(b"/var/lib/app/f").unwrap();
        assert_eq!((t.inode(f).meta.uid, t.inode(f).meta.gid), (101, 102));
        let g = t.lookup(b"/var/lib/app/g").unwrap();
        assert_eq!(t.inode(g).meta.uid, 5000, "unknown names keep the number");
        assert_eq!(dirs[0].acl, Some((101, 102, 0o750)));
        assert_eq!(dirs[0].files[0].acl, Some((101, 102, 0o640)));
        assert_eq!(owners["var/lib/app/f"], "p");

        // A wrong checksum and a file another package owns are refused (unless replaced).
        let bad = data(&[(
            "x",
            "file",
            None,
            b"hi",
            Some("0000000000000000000000000000000000000000"),
        )]);
        let e = extract(
            &mut Tree::new(),
            &bad,
            "p",
            "p-1-r0",
            &[],
            &mut HashMap::new(),
            &Ids::default(),
        );
        assert!(matches!(e, Err(InstallError::Checksum { .. })));
        let mut owners = HashMap::from([("x".to_string(), "other".to_string())]);
        let ok = data(&[("x", "file", None, b"hi", None)]);
        let e = extract(
            &mut Tree::new(),
            &ok,
            "p",
            "p-1-r0",
            &[],
            &mut owners,
            &Ids::default(),
        );
        assert!(matches!(e, Err(InstallError::FileConflict { .. })));
        let rep = [Dep::on("other")];
        extract(
            &mut Tree::new(),
            &ok,
            "p",
            "p-1-r0",
            &rep,
            &mut owners,
            &Ids::default(),
        )
        .unwrap();
    }
}
