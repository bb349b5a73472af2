//! Planning an image before anything is written: the size (given, or just enough for the
//! tree plus headroom), the inode count, the journal size, and the identity (UUID and htree
//! hash seed) derived from a digest of the tree, so equal trees give equal images.

use crate::digest::Hasher;
use crate::tree::{Kind, Time, Tree};

/// ext4 block size (the crate's only profile).
pub const BLOCK: u64 = 4096;
const MIB: u64 = 1 << 20;

/// What the caller asks of the image.
#[derive(Debug, Clone)]
pub struct Ext4Options {
    /// Image size in bytes; `None` sizes it from the tree.
    pub size: Option<u64>,
    /// Free space added to what the tree needs when sizing automatically, in percent.
    pub headroom_percent: u32,
    /// Inode count; `None` = the tree's inodes plus headroom (and at least one per 16 KiB
    /// when a size is given, like mke2fs).
    pub inodes: Option<u32>,
    /// Filesystem UUID; `None` derives it from the tree's digest.
    pub uuid: Option<[u8; 16]>,
    /// Volume label (at most 16 bytes).
    pub label: Option<String>,
    /// Blocks reserved for root, in percent.
    pub reserved_percent: u8,
    /// `SOURCE_DATE_EPOCH`: every timestamp is clamped to it, and it stamps the superblock.
    pub epoch: Option<i64>,
}

impl Default for Ext4Options {
    fn default() -> Self {
        Ext4Options {
            size: None,
            headroom_percent: 10,
            inodes: None,
            uuid: None,
            label: None,
            reserved_percent: 0,
            epoch: None,
        }
    }
}

/// Parses a size the way mke2fs does: a number with an optional `k`, `m`, `g`, `t` (powers
/// of 1024) or `s` (512-byte sectors) suffix; a bare number is KiB. The result is rounded
/// up to whole 4 KiB blocks.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || {
        format!("bad size {s:?}: expected a number with an optional k, m, g or t suffix, like 512M or 2G")
    };
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| {
            lower
                .strip_suffix('b')
                .filter(|b| b.ends_with(['k', 'm', 'g', 't']))
        })
        .unwrap_or(&lower);
    let (num, mult) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 1u64 << 10),
        Some('m') => (&body[..body.len() - 1], 1 << 20),
        Some('g') => (&body[..body.len() - 1], 1 << 30),
        Some('t') => (&body[..body.len() - 1], 1 << 40),
        Some('s') => (&body[..body.len() - 1], 512),
        Some(c) if c.is_ascii_digit() => (body, 1 << 10),
        _ => return Err(bad()),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(format!("bad size {s:?}: must be larger than zero"));
    }
    bytes.checked_next_multiple_of(BLOCK).ok_or_else(bad)
}

/// Formats bytes as MiB rounded up, for messages and `--size` suggestions.
pub fn mib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

/// What one pass over the tree learns.
#[derive(Debug, Clone, Default)]
pub struct TreeFacts {
    /// Distinct inodes (root included).
    pub inodes: u64,
    /// Blocks the tree's data, directories, symlinks, xattrs and extent trees take.
    pub blocks: u64,
    /// Bytes of file content (apparent size).
    pub file_bytes: u64,
    /// Identity digest of everything the image will contain.
    pub digest: crate::digest::Digest,
    /// Latest (clamped) modification time, the default superblock epoch.
    pub latest: Time,
}

fn round4(n: usize) -> u64 {
    (n as u64).div_ceil(4) * 4
}

/// Walks the tree once: an estimate of the blocks it needs and its identity digest.
pub fn facts(tree: &Tree, clamp: Option<Time>) -> TreeFacts {
    let mut h = Hasher::new();
    let mut seen = vec![u32::MAX; 0];
    let mut f = TreeFacts::default();
    let mut next_ino = 0u32;
    for e in tree.walk() {
        let idx = e.id.index();
        if seen.len() <= idx {
            seen.resize(idx + 1, u32::MAX);
        }
        h.update(&(e.path.len() as u64).to_le_bytes());
        h.update(&e.path);
        if seen[idx] != u32::MAX {
            // A hard link: only which inode it names matters.
            h.update(b"L");
            h.update(&seen[idx].to_le_bytes());
            continue;
        }
        seen[idx] = next_ino;
        next_ino += 1;
        f.inodes += 1;
        let inode = tree.inode(e.id);
        let m = &inode.meta;
        let c = |t: Time| clamp.map_or(t, |l| t.clamp_to(l));
        let (a, mt, ct) = (c(m.atime), c(m.mtime), c(m.ctime));
        f.latest = f.latest.max(mt);
        h.update(&[inode.kind.name().as_bytes()[0]]);
        for v in [u64::from(m.mode), u64::from(m.uid), u64::from(m.gid)] {
            h.update(&v.to_le_bytes());
        }
        for t in [a, mt, ct] {
            h.update(&t.sec.to_le_bytes());
            h.update(&t.nsec.to_le_bytes());
        }
        let mut xattr_bytes = 0u64;
        for (k, v) in &m.xattrs {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
            xattr_bytes += 16 + round4(k.len()) + round4(v.len());
        }
        if xattr_bytes > 96 {
            f.blocks += xattr_bytes.div_ceil(BLOCK);
        }
        match &inode.kind {
            Kind::File(content) => {
                let len = content.len();
                f.file_bytes += len;
                h.update(&len.to_le_bytes());
                h.update(&content.fingerprint().to_le_bytes());
                let holes = content.holes();
                let hole_blocks: u64 = holes.iter().map(|(_, n)| n).sum();
                let data = len.div_ceil(BLOCK).saturating_sub(hole_blocks);
                f.blocks += data;
                // Extents: one per data run, at most 32768 blocks each, plus breaks at
                // block-group metadata; more than 4 need tree blocks (340 per block).
                let extents = holes.len() as u64 + 1 + data / 32768 + data / 16384;
                if extents > 4 {
                    f.blocks += extents.div_ceil(340) + 1;
                }
            }
            Kind::Dir(d) => {
                let bytes: u64 = 24 + d.entries().map(|(n, _)| 8 + round4(n.len())).sum::<u64>();
                let blocks = bytes.div_ceil(BLOCK - 12);
                // htree: index blocks plus leaves that are not packed full.
                f.blocks += if blocks > 1 {
                    blocks + blocks / 2 + 2
                } else {
                    1
                };
                h.update(&(d.len() as u64).to_le_bytes());
            }
            Kind::Symlink(t) => {
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t);
                if t.len() > 59 {
                    f.blocks += 1;
                }
            }
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                h.update(&major.to_le_bytes());
                h.update(&minor.to_le_bytes());
            }
            Kind::Fifo | Kind::Socket => {}
        }
    }
    f.digest = h.finish();
    f
}

/// The journal size (blocks) rootsmith uses for an image of `size` bytes: small enough
/// that a tight image is mostly content, never below ext4's minimum of 1024 blocks.
pub fn journal_blocks(size: u64) -> u32 {
    match size {
        s if s < 1 << 30 => 1024,
        s if s < 8 << 30 => 4096,
        s if s < 64 << 30 => 16384,
        _ => 32768,
    }
}

/// Inodes to allocate: the tree's plus room to work in (`/tmp`, logs, packages).
pub fn default_inodes(tree_inodes: u64, size: Option<u64>) -> u32 {
    let with_room = tree_inodes + (tree_inodes / 4).max(1024);
    let by_ratio = size.map_or(0, |s| s / 16384);
    u32::try_from(with_room.max(by_ratio)).unwrap_or(u32::MAX)
}

/// A first guess of the image size that holds `facts` with `inodes` inodes and no
/// headroom; the seal decides, and sizing grows from here when it refuses.
pub fn estimate_min_size(facts: &TreeFacts, inodes: u32) -> u64 {
    let inode_blocks = u64::from(inodes) * 256 / BLOCK + 1;
    let content = facts.blocks + inode_blocks;
    // Superblock, descriptors, bitmaps, backups: about 1 % plus a fixed part.
    let overhead = content / 100 + 64;
    let mut size = (content + overhead) * BLOCK;
    size += u64::from(journal_blocks(size)) * BLOCK;
    // The smallest image with a journal: 4096 blocks (the journal may take a quarter).
    size.next_multiple_of(MIB).max(16 * MIB)
}

/// Identity from the tree digest: (UUID with RFC 4122 version 5 bits, htree hash seed).
pub fn identity(digest: &crate::digest::Digest) -> ([u8; 16], [u32; 4]) {
    let d =
        crate::digest::Digest::of(&[b"rootsmith ext4 identity v1".as_slice(), &digest.0].concat());
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&d.0[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x50;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let mut seed = [0u32; 4];
    for (i, s) in seed.iter_mut().enumerate() {
        *s = u32::from_le_bytes(d.0[16 + 4 * i..20 + 4 * i].try_into().expect("4 bytes"));
    }
    (uuid, seed)
}

/// Parses a UUID in its 8-4-4-4-12 hex form.
pub fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let bad = || format!("bad UUID {s:?}: expected 8-4-4-4-12 hex digits");
    if hex.len() != 32 {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

/// Formats a UUID in its 8-4-4-4-12 form.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..].concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_mke2fs_syntax() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1024").unwrap(), 1 << 20);
        assert_eq!(parse_size("3k").unwrap(), 4096);
        assert_eq!(parse_size("8s").unwrap(), 4096);
        for bad in ["", "M", "12X", "-5M", "0", "1.5G", "99999999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uuid_round_trips_and_identity_is_stable() {
        let u = parse_uuid("0b7c3f4e-1a2b-4c3d-8e9f-001122334455").unwrap();
        assert_eq!(format_uuid(&u), "0b7c3f4e-1a2b-4c3d-8e9f-001122334455");
        let d = crate::digest::Digest::of(b"x");
        assert_eq!(identity(&d), identity(&d));
        assert_ne!(identity(&d).0, identity(&crate::digest::Digest::of(b"y")).0);
    }
}
