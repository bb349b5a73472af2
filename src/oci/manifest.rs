//! Image manifests (`manifest.md`; Docker schema 2 has the same shape) and telling a fetched
//! manifest document apart: index, image manifest, or the refused schema 1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::descriptor::Descriptor;
use super::index::ImageIndex;
use super::media_type;
use super::OciError;

/// An image manifest: one config and the layers, base layer first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type (optional in OCI; umoci omits it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layers in stack order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A manifest document as fetched: which kind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// An image index or manifest list.
    Index(ImageIndex),
    /// An image manifest.
    Manifest(ImageManifest),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Parses a manifest document. `content_type` is the type the server or the referring
/// descriptor claimed, if any; the document's own `mediaType` wins when present. `what`
/// names the document in errors (a reference or a digest).
pub fn parse_document(
    bytes: &[u8],
    content_type: Option<&str>,
    what: &str,
) -> Result<Document, OciError> {
    let bad = |why: String| OciError::BadManifest {
        what: what.to_string(),
        why,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let mt = probe
        .media_type
        .clone()
        .or_else(|| content_type.map(str::to_string))
        .unwrap_or_default();
    if probe.schema_version == Some(1) || media_type::is_schema1(&mt) {
        return Err(OciError::Schema1(what.to_string()));
    }
    if probe.schema_version != Some(2) {
        return Err(bad(format!(
            "schemaVersion is {:?}, expected 2",
            probe.schema_version
        )));
    }
    let is_index = if media_type::is_index(&mt) {
        true
    } else if media_type::is_manifest(&mt) {
        false
    } else if mt.is_empty() || mt == "application/json" || mt.starts_with("text/plain") {
        // No media type: the shape decides (OCI allows omitting it).
        match (probe.manifests.is_some(), probe.config.is_some()) {
            (true, false) => true,
            (false, true) => false,
            _ => return Err(bad("neither an image index nor an image manifest".into())),
        }
    } else {
        return Err(bad(format!(
            "media type {mt} is not an image manifest or index (is it an artifact rather than a container image?)"
        )));
    };
    if is_index {
        let idx: ImageIndex =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("bad image index: {e}")))?;
        Ok(Document::Index(idx))
    } else {
        let m: ImageManifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("bad image manifest: {e}")))?;
        for l in &m.layers {
            if !media_type::is_layer(&l.media_type) {
                return Err(bad(format!(
                    "layer {} has media type {:?}, which is not a filesystem layer rootsmith can apply",
                    l.digest, l.media_type
                )));
            }
        }
        Ok(Document::Manifest(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAN: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":10},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":20}]}"#;

    #[test]
    fn manifests_indexes_and_schema1() {
        assert!(
            matches!(parse_document(MAN.as_bytes(), None, "x"), Ok(Document::Manifest(m)) if m.layers.len() == 1)
        );
        // umoci omits mediaType: the shape decides.
        let no_mt = MAN.replace(
            r#""mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            "",
        );
        assert!(matches!(
            parse_document(no_mt.as_bytes(), None, "x"),
            Ok(Document::Manifest(_))
        ));
        let idx = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(matches!(
            parse_document(idx.as_bytes(), None, "x"),
            Ok(Document::Index(_))
        ));
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let e = parse_document(s1.as_bytes(), None, "alpine:old").unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
        assert!(parse_document(b"{", None, "x").is_err());
        let helm = MAN.replace("layer.v1.tar+gzip", "layer.v1.tar+bzip2");
        assert!(parse_document(helm.as_bytes(), None, "x").is_err());
    }
}
