//! `rootsmith pull REF`: resolves an image for a platform and fills the blob cache, verified;
//! prints the manifest digest. `--unpack` also applies the layers to an in-memory tree, to
//! check that the image unpacks (and to time it).

use std::time::Instant;

use clap::Args;

use super::image::{emit, open_image, unpack_image, ImageArgs, Show};
use crate::tree::Tree;
use crate::unpack::UnpackOptions;

/// Arguments of `rootsmith pull`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rootsmith pull alpine:3.20\n  rootsmith pull --platform linux/arm64/v8 debian:bookworm-slim\n  rootsmith pull --json 127.0.0.1:5000/alpine@sha256:<digest>\n  rootsmith pull --unpack oci:./layout:3.20\n\nThe cache is $ROOTSMITH_CACHE, else $XDG_CACHE_HOME/rootsmith, else ~/.cache/rootsmith."
)]
pub struct PullArgs {
    /// The image: REF (registry), oci:DIR[:TAG], docker-archive:FILE or rootfs:FILE.
    #[arg(value_name = "REF")]
    reference: String,
    #[command(flatten)]
    image: ImageArgs,
    /// Also apply the layers to an in-memory tree (nothing is written) and report it.
    #[arg(long)]
    unpack: bool,
    /// JSON events on stdout, one per line, the last one the result.
    #[arg(long)]
    json: bool,
    /// No progress.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `rootsmith pull`.
pub fn run(args: PullArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let show = Show::new(args.json, args.quiet);
    let src = open_image(&args.reference, &args.image, show)?;
    let pulled = started.elapsed().as_secs_f64();
    let mut unpacked = None;
    if args.unpack {
        let t = Instant::now();
        let mut tree = Tree::new();
        let stats = unpack_image(src.as_ref(), &mut tree, &UnpackOptions::default(), show)?;
        unpacked = Some((stats, tree.inode_count(), t.elapsed().as_secs_f64()));
    }
    let image = src.image();
    if args.json {
        let mut v = serde_json::json!({
            "event": "pulled",
            "reference": image.name,
            "digest": image.digest.to_string(),
            "index_digest": image.index_digest.map(|d| d.to_string()),
            "platform": format!("{}/{}{}", image.config.os, image.config.architecture, image.config.variant.as_ref().map(|v| format!("/{v}")).unwrap_or_default()),
            "config_digest": image.manifest.config.digest.to_string(),
            "layers": image.manifest.layers,
            "config": image.config.config,
            "seconds": pulled,
        });
        if let Some((stats, inodes, secs)) = &unpacked {
            v["unpacked"] = serde_json::json!({
                "entries": stats.entries, "inodes": inodes, "tar_bytes": stats.tar_bytes,
                "file_bytes": stats.file_bytes, "seconds": secs,
            });
        }
        emit(&v);
    } else {
        println!("{}", image.digest);
        if let (Some((stats, inodes, secs)), false) = (&unpacked, args.quiet) {
            eprintln!(
                "unpacked {}: {} entries, {} inodes, {} MiB of files ({secs:.2}s)",
                image.name,
                stats.entries,
                inodes,
                stats.file_bytes >> 20
            );
        }
    }
    Ok(())
}
