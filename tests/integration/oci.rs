//! Images from real servers on loopback: a real registry (Debian's docker-registry, started
//! with `../shared/fixtures/registry.sh`, once per test run) holding the base fixtures, an
//! htpasswd-protected registry on the same storage, and a fault-injecting proxy in front of
//! the registry. Trees are compared as listings (path, type, mode, owner, size, content hash,
//! link target, xattrs) against listings read straight from the fixture tarballs with the
//! `tar` crate, independently of rootsmith's unpacker.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rootsmith::cache::Cache;
use rootsmith::digest::Digest;
use rootsmith::oci::registry::{Event, PullPolicy, RegistryOptions};
use rootsmith::oci::{open_source, ImageRef, ImageSource, SourceOptions};
use rootsmith::tree::{Kind, Tree};
use rootsmith::unpack::{apply_layer, decompress, UnpackOptions};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
const BIN: &str = env!("CARGO_BIN_EXE_rootsmith");

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join("base").join(name)
}

const ALPINE: &str = "alpine-minirootfs-3.20.3-x86_64.tar.gz";
const ALPINE_ARM: &str = "alpine-minirootfs-3.20.3-aarch64.tar.gz";
const UBUNTU: &str = "ubuntu-noble-amd64.rootfs.tar.gz";
const DEBIAN_SLIM: &str = "debian-bookworm-slim-amd64.rootfs.tar.xz";
/// From `base/SOURCES.md`: same tarball + SOURCE_DATE_EPOCH=0 → same manifest.
const ALPINE_MANIFEST: &str =
    "sha256:4e4b2e0570819215922d48b788db4d5a43f5dedd2a34d2a4ad6a2a17d47c5a73";
const ALPINE_INDEX: &str =
    "sha256:779e411e1ef5b6727fde95c0296091a3d5649503e3f6f4f30b237d4b6e507eec";

// ---------------------------------------------------------------------------------------
// Skips and the shared registry

/// True when the test may skip for lack of `what` (never under CI=true).
fn skip(what: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {what}");
    }
    eprintln!("skipping: {what}");
    true
}

struct Registry {
    addr: String,
    dir: PathBuf,
    /// Manifest digests printed by registry.sh, by reference.
    pushed: HashMap<String, String>,
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(Path::new(FIXTURES).join("registry.sh"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Stops `cmd` (run with `sh -c`) once this test process has exited.
fn on_exit(cmd: &str) {
    let me = std::process::id();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; {cmd}"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// One registry per test run, holding every image the tests pull.
fn registry() -> Option<&'static Registry> {
    static REG: OnceLock<Result<Registry, String>> = OnceLock::new();
    let r = REG.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rootsmith-oci-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let addr = sh(&["start", dir.join("reg").to_str().unwrap(), "0"])?;
        on_exit(&format!(
            "{}/registry.sh stop {}/reg; rm -rf {}",
            FIXTURES,
            dir.display(),
            dir.display()
        ));
        let mut pushed = HashMap::new();
        let mut push = |args: &[&str]| -> Result<(), String> {
            let out = sh(args)?;
            let (r, d) = out
                .rsplit_once('@')
                .ok_or(format!("odd registry.sh output {out:?}"))?;
            pushed.insert(r.to_string(), d.to_string());
            Ok(())
        };
        let a = fixture(ALPINE);
        let a = a.to_str().unwrap();
        push(&["push-tar", a, &format!("{addr}/alpine:3.20.3")])?;
        push(&[
            "push-tar",
            a,
            &format!("{addr}/alpine-zstd:3.20.3"),
            "--zstd",
        ])?;
        let arm = format!("{}=linux/arm64/v8", fixture(ALPINE_ARM).display());
        push(&[
            "push-index",
            &format!("{addr}/alpine-multi:3.20.3"),
            &format!("{a}=linux/amd64"),
            &arm,
        ])?;
        // The same index converted by skopeo to a Docker manifest list of Docker schema 2
        // manifests (Docker media types for manifests, configs and layers).
        let o = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--multi-arch",
                "all",
                "--format",
                "v2s2",
            ])
            .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(format!("docker://{addr}/alpine-multi:3.20.3"))
            .arg(format!("docker://{addr}/alpine-docker:3.20.3"))
            .output()
            .map_err(|e| format!("skopeo: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "skopeo copy --format v2s2: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        push(&[
            "push-tar",
            fixture(UBUNTU).to_str().unwrap(),
            &format!("{addr}/ubuntu:noble"),
        ])?;
        // xz is recompressed: to zstd here, so both layer compressions meet a real distribution.
        push(&[
            "push-tar",
            fixture(DEBIAN_SLIM).to_str().unwrap(),
            &format!("{addr}/debian:bookworm-slim"),
            "--zstd",
        ])?;
        Ok(Registry { addr, dir, pushed })
    });
    match r {
        Ok(r) => Some(r),
        Err(e) => {
            skip(&format!("the test registry could not start (run as root or install docker-registry and skopeo): {e}"));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// Listings

/// One row per path: type, mode, owner, size, content hash or link target, hard-link
/// group (smallest path of the group), xattrs, mtime.
type Listing = BTreeMap<String, String>;

fn hex(b: &[u8]) -> String {
    Digest::of(b).hex()[..16].to_string()
}

fn xattr_text(x: &BTreeMap<String, Vec<u8>>) -> String {
    x.iter()
        .map(|(k, v)| format!("{k}={}", hex(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The listing of a tree (root excluded).
fn tree_listing(t: &Tree) -> Listing {
    let walk = t.walk();
    let mut group: HashMap<usize, String> = HashMap::new();
    for e in &walk {
        let p = String::from_utf8_lossy(&e.path).into_owned();
        let g = group.entry(e.id.index()).or_insert_with(|| p.clone());
        if p < *g {
            *g = p;
        }
    }
    let mut out = Listing::new();
    for e in walk.iter().skip(1) {
        let i = t.inode(e.id);
        let m = &i.meta;
        let what = match &i.kind {
            Kind::File(c) => {
                let data = t.store().read_all(c).unwrap();
                format!(
                    "file size={} sha={} group={}",
                    data.len(),
                    hex(&data),
                    group[&e.id.index()]
                )
            }
            Kind::Dir(_) => "dir".into(),
            Kind::Symlink(target) => format!("symlink -> {}", String::from_utf8_lossy(target)),
            Kind::CharDevice { major, minor } => format!("char {major}:{minor}"),
            Kind::BlockDevice { major, minor } => format!("block {major}:{minor}"),
            Kind::Fifo => "fifo".into(),
            Kind::Socket => "socket".into(),
        };
        out.insert(
            String::from_utf8_lossy(&e.path).into_owned(),
            format!(
                "{what} mode={:o} owner={}:{} mtime={} xattrs=[{}]",
                m.mode,
                m.uid,
                m.gid,
                m.mtime.sec,
                xattr_text(&m.xattrs)
            ),
        );
    }
    out
}

fn norm(p: &[u8]) -> String {
    let s = String::from_utf8_lossy(p);
    let parts: Vec<&str> = s
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The listing of a rootfs tarball, read with the `tar` crate alone.
fn tar_listing(path: &Path) -> Listing {
    let f = std::fs::File::open(path).unwrap();
    let (_, r) = decompress(f).unwrap();
    let mut ar = tar::Archive::new(r);
    let mut rows: Vec<(String, String, String)> = Vec::new(); // path, what-without-group, rest
    let mut links: Vec<(String, String)> = Vec::new();
    let mut files: HashMap<String, (u64, String)> = HashMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = norm(&e.path_bytes());
        if p == "/" {
            continue;
        }
        let mut xattrs = BTreeMap::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                if let Some(k) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(k.to_string(), x.value_bytes().to_vec());
                }
            }
        }
        let h = e.header().clone();
        let rest = format!(
            "mode={:o} owner={}:{} mtime={} xattrs=[{}]",
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
            xattr_text(&xattrs)
        );
        use tar::EntryType as T;
        let what = match h.entry_type() {
            T::Regular => {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                files.insert(p.clone(), (data.len() as u64, hex(&data)));
                "file".to_string()
            }
            T::Directory => "dir".into(),
            T::Symlink => format!(
                "symlink -> {}",
                String::from_utf8_lossy(&e.link_name_bytes().unwrap())
            ),
            T::Link => {
                links.push((p.clone(), norm(&e.link_name_bytes().unwrap())));
                continue;
            }
            T::Char => format!(
                "char {}:{}",
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap()
            ),
            T::Block => format!(
                "block {}:{}",
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap()
            ),
            T::Fifo => "fifo".into(),
            other => panic!("unexpected entry type {other:?} in {}", path.display()),
        };
        rows.push((p, what, rest));
    }
    // Hard-link groups: the target and every link to it.
    let mut group: HashMap<String, String> = HashMap::new();
    for (l, t) in &links {
        let g = [l, t]
            .into_iter()
            .chain(links.iter().filter(|(_, t2)| t2 == t).map(|(l2, _)| l2))
            .min()
            .unwrap()
            .clone();
        group.insert(l.clone(), g.clone());
        group.insert(t.clone(), g);
    }
    let mut out = Listing::new();
    let mut by_path: HashMap<String, String> = HashMap::new();
    for (p, what, rest) in rows {
        let row = if what == "file" {
            let (size, sha) = &files[&p];
            format!(
                "file size={size} sha={sha} group={} {rest}",
                group.get(&p).unwrap_or(&p)
            )
        } else {
            format!("{what} {rest}")
        };
        by_path.insert(p.clone(), row.clone());
        out.insert(p, row);
    }
    for (l, t) in links {
        out.insert(l, by_path[&t].clone());
    }
    out
}

fn assert_same(got: &Listing, want: &Listing, what: &str) {
    if got == want {
        return;
    }
    let mut diff = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => diff.push(format!("missing {p}: {w}")),
            Some(g) if g != w => diff.push(format!("differs {p}:\n   got  {g}\n   want {w}")),
            _ => {}
        }
    }
    for (p, g) in got {
        if !want.contains_key(p) {
            diff.push(format!("extra {p}: {g}"));
        }
    }
    panic!(
        "{what}: {} differences (first 20):\n{}",
        diff.len(),
        diff.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Pulling through the library

fn opts(platform: &str) -> SourceOptions {
    SourceOptions {
        platform: platform.parse().unwrap(),
        registry: RegistryOptions {
            backoff: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            retries: 3,
            ..RegistryOptions::default()
        },
    }
}

fn quiet(_: &Event) {}

/// Pulls `reference` into `cache` and applies it to a fresh tree.
fn pull_tree(
    reference: &str,
    cache: &Path,
    o: &SourceOptions,
) -> Result<(Tree, Box<dyn ImageSource>), String> {
    let r: ImageRef = reference.parse().map_err(|e| format!("{e}"))?;
    let cache = Cache::open(cache).map_err(|e| e.to_string())?;
    let src = open_source(&r, Some(&cache), o, &quiet).map_err(|e| e.to_string())?;
    let mut t = Tree::new();
    for (i, l) in src
        .image()
        .layers()
        .map_err(|e| e.to_string())?
        .iter()
        .enumerate()
    {
        let blob = src.open_layer(i).map_err(|e| e.to_string())?;
        apply_layer(&mut t, blob, l.diff_id, &UnpackOptions::default())
            .map_err(|e| e.to_string())?;
    }
    Ok((t, src))
}

fn listing_cache() -> &'static Mutex<HashMap<String, Listing>> {
    static L: OnceLock<Mutex<HashMap<String, Listing>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

fn fixture_listing(name: &str) -> Listing {
    if let Some(l) = listing_cache().lock().unwrap().get(name) {
        return l.clone();
    }
    let l = tar_listing(&fixture(name));
    listing_cache()
        .lock()
        .unwrap()
        .insert(name.to_string(), l.clone());
    l
}

#[test]
fn registry_pulls_by_tag_and_digest_give_the_fixture_trees() {
    let Some(reg) = registry() else { return };
    let cache = tempfile::tempdir().unwrap();
    let a = &reg.addr;
    let alpine = fixture_listing(ALPINE);
    assert_eq!(reg.pushed[&format!("{a}/alpine:3.20.3")], ALPINE_MANIFEST);
    assert_eq!(
        reg.pushed[&format!("{a}/alpine-multi:3.20.3")],
        ALPINE_INDEX
    );
    for (reference, platform, want, digest) in [
        (
            format!("{a}/alpine:3.20.3"),
            "linux/amd64",
            ALPINE,
            Some(ALPINE_MANIFEST),
        ),
        (
            format!("{a}/alpine@{ALPINE_MANIFEST}"),
            "linux/amd64",
            ALPINE,
            Some(ALPINE_MANIFEST),
        ),
        (
            format!("{a}/alpine-zstd:3.20.3"),
            "linux/amd64",
            ALPINE,
            None,
        ),
        (
            format!("{a}/alpine-multi:3.20.3"),
            "linux/amd64",
            ALPINE,
            Some(ALPINE_MANIFEST),
        ),
        (
            format!("{a}/alpine-multi:3.20.3"),
            "linux/arm64/v8",
            ALPINE_ARM,
            None,
        ),
        (
            format!("{a}/alpine-multi:3.20.3"),
            "linux/arm64",
            ALPINE_ARM,
            None,
        ),
        (
            format!("{a}/alpine-multi@{ALPINE_INDEX}"),
            "linux/arm64/v8",
            ALPINE_ARM,
            None,
        ),
        (
            format!("{a}/alpine-docker:3.20.3"),
            "linux/amd64",
            ALPINE,
            None,
        ),
        (
            format!("{a}/alpine-docker:3.20.3"),
            "linux/arm64/v8",
            ALPINE_ARM,
            None,
        ),
        (format!("{a}/ubuntu:noble"), "linux/amd64", UBUNTU, None),
        (
            format!("{a}/debian:bookworm-slim"),
            "linux/amd64",
            DEBIAN_SLIM,
            None,
        ),
    ] {
        let (t, src) = pull_tree(&reference, cache.path(), &opts(platform))
            .unwrap_or_else(|e| panic!("{reference} {platform}: {e}"));
        let want_l = if want == ALPINE {
            alpine.clone()
        } else {
            fixture_listing(want)
        };
        assert_same(
            &tree_listing(&t),
            &want_l,
            &format!("{reference} for {platform}"),
        );
        if let Some(d) = digest {
            assert_eq!(src.image().digest.to_string(), d, "{reference}");
        }
        if reference.contains("alpine-multi") {
            assert_eq!(
                src.image().index_digest.map(|d| d.to_string()).as_deref(),
                Some(ALPINE_INDEX)
            );
        }
        assert_eq!(
            src.image().config.config.as_ref().unwrap().cmd.as_deref(),
            Some(&["/bin/sh".to_string()][..])
        );
    }
    // By digest: the zstd image, and the arm64 manifest out of the index (in a fresh
    // cache, so nothing comes from the tag pulls above).
    let fresh = tempfile::tempdir().unwrap();
    let zstd = &reg.pushed[&format!("{a}/alpine-zstd:3.20.3")];
    let (t, _) = pull_tree(
        &format!("{a}/alpine-zstd@{zstd}"),
        fresh.path(),
        &opts("linux/amd64"),
    )
    .unwrap();
    assert_same(&tree_listing(&t), &alpine, "alpine-zstd by digest");
    // A arm64-only manifest by digest for amd64 names what is there.
    let arm = pull_tree(
        &format!("{a}/alpine-multi:3.20.3"),
        cache.path(),
        &opts("linux/arm64"),
    )
    .unwrap()
    .1
    .image()
    .digest;
    let e = pull_tree(
        &format!("{a}/alpine-multi@{arm}"),
        cache.path(),
        &opts("linux/amd64"),
    )
    .err()
    .unwrap();
    assert!(e.contains("linux/arm64/v8"), "{e}");
    let (t, _) = pull_tree(
        &format!("{a}/alpine-multi@{arm}"),
        fresh.path(),
        &opts("linux/arm64/v8"),
    )
    .unwrap();
    assert_same(
        &tree_listing(&t),
        &fixture_listing(ALPINE_ARM),
        "arm64 manifest by digest",
    );
    // An index without the platform lists the platforms it has.
    let e = pull_tree(
        &format!("{a}/alpine-multi:3.20.3"),
        cache.path(),
        &opts("linux/riscv64"),
    )
    .err()
    .unwrap();
    assert!(e.contains("available: linux/amd64, linux/arm64/v8"), "{e}");
    let e = pull_tree(&format!("{a}/nope:1"), cache.path(), &opts("linux/amd64"))
        .err()
        .unwrap();
    assert!(e.contains("not found"), "{e}");
    assert_eq!(
        std::fs::read_dir(cache.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn cli_pull_prints_the_digest_and_mkfs_and_export_use_the_cache() {
    let Some(reg) = registry() else { return };
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let reference = format!("{}/alpine:3.20.3", reg.addr);
    let run = |args: &[&str]| {
        let o = Command::new(BIN)
            .args(args)
            .env("ROOTSMITH_CACHE", cache.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    // First pull: JSON events for each blob, then the result.
    let json = run(&["pull", "--json", "--platform", "linux/amd64", &reference]);
    let events: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "blob_start",
            "blob_done",
            "resolved",
            "blob_start",
            "blob_done",
            "pulled"
        ],
        "{json}"
    );
    assert_eq!(events[4]["cached"], false);
    let last = events.last().unwrap();
    assert_eq!(last["digest"], ALPINE_MANIFEST);
    assert_eq!(last["platform"], "linux/amd64");
    assert_eq!(last["config"]["Cmd"][0], "/bin/sh");
    // Second pull: from the cache, the digest on stdout.
    assert_eq!(run(&["pull", &reference]).trim(), ALPINE_MANIFEST);
    // Offline from here: the tag resolves from the cache.
    let tar = out.path().join("alpine.tar");
    run(&[
        "export",
        "--pull",
        "never",
        &reference,
        "--tar",
        tar.to_str().unwrap(),
    ]);
    assert_same(&tar_listing(&tar), &fixture_listing(ALPINE), "exported tar");
    let img = out.path().join("alpine.ext4");
    run(&[
        "mkfs",
        "--from-image",
        &reference,
        "--pull",
        "never",
        "-q",
        img.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&img).unwrap().len() > 8 << 20);
    match Command::new("e2fsck").args(["-fn"]).arg(&img).output() {
        Ok(o) => assert!(
            o.status.success(),
            "e2fsck: {}",
            String::from_utf8_lossy(&o.stdout)
        ),
        Err(_) => {
            skip("e2fsck missing (apt-get install e2fsprogs)");
        }
    }
    // --pull never with an uncached image fails and says so.
    let o = Command::new(BIN)
        .args([
            "pull",
            "--pull",
            "never",
            &format!("{}/ubuntu:noble", reg.addr),
        ])
        .env("ROOTSMITH_CACHE", cache.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not in the cache"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// Local sources give the same tree

#[test]
fn oci_layout_docker_archive_and_rootfs_match_the_registry_pull() {
    let Some(reg) = registry() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (from_registry, _) = pull_tree(
        &format!("{}/alpine:3.20.3", reg.addr),
        &cache,
        &opts("linux/amd64"),
    )
    .unwrap();
    let want = tree_listing(&from_registry);
    // oci: made by registry.sh layout.
    let layout = dir.path().join("layout");
    sh(&[
        "layout",
        fixture(ALPINE).to_str().unwrap(),
        layout.to_str().unwrap(),
        "3.20.3",
    ])
    .unwrap();
    let (t, src) = pull_tree(
        &format!("oci:{}:3.20.3", layout.display()),
        &cache,
        &opts("linux/amd64"),
    )
    .unwrap();
    assert_same(&tree_listing(&t), &want, "oci layout");
    assert_eq!(src.image().digest.to_string(), ALPINE_MANIFEST);
    let (t, _) = pull_tree(
        &format!("oci:{}", layout.display()),
        &cache,
        &opts("linux/amd64"),
    )
    .unwrap();
    assert_same(&tree_listing(&t), &want, "oci layout without a tag");
    // docker-archive: written here the way `docker save` does (uncompressed layer.tar).
    let archive = dir.path().join("image.tar");
    write_docker_archive(&fixture(ALPINE), &archive);
    let (t, src) = pull_tree(
        &format!("docker-archive:{}", archive.display()),
        &cache,
        &opts("linux/amd64"),
    )
    .unwrap();
    assert_same(&tree_listing(&t), &want, "docker archive");
    assert_eq!(
        src.image()
            .config
            .config
            .as_ref()
            .unwrap()
            .env
            .as_ref()
            .unwrap()[0],
        "PATH=/bin"
    );
    // rootfs: the tarball itself.
    let (t, _) = pull_tree(
        &format!("rootfs:{}", fixture(ALPINE).display()),
        &cache,
        &opts("linux/amd64"),
    )
    .unwrap();
    assert_same(&tree_listing(&t), &want, "rootfs tarball");
}

fn gunzip(p: &Path) -> Vec<u8> {
    let (_, mut r) = decompress(std::fs::File::open(p).unwrap()).unwrap();
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

fn write_docker_archive(rootfs: &Path, out: &Path) {
    let layer = gunzip(rootfs);
    let diff_id = Digest::of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let cfg_name = format!("{}.json", Digest::of(config.as_bytes()).hex());
    let manifest = format!(
        r#"[{{"Config":"{cfg_name}","RepoTags":["alpine:test"],"Layers":["abc/layer.tar"]}}]"#
    );
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (name, data) in [
        ("abc/layer.tar", &layer[..]),
        (&cfg_name[..], config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    b.finish().unwrap();
}

// ---------------------------------------------------------------------------------------
// A multi-layer image: the OCI whiteout rules against a real base

/// A raw tar entry for hand-made layers.
struct E<'a> {
    path: &'a str,
    kind: tar::EntryType,
    data: &'a [u8],
    link: &'a str,
    mode: u32,
    owner: (u64, u64),
    dev: (u32, u32),
    xattrs: &'a [(&'a str, &'a [u8])],
}

fn e(path: &str, kind: tar::EntryType) -> E<'_> {
    E {
        path,
        kind,
        data: b"",
        link: "",
        mode: 0o644,
        owner: (0, 0),
        dev: (0, 0),
        xattrs: &[],
    }
}

fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for x in entries {
        if !x.xattrs.is_empty() {
            let pax: Vec<(String, &[u8])> = x
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                .collect();
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..x.path.len()].copy_from_slice(x.path.as_bytes());
        h.as_old_mut().linkname[..x.link.len()].copy_from_slice(x.link.as_bytes());
        h.set_entry_type(x.kind);
        h.set_mode(x.mode);
        h.set_uid(x.owner.0);
        h.set_gid(x.owner.1);
        h.set_mtime(7);
        if matches!(x.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(x.dev.0).unwrap();
            h.set_device_minor(x.dev.1).unwrap();
        }
        h.set_size(x.data.len() as u64);
        h.set_cksum();
        b.append(&h, x.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Writes an OCI layout with the given gzip layers (and their plain tars for diff_ids).
fn write_layout(dir: &Path, layers: &[(Vec<u8>, Vec<u8>)], tag: &str) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |data: &[u8]| {
        let d = Digest::of(data);
        std::fs::write(blobs.join(d.hex()), data).unwrap();
        (d, data.len())
    };
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|(_, plain)| format!("\"{}\"", Digest::of(plain)))
        .collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/usr/bin:/bin"],"User":"1000:1000","WorkingDir":"/srv","Entrypoint":["/bin/sh"],"Labels":{{"test":"multi"}}}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let (cd, cs) = put(config.as_bytes());
    let ls: Vec<String> = layers
        .iter()
        .map(|(gz, _)| {
            let (d, s) = put(gz);
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{s}}}"#)
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{}]}}"#,
        ls.join(",")
    );
    let (md, ms) = put(manifest.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#),
    )
    .unwrap();
    md
}

#[test]
fn a_multi_layer_image_gives_the_tree_the_oci_spec_says() {
    use tar::EntryType as T;
    let dir = tempfile::tempdir().unwrap();
    let base_gz = std::fs::read(fixture(ALPINE)).unwrap();
    let base = (base_gz.clone(), gunzip(&fixture(ALPINE)));
    let upper = layer_tar(&[
        // Whiteout of a lower file, and of a missing path.
        e("etc/.wh.motd", T::Regular),
        e("etc/.wh.no-such-file", T::Regular),
        // Opaque directory listed after the layer's own entry: that entry stays.
        E {
            data: b"mine",
            ..e("etc/apk/new-in-upper", T::Regular)
        },
        e("etc/apk/.wh..wh..opq", T::Regular),
        // Replace a file; a directory over a lower file; a file over a lower directory.
        E {
            data: b"upper-host\n",
            ..e("etc/hostname", T::Regular)
        },
        E {
            mode: 0o700,
            ..e("etc/issue/", T::Directory)
        },
        E {
            data: b"not a dir",
            ..e("media/cdrom", T::Regular)
        },
        // Delete and recreate in one layer.
        e("etc/.wh.shells", T::Regular),
        E {
            data: b"/bin/ash\n",
            ..e("etc/shells", T::Regular)
        },
        // Hard link to a lower-layer file.
        E {
            link: "bin/busybox",
            ..e("usr/bin/hl-to-lower-busybox", T::Link)
        },
        // Ownership, devices, setuid, xattrs kept without root.
        E {
            mode: 0o666,
            dev: (1, 3),
            ..e("dev/null", T::Char)
        },
        E {
            mode: 0o660,
            dev: (7, 0),
            owner: (0, 6),
            ..e("dev/loop0", T::Block)
        },
        E {
            data: b"x",
            owner: (1000, 1000),
            ..e("opt/owned-1000", T::Regular)
        },
        E {
            data: b"s",
            mode: 0o4755,
            ..e("opt/setuid", T::Regular)
        },
        E {
            data: b"c",
            xattrs: &[
                ("security.capability", b"\x01\x00\x00\x02"),
                ("user.note", b"hi"),
            ],
            ..e("opt/caps", T::Regular)
        },
    ]);
    // A third layer whites out the second layer's file and adds a symlinked dir entry.
    let third = layer_tar(&[
        e("opt/.wh.owned-1000", T::Regular),
        E {
            link: "../bin/busybox",
            ..e("opt/sh", T::Symlink)
        },
    ]);
    write_layout(
        dir.path(),
        &[
            base,
            (gzip(&upper), upper.clone()),
            (gzip(&third), third.clone()),
        ],
        "multi",
    );
    let (t, src) = pull_tree(
        &format!("oci:{}:multi", dir.path().display()),
        &dir.path().join("c"),
        &opts("linux/amd64"),
    )
    .unwrap();
    let rc = src.image().config.config.clone().unwrap();
    assert_eq!(
        (rc.user.as_deref(), rc.working_dir.as_deref()),
        (Some("1000:1000"), Some("/srv"))
    );
    assert_eq!(rc.labels.unwrap()["test"], "multi");

    // What the spec says, built from the base listing by hand.
    let mut want = fixture_listing(ALPINE);
    let lower_apk: Vec<String> = want
        .keys()
        .filter(|k| k.starts_with("/etc/apk/"))
        .cloned()
        .collect();
    assert!(lower_apk.len() > 3, "the base has /etc/apk content");
    for k in lower_apk {
        want.remove(&k);
    }
    want.remove("/etc/motd");
    let row = |what: &str, mode: u32, owner: &str, x: &str| {
        format!("{what} mode={mode:o} owner={owner} mtime=7 xattrs=[{x}]")
    };
    let file =
        |data: &[u8], p: &str| format!("file size={} sha={} group={p}", data.len(), hex(data));
    want.insert(
        "/etc/apk/new-in-upper".into(),
        row(&file(b"mine", "/etc/apk/new-in-upper"), 0o644, "0:0", ""),
    );
    want.insert(
        "/etc/hostname".into(),
        row(&file(b"upper-host\n", "/etc/hostname"), 0o644, "0:0", ""),
    );
    want.insert("/etc/issue".into(), row("dir", 0o700, "0:0", ""));
    want.insert(
        "/media/cdrom".into(),
        row(&file(b"not a dir", "/media/cdrom"), 0o644, "0:0", ""),
    );
    want.insert(
        "/etc/shells".into(),
        row(&file(b"/bin/ash\n", "/etc/shells"), 0o644, "0:0", ""),
    );
    // The hard link shares busybox's row: same size, hash and group (/bin/busybox).
    let bb = want["/bin/busybox"].clone();
    assert!(bb.contains("group=/bin/busybox"));
    want.insert("/usr/bin/hl-to-lower-busybox".into(), bb);
    want.insert("/dev/null".into(), row("char 1:3", 0o666, "0:0", ""));
    want.insert("/dev/loop0".into(), row("block 7:0", 0o660, "0:6", ""));
    want.entry("/opt".into())
        .or_insert_with(|| row("dir", 0o755, "0:0", ""));
    want.insert(
        "/opt/setuid".into(),
        row(&file(b"s", "/opt/setuid"), 0o4755, "0:0", ""),
    );
    let caps = format!(
        "security.capability={},user.note={}",
        hex(b"\x01\x00\x00\x02"),
        hex(b"hi")
    );
    want.insert(
        "/opt/caps".into(),
        row(&file(b"c", "/opt/caps"), 0o644, "0:0", &caps),
    );
    want.insert(
        "/opt/sh".into(),
        row("symlink -> ../bin/busybox", 0o644, "0:0", ""),
    );
    let got = tree_listing(&t);
    assert_same(&got, &want, "multi-layer image");
    let bbid = t.lookup(b"/bin/busybox").unwrap();
    assert_eq!(
        t.lookup_nofollow(b"/usr/bin/hl-to-lower-busybox"),
        Some(bbid)
    );
    assert_eq!(t.inode(bbid).links(), 2);

    // The same through the CLI as an unprivileged user: owners, devices and
    // security.capability survive (the tree never needs the host to hold them).
    if !is_root() {
        skip("not root: cannot switch to an unprivileged user for the rootless check");
        return;
    }
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    chmod(dir.path(), 0o755);
    chmod(&out, 0o777);
    let tar = out.join("flat.tar");
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "export",
            "-q",
        ])
        .arg(format!("oci:{}:multi", dir.path().display()))
        .arg("--tar")
        .arg(&tar)
        .env("HOME", "/nonexistent")
        .output()
        .expect("setpriv (util-linux) is installed");
    assert!(
        o.status.success(),
        "rootless export: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same(&tar_listing(&tar), &tree_listing(&t), "rootless export");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------
// A fault-injecting HTTP proxy in front of the registry

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Half the body, with a Content-Length that matches the half.
    Truncate,
    /// One byte of the body flipped.
    WrongDigest,
    /// HTTP 500.
    Status500,
    /// Half the body, then the connection closes (Content-Length says the whole).
    Reset,
    /// Half the body, then nothing for 4 s.
    Stall,
    /// Act as a token-auth front: 401 with a Bearer challenge unless the request carries
    /// the token that `/token` hands out anonymously (the Docker Hub flow).
    RequireBearer,
}

struct Proxy {
    addr: String,
    /// (path substring, fault, times left).
    rules: Arc<Mutex<Vec<(String, Fault, u32)>>>,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let rules: Arc<Mutex<Vec<(String, Fault, u32)>>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r2, h2, up) = (rules.clone(), hits.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let (r, h, up) = (r2.clone(), h2.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = serve(c, &up, &r, &h);
                });
            }
        });
        Proxy { addr, rules, hits }
    }

    fn fault(&self, path_part: &str, f: Fault, times: u32) {
        self.rules
            .lock()
            .unwrap()
            .push((path_part.to_string(), f, times));
    }
}

fn read_head(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    Ok(head)
}

/// Serves requests on one client connection, one upstream connection per request.
fn serve(
    mut c: TcpStream,
    upstream: &str,
    rules: &Mutex<Vec<(String, Fault, u32)>>,
    hits: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    loop {
        let head = read_head(&mut c)?;
        let text = String::from_utf8_lossy(&head).into_owned();
        let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
        let ranged = text.to_ascii_lowercase().contains("\r\nrange: bytes=");
        hits.lock()
            .unwrap()
            .push(format!("{path}{}", if ranged { " (range)" } else { "" }));
        let bearer = rules
            .lock()
            .unwrap()
            .iter()
            .any(|(_, f, _)| *f == Fault::RequireBearer);
        if bearer && path.starts_with("/token") {
            let body = br#"{"token":"t0k3n","expires_in":300}"#;
            c.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())?;
            c.write_all(body)?;
            continue;
        }
        if bearer
            && !text.contains("Authorization: Bearer t0k3n")
            && !text.contains("authorization: Bearer t0k3n")
        {
            let me = c.local_addr()?;
            let body =
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            c.write_all(format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"proxy-test\"\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())?;
            c.write_all(body)?;
            continue;
        }
        let fault = {
            let mut rs = rules.lock().unwrap();
            rs.iter_mut()
                .find(|(p, _, n)| *n > 0 && path.contains(p.as_str()))
                .map(|(_, f, n)| {
                    *n -= 1;
                    *f
                })
        };
        // Forward with `Connection: close` so the upstream response ends at EOF.
        let mut req: Vec<String> = text
            .trim_end()
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .map(str::to_string)
            .collect();
        req.push("Connection: close".into());
        let mut u = TcpStream::connect(upstream)?;
        u.write_all(format!("{}\r\n\r\n", req.join("\r\n")).as_bytes())?;
        let mut resp = Vec::new();
        u.read_to_end(&mut resp)?;
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(resp.len(), |i| i + 4);
        let (rh, body) = resp.split_at(split);
        let rh = String::from_utf8_lossy(rh).into_owned();
        let mut lines: Vec<String> = rh
            .trim_end()
            .split("\r\n")
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                !l.starts_with("connection:") && !l.starts_with("content-length:")
            })
            .map(str::to_string)
            .collect();
        let mut body = body.to_vec();
        let half = body.len() / 2;
        let mut declared = body.len();
        match fault {
            Some(Fault::Status500) => {
                let msg = b"injected failure";
                c.write_all(
                    format!(
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n",
                        msg.len()
                    )
                    .as_bytes(),
                )?;
                c.write_all(msg)?;
                continue;
            }
            Some(Fault::Truncate) => {
                body.truncate(half);
                declared = half;
            }
            Some(Fault::WrongDigest) => {
                if let Some(b) = body.get_mut(half) {
                    *b ^= 0xff;
                }
            }
            Some(Fault::Reset) | Some(Fault::Stall) | Some(Fault::RequireBearer) | None => {}
        }
        lines.push(format!("Content-Length: {declared}"));
        c.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())?;
        match fault {
            Some(Fault::Reset) => {
                c.write_all(&body[..half])?;
                c.flush()?;
                return Ok(()); // dropped: the client sees the connection end early
            }
            Some(Fault::Stall) => {
                c.write_all(&body[..half])?;
                c.flush()?;
                std::thread::sleep(Duration::from_secs(4));
                return Ok(());
            }
            _ => c.write_all(&body)?,
        }
    }
}

fn alpine_layer() -> String {
    let d = Digest::of(&std::fs::read(fixture(ALPINE)).unwrap());
    format!("/blobs/{d}")
}

fn no_partial_files(cache: &Path) {
    let tmp: Vec<_> = std::fs::read_dir(cache.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    for e in std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().into_string().unwrap();
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(
            Digest::of(&data).hex(),
            name,
            "cache holds a blob whose digest does not match"
        );
    }
}

#[test]
fn transient_faults_are_retried_and_the_others_fail_cleanly() {
    let Some(reg) = registry() else { return };
    let layer = alpine_layer();
    // Transient: 500 then 200, a reset mid-stream, a stall (timeout 2 s) — each once.
    for fault in [Fault::Status500, Fault::Reset, Fault::Stall] {
        let p = Proxy::start(&reg.addr);
        p.fault(&layer, fault, 1);
        let cache = tempfile::tempdir().unwrap();
        let r = format!("{}/alpine:3.20.3", p.addr);
        let (t, _) = pull_tree(&r, cache.path(), &opts("linux/amd64"))
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_same(
            &tree_listing(&t),
            &fixture_listing(ALPINE),
            &format!("after {fault:?}"),
        );
        let n = p
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.contains(&layer))
            .count();
        assert_eq!(n, 2, "{fault:?}: one failed and one good download");
        if fault != Fault::Status500 {
            // The download resumed where the connection broke.
            let hits = p.hits.lock().unwrap();
            let last = hits.iter().rfind(|h| h.contains(&layer)).unwrap();
            assert!(
                last.ends_with("(range)"),
                "{fault:?}: retried without Range: {hits:?}"
            );
        }
        no_partial_files(cache.path());
    }
    // A 500 on every try: gives up after the retries, saying so.
    let p = Proxy::start(&reg.addr);
    p.fault(&layer, Fault::Status500, 100);
    let cache = tempfile::tempdir().unwrap();
    let e = pull_tree(
        &format!("{}/alpine:3.20.3", p.addr),
        cache.path(),
        &opts("linux/amd64"),
    )
    .err()
    .unwrap();
    assert!(
        e.contains("gave up after 4 attempts") && e.contains("500"),
        "{e}"
    );
    no_partial_files(cache.path());
    // Permanent: truncated (size mismatch) and wrong content are not retried.
    for (fault, says) in [
        (Fault::Truncate, "descriptor says"),
        (Fault::WrongDigest, "wrong content"),
    ] {
        let p = Proxy::start(&reg.addr);
        p.fault(&layer, fault, 100);
        let cache = tempfile::tempdir().unwrap();
        let e = pull_tree(
            &format!("{}/alpine:3.20.3", p.addr),
            cache.path(),
            &opts("linux/amd64"),
        )
        .err()
        .unwrap();
        assert!(e.contains(says), "{fault:?}: {e}");
        let n = p
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.contains(&layer))
            .count();
        assert_eq!(n, 1, "{fault:?} must not be retried");
        assert!(!cache
            .path()
            .join("blobs/sha256")
            .join(&layer["/blobs/sha256:".len()..])
            .exists());
        no_partial_files(cache.path());
    }
    // A bad manifest by digest is refused too.
    let p = Proxy::start(&reg.addr);
    p.fault("/manifests/", Fault::WrongDigest, 100);
    let cache = tempfile::tempdir().unwrap();
    let e = pull_tree(
        &format!("{}/alpine@{ALPINE_MANIFEST}", p.addr),
        cache.path(),
        &opts("linux/amd64"),
    )
    .err()
    .unwrap();
    assert!(
        e.to_lowercase().contains("digest") || e.contains("not JSON"),
        "{e}"
    );
    no_partial_files(cache.path());
}

#[test]
fn the_cache_serves_offline_and_heals_a_corrupt_blob() {
    let Some(reg) = registry() else { return };
    let cache = tempfile::tempdir().unwrap();
    let p = Proxy::start(&reg.addr);
    let r = format!("{}/alpine:3.20.3", p.addr);
    pull_tree(&r, cache.path(), &opts("linux/amd64")).unwrap();
    let hits = p.hits.lock().unwrap().len();
    // --pull missing and never: nothing goes to the network.
    for policy in [PullPolicy::Missing, PullPolicy::Never] {
        let mut o = opts("linux/amd64");
        o.registry.pull = policy;
        pull_tree(&r, cache.path(), &o).unwrap();
    }
    assert_eq!(
        p.hits.lock().unwrap().len(),
        hits,
        "cached pulls went to the registry"
    );
    // Corrupt the cached layer: detected, removed, fetched again.
    let blob = cache
        .path()
        .join("blobs/sha256")
        .join(&alpine_layer()["/blobs/sha256:".len()..]);
    let mut data = std::fs::read(&blob).unwrap();
    data[1000] ^= 1;
    std::fs::write(&blob, &data).unwrap();
    let mut o = opts("linux/amd64");
    o.registry.pull = PullPolicy::Never;
    let e = pull_tree(&r, cache.path(), &o).err().unwrap();
    assert!(e.contains("not in the cache"), "{e}");
    let (t, _) = pull_tree(&r, cache.path(), &opts("linux/amd64")).unwrap();
    assert_same(&tree_listing(&t), &fixture_listing(ALPINE), "after healing");
    no_partial_files(cache.path());
    // --pull always re-resolves the tag.
    let before = p
        .hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.contains("/manifests/3.20.3"))
        .count();
    let mut o = opts("linux/amd64");
    o.registry.pull = PullPolicy::Always;
    pull_tree(&r, cache.path(), &o).unwrap();
    let after = p
        .hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.contains("/manifests/3.20.3"))
        .count();
    assert_eq!(after, before + 1);
}

#[test]
fn two_concurrent_pulls_into_one_cache_both_succeed() {
    let Some(reg) = registry() else { return };
    let cache = tempfile::tempdir().unwrap();
    let r = format!("{}/ubuntu:noble", reg.addr);
    let kids: Vec<_> = (0..2)
        .map(|_| {
            Command::new(BIN)
                .args(["pull", "--json", &r])
                .env("ROOTSMITH_CACHE", cache.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut digests = Vec::new();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8(o.stdout).unwrap();
        let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        digests.push(last["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0], reg.pushed[&r]);
    no_partial_files(cache.path());
}

// ---------------------------------------------------------------------------------------
// Auth

#[test]
fn an_htpasswd_registry_needs_the_docker_config_credentials() {
    let Some(reg) = registry() else { return };
    let dir = tempfile::tempdir().unwrap();
    // bcrypt("wonderland"), made with Python's crypt (METHOD_BLOWFISH, cost 4).
    std::fs::write(
        dir.path().join("htpasswd"),
        "alice:$2b$04$LLHd8hto2i4HGpEdVBZGxOuZQi/bFsgiOrxljiGwDFdulvhZ9ZCtC\n",
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    // Same storage as the open registry: the images pushed there are here too.
    std::fs::write(
        dir.path().join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}/reg/data\nhttp:\n  addr: {addr}\n  secret: test\nauth:\n  htpasswd:\n    realm: rootsmith-test\n    path: {}/htpasswd\n",
            reg.dir.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new("docker-registry")
        .args(["serve", dir.path().join("config.yml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is installed once registry.sh started");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = {
        let pid = child.id();
        on_exit(&format!("kill {pid} 2>/dev/null"));
        let mut up = false;
        for _ in 0..100 {
            if TcpStream::connect(&addr).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            up,
            "htpasswd registry did not start: {:?}",
            child.try_wait()
        );
        Kill(child)
    };
    let r = format!("{addr}/alpine:3.20.3");
    let run = |env: &[(&str, &Path)]| {
        let cache = tempfile::tempdir().unwrap();
        let mut c = Command::new(BIN);
        c.args(["pull", &r])
            .env("ROOTSMITH_CACHE", cache.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .env("HOME", dir.path());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // Without credentials: refused, naming the registry and how to log in.
    let o = run(&[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&addr) && err.contains("docker login") && err.contains("401"),
        "{err}"
    );
    // With a docker config.json (base64 user:password).
    let docker = dir.path().join("dockercfg");
    std::fs::create_dir_all(&docker).unwrap();
    // base64("alice:wonderland")
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"{addr}":{{"auth":"YWxpY2U6d29uZGVybGFuZA=="}}}}}}"#),
    )
    .unwrap();
    let o = run(&[("DOCKER_CONFIG", &docker)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), ALPINE_MANIFEST);
    // $REGISTRY_AUTH_FILE works too; a wrong password is refused.
    let o = run(&[("REGISTRY_AUTH_FILE", &docker.join("config.json"))]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bad = dir.path().join("bad.json");
    // base64("alice:nope")
    std::fs::write(
        &bad,
        format!(r#"{{"auths":{{"{addr}":{{"auth":"YWxpY2U6bm9wZQ=="}}}}}}"#),
    )
    .unwrap();
    let o = run(&[("REGISTRY_AUTH_FILE", &bad)]);
    assert!(!o.status.success());
    // A credential helper named in credHelpers (the docker protocol: server on stdin).
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rstest");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\nread server\n[ \"$server\" = \"{addr}\" ] || exit 1\necho '{{\"Username\":\"alice\",\"Secret\":\"wonderland\"}}'\n"),
    )
    .unwrap();
    chmod(&helper, 0o755);
    let helped = dir.path().join("helped.json");
    std::fs::write(
        &helped,
        format!(r#"{{"credHelpers":{{"{addr}":"rstest"}}}}"#),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = run(&[("REGISTRY_AUTH_FILE", &helped), ("PATH", Path::new(&path))]);
    assert!(
        o.status.success(),
        "credential helper: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// Hostile layers

#[test]
fn hostile_layers_fail_cleanly_and_nothing_escapes() {
    use tar::EntryType as T;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "path traversal",
            layer_tar(&[E {
                data: b"pwned",
                ..e("../../../../tmp/rootsmith-escape", T::Regular)
            }]),
        ),
        (
            "absolute symlink then a file through it",
            layer_tar(&[
                E {
                    link: "/tmp",
                    ..e("evil", T::Symlink)
                },
                E {
                    data: b"pwned",
                    ..e("evil/rootsmith-escape", T::Regular)
                },
            ]),
        ),
        (
            "relative symlink out then a file through it",
            layer_tar(&[
                E {
                    link: "../../../../tmp",
                    ..e("evil", T::Symlink)
                },
                E {
                    data: b"pwned",
                    ..e("evil/rootsmith-escape", T::Regular)
                },
            ]),
        ),
        (
            "hard link to a path outside",
            layer_tar(&[E {
                link: "../../../../etc/passwd",
                ..e("pw", T::Link)
            }]),
        ),
        (
            "whiteout outside",
            layer_tar(&[e("../../.wh.tmp", T::Regular)]),
        ),
    ];
    for (what, tar) in cases {
        let mut t = Tree::new();
        let r = apply_layer(
            &mut t,
            &tar[..],
            Some(Digest::of(&tar)),
            &UnpackOptions::default(),
        );
        assert!(r.is_err(), "{what}: applied");
        assert!(
            !Path::new("/tmp/rootsmith-escape").exists(),
            "{what}: escaped"
        );
    }
    // A 10 GiB declared size on a short stream.
    let mut h = tar::Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(10 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[7u8; 4096]);
    let err = apply_layer(&mut Tree::new(), &tar[..], None, &UnpackOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("big"), "{err}");
    // Through the CLI: mkfs from a layout with a hostile layer leaves no output.
    let dir = tempfile::tempdir().unwrap();
    let evil = layer_tar(&[
        E {
            link: "/etc",
            ..e("x", T::Symlink)
        },
        E {
            data: b"a",
            ..e("x/passwd", T::Regular)
        },
    ]);
    write_layout(
        &dir.path().join("l"),
        &[(gzip(&evil), evil.clone())],
        "evil",
    );
    let out = dir.path().join("out.ext4");
    let o = Command::new(BIN)
        .args([
            "mkfs",
            "--from-image",
            &format!("oci:{}:evil", dir.path().join("l").display()),
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("x/passwd"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temp files left beside OUT"
    );
}

// ---------------------------------------------------------------------------------------
// Layering

/// `tree` and `ext4` never name tokio, the OCI code or the network; tokio stays in
/// `oci/registry/`.
#[test]
fn tokio_and_the_network_stay_in_the_registry_source() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for word in ["tokio", "oci_client", "reqwest"] {
                if code.contains(word) {
                    assert!(rel.starts_with("oci/registry/"), "{rel} names {word}");
                }
            }
            if rel.starts_with("tree/") || rel.starts_with("ext4/") {
                for word in ["crate::oci", "crate::cache", "crate::cli", "std::net"] {
                    assert!(!code.contains(word), "{rel} names {word}");
                }
            }
        }
    }
}

#[test]
fn the_anonymous_bearer_token_flow_works() {
    let Some(reg) = registry() else { return };
    let p = Proxy::start(&reg.addr);
    p.fault("", Fault::RequireBearer, 0);
    let cache = tempfile::tempdir().unwrap();
    let (t, _) = pull_tree(
        &format!("{}/alpine:3.20.3", p.addr),
        cache.path(),
        &opts("linux/amd64"),
    )
    .unwrap();
    assert_same(
        &tree_listing(&t),
        &fixture_listing(ALPINE),
        "through a token-auth front",
    );
    let hits = p.hits.lock().unwrap();
    let token = hits
        .iter()
        .find(|h| h.starts_with("/token"))
        .expect("a token was asked for");
    assert!(
        token.contains("scope=repository%3Aalpine%3Apull")
            || token.contains("scope=repository:alpine:pull"),
        "{token}"
    );
}
