//! Registry credentials from the files docker, podman and skopeo write: `auths` maps a
//! registry (`host[:port]`, or a URL such as `https://index.docker.io/v1/`) to a base64
//! `user:password` in `auth` (or `username` and `password`). The caller lists the files to
//! look in, in order (`$REGISTRY_AUTH_FILE`, then `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`); missing files are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::OciError;

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl std::str::FromStr for Credentials {
    type Err = String;
    /// `USER:PASSWORD` (as `--creds` takes it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                username: u.into(),
                password: p.into(),
            }),
            _ => Err("expected USER:PASSWORD".into()),
        }
    }
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The registry host a config key names: `https://index.docker.io/v1/` → `docker.io`.
fn key_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// Credentials for `registry` from the first file that has them.
pub fn lookup(registry: &str, files: &[PathBuf]) -> Result<Option<Credentials>, OciError> {
    for path in files {
        if let Some(c) = lookup_in(registry, path)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn lookup_in(registry: &str, path: &Path) -> Result<Option<Credentials>, OciError> {
    let bad = |why: String| OciError::Auth {
        path: path.to_owned(),
        why,
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let file: File =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a docker config.json: {e}")))?;
    let Some(entry) = file
        .auths
        .iter()
        .find(|(k, _)| key_host(k) == registry)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    if let Some(a) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = crate::unpack::pax::base64_decode(a.as_bytes())
            .ok_or_else(|| bad(format!("auths.{registry}.auth is not base64")))?;
        let s = String::from_utf8(raw)
            .map_err(|_| bad(format!("auths.{registry}.auth is not UTF-8")))?;
        return s.parse().map(Some).map_err(|_| {
            bad(format!(
                "auths.{registry}.auth does not decode to USER:PASSWORD"
            ))
        });
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        // "alice:s3cr:et" in base64.
        std::fs::write(&p, r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcjpldA=="},"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}"#).unwrap();
        let files = vec![dir.path().join("missing.json"), p.clone()];
        let c = lookup("127.0.0.1:5000", &files).unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr:et")
        );
        assert_eq!(
            lookup("docker.io", &files).unwrap().unwrap().username,
            "bob"
        );
        assert!(lookup("ghcr.io", &files).unwrap().is_none());
        std::fs::write(&p, "{").unwrap();
        assert!(lookup("x", &files).is_err());
        assert!(!format!("{c:?}").contains("s3cr"));
    }
}
