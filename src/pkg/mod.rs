//! Distribution packages installed into the staging tree without a package manager, a
//! chroot or root: [`apk`] for Alpine.

pub mod apk;
