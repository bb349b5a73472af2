//! Where an image comes from, and the one small trait every source implements: the resolved
//! image (manifest, config) and its layers as verified byte streams. The transport syntax is
//! skopeo's: `docker://REF` (the default), `oci:DIR[:TAG]`, `docker-archive:FILE`, and
//! rootsmith's own `rootfs:FILE`.

use std::io::Read;
use std::path::PathBuf;

use crate::cache::Cache;
use crate::digest::Digest;

use super::config::ImageConfig;
use super::descriptor::Descriptor;
use super::manifest::ImageManifest;
use super::platform::Platform;
use super::reference::{BadReference, Reference};
use super::registry::{self, Progress, RegistryOptions};
use super::{docker_archive, layout, rootfs_tar, OciError};

/// An image location as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A registry reference.
    Docker(Reference),
    /// An OCI image layout directory and an optional tag (`org.opencontainers.image.ref.name`).
    Layout {
        /// The directory.
        dir: PathBuf,
        /// The tag, or the only image when `None`.
        tag: Option<String>,
    },
    /// A `docker save` tarball.
    DockerArchive(PathBuf),
    /// A rootfs tarball, as a one-layer image.
    Rootfs(PathBuf),
}

impl std::str::FromStr for ImageRef {
    type Err = BadReference;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let empty = |why| BadReference {
            input: s.to_string(),
            why,
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            // DIR[:TAG]: the last `:` starts a tag unless what follows holds a `/`.
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') && !d.is_empty() => {
                    (d, Some(t.to_string()).filter(|t| !t.is_empty()))
                }
                _ => (rest, None),
            };
            if dir.is_empty() {
                return Err(empty("oci: needs a directory, e.g. oci:./layout:3.20"));
            }
            return Ok(ImageRef::Layout {
                dir: dir.into(),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let file = rest.split_once(':').map_or(rest, |(f, _)| f);
            if file.is_empty() {
                return Err(empty(
                    "docker-archive: needs a file, e.g. docker-archive:image.tar",
                ));
            }
            return Ok(ImageRef::DockerArchive(file.into()));
        }
        if let Some(rest) = s.strip_prefix("rootfs:") {
            if rest.is_empty() {
                return Err(empty(
                    "rootfs: needs a file, e.g. rootfs:alpine-minirootfs.tar.gz",
                ));
            }
            return Ok(ImageRef::Rootfs(rest.into()));
        }
        Ok(ImageRef::Docker(s.parse()?))
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageRef::Docker(r) => write!(f, "{r}"),
            ImageRef::Layout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            ImageRef::Layout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            ImageRef::DockerArchive(p) => write!(f, "docker-archive:{}", p.display()),
            ImageRef::Rootfs(p) => write!(f, "rootfs:{}", p.display()),
        }
    }
}

/// A resolved image: what a source found for the requested platform.
#[derive(Debug, Clone)]
pub struct Image {
    /// What was asked for, for messages.
    pub name: String,
    /// The digest of the image manifest (of the synthesised one for `rootfs:`).
    pub digest: Digest,
    /// The digest of the index it was chosen from, if any.
    pub index_digest: Option<Digest>,
    /// The image manifest.
    pub manifest: ImageManifest,
    /// The image config.
    pub config: ImageConfig,
}

/// One layer to apply.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The (compressed) blob.
    pub descriptor: Descriptor,
    /// The uncompressed digest from the config, when known.
    pub diff_id: Option<Digest>,
}

impl Image {
    /// The layers with their diff_ids, base first. The config must list one diff_id per
    /// layer (a rootfs tarball has none).
    pub fn layers(&self) -> Result<Vec<Layer>, OciError> {
        let ids = &self.config.rootfs.diff_ids;
        if !ids.is_empty() && ids.len() != self.manifest.layers.len() {
            return Err(OciError::BadConfig {
                what: self.name.clone(),
                why: format!(
                    "the manifest has {} layers but the config lists {} diff_ids",
                    self.manifest.layers.len(),
                    ids.len()
                ),
            });
        }
        Ok(self
            .manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, d)| Layer {
                descriptor: d.clone(),
                diff_id: ids.get(i).copied(),
            })
            .collect())
    }
}

/// An image source: the resolved image and its layer blobs as streams that fail at their
/// end unless digest and size match (read them to the end).
pub trait ImageSource {
    /// The resolved image.
    fn image(&self) -> &Image;
    /// The compressed bytes of layer `index` (position in the manifest), verified.
    fn open_layer(&self, index: usize) -> Result<Box<dyn Read + Send + '_>, OciError>;
}

/// How to get an image.
#[derive(Clone)]
pub struct SourceOptions {
    /// The platform wanted from an index.
    pub platform: Platform,
    /// Registry settings (used for `docker://` only).
    pub registry: RegistryOptions,
}

/// Opens the source `r` names. Registry images are fetched into `cache` first (per
/// `opts.registry.pull`); local sources are read in place.
pub fn open_source(
    r: &ImageRef,
    cache: Option<&Cache>,
    opts: &SourceOptions,
    progress: &Progress,
) -> Result<Box<dyn ImageSource>, OciError> {
    Ok(match r {
        ImageRef::Docker(reference) => {
            let cache = cache.ok_or_else(|| OciError::Local {
                path: PathBuf::from("."),
                why: "no cache directory: set ROOTSMITH_CACHE or HOME".into(),
            })?;
            Box::new(registry::pull(
                reference,
                cache,
                &opts.platform,
                &opts.registry,
                progress,
            )?)
        }
        ImageRef::Layout { dir, tag } => Box::new(layout::LayoutSource::open(
            dir,
            tag.as_deref(),
            &opts.platform,
        )?),
        ImageRef::DockerArchive(p) => Box::new(docker_archive::ArchiveSource::open(p)?),
        ImageRef::Rootfs(p) => Box::new(rootfs_tar::RootfsSource::open(p, &opts.platform)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(mt: &str, data: &[u8], platform: Option<&str>) -> String {
        let p = platform.map_or(String::new(), |p| {
            let p: Platform = p.parse().unwrap();
            format!(",\"platform\":{}", serde_json::to_string(&p).unwrap())
        });
        format!(
            r#"{{"mediaType":"{mt}","digest":"{}","size":{}{p}}}"#,
            Digest::of(data),
            data.len()
        )
    }

    #[test]
    fn docker_schema2_lists_resolve_with_variants() {
        use super::super::media_type as mt;
        let cfg = br#"{"architecture":"arm","os":"linux","variant":"v7","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let man = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[]}}"#,
            mt::DOCKER_MANIFEST,
            desc(mt::DOCKER_CONFIG, cfg, None)
        );
        let other = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[]}}"#,
            mt::DOCKER_MANIFEST,
            desc(mt::DOCKER_CONFIG, b"{}", None)
        );
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{}]}}"#,
            mt::DOCKER_LIST,
            desc(mt::DOCKER_MANIFEST, other.as_bytes(), Some("linux/arm/v6")),
            desc(mt::DOCKER_MANIFEST, man.as_bytes(), Some("linux/arm/v7")),
        );
        let blobs: Vec<Vec<u8>> = vec![cfg.to_vec(), man.clone().into_bytes(), other.into_bytes()];
        let mut fetch = |d: &Descriptor, _: BlobKind| {
            blobs
                .iter()
                .find(|b| Digest::of(b) == d.digest)
                .cloned()
                .ok_or(OciError::NotCached("x".into()))
        };
        let img = resolve_image(
            "x",
            list.as_bytes(),
            Digest::of(list.as_bytes()),
            None,
            &"linux/arm/v7".parse().unwrap(),
            &mut fetch,
        )
        .unwrap();
        assert_eq!(img.digest, Digest::of(man.as_bytes()));
        assert_eq!(img.index_digest, Some(Digest::of(list.as_bytes())));
        assert_eq!(img.config.variant.as_deref(), Some("v7"));
        // A single manifest for another platform is refused, naming it.
        let e = resolve_image(
            "y",
            man.as_bytes(),
            Digest::of(man.as_bytes()),
            None,
            &"linux/amd64".parse().unwrap(),
            &mut fetch,
        )
        .unwrap_err();
        assert!(e.to_string().contains("linux/arm/v7"), "{e}");
    }

    #[test]
    fn transports_parse() {
        assert_eq!(
            "oci:/tmp/l:3.20".parse::<ImageRef>().unwrap(),
            ImageRef::Layout {
                dir: "/tmp/l".into(),
                tag: Some("3.20".into())
            }
        );
        assert_eq!(
            "oci:./l".parse::<ImageRef>().unwrap(),
            ImageRef::Layout {
                dir: "./l".into(),
                tag: None
            }
        );
        assert_eq!(
            "docker-archive:a.tar".parse::<ImageRef>().unwrap(),
            ImageRef::DockerArchive("a.tar".into())
        );
        assert_eq!(
            "rootfs:r.tgz".parse::<ImageRef>().unwrap(),
            ImageRef::Rootfs("r.tgz".into())
        );
        assert!(matches!(
            "alpine".parse::<ImageRef>().unwrap(),
            ImageRef::Docker(_)
        ));
        assert!(matches!(
            "docker://alpine".parse::<ImageRef>().unwrap(),
            ImageRef::Docker(_)
        ));
        assert!("oci:".parse::<ImageRef>().is_err());
        assert!("rootfs:".parse::<ImageRef>().is_err());
    }
}

/// What [`resolve_image`] asks its fetcher for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// A manifest or index named by an index entry.
    Manifest,
    /// An image config.
    Config,
}

/// Fetches a blob named by a descriptor, checked against it.
pub type FetchFn<'a> = dyn FnMut(&Descriptor, BlobKind) -> Result<Vec<u8>, OciError> + 'a;

/// Resolves a top-level manifest document to an image for `platform`: an index is followed
/// (nested at most twice) to the platform's manifest, then the config is fetched. `fetch`
/// returns a blob's bytes already checked against its descriptor.
pub fn resolve_image(
    name: &str,
    top: &[u8],
    top_digest: Digest,
    top_type: Option<&str>,
    platform: &Platform,
    fetch: &mut FetchFn<'_>,
) -> Result<Image, OciError> {
    use super::manifest::{parse_document, Document};
    let mut doc = parse_document(top, top_type, name)?;
    let mut digest = top_digest;
    let mut index_digest = None;
    for _ in 0..3 {
        match doc {
            Document::Manifest(manifest) => {
                let cfg_bytes = fetch(&manifest.config, BlobKind::Config)?;
                let config = ImageConfig::parse(&cfg_bytes, name)?;
                if !config.os.is_empty() && index_digest.is_none() {
                    let got = Platform {
                        os: config.os.clone(),
                        architecture: config.architecture.clone(),
                        variant: config.variant.clone(),
                        os_version: None,
                    };
                    if !got.satisfies(platform) {
                        return Err(OciError::NoPlatform {
                            what: name.to_string(),
                            want: platform.to_string(),
                            available: vec![got.to_string()],
                        });
                    }
                }
                return Ok(Image {
                    name: name.to_string(),
                    digest,
                    index_digest,
                    manifest,
                    config,
                });
            }
            Document::Index(idx) => {
                let entry = idx.select(platform, name)?.clone();
                index_digest.get_or_insert(digest);
                let bytes = fetch(&entry, BlobKind::Manifest)?;
                doc = parse_document(
                    &bytes,
                    Some(&entry.media_type),
                    &format!("{name}@{}", entry.digest),
                )?;
                digest = entry.digest;
            }
        }
    }
    Err(OciError::BadManifest {
        what: name.to_string(),
        why: "image indexes nested more than two deep".into(),
    })
}
