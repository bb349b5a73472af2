//! The kernel stage for a distribution kernel package (`kernel.package`,
//! `--kernel-package`): the package's modules go into the tree (see
//! [`crate::kernel::package`]), its bzImage is written as `vmlinux.bin` — converted to an
//! ELF when `format = "elf"` — and with `initramfs = true` an `initrd.img` holding the
//! image's `/init` and the modules for the root disk and network is written beside it.
//! Both are staged as temp files in the output directory for the caller to rename.

use std::path::Path;

use serde::Serialize;

use crate::cache::Cache;
use crate::fetch::Fetcher;
use crate::kernel::{bzimage, initramfs, package, KernelFormat};
use crate::pkg::deb::DebOptions;
use crate::tree::Tree;

use super::vmlinux::write_temp;
use super::BuildError;

/// A kernel package to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageKernel {
    /// The package name (a metapackage is followed to its `linux-image-*`).
    pub name: String,
    /// The format of `vmlinux.bin`.
    pub format: KernelFormat,
    /// Also write `initrd.img`.
    pub initramfs: bool,
}

/// What the stage did (for the build's report and `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct KernelPackageReport {
    /// The package, its release and the modules the VM needs.
    #[serde(flatten)]
    pub package: package::KernelPackage,
    /// The format written.
    pub format: KernelFormat,
    /// The modules the initramfs loads, when one was written.
    pub initramfs_modules: Option<Vec<String>>,
}

/// Staged outputs: the kernel, the optional initrd, and the report.
pub type Staged = (
    (tempfile::NamedTempFile, u64),
    Option<(tempfile::NamedTempFile, u64)>,
    KernelPackageReport,
);

/// Installs the package's modules into `tree` and stages `vmlinux.bin` (and `initrd.img`)
/// in `dir`. `init` is the image's `/init` (required for an initramfs).
#[allow(clippy::too_many_arguments)]
pub fn stage(
    tree: &mut Tree,
    k: &PackageKernel,
    deb: &DebOptions,
    init: Option<&[u8]>,
    epoch: i64,
    dir: &Path,
    prefix: &str,
    cache: &Cache,
    fetcher: &Fetcher,
) -> Result<Staged, BuildError> {
    if tree.lookup(b"/var/lib/dpkg/status").is_none() {
        return Err(BuildError::Kernel(format!(
            "kernel package {:?}: the base has no dpkg database; distribution kernel packages need a Debian or Ubuntu base (use kernel.url or kernel.path otherwise)",
            k.name
        )));
    }
    let mut opts = deb.clone();
    opts.epoch = Some(epoch);
    let pkg = package::install(tree, &k.name, &opts, cache, fetcher)
        .map_err(|e| BuildError::Kernel(e.to_string()))?;
    let bytes = match k.format {
        KernelFormat::BzImage => pkg.vmlinuz.clone(),
        KernelFormat::Elf => {
            bzimage::extract_vmlinux(&pkg.vmlinuz)
                .map_err(|e| {
                    BuildError::Kernel(format!(
                        "{} /boot/vmlinuz-{}: {e}",
                        pkg.package, pkg.release
                    ))
                })?
                .elf
        }
    };
    let kernel = write_temp(&bytes, dir, prefix, "vmlinux.bin.part")?;
    let (initrd, initramfs_modules) = if k.initramfs {
        let init = init.ok_or_else(|| {
            BuildError::Kernel(
                "initramfs = true needs the /init binary: run `cargo build-init` or pass --init FILE".into(),
            )
        })?;
        let opts = initramfs::InitramfsOptions {
            mtime: u32::try_from(epoch.max(0)).unwrap_or(u32::MAX),
            ..Default::default()
        };
        let img = initramfs::from_tree(tree, &pkg.release, init, &opts)
            .map_err(|e| BuildError::Kernel(e.to_string()))?;
        let staged = write_temp(&img.bytes, dir, prefix, "initrd.img.part")?;
        (Some(staged), Some(img.closure.load))
    } else {
        (None, None)
    };
    Ok((
        kernel,
        initrd,
        KernelPackageReport {
            package: pkg,
            format: k.format,
            initramfs_modules,
        },
    ))
}
