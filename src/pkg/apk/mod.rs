//! Alpine packages (APK v2) installed into the staging tree in pure Rust: signed indexes
//! ([`signature`], [`index`]), versions ([`version`]) and dependency atoms ([`dep`]),
//! package files ([`package`]). Trust comes only from the image's `/etc/apk/keys` plus keys
//! the user adds; no script from a package is ever run.

pub mod dep;
pub mod index;
pub mod package;
pub mod signature;
pub mod version;
