//! rootsmith's integration tests: one binary, one module per area. Tests that need root, a
//! loop device or a tool say why they skip outside CI; under `CI=true` they must run.

mod apk;
mod boot;
mod build;
mod common;
mod deb;
mod images;
mod init_boot;
mod kernel;
mod mkfs;
mod mkfs_prop;
mod oci;
