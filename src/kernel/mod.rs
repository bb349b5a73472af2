//! Kernels for the images rootsmith builds: ELF extraction from a bzImage ([`bzimage`]),
//! module metadata and `modules.dep` ([`modules`], over [`elf`]), a distribution kernel
//! package taken from the image's own repositories ([`package`]), and a reproducible
//! initramfs ([`initramfs`], a [`cpio`] newc archive) that loads the root disk's modules
//! and hands over to the image's `/init`.

pub mod bzimage;
pub mod cpio;
pub mod elf;
pub mod initramfs;
pub mod modules;
pub mod package;

/// The file format of the kernel written beside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelFormat {
    /// The uncompressed ELF `vmlinux` (Firecracker, libkrun).
    Elf,
    /// The bzImage as the distribution ships it (QEMU); the default.
    #[default]
    BzImage,
}

impl std::str::FromStr for KernelFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<KernelFormat, String> {
        match s {
            "elf" => Ok(KernelFormat::Elf),
            "bzimage" => Ok(KernelFormat::BzImage),
            _ => Err(format!("{s:?} is not a kernel format: use elf or bzimage")),
        }
    }
}

impl KernelFormat {
    /// `elf` or `bzimage`.
    pub fn name(self) -> &'static str {
        match self {
            KernelFormat::Elf => "elf",
            KernelFormat::BzImage => "bzimage",
        }
    }
}
