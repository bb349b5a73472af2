//! Loadable kernel modules: `.modinfo` (NUL-separated `key=value` strings in an ELF
//! section) from `.ko`, `.ko.xz`, `.ko.zst` and `.ko.gz`; `modules.dep` in depmod's text
//! format (paths relative to `/lib/modules/<release>`); and the closure of modules a VM
//! must load for a list of wanted ones, minus those built in (`modules.builtin`).
//!
//! depmod's ordering is reproduced: lines in `modules.order` order (then any other module
//! by path), each line's dependencies the full transitive set, sorted by a topological
//! order where users come before what they use (kmod's `dep_sort_idx`). depmod derives the
//! edges from symbol tables; the kernel's `modpost` writes the same edges into `depends=`,
//! which is what is read here. Pure functions over bytes and text; [`index_tree`] and
//! [`write_modules_dep`] are the only ones that touch the staging tree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use super::elf;
use crate::tree::{Kind, Meta, Time, Tree, TreeError};

/// Most a decompressed module may grow to.
const MAX_MODULE: u64 = 256 << 20;

/// Why a module could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The compressed file is broken.
    #[error("{path}: {why}")]
    Decompress {
        /// Path of the module.
        path: String,
        /// Decoder message.
        why: String,
    },
    /// The module is not a readable ELF.
    #[error("{path}: {source}")]
    Elf {
        /// Path of the module.
        path: String,
        /// What is wrong.
        source: elf::ElfError,
    },
    /// The module directory is missing from the tree.
    #[error("/lib/modules/{0} is not in the tree; install the kernel's modules first")]
    NoModuleDir(String),
    /// A tree read or write.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// A module's name as the kernel sees it: `-` and `_` are the same, `_` is used.
pub fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a path: `kernel/drivers/net/virtio-net.ko.xz` → `virtio_net`.
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    norm(file.split(".ko").next().unwrap_or(file))
}

/// True for a module file name (`.ko`, optionally compressed).
pub fn is_module_file(name: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// A module path without its compression suffix (`a.ko.xz` → `a.ko`).
fn uncompressed(path: &str) -> &str {
    for s in [".xz", ".zst", ".gz"] {
        if let Some(p) = path.strip_suffix(s) {
            if p.ends_with(".ko") {
                return p;
            }
        }
    }
    path
}

/// What `.modinfo` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `depends=`, normalised names, in order.
    pub depends: Vec<String>,
    /// `alias=` patterns.
    pub aliases: Vec<String>,
    /// Modules named by `softdep=pre: ...`.
    pub softdep_pre: Vec<String>,
    /// `vermagic=` (its first word is the kernel release).
    pub vermagic: Option<String>,
}

/// Parses a `.modinfo` section.
pub fn parse_modinfo(section: &[u8]) -> ModInfo {
    let mut m = ModInfo::default();
    for entry in section.split(|b| *b == 0) {
        let e = String::from_utf8_lossy(entry);
        let Some((k, v)) = e.split_once('=') else {
            continue;
        };
        match k {
            "depends" => m.depends.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(norm),
            ),
            "alias" => m.aliases.push(v.to_string()),
            "softdep" => {
                // `pre: a b post: c`
                let mut pre = false;
                for w in v.split_whitespace() {
                    match w {
                        "pre:" => pre = true,
                        "post:" => pre = false,
                        _ if pre => m.softdep_pre.push(norm(w)),
                        _ => {}
                    }
                }
            }
            "vermagic" => m.vermagic = Some(v.to_string()),
            _ => {}
        }
    }
    m
}

/// Decompresses a module file by its suffix.
pub fn decompress_module(path: &str, raw: &[u8]) -> Result<Vec<u8>, ModuleError> {
    let bad = |why: String| ModuleError::Decompress {
        path: path.to_string(),
        why,
    };
    let mut out = Vec::new();
    let r: Box<dyn Read + '_> = if path.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(raw))
    } else if path.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| bad(e.to_string()))?)
    } else if path.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(raw))
    } else {
        return Ok(raw.to_vec());
    };
    r.take(MAX_MODULE + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(e.to_string()))?;
    if out.len() as u64 > MAX_MODULE {
        return Err(bad("decompresses to more than 256 MiB".into()));
    }
    Ok(out)
}

/// The `.modinfo` of a module file (compressed or not).
pub fn modinfo_of(path: &str, raw: &[u8]) -> Result<ModInfo, ModuleError> {
    let img = decompress_module(path, raw)?;
    let sec = elf::section(&img, ".modinfo").map_err(|source| ModuleError::Elf {
        path: path.to_string(),
        source,
    })?;
    Ok(sec.map(parse_modinfo).unwrap_or_default())
}

/// One module of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Path relative to `/lib/modules/<release>` (`kernel/drivers/...ko[.xz]`).
    pub path: String,
    /// Its `.modinfo`.
    pub info: ModInfo,
}

/// Every module of one release, in depmod's order, with the dependency graph.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    /// Modules in depmod's line order.
    pub modules: Vec<Module>,
    /// Names built into the kernel image.
    pub builtin: BTreeSet<String>,
    by_name: HashMap<String, usize>,
    /// Direct dependencies (indexes), in `depends=` order.
    deps: Vec<Vec<usize>>,
    /// kmod's `dep_sort_idx`: users before what they use.
    sort_idx: Vec<usize>,
    /// `depends=` names no module provides.
    pub unknown: Vec<(String, String)>,
}

impl ModuleIndex {
    /// Builds the index. `order` is `modules.order`, `builtin` is `modules.builtin`
    /// (either may be empty).
    pub fn new(mut modules: Vec<Module>, order: &str, builtin: &str) -> ModuleIndex {
        let mut rank: HashMap<&str, usize> = HashMap::new();
        for (i, l) in order
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            rank.entry(uncompressed(l)).or_insert(i);
        }
        modules.sort_by(|a, b| {
            let ra = rank
                .get(uncompressed(&a.path))
                .copied()
                .unwrap_or(usize::MAX);
            let rb = rank
                .get(uncompressed(&b.path))
                .copied()
                .unwrap_or(usize::MAX);
            ra.cmp(&rb).then_with(|| a.path.cmp(&b.path))
        });
        let mut by_name = HashMap::new();
        for (i, m) in modules.iter().enumerate() {
            by_name.entry(name_of(&m.path)).or_insert(i);
        }
        let mut unknown = Vec::new();
        let deps: Vec<Vec<usize>> = modules
            .iter()
            .map(|m| {
                let mut v: Vec<usize> = Vec::new();
                for d in &m.info.depends {
                    match by_name.get(d) {
                        Some(&j) if !v.contains(&j) => v.push(j),
                        Some(_) => {}
                        None => unknown.push((name_of(&m.path), d.clone())),
                    }
                }
                v
            })
            .collect();
        let sort_idx = dep_sort_idx(&deps);
        ModuleIndex {
            builtin: builtin
                .lines()
                .map(name_of)
                .filter(|n| !n.is_empty())
                .collect(),
            modules,
            by_name,
            deps,
            sort_idx,
            unknown,
        }
    }

    /// The index of a module by name (or by an exact `alias=`).
    pub fn find(&self, name: &str) -> Option<usize> {
        let n = norm(name);
        self.by_name.get(&n).copied().or_else(|| {
            self.modules
                .iter()
                .position(|m| m.info.aliases.iter().any(|a| a == name || *a == n))
        })
    }

    /// Every module `i` depends on, directly or not, in depmod's order.
    pub fn all_deps(&self, i: usize) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = self.deps.get(i).cloned().unwrap_or_default();
        while let Some(j) = stack.pop() {
            if j != i && seen.insert(j) {
                stack.extend(self.deps[j].iter().copied());
            }
        }
        let mut v: Vec<usize> = seen.into_iter().collect();
        v.sort_by_key(|&j| self.sort_idx[j]);
        v
    }

    /// `modules.dep`, as depmod writes it.
    pub fn modules_dep(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.modules.iter().enumerate() {
            out.push_str(&m.path);
            out.push(':');
            for j in self.all_deps(i) {
                out.push(' ');
                out.push_str(&self.modules[j].path);
            }
            out.push('\n');
        }
        out
    }

    /// What the VM must load for `wanted`: dependencies first, each once; `softdep pre:`
    /// modules before their user; built-in and unknown names reported apart.
    pub fn closure(&self, wanted: &[&str]) -> Closure {
        let mut c = Closure::default();
        let mut done: BTreeSet<usize> = BTreeSet::new();
        for w in wanted {
            let n = norm(w);
            if self.builtin.contains(&n) {
                if !c.builtin.contains(&n) {
                    c.builtin.push(n);
                }
                continue;
            }
            let Some(i) = self.find(w) else {
                if !c.missing.contains(&n) {
                    c.missing.push(n);
                }
                continue;
            };
            self.visit(i, &mut done, &mut c, 0);
        }
        c
    }

    fn visit(&self, i: usize, done: &mut BTreeSet<usize>, c: &mut Closure, depth: usize) {
        if depth > 64 || !done.insert(i) {
            return;
        }
        for s in &self.modules[i].info.softdep_pre {
            if let Some(j) = self.find(s) {
                self.visit(j, done, c, depth + 1);
            }
        }
        // Deepest dependencies first: reverse depmod order is a valid load order.
        for j in self.all_deps(i).into_iter().rev() {
            self.visit(j, done, c, depth + 1);
        }
        c.load.push(name_of(&self.modules[i].path));
        c.paths.push(self.modules[i].path.clone());
    }
}

/// kmod's topological sort: modules nobody uses are roots; roots are popped from a stack;
/// a module's dependencies become roots once all their users are numbered. Modules in a
/// cycle get the remaining numbers in index order.
fn dep_sort_idx(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut users = vec![0usize; n];
    for d in deps {
        for &j in d {
            users[j] += 1;
        }
    }
    let mut roots: Vec<usize> = (0..n).filter(|&i| users[i] == 0).collect();
    let mut idx = vec![usize::MAX; n];
    let mut next = 0;
    while let Some(i) = roots.pop() {
        idx[i] = next;
        next += 1;
        for &j in &deps[i] {
            users[j] -= 1;
            if users[j] == 0 {
                roots.push(j);
            }
        }
    }
    for v in idx.iter_mut().filter(|v| **v == usize::MAX) {
        *v = next;
        next += 1;
    }
    idx
}

/// The modules to load for a purpose, in load order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Closure {
    /// Names, dependencies first.
    pub load: Vec<String>,
    /// The same, as paths relative to `/lib/modules/<release>`.
    pub paths: Vec<String>,
    /// Wanted names that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
    /// Wanted names that are neither modules nor built in.
    pub missing: Vec<String>,
}

/// What a VM asks for: the virtio PCI transport, virtio-blk, ext4 and virtio-net.
pub const ROOT_DISK: &[&str] = &["virtio_pci", "virtio_blk", "ext4"];
/// The network modules a VM needs (virtio-net over PCI).
pub const NETWORK: &[&str] = &["virtio_pci", "virtio_net"];

fn module_dir(release: &str) -> Vec<u8> {
    format!("/lib/modules/{release}").into_bytes()
}

/// Reads every module of `/lib/modules/<release>` in the tree (following a `/lib` →
/// `usr/lib` link), plus `modules.order` and `modules.builtin`.
pub fn index_tree(tree: &Tree, release: &str) -> Result<ModuleIndex, ModuleError> {
    let dir = module_dir(release);
    let root = tree
        .lookup(&dir)
        .filter(|id| tree.inode(*id).is_dir())
        .ok_or_else(|| ModuleError::NoModuleDir(release.to_string()))?;
    let mut files: Vec<(String, crate::tree::Content)> = Vec::new();
    let mut stack = vec![(root, String::new(), 0usize)];
    while let Some((id, prefix, depth)) = stack.pop() {
        let Kind::Dir(d) = &tree.inode(id).kind else {
            continue;
        };
        for (name, child) in d.entries() {
            let name = String::from_utf8_lossy(name);
            let rel = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            match &tree.inode(child).kind {
                Kind::Dir(_) if depth < 16 => stack.push((child, rel, depth + 1)),
                Kind::File(c) if is_module_file(&name) => files.push((rel, c.clone())),
                _ => {}
            }
        }
    }
    let mut modules = Vec::with_capacity(files.len());
    for (rel, c) in files {
        let raw = tree.store().read_all(&c).map_err(|source| TreeError::Io {
            path: crate::tree::PathBytes([&dir[..], b"/", rel.as_bytes()].concat()),
            source,
        })?;
        let info = modinfo_of(&rel, &raw)?;
        modules.push(Module { path: rel, info });
    }
    let text = |name: &str| {
        tree.read_file(&[&dir[..], b"/", name.as_bytes()].concat())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    Ok(ModuleIndex::new(
        modules,
        &text("modules.order"),
        &text("modules.builtin"),
    ))
}

/// Writes `/lib/modules/<release>/modules.dep` into the tree and returns the index.
pub fn write_modules_dep(
    tree: &mut Tree,
    release: &str,
    time: Time,
) -> Result<ModuleIndex, ModuleError> {
    let idx = index_tree(tree, release)?;
    let mut path = module_dir(release);
    path.extend_from_slice(b"/modules.dep");
    tree.write_file(&path, idx.modules_dep().as_bytes(), Meta::new(0o644, time))?;
    Ok(idx)
}

/// The releases that have a directory under `/lib/modules` in the tree, sorted.
pub fn releases(tree: &Tree) -> Vec<String> {
    let Some(id) = tree.lookup(b"/lib/modules") else {
        return Vec::new();
    };
    match &tree.inode(id).kind {
        Kind::Dir(d) => d
            .entries()
            .filter(|(_, c)| tree.inode(*c).is_dir())
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// Parses `modules.dep` into name → dependency names (for tests and tools).
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let deps = deps.split_whitespace().map(name_of).collect();
        m.insert(name_of(path.trim()), (path.trim().to_string(), deps));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(path: &str, depends: &str) -> Module {
        Module {
            path: path.into(),
            info: parse_modinfo(format!("license=GPL\0depends={depends}\0").as_bytes()),
        }
    }

    /// Debian 6.1 cloud: the virtio chain as its `.modinfo` says.
    fn virtio() -> ModuleIndex {
        ModuleIndex::new(
            vec![
                m("kernel/drivers/net/virtio_net.ko", "virtio_ring,virtio,net_failover"),
                m("kernel/drivers/net/net_failover.ko", "failover"),
                m("kernel/net/core/failover.ko", ""),
                m("kernel/drivers/virtio/virtio.ko", "virtio_ring"),
                m("kernel/drivers/virtio/virtio_ring.ko", ""),
                m(
                    "kernel/drivers/virtio/virtio_pci.ko",
                    "virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio",
                ),
                m("kernel/drivers/virtio/virtio_pci_modern_dev.ko", ""),
                m("kernel/drivers/virtio/virtio_pci_legacy_dev.ko", ""),
                m("kernel/drivers/block/virtio_blk.ko", "virtio,virtio_ring"),
                m("kernel/extra/not-in-order.ko.xz", "virtio"),
            ],
            "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_pci_modern_dev.ko\nkernel/drivers/virtio/virtio_pci_legacy_dev.ko\n\
             kernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/block/virtio_blk.ko\n\
             kernel/net/core/failover.ko\nkernel/drivers/net/net_failover.ko\nkernel/drivers/net/virtio_net.ko\n",
            "kernel/fs/ext4/ext4.ko\nkernel/drivers/nvme/host/nvme.ko\n",
        )
    }

    #[test]
    fn modules_dep_like_depmod() {
        let dep = virtio().modules_dep();
        // What depmod 30 writes for the same modules.
        assert!(dep.contains("kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"), "{dep}");
        assert!(dep.contains("kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"), "{dep}");
        assert!(
            dep.starts_with(
                "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
            ),
            "{dep}"
        );
        assert!(dep.ends_with("kernel/extra/not-in-order.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"), "{dep}");
        assert_eq!(dep.lines().count(), 10);
    }

    #[test]
    fn closure_loads_dependencies_first_and_skips_builtins() {
        let idx = virtio();
        let c = idx.closure(&["virtio_pci", "virtio-net", "ext4", "nope"]);
        assert_eq!(
            c.load,
            [
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        assert_eq!(c.builtin, ["ext4"]);
        assert_eq!(c.missing, ["nope"]);
        for (k, name) in c.load.iter().enumerate() {
            let i = idx.find(name).unwrap();
            for d in idx.all_deps(i) {
                let dn = name_of(&idx.modules[d].path);
                assert!(c.load[..k].contains(&dn), "{dn} before {name}");
            }
        }
    }

    #[test]
    fn modinfo_fields_and_softdeps() {
        let i = parse_modinfo(
            b"alias=fs-ext4\0depends=mbcache,jbd2,crc16\0softdep=pre: crc32c post: x\0vermagic=6.1.0 SMP\0",
        );
        assert_eq!(i.depends, ["mbcache", "jbd2", "crc16"]);
        assert_eq!(i.aliases, ["fs-ext4"]);
        assert_eq!(i.softdep_pre, ["crc32c"]);
        assert_eq!(i.vermagic.as_deref(), Some("6.1.0 SMP"));
        let idx = ModuleIndex::new(
            vec![
                m("kernel/fs/ext4/ext4.ko", ""),
                Module {
                    path: "kernel/crypto/crc32c_generic.ko".into(),
                    info: parse_modinfo(b"alias=crc32c\0"),
                },
            ],
            "",
            "",
        );
        let mut idx2 = idx.clone();
        let ext4 = idx2.find("ext4").unwrap();
        idx2.modules[ext4].info.softdep_pre = vec!["crc32c".into()];
        assert_eq!(idx2.closure(&["ext4"]).load, ["crc32c_generic", "ext4"]);
    }

    #[test]
    fn compressed_modules() {
        use std::io::Write;
        let ko = crate::kernel::elf::tests::build(&[(".modinfo", b"depends=virtio\0")]);
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&ko).unwrap();
        let xz = xz.finish().unwrap();
        let zst = zstd::encode_all(&ko[..], 1).unwrap();
        for (p, raw) in [("a.ko", ko.clone()), ("a.ko.xz", xz), ("a.ko.zst", zst)] {
            assert_eq!(modinfo_of(p, &raw).unwrap().depends, ["virtio"], "{p}");
        }
        assert!(modinfo_of("a.ko.xz", b"garbage").is_err());
        assert!(modinfo_of("a.ko", b"garbage").is_err());
        assert_eq!(name_of("kernel/x/virtio-net.ko.zst"), "virtio_net");
        assert_eq!(uncompressed("a/b.ko.zst"), "a/b.ko");
    }

    #[test]
    fn cycles_do_not_loop() {
        let idx = ModuleIndex::new(vec![m("a.ko", "b"), m("b.ko", "a")], "", "");
        assert_eq!(idx.closure(&["a"]).load.len(), 2);
        assert_eq!(idx.modules_dep().lines().count(), 2);
    }

    #[test]
    fn tree_round_trip() {
        let mut t = Tree::new();
        let ko = |d: &str| {
            crate::kernel::elf::tests::build(&[(".modinfo", format!("depends={d}\0").as_bytes())])
        };
        let time = Time::secs(0);
        t.write_file(
            b"/usr/lib/modules/6.1.0-x/kernel/a.ko",
            &ko("b"),
            Meta::new(0o644, time),
        )
        .unwrap();
        t.write_file(
            b"/usr/lib/modules/6.1.0-x/kernel/b.ko",
            &ko(""),
            Meta::new(0o644, time),
        )
        .unwrap();
        t.insert(
            b"/lib",
            crate::tree::Inode::new(Kind::Symlink(b"usr/lib".to_vec()), Meta::new(0o777, time)),
            &Meta::new(0o755, time),
            crate::tree::Follow::Scoped,
        )
        .unwrap();
        assert_eq!(releases(&t), ["6.1.0-x"]);
        let idx = write_modules_dep(&mut t, "6.1.0-x", time).unwrap();
        assert_eq!(idx.modules.len(), 2);
        assert_eq!(
            t.read_file(b"/usr/lib/modules/6.1.0-x/modules.dep")
                .unwrap(),
            b"kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n"
        );
        assert!(matches!(
            index_tree(&t, "nope"),
            Err(ModuleError::NoModuleDir(_))
        ));
    }
}
