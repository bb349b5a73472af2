//! The command line: clap definitions (one file per subcommand), the environment read once
//! (`SOURCE_DATE_EPOCH`), progress bars on a terminal and `--json` for programs.

pub mod boot;
pub mod build;
pub mod build_plan;
pub mod export;
pub mod image;
pub mod images;
pub mod kernel;
pub mod mkfs;
pub mod progress;
pub mod pull;

use clap::{Parser, Subcommand};

/// rootsmith builds bootable microVM root filesystems without Docker and without root.
#[derive(Debug, Parser)]
#[command(name = "rootsmith", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a recipe (or --base and --package): rootfs.ext4 in --out or the SmolVM cache.
    Build(Box<build::BuildArgs>),
    /// Write an ext4 image from a rootfs tarball or a directory, without root or mke2fs.
    Mkfs(mkfs::MkfsArgs),
    /// Pull an image into the verified blob cache and print its manifest digest.
    Pull(pull::PullArgs),
    /// Flatten an image's layers into one rootfs tar (like crane export).
    Export(export::ExportArgs),
    /// Boot an image under QEMU, wait for SSH, and optionally run a command over it.
    Boot(Box<boot::BootArgs>),
    /// Kernel tools: bzImage → ELF, modules.dep, module closures, initramfs.
    Kernel(kernel::KernelArgs),
    /// The SmolVM image cache: list, download (verified), remove and publish images.
    Images(images::ImagesArgs),
}

/// Parses the process arguments and runs the subcommand.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Build(args) => build::run(*args),
        Command::Mkfs(args) => mkfs::run(args),
        Command::Pull(args) => pull::run(args),
        Command::Export(args) => export::run(args),
        Command::Boot(args) => boot::run(*args),
        Command::Kernel(args) => kernel::run(args),
        Command::Images(args) => images::run(args),
    }
}

/// On Ctrl-C or SIGTERM, removes this process's temp images in `dir` and exits with 130:
/// the final path was never touched, and nothing is left beside it either.
pub fn clean_up_on_interrupt(dir: std::path::PathBuf) {
    let _ = ctrlc::set_handler(move || {
        let prefix = crate::ext4::write::temp_prefix();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        eprintln!("rootsmith: interrupted; nothing was written");
        std::process::exit(130);
    });
}

/// `SOURCE_DATE_EPOCH`, read once: `None` when unset, an error when malformed.
pub fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(None),
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => s.trim().parse::<i64>().map(Some).map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH={s:?} is not a whole number of seconds; unset it or give e.g. 1700000000")
        }),
    }
}
