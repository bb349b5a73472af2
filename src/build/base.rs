//! The base of a build: where it comes from (`rootfs:FILE` today; OCI image references
//! through the `oci` sources later, behind this one [`load`] function) and how it becomes
//! the staging tree.

use std::path::PathBuf;

use crate::tree::Tree;
use crate::unpack::{self, UnpackOptions};

/// A base image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// `rootfs:FILE`: a root filesystem tarball (any compression).
    RootfsTar(PathBuf),
}

/// Why a base could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The reference is not understood.
    #[error("base {0:?} is not understood: use rootfs:FILE (a rootfs tarball)")]
    BadRef(String),
    /// The file cannot be opened.
    #[error("base {path}: cannot open: {source}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The tarball is unusable.
    #[error("base {path} is not a usable rootfs tarball: {source}")]
    Unpack {
        /// The file.
        path: String,
        /// Why.
        source: unpack::UnpackError,
    },
}

impl std::str::FromStr for BaseRef {
    type Err = BaseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("rootfs", p)) if !p.is_empty() => Ok(BaseRef::RootfsTar(PathBuf::from(p))),
            _ => Err(BaseError::BadRef(s.to_string())),
        }
    }
}

/// Loads the base into a fresh tree.
pub fn load(base: &BaseRef) -> Result<Tree, BaseError> {
    match base {
        BaseRef::RootfsTar(path) => {
            let name = path.display().to_string();
            let f = std::fs::File::open(path).map_err(|source| BaseError::Open {
                path: name.clone(),
                source,
            })?;
            let mut tree = Tree::new();
            unpack::apply_tar(
                &mut tree,
                std::io::BufReader::new(f),
                &UnpackOptions::default(),
            )
            .map_err(|source| BaseError::Unpack { path: name, source })?;
            Ok(tree)
        }
    }
}
