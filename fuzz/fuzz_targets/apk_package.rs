//! Fuzzes `.apk` reading: splitting the three gzip members, the signature and control
//! tars, `.PKGINFO`, the datahash check, and unpacking the data stream into an empty
//! staging tree with the installed-database bookkeeping.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use rootsmith::pkg::apk::{install, package::ApkFile, signature::Keyring};
use rootsmith::tree::Tree;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = ApkFile::parse(data) else { return };
    let _ = f.verify(None, &Keyring::new());
    let _ = f.check_datahash();
    let mut tree = Tree::new();
    let mut owners = HashMap::new();
    let _ = install::extract(
        &mut tree,
        f.data_raw,
        "fuzz",
        "fuzz-1-r0",
        &[],
        &mut owners,
        &install::Ids::default(),
    );
});
