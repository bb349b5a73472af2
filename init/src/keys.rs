//! SSH provisioning at boot: `*.authorized_key_b64=` from the command line into
//! `/root/.ssh/authorized_keys` (dir 0700, file 0600, root-owned), and per-VM host keys.
//!
//! The command-line keys are kept in a marked block of `authorized_keys` that is replaced on
//! every boot, so keys baked into the image stay and a key dropped from the command line is
//! removed again. Host keys: when no `/etc/ssh/ssh_host_*_key` exists, sshd's supervisor
//! runs `ssh-keygen` first (see `supervise`), so no two VMs from one image share a key and
//! PID 1 never blocks on the entropy the generation may wait for.

use crate::{info, warn};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;

const BEGIN: &str = "# >>> rootsmith: keys from the kernel command line (replaced at boot)";
const END: &str = "# <<< rootsmith";

/// Decode standard base64 (padding optional, whitespace ignored). `None` on a bad symbol.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut padding = false;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        if padding {
            return None; // data after '='
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

/// Decode one `*_b64` value into key lines. Errors name what is wrong, never the key.
pub fn decode_keys(b64: &str) -> Result<Vec<String>, String> {
    let raw = base64_decode(b64).ok_or("not valid base64")?;
    let text = String::from_utf8(raw).map_err(|_| "decoded value is not UTF-8 text")?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        return Err("decoded value holds no key".into());
    }
    if let Some(bad) = lines.iter().find(|l| !looks_like_key(l)) {
        return Err(format!(
            "decoded line is not an OpenSSH public key ({} bytes)",
            bad.len()
        ));
    }
    Ok(lines)
}

/// A public key line: `[options] type base64 [comment]` with a known key type.
fn looks_like_key(l: &str) -> bool {
    l.split_whitespace().any(|w| {
        w.starts_with("ssh-")
            || w.starts_with("ecdsa-sha2-")
            || w.starts_with("sk-ssh-")
            || w.starts_with("sk-ecdsa-")
    }) && !l.contains('\0')
}

/// Pure: `existing` with its rootsmith block replaced by `keys` (or removed when empty).
pub fn merge_authorized(existing: &str, keys: &[String]) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for l in existing.lines() {
        if l == BEGIN {
            in_block = true;
        } else if in_block && l == END {
            in_block = false;
        } else if !in_block {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !keys.is_empty() {
        out.push_str(BEGIN);
        out.push('\n');
        for k in keys {
            out.push_str(k);
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
    }
    out
}

/// Write the command-line keys. A bad value is logged and skipped; boot goes on.
pub fn install_authorized(values: &[String]) {
    let mut keys: Vec<String> = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match decode_keys(v) {
            Ok(ks) => keys.extend(
                ks.into_iter()
                    .filter(|k| !keys.contains(k))
                    .collect::<Vec<_>>(),
            ),
            Err(e) => warn!("authorized_key_b64 #{}: {e}; ignored", i + 1),
        }
    }
    let path = Path::new("/root/.ssh/authorized_keys");
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    if keys.is_empty() && !existing.contains(BEGIN) {
        return;
    }
    let r = (|| -> std::io::Result<()> {
        std::fs::create_dir_all("/root/.ssh")?;
        std::fs::set_permissions("/root/.ssh", std::fs::Permissions::from_mode(0o700))?;
        chown("/root/.ssh", Some(0), Some(0))?;
        let tmp = Path::new("/root/.ssh/.authorized_keys.rootsmith");
        std::fs::write(tmp, merge_authorized(&existing, &keys))?;
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600))?;
        chown(tmp, Some(0), Some(0))?;
        std::fs::rename(tmp, path)
    })();
    match r {
        Ok(()) => info!(
            "authorized_keys: {} key(s) from the command line",
            keys.len()
        ),
        Err(e) => warn!("write {}: {e}", path.display()),
    }
}

/// True when `/etc/ssh` holds at least one `ssh_host_*_key`.
pub fn have_host_key(etc_ssh: &Path) -> bool {
    std::fs::read_dir(etc_ssh).is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("ssh_host_") && n.ends_with("_key")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b64(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for ch in bytes.chunks(3) {
            let n = ch
                .iter()
                .enumerate()
                .fold(0u32, |a, (i, b)| a | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= ch.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    #[test]
    fn decodes_a_key() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq test@host\n";
        assert_eq!(
            decode_keys(&b64(key.as_bytes())),
            Ok(vec![key.trim().to_string()])
        );
        assert!(decode_keys("!!!").is_err());
        assert!(decode_keys(&b64(b"hello world")).is_err());
        assert!(decode_keys(&b64(&[0xff, 0xfe])).is_err());
    }

    #[test]
    fn merge_replaces_only_our_block() {
        let baked = "ssh-rsa AAAA baked\n";
        let once = merge_authorized(baked, &["ssh-ed25519 A one".into()]);
        assert!(once.starts_with(baked));
        let twice = merge_authorized(&once, &["ssh-ed25519 B two".into()]);
        assert!(!twice.contains("one") && twice.contains("two") && twice.starts_with(baked));
        assert_eq!(merge_authorized(&twice, &[]), baked);
    }

    proptest! {
        #[test]
        fn base64_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(base64_decode(&b64(&data)), Some(data));
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,100}") {
            let _ = decode_keys(&s);
        }

        #[test]
        fn merge_is_idempotent(existing in "[a-z \\n#]{0,100}", k in "ssh-ed25519 [A-Za-z0-9]{1,20}") {
            let once = merge_authorized(&existing, std::slice::from_ref(&k));
            prop_assert_eq!(merge_authorized(&once, &[k]), once);
        }
    }
}
