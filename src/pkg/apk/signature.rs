//! APK v2 signatures. Both `APKINDEX.tar.gz` and `.apk` files start with a gzip member
//! holding a tar of `.SIGN.<ALG>.<keyname>` entries; each is an RSA PKCS#1 v1.5 signature
//! (`RSA`: SHA-1, `RSA256`: SHA-256, `RSA512`: SHA-512) over the raw compressed bytes of
//! what follows (the index member, or the package's control member). `<keyname>` is the
//! file name of a trusted public key; one valid signature by a trusted key is enough.
//! Also the gzip member splitting the formats rely on.

use std::collections::BTreeMap;
use std::io::Read;

use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha2::Digest as _;

/// Signatures larger than this are ignored, as apk-tools does.
const MAX_SIG: u64 = 64 * 1024;

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The first gzip member is not a readable tar of signatures.
    #[error("signature block: {0}")]
    Malformed(String),
    /// No `.SIGN.*` entry at all.
    #[error("not signed: no .SIGN.* entry in the first gzip member")]
    Unsigned,
    /// A `.SIGN` entry names a key with a path in it.
    #[error(
        "signature names key {0:?}, which contains `/`: refusing it (key names are file names)"
    )]
    KeyNameWithSlash(String),
    /// Signed only by keys we do not trust.
    #[error("signed only by untrusted key(s) {keys}: add the public key to the image's /etc/apk/keys or pass --apk-key FILE")]
    Untrusted {
        /// The key names, comma-separated.
        keys: String,
    },
    /// A trusted key's signature does not match the data.
    #[error("bad signature by trusted key {0}: the data was modified or corrupted")]
    Bad(String),
}

/// A set of trusted RSA public keys by file name.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, RsaPublicKey>,
}

/// A key file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("key {name}: not an RSA public key in PEM (BEGIN PUBLIC KEY): {why}")]
pub struct BadKey {
    /// The key's file name.
    pub name: String,
    /// What the parser said.
    pub why: String,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Adds a PEM (SPKI) public key under its file name.
    pub fn add_pem(&mut self, name: &str, pem: &[u8]) -> Result<(), BadKey> {
        let bad = |why: String| BadKey {
            name: name.to_string(),
            why,
        };
        let text = std::str::from_utf8(pem).map_err(|_| bad("not UTF-8".into()))?;
        let key = RsaPublicKey::from_public_key_pem(text.trim()).map_err(|e| bad(e.to_string()))?;
        self.keys.insert(name.to_string(), key);
        Ok(())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(|s| s.as_str())
    }
}

/// Splits off the first gzip member of `data`: its decompressed bytes (at most `limit`)
/// and the raw bytes that follow it.
pub fn split_member(data: &[u8], limit: u64) -> std::io::Result<(Vec<u8>, &[u8])> {
    let mut dec = flate2::bufread::GzDecoder::new(data);
    let mut out = Vec::new();
    let n = (&mut dec)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)?;
    if n as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("gzip member decompresses to more than {limit} bytes"),
        ));
    }
    let rest = dec.into_inner();
    Ok((out, rest))
}

/// One signature entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigEntry {
    /// `RSA`, `RSA256`, `RSA512`, or another algorithm name (ignored).
    pub alg: String,
    /// The key file name.
    pub key: String,
    /// The signature bytes.
    pub sig: Vec<u8>,
}

/// Reads the `.SIGN.*` entries of a decompressed signature tar (cut or not).
pub fn read_entries(tar_bytes: &[u8]) -> Result<Vec<SigEntry>, SignatureError> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(tar_bytes);
    let entries = ar
        .entries()
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    for e in entries {
        let mut e = e.map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let path = e.path_bytes().into_owned();
        let Some(rest) = path.strip_prefix(b".SIGN.") else {
            continue;
        };
        let rest = String::from_utf8_lossy(rest).into_owned();
        let Some((alg, key)) = rest.split_once('.') else {
            continue;
        };
        if key.contains('/') {
            return Err(SignatureError::KeyNameWithSlash(key.to_string()));
        }
        if e.size() > MAX_SIG {
            continue;
        }
        let mut sig = Vec::new();
        e.read_to_end(&mut sig)
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        out.push(SigEntry {
            alg: alg.to_string(),
            key: key.to_string(),
            sig,
        });
    }
    Ok(out)
}

/// Verifies `signed` against the entries: Ok with the key name of the first valid
/// signature by a trusted key.
pub fn verify(
    entries: &[SigEntry],
    signed: &[u8],
    keys: &Keyring,
) -> Result<String, SignatureError> {
    if entries.is_empty() {
        return Err(SignatureError::Unsigned);
    }
    let mut untrusted = Vec::new();
    let mut bad = None;
    for e in entries {
        let Some(key) = keys.keys.get(&e.key) else {
            untrusted.push(e.key.clone());
            continue;
        };
        let ok = match e.alg.as_str() {
            "RSA" => key.verify(
                Pkcs1v15Sign::new::<sha1::Sha1>(),
                &sha1::Sha1::digest(signed),
                &e.sig,
            ),
            "RSA256" => key.verify(
                Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(signed),
                &e.sig,
            ),
            "RSA512" => key.verify(
                Pkcs1v15Sign::new::<sha2::Sha512>(),
                &sha2::Sha512::digest(signed),
                &e.sig,
            ),
            _ => continue,
        };
        match ok {
            Ok(()) => return Ok(e.key.clone()),
            Err(_) => bad = Some(e.key.clone()),
        }
    }
    if let Some(k) = bad {
        return Err(SignatureError::Bad(k));
    }
    if untrusted.is_empty() {
        return Err(SignatureError::Malformed(
            "no signature with a supported algorithm (RSA, RSA256, RSA512)".into(),
        ));
    }
    Err(SignatureError::Untrusted {
        keys: untrusted.join(", "),
    })
}

/// Splits a signed file into its signature entries and the signed rest, and verifies.
/// Returns the trusted key's name and the signed bytes.
pub fn verify_file<'a>(
    data: &'a [u8],
    keys: &Keyring,
) -> Result<(String, &'a [u8]), SignatureError> {
    let (sig_tar, rest) = split_member(data, 1 << 20)
        .map_err(|e| SignatureError::Malformed(format!("not gzip: {e}")))?;
    let entries = read_entries(&sig_tar)?;
    let key = verify(&entries, rest, keys)?;
    Ok((key, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let k = Keyring::new();
        assert!(verify_file(b"", &k).is_err());
        assert!(verify_file(b"\x1f\x8b\x08\x00garbage", &k).is_err());
        assert!(matches!(
            verify(&[], b"x", &k),
            Err(SignatureError::Unsigned)
        ));
        let e = SigEntry {
            alg: "RSA".into(),
            key: "nobody.rsa.pub".into(),
            sig: vec![1, 2, 3],
        };
        assert!(matches!(
            verify(&[e], b"x", &k),
            Err(SignatureError::Untrusted { .. })
        ));
    }

    #[test]
    fn bad_pem_is_named() {
        let mut k = Keyring::new();
        let e = k.add_pem("x.rsa.pub", b"not a key").unwrap_err();
        assert!(e.to_string().starts_with("key x.rsa.pub:"));
    }
}
