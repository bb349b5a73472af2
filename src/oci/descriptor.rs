//! Content descriptors (`descriptor.md`): a media type, a sha256 digest and a size, plus the
//! optional platform an index entry carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

use super::platform::Platform;

/// A descriptor. Only sha256 digests are accepted (the spec's MUST); anything else is a parse
/// error naming the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    #[serde(default)]
    pub media_type: String,
    /// Its sha256 digest.
    #[serde(serialize_with = "ser_digest", deserialize_with = "de_digest")]
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn ser_digest<S: Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

fn de_digest<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
    let s = String::deserialize(d)?;
    if !s.starts_with("sha256:") {
        return Err(serde::de::Error::custom(format!(
            "digest {s:?} is not sha256 (the only algorithm rootsmith supports)"
        )));
    }
    s.parse().map_err(serde::de::Error::custom)
}

/// Deserialises a list of `sha256:` digests (config `rootfs.diff_ids`).
pub(crate) fn de_digests<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Digest>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    v.iter()
        .map(|s| {
            if !s.starts_with("sha256:") {
                return Err(serde::de::Error::custom(format!(
                    "diff_id {s:?} is not sha256"
                )));
            }
            s.parse().map_err(serde::de::Error::custom)
        })
        .collect()
}

/// Serialises a list of digests in their `sha256:` form.
pub(crate) fn ser_digests<S: Serializer>(v: &[Digest], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|d| d.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_descriptor_and_refuses_other_algorithms() {
        let d: Descriptor = serde_json::from_str(
            r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c","size":3490290}"#,
        )
        .unwrap();
        assert_eq!(d.size, 3490290);
        let e =
            serde_json::from_str::<Descriptor>(r#"{"digest":"sha512:abcd","size":1}"#).unwrap_err();
        assert!(e.to_string().contains("not sha256"), "{e}");
    }
}
