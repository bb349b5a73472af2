//! Fuzz target: OCI layer application. The input is split into a base layer and an upper
//! layer (tar with whiteouts, opaque markers, links, any compression); both are applied to
//! one tree. Nothing may panic or loop; the tree must stay walkable and its links sane.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rootsmith::tree::Tree;
use rootsmith::unpack::{apply_layer, UnpackOptions};

fuzz_target!(|data: &[u8]| {
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) * 64)
        .min(data.len());
    let (base, upper) = data.split_at(cut);
    let mut tree = Tree::new();
    let opts = UnpackOptions::default();
    let _ = apply_layer(&mut tree, base, None, &opts);
    let _ = apply_layer(&mut tree, upper, None, &opts);
    for e in tree.walk() {
        let inode = tree.inode(e.id);
        assert!(inode.links() >= 1 || e.id == tree.root());
    }
});
