//! A JSON registry of named images: SmolVM's custom registry (the `registry:
//! dict[str, ImageSource]` an `ImageManager` takes) written as JSON. Three shapes are read:
//!
//! ```json
//! {"alpine": {"rootfs_url": "...", "rootfs_sha256": "...", "kernel_url": "...", "kernel_sha256": "..."}}
//! [{"name": "alpine", "rootfs_url": "...", "rootfs_sha256": "..."}]
//! {"images": <either of the above>}
//! ```
//!
//! Fields are `ImageSource`'s: `name`, `{kernel,initrd,rootfs}_url`, `…_sha256`,
//! `…_filename` (defaults `vmlinux.bin`, `initrd.img`, `rootfs.ext4`), plus rootsmith's
//! `…_compression` (`"zstd"` or `"none"`; default: zstd when the URL ends in `.zst`). Unknown
//! fields are errors (a typo must not silently drop a hash). Unlike SmolVM, every URL needs its
//! `sha256` (of the bytes at the URL: for `.zst`, the compressed file). A relative URL is
//! resolved against the registry's own location. A `rootfs_filename` ending in `.zst` names
//! the decompressed file without it.
//!
//! SmolVM's per-image `smolvm-image.json` (`{"name", "kernel", "kernel_sha256", "rootfs",
//! "rootfs_sha256", "initrd"?, "initrd_sha256"?, "boot_args"?}`, files relative to it) is read
//! too, as a one-image registry: serve an S3-style image prefix over HTTP and pass the
//! manifest's URL.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::source::{Asset, Compression, ImageSource, Role};
use super::ImagesError;
use crate::digest::Digest;

/// Named image sources.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Where it was read from (for messages and relative URLs).
    pub origin: String,
    /// The images by name.
    pub images: BTreeMap<String, ImageSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Option<String>,
    kernel_url: Option<String>,
    kernel_sha256: Option<String>,
    kernel_filename: Option<String>,
    kernel_compression: Option<String>,
    initrd_url: Option<String>,
    initrd_sha256: Option<String>,
    initrd_filename: Option<String>,
    initrd_compression: Option<String>,
    rootfs_url: Option<String>,
    rootfs_sha256: Option<String>,
    rootfs_filename: Option<String>,
    rootfs_compression: Option<String>,
}

impl Registry {
    /// Parses registry `text` read from `origin` (a path or URL).
    pub fn parse(text: &str, origin: &str) -> Result<Registry, ImagesError> {
        let bad = |why: String| ImagesError::Registry {
            origin: origin.to_string(),
            why,
        };
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| bad(format!("not valid JSON ({e}); fix the file")))?;
        if is_smolvm_manifest(&doc) {
            return Self::from_manifest(doc, origin);
        }
        let doc = unwrap_images(doc);
        let entries: Vec<(Option<String>, serde_json::Value)> = match doc {
            serde_json::Value::Object(m) => m.into_iter().map(|(k, v)| (Some(k), v)).collect(),
            serde_json::Value::Array(a) => a.into_iter().map(|v| (None, v)).collect(),
            _ => {
                return Err(bad(
                    "expected an object of images by name or an array of images".into(),
                ))
            }
        };
        let mut images = BTreeMap::new();
        for (i, (key, v)) in entries.into_iter().enumerate() {
            let label = key.clone().unwrap_or_else(|| format!("#{}", i + 1));
            let e: Entry =
                serde_json::from_value(v).map_err(|e| bad(format!("image {label:?}: {e}")))?;
            let name = match (&key, &e.name) {
                (Some(k), Some(n)) if k != n => {
                    return Err(bad(format!(
                        "image {k:?} has \"name\": {n:?}; make them equal or drop \"name\""
                    )))
                }
                (Some(k), _) => k.clone(),
                (None, Some(n)) => n.clone(),
                (None, None) => {
                    return Err(bad(format!(
                        "image {label} has no \"name\"; add one (or use an object keyed by name)"
                    )))
                }
            };
            let src = entry_to_source(&name, e, origin).map_err(bad)?;
            src.check().map_err(bad)?;
            if images.insert(name.clone(), src).is_some() {
                return Err(bad(format!("image {name:?} is listed twice; keep one")));
            }
        }
        Ok(Registry {
            origin: origin.to_string(),
            images,
        })
    }

    /// The source named `name`.
    pub fn get(&self, name: &str) -> Result<&ImageSource, ImagesError> {
        self.images
            .get(name)
            .ok_or_else(|| ImagesError::UnknownImage {
                name: name.to_string(),
                origin: self.origin.clone(),
                available: if self.images.is_empty() {
                    "no images".into()
                } else {
                    self.images.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })
    }
}

/// SmolVM's `smolvm-image.json` (the manifest `ensure_s3_image` reads beside an image's
/// assets): one image, its files named relative to the manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    kernel: String,
    kernel_sha256: Option<String>,
    rootfs: String,
    rootfs_sha256: Option<String>,
    initrd: Option<String>,
    initrd_sha256: Option<String>,
    // Boot arguments are the VMM's business; accepted so SmolVM's manifests read.
    #[allow(dead_code)]
    boot_args: Option<String>,
}

fn is_smolvm_manifest(doc: &serde_json::Value) -> bool {
    doc.get("name").is_some_and(|v| v.is_string())
        && doc.get("rootfs").is_some_and(|v| v.is_string())
}

impl Registry {
    fn from_manifest(doc: serde_json::Value, origin: &str) -> Result<Registry, ImagesError> {
        let bad = |why: String| ImagesError::Registry {
            origin: origin.to_string(),
            why,
        };
        let m: Manifest =
            serde_json::from_value(doc).map_err(|e| bad(format!("smolvm-image.json: {e}")))?;
        // Asset names are relative (SmolVM refuses absolute paths and `..`).
        for f in [Some(&m.kernel), Some(&m.rootfs), m.initrd.as_ref()]
            .into_iter()
            .flatten()
        {
            if f.starts_with('/') || f.split('/').any(|p| p == "..") || f.contains("://") {
                return Err(bad(format!(
                    "image {:?}: asset {f:?} must be a path relative to the manifest",
                    m.name
                )));
            }
        }
        let e = Entry {
            name: None,
            kernel_url: Some(m.kernel),
            kernel_sha256: m.kernel_sha256,
            kernel_filename: None,
            kernel_compression: None,
            initrd_url: m.initrd,
            initrd_sha256: m.initrd_sha256,
            initrd_filename: None,
            initrd_compression: None,
            rootfs_url: Some(m.rootfs),
            rootfs_sha256: m.rootfs_sha256,
            rootfs_filename: None,
            rootfs_compression: None,
        };
        let src = entry_to_source(&m.name, e, origin).map_err(bad)?;
        src.check().map_err(bad)?;
        Ok(Registry {
            origin: origin.to_string(),
            images: [(m.name, src)].into_iter().collect(),
        })
    }
}

fn unwrap_images(doc: serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::Object(m) = &doc {
        if m.len() == 1 {
            if let Some(inner) = m.get("images") {
                // `{"images": {...}}` is the wrapper unless "images" is itself an image.
                let is_entry = inner.get("rootfs_url").is_some();
                if !is_entry && (inner.is_object() || inner.is_array()) {
                    return inner.clone();
                }
            }
        }
    }
    doc
}

fn entry_to_source(name: &str, e: Entry, origin: &str) -> Result<ImageSource, String> {
    let asset = |role: Role,
                 url: Option<String>,
                 sha: Option<String>,
                 file: Option<String>,
                 comp: Option<String>|
     -> Result<Option<Asset>, String> {
        let Some(url) = url else {
            if sha.is_some() || file.is_some() || comp.is_some() {
                return Err(format!(
                    "image {name:?} has {role}_sha256/_filename/_compression but no {role}_url; add the URL or drop them"
                ));
            }
            return Ok(None);
        };
        let url = resolve(origin, &url);
        let sha = sha.ok_or_else(|| {
            format!("image {name:?}: {role}_sha256 is missing; rootsmith only installs verified files: add the sha256 of {url} (sha256sum FILE)")
        })?;
        let sha256: Digest =
            sha.trim().to_ascii_lowercase().parse().map_err(|_| {
                format!("image {name:?}: {role}_sha256 {sha:?} is not 64 hex digits")
            })?;
        let compression = match comp {
            None => Compression::from_url(&url),
            Some(c) => Compression::parse(&c).ok_or_else(|| {
                format!("image {name:?}: {role}_compression {c:?} is not \"zstd\" or \"none\"")
            })?,
        };
        let mut file = file.unwrap_or_else(|| role.default_file().to_string());
        if compression == Compression::Zstd {
            if let Some(stripped) = file.strip_suffix(".zst") {
                file = stripped.to_string();
            }
        }
        Ok(Some(Asset {
            url,
            sha256,
            file,
            compression,
        }))
    };
    let rootfs = asset(
        Role::Rootfs,
        e.rootfs_url,
        e.rootfs_sha256,
        e.rootfs_filename,
        e.rootfs_compression,
    )?
    .ok_or_else(|| format!("image {name:?} has no rootfs_url; add one"))?;
    let kernel = asset(
        Role::Kernel,
        e.kernel_url,
        e.kernel_sha256,
        e.kernel_filename,
        e.kernel_compression,
    )?;
    let initrd = asset(
        Role::Initrd,
        e.initrd_url,
        e.initrd_sha256,
        e.initrd_filename,
        e.initrd_compression,
    )?;
    Ok(ImageSource {
        name: name.to_string(),
        rootfs,
        kernel,
        initrd,
    })
}

/// `url` resolved against the registry's location `origin` when it is relative (has no
/// scheme): beside the registry file or URL.
pub fn resolve(origin: &str, url: &str) -> String {
    let has_scheme = url.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if has_scheme {
        return url.to_string();
    }
    let base = if origin.contains("://") || origin.starts_with("file:") {
        origin.to_string()
    } else {
        format!("file:{origin}")
    };
    if url.starts_with('/') {
        if base.starts_with("file:") {
            return format!("file:{url}");
        }
        // http://host/path → http://host + url
        if let Some((scheme, rest)) = base.split_once("://") {
            let host = rest.split('/').next().unwrap_or(rest);
            return format!("{scheme}://{host}{url}");
        }
    }
    match base.rfind('/') {
        Some(i) => format!("{}/{url}", &base[..i]),
        None => format!("file:{url}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn reads_smolvms_registry_as_an_object_by_name() {
        let text = format!(
            r#"{{"alpine": {{"kernel_url": "http://h/vmlinux", "kernel_sha256": "{H1}",
                "rootfs_url": "http://h/alpine-rootfs.ext4.zst", "rootfs_sha256": "{H2}"}}}}"#
        );
        let r = Registry::parse(&text, "reg.json").unwrap();
        let s = r.get("alpine").unwrap();
        assert_eq!(s.name, "alpine");
        assert_eq!(s.rootfs.file, "rootfs.ext4");
        assert_eq!(s.rootfs.compression, Compression::Zstd);
        assert_eq!(s.rootfs.sha256.hex(), H2);
        let k = s.kernel.as_ref().unwrap();
        assert_eq!(
            (k.file.as_str(), k.compression),
            ("vmlinux.bin", Compression::None)
        );
        assert!(s.initrd.is_none());
    }

    #[test]
    fn reads_a_list_and_the_images_wrapper() {
        let text = format!(
            r#"{{"images": [{{"name": "a", "rootfs_url": "r.ext4", "rootfs_sha256": "sha256:{H1}",
                "rootfs_filename": "disk.ext4.zst", "rootfs_compression": "zstd"}}]}}"#
        );
        let r = Registry::parse(&text, "http://h:8/dir/reg.json").unwrap();
        let s = r.get("a").unwrap();
        assert_eq!(s.rootfs.url, "http://h:8/dir/r.ext4");
        assert_eq!(s.rootfs.file, "disk.ext4");
        assert_eq!(s.rootfs.compression, Compression::Zstd);
    }

    #[test]
    fn an_image_called_images_is_not_the_wrapper() {
        let text =
            format!(r#"{{"images": {{"rootfs_url": "http://h/r", "rootfs_sha256": "{H1}"}}}}"#);
        let r = Registry::parse(&text, "x").unwrap();
        assert!(r.get("images").is_ok());
    }

    #[test]
    fn mistakes_name_the_image_and_field() {
        let err = |t: &str| Registry::parse(t, "reg.json").unwrap_err().to_string();
        let e = err(&format!(
            r#"{{"a": {{"rootfs_url": "http://h/r", "rootfs_shaa256": "{H1}"}}}}"#
        ));
        assert!(
            e.contains("registry reg.json") && e.contains("\"a\"") && e.contains("rootfs_shaa256"),
            "{e}"
        );
        let e = err(r#"{"a": {"rootfs_url": "http://h/r"}}"#);
        assert!(e.contains("rootfs_sha256 is missing"), "{e}");
        let e = err(r#"{"a": {"rootfs_url": "http://h/r", "rootfs_sha256": "abc"}}"#);
        assert!(e.contains("not 64 hex digits"), "{e}");
        let e = err(&format!(
            r#"{{"a": {{"kernel_url": "http://h/k", "kernel_sha256": "{H1}"}}}}"#
        ));
        assert!(e.contains("no rootfs_url"), "{e}");
        let e = err(&format!(
            r#"{{"a/b": {{"rootfs_url": "http://h/r", "rootfs_sha256": "{H1}"}}}}"#
        ));
        assert!(e.contains("not a valid image name"), "{e}");
        let e = err(&format!(
            r#"{{"a": {{"rootfs_url": "http://h/r", "rootfs_sha256": "{H1}", "rootfs_filename": "../r"}}}}"#
        ));
        assert!(e.contains("plain file name"), "{e}");
        let e = err(&format!(
            r#"[{{"rootfs_url": "http://h/r", "rootfs_sha256": "{H1}"}}]"#
        ));
        assert!(e.contains("has no \"name\""), "{e}");
        let e = err(&format!(
            r#"[{{"name":"a","rootfs_url":"http://h/r","rootfs_sha256":"{H1}"}},{{"name":"a","rootfs_url":"http://h/r","rootfs_sha256":"{H1}"}}]"#
        ));
        assert!(e.contains("listed twice"), "{e}");
        let e = err("[1,");
        assert!(e.contains("not valid JSON"), "{e}");
        let e = err("42");
        assert!(e.contains("expected an object"), "{e}");
        let e = err(&format!(
            r#"{{"a": {{"rootfs_url": "http://h/r", "rootfs_sha256": "{H1}", "rootfs_compression": "xz"}}}}"#
        ));
        assert!(e.contains("not \"zstd\" or \"none\""), "{e}");
    }

    #[test]
    fn reads_smolvms_per_image_manifest() {
        let text = format!(
            r#"{{"name": "alpine-ssh", "kernel": "vmlinux.bin", "kernel_sha256": "{H1}",
                "rootfs": "rootfs.ext4.zst", "rootfs_sha256": "{H2}", "boot_args": "console=ttyS0"}}"#
        );
        let r = Registry::parse(&text, "http://h/images/alpine/smolvm-image.json").unwrap();
        let s = r.get("alpine-ssh").unwrap();
        assert_eq!(s.rootfs.url, "http://h/images/alpine/rootfs.ext4.zst");
        assert_eq!(
            (s.rootfs.file.as_str(), s.rootfs.compression),
            ("rootfs.ext4", Compression::Zstd)
        );
        assert_eq!(
            s.kernel.as_ref().unwrap().url,
            "http://h/images/alpine/vmlinux.bin"
        );
        let e = Registry::parse(
            &format!(r#"{{"name": "a", "kernel": "../k", "kernel_sha256": "{H1}", "rootfs": "r", "rootfs_sha256": "{H2}"}}"#),
            "m.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("relative to the manifest"), "{e}");
        let e = Registry::parse(
            r#"{"name": "a", "kernel": "k", "rootfs": "r", "rootfs_sha256": "x", "extra": 1}"#,
            "m.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn unknown_names_list_what_the_registry_has() {
        let text = format!(r#"{{"b": {{"rootfs_url": "http://h/r", "rootfs_sha256": "{H1}"}}}}"#);
        let e = Registry::parse(&text, "reg.json")
            .unwrap()
            .get("a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"a\"") && e.contains("it has: b"), "{e}");
    }

    #[test]
    fn relative_urls_resolve_beside_the_registry() {
        assert_eq!(
            resolve("http://h:1/a/reg.json", "r.zst"),
            "http://h:1/a/r.zst"
        );
        assert_eq!(resolve("http://h:1/a/reg.json", "/x/r"), "http://h:1/x/r");
        assert_eq!(resolve("/srv/reg.json", "r.ext4"), "file:/srv/r.ext4");
        assert_eq!(resolve("reg.json", "r.ext4"), "file:r.ext4");
        assert_eq!(resolve("/srv/reg.json", "http://o/r"), "http://o/r");
        assert_eq!(resolve("/srv/reg.json", "file:/r"), "file:/r");
    }
}
