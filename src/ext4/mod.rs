//! The staging tree as an ext4 image, through the `mkext4` crate (pinned: its bytes are
//! stable only within one version). Nothing else in rootsmith names the crate. [`plan`]
//! sizes the image and derives its identity, [`declare`] walks the tree into the crate's
//! builder, [`write`] streams the contents and publishes the file atomically.

pub mod declare;
pub mod plan;
pub mod superblock;
pub mod write;

pub use plan::{parse_size, parse_uuid, Ext4Options};
pub use write::write_image;

/// The features every image has (the crate's one profile).
pub const FEATURES: &[&str] = &[
    "has_journal",
    "ext_attr",
    "dir_index",
    "filetype",
    "extent",
    "flex_bg",
    "sparse_super",
    "large_file",
    "huge_file",
    "dir_nlink",
    "extra_isize",
    "metadata_csum",
];

/// The writer's identity, part of every cache key that depends on image bytes.
pub const WRITER: &str = "mkext4/0.0.3+rootsmith-1";

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Image size in bytes.
    pub size: u64,
    /// Filesystem UUID.
    pub uuid: String,
    /// Inodes in the filesystem.
    pub inodes: u32,
    /// Inodes in use.
    pub inodes_used: u32,
    /// Blocks in the filesystem (4 KiB).
    pub blocks: u64,
    /// Blocks in use.
    pub blocks_used: u64,
    /// Bytes of file content.
    pub file_bytes: u64,
    /// Digest of the tree (the identity the UUID derives from).
    pub tree_digest: String,
    /// Superblock timestamp (seconds).
    pub epoch: i64,
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// The given size cannot hold the tree.
    #[error("image too small: the tree needs {} MiB, pass --size {}M or omit --size", plan::mib_ceil(*needed), plan::mib_ceil(*needed))]
    TooSmall {
        /// The size asked for.
        given: u64,
        /// The smallest size that holds the tree.
        needed: u64,
    },
    /// The crate ran out of space while declaring (handled by sizing).
    #[error("image full")]
    Full,
    /// An entry the writer cannot store.
    #[error("{path}: {why}")]
    Declare {
        /// The path in the tree.
        path: String,
        /// Why.
        why: String,
    },
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// Sealing the layout failed.
    #[error("cannot lay out the image: {0}")]
    Seal(String),
    /// Writing failed.
    #[error("writing the image: {0}")]
    Write(String),
    /// A file's content could not be read.
    #[error("{path}: reading its content: {source}")]
    Content {
        /// The path in the tree.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The output could not be created or renamed.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The output path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}
