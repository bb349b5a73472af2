//! Maintainer-script effects, declaratively. rootsmith never runs package scripts; for the
//! packages that matter it applies what their `postinst` would have done as tree edits.
//! Everything else with a `postinst` is reported back so the caller can warn.
//!
//! openssh-server: `/etc/ssh/sshd_config` from `/usr/share/openssh/sshd_config` registered
//! with ucf (registry, hashfile, cache), and the `sshd` system user (`adduser --system`:
//! uid in 100–999, group nogroup, home `/run/sshd`, shell nologin) with a locked shadow
//! entry. No host keys: the VM's `/init` generates them per boot.

use super::dpkg_db::md5_hex;
use crate::etc::{passwd, shadow};
use crate::tree::{Meta, Time, Tree, TreeError};

/// Packages whose scripts' effects are reproduced here.
pub const KNOWN: &[&str] = &["openssh-server"];

fn read_text(tree: &Tree, path: &[u8]) -> String {
    tree.read_file(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn append_line(
    tree: &mut Tree,
    path: &[u8],
    line: &str,
    mode: u16,
    time: Time,
) -> Result<(), TreeError> {
    let mut t = read_text(tree, path);
    if t.lines().any(|l| l == line) {
        return Ok(());
    }
    if !t.is_empty() && !t.ends_with('\n') {
        t.push('\n');
    }
    t.push_str(line);
    t.push('\n');
    let meta = match tree.lookup(path) {
        Some(id) => tree.inode(id).meta.clone(),
        None => Meta::new(mode, time),
    };
    tree.write_file(path, t.as_bytes(), meta)?;
    Ok(())
}

/// Adds a system user like `adduser --system --no-create-home --home HOME --shell SHELL
/// NAME` (primary group nogroup). Returns the uid (the existing one if present).
pub fn add_system_user(
    tree: &mut Tree,
    name: &str,
    home: &str,
    shell: &str,
    time: Time,
    epoch_days: Option<i64>,
) -> Result<u32, TreeError> {
    let pw = read_text(tree, b"/etc/passwd");
    let ents = passwd::entries(&pw);
    if let Some(e) = ents.iter().find(|e| e.name == name) {
        return Ok(e.uid);
    }
    let uid = passwd::first_free(ents.iter().map(|e| e.uid), 100..=999).unwrap_or(999);
    let gid =
        crate::etc::group::gid_of(&read_text(tree, b"/etc/group"), "nogroup").unwrap_or(65534);
    let e = passwd::PasswdEntry {
        name: name.into(),
        uid,
        gid,
        gecos: String::new(),
        home: home.into(),
        shell: shell.into(),
    };
    let meta = tree
        .lookup(b"/etc/passwd")
        .map_or(Meta::new(0o644, time), |id| tree.inode(id).meta.clone());
    tree.write_file(b"/etc/passwd", passwd::add(&pw, &e).as_bytes(), meta)?;
    let sh = read_text(tree, b"/etc/shadow");
    let meta = tree
        .lookup(b"/etc/shadow")
        .map_or(Meta::new(0o640, time).owned(0, 42), |id| {
            tree.inode(id).meta.clone()
        });
    tree.write_file(
        b"/etc/shadow",
        shadow::add_locked(&sh, name, epoch_days).as_bytes(),
        meta,
    )?;
    Ok(uid)
}

/// Applies the known effects of `package`; returns `false` when none are known.
pub fn apply(
    tree: &mut Tree,
    package: &str,
    time: Time,
    epoch_days: Option<i64>,
) -> Result<bool, TreeError> {
    match package {
        "openssh-server" => {
            if tree.lookup(b"/etc/ssh/sshd_config").is_none() {
                if let Ok(cfg) = tree.read_file(b"/usr/share/openssh/sshd_config") {
                    tree.write_file(b"/etc/ssh/sshd_config", &cfg, Meta::new(0o644, time))?;
                    let sum = md5_hex(&cfg);
                    tree.write_file(
                        b"/var/lib/ucf/cache/:etc:ssh:sshd_config",
                        &cfg,
                        Meta::new(0o644, time),
                    )?;
                    append_line(
                        tree,
                        b"/var/lib/ucf/hashfile",
                        &format!("{sum}  /etc/ssh/sshd_config"),
                        0o644,
                        time,
                    )?;
                    append_line(
                        tree,
                        b"/var/lib/ucf/registry",
                        "openssh-server \t /etc/ssh/sshd_config",
                        0o644,
                        time,
                    )?;
                }
            }
            add_system_user(
                tree,
                "sshd",
                "/run/sshd",
                "/usr/sbin/nologin",
                time,
                epoch_days,
            )?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
