//! The cpio "newc" format (`070701`), which the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte ASCII header of
//! thirteen 8-digit hex fields, the NUL-terminated name padded to 4 bytes, the data padded
//! to 4 bytes, and a `TRAILER!!!` entry. The writer is reproducible by construction:
//! inode numbers count up from 1 in write order, and owner and time are the caller's.

/// `S_IFDIR`, `S_IFREG`, `S_IFLNK`, `S_IFCHR`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Builds a newc archive in memory.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    ino: u32,
    mtime: u32,
}

fn pad4(v: &mut Vec<u8>) {
    while v.len() % 4 != 0 {
        v.push(0);
    }
}

impl Writer {
    /// An empty archive whose entries all carry `mtime` (seconds since the epoch).
    pub fn new(mtime: u32) -> Writer {
        Writer {
            out: Vec::new(),
            ino: 0,
            mtime,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino = self.ino.saturating_add(1);
        self.raw(name, self.ino, mode, nlink, rdev, data);
    }

    fn raw(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let name = name.trim_start_matches('/');
        let name = if name.is_empty() { "." } else { name };
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            self.mtime,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
    }

    /// A directory (`perm` like 0o755).
    pub fn dir(&mut self, path: &str, perm: u32) {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[]);
    }

    /// A regular file. Files over 4 GiB cannot be stored (not needed for an initramfs).
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data);
    }

    /// A symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// A character device.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[]);
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        // The trailer carries inode 0, as GNU cpio writes it.
        self.raw("TRAILER!!!", 0, 0, 1, (0, 0), &[]);
        self.out
    }
}

/// One entry read back: `(name, mode, data)`. For tests and tools; stops at the trailer
/// or at the first malformed header.
pub fn entries(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let field = |h: &[u8], i: usize| -> Option<u32> {
        let s = std::str::from_utf8(h.get(6 + 8 * i..14 + 8 * i)?).ok()?;
        u32::from_str_radix(s, 16).ok()
    };
    let up4 = |n: usize| n.div_ceil(4) * 4;
    while let Some(h) = b.get(..110) {
        if &h[..6] != b"070701" {
            break;
        }
        let (Some(mode), Some(size), Some(namesize)) = (field(h, 1), field(h, 6), field(h, 11))
        else {
            break;
        };
        let (size, namesize) = (size as usize, namesize as usize);
        let Some(name) = b.get(110..110 + namesize.saturating_sub(1)) else {
            break;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let data_at = up4(110 + namesize);
        let Some(data) = b.get(data_at..data_at + size) else {
            break;
        };
        if name == "TRAILER!!!" {
            break;
        }
        out.push((name, mode, data.to_vec()));
        b = b.get(up4(data_at + size)..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let mut w = Writer::new(0);
        w.dir("/", 0o755);
        w.dir("/dev", 0o755);
        w.char_dev("/dev/console", 0o600, 5, 1);
        w.file("/init", 0o755, b"#!x\n");
        w.symlink("/bin", "usr/bin");
        let a = w.finish();
        assert_eq!(a.len() % 4, 0);
        assert!(a.starts_with(b"07070100000001000041ed"));
        let e = entries(&a);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, [".", "dev", "dev/console", "init", "bin"]);
        assert_eq!(e[3].1, 0o100755);
        assert_eq!(e[3].2, b"#!x\n");
        assert_eq!(e[4].2, b"usr/bin");
        assert_eq!(e[2].1, 0o020600);
        // The trailer is last.
        let tail = String::from_utf8_lossy(&a[a.len() - 16..]).into_owned();
        assert!(tail.contains("TRAILER!!!"), "{tail:?}");
    }

    #[test]
    fn reader_survives_garbage() {
        for b in [&b""[..], b"070701", b"070701zzzzzzzz", &[b'0'; 200]] {
            let _ = entries(b);
        }
    }
}
