//! `rootsmith build` with the shipped SmolVM recipes end to end, against real servers on
//! loopback started per test (so a test can stop them): a registry
//! (`../shared/fixtures/registry.sh`) holding the base fixtures, a signed apt repository of
//! the debian-ssh-key packages' closure (`apt-repo.sh`) and a synthetic signed apk
//! repository with the alpine-ssh-key packages (`apk-repo.sh`). Checked: `e2fsck -fn`, a
//! loop mount (`/init` static 0755 root, sshd, no host keys, the recipe's sshd settings),
//! `sshd -t`/`sshd -T` in a chroot of a copy, cache hits with the servers stopped, offline
//! rebuilds, equal bytes for root and nobody, bad inputs, and `kill -9` mid-build.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{self, require};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
const BIN: &str = env!("CARGO_BIN_EXE_rootsmith");
const EPOCH: &str = "1700000000";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// A fresh scratch directory, world-writable (the nobody build writes into some).
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rootsmith-build-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    chmod(&d, 0o777);
    d
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    secs: f64,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.lines().last().unwrap_or("{}"))
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
    fn must(self, what: &str) -> Run {
        assert!(self.ok, "{what} failed: {}", self.stderr);
        self
    }
}

fn run(cmd: &mut Command) -> Run {
    let t = Instant::now();
    let o = cmd.output().expect("run rootsmith");
    Run {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        secs: t.elapsed().as_secs_f64(),
    }
}

fn rootsmith(args: &[String]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null());
    c
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A digest of a (sparse) image's bytes that reads only its data extents: the length, then
/// each data extent's offset and bytes (SEEK_DATA/SEEK_HOLE). Equal digests mean equal
/// bytes; hashing a 2 GiB image whole takes tens of seconds on a loaded CI machine.
#[allow(unsafe_code)]
fn sha(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let len = f.metadata().unwrap().len() as i64;
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    let mut off = 0i64;
    let mut buf = vec![0u8; 1 << 20];
    while off < len {
        // SAFETY: lseek on an open descriptor we own; no memory is passed.
        let data = unsafe { libc::lseek(f.as_raw_fd(), off, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len } else { hole };
        h.update(data.to_le_bytes());
        let mut at = data;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], at as u64).unwrap();
            h.update(&buf[..n]);
            at += n as i64;
        }
        off = end;
    }
    common::hex(&h.finalize())
}

/// The static init must have been built (`cargo build-init`; CI does it first).
fn have_init() -> bool {
    let p = target_dir().join("x86_64-unknown-linux-musl/release/rootsmith-init");
    require(p.is_file(), "the static init (run `cargo build-init`)")
}

/// A registry started for one test and stopped when dropped (or by [`Registry::stop`]).
struct Registry {
    dir: PathBuf,
    addr: String,
}

impl Registry {
    fn start(dir: &Path, pushes: &[(&str, &str)]) -> Option<Registry> {
        let sh = |args: &[&str]| {
            Command::new(format!("{FIXTURES}/registry.sh"))
                .args(args)
                .env("SOURCE_DATE_EPOCH", EPOCH)
                .stdin(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let reg = dir.join("registry");
        let addr = sh(&["start", reg.to_str().unwrap(), "0"]);
        if !require(
            addr.is_some(),
            "the test registry (registry.sh start: root or docker-registry + skopeo)",
        ) {
            return None;
        }
        let r = Registry {
            dir: reg,
            addr: addr.unwrap(),
        };
        for (fixture, name) in pushes {
            let f = common::fixture(fixture);
            let pushed = sh(&[
                "push-tar",
                f.to_str().unwrap(),
                &format!("{}/{name}", r.addr),
            ]);
            assert!(pushed.is_some(), "registry.sh push-tar {fixture} failed");
        }
        Some(r)
    }

    fn stop(&self) {
        let _ = Command::new(format!("{FIXTURES}/registry.sh"))
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A repository served by `apt-repo.sh`/`apk-repo.sh serve`, stopped when dropped.
struct Served {
    script: &'static str,
    out: PathBuf,
    url: String,
}

impl Served {
    fn start(script: &'static str, out: &Path) -> Served {
        let o = Command::new(format!("{FIXTURES}/{script}"))
            .arg("serve")
            .arg(out)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("serve");
        assert!(o.status.success(), "{script} serve failed");
        let url = String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.starts_with("http://"))
            .map(str::to_string)
            .unwrap_or_default();
        Served {
            script,
            out: out.to_path_buf(),
            url,
        }
    }

    fn stop(&self) {
        let _ = Command::new(format!("{FIXTURES}/{}", self.script))
            .arg("stop")
            .arg(&self.out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The signed apt repository of the debian-ssh-key packages' closure (built once).
fn apt_repo() -> Option<&'static PathBuf> {
    static R: OnceLock<Option<PathBuf>> = OnceLock::new();
    R.get_or_init(|| {
        let out = target_dir().join("fixtures/apt-repo-smolvm");
        if !out.join("repo.env").exists() {
            let ok = Command::new(format!("{FIXTURES}/apt-repo.sh"))
                .arg("build")
                .arg(&out)
                .args([
                    "openssh-server",
                    "iproute2",
                    "curl",
                    "ca-certificates",
                    "python3",
                ])
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !require(
                ok,
                "the apt fixture (apt-repo.sh build needs the host's apt mirrors)",
            ) {
                return None;
            }
        }
        Some(out)
    })
    .as_ref()
}

/// A synthetic signed apk repository with the alpine-ssh-key packages: `openssh` ships an
/// `sshd_config` that includes `sshd_config.d/*.conf` (as Alpine's does) and a host key
/// (which the image must not keep).
fn apk_repo(dir: &Path) -> PathBuf {
    let script = format!("{FIXTURES}/apk-repo.sh");
    let pkgs = dir.join("pkgs");
    let mut dirs = Vec::new();
    for name in [
        "openssh",
        "iproute2",
        "curl",
        "bash",
        "ca-certificates",
        "python3",
    ] {
        let d = pkgs.join(name);
        common::ok(
            Command::new(&script)
                .arg("example")
                .arg(&d)
                .args([name, "1.0-r0"]),
        );
        dirs.push(d);
    }
    let ssh = pkgs.join("openssh/root");
    std::fs::create_dir_all(ssh.join("etc/ssh/sshd_config.d")).unwrap();
    std::fs::create_dir_all(ssh.join("usr/sbin")).unwrap();
    std::fs::write(
        ssh.join("etc/ssh/sshd_config"),
        "Include /etc/ssh/sshd_config.d/*.conf\n\nAuthorizedKeysFile .ssh/authorized_keys\n",
    )
    .unwrap();
    std::fs::write(ssh.join("etc/ssh/ssh_host_ed25519_key"), "not a real key\n").unwrap();
    std::fs::write(ssh.join("usr/sbin/sshd"), "#!/bin/sh\nexit 0\n").unwrap();
    chmod(&ssh.join("usr/sbin/sshd"), 0o755);
    let out = dir.join("apk");
    common::ok(
        Command::new(&script)
            .arg("build")
            .arg(&out)
            .args(&dirs)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("APK_REPO_KEY_BITS", "2048"),
    );
    out
}

fn sh(cmd: &str) -> (bool, String) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// e2fsck, then a loop mount of a sparse copy: what a booting VM relies on. With `sshd_t`,
/// host keys are generated in a chroot of the copy and `sshd -t` / `sshd -T` must pass and
/// show the key-only settings.
fn check_image(img: &Path, dir: &Path, sshd_t: bool) {
    assert_eq!(common::fsck(img), 0, "e2fsck -fn {}", img.display());
    if !require(common::is_root(), "root (loop mount)") {
        return;
    }
    let copy = dir.join("copy.ext4");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let (c, m, i) = (copy.display(), mnt.display(), img.display());
    let (ok, out) = sh(&format!(
        "cp --sparse=always {i} {c} && mount -o loop {c} {m} && mount --bind /dev {m}/dev"
    ));
    assert!(ok, "mount: {out}");
    let checks = format!(
        "set -e; test -f {m}/init; test \"$(stat -c %a:%u:%g {m}/init)\" = 755:0:0; \
         file {m}/init | grep -q 'statically linked'; test -x {m}/usr/sbin/sshd; \
         ! ls {m}/etc/ssh/ssh_host_* 2>/dev/null; test \"$(cat {m}/etc/hostname)\" = smolvm; \
         for d in proc sys dev run tmp; do test -d {m}/$d; done; \
         grep -qx 'PermitRootLogin prohibit-password' {m}/etc/ssh/sshd_config.d/00-rootsmith.conf; \
         grep -qx 'PasswordAuthentication no' {m}/etc/ssh/sshd_config.d/00-rootsmith.conf; \
         grep -qx 'PubkeyAuthentication yes' {m}/etc/ssh/sshd_config.d/00-rootsmith.conf; {}",
        if sshd_t {
            format!(
                "mkdir -p {m}/run/sshd; chroot {m} /usr/bin/ssh-keygen -A >/dev/null; \
                 chroot {m} /usr/sbin/sshd -t; chroot {m} /usr/sbin/sshd -T > {d}/sshd-T; \
                 grep -qx 'permitrootlogin without-password' {d}/sshd-T; \
                 grep -qx 'passwordauthentication no' {d}/sshd-T; \
                 grep -qx 'pubkeyauthentication yes' {d}/sshd-T; \
                 test $(grep -c 'BEGIN CERTIFICATE' {m}/etc/ssl/certs/ca-certificates.crt) -gt 100; \
                 chroot {m} python3 -c 'import ssl; n = len(ssl.create_default_context().get_ca_certs()); assert n > 100, n'",
                d = dir.display()
            )
        } else {
            "true".into()
        }
    );
    let r = sh(&checks);
    let _ = sh(&format!("umount {m}/dev; umount {m}; rm -f {c}"));
    assert!(r.0, "image checks failed: {}", r.1);
}

/// The rootfs, fingerprint and mtime at `dir`, to show a failed build left them alone.
fn snapshot(dir: &Path) -> (String, String, std::time::SystemTime) {
    let img = dir.join("rootfs.ext4");
    (
        sha(&img),
        std::fs::read_to_string(dir.join(".fingerprint")).unwrap_or_default(),
        std::fs::metadata(&img).unwrap().modified().unwrap(),
    )
}

/// Asserts `r` failed with one line on stderr containing `want`.
fn fails_with(r: &Run, want: &str, what: &str) {
    assert!(!r.ok, "{what}: succeeded");
    let err = r.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err}");
    assert!(err.contains(want), "{what}: {err:?} lacks {want:?}");
}

#[test]
fn build_rejects_bad_input_in_one_line_and_keeps_the_previous_image() {
    let d = scratch("bad");
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("rootfs.ext4"), "previous image").unwrap();
    std::fs::write(out.join(".fingerprint"), "previous\n").unwrap();
    let before = snapshot(&out);
    let init = d.join("init");
    std::fs::write(&init, b"\x7fELF not really").unwrap();
    let recipe = d.join("bad.toml");
    std::fs::write(
        &recipe,
        "name = \"bad\"\nbase = \"alpine:3.20\"\n[sshd]\npermit_root_login = \"no\"\npasword_authentication = false\n",
    )
    .unwrap();
    let base = |extra: &[&str]| {
        let mut a = s(&[
            "--out",
            out.to_str().unwrap(),
            "--init",
            init.to_str().unwrap(),
        ]);
        a.extend(s(extra));
        a
    };
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "unknown recipe field",
            base(&[recipe.to_str().unwrap()]),
            "bad.toml:5:1: field `pasword_authentication`",
        ),
        (
            "bad size",
            base(&["alpine-ssh-key", "--size", "12Q"]),
            "bad size",
        ),
        (
            "bad size in MiB without unit",
            base(&["alpine-ssh-key", "--size", "512"]),
            "give a unit",
        ),
        (
            "unreadable key file",
            base(&["debian-ssh-key", "--authorized-key", "/nonexistent/id.pub"]),
            "/nonexistent/id.pub: cannot read",
        ),
        (
            "unknown recipe",
            base(&["no-such-recipe"]),
            "debian-ssh-key",
        ),
        (
            "registry down",
            base(&[
                "debian-ssh-key",
                "--base",
                "127.0.0.1:9/debian:bookworm-slim",
                "--retries",
                "0",
                "--cache-dir",
                d.join("cache").to_str().unwrap(),
            ]),
            "127.0.0.1:9",
        ),
    ];
    for (what, args, want) in cases {
        let mut a = s(&["build"]);
        a.extend(args);
        let r = run(&mut rootsmith(&a));
        fails_with(&r, want, what);
        assert_eq!(snapshot(&out), before, "{what}: the previous image changed");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn debian_ssh_key_from_a_local_registry_and_apt_repository() {
    if !have_init() {
        return;
    }
    let Some(apt) = apt_repo() else { return };
    let d = scratch("debian");
    let Some(reg) = Registry::start(
        &d,
        &[(
            "debian-bookworm-slim-amd64.rootfs.tar.xz",
            "debian:bookworm-slim",
        )],
    ) else {
        return;
    };
    let repo = Served::start("apt-repo.sh", apt);
    let source = std::fs::read_to_string(apt.join("sources.list")).unwrap();
    let base_ref = format!("{}/debian:bookworm-slim", reg.addr);
    let cache = d.join("cache");
    let images = d.join("images");
    let args_on = |base: &str, extra: &[&str]| {
        let mut a = s(&[
            "build",
            "debian-ssh-key",
            "--base",
            base,
            "--apt-source",
            source.trim(),
            "--json",
        ]);
        a.extend(s(extra));
        a
    };
    let args = |extra: &[&str]| args_on(&base_ref, extra);
    let with_cache = |extra: &[&str]| {
        let mut a = args(&["--cache-dir", cache.to_str().unwrap()]);
        a.extend(s(extra));
        a
    };

    // Cold build into the SmolVM cache (given by $SMOLVM_IMAGE_DIR).
    let cold = run(rootsmith(&with_cache(&["--smolvm"])).env("SMOLVM_IMAGE_DIR", &images))
        .must("cold build");
    let j = cold.json();
    let entry = images.join("debian-ssh-key");
    assert_eq!(
        j["rootfs_path"],
        entry.join("rootfs.ext4").display().to_string()
    );
    assert_eq!(j["kernel_path"], serde_json::Value::Null);
    assert_eq!(j["cached"], false);
    let fp = j["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(entry.join(".fingerprint"))
            .unwrap()
            .trim(),
        fp
    );
    let names: Vec<&str> = j["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "openssh-server",
        "iproute2",
        "curl",
        "ca-certificates",
        "python3",
    ] {
        assert!(names.contains(&p), "{p} not installed: {names:?}");
    }
    assert_eq!(
        std::fs::metadata(entry.join("rootfs.ext4")).unwrap().len(),
        2 << 30,
        "the recipe's 2G"
    );
    for st in ["base", "packages", "overlay", "ext4", "total"] {
        assert!(
            j["stages"][st].is_f64(),
            "stage {st} missing: {}",
            j["stages"]
        );
    }
    eprintln!("debian-ssh-key cold: {:.2}s {}", cold.secs, j["stages"]);
    let first = sha(&entry.join("rootfs.ext4"));
    check_image(&entry.join("rootfs.ext4"), &d, true);

    // As nobody, with its own cache and output: the same bytes.
    if require(
        common::is_root() && common::have("setpriv"),
        "root and setpriv",
    ) {
        let own = d.join("nobody");
        std::fs::create_dir_all(&own).unwrap();
        chmod(&own, 0o777);
        let mut a = args(&[
            "--cache-dir",
            own.join("cache").to_str().unwrap(),
            "--out",
            own.join("out").to_str().unwrap(),
        ]);
        a.insert(0, BIN.to_string());
        let r = run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(&a)
            .env("HOME", "/nonexistent")
            .stdin(Stdio::null()))
        .must("build as nobody");
        assert_eq!(
            sha(&own.join("out/rootfs.ext4")),
            first,
            "nobody's image differs from root's"
        );
        assert_eq!(r.json()["fingerprint"], fp.as_str());
    }

    // Bad inputs that need the servers; the cached image stays as it was.
    let before = snapshot(&entry);
    let smolvm_dir = ["--smolvm-dir", images.to_str().unwrap()];
    let mut no_pkg = with_cache(&smolvm_dir);
    no_pkg.extend(s(&["--package", "no-such-package"]));
    fails_with(
        &run(&mut rootsmith(&no_pkg)),
        "no-such-package",
        "nonexistent package",
    );
    let mut no_image = args_on(&format!("{}/no-such-image:1", reg.addr), &smolvm_dir);
    no_image.extend(s(&["--cache-dir", cache.to_str().unwrap()]));
    fails_with(
        &run(&mut rootsmith(&no_image)),
        "no-such-image",
        "nonexistent base image",
    );
    assert_eq!(snapshot(&entry), before);

    // Servers down: the same build is a cache hit.
    reg.stop();
    repo.stop();
    let hit = run(&mut rootsmith(&with_cache(&smolvm_dir))).must("warm build");
    let h = hit.json();
    assert_eq!(h["cached"], true);
    assert_eq!(h["fingerprint"], fp.as_str());
    assert_eq!(snapshot(&entry), before, "a hit must not rewrite the image");
    eprintln!("debian-ssh-key warm (cache hit): {:.3}s", hit.secs);
    // --pull always needs the registry, which is down.
    let mut always = with_cache(&smolvm_dir);
    always.extend(s(&["--pull", "always", "--retries", "0"]));
    fails_with(
        &run(&mut rootsmith(&always)),
        &reg.addr,
        "registry down (--pull always)",
    );
    assert_eq!(snapshot(&entry), before);

    // --pull never, fresh output directory: a full offline build with the same bytes.
    let fresh = d.join("fresh");
    let r = run(&mut rootsmith(&with_cache(&[
        "--pull",
        "never",
        "--out",
        fresh.to_str().unwrap(),
    ])))
    .must("offline build");
    assert_eq!(r.json()["cached"], false);
    assert_eq!(
        sha(&fresh.join("rootfs.ext4")),
        first,
        "two builds of one recipe differ"
    );

    // kill -9 mid-build: nothing at the final path; the next build succeeds.
    let killed = d.join("killed");
    let mut child = rootsmith(&with_cache(&[
        "--pull",
        "never",
        "--out",
        killed.to_str().unwrap(),
    ]))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !killed.join("rootfs.ext4").exists(),
        "a killed build left an image"
    );
    assert!(!killed.join(".fingerprint").exists());
    run(&mut rootsmith(&with_cache(&[
        "--pull",
        "never",
        "--out",
        killed.to_str().unwrap(),
    ])))
    .must("build after kill -9");
    assert_eq!(sha(&killed.join("rootfs.ext4")), first);
    let leftovers: Vec<_> = std::fs::read_dir(&killed)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".rootsmith-") && n != ".rootsmith.lock")
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    // Ctrl-C (SIGINT) mid-build: exit 130, no image and no temp files.
    let interrupted = d.join("interrupted");
    let child = rootsmith(&with_cache(&[
        "--pull",
        "never",
        "--out",
        interrupted.to_str().unwrap(),
    ]))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(130), "SIGINT exit status");
    let left: Vec<_> = std::fs::read_dir(&interrupted)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".rootsmith.lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "an interrupted build left {left:?}");
    drop(repo);
    drop(reg);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn alpine_ssh_key_from_a_local_registry_and_apk_repository() {
    if !have_init() {
        return;
    }
    let d = scratch("alpine");
    let Some(reg) = Registry::start(
        &d,
        &[("alpine-minirootfs-3.20.3-x86_64.tar.gz", "alpine:3.20")],
    ) else {
        return;
    };
    let apk = apk_repo(&d);
    let repo = Served::start("apk-repo.sh", &apk);
    let key = std::fs::read_dir(apk.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let cache = d.join("cache");
    let images = d.join("images");
    let base_ref = format!("{}/alpine:3.20", reg.addr);
    let args = |extra: &[&str]| {
        let mut a = s(&[
            "build",
            "alpine-ssh-key",
            "--base",
            &base_ref,
            "--apk-repository",
            &format!("{}/main", repo.url),
            "--apk-key",
            key.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ]);
        a.extend(s(extra));
        a
    };
    let smolvm = ["--smolvm-dir", images.to_str().unwrap()];
    custom_recipe_with_files_accounts_kernel_and_agent(&d, &reg.addr, &apk, &repo.url, &key);
    // Two builds of one name at once: the output lock makes one build and the other wait
    // and find it (a cache hit).
    let t = Instant::now();
    let pair: Vec<_> = (0..2)
        .map(|_| {
            rootsmith(&args(&smolvm))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut runs: Vec<Run> = pair
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            Run {
                ok: o.status.success(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                secs: t.elapsed().as_secs_f64(),
            }
        })
        .map(|r| r.must("concurrent cold build"))
        .collect();
    runs.sort_by_key(|r| r.json()["cached"].as_bool());
    let cold = runs.remove(0);
    let j = cold.json();
    assert_eq!(j["cached"], false);
    assert_eq!(
        runs[0].json()["cached"],
        true,
        "the second concurrent build rebuilt"
    );
    assert_eq!(runs[0].json()["fingerprint"], j["fingerprint"]);
    assert_eq!(j["package_count"], 6);
    assert_eq!(
        j["host_keys_removed"],
        serde_json::json!(["ssh_host_ed25519_key"])
    );
    let img = images.join("alpine-ssh-key/rootfs.ext4");
    assert_eq!(
        std::fs::metadata(&img).unwrap().len(),
        512 << 20,
        "the recipe's 512M"
    );
    eprintln!("alpine-ssh-key cold: {:.2}s {}", cold.secs, j["stages"]);
    check_image(&img, &d, false);
    let first = sha(&img);

    reg.stop();
    repo.stop();
    let hit = run(&mut rootsmith(&args(&smolvm))).must("warm build");
    assert_eq!(hit.json()["cached"], true);
    assert_eq!(hit.json()["fingerprint"], j["fingerprint"]);
    eprintln!("alpine-ssh-key warm (cache hit): {:.3}s", hit.secs);
    let fresh = d.join("fresh");
    let r = run(&mut rootsmith(&args(&[
        "--pull",
        "never",
        "--out",
        fresh.to_str().unwrap(),
    ])))
    .must("offline build");
    assert_eq!(r.json()["cached"], false);
    assert_eq!(
        sha(&fresh.join("rootfs.ext4")),
        first,
        "two builds of one recipe differ"
    );
    // A changed input (a baked-in key) rebuilds, offline.
    let pubkey = d.join("id.pub");
    std::fs::write(
        &pubkey,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qga2V5IGZvciByb290c21pdGg test\n",
    )
    .unwrap();
    let changed = run(&mut rootsmith(&args(&[
        "--pull",
        "never",
        "--authorized-key",
        pubkey.to_str().unwrap(),
        "--smolvm-dir",
        images.to_str().unwrap(),
    ])))
    .must("changed build");
    assert_eq!(changed.json()["cached"], false);
    assert_ne!(changed.json()["fingerprint"], j["fingerprint"]);
    assert_ne!(sha(&img), first);
    drop(repo);
    drop(reg);
    let _ = std::fs::remove_dir_all(&d);
}

/// A recipe file using every section: files (create and copy), a group and a user, root's
/// password, sshd settings in the main file's drop-in, fstab, a kernel fetched by URL and
/// checked, and the guest agent; then a kernel with the wrong hash fails and leaves the
/// image and kernel as they were.
fn custom_recipe_with_files_accounts_kernel_and_agent(
    d: &Path,
    registry: &str,
    apk: &Path,
    url: &str,
    key: &Path,
) {
    let kernel = b"\x7fELF a pretend kernel".repeat(1000);
    std::fs::write(apk.join("repo/vmlinux"), &kernel).unwrap();
    let kernel_sha = common::hex(&<sha2::Sha256 as sha2::Digest>::digest(&kernel));
    std::fs::write(d.join("tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    let agent = d.join("agent");
    std::fs::write(&agent, b"\x7fELF agent").unwrap();
    let recipe = |sha: &str| {
        format!(
            r#"name = "custom-alpine"
base = "{registry}/alpine:3.20"
packages = ["openssh"]
hostname = "box"
size = "auto"
fstab = ["/dev/vda / ext4 rw,relatime 0 1"]
root_password = "secret"

[sshd]
permit_root_login = "yes"
password_authentication = true

[[files]]
create-file = "/etc/motd"
contents = "hello from rootsmith\n"
mode = "0640"
gid = 42

[[files]]
copy-file = "/usr/local/bin/tool"
src = "tool.sh"
mode = "0755"

[[groups]]
name = "ops"

[[users]]
name = "app"
groups = ["ops"]

[kernel]
url = "{url}/vmlinux"
sha256 = "{sha}"
"#
        )
    };
    let file = d.join("custom.toml");
    std::fs::write(&file, recipe(&kernel_sha)).unwrap();
    let out = d.join("custom");
    let args = s(&[
        "build",
        file.to_str().unwrap(),
        "--apk-repository",
        &format!("{url}/main"),
        "--apk-key",
        key.to_str().unwrap(),
        "--cache-dir",
        d.join("custom-cache").to_str().unwrap(),
        "--guest-agent",
        agent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let r = run(&mut rootsmith(&args)).must("custom recipe");
    let j = r.json();
    assert_eq!(
        j["kernel_path"],
        out.join("vmlinux.bin").display().to_string()
    );
    assert_eq!(std::fs::read(out.join("vmlinux.bin")).unwrap(), kernel);
    let img = out.join("rootfs.ext4");
    assert_eq!(common::fsck(&img), 0);
    let l = common::list_image(&img);
    let mode = |p: &str| {
        let e = l.get(p).unwrap_or_else(|| panic!("{p} missing"));
        (e.mode, e.uid, e.gid)
    };
    assert_eq!(mode("/init"), (0o755, 0, 0));
    assert_eq!(mode("/etc/motd"), (0o640, 0, 42));
    assert_eq!(mode("/usr/local/bin/tool"), (0o755, 0, 0));
    assert_eq!(mode("/usr/local/bin/smolvm-guest-agent"), (0o755, 0, 0));
    assert_eq!(mode("/tmp").0, 0o1777);
    let fs = ext4_view::Ext4::load_from_path(&img).unwrap();
    let text = |p: &str| fs.read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(text("/etc/motd"), "hello from rootsmith\n");
    assert_eq!(text("/etc/hostname"), "box\n");
    assert!(text("/etc/fstab").contains("/dev/vda / ext4 rw,relatime 0 1\n"));
    // `ops` took gid 1000 first, so app's own group is the next free one.
    let passwd = text("/etc/passwd");
    assert!(
        passwd.contains("\napp:x:1000:1001::/home/app:/bin/sh\n"),
        "{passwd}"
    );
    let group = text("/etc/group");
    assert!(group.contains("\nops:x:1000:app\napp:x:1001:\n"), "{group}");
    let root = text("/etc/shadow");
    let hash = root
        .lines()
        .find(|l| l.starts_with("root:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .to_string();
    assert!(hash.starts_with("$6$"), "{hash}");
    let conf = text("/etc/ssh/sshd_config.d/00-rootsmith.conf");
    assert!(
        conf.contains("PermitRootLogin yes\nPasswordAuthentication yes\n"),
        "{conf}"
    );
    // The hash is reproducible: the same password and name give the same line.
    let again = run(&mut rootsmith(&args)).must("custom recipe again");
    assert_eq!(again.json()["cached"], true);

    // A wrong kernel hash: one line, and the previous image and kernel stay.
    let before = (sha(&img), std::fs::read(out.join("vmlinux.bin")).unwrap());
    std::fs::write(&file, recipe(&"0".repeat(64))).unwrap();
    let bad = run(&mut rootsmith(&args));
    fails_with(&bad, "kernel.sha256", "wrong kernel hash");
    assert_eq!(
        (sha(&img), std::fs::read(out.join("vmlinux.bin")).unwrap()),
        before
    );
}
