//! Fuzz target: arbitrary bytes as a (possibly compressed) tar stream → staging tree →
//! ext4 image. Any input may fail with an error; none may panic, hang or write outside the
//! temporary directory.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rootsmith::ext4::{write_image, Ext4Options};
use rootsmith::tree::Tree;
use rootsmith::unpack::{apply_tar, UnpackOptions};

static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("rootsmith-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    });
    let mut tree = Tree::new();
    if apply_tar(&mut tree, data, &UnpackOptions::default()).is_err() {
        return;
    }
    let opts = Ext4Options {
        epoch: Some(0),
        ..Ext4Options::default()
    };
    let _ = write_image(&tree, &dir.join("fuzz.ext4"), &opts, &mut |_, _| {});
});
