//! `rootsmith export REF --tar OUT`: the image's layers flattened into one rootfs tar (like
//! `crane export`), written to a temp file beside OUT and renamed when complete (`-` for
//! stdout).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::image::{emit, open_image, unpack_image, ImageArgs, Show};
use crate::tree::Tree;
use crate::unpack::UnpackOptions;

/// Arguments of `rootsmith export`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rootsmith export alpine:3.20 --tar alpine.tar\n  rootsmith export oci:./layout --tar - | tar -t"
)]
pub struct ExportArgs {
    /// The image: REF (registry), oci:DIR[:TAG], docker-archive:FILE or rootfs:FILE.
    #[arg(value_name = "REF")]
    reference: String,
    /// Where to write the flattened rootfs tar (`-` for stdout).
    #[arg(long, value_name = "OUT")]
    tar: PathBuf,
    #[command(flatten)]
    image: ImageArgs,
    /// JSON events on stderr's behalf on stdout (not with --tar -).
    #[arg(long)]
    json: bool,
    /// No progress.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `rootsmith export`.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let to_stdout = args.tar.as_os_str() == "-";
    if to_stdout && args.json {
        anyhow::bail!("--json and --tar - both want stdout; write the tar to a file");
    }
    let show = Show::new(args.json, args.quiet);
    let src = open_image(&args.reference, &args.image, show)?;
    let mut tree = Tree::new();
    unpack_image(src.as_ref(), &mut tree, &UnpackOptions::default(), show)?;
    let stats = if to_stdout {
        let out = io::stdout().lock();
        crate::export::write_tar(&tree, BufWriter::new(out)).context("writing the tar to stdout")?
    } else {
        let dir = match args.tar.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::NamedTempFile::new_in(&dir).with_context(|| {
            format!(
                "cannot create a file in {}: check that it exists and is writable",
                dir.display()
            )
        })?;
        let mut w = BufWriter::new(tmp.as_file());
        let stats = crate::export::write_tar(&tree, &mut w)
            .with_context(|| format!("writing {}", args.tar.display()))?;
        w.flush()?;
        drop(w);
        tmp.as_file().sync_all()?;
        tmp.persist(&args.tar)
            .with_context(|| format!("cannot rename into {}", args.tar.display()))?;
        stats
    };
    if args.json {
        emit(&serde_json::json!({
            "event": "exported",
            "reference": src.image().name,
            "digest": src.image().digest.to_string(),
            "output": args.tar.display().to_string(),
            "entries": stats.entries,
        }));
    } else if !args.quiet && !to_stdout {
        eprintln!(
            "wrote {} ({} entries) from {}",
            args.tar.display(),
            stats.entries,
            src.image().digest
        );
    }
    Ok(())
}
