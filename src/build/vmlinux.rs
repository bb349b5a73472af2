//! The kernel put beside the image as `vmlinux.bin`: downloaded (http or https, streamed and
//! capped) and checked against its SHA-256, then kept in the blob cache by that digest so the
//! next build is offline; or copied from a host file. Staged to a temp file in the output
//! directory for the caller to rename.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::digest::Digest;
use crate::fetch::Fetcher;

use super::BuildError;

/// Where the kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// A URL and the SHA-256 it must have.
    Url {
        /// The URL.
        url: String,
        /// The expected digest.
        sha256: Digest,
    },
    /// A host file (its digest computed when the plan was made).
    Path {
        /// The file.
        path: PathBuf,
        /// Its digest.
        sha256: Digest,
    },
    /// A distribution kernel package (see [`super::kernel_package`]).
    Package(super::kernel_package::PackageKernel),
}

impl KernelSource {
    /// The kernel's digest.
    pub fn digest(&self) -> Digest {
        match self {
            KernelSource::Url { sha256, .. } | KernelSource::Path { sha256, .. } => *sha256,
            // Not known before the repositories are read: the request itself.
            KernelSource::Package(p) => Digest::of(
                format!(
                    "package:{} format:{} initramfs:{}",
                    p.name,
                    p.format.name(),
                    p.initramfs
                )
                .as_bytes(),
            ),
        }
    }
}

/// The largest kernel accepted.
const MAX_KERNEL: u64 = 512 << 20;

/// The kernel bytes, checked against their digest.
fn bytes(src: &KernelSource, cache: &Cache, fetcher: &Fetcher) -> Result<Vec<u8>, BuildError> {
    match src {
        KernelSource::Url { url, sha256 } => {
            if let Some(b) = cache.read_any(sha256) {
                return Ok(b);
            }
            // Streamed (http, https or file:), capped, then checked against the recipe.
            let body = fetcher
                .open(url)
                .map_err(|e| BuildError::Kernel(e.to_string()))?;
            let mut b = Vec::new();
            body.reader
                .take(MAX_KERNEL + 1)
                .read_to_end(&mut b)
                .map_err(|e| BuildError::Kernel(format!("{url}: {e}")))?;
            if b.len() as u64 > MAX_KERNEL {
                return Err(BuildError::Kernel(format!(
                    "{url}: larger than {} MiB; is this a kernel?",
                    MAX_KERNEL >> 20
                )));
            }
            let got = Digest::of(&b);
            if got != *sha256 {
                return Err(BuildError::Kernel(format!(
                    "{url}: the download has {got}, not the kernel.sha256 {sha256}; \
                     the download is corrupt or the recipe's hash is wrong"
                )));
            }
            let _ = cache.put(*sha256, &b);
            Ok(b)
        }
        KernelSource::Path { path, sha256 } => {
            let b = std::fs::read(path).map_err(|e| {
                BuildError::Kernel(format!("{}: {e}; check kernel.path", path.display()))
            })?;
            if Digest::of(&b) != *sha256 {
                return Err(BuildError::Kernel(format!(
                    "{} changed during the build; run it again",
                    path.display()
                )));
            }
            Ok(b)
        }
        KernelSource::Package(p) => Err(BuildError::Kernel(format!(
            "kernel package {:?} is staged by the kernel_package stage",
            p.name
        ))),
    }
}

/// Writes the kernel to a temp file in `dir` (named with `prefix`), synced, for the caller
/// to rename into place.
pub fn stage(
    src: &KernelSource,
    dir: &Path,
    prefix: &str,
    cache: &Cache,
    fetcher: &Fetcher,
) -> Result<(tempfile::NamedTempFile, u64), BuildError> {
    let b = bytes(src, cache, fetcher)?;
    write_temp(&b, dir, prefix, "vmlinux.bin.part")
}

/// Writes `b` to a synced 0644 temp file in `dir` named `<prefix>…<suffix>`.
pub fn write_temp(
    b: &[u8],
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<(tempfile::NamedTempFile, u64), BuildError> {
    let io = |e: std::io::Error| BuildError::Output {
        path: dir.display().to_string(),
        why: format!("writing {}: {e}", suffix.trim_end_matches(".part")),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(b).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
    }
    Ok((tmp, b.len() as u64))
}
