//! Container images: the image model (descriptor, manifest, index, config, platform,
//! reference) and the [`ImageSource`] trait with its sources: a registry ([`registry`],
//! through `oci-client`, the only user of tokio and the network here), an OCI image layout
//! ([`layout`]), `docker save` output ([`docker_archive`]) and a plain rootfs tarball
//! ([`rootfs_tar`]). Every blob reaches its consumer verified against digest and size.

pub mod auth;
pub mod config;
pub mod descriptor;
pub mod docker_archive;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod media_type;
pub mod platform;
pub mod reference;
pub mod registry;
pub mod rootfs_tar;
pub mod source;

pub use config::ImageConfig;
pub use descriptor::Descriptor;
pub use index::ImageIndex;
pub use manifest::{Document, ImageManifest};
pub use platform::Platform;
pub use reference::Reference;
pub use source::{open_source, Image, ImageRef, ImageSource, Layer, SourceOptions};

use std::path::PathBuf;

use crate::cache::CacheError;

/// Why getting an image failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A manifest or index that does not parse or is not a container image.
    #[error("{what}: bad manifest: {why}")]
    BadManifest {
        /// The reference or digest.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// Docker schema 1.
    #[error("{0}: Docker schema 1 manifests are not supported (deprecated since 2017); re-push the image with a current docker, buildah or skopeo to get schema 2 or OCI")]
    Schema1(String),
    /// A config that does not parse or does not fit the manifest.
    #[error("{what}: bad image config: {why}")]
    BadConfig {
        /// The image.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// No manifest for the platform asked for.
    #[error("{what} has no image for {want}; available: {}; choose one with --platform", available.join(", "))]
    NoPlatform {
        /// The image.
        what: String,
        /// The platform asked for.
        want: String,
        /// What the index offers.
        available: Vec<String>,
    },
    /// The blob cache failed (includes digest and size mismatches).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Reading a local source failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A local source (layout, archive) is malformed.
    #[error("{}: {why}", path.display())]
    Local {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `--pull never` and the image is not cached.
    #[error("{0} is not in the cache and --pull never forbids fetching it; pull it first (rootsmith pull {0}) or use --pull missing")]
    NotCached(String),
    /// The registry refused the credentials (or demanded some).
    #[error("registry {registry} refused access to {repository} (HTTP 401 unauthorized): log in with `docker login {registry}` (rootsmith reads ~/.docker/config.json and $REGISTRY_AUTH_FILE) or pass --creds USER:PASSWORD")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
    },
    /// The registry does not have the image.
    #[error("{reference}: not found in registry {registry}: {message}")]
    NotFound {
        /// The reference.
        reference: String,
        /// The registry host.
        registry: String,
        /// What the registry said.
        message: String,
    },
    /// A registry error that retrying did not fix (or that must not be retried).
    #[error("{what} from {registry}: {message}{}", if *attempts > 1 { format!(" (gave up after {attempts} attempts)") } else { String::new() })]
    Registry {
        /// What was being fetched.
        what: String,
        /// The registry host.
        registry: String,
        /// The error.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A credential store that does not parse.
    #[error("{}: {why}", path.display())]
    Auth {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}
