//! Fuzz target: arbitrary text through the deb822 parser, package stanzas (versions,
//! relations), Release parsing and apt sources parsing. Errors are fine; panics are not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rootsmith::etc::apt_sources;
use rootsmith::pkg::deb::{control, packages, relation, release, version};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(paras) = control::parse(text) {
        for p in paras {
            let _ = p.to_text();
            let _ = packages::Package::from_paragraph("fuzz", p);
        }
    }
    let _ = relation::parse(text);
    if let Ok(v) = text.parse::<version::Version>() {
        let _ = v.cmp(&v);
        let _ = v.to_string();
    }
    let _ = release::Release::parse("fuzz", text, 0);
    let _ = apt_sources::parse_deb822("fuzz", text);
    let _ = apt_sources::parse_one_line("fuzz", text);
});
