//! `rootsmith kernel`: the kernel tools on their own — `extract` (bzImage → ELF vmlinux),
//! `modules-dep` (depmod's `modules.dep` for a root directory), `closure` (which modules to
//! load for a purpose, in order) and `initramfs` (a reproducible `initrd.img`). ROOT is a
//! host directory holding `lib/modules/<release>` (a rootfs, or `dpkg-deb -x` of a kernel
//! package). Outputs are written to a temp file beside the target and renamed.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::kernel::{bzimage, initramfs, modules};
use crate::tree::Tree;

/// Arguments of `rootsmith kernel`.
#[derive(Debug, Args)]
pub struct KernelArgs {
    #[command(subcommand)]
    command: KernelCommand,
}

#[derive(Debug, Subcommand)]
enum KernelCommand {
    /// Extract the ELF vmlinux (for Firecracker/libkrun) from a bzImage.
    Extract {
        /// The bzImage (e.g. /boot/vmlinuz-*).
        bzimage: PathBuf,
        /// Where to write the ELF.
        #[arg(short, long, value_name = "FILE")]
        out: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print modules.dep (depmod's format) for ROOT/lib/modules/RELEASE.
    ModulesDep {
        /// Root directory holding lib/modules/RELEASE.
        root: PathBuf,
        /// Kernel release (default: the only one under lib/modules).
        #[arg(long)]
        release: Option<String>,
        /// Write here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the modules to load, dependencies first (default: what a VM needs for its
    /// virtio root disk and network); built-in ones are left out.
    Closure {
        /// Root directory holding lib/modules/RELEASE.
        root: PathBuf,
        /// Module names (default: virtio_pci virtio_blk ext4 virtio_net).
        modules: Vec<String>,
        /// Kernel release (default: the only one under lib/modules).
        #[arg(long)]
        release: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write a reproducible initramfs: the static init as /init and the modules it loads
    /// before mounting root= and switching to the image's own /init.
    Initramfs {
        /// Root directory holding lib/modules/RELEASE.
        root: PathBuf,
        /// The static rootsmith-init binary (`cargo build-init`).
        #[arg(long, value_name = "FILE")]
        init: PathBuf,
        /// Where to write initrd.img.
        #[arg(short, long, value_name = "FILE")]
        out: PathBuf,
        /// Kernel release (default: the only one under lib/modules).
        #[arg(long)]
        release: Option<String>,
        /// A module to include and load (repeatable; default: virtio_pci virtio_blk ext4
        /// virtio_net).
        #[arg(long = "module", value_name = "NAME")]
        modules: Vec<String>,
        /// Leave the cpio archive uncompressed.
        #[arg(long)]
        no_gzip: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Writes `bytes` to a temp file beside `path`, then renames it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".rootsmith-kernel-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode));
    tmp.persist(path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// The tree of a host root directory, and the release to use.
fn load_root(root: &Path, release: Option<String>) -> anyhow::Result<(Tree, String)> {
    let mut tree = Tree::new();
    let opts = crate::unpack::archive::UnpackOptions {
        owner: Some((0, 0)),
        whiteouts: false,
    };
    crate::unpack::dir::apply_dir(&mut tree, root, &opts)
        .with_context(|| format!("cannot read {}", root.display()))?;
    let release = match release {
        Some(r) => r,
        None => {
            let all = modules::releases(&tree);
            match all.as_slice() {
                [one] => one.clone(),
                [] => anyhow::bail!(
                    "{}: no lib/modules/<release> directory; pass the root of a kernel package or rootfs",
                    root.display()
                ),
                many => anyhow::bail!(
                    "{}: several kernels ({}); pick one with --release",
                    root.display(),
                    many.join(", ")
                ),
            }
        }
    };
    Ok((tree, release))
}

/// Runs `rootsmith kernel`.
pub fn run(args: KernelArgs) -> anyhow::Result<()> {
    match args.command {
        KernelCommand::Extract { bzimage, out, json } => {
            let image = std::fs::read(&bzimage)
                .with_context(|| format!("cannot read {}", bzimage.display()))?;
            let v = bzimage::extract_vmlinux(&image)
                .with_context(|| format!("{}", bzimage.display()))?;
            write_atomic(&out, &v.elf, 0o644)?;
            let format = v.compression.map_or("none", |c| c.name());
            if json {
                let j = serde_json::json!({
                    "output": out.display().to_string(),
                    "size": v.elf.len(),
                    "compression": format,
                    "from_header": v.from_header,
                    "payload_offset": v.payload_offset,
                    "entry": format!("{:#x}", v.entry),
                });
                println!("{j}");
            } else {
                eprintln!(
                    "wrote {} ({} bytes, ELF x86-64, entry {:#x}; {format} payload at byte {}{})",
                    out.display(),
                    v.elf.len(),
                    v.entry,
                    v.payload_offset,
                    if v.from_header {
                        ""
                    } else {
                        ", found by scanning"
                    }
                );
            }
        }
        KernelCommand::ModulesDep { root, release, out } => {
            let (tree, release) = load_root(&root, release)?;
            let idx = modules::index_tree(&tree, &release)?;
            for (m, d) in &idx.unknown {
                eprintln!(
                    "rootsmith: warning: {m} depends on {d}, which is not a module of {release}"
                );
            }
            let text = idx.modules_dep();
            match out {
                Some(p) => write_atomic(&p, text.as_bytes(), 0o644)?,
                None => print!("{text}"),
            }
        }
        KernelCommand::Closure {
            root,
            modules: wanted,
            release,
            json,
        } => {
            let (tree, release) = load_root(&root, release)?;
            let idx = modules::index_tree(&tree, &release)?;
            let wanted: Vec<&str> = if wanted.is_empty() {
                initramfs::DEFAULT_MODULES.to_vec()
            } else {
                wanted.iter().map(String::as_str).collect()
            };
            let c = idx.closure(&wanted);
            if json {
                let mut v = serde_json::to_value(&c)?;
                v["release"] = release.clone().into();
                println!("{v}");
            } else {
                println!("{}", c.load.join(","));
                if !c.builtin.is_empty() {
                    eprintln!("built in: {}", c.builtin.join(", "));
                }
            }
            if !c.missing.is_empty() {
                anyhow::bail!(
                    "kernel {release}: {} neither built in nor a module",
                    c.missing.join(", ")
                );
            }
        }
        KernelCommand::Initramfs {
            root,
            init,
            out,
            release,
            modules: wanted,
            no_gzip,
            json,
        } => {
            let epoch = super::source_date_epoch()?;
            let init_bytes =
                std::fs::read(&init).with_context(|| format!("cannot read {}", init.display()))?;
            let (tree, release) = load_root(&root, release)?;
            let mut opts = initramfs::InitramfsOptions {
                gzip: !no_gzip,
                mtime: epoch.map_or(0, |e| u32::try_from(e.max(0)).unwrap_or(u32::MAX)),
                ..Default::default()
            };
            if !wanted.is_empty() {
                opts.modules = wanted;
            }
            let img = initramfs::from_tree(&tree, &release, &init_bytes, &opts)?;
            write_atomic(&out, &img.bytes, 0o644)?;
            if json {
                let j = serde_json::json!({
                    "output": out.display().to_string(),
                    "size": img.bytes.len(),
                    "entries": img.entries,
                    "release": release,
                    "load": img.closure.load,
                    "builtin": img.closure.builtin,
                });
                println!("{j}");
            } else {
                eprintln!(
                    "wrote {} ({} bytes, {} entries; loads {})",
                    out.display(),
                    img.bytes.len(),
                    img.entries,
                    img.closure.load.join(",")
                );
            }
        }
    }
    Ok(())
}
