//! `oci:DIR[:TAG]`: an OCI image layout (`image-layout.md`): `oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`. The tag is matched against `org.opencontainers.image.ref.name`.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cache::VerifyingReader;

use super::descriptor::Descriptor;
use super::index::ImageIndex;
use super::platform::Platform;
use super::source::{resolve_image, BlobKind, Image, ImageSource};
use super::OciError;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image in an OCI layout directory.
pub struct LayoutSource {
    dir: PathBuf,
    image: Image,
}

fn local(path: &Path, why: impl Into<String>) -> OciError {
    OciError::Local {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// Reads blob `d` of `dir` whole, checking digest and size (small blobs only).
pub(crate) fn read_blob(dir: &Path, d: &Descriptor) -> Result<Vec<u8>, OciError> {
    const MAX: u64 = 16 << 20;
    if d.size > MAX {
        return Err(local(
            dir,
            format!(
                "blob {} declares {} bytes, too big for a manifest or config",
                d.digest, d.size
            ),
        ));
    }
    let mut out = Vec::new();
    open_blob(dir, d)?.read_to_end(&mut out).map_err(|e| {
        local(
            &dir.join("blobs/sha256").join(d.digest.hex()),
            e.to_string(),
        )
    })?;
    Ok(out)
}

fn open_blob(dir: &Path, d: &Descriptor) -> Result<VerifyingReader<File>, OciError> {
    let p = dir.join("blobs/sha256").join(d.digest.hex());
    let f = File::open(&p).map_err(|source| OciError::Io { path: p, source })?;
    Ok(VerifyingReader::new(f, d.digest, d.size))
}

impl LayoutSource {
    /// Opens `dir` and resolves `tag` (or its only image) for `platform`.
    pub fn open(
        dir: &Path,
        tag: Option<&str>,
        platform: &Platform,
    ) -> Result<LayoutSource, OciError> {
        let marker = dir.join("oci-layout");
        let text = fs::read_to_string(&marker).map_err(|e| {
            local(
                &marker,
                format!("{e}; is {} an OCI image layout?", dir.display()),
            )
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| local(&marker, e.to_string()))?;
        if v.get("imageLayoutVersion")
            .and_then(|x| x.as_str())
            .is_none_or(|s| !s.starts_with("1."))
        {
            return Err(local(&marker, "imageLayoutVersion is not 1.x"));
        }
        let ip = dir.join("index.json");
        let bytes = fs::read(&ip).map_err(|source| OciError::Io {
            path: ip.clone(),
            source,
        })?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| local(&ip, format!("bad index.json: {e}")))?;
        let name = match tag {
            Some(t) => format!("oci:{}:{t}", dir.display()),
            None => format!("oci:{}", dir.display()),
        };
        let entry = match tag {
            Some(t) => index
                .manifests
                .iter()
                .find(|d| {
                    d.annotations
                        .get(REF_NAME)
                        .is_some_and(|n| n == t || n.rsplit_once(':').is_some_and(|(_, x)| x == t))
                })
                .ok_or_else(|| {
                    let tags: Vec<&str> = index
                        .manifests
                        .iter()
                        .filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str))
                        .collect();
                    local(
                        &ip,
                        format!(
                            "no image tagged {t:?}; tags: {}",
                            if tags.is_empty() {
                                "none".into()
                            } else {
                                tags.join(", ")
                            }
                        ),
                    )
                })?,
            None => match index.manifests.as_slice() {
                [one] => one,
                // Several entries with platforms: treat index.json itself as the index.
                many if many.iter().all(|d| d.platform.is_some()) && !many.is_empty() => {
                    let image = resolve_image(
                        &name,
                        &bytes,
                        crate::digest::Digest::of(&bytes),
                        Some(super::media_type::OCI_INDEX),
                        platform,
                        &mut |d, _| read_blob(dir, d),
                    )?;
                    return Ok(LayoutSource {
                        dir: dir.to_owned(),
                        image,
                    });
                }
                [] => return Err(local(&ip, "the layout holds no image")),
                _ => {
                    return Err(local(
                        &ip,
                        "the layout holds several images; name one with oci:DIR:TAG",
                    ))
                }
            },
        };
        let top = read_blob(dir, entry)?;
        let image = resolve_image(
            &name,
            &top,
            entry.digest,
            Some(&entry.media_type),
            platform,
            &mut |d, _: BlobKind| read_blob(dir, d),
        )?;
        Ok(LayoutSource {
            dir: dir.to_owned(),
            image,
        })
    }
}

impl ImageSource for LayoutSource {
    fn image(&self) -> &Image {
        &self.image
    }
    fn open_layer(&self, index: usize) -> Result<Box<dyn Read + Send + '_>, OciError> {
        let d = self
            .image
            .manifest
            .layers
            .get(index)
            .ok_or_else(|| local(&self.dir, format!("no layer {index}")))?;
        Ok(Box::new(open_blob(&self.dir, d)?))
    }
}
