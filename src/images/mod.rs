//! The image manager (SmolVM `ImageManager` parity): the SmolVM image cache
//! (`<root>/<name>/{rootfs.ext4, vmlinux.bin, .fingerprint}`, see [`layout`]), the images in
//! it ([`local`]), what an image is downloaded from ([`source`]) and a JSON registry of named
//! sources ([`registry`]), `ensure` (download to a temp file in the image's directory, verify
//! SHA-256 while streaming, decompress zstd, rename; [`ensure`]), and `publish` (a
//! `rootfs.ext4.zst` release asset plus a `sha256` file; [`publish`]).
//!
//! Pure parts (`layout` names and paths, `registry` parsing, `source`, `stamp`, `sparse`,
//! `local` formatting, `publish`'s `sha256` file) are separate from the I/O so they are unit
//! tested without a network or a disk.
//!
//! What a `sha256` covers: the bytes at the URL, exactly as served — for a `.zst` URL the
//! *compressed* file, as SmolVM's published manifest pins it (`sha256sum` of the release
//! asset). The digest of the decompressed `rootfs.ext4` is computed while writing it and
//! recorded in `<name>/.source.json`, so a later `ensure` re-checks the file on disk against
//! it without keeping the compressed copy.

pub mod ensure;
pub mod layout;
pub mod local;
pub mod publish;
pub mod registry;
pub mod source;
pub mod sparse;
pub mod stamp;

use std::path::PathBuf;

use crate::digest::Digest;
use crate::fetch::FetchError;

pub use ensure::{ensure, EnsureEvent, EnsureOptions, Ensured};
pub use local::{list, LocalImage};
pub use publish::{publish, PublishOptions, Published};
pub use registry::Registry;
pub use source::{Asset, Compression, ImageSource, Role};

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// A name that cannot be an image directory.
    #[error("{0:?} is not a valid image name: use 1-200 letters, digits and . - _ + (not starting with a dot)")]
    BadName(String),
    /// A filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The registry file is malformed.
    #[error("registry {origin}: {why}")]
    Registry {
        /// Where the registry came from (file or URL).
        origin: String,
        /// What is wrong, naming the image and field.
        why: String,
    },
    /// A name the registry does not have.
    #[error("image {name:?} is not in registry {origin} (it has: {available}); check the name or pass another --registry")]
    UnknownImage {
        /// The name asked for.
        name: String,
        /// The registry.
        origin: String,
        /// Its names, comma-separated.
        available: String,
    },
    /// A download failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The downloaded bytes do not hash to the expected digest.
    #[error("{url}: downloaded {role} has sha256 {got}, expected {want}; the download is corrupt or the pinned hash is wrong, and nothing was installed")]
    Mismatch {
        /// Which file.
        role: Role,
        /// From where.
        url: String,
        /// The pinned digest.
        want: Digest,
        /// What the bytes hash to.
        got: Digest,
    },
    /// Bytes with the right hash that are not a zstd stream.
    #[error("{url}: the {role} matches its sha256 but is not valid zstd ({why}); if it is not compressed, set {role}_compression to \"none\" in the registry")]
    Decompress {
        /// Which file.
        role: Role,
        /// From where.
        url: String,
        /// The decoder's complaint.
        why: String,
    },
    /// A download larger than the configured cap.
    #[error("{url}: the {role} is larger than {limit} bytes; raise the limit if this image is really that big")]
    TooLarge {
        /// Which file.
        role: Role,
        /// From where.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// No cached image by that name.
    #[error("no image {name:?} in {}; `rootsmith images ls` lists the cached images", dir.display())]
    NotCached {
        /// The name.
        name: String,
        /// The cache root.
        dir: PathBuf,
    },
    /// Compression failed.
    #[error("compressing {}: {why}", path.display())]
    Compress {
        /// The input.
        path: PathBuf,
        /// The encoder's complaint.
        why: String,
    },
}
