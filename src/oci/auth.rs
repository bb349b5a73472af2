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
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    /// Registry → credential helper name (`docker-credential-NAME`).
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    /// The helper for every registry not in `credHelpers`.
    #[serde(default)]
    creds_store: Option<String>,
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
    let helper = file
        .cred_helpers
        .iter()
        .find(|(k, _)| key_host(k) == registry)
        .map(|(_, v)| v)
        .or(file.creds_store.as_ref());
    if let Some(name) = helper.filter(|n| !n.is_empty()) {
        if let Some(c) = from_helper(name, registry).map_err(bad)? {
            return Ok(Some(c));
        }
    }
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

/// Asks `docker-credential-NAME get` (the docker credential-helper protocol: the server
/// on stdin, `{"Username":…,"Secret":…}` on stdout). A helper that does not know the
/// registry answers with an error; that means no credentials.
fn from_helper(name: &str, registry: &str) -> Result<Option<Credentials>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "credential helper name {name:?} is not a plain name"
        ));
    }
    let prog = format!("docker-credential-{name}");
    let server = if registry == super::reference::DOCKER_HUB {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let mut child = match Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Err(format!("credential helper {prog} could not run ({e}); install it or remove credsStore/credHelpers")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("credential helper {prog}: {e}"))?;
    if !out.status.success() {
        return Ok(None);
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Reply {
        username: String,
        secret: String,
    }
    let r: Reply = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!("credential helper {prog} answered something else than JSON credentials: {e}")
    })?;
    Ok(Some(Credentials {
        username: r.username,
        password: r.secret,
    }))
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
