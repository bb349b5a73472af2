//! sshd settings. Where the distribution's `/etc/ssh/sshd_config` includes
//! `/etc/ssh/sshd_config.d/*.conf` before its own settings (Debian, Ubuntu, Alpine ≥ 3.17),
//! they go into a drop-in that sorts first (sshd keeps the first value it reads), and the
//! packaged file stays byte-identical; otherwise the main file is edited: the keys set here
//! are commented out where they appear before any `Match`, and the settings are put at the
//! top.

use crate::tree::{Meta, Time, Tree};

use super::{meta_or, put_file, read_text, OverlayError};

/// The main configuration file.
pub const MAIN: &str = "/etc/ssh/sshd_config";
/// The drop-in written when the main file includes the directory.
pub const DROP_IN: &str = "/etc/ssh/sshd_config.d/00-rootsmith.conf";

/// What to set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `PermitRootLogin`.
    pub permit_root_login: Option<String>,
    /// `PasswordAuthentication`.
    pub password_authentication: Option<bool>,
    /// `PubkeyAuthentication`.
    pub pubkey_authentication: Option<bool>,
    /// More lines, as given.
    pub extra: Vec<String>,
}

impl Settings {
    /// The `sshd_config` lines these settings make.
    pub fn lines(&self) -> Vec<String> {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut v = Vec::new();
        if let Some(p) = &self.permit_root_login {
            v.push(format!("PermitRootLogin {p}"));
        }
        if let Some(b) = self.password_authentication {
            v.push(format!("PasswordAuthentication {}", yn(b)));
        }
        if let Some(b) = self.pubkey_authentication {
            v.push(format!("PubkeyAuthentication {}", yn(b)));
        }
        v.extend(self.extra.iter().map(|l| l.trim().to_string()));
        v
    }
}

/// Where the settings went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Into [`DROP_IN`].
    DropIn,
    /// Into [`MAIN`].
    Main,
}

fn keyword(line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    Some(t.split([' ', '\t', '=']).next()?.to_ascii_lowercase())
}

/// True when `text` has an `Include` of the drop-in directory before any other directive.
fn includes_drop_ins_first(text: &str) -> bool {
    for line in text.lines() {
        let Some(k) = keyword(line) else { continue };
        if k == "include" {
            return line.contains("/etc/ssh/sshd_config.d/") || line.contains("sshd_config.d/");
        }
        return false;
    }
    false
}

/// Applies `s` to the tree. Fails when the image has no sshd configuration (no openssh).
pub fn apply(tree: &mut Tree, s: &Settings, time: Time) -> Result<Applied, OverlayError> {
    let lines = s.lines();
    let Some(main) = read_text(tree, MAIN) else {
        return Err(OverlayError::new(
            MAIN,
            "sshd settings were given but the image has no sshd_config: add openssh \
             (Alpine) or openssh-server (Debian, Ubuntu) to the packages",
        ));
    };
    if lines.is_empty() {
        return Ok(Applied::Main);
    }
    let header = "# Written by rootsmith from the recipe's [sshd] settings.\n";
    if includes_drop_ins_first(&main) {
        let body = format!("{header}{}\n", lines.join("\n"));
        put_file(tree, DROP_IN, body.as_bytes(), 0o644, (0, 0), time)?;
        return Ok(Applied::DropIn);
    }
    let ours: Vec<String> = lines.iter().filter_map(|l| keyword(l)).collect();
    let mut out = String::from(header);
    for l in &lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str("# End of rootsmith settings.\n");
    let mut in_match = false;
    for line in main.lines() {
        let k = keyword(line);
        if k.as_deref() == Some("match") {
            in_match = true;
        }
        match k {
            Some(k) if !in_match && ours.contains(&k) => {
                out.push_str("#(rootsmith) ");
                out.push_str(line);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    let meta = meta_or(tree, MAIN, Meta::new(0o644, time), time);
    tree.write_file(MAIN.as_bytes(), out.as_bytes(), meta)
        .map_err(|e| OverlayError::new(MAIN, e))?;
    Ok(Applied::Main)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_only() -> Settings {
        Settings {
            permit_root_login: Some("prohibit-password".into()),
            password_authentication: Some(false),
            pubkey_authentication: Some(true),
            extra: vec!["UseDNS no".into()],
        }
    }

    #[test]
    fn drop_in_when_included_first() {
        let mut t = Tree::new();
        let main = "# comment\nInclude /etc/ssh/sshd_config.d/*.conf\n\nPermitRootLogin yes\n";
        t.write_file(
            MAIN.as_bytes(),
            main.as_bytes(),
            Meta::new(0o644, Time::secs(1)),
        )
        .unwrap();
        assert_eq!(
            apply(&mut t, &key_only(), Time::secs(9)).unwrap(),
            Applied::DropIn
        );
        assert_eq!(read_text(&t, MAIN).unwrap(), main);
        let d = read_text(&t, DROP_IN).unwrap();
        assert!(d.contains("\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nPubkeyAuthentication yes\nUseDNS no\n"), "{d}");
    }

    #[test]
    fn main_file_edited_otherwise() {
        let mut t = Tree::new();
        let main = "Port 22\n#PermitRootLogin prohibit-password\nPasswordAuthentication yes\nMatch User x\n  PasswordAuthentication yes\n";
        t.write_file(
            MAIN.as_bytes(),
            main.as_bytes(),
            Meta::new(0o600, Time::secs(1)),
        )
        .unwrap();
        assert_eq!(
            apply(&mut t, &key_only(), Time::secs(9)).unwrap(),
            Applied::Main
        );
        let m = read_text(&t, MAIN).unwrap();
        assert!(m.starts_with("# Written by rootsmith"), "{m}");
        assert!(m.contains("\nPermitRootLogin prohibit-password\n"));
        assert!(m.contains("\n#(rootsmith) PasswordAuthentication yes\nMatch User x\n  PasswordAuthentication yes\n"), "{m}");
        assert!(t.lookup(DROP_IN.as_bytes()).is_none());
        let id = t.lookup(MAIN.as_bytes()).unwrap();
        assert_eq!(t.inode(id).meta.mode, 0o600);
        // An Include after other directives does not count.
        assert!(!includes_drop_ins_first(
            "Port 22\nInclude /etc/ssh/sshd_config.d/*.conf\n"
        ));
    }

    #[test]
    fn no_sshd_is_an_error() {
        let e = apply(&mut Tree::new(), &key_only(), Time::secs(1)).unwrap_err();
        assert!(e.to_string().contains("openssh-server"), "{e}");
    }
}
