//! The local half of `rootsmith build`: the recipe (or the inline one the flags describe)
//! with the command-line overrides applied, and every local input read and checked —
//! key files, the password, copied files, `/init`, the guest agent, a kernel file — before
//! anything touches the network. Errors name the flag or file concerned.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::build::kernel_package::PackageKernel;
use crate::build::{KernelSource, OverlayPlan};
use crate::digest::Digest;
use crate::kernel::KernelFormat;
use crate::oci::Platform;
use crate::overlay::accounts::{GroupSpec, UserSpec};
use crate::overlay::files::{FileOp, What};
use crate::overlay::sshd;
use crate::recipe::{self, FileKind, Kernel, Recipe, RootPassword, Size};

use super::build::BuildArgs;

/// A build's validated local inputs.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The effective recipe (overrides applied; a plain password replaced by its hash).
    pub recipe: Recipe,
    /// True when a recipe was named (false: inline `--base` build).
    pub from_recipe: bool,
    /// The base reference.
    pub base: String,
    /// The platform asked for.
    pub platform: Option<Platform>,
    /// The recipe as canonical JSON, with copied files' digests (a fingerprint input).
    pub canonical: serde_json::Value,
    /// The overlay to apply.
    pub overlay: OverlayPlan,
    /// Root's password hash.
    pub root_password_hash: Option<String>,
    /// `/init`'s digest.
    pub init_digest: Option<String>,
    /// The guest agent's digest.
    pub agent_digest: Option<String>,
    /// The kernel.
    pub kernel: Option<KernelSource>,
}

/// Where `rootsmith-init` is looked for, in order, after `--init` and `$ROOTSMITH_INIT`.
fn init_candidates() -> Vec<PathBuf> {
    let rel = "x86_64-unknown-linux-musl/release/rootsmith-init";
    let mut v = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            v.push(dir.join("rootsmith-init"));
            // target/debug/rootsmith → target/x86_64-unknown-linux-musl/release/…
            if let Some(target) = dir.parent() {
                v.push(target.join(rel));
                if let Some(t2) = target.parent() {
                    v.push(t2.join(rel));
                }
            }
        }
    }
    if let Some(t) = option_env!("CARGO_TARGET_DIR") {
        v.push(Path::new(t).join(rel));
    }
    v.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(rel),
    );
    v
}

/// The init binary: `--init`, `$ROOTSMITH_INIT`, or the first candidate that exists.
fn find_init(flag: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = flag {
        if !p.is_file() {
            bail!("--init {}: no such file", p.display());
        }
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("ROOTSMITH_INIT").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("ROOTSMITH_INIT={}: no such file", p.display());
        }
        return Ok(Some(p));
    }
    Ok(init_candidates().into_iter().find(|p| p.is_file()))
}

fn read_file(what: &str, p: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("{what} {}: cannot read the file", p.display()))
}

/// Reads the public keys in `p` (one per line; blank lines and comments skipped).
fn read_keys(p: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("--authorized-key {}: cannot read the file", p.display()))?;
    let mut keys = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        recipe::check_key(l)
            .map_err(|e| anyhow::anyhow!("--authorized-key {}:{}: {e}", p.display(), i + 1))?;
        keys.push(l.to_string());
    }
    if keys.is_empty() {
        bail!(
            "--authorized-key {}: no public key in the file",
            p.display()
        );
    }
    Ok(keys)
}

/// Builds the [`Spec`] from the arguments.
pub fn spec(args: &BuildArgs) -> anyhow::Result<Spec> {
    let from_recipe = args.recipe.is_some();
    let mut r = match &args.recipe {
        Some(name) => recipe::load(name)?,
        None => {
            if args.base.is_none() {
                bail!(
                    "give a recipe (a .toml file or one of: {}) or an inline one with --base REF",
                    recipe::builtin::names().join(", ")
                );
            }
            Recipe {
                name: "custom".into(),
                description: None,
                base: None,
                platform: None,
                packages: Vec::new(),
                hostname: None,
                size: Size::Auto,
                fstab: Vec::new(),
                authorized_keys: Vec::new(),
                root_password: None,
                sshd: None,
                files: Vec::new(),
                users: Vec::new(),
                groups: Vec::new(),
                kernel: None,
            }
        }
    };
    if let Some(n) = &args.name {
        let ok = !n.is_empty()
            && !n.starts_with('.')
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            bail!("--name {n:?}: use letters, digits, `-`, `_` and `.`");
        }
        r.name = n.clone();
    }
    if let Some(b) = &args.base {
        b.parse::<crate::oci::ImageRef>()
            .with_context(|| format!("--base {b}"))?;
        r.base = Some(b.clone());
    }
    let Some(base) = r.base.clone() else {
        bail!("the recipe names no base image: add base = \"REF\" or pass --base REF");
    };
    for p in &args.packages {
        if !r.packages.contains(p) {
            r.packages.push(p.clone());
        }
    }
    if let Some(s) = &args.size {
        r.size = s
            .parse::<Size>()
            .map_err(|e| anyhow::anyhow!("--size: {e}"))?;
    }
    let platform = match (&args.image.platform, &r.platform) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(p)) => Some(p.parse::<Platform>().context("recipe platform")?),
        (None, None) => None,
    };
    if let Some(p) = &platform {
        r.platform = Some(p.to_string());
    }
    for k in &args.authorized_keys {
        for key in read_keys(k)? {
            if !r.authorized_keys.contains(&key) {
                r.authorized_keys.push(key);
            }
        }
    }

    // Root's password: a flag wins over the recipe; clear text is hashed reproducibly.
    let password = match (&args.password_file, &args.password) {
        (Some(f), _) => {
            let text = std::fs::read_to_string(f).with_context(|| {
                format!("--password-file {}: cannot read the file", f.display())
            })?;
            let line = text.lines().next().unwrap_or("").to_string();
            if line.is_empty() {
                bail!("--password-file {}: the first line is empty", f.display());
            }
            Some(RootPassword::Plain(line))
        }
        (None, Some(p)) => Some(RootPassword::Plain(p.clone())),
        (None, None) => None,
    };
    let password = match &args.root_password_hash {
        Some(h) => {
            crate::etc::shadow::check_sha512_crypt(h).context("--root-password-hash")?;
            Some(RootPassword::Hash(h.clone()))
        }
        None => password.or(r.root_password.clone()),
    };
    let root_password_hash = match password {
        Some(RootPassword::Plain(p)) => Some(recipe::password::sha512_crypt(&p, &r.name)?),
        Some(RootPassword::Hash(h)) => Some(h),
        None => None,
    };
    r.root_password = root_password_hash.clone().map(RootPassword::Hash);

    let mut files = Vec::new();
    let mut copied = Vec::new();
    for f in &r.files {
        let what = match &f.kind {
            FileKind::CreateDir => What::Dir,
            FileKind::CreateFile(c) => What::File(c.clone().into_bytes()),
            FileKind::CopyFile(src) => {
                let b = std::fs::read(src).with_context(|| {
                    format!("recipe file {}: cannot read src {}", f.path, src.display())
                })?;
                copied.push(format!("{}:{}", f.path, Digest::of(&b).hex()));
                What::File(b)
            }
        };
        files.push(FileOp {
            path: f.path.clone(),
            what,
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
        });
    }

    // Kernel flags override the recipe's [kernel].
    if let Some(p) = &args.kernel_package {
        r.kernel = Some(Kernel::Package {
            package: p.clone(),
            format: None,
            initramfs: false,
        });
    }
    if args.kernel_format.is_some() || args.initramfs {
        match &mut r.kernel {
            Some(Kernel::Package {
                format, initramfs, ..
            }) => {
                if let Some(f) = &args.kernel_format {
                    f.parse::<KernelFormat>()
                        .map_err(|e| anyhow::anyhow!("--kernel-format: {e}"))?;
                    *format = Some(f.clone());
                }
                *initramfs |= args.initramfs;
            }
            _ => bail!(
                "--kernel-format and --initramfs apply to a kernel package: add --kernel-package NAME (or kernel.package in the recipe)"
            ),
        }
    }

    let init_path = find_init(args.init.as_deref())?;
    let init = match init_path {
        Some(p) => Some(read_file("--init", &p)?),
        None if from_recipe => bail!(
            "no /init binary: run `cargo build-init` in the rootsmith workspace, or pass --init FILE (or set ROOTSMITH_INIT)"
        ),
        None => None,
    };
    let agent = match &args.guest_agent {
        Some(p) => Some(read_file("--guest-agent", p)?),
        None => None,
    };
    let kernel = match &r.kernel {
        None => None,
        Some(Kernel::Url { url, sha256 }) => Some(KernelSource::Url {
            url: url.clone(),
            sha256: sha256.parse().context("kernel.sha256")?,
        }),
        Some(Kernel::Path(p)) => {
            let b = read_file("kernel.path", p)?;
            Some(KernelSource::Path {
                path: p.clone(),
                sha256: Digest::of(&b),
            })
        }
        Some(Kernel::Package {
            package,
            format,
            initramfs,
        }) => Some(KernelSource::Package(PackageKernel {
            name: package.clone(),
            format: match format {
                Some(f) => f
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("kernel.format: {e}"))?,
                None => KernelFormat::default(),
            },
            initramfs: *initramfs,
        })),
    };

    let overlay = OverlayPlan {
        init: init.clone(),
        agent: agent.clone(),
        sshd: r.sshd.as_ref().map(|s| sshd::Settings {
            permit_root_login: s.permit_root_login.clone(),
            password_authentication: s.password_authentication,
            pubkey_authentication: s.pubkey_authentication,
            extra: s.extra.clone(),
        }),
        authorized_keys: r.authorized_keys.clone(),
        hostname: r.hostname.clone(),
        fstab: r.fstab.clone(),
        files,
        groups: r
            .groups
            .iter()
            .map(|g| GroupSpec {
                name: g.name.clone(),
                gid: g.gid,
            })
            .collect(),
        users: r
            .users
            .iter()
            .map(|u| UserSpec {
                name: u.name.clone(),
                uid: u.uid,
                gid: u.gid,
                home: u.home.clone(),
                shell: u.shell.clone(),
                groups: u.groups.clone(),
                password_hash: u.password_hash.clone(),
            })
            .collect(),
    };
    let mut effective = r.clone();
    effective.description = None;
    let canonical = serde_json::json!({
        "recipe": effective,
        "copied": copied,
    });
    Ok(Spec {
        recipe: r,
        from_recipe,
        base,
        platform,
        canonical,
        overlay,
        root_password_hash,
        init_digest: init.as_deref().map(|b| Digest::of(b).hex()),
        agent_digest: agent.as_deref().map(|b| Digest::of(b).hex()),
        kernel,
    })
}
