//! Fuzzes everything that reads an APKINDEX: the signed `APKINDEX.tar.gz` container
//! (gzip member split, signature tar), the index text, the installed database, dependency
//! atoms and version comparison. None of it may panic, loop or allocate without bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rootsmith::pkg::apk::{db, dep::Dep, index, repo, signature::Keyring, version};

fuzz_target!(|data: &[u8]| {
    let keys = Keyring::new();
    let _ = repo::read_index(data, &keys, "fuzz");
    let text = String::from_utf8_lossy(data);
    if let Ok(pkgs) = index::parse(&text) {
        for p in &pkgs {
            let mut s = String::new();
            p.write_header(&mut s);
            let _ = index::parse(&s);
        }
    }
    if let Ok(recs) = db::parse(&text) {
        for r in &recs {
            let _ = r.render();
        }
    }
    for w in text.split_whitespace().take(64) {
        let _ = Dep::parse(w);
        let _ = version::is_valid(w);
        let _ = version::compare(w, "1.2.3_rc1-r0");
    }
});
