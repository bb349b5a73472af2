//! OpenPGP keyrings as apt uses them (binary `.gpg` keyrings, armoured `.asc` files, inline
//! `Signed-By` blocks) and signature checks of `InRelease` / `Release.gpg` with rPGP.
//!
//! Archive keyrings carry third-party certifications and GnuPG trust packets (Ubuntu's), so
//! keys are grouped after dropping trust/marker packets, and only each subkey's own binding
//! to its primary is checked. A signature counts when its issuer is a primary key or a
//! properly bound subkey of a trusted certificate, its hash is not SHA-1/MD5, and it verifies.

use std::io::{BufReader, Cursor};

use pgp::composed::{
    CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey,
    SignedPublicKeyParser,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Packet, PacketParser, Signature};
use pgp::types::KeyDetails;

/// Why a keyring could not be read or a signature not accepted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The keyring bytes are not OpenPGP keys.
    #[error("{name}: not an openpgp keyring: {why}")]
    BadKeyring {
        /// Where the keyring came from.
        name: String,
        /// rPGP's message.
        why: String,
    },
    /// The signed file cannot be parsed.
    #[error("{name}: not a signed release file: {why}")]
    BadSigned {
        /// The file.
        name: String,
        /// rPGP's message.
        why: String,
    },
    /// No signature made by a trusted key verified.
    #[error("{name}: no valid signature by a trusted key ({detail}); the repository is not signed by a key the image trusts — trust its key with --apt-key KEYRING or --apt-source \"deb [signed-by=KEYRING] ...\"")]
    Untrusted {
        /// The file.
        name: String,
        /// What was found.
        detail: String,
    },
}

/// A set of trusted certificates.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// The certificates.
    pub certs: Vec<SignedPublicKey>,
    /// Now, seconds since the epoch: keys whose binding says they expired before it are
    /// not used (0: no expiry check).
    pub now: i64,
}

/// True when a key created at `created` with self-signatures `sigs` has expired by `now`
/// (the newest signature carrying a key expiration decides).
fn expired(created: u32, sigs: &[Signature], now: i64) -> bool {
    if now == 0 {
        return false;
    }
    let newest = sigs
        .iter()
        .filter(|s| s.key_expiration_time().is_some())
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0));
    match newest.and_then(|s| s.key_expiration_time()) {
        Some(d) if d.as_secs() > 0 => i64::from(created) + i64::from(d.as_secs()) < now,
        _ => false,
    }
}

impl Keyring {
    /// Adds the keys of a binary or armoured keyring file (several armour blocks allowed).
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<usize, KeyError> {
        let bad = |why: String| KeyError::BadKeyring {
            name: name.to_string(),
            why,
        };
        let text = std::str::from_utf8(bytes).ok();
        let mut added = 0;
        if let Some(t) = text.filter(|t| t.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
            // Each armour block separately; keys in it from its binary packets.
            let mut rest = t;
            while let Some(start) = rest.find("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
                let end_marker = "-----END PGP PUBLIC KEY BLOCK-----";
                let Some(end) = rest[start..].find(end_marker) else {
                    return Err(bad("armour block without an end line".into()));
                };
                let block = &rest[start..start + end + end_marker.len()];
                let mut de =
                    pgp::armor::Dearmor::new(BufReader::new(Cursor::new(block.as_bytes())));
                let mut bin = Vec::new();
                std::io::Read::read_to_end(&mut de, &mut bin).map_err(|e| bad(e.to_string()))?;
                added += self.add_binary(&bin).map_err(bad)?;
                rest = &rest[start + end + end_marker.len()..];
            }
        } else {
            added += self.add_binary(bytes).map_err(bad)?;
        }
        if added == 0 {
            return Err(bad("no public keys in it".into()));
        }
        Ok(added)
    }

    fn add_binary(&mut self, bytes: &[u8]) -> Result<usize, String> {
        let packets = PacketParser::new(BufReader::new(Cursor::new(bytes))).filter(|p| {
            !matches!(
                p,
                Ok(Packet::Trust(_)) | Ok(Packet::Marker(_)) | Ok(Packet::Padding(_))
            )
        });
        let mut n = 0;
        for cert in SignedPublicKeyParser::from_packets(packets.peekable()) {
            let cert = cert.map_err(|e| e.to_string())?;
            self.certs.push(cert);
            n += 1;
        }
        Ok(n)
    }

    /// Keeps only certificates with a primary or subkey fingerprint in `fprs` (hex, any
    /// case, spaces ignored, a trailing `!` allowed).
    pub fn only(&self, fprs: &[String]) -> Keyring {
        let norm = |s: &str| {
            s.trim_end_matches('!')
                .replace(' ', "")
                .to_ascii_uppercase()
        };
        let want: Vec<String> = fprs.iter().map(|f| norm(f)).collect();
        let hex = |f: pgp::types::Fingerprint| format!("{f:X}");
        Keyring {
            certs: self
                .certs
                .iter()
                .filter(|c| {
                    want.contains(&hex(c.primary_key.fingerprint()))
                        || c.public_subkeys
                            .iter()
                            .any(|s| want.contains(&hex(s.key.fingerprint())))
                })
                .cloned()
                .collect(),
            now: self.now,
        }
    }

    /// Merges another keyring into this one.
    pub fn extend(&mut self, other: Keyring) {
        self.now = self.now.max(other.now);
        self.certs.extend(other.certs);
    }

    /// True when `sig` verifies over `data` with a trusted primary key or bound subkey.
    fn accepts(&self, sig: &Signature, data: &[u8]) -> bool {
        if matches!(
            sig.hash_alg(),
            Some(HashAlgorithm::Sha1) | Some(HashAlgorithm::Md5) | None
        ) {
            return false;
        }
        let fps = sig.issuer_fingerprint();
        let ids = sig.issuer_key_id();
        let matches = |k: &dyn KeyDetails| {
            fps.iter().any(|f| **f == k.fingerprint())
                || ids.iter().any(|i| **i == k.legacy_key_id())
        };
        for cert in &self.certs {
            if !cert.details.revocation_signatures.is_empty() {
                continue;
            }
            let self_sigs: Vec<Signature> = cert
                .details
                .users
                .iter()
                .flat_map(|u| u.signatures.iter().cloned())
                .chain(cert.details.direct_signatures.iter().cloned())
                .collect();
            if expired(
                cert.primary_key.created_at().as_secs(),
                &self_sigs,
                self.now,
            ) {
                continue;
            }
            if matches(&cert.primary_key) && sig.verify(&cert.primary_key, data).is_ok() {
                return true;
            }
            for sub in &cert.public_subkeys {
                if matches(&sub.key)
                    && sub.verify_bindings(&cert.primary_key).is_ok()
                    && sub.signatures.iter().any(|b| b.key_flags().sign())
                    && !expired(sub.key.created_at().as_secs(), &sub.signatures, self.now)
                    && sig.verify(&sub.key, data).is_ok()
                {
                    return true;
                }
            }
        }
        false
    }

    /// Verifies a clearsigned `InRelease` and returns the signed text (dash-unescaped) —
    /// the only text a caller may trust.
    pub fn verify_cleartext(&self, name: &str, text: &str) -> Result<String, KeyError> {
        let (msg, _) =
            CleartextSignedMessage::from_string(text).map_err(|e| KeyError::BadSigned {
                name: name.to_string(),
                why: e.to_string(),
            })?;
        let signed = msg.signed_text();
        let n = msg.signatures().len();
        if msg
            .signatures()
            .iter()
            .any(|s| self.accepts(s, signed.as_bytes()))
        {
            return Ok(signed);
        }
        Err(KeyError::Untrusted {
            name: name.to_string(),
            detail: format!(
                "{n} signature(s), {} trusted certificate(s)",
                self.certs.len()
            ),
        })
    }

    /// How many of a clearsigned file's signatures verify with this keyring, of how many.
    pub fn count_valid(&self, name: &str, text: &str) -> Result<(usize, usize), KeyError> {
        let (msg, _) =
            CleartextSignedMessage::from_string(text).map_err(|e| KeyError::BadSigned {
                name: name.to_string(),
                why: e.to_string(),
            })?;
        let signed = msg.signed_text();
        let ok = msg
            .signatures()
            .iter()
            .filter(|s| self.accepts(s, signed.as_bytes()))
            .count();
        Ok((ok, msg.signatures().len()))
    }

    /// Certificates that still carry at least one user id (keyrings with GnuPG trust
    /// packets lose them when the packets are not filtered).
    pub fn with_user_ids(&self) -> usize {
        self.certs
            .iter()
            .filter(|c| !c.details.users.is_empty())
            .count()
    }

    /// Verifies a detached `Release.gpg` over `data`.
    pub fn verify_detached(&self, name: &str, data: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let bad = |why: String| KeyError::BadSigned {
            name: name.to_string(),
            why,
        };
        let sigs: Vec<DetachedSignature> = match std::str::from_utf8(sig) {
            Ok(t) if t.contains("-----BEGIN PGP SIGNATURE-----") => {
                DetachedSignature::from_string_many(t)
                    .map_err(|e| bad(e.to_string()))?
                    .0
                    .filter_map(Result::ok)
                    .collect()
            }
            _ => DetachedSignature::from_bytes_many(BufReader::new(Cursor::new(sig)))
                .map_err(|e| bad(e.to_string()))?
                .filter_map(Result::ok)
                .collect(),
        };
        if sigs.iter().any(|s| self.accepts(&s.signature, data)) {
            return Ok(());
        }
        Err(KeyError::Untrusted {
            name: name.to_string(),
            detail: format!(
                "{} signature(s), {} trusted certificate(s)",
                sigs.len(),
                self.certs.len()
            ),
        })
    }
}
