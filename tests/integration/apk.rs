//! Alpine packages end to end: a signed APK v2 repository built by
//! `shared/fixtures/apk-repo.sh` (served from this process on 127.0.0.1), installed into
//! the Alpine 3.20.3 minirootfs by `rootsmith build`; the resolved set, the image's files,
//! modes and owners, and `/lib/apk/db/installed` (parsed back, checksums recomputed) are
//! checked, plus every way a repository can be untrustworthy. Also the real Alpine v3.16
//! index and package from apko's testdata against the minirootfs' own keys.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rootsmith::pkg::apk::{self, db, package::ApkFile, repo, signature::Keyring};
use rootsmith::tree::{Kind, Tree};
use sha1::Digest as _;

use crate::common::{self, ok, run};

const BASE: &str = "alpine-minirootfs-3.20.3-x86_64.tar.gz";

fn fixture_script() -> PathBuf {
    common::shared().join("fixtures/apk-repo.sh")
}

/// The test repository: built once, served for the whole test run.
struct Repo {
    out: PathBuf,
    url: String,
    key: PathBuf,
    /// The minirootfs with the test key added to `/etc/apk/keys` (the acceptance setup: the
    /// key is trusted because the image holds it, not because of a flag).
    keyed_base: PathBuf,
}

/// How a build trusts the test repository's key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// It does not.
    No,
    /// `--apk-key FILE`.
    Flag,
    /// The base image holds the key in `/etc/apk/keys`.
    Image,
}

/// Copies the gzip tarball `base` to `out`, adding `key` as `etc/apk/keys/<name>` (owner,
/// mode and time copied from the image's own keys).
fn add_key_to_base(base: &Path, key: &Path, out: &Path) {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(base).unwrap()));
    let gz =
        flate2::write::GzEncoder::new(fs::File::create(out).unwrap(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut key_header = None;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        let rel = path.to_string_lossy();
        let rel = rel.trim_start_matches("./");
        if rel.starts_with("etc/apk/keys/") && rel.ends_with(".pub") {
            key_header = Some(h.clone());
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        b.append_data(&mut h, &path, data.as_slice()).unwrap();
    }
    let bytes = fs::read(key).unwrap();
    let mut h = key_header.expect("the minirootfs has keys in /etc/apk/keys");
    h.set_size(bytes.len() as u64);
    let name = Path::new("etc/apk/keys").join(key.file_name().unwrap());
    b.append_data(&mut h, &name, bytes.as_slice()).unwrap();
    b.into_inner().unwrap().finish().unwrap();
}

/// A minimal static file server for `root` on 127.0.0.1 (dies with the test process).
fn serve(root: PathBuf) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = if path.contains("..") {
                    None
                } else {
                    fs::read(root.join(path.trim_start_matches('/'))).ok()
                };
                let _ = match body {
                    Some(b) => c
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).as_bytes())
                        .and_then(|_| c.write_all(&b)),
                    None => c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            });
        }
    });
    format!("http://{addr}")
}

/// Writes a package dir with `apk-repo.sh example`, then appends pkginfo lines.
fn pkg(dir: &Path, name: &str, ver: &str, extra: &[&str]) -> PathBuf {
    let d = dir.join(format!("{name}-{ver}"));
    ok(Command::new(fixture_script())
        .arg("example")
        .arg(&d)
        .arg(name)
        .arg(ver));
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(d.join("pkginfo"))
        .unwrap();
    for l in extra {
        writeln!(f, "{l}").unwrap();
    }
    d
}

fn flip(path: &Path, at_from_end: usize) {
    let mut b = fs::read(path).unwrap();
    let i = b.len() - at_from_end;
    b[i] ^= 0x55;
    fs::write(path, b).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn repo() -> &'static Repo {
    static R: OnceLock<Repo> = OnceLock::new();
    R.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap().keep();
        let p = tmp.join("pkgs");
        fs::create_dir(&p).unwrap();
        let mut dirs = vec![
            pkg(&p, "hello", "1.0-r0", &[]),
            pkg(&p, "greet", "2.0-r0", &["depend = hello>=1.0"]),
            pkg(&p, "libfoo", "1.0-r0", &["provides = so:libfoo.so.1=1.0.0"]),
            pkg(
                &p,
                "libfoo-dev",
                "1.0-r0",
                &["provides = pc:foo=1.0.0", "depend = libfoo"],
            ),
            pkg(
                &p,
                "app",
                "1.0-r0",
                &[
                    "depend = so:libfoo.so.1",
                    "depend = cmd:hello",
                    "depend = pc:foo>=1.0",
                ],
            ),
            pkg(
                &p,
                "prov-a",
                "1.0-r0",
                &["provides = ssh-virtual", "provider_priority = 10"],
            ),
            pkg(
                &p,
                "prov-b",
                "1.0-r0",
                &["provides = ssh-virtual", "provider_priority = 20"],
            ),
            pkg(&p, "uses-virt", "1.0-r0", &["depend = ssh-virtual"]),
            pkg(
                &p,
                "greet-hello",
                "1.0-r0",
                &["install_if = greet hello", "triggers = /usr/share/greet/*"],
            ),
            pkg(&p, "conflicter", "1.0-r0", &["depend = !busybox"]),
            pkg(
                &p,
                "needs-missing",
                "1.0-r0",
                &["depend = so:libnothere.so.9"],
            ),
            pkg(&p, "zlib", "1.3.1-r2", &["provides = so:libz.so.1=1.3.1"]),
            pkg(&p, "needs-new-zlib", "1.0-r0", &["depend = zlib>=1.3.1-r2"]),
        ];
        for v in ["1.2_rc1-r0", "1.2-r0", "1.2_p1-r0", "1.10-r0", "1.9-r3"] {
            dirs.push(pkg(&p, "ver", v, &[]));
        }
        // Files with their own modes for `app`.
        let app = p.join("app-1.0-r0/root");
        fs::create_dir_all(app.join("etc/app")).unwrap();
        fs::write(app.join("etc/app/secret"), "s3cret\n").unwrap();
        fs::set_permissions(
            app.join("etc/app/secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        fs::create_dir_all(app.join("var/lib/app")).unwrap();
        fs::set_permissions(
            app.join("var/lib/app"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let z = p.join("zlib-1.3.1-r2/root/lib");
        fs::create_dir_all(&z).unwrap();
        fs::write(z.join("libz.so.1.3.1"), "not really zlib\n").unwrap();
        std::os::unix::fs::symlink("libz.so.1.3.1", z.join("libz.so.1")).unwrap();
        fs::create_dir_all(p.join("libfoo-1.0-r0/root/usr/lib")).unwrap();
        fs::write(
            p.join("libfoo-1.0-r0/root/usr/lib/libfoo.so.1"),
            vec![7u8; 10000],
        )
        .unwrap();

        let out = tmp.join("repo");
        ok(Command::new(fixture_script())
            .arg("build")
            .arg(&out)
            .args(&dirs)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("APK_REPO_KEY_BITS", "2048"));
        let main = out.join("repo/main/x86_64");
        // Variants served beside `main`.
        let r = out.join("repo");
        copy_dir(&main, &r.join("tampered-index/x86_64"));
        flip(&r.join("tampered-index/x86_64/APKINDEX.tar.gz"), 200);
        copy_dir(&main, &r.join("tampered-pkg/x86_64"));
        flip(&r.join("tampered-pkg/x86_64/hello-1.0-r0.apk"), 20);
        copy_dir(&main, &r.join("c-mismatch/x86_64"));
        fs::copy(
            main.join("greet-2.0-r0.apk"),
            r.join("c-mismatch/x86_64/hello-1.0-r0.apk"),
        )
        .unwrap();
        copy_dir(&main, &r.join("slash-sign/x86_64"));
        resign_with_slash(&r.join("slash-sign/x86_64/APKINDEX.tar.gz"));
        let key = fs::read_dir(out.join("keys"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let url = serve(r);
        let keyed_base = tmp.join("minirootfs-with-test-key.tar.gz");
        add_key_to_base(&common::fixture(BASE), &key, &keyed_base);
        Repo {
            out,
            url,
            key,
            keyed_base,
        }
    })
}

/// Rewrites the index's signature entry so its key name holds a `/`.
fn resign_with_slash(path: &Path) {
    let data = fs::read(path).unwrap();
    let (sig_tar, rest) = apk::signature::split_member(&data, 1 << 20).unwrap();
    let e = apk::signature::read_entries(&sig_tar).unwrap().remove(0);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(e.sig.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, format!(".SIGN.RSA.sub/{}", e.key), &e.sig[..])
        .unwrap();
    let t = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&t).unwrap();
    let mut out = gz.finish().unwrap();
    out.extend_from_slice(rest);
    fs::write(path, out).unwrap();
}

fn build_cmd(repo_path: &str, out: &Path, cache: &Path, trust: Trust) -> Command {
    let r = repo();
    let base = match trust {
        Trust::Image => r.keyed_base.clone(),
        Trust::No | Trust::Flag => common::fixture(BASE),
    };
    let mut c = common::rootsmith();
    c.arg("build")
        .arg("--base")
        .arg(format!("rootfs:{}", base.display()))
        .arg("--apk-repository")
        .arg(format!("{}/{repo_path}", r.url))
        .arg("--out")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--json")
        .env("SOURCE_DATE_EPOCH", "1700000000");
    if trust == Trust::Flag {
        c.arg("--apk-key").arg(&r.key);
    }
    c
}

/// `openssl passwd -6 -salt saltsalt rootsmith`.
const ROOT_HASH: &str = "$6$saltsalt$GgLoCr48LXJ0o20h8MffRKBXJXhD2Hks2CuBS9.rKFSypqBFmmArjC2z4qn1owpS2zaHL3hFcOeASgtMV85kN1";

const WORLD: [&str; 4] = ["greet", "app", "uses-virt", "ver~1.2"];
const EXPECTED: [&str; 9] = [
    "app-1.0-r0",
    "greet-2.0-r0",
    "greet-hello-1.0-r0",
    "hello-1.0-r0",
    "libfoo-1.0-r0",
    "libfoo-dev-1.0-r0",
    "prov-b-1.0-r0",
    "uses-virt-1.0-r0",
    "ver-1.2_p1-r0",
];

/// What the checks need of a file, from a mount or from the tree.
struct Stat {
    mode: u32,
    uid: u32,
    is_dir: bool,
    /// File bytes or symlink target.
    data: Vec<u8>,
}

fn stat_host(root: &Path, rel: &str) -> Option<Stat> {
    let p = root.join(rel);
    let m = fs::symlink_metadata(&p).ok()?;
    let data = if m.file_type().is_symlink() {
        fs::read_link(&p)
            .ok()?
            .into_os_string()
            .into_encoded_bytes()
    } else if m.is_file() {
        fs::read(&p).ok()?
    } else {
        Vec::new()
    };
    Some(Stat {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        is_dir: m.is_dir(),
        data,
    })
}

fn stat_tree(t: &Tree, rel: &str) -> Option<Stat> {
    let id = t.lookup_nofollow(format!("/{rel}").as_bytes())?;
    let i = t.inode(id);
    let data = match &i.kind {
        Kind::File(c) => t.store().read_all(c).ok()?,
        Kind::Symlink(s) => s.clone(),
        _ => Vec::new(),
    };
    Some(Stat {
        mode: u32::from(i.meta.mode),
        uid: i.meta.uid,
        is_dir: i.is_dir(),
        data,
    })
}

/// Checks files, modes and the installed database through `stat`.
fn check_installed(stat: &dyn Fn(&str) -> Option<Stat>) {
    let hello = stat("usr/bin/hello").expect("hello installed");
    assert_eq!((hello.mode, hello.uid), (0o755, 0));
    assert_eq!(stat("usr/bin/greet-link").unwrap().data, b"greet");
    let secret = stat("etc/app/secret").expect("app's secret");
    assert_eq!(
        (secret.mode, secret.data.as_slice()),
        (0o600, &b"s3cret\n"[..])
    );
    let d = stat("var/lib/app").unwrap();
    assert!(d.is_dir && d.mode == 0o700, "var/lib/app mode {:o}", d.mode);
    let sh = stat("bin/sh").expect("the base's busybox is still there");
    assert_eq!(sh.data, b"/bin/busybox");

    let text = String::from_utf8(stat("lib/apk/db/installed").unwrap().data).unwrap();
    let dbs = db::parse(&text).expect("installed database parses back");
    let names: BTreeSet<String> = dbs.iter().map(|i| i.pkg.nv()).collect();
    for e in EXPECTED {
        assert!(names.contains(e), "{e} missing from the installed database");
    }
    assert!(names.contains("busybox-1.36.1-r29"), "base records kept");
    let mut checked = 0;
    for i in dbs
        .iter()
        .filter(|i| EXPECTED.contains(&i.pkg.nv().as_str()))
    {
        assert!(i.pkg.identity.is_some());
        for d in &i.dirs {
            for f in &d.files {
                let rel = if d.name.is_empty() {
                    f.name.clone()
                } else {
                    format!("{}/{}", d.name, f.name)
                };
                let s = stat(&rel).unwrap_or_else(|| panic!("{rel} listed but missing"));
                let z = f.checksum.unwrap_or_else(|| panic!("{rel} has no Z:"));
                let sum: [u8; 20] = sha1::Sha1::digest(&s.data).into();
                assert_eq!(z.0, sum, "{rel}: Z: does not match the content");
                let mode = f.acl.map(|a| a.2).unwrap_or(0o644);
                assert_eq!(u32::from(mode), s.mode, "{rel}: a: mode");
                checked += 1;
            }
        }
    }
    assert!(checked >= 17, "only {checked} files checked");
    let world = String::from_utf8(stat("etc/apk/world").unwrap().data).unwrap();
    for w in WORLD.iter().chain(["busybox", "alpine-baselayout"].iter()) {
        assert!(world.lines().any(|l| l == *w), "world lacks {w}: {world}");
    }
    let triggers = String::from_utf8(stat("lib/apk/db/triggers").unwrap().data).unwrap();
    let gh = dbs.iter().find(|i| i.pkg.name == "greet-hello").unwrap();
    assert!(
        triggers.contains(&format!(
            "{} /usr/share/greet/*\n",
            gh.pkg.identity.unwrap()
        )),
        "{triggers}"
    );
    // The fixture's `.pre-install` runs `addgroup -S <name>`: applied, not executed.
    let group = String::from_utf8(stat("etc/group").unwrap().data).unwrap();
    for g in ["hello", "greet", "app"] {
        assert!(
            group.lines().any(|l| l.starts_with(&format!("{g}:x:1"))),
            "group {g} missing:\n{group}"
        );
    }
    assert!(group.starts_with("root:x:0:root\n"), "base lines kept");
    let scripts = stat("lib/apk/db/scripts.tar").unwrap().data;
    let mut ar = tar::Archive::new(&scripts[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("hello-1.0-r0.Q1") && n.ends_with(".pre-install")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("alpine-baselayout-")),
        "base scripts kept: {names:?}"
    );
}

#[test]
fn apk_install_resolves_verifies_and_records() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    let lock = tmp.path().join("apk.lock");
    let mut c = build_cmd("main", &out, &cache, Trust::Image);
    for w in WORLD {
        c.arg("-p").arg(w);
    }
    c.arg("--lock").arg(&lock);
    c.arg("--root-password-hash").arg(ROOT_HASH);
    let cold = ok(&mut c);
    let v: serde_json::Value = serde_json::from_slice(&cold.stdout).unwrap();
    let mut added: Vec<String> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}-{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    added.sort();
    assert_eq!(added, EXPECTED);
    assert!(String::from_utf8_lossy(&cold.stderr).contains("stored but not run"));
    let lock_text = fs::read_to_string(&lock).unwrap();
    assert!(lock_text.contains("\nver 1.2_p1-r0 Q1"), "{lock_text}");
    let img = out.join("rootfs.ext4");
    assert!(img.is_file());
    // Read back with an independent ext4 reader: root's password hash is in place.
    let fs4 = ext4_view::Ext4::load_from_path(&img).unwrap();
    let shadow = String::from_utf8(fs4.read("/etc/shadow").unwrap()).unwrap();
    assert!(
        shadow.starts_with(&format!("root:{ROOT_HASH}:")),
        "{shadow}"
    );
    assert!(fs4.read("/usr/bin/greet").is_ok());

    // Warm: same cache, pinned by the lock, no network.
    let out2 = tmp.path().join("out2");
    let mut c = build_cmd("main", &out2, &cache, Trust::Image);
    for w in WORLD {
        c.arg("-p").arg(w);
    }
    c.arg("--lock").arg(&lock);
    c.arg("--root-password-hash").arg(ROOT_HASH);
    let warm = ok(&mut c);
    let w: serde_json::Value = serde_json::from_slice(&warm.stdout).unwrap();
    assert_eq!(w["requests"], 0, "a warm build must not touch the network");
    eprintln!(
        "apk install: cold {:.3}s ({} requests), warm {:.3}s (0 requests)",
        v["install_seconds"].as_f64().unwrap(),
        v["requests"],
        w["install_seconds"].as_f64().unwrap()
    );
    assert_eq!(
        common::sha256_file(&img),
        common::sha256_file(&out2.join("rootfs.ext4")),
        "same inputs, same image"
    );

    // A lock naming a version the repository does not have fails.
    fs::write(&lock, lock_text.replace("ver 1.2_p1-r0", "ver 9.9-r0")).unwrap();
    let out3 = tmp.path().join("out3");
    let mut c = build_cmd("main", &out3, &cache, Trust::Flag);
    for w in WORLD {
        c.arg("-p").arg(w);
    }
    let e = run(c.arg("--lock").arg(&lock));
    assert!(!e.status.success());
    assert!(!out3.join("rootfs.ext4").exists());

    // A lock whose identity differs (a package rebuilt under the same version) fails.
    let hello_line = lock_text
        .lines()
        .find(|l| l.starts_with("hello "))
        .unwrap()
        .to_string();
    fs::write(
        &lock,
        lock_text.replace(&hello_line, "hello 1.0-r0 Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    )
    .unwrap();
    let out4 = tmp.path().join("out4");
    let mut c = build_cmd("main", &out4, &cache, Trust::Flag);
    for w in WORLD {
        c.arg("-p").arg(w);
    }
    let e = run(c.arg("--lock").arg(&lock));
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("hello-1.0-r0 is locked as Q1AAAA"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    assert!(!out4.join("rootfs.ext4").exists());

    // The library path, checked on the tree (no root needed).
    let mut tree =
        rootsmith::build::load_base(&rootsmith::build::Base::RootfsTar(common::fixture(BASE)))
            .unwrap();
    let opts = apk::Options {
        packages: WORLD.iter().map(|s| s.to_string()).collect(),
        overrides: repo::Overrides {
            repositories: vec![format!("{}/main", repo().url)],
            keys: vec![(
                repo()
                    .key
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                fs::read(&repo().key).unwrap(),
            )],
            mirror: None,
        },
        lock: None,
        cache: None,
        index_max_age: std::time::Duration::from_secs(60),
        epoch: rootsmith::tree::Time::secs(1_700_000_000),
    };
    let report = apk::install(&mut tree, &opts, &rootsmith::fetch::Fetcher::default()).unwrap();
    assert_eq!(report.added.len(), EXPECTED.len());
    check_installed(&|p| stat_tree(&tree, p));

    // The image, loop-mounted.
    if common::require(common::is_root(), "root (for a loop mount)") {
        let m = common::Mount::new(&img, "ro");
        check_installed(&|p| stat_host(&m.dir, p));
    }
    if common::have("e2fsck") {
        assert_eq!(common::fsck(&img), 0);
    }
}

/// Runs a build expected to fail; checks the message and that nothing was written.
fn expect_failure(repo_path: &str, packages: &[&str], trust: bool, needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut c = build_cmd(
        repo_path,
        &out,
        &tmp.path().join("cache"),
        if trust { Trust::Image } else { Trust::No },
    );
    for p in packages {
        c.arg("-p").arg(p);
    }
    let o = run(&mut c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{repo_path} {packages:?} should fail");
    assert!(
        err.contains(needle),
        "{repo_path} {packages:?}: expected {needle:?} in: {err}"
    );
    assert!(!out.join("rootfs.ext4").exists(), "no output on failure");
}

#[test]
fn apk_untrustworthy_repositories_fail_cleanly() {
    expect_failure("main", &["hello"], false, "signed only by untrusted key");
    expect_failure(
        "tampered-index",
        &["hello"],
        true,
        "bad signature by trusted key",
    );
    expect_failure("tampered-pkg", &["hello"], true, "does not match datahash");
    expect_failure(
        "c-mismatch",
        &["hello"],
        true,
        "does not match the index's C:",
    );
    expect_failure("slash-sign", &["hello"], true, "contains `/`");
}

#[test]
fn apk_unresolvable_requests_fail_cleanly() {
    expect_failure(
        "main",
        &["needs-missing"],
        true,
        "nothing provides so:libnothere.so.9 (needed by world → needs-missing-1.0-r0)",
    );
    expect_failure("main", &["hello>=2"], true, "hello>=2 cannot be satisfied");
    expect_failure(
        "main",
        &["conflicter"],
        true,
        "conflicts with busybox-1.36.1-r29 (installed in the base)",
    );
    expect_failure(
        "main",
        &["no-such-package"],
        true,
        "nothing provides no-such-package",
    );
    expect_failure(
        "main",
        &["bad=>1"],
        true,
        "--package: bad dependency \"bad=>1\"",
    );
}

fn minirootfs_keys(base: &str) -> Keyring {
    let tree =
        rootsmith::build::load_base(&rootsmith::build::Base::RootfsTar(common::fixture(base)))
            .unwrap();
    let mut t = tree;
    t.write_file(
        b"/etc/apk/repositories",
        b"http://unused.invalid/main\n",
        rootsmith::tree::Meta::new(0o644, rootsmith::tree::Time::secs(0)),
    )
    .unwrap();
    repo::config(&t, &repo::Overrides::default()).unwrap().keys
}

#[test]
fn apk_real_alpine_index_and_package_verify_with_the_images_keys() {
    let data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/apk");
    let keys = minirootfs_keys(BASE);
    assert_eq!(keys.len(), 5, "the minirootfs trusts five Alpine keys");
    let index = fs::read(data_dir.join("alpine-v3.16-APKINDEX.tar.gz")).unwrap();
    let pkgs = repo::read_index(&index, &keys, "alpine v3.16 APKINDEX").unwrap();
    assert!(pkgs.len() > 4000, "{} records", pkgs.len());
    let base = pkgs
        .iter()
        .find(|p| p.name == "alpine-baselayout" && p.version == "3.2.0-r23")
        .expect("listed");
    // The package copy is a different build of the same version than the index lists
    // (apko keeps it "to validate bytes"): its own Alpine signature and datahash verify,
    // and binding it to this index fails on C:, as it must.
    let apk_bytes = fs::read(data_dir.join("alpine-baselayout-3.2.0-r23.apk")).unwrap();
    let f = ApkFile::parse(&apk_bytes).unwrap();
    assert_eq!(f.identity().to_string(), "Q1LLq2qDNrS/qRnhxQ3hsY/sHbQnc=");
    // It is an aarch64 build: signed by the aarch64 builder key, which the x86_64 image
    // does not trust and the aarch64 image does.
    let e = f.verify(None, &keys).unwrap_err().to_string();
    assert!(
        e.contains("untrusted key(s) alpine-devel@lists.alpinelinux.org-616ae350.rsa.pub"),
        "{e}"
    );
    let arm_keys = minirootfs_keys("alpine-minirootfs-3.20.3-aarch64.tar.gz");
    let signer = f
        .verify(None, &arm_keys)
        .expect("real package verifies against the aarch64 image's keys");
    assert_eq!(
        signer,
        "alpine-devel@lists.alpinelinux.org-616ae350.rsa.pub"
    );
    assert_eq!(f.info.get("pkgname"), Some("alpine-baselayout"));
    assert_eq!(
        base.identity.unwrap().to_string(),
        "Q19UI7UxyiUywG6aew9c3lCBPshsE="
    );
    let e = f.verify(base.identity, &arm_keys).unwrap_err().to_string();
    assert!(
        e.contains("does not match the index's C:Q19UI7UxyiUywG6aew9c3lCBPshsE="),
        "{e}"
    );
    assert!(pkgs.iter().any(|p| p
        .provides
        .iter()
        .any(|d| d.name == "so:libc.musl-x86_64.so.1")));

    // Any flipped byte of the signed part is caught.
    let mut bad = index.clone();
    let i = bad.len() / 2;
    bad[i] ^= 1;
    assert!(repo::read_index(&bad, &keys, "tampered").is_err());
    // An empty keyring trusts nothing.
    let e = repo::read_index(&index, &Keyring::new(), "v3.16")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("untrusted key(s) alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub"),
        "{e}"
    );

    // RSA256 (SHA-256) signatures.
    let mut k = Keyring::new();
    k.add_pem(
        "test-rsa256.rsa.pub",
        &fs::read(data_dir.join("test-rsa256.rsa.pub")).unwrap(),
    )
    .unwrap();
    let p = repo::read_index(
        &fs::read(data_dir.join("rsa256-APKINDEX.tar.gz")).unwrap(),
        &k,
        "rsa256",
    )
    .unwrap();
    assert_eq!(p[0].name, "alpine-baselayout");
}

#[test]
fn apk_base_package_upgrade_replaces_files_and_record() {
    let r = repo();
    let mut tree =
        rootsmith::build::load_base(&rootsmith::build::Base::RootfsTar(common::fixture(BASE)))
            .unwrap();
    let opts = apk::Options {
        packages: vec!["needs-new-zlib".into()],
        overrides: repo::Overrides {
            repositories: vec![format!("{}/main", r.url)],
            keys: vec![(
                r.key.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&r.key).unwrap(),
            )],
            mirror: None,
        },
        lock: None,
        cache: None,
        index_max_age: std::time::Duration::from_secs(60),
        epoch: rootsmith::tree::Time::secs(0),
    };
    let rep = apk::install(&mut tree, &opts, &rootsmith::fetch::Fetcher::default()).unwrap();
    assert_eq!(rep.upgraded, ["zlib 1.3.1-r1 → 1.3.1-r2"]);
    assert_eq!(
        tree.read_file(b"/lib/libz.so.1.3.1").unwrap(),
        b"not really zlib\n"
    );
    let text = String::from_utf8(tree.read_file(b"/lib/apk/db/installed").unwrap()).unwrap();
    let recs = db::parse(&text).unwrap();
    let z: Vec<_> = recs
        .iter()
        .filter(|i| i.pkg.name == "zlib")
        .map(|i| i.pkg.version.as_str())
        .collect();
    assert_eq!(z, ["1.3.1-r2"], "one zlib record, the new one");
    assert!(
        recs.iter().any(|i| i.pkg.name == "apk-tools"),
        "other base records kept"
    );
}

#[test]
fn apk_mirror_replaces_the_image_host() {
    // The image's own repositories file, pointed at the loopback server by --apk-mirror.
    let tmp = tempfile::tempdir().unwrap();
    let r = repo();
    let mut tree =
        rootsmith::build::load_base(&rootsmith::build::Base::RootfsTar(common::fixture(BASE)))
            .unwrap();
    tree.write_file(
        b"/etc/apk/repositories",
        b"# test\nhttps://mirror.invalid/main\n",
        rootsmith::tree::Meta::new(0o644, rootsmith::tree::Time::secs(0)),
    )
    .unwrap();
    let opts = apk::Options {
        packages: vec!["hello".into()],
        overrides: repo::Overrides {
            repositories: vec![],
            keys: vec![(
                r.key.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&r.key).unwrap(),
            )],
            mirror: Some(r.url.clone()),
        },
        lock: None,
        cache: Some(apk::cache::Cache::new(tmp.path())),
        index_max_age: std::time::Duration::from_secs(60),
        epoch: rootsmith::tree::Time::secs(0),
    };
    let rep = apk::install(&mut tree, &opts, &rootsmith::fetch::Fetcher::default()).unwrap();
    assert_eq!(rep.added.len(), 1);
    let _ = &r.out;
}

#[test]
fn apk_resolver_on_the_real_alpine_index() {
    use rootsmith::pkg::apk::{dep::Dep, resolve};
    let data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/apk");
    let index = fs::read(data_dir.join("alpine-v3.16-APKINDEX.tar.gz")).unwrap();
    let pkgs = repo::read_index(&index, &minirootfs_keys(BASE), "v3.16").unwrap();
    let mut u = resolve::Universe::new("x86_64");
    for p in pkgs {
        u.add(resolve::Candidate {
            pkg: p,
            repo: Some(0),
            tag: None,
        });
    }
    let world = Dep::parse_list("alpine-base openssh-server openssh-sftp-server").unwrap();
    let r = resolve::resolve(&u, &world, None).unwrap();
    let names: BTreeSet<&str> = r
        .install
        .iter()
        .map(|&c| u.cands[c].pkg.name.as_str())
        .collect();
    for want in [
        "openssh-server",
        "openssh-keygen",
        "openssh-server-common",
        "musl",
        "busybox",
        "zlib",
        "alpine-baselayout",
    ] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    // Every dependency of every chosen package is met by the chosen set, and order puts
    // providers first.
    let chosen: Vec<usize> = r.install.clone();
    for (pos, &c) in chosen.iter().enumerate() {
        for d in u.cands[c].pkg.depends.iter().filter(|d| !d.conflict) {
            let by = u
                .providers(&d.name)
                .iter()
                .find(|(p, v)| chosen.contains(p) && d.satisfied_by(v.as_deref()));
            let (p, _) = by.unwrap_or_else(|| panic!("{} needs {d}: unmet", u.cands[c].pkg.nv()));
            let ppos = chosen.iter().position(|x| x == p).unwrap();
            assert!(
                ppos <= pos
                    || u.cands[*p]
                        .pkg
                        .depends
                        .iter()
                        .any(|x| x.name == u.cands[c].pkg.name),
                "{} before its dependency {}",
                u.cands[c].pkg.nv(),
                u.cands[*p].pkg.nv()
            );
        }
    }
    eprintln!(
        "alpine v3.16: alpine-base + openssh-server resolve to {} packages: {names:?}",
        names.len()
    );
}

#[test]
fn apk_stale_cached_index_is_refreshed() {
    // A cached index (the fixture's) names hello-1.0-r0; the mirror has moved on to
    // hello-1.1-r0 (another repository, its own key): the 404 makes rootsmith refetch.
    let main = repo();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("pkgs");
    fs::create_dir(&p).unwrap();
    let d = pkg(&p, "hello", "1.1-r0", &[]);
    let out = tmp.path().join("repo2");
    ok(Command::new(fixture_script())
        .arg("build")
        .arg(&out)
        .arg(&d)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("APK_REPO_KEY_BITS", "2048"));
    let key2 = fs::read_dir(out.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let url = serve(out.join("repo"));
    let cache = apk::cache::Cache::new(&tmp.path().join("cache"));
    let old = fs::read(main.out.join("repo/main/x86_64/APKINDEX.tar.gz")).unwrap();
    cache
        .put_index(&format!("{url}/main/x86_64/APKINDEX.tar.gz"), &old)
        .unwrap();
    let key = |k: &Path| {
        (
            k.file_name().unwrap().to_string_lossy().into_owned(),
            fs::read(k).unwrap(),
        )
    };
    let mut tree =
        rootsmith::build::load_base(&rootsmith::build::Base::RootfsTar(common::fixture(BASE)))
            .unwrap();
    let opts = apk::Options {
        packages: vec!["hello".into()],
        overrides: repo::Overrides {
            repositories: vec![format!("{url}/main")],
            keys: vec![key(&main.key), key(&key2)],
            mirror: None,
        },
        lock: None,
        cache: Some(cache),
        index_max_age: std::time::Duration::from_secs(3600),
        epoch: rootsmith::tree::Time::secs(0),
    };
    let rep = apk::install(&mut tree, &opts, &rootsmith::fetch::Fetcher::default()).unwrap();
    assert!(rep.refreshed_indexes);
    assert_eq!(rep.added[0].version, "1.1-r0");
}

#[test]
fn apk_build_needs_no_root() {
    // As root (CI), drop to nobody with setpriv; otherwise this process is unprivileged already.
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut c = build_cmd("main", &out, &tmp.path().join("cache"), Trust::Flag);
    c.arg("-p").arg("app");
    let mut cmd = if common::is_root() {
        if !common::require(common::have("setpriv"), "setpriv (util-linux)") {
            return;
        }
        let mut s = Command::new(common::which("setpriv").unwrap());
        s.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        s.arg(c.get_program()).args(c.get_args());
        for (k, v) in c.get_envs() {
            if let Some(v) = v {
                s.env(k, v);
            }
        }
        s
    } else {
        c
    };
    ok(&mut cmd);
    let img = out.join("rootfs.ext4");
    assert!(img.is_file());
    let fs4 = ext4_view::Ext4::load_from_path(&img).unwrap();
    let md = fs4
        .metadata(ext4_view::Path::new("/etc/app/secret"))
        .unwrap();
    assert_eq!(
        (md.uid(), md.mode() & 0o7777),
        (0, 0o600),
        "root-owned in the image, built by nobody"
    );
}
