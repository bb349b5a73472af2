//! `rootsmith.modules=a,b,c`: load kernel modules from `/lib/modules/$(uname -r)` with their
//! dependencies, dependencies first. Dependencies come from `modules.dep` when present, else
//! from each module's `.modinfo` `depends=` (Debian's kernel packages ship no `modules.dep`;
//! their postinst runs depmod). Loading uses `finit_module(2)`; `.ko.xz`/`.ko.zst` are passed
//! with `MODULE_INIT_COMPRESSED_FILE` and, if the kernel cannot decompress, decompressed here
//! and loaded with `init_module(2)`. Already loaded or built in is success.
//!
//! One soft rule: a virtio driver is useless without its transport, so when a requested
//! module depends on `virtio` and the machine has a virtio PCI device (vendor 0x1af4),
//! `virtio_pci` is loaded first (that is what udev's coldplug would do).

use crate::{info, sys, warn};
use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where an image lists modules to load at every boot, besides `rootsmith.modules=`
/// (rootsmith writes it for a distribution kernel: virtio-net and its dependencies).
pub const CONFIG: &str = "/etc/rootsmith/modules";

/// Pure: the module names in [`CONFIG`] text — separated by newlines, commas or blanks,
/// `#` to the end of a line is a comment; bad names are skipped.
pub fn parse_config(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for m in line.split(|c: char| c == ',' || c.is_whitespace()) {
            let m = norm(m.trim());
            if m.is_empty() || m.contains('/') || m.contains('\0') || m.len() > 64 {
                continue;
            }
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

/// Module names compare with `-` and `_` equal; we use `_`.
pub fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a file name or path: `kernel/x/virtio-net.ko.xz` → `virtio_net`.
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    norm(stem)
}

/// Pure: parse `modules.dep` into name → (relative path, dependency names).
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let path = path.trim();
        if path.is_empty() {
            continue;
        }
        let deps = deps.split_whitespace().map(name_of).collect();
        m.insert(name_of(path), (path.to_string(), deps));
    }
    m
}

/// Pure: the `depends=` list of a module image's `.modinfo` (NUL-separated `key=value`).
/// Reads the `.modinfo` ELF section; falls back to scanning the whole image.
pub fn modinfo_depends(image: &[u8]) -> Vec<String> {
    let info = elf_section(image, ".modinfo").unwrap_or(image);
    for entry in info.split(|b| *b == 0) {
        if let Some(v) = entry.strip_prefix(b"depends=") {
            return String::from_utf8_lossy(v)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(norm)
                .collect();
        }
    }
    Vec::new()
}

fn rd<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// Pure: the bytes of a named section of a little-endian ELF64 image.
pub fn elf_section<'a>(b: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if b.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = u64::from_le_bytes(rd(b, 0x28)?) as usize;
    let shentsize = usize::from(u16::from_le_bytes(rd(b, 0x3a)?));
    let shnum = usize::from(u16::from_le_bytes(rd(b, 0x3c)?));
    let shstrndx = usize::from(u16::from_le_bytes(rd(b, 0x3e)?));
    if shentsize < 64 {
        return None;
    }
    let sh = |i: usize| -> Option<(u32, usize, usize)> {
        let o = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32::from_le_bytes(rd(b, o)?);
        let off = u64::from_le_bytes(rd(b, o + 0x18)?) as usize;
        let size = u64::from_le_bytes(rd(b, o + 0x20)?) as usize;
        Some((name, off, size))
    };
    let (_, stroff, strsize) = sh(shstrndx)?;
    let strtab = b.get(stroff..stroff.checked_add(strsize)?)?;
    for i in 0..shnum {
        let (n, off, size) = sh(i)?;
        let s = strtab.get(n as usize..)?;
        let end = s.iter().position(|c| *c == 0)?;
        if &s[..end] == name.as_bytes() {
            return b.get(off..off.checked_add(size)?);
        }
    }
    None
}

/// Pure: load order for `wanted` given a dependency function; dependencies first, each module
/// once, cycles broken (a module already on the stack is skipped). Unknown modules are kept
/// (the loader reports them).
pub fn load_order(wanted: &[String], deps: &mut dyn FnMut(&str) -> Vec<String>) -> Vec<String> {
    fn visit(
        m: &str,
        deps: &mut dyn FnMut(&str) -> Vec<String>,
        done: &mut Vec<String>,
        stack: &mut HashSet<String>,
        depth: usize,
    ) {
        if done.iter().any(|d| d == m) || stack.contains(m) || depth > 64 {
            return;
        }
        stack.insert(m.to_string());
        for d in deps(m) {
            visit(&d, deps, done, stack, depth + 1);
        }
        stack.remove(m);
        done.push(m.to_string());
    }
    let mut done = Vec::new();
    let mut stack = HashSet::new();
    for w in wanted {
        visit(&norm(w), deps, &mut done, &mut stack, 0);
    }
    done
}

/// Where to find modules and their dependencies on this system.
struct Index {
    root: PathBuf,
    dep: Option<BTreeMap<String, (String, Vec<String>)>>,
    /// name → path, from a directory walk (when there is no modules.dep).
    files: BTreeMap<String, PathBuf>,
    builtin: HashSet<String>,
    /// `.modinfo` dependencies already read.
    cache: std::cell::RefCell<BTreeMap<String, Vec<String>>>,
}

fn walk(dir: &Path, out: &mut BTreeMap<String, PathBuf>, depth: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && depth < 12 {
            walk(&p, out, depth + 1);
        } else if ft.is_file() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.ends_with(".ko")
                || n.ends_with(".ko.xz")
                || n.ends_with(".ko.zst")
                || n.ends_with(".ko.gz")
            {
                out.entry(name_of(&n)).or_insert(p);
            }
        }
    }
}

impl Index {
    fn open(release: &str) -> Index {
        let root = PathBuf::from(format!("/lib/modules/{release}"));
        let dep = std::fs::read_to_string(root.join("modules.dep"))
            .ok()
            .map(|t| parse_modules_dep(&t));
        let mut files = BTreeMap::new();
        if dep.is_none() {
            walk(&root, &mut files, 0);
        }
        let builtin = std::fs::read_to_string(root.join("modules.builtin"))
            .map(|t| t.lines().map(name_of).collect())
            .unwrap_or_default();
        Index {
            root,
            dep,
            files,
            builtin,
            cache: Default::default(),
        }
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        match &self.dep {
            Some(d) => d.get(name).map(|(p, _)| {
                if p.starts_with('/') {
                    PathBuf::from(p)
                } else {
                    self.root.join(p)
                }
            }),
            None => self.files.get(name).cloned(),
        }
    }

    fn deps(&self, name: &str) -> Vec<String> {
        if let Some(d) = &self.dep {
            return d
                .get(name)
                .map(|(_, deps)| deps.clone())
                .unwrap_or_default();
        }
        if let Some(d) = self.cache.borrow().get(name) {
            return d.clone();
        }
        let Some(p) = self.path(name) else {
            return Vec::new();
        };
        let deps = match read_image(&p) {
            Ok(img) => modinfo_depends(&img),
            Err(e) => {
                warn!("module {name}: read {}: {e}", p.display());
                Vec::new()
            }
        };
        self.cache
            .borrow_mut()
            .insert(name.to_string(), deps.clone());
        deps
    }
}

/// The uncompressed module image.
fn read_image(p: &Path) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(p)?;
    decompress(p, raw)
}

#[cfg(feature = "compressed-modules")]
fn decompress(p: &Path, raw: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let n = p.to_string_lossy();
    if n.ends_with(".xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut &raw[..], &mut out).map_err(|e| bad(format!("xz: {e}")))?;
        Ok(out)
    } else if n.ends_with(".zst") {
        let mut out = Vec::new();
        let mut dec = ruzstd::decoding::StreamingDecoder::new(&raw[..])
            .map_err(|e| bad(format!("zstd: {e}")))?;
        std::io::Read::read_to_end(&mut dec, &mut out)?;
        Ok(out)
    } else if n.ends_with(".gz") {
        Err(bad("gzip-compressed modules are not supported".into()))
    } else {
        Ok(raw)
    }
}

#[cfg(not(feature = "compressed-modules"))]
fn decompress(p: &Path, raw: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let n = p.to_string_lossy();
    if n.ends_with(".xz") || n.ends_with(".zst") || n.ends_with(".gz") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "built without compressed-modules",
        ));
    }
    Ok(raw)
}

const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

fn load_file(p: &Path) -> std::io::Result<()> {
    let params = CString::default();
    let f = std::fs::File::open(p)?;
    let compressed = !p.to_string_lossy().ends_with(".ko");
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    match sys::finit_module(f.as_raw_fd(), &params, flags) {
        Err(e) if compressed && e.raw_os_error() != Some(libc::EEXIST) => {
            // The kernel cannot decompress (no CONFIG_MODULE_DECOMPRESS): do it here.
            let img = read_image(p)?;
            sys::init_module(&img, &params)
        }
        r => r,
    }
}

fn has_virtio_pci_device() -> bool {
    std::fs::read_dir("/sys/bus/pci/devices").is_ok_and(|d| {
        d.flatten().any(|e| {
            std::fs::read_to_string(e.path().join("vendor")).is_ok_and(|v| v.trim() == "0x1af4")
        })
    })
}

/// Load `wanted` and their dependencies. Returns how many were newly loaded.
pub fn load(wanted: &[String]) -> usize {
    if wanted.is_empty() {
        return 0;
    }
    let t0 = sys::monotonic();
    let idx = Index::open(&sys::kernel_release());
    let mut order = load_order(wanted, &mut |m| idx.deps(m));
    if order.iter().any(|m| m == "virtio")
        && !order.iter().any(|m| m == "virtio_pci")
        && idx.path("virtio_pci").is_some()
        && has_virtio_pci_device()
    {
        let mut with_pci = load_order(&["virtio_pci".to_string()], &mut |m| idx.deps(m));
        with_pci.extend(
            order
                .into_iter()
                .filter(|m| !with_pci.contains(m))
                .collect::<Vec<_>>(),
        );
        order = with_pci;
    }
    let t1 = sys::monotonic();
    let mut loaded = 0;
    for m in &order {
        if idx.builtin.contains(m) || Path::new("/sys/module").join(m).join("initstate").exists() {
            continue;
        }
        let Some(p) = idx.path(m) else {
            if !Path::new("/sys/module").join(m).exists() {
                warn!("module {m}: not found under {}", idx.root.display());
            }
            continue;
        };
        match load_file(&p) {
            Ok(()) => loaded += 1,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => warn!("module {m}: {e}"),
        }
    }
    let t2 = sys::monotonic();
    info!(
        "modules: loaded {loaded} ({}) in {} ms ({} ms resolving)",
        order.join(" "),
        (t2 - t0).as_millis(),
        (t1 - t0).as_millis()
    );
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
";

    #[test]
    fn modules_dep_order() {
        let d = parse_modules_dep(DEP);
        let order = load_order(&["virtio_pci".into(), "virtio-net".into()], &mut |m| {
            d.get(m).map(|(_, v)| v.clone()).unwrap_or_default()
        });
        assert_eq!(
            order,
            vec![
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
    }

    #[test]
    fn cycles_terminate() {
        let order = load_order(&["a".into()], &mut |m| match m {
            "a" => vec!["b".into()],
            "b" => vec!["a".into()],
            _ => vec![],
        });
        assert_eq!(order, vec!["b", "a"]);
    }

    #[test]
    fn modinfo_scan_without_elf() {
        let img = b"junk\0license=GPL\0depends=virtio_ring,virtio,net-failover\0vermagic=6.1\0";
        assert_eq!(
            modinfo_depends(img),
            vec!["virtio_ring", "virtio", "net_failover"]
        );
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[cfg(feature = "compressed-modules")]
    #[test]
    fn decompresses_xz_and_zst() {
        let img: Vec<u8> = b"\x7fELF fake module\0depends=virtio\0".repeat(50);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &img[..], &mut xz).expect("xz compress");
        let zst = ruzstd::encoding::compress_to_vec(
            &img[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let p = |n: &str| Path::new("/lib/modules/x").join(n);
        assert_eq!(decompress(&p("m.ko.xz"), xz).expect("xz"), img);
        assert_eq!(decompress(&p("m.ko.zst"), zst).expect("zst"), img);
        assert_eq!(decompress(&p("m.ko"), img.clone()).expect("plain"), img);
        assert!(decompress(&p("m.ko.xz"), b"garbage".to_vec()).is_err());
        assert_eq!(
            modinfo_depends(
                &decompress(&p("m.ko.xz"), {
                    let mut v = Vec::new();
                    lzma_rs::xz_compress(&mut &img[..], &mut v).expect("xz compress");
                    v
                })
                .expect("xz")
            ),
            vec!["virtio"]
        );
    }

    #[test]
    fn config_file() {
        assert_eq!(
            parse_config(
                "# virtio-net\nvirtio_ring virtio,virtio-pci\n\nvirtio_net # nic\nvirtio\n../x\n"
            ),
            ["virtio_ring", "virtio", "virtio_pci", "virtio_net"]
        );
        assert!(parse_config("").is_empty());
    }

    #[test]
    fn names() {
        assert_eq!(name_of("kernel/a/virtio-net.ko.zst"), "virtio_net");
        assert_eq!(name_of("failover.ko"), "failover");
    }

    proptest! {
        #[test]
        fn deps_before_dependents(edges in proptest::collection::vec((0u8..12, 0u8..12), 0..40)) {
            let deps = |m: &str| -> Vec<String> {
                edges.iter().filter(|(a, _)| format!("m{a}") == m).map(|(_, b)| format!("m{b}")).collect()
            };
            let wanted: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
            let order = load_order(&wanted, &mut |m| deps(m));
            prop_assert_eq!(order.len(), 12);
            // For every edge a→b not part of a cycle through a, b comes before a.
            for (a, b) in &edges {
                let (pa, pb) = (order.iter().position(|m| *m == format!("m{a}")), order.iter().position(|m| *m == format!("m{b}")));
                let cyclic = load_order(&[format!("m{b}")], &mut |m| deps(m)).contains(&format!("m{a}"));
                if !cyclic { prop_assert!(pb < pa); }
            }
        }

        #[test]
        fn elf_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut img = b"\x7fELF\x02\x01".to_vec();
            img.extend_from_slice(&b);
            let _ = modinfo_depends(&img);
        }

        #[test]
        fn modules_dep_never_panics(s in "\\PC{0,300}") {
            let _ = parse_modules_dep(&s);
        }
    }
}
