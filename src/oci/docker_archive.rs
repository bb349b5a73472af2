//! `docker-archive:FILE`: the tarball `docker save` writes: `manifest.json` naming a config
//! file and one layer file per layer (uncompressed tars whose sha256 is the diff_id, or, from
//! Docker 25 on, `blobs/sha256/<hex>`). Members are indexed once and read in place.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cache::VerifyingReader;
use crate::digest::{Digest, Hasher};

use super::config::ImageConfig;
use super::descriptor::Descriptor;
use super::manifest::ImageManifest;
use super::source::{Image, ImageSource};
use super::{media_type, OciError};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image in a `docker save` tarball.
pub struct ArchiveSource {
    path: PathBuf,
    image: Image,
    /// (offset, size) of each layer member.
    members: Vec<(u64, u64)>,
}

fn local(path: &Path, why: impl Into<String>) -> OciError {
    OciError::Local {
        path: path.to_owned(),
        why: why.into(),
    }
}

fn clean(name: &str) -> String {
    name.trim_start_matches("./").to_string()
}

impl ArchiveSource {
    /// Indexes `path` and reads its manifest and config.
    pub fn open(path: &Path) -> Result<ArchiveSource, OciError> {
        let io = |source| OciError::Io {
            path: path.to_owned(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let mut members: HashMap<String, (u64, u64)> = HashMap::new();
        let mut ar = tar::Archive::new(f);
        for e in ar
            .entries()
            .map_err(|e| local(path, format!("not a tar archive: {e}")))?
        {
            let e = e.map_err(|e| local(path, format!("corrupt tar: {e}")))?;
            if e.header().entry_type().is_file() {
                let name = clean(&String::from_utf8_lossy(&e.path_bytes()));
                members.insert(name, (e.raw_file_position(), e.size()));
            }
        }
        let mut file = File::open(path).map_err(io)?;
        let mut read_member = |name: &str, limit: u64| -> Result<Vec<u8>, OciError> {
            let &(off, size) = members
                .get(&clean(name))
                .ok_or_else(|| local(path, format!("{name} is missing from the archive")))?;
            if size > limit {
                return Err(local(path, format!("{name} is {size} bytes, too big")));
            }
            let mut buf = Vec::new();
            file.seek(SeekFrom::Start(off)).map_err(io)?;
            (&mut file).take(size).read_to_end(&mut buf).map_err(io)?;
            Ok(buf)
        };
        let mj = read_member("manifest.json", 16 << 20)
            .map_err(|_| local(path, "no manifest.json: is this `docker save` output?"))?;
        let entries: Vec<Entry> = serde_json::from_slice(&mj)
            .map_err(|e| local(path, format!("bad manifest.json: {e}")))?;
        let entry = match entries.as_slice() {
            [one] => one,
            [] => return Err(local(path, "manifest.json lists no image")),
            many => {
                let tags: Vec<String> = many
                    .iter()
                    .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                    .collect();
                return Err(local(
                    path,
                    format!(
                        "the archive holds {} images ({}); save one image per archive",
                        many.len(),
                        tags.join(", ")
                    ),
                ));
            }
        };
        let cfg_bytes = read_member(&entry.config, 16 << 20)?;
        let name = format!("docker-archive:{}", path.display());
        let config = ImageConfig::parse(&cfg_bytes, &name)?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(OciError::BadConfig {
                what: name,
                why: format!(
                    "manifest.json lists {} layers but the config {} diff_ids",
                    entry.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::new();
        let mut spans = Vec::new();
        for (l, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let &(off, size) = members
                .get(&clean(l))
                .ok_or_else(|| local(path, format!("layer {l} is missing from the archive")))?;
            file.seek(SeekFrom::Start(off)).map_err(io)?;
            let mut head = [0u8; 6];
            let n = (&mut file).take(size.min(6)).read(&mut head).map_err(io)?;
            let kind = crate::unpack::Compression::detect(&head[..n]);
            let (digest, mt) = if kind == crate::unpack::Compression::None {
                (*diff_id, media_type::OCI_LAYER_TAR)
            } else {
                // A compressed layer: its blob digest is not recorded; hash it.
                file.seek(SeekFrom::Start(off)).map_err(io)?;
                let mut h = Hasher::new();
                std::io::copy(&mut (&mut file).take(size), &mut h).map_err(io)?;
                let mt = if kind == crate::unpack::Compression::Zstd {
                    media_type::OCI_LAYER_ZSTD
                } else {
                    media_type::OCI_LAYER_GZIP
                };
                (h.finish(), mt)
            };
            layers.push(Descriptor {
                media_type: mt.to_string(),
                digest,
                size,
                platform: None,
                annotations: Default::default(),
            });
            spans.push((off, size));
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            config: Descriptor {
                media_type: media_type::OCI_CONFIG.to_string(),
                digest: Digest::of(&cfg_bytes),
                size: cfg_bytes.len() as u64,
                platform: None,
                annotations: Default::default(),
            },
            layers,
            annotations: Default::default(),
        };
        let digest =
            Digest::of(&serde_json::to_vec(&manifest).map_err(|e| local(path, e.to_string()))?);
        Ok(ArchiveSource {
            path: path.to_owned(),
            image: Image {
                name,
                digest,
                index_digest: None,
                manifest,
                config,
            },
            members: spans,
        })
    }
}

impl ImageSource for ArchiveSource {
    fn image(&self) -> &Image {
        &self.image
    }
    fn open_layer(&self, index: usize) -> Result<Box<dyn Read + Send + '_>, OciError> {
        let io = |source| OciError::Io {
            path: self.path.clone(),
            source,
        };
        let (&(off, size), d) = self
            .members
            .get(index)
            .zip(self.image.manifest.layers.get(index))
            .ok_or_else(|| local(&self.path, format!("no layer {index}")))?;
        let mut f = File::open(&self.path).map_err(io)?;
        f.seek(SeekFrom::Start(off)).map_err(io)?;
        Ok(Box::new(VerifyingReader::new(f.take(size), d.digest, size)))
    }
}
