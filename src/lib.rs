//! rootsmith: build bootable microVM root filesystems without Docker and without root.
//!
//! Data flows one way: a source yields layers, [`unpack`] applies them to one in-memory
//! [`tree`], and [`ext4`] serialises the tree into an image. See `ARCHITECTURE.md`.

#![forbid(unsafe_code)]

pub mod boot;
pub mod build;
pub mod cache;
pub mod cli;
pub mod digest;
pub mod etc;
pub mod export;
pub mod ext4;
pub mod fetch;
pub mod images;
pub mod kernel;
pub mod oci;
pub mod overlay;
pub mod pkg;
pub mod recipe;
pub mod tree;
pub mod unpack;
