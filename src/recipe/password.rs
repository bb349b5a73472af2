//! Root passwords as SHA-512 crypt hashes (`$6$salt$hash`, what `/etc/shadow` and
//! `openssl passwd -6` use). The salt is derived from the password and a context string
//! (the recipe name) instead of drawn at random, so a build reproduces byte for byte; two
//! images with different names still get different hashes.

use crate::digest::Digest;

/// The crypt alphabet (`./0-9A-Za-z`).
const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a password cannot be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the root password: {0}")]
pub struct HashError(String);

/// The 16-character salt for `password` in `context`.
pub fn salt(password: &str, context: &str) -> String {
    let mut input = b"rootsmith-salt\0".to_vec();
    input.extend_from_slice(context.as_bytes());
    input.push(0);
    input.extend_from_slice(password.as_bytes());
    Digest::of(&input).0[..16]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect()
}

/// `password` as a SHA-512 crypt hash with the derived salt (5000 rounds, the default).
pub fn sha512_crypt(password: &str, context: &str) -> Result<String, HashError> {
    let salt = salt(password, context);
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|e| HashError(format!("{e:?}")))?;
    let hash = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|e| HashError(format!("{e:?}")))?;
    Ok(format!("$6${salt}${hash}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_glibc_crypt() {
        // `openssl passwd -6 -salt saltsalt smolvm` (the same algorithm as glibc crypt).
        let params = sha_crypt::Sha512Params::new(5000).unwrap();
        let h = sha_crypt::sha512_crypt_b64(b"smolvm", b"saltsalt", &params).unwrap();
        assert_eq!(
            format!("$6$saltsalt${h}"),
            "$6$saltsalt$iUDUdYksx/Wp5047Yei6vnFDDII63VAfPq56SkgZHyqmOUjW1eOV36uZXrThq.yQaaTxHAThs9ZfcUBcH8Fjd/"
        );
    }

    #[test]
    fn deterministic_and_checked() {
        let a = sha512_crypt("smolvm", "alpine-ssh").unwrap();
        assert_eq!(a, sha512_crypt("smolvm", "alpine-ssh").unwrap());
        assert_ne!(a, sha512_crypt("smolvm", "other").unwrap());
        crate::etc::shadow::check_sha512_crypt(&a).unwrap();
    }
}
