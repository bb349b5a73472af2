//! The fingerprint of a build: the SHA-256 of a canonical JSON document of every input that
//! decides the image bytes — the validated recipe (with baked-in keys, files' digests and
//! password hashes), the resolved base manifest digest, the package lock (or, without one,
//! where packages come from), the init, guest agent and kernel digests, the size, the epoch
//! and the ext4 writer's version. An SSH key passed at boot is not an input. Equal
//! fingerprints mean equal images, so a matching `.fingerprint` is a cache hit.

use serde::Serialize;

use crate::digest::Digest;

/// Inputs that are known before the package set is resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    /// Bumped when the meaning of any input changes.
    pub schema: u32,
    /// The ext4 writer's identity.
    pub writer: &'static str,
    /// The validated recipe, with command-line overrides applied (canonical JSON).
    pub recipe: serde_json::Value,
    /// The resolved base image manifest digest.
    pub base_digest: String,
    /// `SOURCE_DATE_EPOCH` when the user set it.
    pub epoch: Option<i64>,
    /// `/init`'s digest.
    pub init: Option<String>,
    /// The guest agent's digest.
    pub agent: Option<String>,
    /// The kernel's SHA-256.
    pub kernel: Option<String>,
    /// Where packages come from (mirrors, sources, keys, options): part of [`Inputs::pre`]
    /// (which guards reusing a recorded lock), not of the fingerprint.
    pub package_sources: serde_json::Value,
}

impl Inputs {
    /// The digest of these inputs alone (what an implicit lock is recorded against).
    pub fn pre(&self) -> String {
        let v = serde_json::to_vec(self).expect("inputs serialise");
        Digest::of(&v).hex()
    }

    /// The fingerprint with the package lock `lock` (`None`: no packages). Where the
    /// packages were fetched from does not count: the lock pins their bytes.
    pub fn fingerprint(&self, lock: Option<&str>) -> String {
        let mut me = self.clone();
        me.package_sources = serde_json::Value::Null;
        let doc = serde_json::json!({
            "inputs": me,
            "lock": lock.map(|l| Digest::of(l.as_bytes()).hex()),
        });
        let v = serde_json::to_vec(&doc).expect("inputs serialise");
        Digest::of(&v).hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            schema: 1,
            writer: "w",
            recipe: serde_json::json!({"name": "x", "packages": ["a"]}),
            base_digest: "sha256:00".into(),
            epoch: None,
            init: Some("i".into()),
            agent: None,
            kernel: None,
            package_sources: serde_json::json!({"mirror": "http://127.0.0.1:1"}),
        }
    }

    #[test]
    fn every_input_counts() {
        let a = inputs();
        let fp = a.fingerprint(Some("lock"));
        assert_eq!(fp, inputs().fingerprint(Some("lock")));
        assert_ne!(fp, a.fingerprint(Some("other lock")));
        let mut b = inputs();
        b.init = Some("j".into());
        assert_ne!(fp, b.fingerprint(Some("lock")));
        let mut c = inputs();
        c.base_digest = "sha256:01".into();
        assert_ne!(fp, c.fingerprint(Some("lock")));
        // With a lock, the mirror's address does not matter (the lock pins the bytes).
        let mut d = inputs();
        d.package_sources = serde_json::json!({"mirror": "http://127.0.0.1:2"});
        assert_eq!(fp, d.fingerprint(Some("lock")));
        assert_ne!(fp, a.fingerprint(None));
        assert_ne!(a.pre(), d.pre());
    }
}
