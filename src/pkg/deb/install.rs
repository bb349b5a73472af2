//! Extracting a `.deb`'s `data.tar` into the staging tree the way dpkg does: parents are
//! resolved through existing symlinks inside the tree (merged `/usr`: `./bin/x` lands in
//! `/usr/bin/x` and the `/bin` symlink stays), a directory entry never replaces a symlink
//! to a directory, modes/owners/devices are kept, owners by name map through the tree's
//! passwd/group. Returns the dpkg file list.

use std::io::Read;

use crate::tree::path::{normalize, PathBytes};
use crate::tree::{Follow, Inode, Kind, Meta, Time, Tree, TreeError};

/// Why a data archive could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The stream is broken.
    #[error("data archive: {0}")]
    Stream(String),
    /// One entry could not be placed.
    #[error("data archive entry {entry}: {why}")]
    Entry {
        /// The entry path.
        entry: PathBytes,
        /// What went wrong.
        why: String,
    },
}

/// Name → id maps from the tree's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Default, Clone)]
pub struct Owners {
    users: Vec<(String, u32)>,
    groups: Vec<(String, u32)>,
}

impl Owners {
    /// Reads the maps from the tree (missing files give empty maps).
    pub fn from_tree(tree: &Tree) -> Owners {
        let read = |p: &[u8]| {
            tree.read_file(p)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Owners {
            users: crate::etc::passwd::entries(&read(b"/etc/passwd"))
                .into_iter()
                .map(|e| (e.name, e.uid))
                .collect(),
            groups: crate::etc::group::entries(&read(b"/etc/group")),
        }
    }

    fn uid(&self, name: &[u8], fallback: u32) -> u32 {
        let n = String::from_utf8_lossy(name);
        self.users
            .iter()
            .find(|(u, _)| *u == n)
            .map_or(fallback, |(_, id)| *id)
    }

    fn gid(&self, name: &[u8], fallback: u32) -> u32 {
        let n = String::from_utf8_lossy(name);
        self.groups
            .iter()
            .find(|(g, _)| *g == n)
            .map_or(fallback, |(_, id)| *id)
    }
}

/// What one extraction did.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    /// Paths for the dpkg `.list` file (`/.` first, tar order).
    pub list: Vec<String>,
    /// File bytes stored.
    pub bytes: u64,
    /// `(conffile, md5 of the package's version)`.
    pub conffiles: Vec<(String, String)>,
    /// Conffiles that already existed with other contents: kept, and the package's
    /// version written beside them as `<path>.dpkg-dist` (what dpkg does for a locally
    /// changed conffile).
    pub kept: Vec<String>,
}

/// Extracts the (compressed) data archive into `tree`. `conffiles` are the package's
/// conffile paths.
pub fn extract(
    tree: &mut Tree,
    data: &[u8],
    owners: &Owners,
    conffiles: &[String],
) -> Result<Extracted, InstallError> {
    let mut out = Extracted::default();
    let (_, reader) =
        crate::unpack::decompress(data).map_err(|e| InstallError::Stream(e.to_string()))?;
    let mut ar = tar::Archive::new(reader);
    let mut list = vec!["/.".to_string()];
    let mut bytes = 0u64;
    let entries = ar
        .entries()
        .map_err(|e| InstallError::Stream(e.to_string()))?;
    for e in entries {
        let mut e = e.map_err(|e| InstallError::Stream(e.to_string()))?;
        let raw = e.path_bytes().into_owned();
        let err = |why: String| InstallError::Entry {
            entry: PathBytes(raw.clone()),
            why,
        };
        let names = normalize(&raw).ok_or_else(|| err("path climbs out of the root".into()))?;
        if names.is_empty() {
            continue;
        }
        let path = crate::tree::path::join(&names);
        let h = e.header().clone();
        let mode = h.mode().map_err(|x| err(x.to_string()))?;
        let mtime = h.mtime().map_err(|x| err(x.to_string()))?;
        let time = Time::secs(i64::try_from(mtime).unwrap_or(0));
        let uid = u32::try_from(h.uid().map_err(|x| err(x.to_string()))?)
            .map_err(|_| err("uid out of range".into()))?;
        let gid = u32::try_from(h.gid().map_err(|x| err(x.to_string()))?)
            .map_err(|_| err("gid out of range".into()))?;
        let uid = match h.username_bytes() {
            Some(n) if !n.is_empty() => owners.uid(n, uid),
            _ => uid,
        };
        let gid = match h.groupname_bytes() {
            Some(n) if !n.is_empty() => owners.gid(n, gid),
            _ => gid,
        };
        let meta = Meta::new((mode & 0o7777) as u16, time).owned(uid, gid);
        let parent_meta = Meta::new(0o755, time);
        let tree_err = |x: TreeError| err(x.to_string());
        let (parents, name) = names.split_at(names.len() - 1);
        let parent_path = crate::tree::path::join(parents);
        use tar::EntryType as T;
        let kind = match h.entry_type() {
            T::Directory => {
                // An existing directory (or symlink to one) is kept as it is, like dpkg.
                if tree.lookup(&path).is_some_and(|id| tree.inode(id).is_dir()) {
                    list.push(String::from_utf8_lossy(&path).into_owned());
                    continue;
                }
                Kind::empty_dir()
            }
            T::Regular | T::Continuous => {
                let size = e.size();
                let c = tree
                    .store_mut()
                    .ingest(&mut e, size)
                    .map_err(|x| err(x.to_string()))?;
                bytes += size;
                let p = String::from_utf8_lossy(&path).into_owned();
                if conffiles.contains(&p) {
                    let new = tree.store().read_all(&c).map_err(|x| err(x.to_string()))?;
                    out.conffiles
                        .push((p.clone(), super::dpkg_db::md5_hex(&new)));
                    let old = tree
                        .lookup(&path)
                        .and_then(|id| match &tree.inode(id).kind {
                            Kind::File(oc) => tree.store().read_all(oc).ok(),
                            _ => None,
                        });
                    if old.is_some_and(|o| o != new) {
                        let dist = format!("{p}.dpkg-dist");
                        tree.insert(
                            dist.as_bytes(),
                            Inode::new(Kind::File(c), meta),
                            &parent_meta,
                            Follow::Scoped,
                        )
                        .map_err(tree_err)?;
                        out.kept.push(p.clone());
                        list.push(p);
                        continue;
                    }
                }
                Kind::File(c)
            }
            T::Symlink => {
                let t = e
                    .link_name_bytes()
                    .ok_or_else(|| err("symlink without a target".into()))?;
                Kind::Symlink(t.into_owned())
            }
            T::Link => {
                let t = e
                    .link_name_bytes()
                    .ok_or_else(|| err("hard link without a target".into()))?
                    .into_owned();
                let tn = normalize(&t)
                    .ok_or_else(|| err("hard link target climbs out of the root".into()))?;
                let target = tree
                    .resolve(&crate::tree::path::join(&tn), Follow::Scoped, false)
                    .map_err(|x| err(x.to_string()))?;
                let dir = tree
                    .mkdir_all(&parent_path, &parent_meta, Follow::Scoped)
                    .map_err(tree_err)?;
                tree.link(dir, name[0], target).map_err(tree_err)?;
                list.push(String::from_utf8_lossy(&path).into_owned());
                continue;
            }
            T::Char | T::Block => {
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                if h.entry_type() == T::Char {
                    Kind::CharDevice { major, minor }
                } else {
                    Kind::BlockDevice { major, minor }
                }
            }
            T::Fifo => Kind::Fifo,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            other => {
                return Err(err(format!(
                    "unsupported tar entry type {:?}",
                    other.as_byte() as char
                )))
            }
        };
        let dir = tree
            .mkdir_all(&parent_path, &parent_meta, Follow::Scoped)
            .map_err(tree_err)?;
        tree.add(dir, name[0], Inode::new(kind, meta))
            .map_err(tree_err)?;
        list.push(String::from_utf8_lossy(&path).into_owned());
    }
    // Drain the compressed trailer so corruption at the end is noticed.
    let mut rest = ar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| InstallError::Stream(e.to_string()))?;
    let _ = rest.read(&mut [0u8; 0]);
    out.list = list;
    out.bytes = bytes;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, t, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*t);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_mode(if *t == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            if *t == tar::EntryType::Symlink {
                h.set_size(0);
                b.append_link(&mut h, path, data).unwrap();
            } else {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn merged_usr_symlinks_survive_extraction() {
        let mut t = Tree::new();
        let m = Meta::new(0o777, Time::default());
        t.insert(
            b"/bin",
            Inode::new(Kind::Symlink(b"usr/bin".to_vec()), m.clone()),
            &m,
            Follow::Scoped,
        )
        .unwrap();
        t.mkdir_all(
            b"/usr/bin",
            &Meta::new(0o755, Time::default()),
            Follow::Scoped,
        )
        .unwrap();
        let data = tar_of(&[
            ("./", tar::EntryType::Directory, ""),
            ("./bin/", tar::EntryType::Directory, ""),
            ("./bin/tool", tar::EntryType::Regular, "x"),
            ("./lib/", tar::EntryType::Directory, ""),
            ("./usr/bin/other", tar::EntryType::Symlink, "tool"),
        ]);
        let list = extract(&mut t, &data, &Owners::default(), &[])
            .unwrap()
            .list;
        assert!(matches!(
            t.inode(t.lookup_nofollow(b"/bin").unwrap()).kind,
            Kind::Symlink(_)
        ));
        assert_eq!(t.read_file(b"/usr/bin/tool").unwrap(), b"x");
        assert_eq!(t.read_file(b"/usr/bin/other").unwrap(), b"x");
        assert_eq!(list, ["/.", "/bin", "/bin/tool", "/lib", "/usr/bin/other"]);
    }

    #[test]
    fn a_changed_conffile_is_kept_and_the_new_one_goes_beside_it() {
        let mut t = Tree::new();
        t.write_file(
            b"/etc/app.conf",
            b"local",
            Meta::new(0o644, Time::default()),
        )
        .unwrap();
        let data = tar_of(&[
            ("./etc/app.conf", tar::EntryType::Regular, "dist"),
            ("./etc/other.conf", tar::EntryType::Regular, "o"),
        ]);
        let confs = ["/etc/app.conf".to_string(), "/etc/other.conf".to_string()];
        let x = extract(&mut t, &data, &Owners::default(), &confs).unwrap();
        assert_eq!(t.read_file(b"/etc/app.conf").unwrap(), b"local");
        assert_eq!(t.read_file(b"/etc/app.conf.dpkg-dist").unwrap(), b"dist");
        assert_eq!(x.kept, ["/etc/app.conf"]);
        assert_eq!(x.conffiles[0].1, super::super::dpkg_db::md5_hex(b"dist"));
        assert_eq!(t.read_file(b"/etc/other.conf").unwrap(), b"o");
    }

    #[test]
    fn traversal_is_refused() {
        let mut t = Tree::new();
        let mut raw = tar_of(&[("./x", tar::EntryType::Regular, "x")]);
        // Rewrite the name to climb out, fixing the header checksum.
        raw[..100].fill(0);
        raw[..8].copy_from_slice(b"../../x\0");
        let mut h = tar::Header::new_old();
        h.as_mut_bytes().copy_from_slice(&raw[..512]);
        h.set_cksum();
        raw[..512].copy_from_slice(h.as_bytes());
        assert!(extract(&mut t, &raw, &Owners::default(), &[]).is_err());
    }
}
