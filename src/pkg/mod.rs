//! Distribution packages installed into the staging tree without running anything from
//! them: [`apk`] for Alpine, [`deb`] for Debian and Ubuntu.

pub mod apk;
pub mod deb;
