//! A reproducible initramfs (`initrd.img`) for distribution kernels whose virtio-blk is a
//! module: a [`cpio`](super::cpio) newc archive, optionally gzip-compressed, holding the
//! static rootsmith-init as `/init`, the module closure needed to reach the root disk and
//! the network (virtio PCI, virtio-blk, ext4 when modular, virtio-net) with a matching
//! `modules.dep` and `modules.builtin`, and the marker `/etc/rootsmith/initramfs` that
//! lists the modules in load order. rootsmith-init sees the marker, loads them, mounts
//! `root=` and switches to the image's own `/init` (see `init/src/initramfs.rs`).
//!
//! Same inputs, same bytes: entries in byte order of their paths, inode numbers in that
//! order, every owner root, every time the given epoch, gzip with no name and time 0.

use std::collections::BTreeMap;
use std::io::Write;

use super::cpio;
use super::modules::{self, Closure, ModuleError, ModuleIndex};
use crate::tree::{Tree, TreeError};

/// Where the module list goes (rootsmith-init's initramfs marker).
pub const MARKER: &str = "/etc/rootsmith/initramfs";

/// What the initramfs loads by default: the root disk and the network.
pub const DEFAULT_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "ext4", "virtio_net"];

/// Why an initramfs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// Reading modules.
    #[error(transparent)]
    Modules(#[from] ModuleError),
    /// Reading the tree.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A wanted module is neither built in nor present.
    #[error("kernel {release}: {} neither built in nor a module under /lib/modules/{release}; drop it from the list or use a kernel that has it", .missing.join(", "))]
    Missing {
        /// The release.
        release: String,
        /// The names.
        missing: Vec<String>,
    },
    /// The init binary is not a static ELF.
    #[error("the init for the initramfs is not an ELF executable ({0}); build it with `cargo build-init`")]
    BadInit(String),
}

/// Options.
#[derive(Debug, Clone)]
pub struct InitramfsOptions {
    /// Module names (or aliases) to load; their dependencies are added.
    pub modules: Vec<String>,
    /// gzip the archive (the kernel also takes it uncompressed).
    pub gzip: bool,
    /// The time of every entry (`SOURCE_DATE_EPOCH`, else 0).
    pub mtime: u32,
}

impl Default for InitramfsOptions {
    fn default() -> Self {
        InitramfsOptions {
            modules: DEFAULT_MODULES.iter().map(|s| s.to_string()).collect(),
            gzip: true,
            mtime: 0,
        }
    }
}

/// The archive and what it holds.
#[derive(Debug, Clone)]
pub struct Initramfs {
    /// The bytes of `initrd.img`.
    pub bytes: Vec<u8>,
    /// The modules it loads, in order (and those built in or missing).
    pub closure: Closure,
    /// Entries in the archive.
    pub entries: usize,
}

/// One entry before writing.
enum Node {
    Dir,
    File(u32, Vec<u8>),
    CharDev(u32, u32, u32),
}

/// Builds the archive from the parts. `modules` are `(path relative to
/// /lib/modules/<release>, bytes)`; `dep` and `builtin` are the texts to store; `opts`
/// gives gzip and the time (its module list is not used here). Pure.
pub fn assemble(
    init: &[u8],
    release: &str,
    modules: &[(String, Vec<u8>)],
    dep: &str,
    builtin: &str,
    load: &[String],
    opts: &InitramfsOptions,
) -> std::io::Result<(Vec<u8>, usize)> {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let add = |path: String, node: Node, nodes: &mut BTreeMap<String, Node>| {
        let mut p = path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if parent.is_empty() {
                break;
            }
            nodes.entry(parent.to_string()).or_insert(Node::Dir);
            p = parent;
        }
        nodes.insert(path, node);
    };
    for d in ["/dev", "/proc", "/sys", "/run", "/newroot", "/tmp"] {
        add(d.into(), Node::Dir, &mut nodes);
    }
    add(
        "/dev/console".into(),
        Node::CharDev(0o600, 5, 1),
        &mut nodes,
    );
    add("/init".into(), Node::File(0o755, init.to_vec()), &mut nodes);
    let mut marker =
        String::from("# modules rootsmith-init loads before mounting root=, in order\n");
    for m in load {
        marker.push_str(m);
        marker.push('\n');
    }
    add(
        MARKER.into(),
        Node::File(0o644, marker.into_bytes()),
        &mut nodes,
    );
    let base = format!("/lib/modules/{release}");
    add(base.clone(), Node::Dir, &mut nodes);
    for (path, bytes) in modules {
        add(
            format!("{base}/{path}"),
            Node::File(0o644, bytes.clone()),
            &mut nodes,
        );
    }
    add(
        format!("{base}/modules.dep"),
        Node::File(0o644, dep.as_bytes().to_vec()),
        &mut nodes,
    );
    if !builtin.is_empty() {
        add(
            format!("{base}/modules.builtin"),
            Node::File(0o644, builtin.as_bytes().to_vec()),
            &mut nodes,
        );
    }
    let mut w = cpio::Writer::new(opts.mtime);
    w.dir("/", 0o755);
    for (path, node) in &nodes {
        match node {
            Node::Dir => w.dir(path, 0o755),
            Node::File(perm, data) => w.file(path, *perm, data),
            Node::CharDev(perm, major, minor) => w.char_dev(path, *perm, *major, *minor),
        }
    }
    let entries = nodes.len() + 1;
    let raw = w.finish();
    if !opts.gzip {
        return Ok((raw, entries));
    }
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&raw)?;
    Ok((gz.finish()?, entries))
}

/// `modules.dep` restricted to the modules in `closure`, in the index's order.
pub fn restricted_dep(index: &ModuleIndex, closure: &Closure) -> String {
    let keep: std::collections::BTreeSet<&str> = closure.paths.iter().map(String::as_str).collect();
    index
        .modules_dep()
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(p, _)| keep.contains(p.trim()))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Builds the initramfs for `release` from the modules already in `tree` (see
/// [`super::package::install`]), with `init` as `/init`.
pub fn from_tree(
    tree: &Tree,
    release: &str,
    init: &[u8],
    opts: &InitramfsOptions,
) -> Result<Initramfs, InitramfsError> {
    if !init.starts_with(b"\x7fELF") {
        return Err(InitramfsError::BadInit("no ELF magic".into()));
    }
    let index = modules::index_tree(tree, release)?;
    let wanted: Vec<&str> = opts.modules.iter().map(String::as_str).collect();
    let closure = index.closure(&wanted);
    if !closure.missing.is_empty() {
        return Err(InitramfsError::Missing {
            release: release.to_string(),
            missing: closure.missing.clone(),
        });
    }
    let base = format!("/lib/modules/{release}");
    let mut files = Vec::with_capacity(closure.paths.len());
    for p in &closure.paths {
        files.push((p.clone(), tree.read_file(format!("{base}/{p}").as_bytes())?));
    }
    let builtin = tree
        .read_file(format!("{base}/modules.builtin").as_bytes())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let dep = restricted_dep(&index, &closure);
    let (bytes, entries) = assemble(init, release, &files, &dep, &builtin, &closure.load, opts)
        .map_err(|source| TreeError::Io {
            path: crate::tree::PathBytes(b"initrd.img".to_vec()),
            source,
        })?;
    Ok(Initramfs {
        bytes,
        closure,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Meta, Time};

    fn tree_with_modules() -> Tree {
        let mut t = Tree::new();
        let ko = |d: &str| {
            crate::kernel::elf::tests::build(&[(".modinfo", format!("depends={d}\0").as_bytes())])
        };
        let m = Meta::new(0o644, Time::secs(5));
        let base = "/lib/modules/6.1.0-t";
        for (p, d) in [
            ("kernel/drivers/virtio/virtio_ring.ko", ""),
            ("kernel/drivers/virtio/virtio.ko", "virtio_ring"),
            ("kernel/drivers/virtio/virtio_pci.ko", "virtio,virtio_ring"),
            ("kernel/drivers/block/virtio_blk.ko", "virtio,virtio_ring"),
            ("kernel/drivers/net/virtio_net.ko", "virtio,virtio_ring"),
            ("kernel/sound/unrelated.ko", ""),
        ] {
            t.write_file(format!("{base}/{p}").as_bytes(), &ko(d), m.clone())
                .unwrap();
        }
        t.write_file(
            format!("{base}/modules.builtin").as_bytes(),
            b"kernel/fs/ext4/ext4.ko\n",
            m,
        )
        .unwrap();
        t
    }

    #[test]
    fn holds_init_closure_and_marker_and_is_reproducible() {
        let t = tree_with_modules();
        let init = b"\x7fELF static init".to_vec();
        let opts = InitramfsOptions {
            gzip: false,
            ..Default::default()
        };
        let a = from_tree(&t, "6.1.0-t", &init, &opts).unwrap();
        assert_eq!(a.closure.builtin, ["ext4"]);
        assert_eq!(a.closure.load.len(), 5);
        assert_eq!(
            a.closure.load.last().map(String::as_str),
            Some("virtio_net")
        );
        let e = cpio::entries(&a.bytes);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names[0], ".");
        assert!(names.contains(&"init"));
        assert!(names.contains(&"dev/console"));
        assert!(names.contains(&"lib/modules/6.1.0-t/kernel/drivers/block/virtio_blk.ko"));
        assert!(!names.iter().any(|n| n.contains("unrelated")));
        let mut sorted = names[1..].to_vec();
        sorted.sort_unstable();
        assert_eq!(names[1..], sorted[..], "entries in path order");
        let marker = e.iter().find(|x| x.0 == "etc/rootsmith/initramfs").unwrap();
        let text = String::from_utf8_lossy(&marker.2).into_owned();
        assert!(text.ends_with("virtio_net\n"), "{text}");
        let dep = e.iter().find(|x| x.0.ends_with("modules.dep")).unwrap();
        assert_eq!(String::from_utf8_lossy(&dep.2).lines().count(), 5);
        // Same input, same bytes; gzip too.
        assert_eq!(
            from_tree(&t, "6.1.0-t", &init, &opts).unwrap().bytes,
            a.bytes
        );
        let g1 = from_tree(&t, "6.1.0-t", &init, &InitramfsOptions::default()).unwrap();
        let g2 = from_tree(&t, "6.1.0-t", &init, &InitramfsOptions::default()).unwrap();
        assert_eq!(g1.bytes, g2.bytes);
        assert_eq!(&g1.bytes[..2], b"\x1f\x8b");
        assert_eq!(&g1.bytes[4..8], &[0, 0, 0, 0], "gzip mtime 0");
    }

    #[test]
    fn missing_modules_and_bad_init_are_errors() {
        let t = tree_with_modules();
        let opts = InitramfsOptions {
            modules: vec!["nvme_tcp".into()],
            ..Default::default()
        };
        let e = from_tree(&t, "6.1.0-t", b"\x7fELF", &opts).unwrap_err();
        assert!(e.to_string().contains("nvme_tcp"), "{e}");
        assert!(matches!(
            from_tree(&t, "6.1.0-t", b"#!/bin/sh", &InitramfsOptions::default()),
            Err(InitramfsError::BadInit(_))
        ));
        assert!(matches!(
            from_tree(&t, "nope", b"\x7fELF", &InitramfsOptions::default()),
            Err(InitramfsError::Modules(ModuleError::NoModuleDir(_)))
        ));
    }
}
