//! `rootsmith mkfs`: a rootfs tarball (any compression, `-` for stdin) or a host directory
//! into an ext4 image, like `mke2fs -d` but without root and reproducible.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::ext4::{self, Ext4Options};
use crate::tree::Tree;
use crate::unpack::{self, UnpackOptions};

/// Arguments of `rootsmith mkfs`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rootsmith mkfs --from-tar alpine-minirootfs.tar.gz rootfs.ext4\n  rootsmith mkfs --from-dir ./rootfs --owner 0:0 --size 1G rootfs.ext4\n  SOURCE_DATE_EPOCH=1700000000 rootsmith mkfs --from-tar rootfs.tar.xz --json rootfs.ext4\n\nThe image is written to a temporary file beside OUT and renamed when complete; on any\nerror nothing is left at OUT. Same input and SOURCE_DATE_EPOCH give the same bytes."
)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from_tar", "from_dir", "from_image"])))]
pub struct MkfsArgs {
    /// A rootfs tarball: plain, gzip, zstd, xz or bzip2 (detected), or `-` for stdin.
    #[arg(long, value_name = "FILE")]
    from_tar: Option<PathBuf>,
    /// A host directory; ownership as on disk unless --owner is given.
    #[arg(long, value_name = "DIR")]
    from_dir: Option<PathBuf>,
    /// A container image: REF (registry, pulled into the cache), oci:DIR[:TAG],
    /// docker-archive:FILE or rootfs:FILE; its layers are applied in order.
    #[arg(long, value_name = "REF")]
    from_image: Option<String>,
    #[command(flatten)]
    image: super::image::ImageArgs,
    /// The image to write.
    #[arg(value_name = "OUT.ext4")]
    out: PathBuf,
    /// Image size, mke2fs syntax (512M, 2G; a bare number is KiB). Default: just enough
    /// for the tree plus --headroom.
    #[arg(short = 's', long, value_name = "SIZE", value_parser = ext4::parse_size)]
    size: Option<u64>,
    /// Free space added when sizing automatically, in percent of what the tree needs
    /// (at least 4 MiB).
    #[arg(long, value_name = "PERCENT", default_value_t = 10)]
    headroom: u32,
    /// Number of inodes. Default: the tree's plus 25 % (at least 1024 more).
    #[arg(short = 'N', long, value_name = "COUNT")]
    inodes: Option<u32>,
    /// Filesystem UUID. Default: derived from the tree's content digest.
    #[arg(short = 'U', long, value_name = "UUID", value_parser = ext4::parse_uuid)]
    uuid: Option<[u8; 16]>,
    /// Volume label (at most 16 bytes).
    #[arg(short = 'L', long, value_name = "LABEL")]
    label: Option<String>,
    /// Blocks reserved for root, in percent.
    #[arg(short = 'm', long, value_name = "PERCENT", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=50))]
    reserved_percent: u8,
    /// Give every file this owner (UID:GID), e.g. 0:0 for a tree staged by a non-root user.
    #[arg(long, value_name = "UID:GID", value_parser = parse_owner)]
    owner: Option<(u32, u32)>,
    /// Print one JSON object describing the image (with its SHA-256) instead of text.
    #[arg(long)]
    json: bool,
    /// No progress bar and no summary.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_owner(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("bad owner {s:?}: expected UID:GID, e.g. 0:0");
    let (u, g) = s.split_once(':').ok_or_else(bad)?;
    Ok((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
}

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Runs `rootsmith mkfs`.
pub fn run(args: MkfsArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let epoch = super::source_date_epoch()?;
    check_output_dir(&args.out)?;
    super::clean_up_on_interrupt(match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    });
    let mut tree = Tree::new();
    let opts = UnpackOptions {
        owner: args.owner,
        ..UnpackOptions::default()
    };
    let (source, stats) = if let Some(path) = &args.from_tar {
        let stats = if path.as_os_str() == "-" {
            let bar = super::progress::bytes_bar(0, "reading", args.quiet);
            let r = Counting {
                inner: io::stdin().lock(),
                bar: bar.clone(),
            };
            let s = unpack::apply_tar(&mut tree, r, &opts);
            bar.finish_and_clear();
            s
        } else {
            let f = File::open(path)
                .with_context(|| format!("cannot open {}: check the path", path.display()))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = super::progress::bytes_bar(len, "unpacking", args.quiet);
            let r = Counting {
                inner: f,
                bar: bar.clone(),
            };
            let s = unpack::apply_tar(&mut tree, r, &opts);
            bar.finish_and_clear();
            s
        }
        .with_context(|| format!("{} is not a usable rootfs tarball", path.display()))?;
        (path.display().to_string(), stats)
    } else if let Some(reference) = &args.from_image {
        let show = if args.quiet || args.json {
            super::image::Show::Quiet
        } else {
            super::image::Show::new(false, false)
        };
        let src = super::image::open_image(reference, &args.image, show)?;
        let stats = super::image::unpack_image(src.as_ref(), &mut tree, &opts, show)?;
        (
            format!("{}@{}", src.image().name, src.image().digest),
            stats,
        )
    } else {
        let dir = args.from_dir.as_ref().expect("clap requires a source");
        let stats = unpack::dir::apply_dir(&mut tree, dir, &opts)
            .with_context(|| format!("cannot read directory {}", dir.display()))?;
        (dir.display().to_string(), stats)
    };
    let ext4_opts = Ext4Options {
        size: args.size,
        headroom_percent: args.headroom,
        inodes: args.inodes,
        uuid: args.uuid,
        label: args.label.clone(),
        reserved_percent: args.reserved_percent,
        epoch,
    };
    let bar = super::progress::bytes_bar(0, "writing", args.quiet || args.json);
    let report = ext4::write_image(&tree, &args.out, &ext4_opts, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done.min(total));
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        let sha = sha256_file(&args.out)?;
        let v = serde_json::json!({
            "output": args.out.display().to_string(),
            "source": source,
            "compression": stats.compression,
            "entries": stats.entries,
            "size": report.size,
            "inodes": report.inodes,
            "inodes_used": report.inodes_used,
            "blocks": report.blocks,
            "blocks_used": report.blocks_used,
            "block_size": 4096,
            "file_bytes": report.file_bytes,
            "features": ext4::FEATURES,
            "uuid": report.uuid,
            "epoch": report.epoch,
            "tree_digest": report.tree_digest,
            "writer": ext4::WRITER,
            "sha256": sha.to_string(),
            "seconds": secs,
        });
        println!("{v}");
    } else if !args.quiet {
        eprintln!(
            "wrote {}: {} MiB, {} of {} blocks and {} of {} inodes used, UUID {} ({:.2}s)",
            args.out.display(),
            report.size >> 20,
            report.blocks_used,
            report.blocks,
            report.inodes_used,
            report.inodes,
            report.uuid,
            secs
        );
    }
    Ok(())
}

fn check_output_dir(out: &std::path::Path) -> anyhow::Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "output directory {} does not exist: create it first or choose another OUT",
            dir.display()
        );
    }
    if out.is_dir() {
        anyhow::bail!(
            "{} is a directory: give a file name like rootfs.ext4",
            out.display()
        );
    }
    Ok(())
}

fn sha256_file(path: &std::path::Path) -> anyhow::Result<crate::digest::Digest> {
    let mut f = File::open(path).with_context(|| format!("cannot read back {}", path.display()))?;
    let mut h = crate::digest::Hasher::new();
    io::copy(&mut f, &mut h)?;
    Ok(h.finish())
}
