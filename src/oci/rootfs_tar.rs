//! `rootfs:FILE`: a plain rootfs tarball (any compression) seen as a one-layer image for the
//! requested platform. The blob digest is computed once up front; there is no diff_id to
//! check against.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cache::VerifyingReader;
use crate::digest::{Digest, Hasher};
use crate::unpack::Compression;

use super::config::{ImageConfig, RootFs};
use super::descriptor::Descriptor;
use super::manifest::ImageManifest;
use super::platform::Platform;
use super::source::{Image, ImageSource};
use super::{media_type, OciError};

/// A rootfs tarball as an image.
pub struct RootfsSource {
    path: PathBuf,
    image: Image,
}

impl RootfsSource {
    /// Hashes `path` and describes it as a one-layer image for `platform`.
    pub fn open(path: &Path, platform: &Platform) -> Result<RootfsSource, OciError> {
        let io = |source| OciError::Io {
            path: path.to_owned(),
            source,
        };
        let mut f = File::open(path).map_err(io)?;
        let mut head = [0u8; 6];
        let n = f.read(&mut head).map_err(io)?;
        let mt = match Compression::detect(&head[..n]) {
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
            Compression::None => media_type::OCI_LAYER_TAR,
            // Not an OCI layer type, but unpack detects compression by magic anyway.
            Compression::Xz => "application/vnd.oci.image.layer.v1.tar+xz",
            Compression::Bzip2 => "application/vnd.oci.image.layer.v1.tar+bzip2",
        };
        let mut f = File::open(path).map_err(io)?;
        let mut h = Hasher::new();
        let size = std::io::copy(&mut f, &mut h).map_err(io)?;
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            created: None,
            config: None,
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: Vec::new(),
            },
        };
        let cfg_bytes = serde_json::to_vec(&config).map_err(|e| OciError::Local {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: Descriptor {
                media_type: media_type::OCI_CONFIG.into(),
                digest: Digest::of(&cfg_bytes),
                size: cfg_bytes.len() as u64,
                platform: None,
                annotations: Default::default(),
            },
            layers: vec![Descriptor {
                media_type: mt.into(),
                digest: h.finish(),
                size,
                platform: None,
                annotations: Default::default(),
            }],
            annotations: Default::default(),
        };
        let digest = Digest::of(&serde_json::to_vec(&manifest).map_err(|e| OciError::Local {
            path: path.to_owned(),
            why: e.to_string(),
        })?);
        Ok(RootfsSource {
            path: path.to_owned(),
            image: Image {
                name: format!("rootfs:{}", path.display()),
                digest,
                index_digest: None,
                manifest,
                config,
            },
        })
    }
}

impl ImageSource for RootfsSource {
    fn image(&self) -> &Image {
        &self.image
    }
    fn open_layer(&self, index: usize) -> Result<Box<dyn Read + Send + '_>, OciError> {
        let d = self
            .image
            .manifest
            .layers
            .get(index)
            .ok_or_else(|| OciError::Local {
                path: self.path.clone(),
                why: format!("no layer {index}"),
            })?;
        let f = File::open(&self.path).map_err(|source| OciError::Io {
            path: self.path.clone(),
            source,
        })?;
        // The file may change between hashing and reading; the check catches it.
        Ok(Box::new(VerifyingReader::new(f, d.digest, d.size)))
    }
}
