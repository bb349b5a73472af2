//! Fuzzes the kernel parsers: bzImage header and payload extraction (every decompressor and
//! the extract-vmlinux scan), ELF section lookup and `.modinfo` parsing of module images.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rootsmith::kernel::{bzimage, elf, modules};

fuzz_target!(|data: &[u8]| {
    let _ = bzimage::extract_vmlinux(data);
    if let Ok(Some(s)) = elf::section(data, ".modinfo") {
        let _ = modules::parse_modinfo(s);
    }
    let _ = modules::modinfo_of("m.ko.xz", data);
    let _ = modules::modinfo_of("m.ko.zst", data);
    let _ = rootsmith::kernel::cpio::entries(data);
});
