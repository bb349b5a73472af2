//! Recipes: what an image contains, as a typed TOML file (`manifests/*.toml`, embedded in
//! the binary by [`builtin`]). Parsing is strict (`deny_unknown_fields` everywhere) and
//! everything that can be checked without the network is checked here, so a typo fails in
//! milliseconds with `FILE:LINE:COL: field `NAME`: what is wrong`.
//!
//! ```toml
//! name = "debian-ssh-key"
//! base = "debian:bookworm-slim"          # any transport: registry ref, oci:DIR[:TAG],
//! platform = "linux/amd64"               #   docker-archive:FILE, rootfs:FILE
//! packages = ["openssh-server"]
//! hostname = "smolvm"
//! size = "2G"                            # or "512M", or "auto"
//! fstab = ["/dev/vda / ext4 rw,relatime 0 1"]
//! authorized_keys = ["ssh-ed25519 AAAA... me@host"]
//! root_password_hash = "$6$..."          # or root_password = "plain" (hashed reproducibly)
//! [sshd]
//! permit_root_login = "prohibit-password"
//! password_authentication = false
//! pubkey_authentication = true
//! extra = ["UseDNS no"]
//! [[files]]
//! create-file = "/etc/motd"              # or create-dir = "/srv", or copy-file = "/x" + src
//! contents = "hello\n"
//! mode = "0644"
//! uid = 0
//! gid = 0
//! [[users]]
//! name = "app"
//! groups = ["wheel"]
//! [[groups]]
//! name = "app"
//! [kernel]
//! url = "https://..."                    # with sha256, or path = "vmlinux"
//! sha256 = "..."                         # or: package = "linux-image-cloud-amd64",
//!                                        #     format = "elf"|"bzimage", initramfs = true
//! ```

pub mod builtin;
pub mod password;
pub mod size;

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use size::Size;

/// Why a recipe was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// A recipe file that cannot be read.
    #[error("recipe {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Neither a file nor a built-in recipe.
    #[error("no recipe {name:?}: give a recipe file or one of: {}", builtin::names().join(", "))]
    Unknown {
        /// What was asked for.
        name: String,
    },
    /// A syntax, type or validation error at a place in the file.
    #[error("{file}:{line}:{column}: {}{why}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    At {
        /// The file (or `builtin:NAME`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field concerned, when known.
        field: Option<String>,
        /// What is wrong.
        why: String,
    },
    /// A whole-recipe problem.
    #[error("{file}: {why}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
}

// ---- the file as written -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: Option<Spanned<String>>,
    description: Option<String>,
    base: Option<Spanned<String>>,
    platform: Option<Spanned<String>>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
    hostname: Option<Spanned<String>>,
    size: Option<Spanned<String>>,
    #[serde(default)]
    fstab: Vec<String>,
    #[serde(default)]
    authorized_keys: Vec<Spanned<String>>,
    root_password: Option<String>,
    root_password_hash: Option<Spanned<String>>,
    sshd: Option<RawSshd>,
    #[serde(default)]
    files: Vec<Spanned<RawFile>>,
    #[serde(default)]
    users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    groups: Vec<Spanned<RawGroup>>,
    kernel: Option<Spanned<RawKernel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSshd {
    permit_root_login: Option<Spanned<String>>,
    password_authentication: Option<bool>,
    pubkey_authentication: Option<bool>,
    #[serde(default)]
    extra: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(rename = "create-file")]
    create_file: Option<String>,
    #[serde(rename = "create-dir")]
    create_dir: Option<String>,
    #[serde(rename = "copy-file")]
    copy_file: Option<String>,
    contents: Option<String>,
    src: Option<String>,
    mode: Option<Spanned<String>>,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    uid: Option<u32>,
    gid: Option<u32>,
    home: Option<String>,
    shell: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    password_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    gid: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    url: Option<String>,
    sha256: Option<Spanned<String>>,
    path: Option<String>,
    package: Option<String>,
    format: Option<Spanned<String>>,
    initramfs: Option<bool>,
}

// ---- the validated recipe ------------------------------------------------------------

/// Root's password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootPassword {
    /// In clear; hashed reproducibly at build time.
    Plain(String),
    /// Already a SHA-512 crypt hash.
    Hash(String),
}

/// sshd settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sshd {
    /// `PermitRootLogin`.
    pub permit_root_login: Option<String>,
    /// `PasswordAuthentication`.
    pub password_authentication: Option<bool>,
    /// `PubkeyAuthentication`.
    pub pubkey_authentication: Option<bool>,
    /// More `sshd_config` lines, as written.
    pub extra: Vec<String>,
}

/// What a file entry makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A regular file with these contents.
    CreateFile(String),
    /// A directory.
    CreateDir,
    /// A copy of a host file (resolved against the recipe's directory).
    CopyFile(PathBuf),
}

/// One file entry (vmdb2's `create-file`, `create-dir`, `copy-file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Absolute path in the image.
    pub path: String,
    /// What to make.
    pub kind: FileKind,
    /// Permission bits (default 0644 for files, 0755 for directories).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A user to create (when missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// uid (default: the first free from 1000).
    pub uid: Option<u32>,
    /// Primary gid (default: a group named like the user).
    pub gid: Option<u32>,
    /// Home directory (default `/home/NAME`).
    pub home: Option<String>,
    /// Login shell (default `/bin/sh`).
    pub shell: Option<String>,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// SHA-512 crypt hash (default: locked).
    pub password_hash: Option<String>,
}

/// A group to create (when missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Name.
    pub name: String,
    /// gid (default: the first free from 1000).
    pub gid: Option<u32>,
}

/// Where the kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    /// Downloaded and checked against a SHA-256.
    Url {
        /// The URL.
        url: String,
        /// Lower-case hex SHA-256.
        sha256: String,
    },
    /// A file on the host.
    Path(PathBuf),
    /// A distribution kernel package from the image's own repositories.
    Package {
        /// The package name.
        package: String,
        /// `elf` or `bzimage`.
        format: Option<String>,
        /// Also write `initrd.img` (the root disk's and network's modules).
        initramfs: bool,
    },
}

/// A validated recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipe {
    /// The image name (the SmolVM cache directory name).
    pub name: String,
    /// One line about it.
    pub description: Option<String>,
    /// Base image reference (any transport).
    pub base: Option<String>,
    /// `OS/ARCH[/VARIANT]`.
    pub platform: Option<String>,
    /// Packages to install.
    pub packages: Vec<String>,
    /// `/etc/hostname`.
    pub hostname: Option<String>,
    /// Image size.
    pub size: Size,
    /// `/etc/fstab` lines.
    pub fstab: Vec<String>,
    /// Keys for `/root/.ssh/authorized_keys`.
    pub authorized_keys: Vec<String>,
    /// Root's password.
    pub root_password: Option<RootPassword>,
    /// sshd settings.
    pub sshd: Option<Sshd>,
    /// Files to create or copy.
    pub files: Vec<FileEntry>,
    /// Users to create.
    pub users: Vec<User>,
    /// Groups to create.
    pub groups: Vec<Group>,
    /// The kernel to put beside the image.
    pub kernel: Option<Kernel>,
}

/// Values allowed for `PermitRootLogin`.
pub const PERMIT_ROOT_LOGIN: &[&str] = &[
    "yes",
    "no",
    "prohibit-password",
    "without-password",
    "forced-commands-only",
];

/// Loads `arg`: an existing file, else a built-in recipe name.
pub fn load(arg: &str) -> Result<Recipe, RecipeError> {
    let p = Path::new(arg);
    if p.is_file() || arg.ends_with(".toml") || arg.contains('/') {
        let text = std::fs::read_to_string(p).map_err(|source| RecipeError::Read {
            path: p.to_path_buf(),
            source,
        })?;
        let dir = p.parent().unwrap_or(Path::new("."));
        return parse(&p.display().to_string(), &text, dir);
    }
    match builtin::get(arg) {
        Some(text) => parse(&format!("builtin:{arg}"), text, Path::new(".")),
        None => Err(RecipeError::Unknown {
            name: arg.to_string(),
        }),
    }
}

/// 1-based line and column of byte `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Parses and validates recipe `text` (`file` names it in errors; `dir` resolves
/// `copy-file` sources and a relative `kernel.path`).
pub fn parse(file: &str, text: &str, dir: &Path) -> Result<Recipe, RecipeError> {
    let at = |span: Range<usize>, field: &str, why: String| {
        let (line, column) = line_col(text, span.start);
        RecipeError::At {
            file: file.to_string(),
            line,
            column,
            field: Some(field.to_string()),
            why,
        }
    };
    let raw: RawRecipe = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let (line, column) = line_col(text, span.start);
        let msg = e.message().trim().to_string();
        // Unknown fields name themselves; otherwise the key is on the error's line.
        let field = msg
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
            .map(str::to_string)
            .or_else(|| {
                let l = text.lines().nth(line - 1)?;
                let (k, _) = l.split_once('=')?;
                Some(k.trim().trim_matches('"').to_string()).filter(|k| !k.is_empty())
            });
        RecipeError::At {
            file: file.to_string(),
            line,
            column,
            field,
            why: msg,
        }
    })?;

    let name = match &raw.name {
        Some(n) => {
            let ok = !n.get_ref().is_empty()
                && n.get_ref().len() <= 128
                && n.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !n.get_ref().starts_with('.');
            if !ok {
                return Err(at(
                    n.span(),
                    "name",
                    format!(
                        "{:?} is not a usable image name: use letters, digits, `-`, `_` and `.`",
                        n.get_ref()
                    ),
                ));
            }
            n.get_ref().clone()
        }
        None => Path::new(file)
            .file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .trim_start_matches("builtin:")
                    .to_string()
            })
            .unwrap_or_else(|| "image".into()),
    };
    if let Some(b) = &raw.base {
        b.get_ref()
            .parse::<crate::oci::ImageRef>()
            .map_err(|e| at(b.span(), "base", e.to_string()))?;
    }
    if let Some(p) = &raw.platform {
        p.get_ref()
            .parse::<crate::oci::Platform>()
            .map_err(|e| at(p.span(), "platform", e.to_string()))?;
    }
    let mut packages = Vec::new();
    for p in &raw.packages {
        let ok = !p.get_ref().is_empty() && !p.get_ref().contains(char::is_whitespace);
        if !ok {
            return Err(at(
                p.span(),
                "packages",
                format!("{:?} is not a package name", p.get_ref()),
            ));
        }
        packages.push(p.get_ref().clone());
    }
    if let Some(h) = &raw.hostname {
        let v = h.get_ref();
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            && !v.starts_with('-');
        if !ok {
            return Err(at(
                h.span(),
                "hostname",
                format!("{v:?} is not a host name (letters, digits, `-`, `.`; at most 64)"),
            ));
        }
    }
    let size = match &raw.size {
        Some(s) => s
            .get_ref()
            .parse::<Size>()
            .map_err(|e| at(s.span(), "size", e))?,
        None => Size::Auto,
    };
    for k in &raw.authorized_keys {
        check_key(k.get_ref()).map_err(|e| at(k.span(), "authorized_keys", e))?;
    }
    let root_password = match (&raw.root_password, &raw.root_password_hash) {
        (Some(_), Some(h)) => {
            return Err(at(
                h.span(),
                "root_password_hash",
                "give root_password or root_password_hash, not both".into(),
            ))
        }
        (Some(p), None) => Some(RootPassword::Plain(p.clone())),
        (None, Some(h)) => {
            crate::etc::shadow::check_sha512_crypt(h.get_ref())
                .map_err(|e| at(h.span(), "root_password_hash", e.to_string()))?;
            Some(RootPassword::Hash(h.get_ref().clone()))
        }
        (None, None) => None,
    };
    let sshd = match &raw.sshd {
        None => None,
        Some(s) => {
            if let Some(p) = &s.permit_root_login {
                if !PERMIT_ROOT_LOGIN.contains(&p.get_ref().as_str()) {
                    return Err(at(
                        p.span(),
                        "sshd.permit_root_login",
                        format!(
                            "{:?} is not one of {}",
                            p.get_ref(),
                            PERMIT_ROOT_LOGIN.join(", ")
                        ),
                    ));
                }
            }
            for l in &s.extra {
                if l.get_ref().contains('\n') || l.get_ref().trim().is_empty() {
                    return Err(at(
                        l.span(),
                        "sshd.extra",
                        "each entry is one non-empty sshd_config line".into(),
                    ));
                }
            }
            Some(Sshd {
                permit_root_login: s.permit_root_login.as_ref().map(|p| p.get_ref().clone()),
                password_authentication: s.password_authentication,
                pubkey_authentication: s.pubkey_authentication,
                extra: s.extra.iter().map(|l| l.get_ref().clone()).collect(),
            })
        }
    };
    let mut files = Vec::new();
    for f in &raw.files {
        files.push(file_entry(f, dir).map_err(|(field, why)| at(f.span(), &field, why))?);
    }
    let mut users = Vec::new();
    for u in &raw.users {
        let r = u.get_ref();
        if !valid_account(&r.name) {
            return Err(at(
                u.span(),
                "users.name",
                format!("{:?} is not a user name", r.name),
            ));
        }
        if let Some(h) = &r.password_hash {
            crate::etc::shadow::check_sha512_crypt(h)
                .map_err(|e| at(u.span(), "users.password_hash", e.to_string()))?;
        }
        users.push(User {
            name: r.name.clone(),
            uid: r.uid,
            gid: r.gid,
            home: r.home.clone(),
            shell: r.shell.clone(),
            groups: r.groups.clone(),
            password_hash: r.password_hash.clone(),
        });
    }
    let mut groups = Vec::new();
    for g in &raw.groups {
        let r = g.get_ref();
        if !valid_account(&r.name) {
            return Err(at(
                g.span(),
                "groups.name",
                format!("{:?} is not a group name", r.name),
            ));
        }
        groups.push(Group {
            name: r.name.clone(),
            gid: r.gid,
        });
    }
    let kernel = match &raw.kernel {
        None => None,
        Some(k) => Some(kernel(k.get_ref(), dir).map_err(|(field, why)| {
            let span = match field.as_str() {
                "kernel.sha256" => k.get_ref().sha256.as_ref().map(|s| s.span()),
                "kernel.format" => k.get_ref().format.as_ref().map(|s| s.span()),
                _ => None,
            };
            at(span.unwrap_or(k.span()), &field, why)
        })?),
    };
    Ok(Recipe {
        name,
        description: raw.description.clone(),
        base: raw.base.as_ref().map(|b| b.get_ref().clone()),
        platform: raw.platform.as_ref().map(|p| p.get_ref().clone()),
        packages,
        hostname: raw.hostname.as_ref().map(|h| h.get_ref().clone()),
        size,
        fstab: raw.fstab.clone(),
        authorized_keys: raw
            .authorized_keys
            .iter()
            .map(|k| k.get_ref().trim().to_string())
            .collect(),
        root_password,
        sshd,
        files,
        users,
        groups,
        kernel,
    })
}

fn valid_account(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Checks one `authorized_keys` line (options are not supported: a key type comes first).
pub fn check_key(line: &str) -> Result<(), String> {
    let l = line.trim();
    let mut parts = l.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "{:?} is not a public key line (expected `TYPE BASE64 [COMMENT]`)",
            crate::recipe::shorten(l)
        ));
    };
    let known =
        kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-") || kind.starts_with("sk-");
    if !known || l.contains('\n') || blob.len() < 16 {
        return Err(format!(
            "{:?} is not a public key line (expected e.g. `ssh-ed25519 AAAA... me@host`)",
            crate::recipe::shorten(l)
        ));
    }
    Ok(())
}

/// The first 40 characters of `s`, for messages.
fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

fn parse_mode(s: &str) -> Result<u16, String> {
    let t = s.trim().trim_start_matches("0o");
    let ok = !t.is_empty() && t.len() <= 5 && t.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u16::from_str_radix(t, 8) {
        Ok(m) if ok && m <= 0o7777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode like \"0644\"")),
    }
}

fn image_path(p: &str, field: &str) -> Result<String, (String, String)> {
    let ok = p.starts_with('/') && !p.split('/').any(|c| c == "..") && !p.contains('\0');
    if !ok || p == "/" {
        return Err((
            field.to_string(),
            format!("{p:?} must be an absolute path in the image, without `..`"),
        ));
    }
    Ok(p.to_string())
}

fn file_entry(f: &Spanned<RawFile>, dir: &Path) -> Result<FileEntry, (String, String)> {
    let r = f.get_ref();
    let set = [&r.create_file, &r.create_dir, &r.copy_file]
        .iter()
        .filter(|x| x.is_some())
        .count();
    if set != 1 {
        return Err((
            "files".into(),
            "each [[files]] entry needs exactly one of create-file, create-dir, copy-file".into(),
        ));
    }
    let (path, kind, default_mode) = if let Some(p) = &r.create_file {
        if r.src.is_some() {
            return Err(("files.src".into(), "src goes with copy-file".into()));
        }
        let c = r.contents.clone().unwrap_or_default();
        (
            image_path(p, "files.create-file")?,
            FileKind::CreateFile(c),
            0o644,
        )
    } else if let Some(p) = &r.create_dir {
        if r.src.is_some() || r.contents.is_some() {
            return Err((
                "files.create-dir".into(),
                "a directory takes no contents or src".into(),
            ));
        }
        (
            image_path(p, "files.create-dir")?,
            FileKind::CreateDir,
            0o755,
        )
    } else {
        let p = r.copy_file.as_deref().unwrap_or_default();
        let Some(src) = &r.src else {
            return Err((
                "files.src".into(),
                "copy-file needs src = \"HOST-FILE\" (relative to the recipe)".into(),
            ));
        };
        if r.contents.is_some() {
            return Err((
                "files.contents".into(),
                "contents goes with create-file".into(),
            ));
        }
        (
            image_path(p, "files.copy-file")?,
            FileKind::CopyFile(dir.join(src)),
            0o644,
        )
    };
    let mode = match &r.mode {
        Some(m) => parse_mode(m.get_ref()).map_err(|e| ("files.mode".to_string(), e))?,
        None => default_mode,
    };
    Ok(FileEntry {
        path,
        kind,
        mode,
        uid: r.uid.unwrap_or(0),
        gid: r.gid.unwrap_or(0),
    })
}

fn kernel(k: &RawKernel, dir: &Path) -> Result<Kernel, (String, String)> {
    if let Some(f) = &k.format {
        if !["elf", "bzimage"].contains(&f.get_ref().as_str()) {
            return Err((
                "kernel.format".into(),
                format!("{:?} is not elf or bzimage", f.get_ref()),
            ));
        }
    }
    if k.initramfs == Some(true) && k.package.is_none() {
        return Err((
            "kernel.initramfs".into(),
            "an initramfs is built from a kernel package's modules: set kernel.package".into(),
        ));
    }
    match (&k.url, &k.path, &k.package) {
        (Some(url), None, None) => {
            let Some(sha) = &k.sha256 else {
                return Err((
                    "kernel.sha256".into(),
                    "a kernel url needs sha256 = \"HEX\" to check the download against".into(),
                ));
            };
            let s = sha.get_ref().to_ascii_lowercase();
            if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err((
                    "kernel.sha256".into(),
                    format!("{:?} is not 64 hex digits", sha.get_ref()),
                ));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "kernel.url".into(),
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
            Ok(Kernel::Url {
                url: url.clone(),
                sha256: s,
            })
        }
        (None, Some(p), None) => Ok(Kernel::Path(dir.join(p))),
        (None, None, Some(p)) => Ok(Kernel::Package {
            package: p.clone(),
            format: k.format.as_ref().map(|f| f.get_ref().clone()),
            initramfs: k.initramfs.unwrap_or(false),
        }),
        _ => Err((
            "kernel".into(),
            "give exactly one of url (with sha256), path or package".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Recipe, RecipeError> {
        parse("t.toml", text, Path::new("/r"))
    }

    #[test]
    fn every_shipped_manifest_parses() {
        for name in builtin::names() {
            let r = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.name, name);
            assert!(r.base.is_some(), "{name}");
            assert_eq!(r.hostname.as_deref(), Some("smolvm"), "{name}");
            let s = r.sshd.expect("sshd settings");
            if name == "alpine-ssh" {
                assert_eq!(s.permit_root_login.as_deref(), Some("yes"));
                assert_eq!(s.password_authentication, Some(true));
                assert!(r.root_password.is_some());
            } else {
                assert_eq!(s.permit_root_login.as_deref(), Some("prohibit-password"));
                assert_eq!(s.password_authentication, Some(false));
                assert_eq!(s.pubkey_authentication, Some(true));
            }
            if name.ends_with("-minimal") {
                assert_eq!(r.packages.len(), 1, "{name}");
            } else {
                assert_eq!(r.packages.len(), 6, "{name}");
            }
        }
        assert!(builtin::names().len() >= 7);
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let e = p(
            "name = \"x\"\n\n[sshd]\npermit_root_login = \"no\"\npasword_authentication = false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("t.toml:5:"), "{e}");
        assert!(e.contains("field `pasword_authentication`"), "{e}");
        let e = p("name = \"x\"\ncolour = 1\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:2:1: field `colour`"), "{e}");
        let e = p("[[files]]\ncreate-file = \"/a\"\nowner = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:3:") && e.contains("`owner`"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = p("size = \"lots\"\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:1:8: field `size`: bad size"), "{e}");
        let e = p("name = \"x\"\nsize = \"512\"\n").unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml:2:") && e.contains("give a unit"),
            "{e}"
        );
        let e = p("packages = 3\n").unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml:1:") && e.contains("`packages`"),
            "{e}"
        );
        let e = p("[sshd]\npermit_root_login = \"maybe\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:2:") && e.contains("permit_root_login"),
            "{e}"
        );
        let e = p("base = \"oci:\"\n").unwrap_err().to_string();
        assert!(e.contains("field `base`"), "{e}");
        let e = p("[[files]]\ncreate-file = \"/a\"\nmode = \"0999\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("files.mode") && e.contains("octal"), "{e}");
        let e = p("[[files]]\ncreate-file = \"../a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute path"), "{e}");
        let e = p("[kernel]\nurl = \"https://k\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kernel.sha256"), "{e}");
        let e = p("[kernel]\npath = \"vmlinux\"\ninitramfs = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kernel.initramfs") && e.contains("kernel.package"),
            "{e}"
        );
        let e = p("[kernel]\npackage = \"linux-image-cloud-amd64\"\nformat = \"pe\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kernel.format"), "{e}");
        assert_eq!(
            p("[kernel]\npackage = \"linux-image-cloud-amd64\"\nformat = \"elf\"\ninitramfs = true\n")
                .unwrap()
                .kernel,
            Some(Kernel::Package {
                package: "linux-image-cloud-amd64".into(),
                format: Some("elf".into()),
                initramfs: true
            })
        );
        let e = p("authorized_keys = [\"hello\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("authorized_keys") && e.contains("public key"),
            "{e}"
        );
    }

    #[test]
    fn full_recipe_validates() {
        let r = p(r#"
name = "demo"
base = "oci:/l:1"
platform = "linux/arm64"
packages = ["a", "b"]
size = "1G"
fstab = ["/dev/vda / ext4 rw 0 1"]
authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI me"]
root_password = "pw"
[sshd]
extra = ["UseDNS no"]
[[files]]
create-dir = "/srv"
[[files]]
copy-file = "/usr/local/bin/x"
src = "x.sh"
mode = "0755"
uid = 1
gid = 2
[[users]]
name = "app"
groups = ["wheel"]
[[groups]]
name = "app"
gid = 1000
[kernel]
path = "vmlinux"
"#)
        .unwrap();
        assert_eq!(r.size, Size::Bytes(1 << 30));
        assert_eq!(r.files[0].mode, 0o755);
        assert_eq!(
            r.files[1].kind,
            FileKind::CopyFile(PathBuf::from("/r/x.sh"))
        );
        assert_eq!(
            (r.files[1].mode, r.files[1].uid, r.files[1].gid),
            (0o755, 1, 2)
        );
        assert_eq!(r.kernel, Some(Kernel::Path("/r/vmlinux".into())));
        assert_eq!(r.root_password, Some(RootPassword::Plain("pw".into())));
        assert_eq!(p("").unwrap().name, "t");
    }

    #[test]
    fn unknown_recipe_lists_the_builtins() {
        let e = load("no-such-recipe").unwrap_err().to_string();
        assert!(e.contains("debian-ssh-key"), "{e}");
    }
}
