//! The image configuration (`config.md`): platform, the runtime settings later stages need
//! (Env, User, WorkingDir, Entrypoint, Cmd, Labels), and `rootfs.diff_ids`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

use super::descriptor::{de_digests, ser_digests};
use super::OciError;

/// The image configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Creation time (RFC 3339), as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Runtime defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RuntimeConfig>,
    /// The layers' uncompressed digests.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// `rootfs`: the uncompressed digest of each layer, base first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// One per layer.
    #[serde(
        default,
        deserialize_with = "de_digests",
        serialize_with = "ser_digests"
    )]
    pub diff_ids: Vec<Digest>,
}

/// The runtime settings of `config.config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    /// `USER` (name or uid, optionally `:group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `NAME=value` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Stop signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

impl ImageConfig {
    /// Parses a config blob; `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<ImageConfig, OciError> {
        serde_json::from_slice(bytes).map_err(|e| OciError::BadConfig {
            what: what.to_string(),
            why: e.to_string(),
        })
    }

    /// `Env` as (name, value) pairs, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        let Some(rc) = &self.config else {
            return Vec::new();
        };
        rc.env
            .iter()
            .flatten()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_runtime_settings_and_diff_ids() {
        let c = ImageConfig::parse(br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","EMPTY"],"User":"app:app","WorkingDir":"/srv","Entrypoint":["/init"],"Cmd":["-v"],"Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":["sha256:1bccf10afce5c1ffe31381419930ad565c1436eaeb1ca680494b0663e0028419"]}}"#, "cfg").unwrap();
        let rc = c.config.as_ref().unwrap();
        assert_eq!(rc.user.as_deref(), Some("app:app"));
        assert_eq!(rc.working_dir.as_deref(), Some("/srv"));
        assert_eq!(rc.labels.as_ref().unwrap()["a"], "b");
        assert_eq!(
            c.env(),
            vec![
                ("PATH".into(), "/bin".into()),
                ("EMPTY".into(), String::new())
            ]
        );
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert!(ImageConfig::parse(br#"{"rootfs":{"diff_ids":["md5:x"]}}"#, "cfg").is_err());
    }
}
