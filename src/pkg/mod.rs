//! Distribution packages installed into the staging tree without running anything from
//! them: [`deb`] for Debian and Ubuntu.

pub mod deb;
