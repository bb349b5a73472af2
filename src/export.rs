//! The staging tree as a tar stream (`rootsmith export`, like `crane export`): paths relative
//! to the root in walk order (parents first, names sorted), hard links as links to the first
//! name met, ownership, modes, devices, and xattrs and sub-second times as PAX records.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::tree::{Kind, Time, Tree};

/// Counts of what was written.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExportStats {
    /// Entries written.
    pub entries: u64,
}

fn pax_time(t: Time) -> String {
    if t.nsec == 0 {
        t.sec.to_string()
    } else if t.sec >= 0 {
        format!("{}.{:09}", t.sec, t.nsec)
    } else {
        // -1.5 s is sec -2, nsec 5e8.
        let whole = t.sec + 1;
        let frac = 1_000_000_000 - t.nsec;
        format!("-{}.{frac:09}", whole.unsigned_abs())
    }
}

/// Writes `tree` as an uncompressed tar to `out`.
pub fn write_tar<W: Write>(tree: &Tree, out: W) -> io::Result<ExportStats> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Complete);
    let mut first_name: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut stats = ExportStats::default();
    for e in tree.walk() {
        if e.id == tree.root() {
            continue;
        }
        let rel = e.path[1..].to_vec();
        let inode = tree.inode(e.id);
        let m = &inode.meta;
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        for (k, v) in &m.xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        if m.mtime.nsec != 0 || m.mtime.sec < 0 {
            pax.push(("mtime".into(), pax_time(m.mtime).into_bytes()));
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(u32::from(m.mode));
        h.set_uid(u64::from(m.uid));
        h.set_gid(u64::from(m.gid));
        h.set_mtime(u64::try_from(m.mtime.sec).unwrap_or(0));
        h.set_size(0);
        let hard = !inode.is_dir() && inode.links() > 1;
        if hard {
            if let Some(target) = first_name.get(&e.id.index()) {
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, bytes_path(&rel), bytes_path(target))?;
                stats.entries += 1;
                continue;
            }
            first_name.insert(e.id.index(), rel.clone());
        }
        match &inode.kind {
            Kind::File(c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(c.len());
                let r = tree.store().open(c)?;
                b.append_data(&mut h, bytes_path(&rel), r)?;
            }
            Kind::Dir(_) => {
                h.set_entry_type(tar::EntryType::Directory);
                let mut p = rel.clone();
                p.push(b'/');
                b.append_data(&mut h, bytes_path(&p), io::empty())?;
            }
            Kind::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, bytes_path(&rel), bytes_path(t))?;
            }
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                h.set_entry_type(if matches!(inode.kind, Kind::CharDevice { .. }) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(*major)?;
                h.set_device_minor(*minor)?;
                b.append_data(&mut h, bytes_path(&rel), io::empty())?;
            }
            Kind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                b.append_data(&mut h, bytes_path(&rel), io::empty())?;
            }
            // tar has no socket type (GNU tar skips them too).
            Kind::Socket => continue,
        }
        stats.entries += 1;
    }
    b.into_inner()?.flush()?;
    Ok(stats)
}

fn bytes_path(b: &[u8]) -> &std::path::Path {
    use std::os::unix::ffi::OsStrExt;
    std::path::Path::new(std::ffi::OsStr::from_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Follow, Inode, Meta};
    use crate::unpack::{apply_tar, UnpackOptions};

    #[test]
    fn a_tree_round_trips_through_tar() {
        let mut t = Tree::new();
        let mut m = Meta::new(0o4755, Time { sec: 5, nsec: 7 }).owned(1000, 42);
        m.xattrs.insert("security.capability".into(), vec![1, 2, 3]);
        let f = t.write_file(b"/usr/bin/x", b"data", m).unwrap();
        let d = t.lookup(b"/usr").unwrap();
        t.link(d, b"hl", f).unwrap();
        let dm = Meta::new(0o600, Time::secs(1));
        t.insert(
            b"/dev/null",
            Inode::new(Kind::CharDevice { major: 1, minor: 3 }, dm.clone()),
            &dm,
            Follow::Scoped,
        )
        .unwrap();
        t.insert(
            b"/bin",
            Inode::new(Kind::Symlink(b"usr/bin".to_vec()), dm.clone()),
            &dm,
            Follow::Scoped,
        )
        .unwrap();
        let mut out = Vec::new();
        write_tar(&t, &mut out).unwrap();
        let mut back = Tree::new();
        apply_tar(&mut back, &out[..], &UnpackOptions::default()).unwrap();
        let x = back.lookup(b"/usr/bin/x").unwrap();
        assert_eq!(back.lookup(b"/usr/hl"), Some(x));
        assert_eq!(back.inode(x).meta, t.inode(f).meta);
        assert_eq!(back.read_file(b"/bin/x").unwrap(), b"data");
        assert_eq!(
            back.inode(back.lookup(b"/dev/null").unwrap()).kind,
            Kind::CharDevice { major: 1, minor: 3 }
        );
    }
}
