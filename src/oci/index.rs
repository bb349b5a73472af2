//! Image indexes (`image-index.md`) and Docker manifest lists: choosing the manifest for a
//! platform, or saying which platforms there are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::descriptor::Descriptor;
use super::platform::{self, Platform};
use super::{media_type, OciError};

/// An image index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests it lists.
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// The entry for `want`. Entries that are not image manifests (attestations, nested
    /// indexes without a platform) are skipped. The error lists what is available.
    pub fn select(&self, want: &Platform, what: &str) -> Result<&Descriptor, OciError> {
        let usable = |d: &Descriptor| {
            media_type::is_manifest(&d.media_type)
                || media_type::is_index(&d.media_type)
                || d.media_type.is_empty()
        };
        let cands = self
            .manifests
            .iter()
            .enumerate()
            .filter(|(_, d)| usable(d) && d.platform.as_ref().is_some_and(|p| p.os != "unknown"))
            .map(|(i, d)| (i, d.platform.as_ref()));
        match platform::select(cands, want) {
            Some(i) => Ok(&self.manifests[i]),
            None => Err(OciError::NoPlatform {
                what: what.to_string(),
                want: want.to_string(),
                available: self.platforms(),
            }),
        }
    }

    /// The platforms listed, as `os/arch[/variant]`, in index order, without duplicates.
    pub fn platforms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in &self.manifests {
            if let Some(p) = &d.platform {
                if p.os == "unknown" {
                    continue;
                }
                let s = p.to_string();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_match_lists_the_platforms() {
        let idx: ImageIndex = serde_json::from_str(r#"{"schemaVersion":2,"manifests":[
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1,"platform":{"os":"linux","architecture":"amd64"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":1,"platform":{"os":"unknown","architecture":"unknown"}}]}"#).unwrap();
        assert_eq!(
            idx.select(&"linux/arm64".parse().unwrap(), "x")
                .unwrap()
                .size,
            1
        );
        let e = idx
            .select(&"linux/s390x".parse().unwrap(), "alpine:3.20")
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux/amd64, linux/arm64/v8"), "{e}");
        assert!(!e.contains("unknown"), "{e}");
    }
}
