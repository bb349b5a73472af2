//! Inodes of the staging tree: kinds, metadata, timestamps and extended attributes.

use std::collections::BTreeMap;

use super::content::Content;

/// Index of an inode in the tree's arena. Several directory entries may name one inode
/// (hard links); a directory is named exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InodeId(pub(crate) u32);

impl InodeId {
    /// The arena index, for side tables keyed by inode.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A timestamp: seconds since the Unix epoch (may be negative) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub sec: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsec: u32,
}

impl Time {
    /// A whole-second timestamp.
    pub const fn secs(sec: i64) -> Time {
        Time { sec, nsec: 0 }
    }

    /// This time, or `limit` if this one is later (reproducible builds clamp to
    /// `SOURCE_DATE_EPOCH`).
    pub fn clamp_to(self, limit: Time) -> Time {
        self.min(limit)
    }
}

/// Extended attributes by full name (`user.foo`, `security.capability`,
/// `system.posix_acl_access`, ...), sorted.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// Ownership, permissions, times and xattrs of an inode. The file type lives in [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u16,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Last access.
    pub atime: Time,
    /// Last modification.
    pub mtime: Time,
    /// Last status change.
    pub ctime: Time,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl Meta {
    /// Root-owned metadata with `mode`, all three times at `time`, no xattrs.
    pub fn new(mode: u16, time: Time) -> Meta {
        Meta {
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            atime: time,
            mtime: time,
            ctime: time,
            xattrs: Xattrs::new(),
        }
    }

    /// The same metadata owned by `uid:gid`.
    pub fn owned(mut self, uid: u32, gid: u32) -> Meta {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// A directory: entries sorted by name (raw bytes), which makes every walk deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dir {
    pub(crate) entries: BTreeMap<Box<[u8]>, InodeId>,
}

impl Dir {
    /// Entries sorted by name.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (&[u8], InodeId)> {
        self.entries.iter().map(|(k, v)| (&k[..], *v))
    }

    /// The inode named `name`, if any.
    pub fn get(&self, name: &[u8]) -> Option<InodeId> {
        self.entries.get(name).copied()
    }

    /// Number of entries (not counting `.` and `..`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the directory has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file and where its bytes are.
    File(Content),
    /// A directory.
    Dir(Dir),
    /// A symbolic link and its target, stored as given (never resolved on the host).
    Symlink(Vec<u8>),
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl Kind {
    /// A short lower-case name of the kind, for messages and listings.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::File(_) => "file",
            Kind::Dir(_) => "dir",
            Kind::Symlink(_) => "symlink",
            Kind::CharDevice { .. } => "char",
            Kind::BlockDevice { .. } => "block",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
        }
    }

    /// An empty directory.
    pub fn empty_dir() -> Kind {
        Kind::Dir(Dir::default())
    }
}

/// One inode: what it is, its metadata, and how many directory entries name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// File type and payload.
    pub kind: Kind,
    /// Ownership, mode, times, xattrs.
    pub meta: Meta,
    pub(crate) links: u32,
}

impl Inode {
    /// A new, not yet linked inode.
    pub fn new(kind: Kind, meta: Meta) -> Inode {
        Inode {
            kind,
            meta,
            links: 0,
        }
    }

    /// Directory entries naming this inode (the hard-link count for non-directories).
    pub fn links(&self) -> u32 {
        self.links
    }

    /// The directory payload, if this is a directory.
    pub fn as_dir(&self) -> Option<&Dir> {
        match &self.kind {
            Kind::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }
}
