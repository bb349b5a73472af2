//! Debian packages end to end: a real signed apt repository (built once with
//! `../shared/fixtures/apt-repo.sh`), served on loopback by a small in-process HTTP server
//! laid out like the mirrors the base images name; `rootsmith build` installs
//! openssh-server into real Debian and Ubuntu base trees. Checked against apt's own choice,
//! the kernel (loop mount), `sshd -t`, `dpkg --audit` and `dpkg -V`; bad inputs must fail
//! cleanly and leave no output.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
const BIN: &str = env!("CARGO_BIN_EXE_rootsmith");

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips (returns true) outside CI, panics in CI.
fn skip(why: &str) -> bool {
    if ci() {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    true
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

struct Fixture {
    key: PathBuf,
    port: u16,
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// A static file server for `root` on 127.0.0.1 (symlinks followed, `..` refused).
pub(crate) fn serve(root: PathBuf) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).map_or(true, |n| n == 0) || h.trim().is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut w = conn;
                let body = if path.contains("..") {
                    None
                } else {
                    std::fs::read(root.join(path.trim_start_matches('/'))).ok()
                };
                let _ = match body {
                    Some(b) => w
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).as_bytes())
                        .and_then(|()| w.write_all(&b)),
                    None => w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            });
        }
    });
    port
}

/// Recreates `dst` as a mirror of `src` made of symlinks, except `rel` (a file under it),
/// which gets `bytes`.
fn mirror_replacing(src: &Path, dst: &Path, rel: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(dst).unwrap();
    let mut comps = rel.components();
    let first = comps.next().unwrap().as_os_str().to_owned();
    let rest: PathBuf = comps.collect();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == first {
            if rest.as_os_str().is_empty() {
                std::fs::write(dst.join(&name), bytes).unwrap();
            } else {
                mirror_replacing(&e.path(), &dst.join(&name), &rest, bytes);
            }
        } else {
            symlink(e.path(), dst.join(&name)).unwrap();
        }
    }
}

fn env_value(repo: &Path, key: &str) -> String {
    let env = std::fs::read_to_string(repo.join("repo.env")).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

fn build_fixture() -> Option<Fixture> {
    let out = target_dir().join("fixtures/apt-repo");
    if !out.join("repo.env").exists() {
        let st = Command::new(format!("{FIXTURES}/apt-repo.sh"))
            .args(["build", out.to_str().unwrap(), "openssh-server"])
            .status();
        if !st.is_ok_and(|s| s.success()) {
            skip("apt-repo.sh build failed (needs the host's apt mirrors and root to install its tools)");
            return None;
        }
    }
    let repo = out.join("repo");
    // One mirror tree per test run; earlier runs' trees are removed.
    if let Ok(rd) = std::fs::read_dir(target_dir().join("fixtures")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("deb-mirror-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let root = target_dir().join(format!("fixtures/deb-mirror-{}", std::process::id()));
    let link = |target: &Path, at: &str| {
        let p = root.join(at);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    };
    let suite = repo.join("dists/bookworm");
    // Debian's layout: /debian (bookworm, bookworm-updates) and /debian-security.
    for (dir, suites) in [
        ("debian", &["bookworm", "bookworm-updates"][..]),
        ("debian-security", &["bookworm-security"][..]),
        (
            "ubuntu",
            &[
                "noble",
                "noble-updates",
                "noble-backports",
                "noble-security",
            ][..],
        ),
    ] {
        link(&repo.join("pool"), &format!("{dir}/pool"));
        for s in suites {
            link(&suite, &format!("{dir}/dists/{s}"));
        }
    }
    // A tampered Packages.xz (one byte flipped).
    let mut px = std::fs::read(suite.join("main/binary-amd64/Packages.xz")).unwrap();
    let mid = px.len() / 2;
    px[mid] ^= 1;
    mirror_replacing(
        &repo,
        &root.join("tampered-packages"),
        Path::new("dists/bookworm/main/binary-amd64/Packages.xz"),
        &px,
    );
    // A tampered openssh-server .deb.
    let tsv = std::fs::read_to_string(out.join("packages.tsv")).unwrap();
    let deb_rel = tsv
        .lines()
        .find(|l| l.starts_with("openssh-server\t"))
        .and_then(|l| l.split('\t').nth(5))
        .expect("openssh-server in packages.tsv")
        .to_string();
    let mut deb = std::fs::read(repo.join(&deb_rel)).unwrap();
    let n = deb.len();
    deb[n - 100] ^= 0x40;
    mirror_replacing(&repo, &root.join("tampered-deb"), Path::new(&deb_rel), &deb);
    // An InRelease re-signed with the repository's own key but expired.
    let release = std::fs::read_to_string(suite.join("Release")).unwrap();
    let expired = release.replacen(
        "Date:",
        "Valid-Until: Sat, 01 Jan 2000 00:00:00 UTC\nDate:",
        1,
    );
    let tmp = root.join("expired-Release");
    std::fs::write(&tmp, expired).unwrap();
    let signed = root.join("expired-InRelease");
    let fpr = env_value(&out, "KEY_FPRS")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let st = Command::new("gpg")
        .args(["--batch", "--quiet", "--homedir"])
        .arg(out.join("signing-gnupg"))
        .args([
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--local-user",
            &fpr,
            "--digest-algo",
            "SHA512",
            "--clearsign",
            "-o",
        ])
        .arg(&signed)
        .arg(&tmp)
        .status()
        .expect("gpg");
    // Stop the agent that gpg started for the signing home.
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(out.join("signing-gnupg"))
        .args(["--kill", "gpg-agent"])
        .status();
    assert!(st.success(), "gpg could not sign the expired InRelease");
    mirror_replacing(
        &repo,
        &root.join("expired"),
        Path::new("dists/bookworm/InRelease"),
        &std::fs::read(&signed).unwrap(),
    );
    // Release + Release.gpg only (no InRelease), as older or simpler archives serve.
    for f in ["Release", "Release.gpg", "main"] {
        link(&suite.join(f), &format!("detached/dists/bookworm/{f}"));
    }
    link(&repo.join("pool"), "detached/pool");
    let port = serve(root.clone());
    Some(Fixture {
        key: out.join("key.gpg"),
        port,
    })
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(build_fixture).as_ref()
}

fn base(name: &str) -> String {
    format!("rootfs:{FIXTURES}/base/{name}")
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn rootsmith(args: &[&str]) -> Run {
    let o = Command::new(BIN)
        .args(args)
        .output()
        .expect("run rootsmith");
    Run {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = target_dir().join(format!("tmp-deb-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn packages_of(json: &str) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(json.lines().last().unwrap_or("{}")).expect("json");
    let mut p: Vec<(String, String)> = v["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    p.sort();
    p
}

/// What apt itself installs for `openssh-server` on top of `status`, against the fixture.
fn apt_choice(f: &Fixture, status: &[u8], dir: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("status"), status).unwrap();
    let key = f.key.display();
    std::fs::write(
        dir.join("sources.list"),
        format!(
            "deb [signed-by={key}] {0}/debian bookworm main\ndeb [signed-by={key}] {0}/debian bookworm-updates main\ndeb [signed-by={key}] {0}/debian-security bookworm-security main\n",
            f.url("")
        ),
    )
    .unwrap();
    for d in ["lists/partial", "cache/archives/partial", "none"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let d = dir.display();
    let opts: Vec<String> = [
        format!("Dir::Etc::sourcelist={d}/sources.list"),
        format!("Dir::Etc::sourceparts={d}/none"),
        format!("Dir::Etc::Trusted={d}/none/trusted.gpg"),
        format!("Dir::Etc::TrustedParts={d}/none"),
        format!("Dir::State::Lists={d}/lists"),
        format!("Dir::State::status={d}/status"),
        format!("Dir::Cache={d}/cache"),
        "Debug::NoLocking=1".into(),
        "APT::Install-Recommends=false".into(),
        "APT::Architecture=amd64".into(),
        "APT::Architectures=amd64".into(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect();
    let up = Command::new("apt-get")
        .args(&opts)
        .args(["-qq", "update"])
        .output()
        .expect("apt-get");
    assert!(
        up.status.success(),
        "apt-get update: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let sim = Command::new("apt-get")
        .args(&opts)
        .args(["-s", "install", "openssh-server"])
        .output()
        .unwrap();
    assert!(
        sim.status.success(),
        "apt-get -s: {}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let mut out: Vec<(String, String)> = String::from_utf8_lossy(&sim.stdout)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Inst ")?;
            let name = rest.split_whitespace().next()?.to_string();
            let ver = rest
                .split('(')
                .nth(1)?
                .split_whitespace()
                .next()?
                .to_string();
            Some((name, ver))
        })
        .collect();
    out.sort();
    out
}

fn base_status(name: &str) -> Vec<u8> {
    let mut tree = rootsmith::tree::Tree::new();
    let f = std::fs::File::open(format!("{FIXTURES}/base/{name}")).unwrap();
    rootsmith::unpack::apply_tar(&mut tree, f, &Default::default()).unwrap();
    tree.read_file(b"/var/lib/dpkg/status").unwrap()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn sh(cmd: &str) -> (bool, String) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Mounts `image` and checks what a booted VM would rely on.
fn check_image(image: &Path, dir: &Path, packages: &[(String, String)]) {
    let names: Vec<&str> = packages.iter().map(|(n, _)| n.as_str()).collect();
    let names = names.join(" ");
    if !is_root() && skip("mounting the image needs root") {
        return;
    }
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let (m, d) = (mnt.display(), image.display());
    let (ok, out) = sh(&format!(
        "mount -o loop {d} {m} && mount --bind /dev {m}/dev && mount -t proc proc {m}/proc"
    ));
    assert!(ok, "mount: {out}");
    // What /init does at boot: the privsep directory and per-VM host keys.
    let checks = sh(&format!(
        "set -e; test -L {m}/bin; test -L {m}/lib; test -L {m}/sbin; mkdir -p {m}/run/sshd; \
         test ! -e {m}/etc/ssh/ssh_host_ed25519_key; chroot {m} /usr/bin/ssh-keygen -A >/dev/null; \
         chroot {m} /usr/sbin/sshd -t; echo AUDIT; dpkg --root={m} --audit; echo VERIFY; dpkg --root={m} -V {names}; echo END; chroot {m} apt-get -q check >/dev/null; \
         grep -E '^sshd:x:[1-9][0-9]{{2}}:65534::/run/sshd:/usr/sbin/nologin$' {m}/etc/passwd; grep -q '^sshd:' {m}/etc/shadow; \
         cmp {m}/etc/ssh/sshd_config {m}/usr/share/openssh/sshd_config"
    ));
    let _ = sh(&format!("umount {m}/proc; umount {m}/dev; umount {m}"));
    assert!(checks.0, "image checks failed: {}", checks.1);
    let between = |a: &str, b: &str| {
        checks
            .1
            .split(a)
            .nth(1)
            .and_then(|s| s.split(b).next())
            .unwrap_or("?")
            .trim()
            .to_string()
    };
    assert_eq!(between("AUDIT", "VERIFY"), "", "dpkg --audit");
    assert_eq!(between("VERIFY", "END"), "", "dpkg -V");
}

#[test]
fn deb_openssh_server_on_bookworm_slim_matches_apt_and_passes_sshd_t() {
    let Some(f) = fixture() else { return };
    let dir = tempdir("slim");
    let out = dir.join("out");
    let cache = dir.join("cache");
    let lock = dir.join("deb.lock");
    let args = |o: &Path| {
        vec![
            "build".to_string(),
            "--base".into(),
            base("debian-bookworm-slim-amd64.rootfs.tar.xz"),
            "--package".into(),
            "openssh-server".into(),
            "--apt-mirror".into(),
            f.url(""),
            "--apt-key".into(),
            f.key.display().to_string(),
            "--cache-dir".into(),
            cache.display().to_string(),
            "--lock".into(),
            lock.display().to_string(),
            "--json".into(),
            "--out".into(),
            o.display().to_string(),
        ]
    };
    let a = args(&out);
    let cold = rootsmith(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(cold.ok, "{}", cold.stderr);
    let ours = packages_of(&cold.stdout);
    let apt = apt_choice(
        f,
        &base_status("debian-bookworm-slim-amd64.rootfs.tar.xz"),
        &dir.join("apt"),
    );
    assert_eq!(ours, apt, "rootsmith and apt chose different sets");
    assert!((15..40).contains(&ours.len()), "{} packages", ours.len());
    assert!(
        !ours.iter().any(|(n, _)| n == "usrmerge" || n == "perl"),
        "usr-is-merged is installed; usrmerge must not be pulled"
    );
    assert!(
        cold.stderr.contains("postinst scripts not run"),
        "{}",
        cold.stderr
    );
    check_image(&out.join("rootfs.ext4"), &dir, &ours);

    // Warm: the lock replays the same set, the cache serves everything.
    let out2 = dir.join("out2");
    let a = args(&out2);
    let warm = rootsmith(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(warm.ok, "{}", warm.stderr);
    assert_eq!(packages_of(&warm.stdout), ours);
    let v: serde_json::Value = serde_json::from_str(warm.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["downloaded"], 0, "a warm build must not download");
    let c: serde_json::Value = serde_json::from_str(cold.stdout.lines().last().unwrap()).unwrap();
    let total = |v: &serde_json::Value| {
        v["deb_timings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .sum::<f64>()
    };
    eprintln!(
        "openssh-server on bookworm-slim: {} packages, {} bytes of .debs; install cold {:.3}s, warm {:.3}s (whole build cold {:.2}s, warm {:.2}s)",
        ours.len(),
        c["deb_bytes"],
        total(&c),
        total(&v),
        c["seconds"].as_f64().unwrap(),
        v["seconds"].as_f64().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deb_failures_are_clear_and_leave_no_output() {
    let Some(f) = fixture() else { return };
    let dir = tempdir("fail");
    let key = f.key.display().to_string();
    let src = |path: &str| format!("deb [signed-by={key}] {} bookworm main", f.url(path));
    let slim = base("debian-bookworm-slim-amd64.rootfs.tar.xz");
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "untrusted",
            vec!["--apt-mirror".into(), f.url("")],
            "no valid signature by a trusted key",
        ),
        (
            "tampered-packages",
            vec!["--apt-source".into(), src("/tampered-packages")],
            "does not match the signed index",
        ),
        (
            "tampered-deb",
            vec!["--apt-source".into(), src("/tampered-deb")],
            "does not match the signed index",
        ),
        (
            "expired",
            vec!["--apt-source".into(), src("/expired")],
            "expired: Valid-Until",
        ),
        (
            "missing",
            vec![
                "--apt-source".into(),
                src("/debian"),
                "--package".into(),
                "no-such-package".into(),
            ],
            "not in any configured repository",
        ),
        (
            "unsatisfiable",
            vec![
                "--apt-source".into(),
                src("/debian"),
                "--package".into(),
                "openssh-server (>= 1:99)".into(),
            ],
            "cannot satisfy",
        ),
    ];
    for (name, extra, want) in cases {
        let out = dir.join(name);
        let mut a: Vec<String> = vec![
            "build".into(),
            "--base".into(),
            slim.clone(),
            "--cache-dir".into(),
            dir.join("cache").display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        if !extra.iter().any(|e| e == "--package") {
            a.extend(["--package".into(), "openssh-server".into()]);
        }
        a.extend(extra);
        let r = rootsmith(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!r.ok, "{name}: succeeded");
        assert!(
            r.stderr.contains(want),
            "{name}: stderr {:?} lacks {want:?}",
            r.stderr
        );
        assert!(!out.exists(), "{name}: left output behind");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deb_full_bookworm_and_ubuntu_noble_bases_use_their_own_sources_and_keys() {
    let Some(f) = fixture() else { return };
    let dir = tempdir("bases");
    for (image, keyname) in [
        ("debian-bookworm-amd64.rootfs.tar.xz", "debian"),
        ("ubuntu-noble-amd64.rootfs.tar.gz", "ubuntu"),
    ] {
        let common = |extra: &[&str], out: &Path| -> Run {
            let mut a = vec!["build", "--base"];
            let b = base(image);
            let c = dir.join("cache").display().to_string();
            let o = out.display().to_string();
            let m = f.url("");
            a.extend([
                b.as_str(),
                "--package",
                "openssh-server",
                "--apt-mirror",
                m.as_str(),
                "--cache-dir",
                c.as_str(),
                "--out",
                o.as_str(),
            ]);
            a.extend(extra);
            rootsmith(&a)
        };
        // The image's own keys are found (and do not sign the test repository).
        let untrusted = common(&[], &dir.join(format!("{keyname}-untrusted")));
        assert!(!untrusted.ok);
        assert!(
            untrusted
                .stderr
                .contains("no valid signature by a trusted key"),
            "{}",
            untrusted.stderr
        );
        assert!(
            !untrusted.stderr.contains(" 0 trusted certificate"),
            "{keyname}: the image's keyring was not loaded: {}",
            untrusted.stderr
        );
        let out = dir.join(keyname);
        let k = f.key.display().to_string();
        let r = common(&["--apt-key", k.as_str(), "--json"], &out);
        assert!(r.ok, "{keyname}: {}", r.stderr);
        let pkgs = packages_of(&r.stdout);
        assert!(pkgs.iter().any(|(n, _)| n == "openssh-server"));
        if keyname == "debian" {
            check_image(&out.join("rootfs.ext4"), &dir, &pkgs);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deb_keyrings_verify_every_signature_and_keep_ubuntu_user_ids() {
    use rootsmith::pkg::deb::keyring::Keyring;
    let Some(_) = fixture() else { return };
    let out = target_dir().join("fixtures/apt-repo");
    let mut k = Keyring::default();
    for name in ["key.gpg", "key.asc"] {
        let mut one = Keyring::default();
        one.add_bytes(name, &std::fs::read(out.join(name)).unwrap())
            .unwrap();
        let text = std::fs::read_to_string(out.join("repo/dists/bookworm/InRelease")).unwrap();
        // Both the RSA subkey and the Ed25519 primary signatures verify.
        assert_eq!(
            one.count_valid("InRelease", &text).unwrap(),
            (2, 2),
            "{name}"
        );
        let tampered = text.replacen("Packages.xz", "Packages.xy", 1);
        assert_eq!(one.count_valid("InRelease", &tampered).unwrap().0, 0);
        k = one;
    }
    // Release + Release.gpg (detached, both signatures).
    let body = std::fs::read(out.join("repo/dists/bookworm/Release")).unwrap();
    let sig = std::fs::read(out.join("repo/dists/bookworm/Release.gpg")).unwrap();
    k.verify_detached("Release", &body, &sig).unwrap();
    let mut bad = body.clone();
    bad[10] ^= 1;
    assert!(k.verify_detached("Release", &bad, &sig).is_err());
    // Ubuntu's keyring has GnuPG trust packets; user ids must survive grouping.
    let mut tree = rootsmith::tree::Tree::new();
    let f =
        std::fs::File::open(format!("{FIXTURES}/base/ubuntu-noble-amd64.rootfs.tar.gz")).unwrap();
    rootsmith::unpack::apply_tar(&mut tree, f, &Default::default()).unwrap();
    let mut u = Keyring::default();
    let bytes = tree
        .read_file(b"/usr/share/keyrings/ubuntu-archive-keyring.gpg")
        .unwrap();
    let n = u.add_bytes("ubuntu-archive-keyring.gpg", &bytes).unwrap();
    assert!(n >= 2);
    assert_eq!(u.with_user_ids(), n, "user ids lost to trust packets");
}

#[test]
fn deb_release_with_a_detached_signature_is_accepted_when_there_is_no_inrelease() {
    let Some(f) = fixture() else { return };
    let dir = tempdir("detached");
    let out = dir.join("out");
    let src = format!(
        "deb [signed-by={}] {} bookworm main",
        f.key.display(),
        f.url("/detached")
    );
    let r = rootsmith(&[
        "build",
        "--base",
        &base("debian-bookworm-slim-amd64.rootfs.tar.xz"),
        "--package",
        "libkeyutils1",
        "--apt-source",
        &src,
        "--cache-dir",
        &dir.join("cache").display().to_string(),
        "--json",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(packages_of(&r.stdout).len(), 1);
    assert!(out.join("rootfs.ext4").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
