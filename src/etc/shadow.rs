//! `/etc/shadow` (`name:hash:lastchg:min:max:warn:inactive:expire:`), edited
//! line-preservingly; new entries are appended.

/// `text` with a locked entry for `name` appended (unless present). `lastchg` is days since
/// the epoch, or `None` for an empty field (reproducible when no epoch is given).
pub fn add_locked(text: &str, name: &str, lastchg: Option<i64>) -> String {
    if text.lines().any(|l| l.split(':').next() == Some(name)) {
        return text.to_string();
    }
    let mut s = text.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    let day = lastchg.map(|d| d.to_string()).unwrap_or_default();
    s.push_str(&format!("{name}:!:{day}::::::\n"));
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn appends_once() {
        let t = super::add_locked("root:*:19000:0:99999:7:::\n", "sshd", Some(20000));
        assert_eq!(t, "root:*:19000:0:99999:7:::\nsshd:!:20000::::::\n");
        assert_eq!(super::add_locked(&t, "sshd", None), t);
    }
}

// Line-preserving editors (structured view), used by the apk installer and build.

/// A shadow file being edited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shadow {
    lines: Vec<String>,
}

/// A password hash that is not a SHA-512 crypt string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password hash is not SHA-512 crypt ($6$[rounds=N$]salt$86 characters); make one with `openssl passwd -6` or `mkpasswd -m sha-512`")]
pub struct BadHash;

fn crypt_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

/// Checks the shape of a SHA-512 crypt hash: `$6$[rounds=N$]salt$hash`.
pub fn check_sha512_crypt(hash: &str) -> Result<(), BadHash> {
    let rest = hash.strip_prefix("$6$").ok_or(BadHash)?;
    let mut parts: Vec<&str> = rest.split('$').collect();
    if parts.first().is_some_and(|p| p.starts_with("rounds=")) {
        let r = parts.remove(0);
        r["rounds=".len()..].parse::<u32>().map_err(|_| BadHash)?;
    }
    match parts.as_slice() {
        [salt, h] if salt.len() <= 16 && crypt_chars(salt) && h.len() == 86 && crypt_chars(h) => {
            Ok(())
        }
        _ => Err(BadHash),
    }
}

impl Shadow {
    /// Parses a shadow file (lines it cannot read are kept verbatim).
    pub fn parse(text: &str) -> Shadow {
        Shadow {
            lines: super::lines(text),
        }
    }

    /// The hash field of `user`.
    pub fn hash(&self, user: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(user)).then(|| f.next().unwrap_or(""))
        })
    }

    /// Sets `user`'s hash, adding an entry (`user:hash:0:::::`) if there is none.
    pub fn set_hash(&mut self, user: &str, hash: &str) {
        for line in &mut self.lines {
            let mut f: Vec<&str> = line.split(':').collect();
            if f.first() == Some(&user) && f.len() >= 2 {
                f[1] = hash;
                *line = f.join(":");
                return;
            }
        }
        self.lines.push(format!("{user}:{hash}:0:::::"));
    }

    /// Adds a locked entry for `user` unless one exists; returns true when added.
    pub fn ensure_locked(&mut self, user: &str) -> bool {
        if self.hash(user).is_some() {
            return false;
        }
        self.lines.push(format!("{user}:!::0:::::"));
        true
    }

    /// The file text.
    pub fn render(&self) -> String {
        super::join(&self.lines)
    }
}

#[cfg(test)]
mod editor_tests {
    use super::*;

    const H: &str = "$6$saltsalt$GgLoCr48LXJ0o20h8MffRKBXJXhD2Hks2CuBS9.rKFSypqBFmmArjC2z4qn1owpS2zaHL3hFcOeASgtMV85kN1";

    #[test]
    fn sets_root_hash_keeping_other_fields() {
        check_sha512_crypt(H).unwrap();
        let mut s = Shadow::parse("root:*::0:::::\nbin:!::0:::::\n");
        s.set_hash("root", H);
        assert_eq!(s.render(), format!("root:{H}::0:::::\nbin:!::0:::::\n"));
        assert_eq!(s.hash("root"), Some(H));
        s.set_hash("new", H);
        assert!(s.render().ends_with(&format!("new:{H}:0:::::\n")));
        assert!(s.ensure_locked("x"));
        assert!(!s.ensure_locked("x"));
    }

    #[test]
    fn hash_shapes() {
        assert!(check_sha512_crypt("$6$rounds=5000$abc$GgLoCr48LXJ0o20h8MffRKBXJXhD2Hks2CuBS9.rKFSypqBFmmArjC2z4qn1owpS2zaHL3hFcOeASgtMV85kN1").is_ok());
        for bad in ["", "x", "$1$a$b", "$6$salt$short", "$6$sa:lt$GgLoCr48LXJ0o20h8MffRKBXJXhD2Hks2CuBS9.rKFSypqBFmmArjC2z4qn1owpS2zaHL3hFcOeASgtMV85kN1"] {
            assert!(check_sha512_crypt(bad).is_err(), "{bad}");
        }
    }
}
