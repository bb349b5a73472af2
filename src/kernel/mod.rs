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
