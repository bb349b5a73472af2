//! Fuzz target: arbitrary bytes as a `.deb` — the ar container, the control archive, and
//! extraction of the data archive into a staging tree with merged-`/usr` symlinks. Any
//! input may fail with an error; none may panic or hang.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rootsmith::pkg::deb::{archive, install};
use rootsmith::tree::{Follow, Inode, Kind, Meta, Time, Tree};

fuzz_target!(|data: &[u8]| {
    let Ok(deb) = archive::read(data) else { return };
    let mut tree = Tree::new();
    let m = Meta::new(0o777, Time::default());
    let _ = tree.insert(
        b"/bin",
        Inode::new(Kind::Symlink(b"usr/bin".to_vec()), m.clone()),
        &m,
        Follow::Scoped,
    );
    let _ = install::extract(&mut tree, deb.data, &install::Owners::default(), &[]);
});
