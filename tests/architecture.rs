//! Keeps the arrows of ARCHITECTURE.md true: the pure core (`tree`, `ext4`, `unpack`,
//! `etc`) never names the network, async runtimes, the CLI, OCI or package code, and only
//! `ext4` names the `mkext4` crate.

use std::fs;
use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let p = e.expect("readable").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((
                p.display().to_string(),
                fs::read_to_string(&p).expect("utf-8 source"),
            ));
        }
    }
}

fn check(module: &str, forbidden: &[&str]) {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(module),
        &mut files,
    );
    let single = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(format!("{module}.rs"));
    if let Ok(s) = fs::read_to_string(&single) {
        files.push((single.display().to_string(), s));
    }
    for (path, text) in files {
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for f in forbidden {
                assert!(
                    !line.contains(f),
                    "{path} names `{f}` against the architecture: {line}"
                );
            }
        }
    }
}

#[test]
fn the_core_never_imports_upward_or_the_network() {
    let upward = [
        "crate::cli",
        "crate::oci",
        "crate::pkg",
        "crate::build",
        "crate::fetch",
        "crate::cache",
        "crate::boot",
        "crate::kernel",
        "tokio",
        "reqwest",
        "ureq",
        "oci_client",
    ];
    for module in ["tree", "ext4", "unpack", "etc"] {
        check(module, &upward);
    }
    check("tree", &["crate::ext4", "crate::unpack", "crate::overlay"]);
    // The image manager handles finished images: files, HTTP and digests only.
    check(
        "images",
        &[
            "crate::cli",
            "crate::build",
            "crate::oci",
            "crate::pkg",
            "crate::tree",
            "crate::ext4",
            "crate::unpack",
            "tokio",
            "oci_client",
        ],
    );
}

#[test]
fn kernel_stays_below_the_pipeline() {
    // Kernel sources use the package machinery and the tree; the build and the CLI use them.
    check(
        "kernel",
        &[
            "crate::cli",
            "crate::build",
            "crate::oci",
            "crate::boot",
            "crate::overlay",
        ],
    );
}

#[test]
fn only_the_ext4_module_names_mkext4() {
    for module in [
        "tree", "unpack", "cli", "oci", "pkg", "build", "overlay", "etc", "cache", "fetch",
        "kernel", "boot", "images",
    ] {
        check(module, &["mkext4::"]);
    }
}

#[test]
fn overlay_and_recipes_stay_pure() {
    // The overlay edits the tree only; recipes parse and validate text (they may use the
    // pure reference and platform parsers of `oci`, never a source or the network).
    let io = [
        "crate::cli",
        "crate::build",
        "crate::pkg",
        "crate::fetch",
        "crate::cache",
        "tokio",
        "ureq",
        "oci_client",
        "std::fs",
        "std::net",
    ];
    check(
        "overlay",
        &[&io[..], &["crate::oci", "crate::recipe"]].concat(),
    );
    // (A recipe file is read by `recipe::load`, so `std::fs` is allowed there.)
    check(
        "recipe",
        &[
            &io[..8],
            &["crate::overlay", "crate::oci::registry", "std::net"],
        ]
        .concat(),
    );
}

#[test]
fn boot_runs_finished_images_and_keeps_its_pure_parts_pure() {
    // `boot` takes a finished image and a kernel: nothing of the build pipeline.
    check(
        "boot",
        &[
            "crate::cli",
            "crate::build",
            "crate::oci",
            "crate::pkg",
            "crate::tree",
            "crate::ext4",
            "crate::unpack",
            "crate::kernel",
            "crate::overlay",
            "crate::fetch",
            "crate::cache",
            "tokio",
            "ureq",
        ],
    );
    // Command lines, console parsing and the report are pure; process I/O lives in `vm`,
    // `ssh`, `disk` and `mod`.
    for pure in ["boot/cmdline", "boot/console", "boot/report", "boot/qemu"] {
        check(
            pure,
            &[
                "std::process",
                "std::net",
                "std::fs",
                "UnixStream",
                "Command::new",
            ],
        );
    }
}
