//! Shared helpers: environment checks, running the binary, and listings of a filesystem
//! (host directory or kernel mount), an ext4 image (through the independent `ext4-view`
//! reader) and a staging tree, in one comparable line format.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// The repository's `shared/` directory (beside the clone).
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// A base fixture tarball.
pub fn fixture(name: &str) -> PathBuf {
    shared().join("fixtures/base").join(name)
}

/// Every base fixture tarball.
pub fn all_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(shared().join("fixtures/base"))
        .expect("shared/fixtures/base exists beside the repository")
        .map(|e| e.expect("readable").path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.contains(".tar")
        })
        .collect();
    v.sort();
    v
}

/// True under CI, where nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Returns false (after saying why) when a requirement is missing outside CI; panics in CI.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("CI=true but {what} is not available");
    }
    eprintln!("skipping: {what} is not available (runs in CI)");
    false
}

/// True when running as root.
pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// True when `tool` is on PATH (or in /sbin, /usr/sbin).
pub fn have(tool: &str) -> bool {
    which(tool).is_some()
}

/// The full path of a tool.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/sbin:/usr/sbin";
    path.split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// The rootsmith binary under test.
pub fn rootsmith() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rootsmith"))
}

/// Runs a command, returning its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command and panics with its stderr unless it succeeds.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `e2fsck -fn` exit status (0 = clean).
pub fn fsck(img: &Path) -> i32 {
    let out = run(Command::new(which("e2fsck").expect("e2fsck installed"))
        .args(["-fn"])
        .arg(img));
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
    out.status.code().unwrap_or(-1)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    let mut f = fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Fields of one listed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub sha256: String,
    pub target: String,
    pub rdev: (u32, u32),
    pub xattrs: BTreeMap<String, String>,
    pub nlink: u64,
    pub mtime: (i64, u32),
}

impl Entry {
    /// One line with the fields `fields` keeps.
    pub fn line(&self, path: &str, f: &Fields) -> String {
        let mut s = format!(
            "{path} {} {:o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        );
        if self.kind == "file" {
            s += &format!(" size={} sha256={}", self.size, self.sha256);
        }
        if self.kind == "symlink" {
            s += &format!(" -> {}", self.target);
        }
        if f.rdev && (self.kind == "char" || self.kind == "block") {
            s += &format!(" rdev={}:{}", self.rdev.0, self.rdev.1);
        }
        if f.xattrs && !self.xattrs.is_empty() {
            s += &format!(" xattrs={:?}", self.xattrs);
        }
        if f.nlink && self.kind != "dir" {
            s += &format!(" nlink={}", self.nlink);
        }
        if f.nlink && self.kind == "dir" && path != "/" {
            s += &format!(" nlink={}", self.nlink);
        }
        if f.mtime && (f.symlink_mtime || self.kind != "symlink") {
            s += &format!(" mtime={}.{:09}", self.mtime.0, self.mtime.1);
        }
        s
    }
}

/// Which fields a comparison uses.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub xattrs: bool,
    pub nlink: bool,
    pub mtime: bool,
    pub symlink_mtime: bool,
    pub rdev: bool,
}

impl Fields {
    pub const ALL: Fields = Fields {
        xattrs: true,
        nlink: true,
        mtime: true,
        symlink_mtime: true,
        rdev: true,
    };
}

fn split_dev(dev: u64) -> (u32, u32) {
    rootsmith::unpack::dir::split_dev(dev)
}

/// Lists a mounted filesystem or a host directory (paths relative to `root`, `/` first).
/// `/lost+found` is left out when `skip_lost_found`.
pub fn list_host(root: &Path, skip_lost_found: bool) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let rel = p.strip_prefix(root).unwrap();
        let rel = format!("/{}", String::from_utf8_lossy(rel.as_os_str().as_bytes()));
        if skip_lost_found && rel == "/lost+found" {
            continue;
        }
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(&p) {
            for n in names {
                if let Ok(Some(v)) = xattr::get(&p, &n) {
                    xattrs.insert(n.to_string_lossy().into_owned(), hex(&v));
                }
            }
        }
        let e = Entry {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: if ft.is_file() { md.len() } else { 0 },
            sha256: if ft.is_file() {
                sha256_file(&p)
            } else {
                String::new()
            },
            target: if ft.is_symlink() {
                String::from_utf8_lossy(fs::read_link(&p).unwrap().as_os_str().as_bytes())
                    .into_owned()
            } else {
                String::new()
            },
            rdev: if ft.is_char_device() || ft.is_block_device() {
                split_dev(md.rdev())
            } else {
                (0, 0)
            },
            xattrs,
            nlink: md.nlink(),
            mtime: (md.mtime(), md.mtime_nsec() as u32),
        };
        if ft.is_dir() {
            for c in fs::read_dir(&p).unwrap() {
                stack.push(c.unwrap().path());
            }
        }
        out.insert(if rel == "/" { "/".into() } else { rel }, e);
    }
    out
}

/// Lists an ext4 image with the independent `ext4-view` reader (no root, no kernel). It
/// cannot see xattrs, device numbers or link counts.
pub fn list_image(img: &Path) -> BTreeMap<String, Entry> {
    let (l, skipped) = list_image_partial(img);
    assert!(skipped.is_empty(), "ext4-view could not read {skipped:?}");
    l
}

/// Like [`list_image`], but entries ext4-view refuses are returned apart: ext4-view 1.0
/// reads the raw 32-bit time field as non-negative, so it rejects every time before 1970
/// or after 2038 (the kernel reads them; the stress test checks them through a mount).
pub fn list_image_partial(img: &Path) -> (BTreeMap<String, Entry>, Vec<String>) {
    let mut skipped = Vec::new();
    let fs = ext4_view::Ext4::load_from_path(img)
        .unwrap_or_else(|e| panic!("ext4-view cannot load {}: {e}", img.display()));
    let mut out = BTreeMap::new();
    let mut stack: Vec<Vec<u8>> = vec![b"/".to_vec()];
    while let Some(p) = stack.pop() {
        let path = ext4_view::Path::new(&p);
        let md = match fs.symlink_metadata(path) {
            Ok(md) => md,
            Err(e) if e.to_string().contains("invalid timestamp") => {
                skipped.push(String::from_utf8_lossy(&p).into_owned());
                continue;
            }
            Err(e) => panic!("ext4-view {}: {e}", String::from_utf8_lossy(&p)),
        };
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_regular_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_dev() {
            "char"
        } else if ft.is_block_dev() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let rel = String::from_utf8_lossy(&p).into_owned();
        if rel == "/lost+found" {
            continue;
        }
        let sha256 = if ft.is_regular_file() {
            hex(&Sha256::digest(fs.read(path).expect("ext4-view read")))
        } else {
            String::new()
        };
        let target = if ft.is_symlink() {
            String::from_utf8_lossy(fs.read_link(path).expect("read_link").as_ref()).into_owned()
        } else {
            String::new()
        };
        let m = md.modified();
        out.insert(
            rel,
            Entry {
                kind,
                mode: u32::from(md.mode()) & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: if ft.is_regular_file() { md.len() } else { 0 },
                sha256,
                target,
                rdev: (0, 0),
                xattrs: BTreeMap::new(),
                nlink: 0,
                mtime: (m.seconds(), m.nanoseconds()),
            },
        );
        if ft.is_dir() {
            for e in fs.read_dir(path).expect("read_dir") {
                let e = e.expect("dir entry");
                let name = e.file_name();
                let nb = name.as_ref();
                if nb == b"." || nb == b".." {
                    continue;
                }
                let mut c = if p == b"/" { Vec::new() } else { p.clone() };
                c.push(b'/');
                c.extend_from_slice(nb);
                stack.push(c);
            }
        }
    }
    (out, skipped)
}

/// Renders listings as sorted lines with the chosen fields.
pub fn lines(l: &BTreeMap<String, Entry>, f: &Fields) -> Vec<String> {
    l.iter().map(|(p, e)| e.line(p, f)).collect()
}

/// Asserts two listings are equal, showing the first differences.
pub fn assert_same(what: &str, a: &[String], b: &[String]) {
    if a == b {
        return;
    }
    let sa: std::collections::BTreeSet<_> = a.iter().collect();
    let sb: std::collections::BTreeSet<_> = b.iter().collect();
    let only_a: Vec<_> = sa.difference(&sb).take(10).collect();
    let only_b: Vec<_> = sb.difference(&sa).take(10).collect();
    panic!("{what}: listings differ ({} vs {} entries)\nonly in first: {only_a:#?}\nonly in second: {only_b:#?}", a.len(), b.len());
}

/// A loop mount that is undone when dropped.
pub struct Mount {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mount {
    pub fn new(img: &Path, opts: &str) -> Mount {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnt");
        fs::create_dir(&dir).unwrap();
        ok(Command::new("mount")
            .args(["-t", "ext4", "-o", &format!("loop,{opts}")])
            .arg(img)
            .arg(&dir));
        Mount { dir, _tmp: tmp }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}
