//! Maintainer-script effects, declaratively. rootsmith never runs package scripts; for the
//! packages that matter it applies what their `postinst` would have done as tree edits.
//! Everything else with a `postinst` is reported back so the caller can warn.
//!
//! openssh-server: `/etc/ssh/sshd_config` from `/usr/share/openssh/sshd_config` registered
//! with ucf (registry, hashfile, cache), and the `sshd` system user (`adduser --system`:
//! uid in 100–999, group nogroup, home `/run/sshd`, shell nologin) with a locked shadow
//! entry. No host keys: the VM's `/init` generates them per boot.
//!
//! ca-certificates: what its `postinst` and `update-ca-certificates` do — write
//! `/etc/ca-certificates.conf` listing every `*.crt` under `/usr/share/ca-certificates` (when
//! the base has none), then for every selected certificate (and every `*.crt` under
//! `/usr/local/share/ca-certificates`) a `/etc/ssl/certs/NAME.pem` symlink and its text in the
//! bundle `/etc/ssl/certs/ca-certificates.crt`, the file curl, OpenSSL and Python read. The
//! `openssl rehash` hash links (`XXXXXXXX.0`, for programs that only use a CA directory) are
//! not made.

use super::dpkg_db::md5_hex;
use crate::etc::{passwd, shadow};
use crate::tree::{Meta, Time, Tree, TreeError};

/// Packages whose scripts' effects are reproduced here.
pub const KNOWN: &[&str] = &["openssh-server", "ca-certificates"];

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
        "ca-certificates" => {
            update_ca_certificates(tree, time)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

const CERTS_DIR: &str = "/usr/share/ca-certificates";
const LOCAL_CERTS_DIR: &str = "/usr/local/share/ca-certificates";
const CERTS_CONF: &[u8] = b"/etc/ca-certificates.conf";
const ETC_CERTS: &str = "/etc/ssl/certs";

/// The header `dpkg-reconfigure ca-certificates` writes above the list.
const CONF_HEADER: &str = "\
# This file lists certificates that you wish to use or to ignore to be
# installed in /etc/ssl/certs.
# update-ca-certificates(8) will update /etc/ssl/certs by reading this file.
#
# This is autogenerated by dpkg-reconfigure ca-certificates.
# Certificates should be installed under /usr/share/ca-certificates
# and files with extension '.crt' is recognized as available certificates.
#
# line begins with # is comment.
# line begins with ! is certificate filename to be deselected.
#
";

/// Every regular `*.crt` file under `dir` (following no symlinks), as paths relative to it,
/// in byte order.
fn crt_files(tree: &Tree, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some(root) = tree.lookup(dir.as_bytes()) else {
        return out;
    };
    let mut stack = vec![(String::new(), root)];
    while let Some((rel, id)) = stack.pop() {
        let crate::tree::Kind::Dir(d) = &tree.inode(id).kind else {
            continue;
        };
        for (name, child) in d.entries() {
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let path = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            match &tree.inode(child).kind {
                crate::tree::Kind::Dir(_) => stack.push((path, child)),
                crate::tree::Kind::File(_) if path.ends_with(".crt") => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// The `/etc/ssl/certs` link name `update-ca-certificates` gives a certificate file.
fn pem_name(crt: &str) -> String {
    let base = crt.rsplit('/').next().unwrap_or(crt);
    let base = base.strip_suffix(".crt").unwrap_or(base);
    let mut s: String = base
        .chars()
        .map(|c| match c {
            ' ' | ',' => '_',
            '(' | ')' => '=',
            c => c,
        })
        .collect();
    s.push_str(".pem");
    s
}

/// `update-ca-certificates` as tree edits (see the module header).
fn update_ca_certificates(tree: &mut Tree, time: Time) -> Result<(), TreeError> {
    if tree.lookup(CERTS_CONF).is_none() {
        let mut conf = CONF_HEADER.to_string();
        for c in crt_files(tree, CERTS_DIR) {
            conf.push_str(&c);
            conf.push('\n');
        }
        tree.write_file(CERTS_CONF, conf.as_bytes(), Meta::new(0o644, time))?;
    }
    let conf = read_text(tree, CERTS_CONF);
    let mut certs: Vec<String> = conf
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(|l| format!("{CERTS_DIR}/{l}"))
        .collect();
    certs.extend(
        crt_files(tree, LOCAL_CERTS_DIR)
            .into_iter()
            .map(|c| format!("{LOCAL_CERTS_DIR}/{c}")),
    );
    let dir_meta = Meta::new(0o755, time);
    let etc = tree.mkdir_all(ETC_CERTS.as_bytes(), &dir_meta, crate::tree::Follow::Scoped)?;
    let mut bundle = Vec::new();
    for cert in &certs {
        let Ok(text) = tree.read_file(cert.as_bytes()) else {
            continue; // listed but missing: update-ca-certificates warns and skips it
        };
        bundle.extend_from_slice(&text);
        if !text.is_empty() && !text.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        let name = pem_name(cert);
        tree.remove(etc, name.as_bytes());
        tree.add(
            etc,
            name.as_bytes(),
            crate::tree::Inode::new(
                crate::tree::Kind::Symlink(cert.as_bytes().to_vec()),
                Meta::new(0o777, time),
            ),
        )?;
    }
    let bundle_path = format!("{ETC_CERTS}/ca-certificates.crt");
    tree.remove(etc, b"ca-certificates.crt");
    tree.write_file(bundle_path.as_bytes(), &bundle, Meta::new(0o644, time))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_names_follow_update_ca_certificates() {
        assert_eq!(pem_name("mozilla/ACCVRAIZ1.crt"), "ACCVRAIZ1.pem");
        assert_eq!(
            pem_name("mozilla/Certigna Root CA (2), Inc.crt"),
            "Certigna_Root_CA_=2=__Inc.pem"
        );
    }

    #[test]
    fn ca_certificates_bundle_links_and_conf() {
        let mut t = Tree::new();
        let m = || Meta::new(0o644, Time::secs(7));
        t.write_file(b"/usr/share/ca-certificates/mozilla/B b.crt", b"B", m())
            .unwrap();
        t.write_file(b"/usr/share/ca-certificates/mozilla/A.crt", b"A\n", m())
            .unwrap();
        t.write_file(b"/usr/share/ca-certificates/mozilla/readme", b"x", m())
            .unwrap();
        t.write_file(b"/usr/local/share/ca-certificates/corp.crt", b"C\n", m())
            .unwrap();
        assert!(apply(&mut t, "ca-certificates", Time::secs(7), None).unwrap());
        let conf = String::from_utf8(t.read_file(CERTS_CONF).unwrap()).unwrap();
        assert!(
            conf.ends_with("#\nmozilla/A.crt\nmozilla/B b.crt\n"),
            "{conf}"
        );
        assert_eq!(
            t.read_file(b"/etc/ssl/certs/ca-certificates.crt").unwrap(),
            b"A\nB\nC\n"
        );
        let link = t.lookup_nofollow(b"/etc/ssl/certs/B_b.pem").unwrap();
        assert!(matches!(&t.inode(link).kind,
            crate::tree::Kind::Symlink(s) if s == b"/usr/share/ca-certificates/mozilla/B b.crt"));
        assert!(t.lookup(b"/etc/ssl/certs/corp.pem").is_some());

        // A deselected certificate leaves the bundle on the next run; the conf is kept.
        let conf = conf.replace("mozilla/A.crt", "!mozilla/A.crt");
        t.write_file(CERTS_CONF, conf.as_bytes(), m()).unwrap();
        apply(&mut t, "ca-certificates", Time::secs(7), None).unwrap();
        assert_eq!(
            t.read_file(b"/etc/ssl/certs/ca-certificates.crt").unwrap(),
            b"B\nC\n"
        );
    }
}
