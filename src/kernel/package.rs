//! A distribution kernel package from the image's own apt repositories (the same sources,
//! keys and mirror override a `rootsmith build` uses): `linux-image-cloud-amd64` is a
//! metapackage, so the chain of `linux-image-*` dependencies is followed until a package
//! holds `/boot/vmlinuz-*`. Only that chain is fetched — never kmod, initramfs-tools or
//! anything else the kernel package depends on — each `.deb` verified against the signed
//! index and kept in the blob cache.
//!
//! What lands where: `/boot/vmlinuz-<release>` is returned (it becomes `vmlinux.bin`, not a
//! file of the rootfs); `/lib/modules/<release>/` goes into the tree with a generated
//! `modules.dep`; `/etc/rootsmith/kernel` records the package, version, `.deb` sha256 and
//! the modules the VM needs, and `/etc/rootsmith/modules` lists the network modules for
//! rootsmith-init to load at every boot (no `rootsmith.modules=` needed). **dpkg is left unaware**: the kernel package is not added to
//! `/var/lib/dpkg/status`, because its `Depends` (kmod, initramfs-tools) are deliberately
//! absent and recording it would leave the database with unmet dependencies (`apt-get
//! check` fails). The module files are unowned, which dpkg accepts when a kernel package is
//! later installed inside the VM.

use crate::cache::Cache;
use crate::digest::Digest;
use crate::fetch::{FetchError, Fetcher};
use crate::pkg::deb::{self, archive, packages, repo, sources, Available, DebOptions};
use crate::tree::path::{join, normalize};
use crate::tree::{Follow, Inode, Kind, Meta, Time, Tree, TreeError};

use super::modules::{self, Closure, ModuleError};

/// Most `linux-image-*` hops followed from the requested name.
const MAX_HOPS: usize = 4;
/// Where the provenance of the installed kernel is written in the image.
pub const PROVENANCE: &str = "/etc/rootsmith/kernel";
/// The modules rootsmith-init loads at every boot (virtio-net and its dependencies).
pub const MODULES_CONFIG: &str = "/etc/rootsmith/modules";

/// Why a kernel package could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KernelPackageError {
    /// Sources, indexes, downloads.
    #[error(transparent)]
    Deb(#[from] deb::DebError),
    /// The package is in no index.
    #[error("kernel package {0:?} is not in the image's apt repositories (check the name, e.g. linux-image-cloud-amd64, and the sources)")]
    NotFound(String),
    /// The chain ended without a kernel.
    #[error("kernel package {requested:?}: {last} holds no /boot/vmlinuz-* and depends on no linux-image-* package")]
    NoKernel {
        /// What was asked for.
        requested: String,
        /// The last package looked at.
        last: String,
    },
    /// The `.deb` cannot be read.
    #[error("{package}: {why}")]
    Archive {
        /// The package.
        package: String,
        /// What is wrong.
        why: String,
    },
    /// Modules.
    #[error(transparent)]
    Modules(#[from] ModuleError),
    /// Tree edits.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// What [`install`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelPackage {
    /// The name asked for.
    pub requested: String,
    /// The package that held the kernel.
    pub package: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its `.deb`.
    pub deb_sha256: String,
    /// The kernel release (`uname -r`).
    pub release: String,
    /// The bzImage (`/boot/vmlinuz-<release>`).
    #[serde(skip)]
    pub vmlinuz: Vec<u8>,
    /// Module files installed.
    pub modules: usize,
    /// Bytes of module files installed.
    pub module_bytes: u64,
    /// What the VM must load for networking (virtio-net over PCI), in order.
    pub network: Closure,
    /// What it must load to reach a virtio-blk root disk with ext4.
    pub root_disk: Closure,
    /// `.deb` bytes downloaded (0 when cached).
    pub downloaded: u64,
}

/// The kernel parts of one `.deb`'s data archive.
#[derive(Debug, Default)]
pub struct Parts {
    /// `(release, bytes)` of `boot/vmlinuz-<release>`.
    pub vmlinuz: Option<(String, Vec<u8>)>,
    /// Module files put into the tree.
    pub modules: usize,
    /// Their bytes.
    pub module_bytes: u64,
    /// Releases seen under `lib/modules`.
    pub releases: Vec<String>,
}

/// Reads a (compressed) `data.tar`: `boot/vmlinuz-*` into memory, `lib/modules/**` and
/// `usr/lib/modules/**` into `tree` (root-owned, parents through the tree's own symlinks,
/// so a merged-`/usr` base keeps its `/lib` link), everything else skipped. Times are
/// clamped to `clamp` when given.
pub fn extract_parts(tree: &mut Tree, data: &[u8], clamp: Option<Time>) -> Result<Parts, String> {
    let (_, reader) = crate::unpack::decompress(data).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(reader);
    let mut parts = Parts::default();
    for e in ar.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let raw = e.path_bytes().into_owned();
        let Some(names) = normalize(&raw) else {
            return Err(format!(
                "{}: path climbs out of the root",
                String::from_utf8_lossy(&raw)
            ));
        };
        let names: Vec<&[u8]> = names;
        let rest = match names.as_slice() {
            [b"boot", file] if file.starts_with(b"vmlinuz-") => {
                let release = String::from_utf8_lossy(&file[8..]).into_owned();
                let size = e.size();
                if size > super::bzimage::MAX_VMLINUX {
                    return Err(format!(
                        "/boot/vmlinuz-{release}: {size} bytes is too large"
                    ));
                }
                let mut b = Vec::with_capacity(size as usize);
                std::io::Read::read_to_end(&mut e, &mut b).map_err(|e| e.to_string())?;
                parts.vmlinuz = Some((release, b));
                continue;
            }
            [b"lib", b"modules", rest @ ..] | [b"usr", b"lib", b"modules", rest @ ..] => rest,
            _ => continue,
        };
        if let [release, ..] = rest {
            let r = String::from_utf8_lossy(release).into_owned();
            if !parts.releases.contains(&r) {
                parts.releases.push(r);
            }
        }
        let mut path = b"/lib/modules".to_vec();
        if !rest.is_empty() {
            path.extend_from_slice(&join(rest));
        }
        let h = e.header().clone();
        let mode = (h.mode().map_err(|x| x.to_string())? & 0o7777) as u16;
        let mut time = Time::secs(i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(0));
        if let Some(c) = clamp {
            time = time.clamp_to(c);
        }
        let meta = Meta::new(mode, time);
        let parent = Meta::new(0o755, time);
        let err = |x: TreeError| format!("{}: {x}", String::from_utf8_lossy(&raw));
        match h.entry_type() {
            tar::EntryType::Directory => {
                tree.mkdir_all(&path, &parent, Follow::Scoped)
                    .map_err(err)?;
                if let Some(id) = tree.lookup(&path) {
                    tree.inode_mut(id).meta = meta;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = e.size();
                let c = tree
                    .store_mut()
                    .ingest(&mut e, size)
                    .map_err(|x| x.to_string())?;
                tree.insert(
                    &path,
                    Inode::new(Kind::File(c), meta),
                    &parent,
                    Follow::Scoped,
                )
                .map_err(err)?;
                if modules::is_module_file(&String::from_utf8_lossy(&path)) {
                    parts.modules += 1;
                    parts.module_bytes += size;
                }
            }
            tar::EntryType::Symlink => {
                let t = e.link_name_bytes().ok_or("symlink without a target")?;
                tree.insert(
                    &path,
                    Inode::new(Kind::Symlink(t.into_owned()), Meta::new(0o777, time)),
                    &parent,
                    Follow::Scoped,
                )
                .map_err(err)?;
            }
            _ => {}
        }
    }
    Ok(parts)
}

/// The highest version of `name` for `arch` (or `all`).
fn candidate(avail: &[Available], name: &str, arch: &str) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, a) in avail.iter().enumerate() {
        if a.pkg.name != name || (a.pkg.arch != arch && a.pkg.arch != "all") {
            continue;
        }
        if best.is_none_or(|b| avail[b].pkg.version < a.pkg.version) {
            best = Some(i);
        }
    }
    best
}

/// The `linux-image-*` package a metapackage depends on (first alternative that has one).
pub fn next_image(p: &packages::Package) -> Option<String> {
    p.depends
        .iter()
        .flatten()
        .find(|a| a.name.starts_with("linux-image-") && a.name != p.name)
        .map(|a| a.name.clone())
}

fn fetch_deb(
    a: &Available,
    cache: &Cache,
    fetcher: &Fetcher,
    downloaded: &mut u64,
) -> Result<(Vec<u8>, Digest), deb::DebError> {
    let sha = a
        .pkg
        .sha256
        .ok_or_else(|| deb::DebError::Repo(repo::RepoError::NoHash(a.pkg.name.clone())))?;
    if cache.has_valid(&sha, a.pkg.size).unwrap_or(false) {
        if let Ok(b) = cache.read_blob(&sha, a.pkg.size) {
            return Ok((b, sha));
        }
    }
    let url = format!("{}/{}", a.base_uri.trim_end_matches('/'), a.pkg.filename);
    let b = fetcher
        .get_verified(&url, &sha, Some(a.pkg.size))
        .map_err(|e: FetchError| deb::DebError::Fetch(e))?;
    *downloaded += b.len() as u64;
    let _ = cache.put(sha, &b);
    Ok((b, sha))
}

/// Installs the kernel package `name` from the image's repositories: modules into `tree`
/// (with `modules.dep`), the bzImage returned. `opts` carries the sources, keys, mirror,
/// architecture and times exactly as for `deb::run` (its `packages` are ignored).
pub fn install(
    tree: &mut Tree,
    name: &str,
    opts: &DebOptions,
    cache: &Cache,
    fetcher: &Fetcher,
) -> Result<KernelPackage, KernelPackageError> {
    let status_text = tree
        .read_file(b"/var/lib/dpkg/status")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|_| deb::DebError::NotDebian)?;
    let status = packages::parse_all("/var/lib/dpkg/status", &status_text)
        .map_err(|e| deb::DebError::Status(e.to_string()))?;
    let arch = opts
        .arch
        .clone()
        .unwrap_or_else(|| deb::native_arch(&status));
    let repos = sources::repositories(tree, opts).map_err(deb::DebError::from)?;
    let mut downloaded = 0u64;
    let avail = repo::load_all(&repos, &arch, cache, fetcher, opts.now, &mut downloaded)
        .map_err(deb::DebError::from)?;
    let clamp = opts.epoch.map(Time::secs);
    let mut current = name.to_string();
    for _ in 0..MAX_HOPS {
        let i = candidate(&avail, &current, &arch)
            .ok_or_else(|| KernelPackageError::NotFound(current.clone()))?;
        let a = &avail[i];
        let (bytes, sha) = fetch_deb(a, cache, fetcher, &mut downloaded)?;
        let d = archive::read(&bytes).map_err(|e| KernelPackageError::Archive {
            package: current.clone(),
            why: e.to_string(),
        })?;
        let parts =
            extract_parts(tree, d.data, clamp).map_err(|why| KernelPackageError::Archive {
                package: current.clone(),
                why,
            })?;
        if let Some((release, vmlinuz)) = parts.vmlinuz {
            let time = clamp.unwrap_or(Time::secs(opts.now));
            let idx = modules::write_modules_dep(tree, &release, time)?;
            let network = idx.closure(modules::NETWORK);
            let root_disk = idx.closure(modules::ROOT_DISK);
            let k = KernelPackage {
                requested: name.to_string(),
                package: a.pkg.name.clone(),
                version: a.pkg.version.to_string(),
                deb_sha256: sha.hex(),
                release,
                vmlinuz,
                modules: parts.modules,
                module_bytes: parts.module_bytes,
                network,
                root_disk,
                downloaded,
            };
            tree.write_file(
                PROVENANCE.as_bytes(),
                provenance(&k).as_bytes(),
                Meta::new(0o644, time),
            )?;
            if !k.network.load.is_empty() {
                let text = format!(
                    "# loaded by rootsmith-init at boot, dependencies first ({})\n{}\n",
                    k.release,
                    k.network.load.join("\n")
                );
                tree.write_file(
                    MODULES_CONFIG.as_bytes(),
                    text.as_bytes(),
                    Meta::new(0o644, time),
                )?;
            }
            return Ok(k);
        }
        current = next_image(&a.pkg).ok_or_else(|| KernelPackageError::NoKernel {
            requested: name.to_string(),
            last: current.clone(),
        })?;
    }
    Err(KernelPackageError::NoKernel {
        requested: name.to_string(),
        last: current,
    })
}

/// `/etc/rootsmith/kernel`: `key=value` lines.
pub fn provenance(k: &KernelPackage) -> String {
    format!(
        "# Installed by rootsmith from the image's apt repositories; dpkg does not list it.\n\
         package={}\nversion={}\ndeb_sha256={}\nrelease={}\nrequested={}\n\
         network_modules={}\nroot_disk_modules={}\n",
        k.package,
        k.version,
        k.deb_sha256,
        k.release,
        k.requested,
        k.network.load.join(","),
        k.root_disk.load.join(","),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, body) in entries {
            let mut h = tar::Header::new_gnu();
            match body {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    h.set_mtime(2_000_000_000);
                    b.append_data(&mut h, p, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, p, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn takes_the_kernel_and_modules_only() {
        let ko = crate::kernel::elf::tests::build(&[(".modinfo", b"depends=\0")]);
        let tar = data_tar(&[
            ("./", None),
            ("./boot/", None),
            ("./boot/vmlinuz-6.1.0-9-cloud-amd64", Some(b"bzImage")),
            ("./boot/System.map-6.1.0-9-cloud-amd64", Some(b"map")),
            (
                "./lib/modules/6.1.0-9-cloud-amd64/kernel/drivers/virtio/virtio.ko",
                Some(&ko),
            ),
            (
                "./lib/modules/6.1.0-9-cloud-amd64/modules.builtin",
                Some(b"kernel/fs/ext4/ext4.ko\n"),
            ),
            ("./usr/share/doc/linux-image/changelog.gz", Some(b"x")),
        ]);
        let mut t = Tree::new();
        t.mkdir_all(
            b"/usr/lib",
            &Meta::new(0o755, Time::secs(0)),
            Follow::Scoped,
        )
        .unwrap();
        t.insert(
            b"/lib",
            Inode::new(
                Kind::Symlink(b"usr/lib".to_vec()),
                Meta::new(0o777, Time::secs(0)),
            ),
            &Meta::new(0o755, Time::secs(0)),
            Follow::Scoped,
        )
        .unwrap();
        let p = extract_parts(&mut t, &tar, Some(Time::secs(1_000))).unwrap();
        assert_eq!(
            p.vmlinuz,
            Some(("6.1.0-9-cloud-amd64".into(), b"bzImage".to_vec()))
        );
        assert_eq!(p.modules, 1);
        assert_eq!(p.releases, ["6.1.0-9-cloud-amd64"]);
        assert!(
            t.lookup(b"/boot").is_none(),
            "/boot stays out of the rootfs"
        );
        assert!(t.lookup(b"/usr/share/doc").is_none());
        // Merged /usr: the /lib link is kept, the files land under /usr/lib.
        assert!(matches!(
            t.inode(t.lookup_nofollow(b"/lib").unwrap()).kind,
            Kind::Symlink(_)
        ));
        let id = t
            .lookup(b"/usr/lib/modules/6.1.0-9-cloud-amd64/kernel/drivers/virtio/virtio.ko")
            .unwrap();
        assert_eq!(t.inode(id).meta.mtime, Time::secs(1_000));
        assert_eq!(t.inode(id).meta.uid, 0);
        let idx = modules::write_modules_dep(&mut t, "6.1.0-9-cloud-amd64", Time::secs(0)).unwrap();
        assert_eq!(idx.closure(&["ext4"]).builtin, ["ext4"]);
    }

    #[test]
    fn climbing_paths_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        // `append_data` refuses `..`; write the name by hand.
        h.as_old_mut().name[..22].copy_from_slice(b"lib/modules/../../../x");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut t = Tree::new();
        assert!(extract_parts(&mut t, &tar, None)
            .unwrap_err()
            .contains("climbs"));
    }

    #[test]
    fn metapackage_chain() {
        let p = packages::parse_all(
            "t",
            "Package: linux-image-cloud-amd64\nVersion: 6.1.192-2\nArchitecture: amd64\n\
             Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\n",
        )
        .unwrap();
        assert_eq!(
            next_image(&p[0]).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        let q = packages::parse_all(
            "t",
            "Package: linux-image-6.1.0-56-cloud-amd64\nVersion: 6.1.192-2\nArchitecture: amd64\n\
             Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\n",
        )
        .unwrap();
        assert_eq!(next_image(&q[0]), None);
    }
}
