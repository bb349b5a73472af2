//! `rootsmith boot` end to end: the shipped recipe `debian-ssh-key-minimal` built by
//! `rootsmith build` from the fixture base and a local signed apt repository
//! (`../shared/fixtures/apt-repo.sh build DIR openssh-server linux-image-cloud-amd64`), with
//! the kernel from that repository's `linux-image-cloud-amd64` (`--kernel-package`, modules
//! in the image, `--initramfs` for virtio-blk) and the static init from `cargo build-init`,
//! booted under QEMU (`../shared/fixtures/qemu.sh`):
//! 1. `DIR` (initrd, virtio-blk): SmolVM's exact command line, a fresh ed25519 key, the
//!    acceptance command as root, shut down by itself, `e2fsck -fn` clean on the flattened
//!    overlay, the built image unchanged;
//! 2. the same image without the initrd, root on NVMe (modules loaded by the image's init):
//!    another VM, another host key, and rootsmith exits with the command's status;
//! 3. a guest that never answers (`ip=off`) ends at `--timeout` with its console lines.
//!
//! Bad inputs give clear errors without a boot. Three boots in all (TCG is slow).
//!
//! Outside CI a missing prerequisite skips with a reason; under `CI=true` it fails.

use crate::common::{in_ci, require, rootsmith, which};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const ACCEPTANCE: &str =
    "cat /etc/os-release; id -u; test -s /etc/ssh/ssh_host_ed25519_key; findmnt /; ls -l /run/sshd";
/// Built once for every test in this file.
struct Fixture {
    qemu: PathBuf,
    /// rootfs.ext4, vmlinux.bin, initrd.img.
    image: PathBuf,
}

fn sh(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::inherit()).output().ok()?;
    if !out.status.success() {
        eprintln!("{cmd:?} failed: {}", out.status);
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(make_fixture).as_ref()
}

fn make_fixture() -> Option<Fixture> {
    let qemu =
        sh(Command::new("bash").arg(format!("{SHARED}/qemu.sh"))).map(|s| PathBuf::from(s.trim()));
    if !require(qemu.is_some(), "QEMU (../shared/fixtures/qemu.sh failed)") {
        return None;
    }
    for tool in ["ssh", "ssh-keygen", "e2fsck"] {
        if !require(which(tool).is_some(), tool) {
            return None;
        }
    }
    // Under the target's temp dir (a static is never dropped): replaced on each run.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-fixture");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("mkdir the fixture dir");
    let repo = dir.join("repo");
    let apt_repo = format!("{SHARED}/apt-repo.sh");
    let built = sh(Command::new("bash")
        .arg(&apt_repo)
        .arg("build")
        .arg(&repo)
        .args(["openssh-server", "linux-image-cloud-amd64"]));
    if !require(
        built.is_some(),
        "an apt repository of openssh-server + linux-image-cloud-amd64 (apt-repo.sh build)",
    ) {
        return None;
    }
    sh(Command::new("bash").arg(&apt_repo).arg("serve").arg(&repo)).expect("apt-repo.sh serve");
    let source = fs::read_to_string(repo.join("sources.list")).expect("sources.list");
    let init =
        build_init().expect("cargo build-init (x86_64-unknown-linux-musl target installed?)");
    let image = dir.join("image");
    let out = rootsmith()
        .args(["build", "debian-ssh-key-minimal", "--quiet", "--base"])
        .arg(format!(
            "rootfs:{SHARED}/base/debian-bookworm-slim-amd64.rootfs.tar.xz"
        ))
        .args(["--apt-source", source.trim()])
        .args(["--kernel-package", "linux-image-cloud-amd64", "--initramfs"])
        .arg("--init")
        .arg(&init)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--out")
        .arg(&image)
        .output()
        .expect("run rootsmith build");
    let _ = sh(Command::new("bash").arg(&apt_repo).arg("stop").arg(&repo));
    assert!(
        out.status.success(),
        "rootsmith build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["rootfs.ext4", "vmlinux.bin", "initrd.img"] {
        assert!(image.join(f).is_file(), "build wrote no {f}");
    }
    Some(Fixture {
        qemu: qemu.expect("checked"),
        image,
    })
}

/// The static init: `ROOTSMITH_INIT_BIN`, else `cargo build-init`.
fn build_init() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ROOTSMITH_INIT_BIN") {
        return Some(PathBuf::from(p));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = sh(Command::new(cargo)
        .args(["build-init", "--message-format=json-render-diagnostics"])
        .current_dir(REPO))?;
    out.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        if v["reason"] != "compiler-artifact" || v["target"]["name"] != "rootsmith-init" {
            return None;
        }
        v["executable"].as_str().map(PathBuf::from)
    })
}

/// `rootsmith boot` with QEMU from the fixture.
fn boot(f: &Fixture) -> Command {
    let mut c = rootsmith();
    c.arg("boot")
        .arg("--qemu")
        .arg(&f.qemu)
        .env_remove("ROOTSMITH_ACCEL");
    c
}

fn fresh_key(dir: &Path) -> PathBuf {
    let k = dir.join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "boot-test", "-f"])
        .arg(&k)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    k
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn report(stdout: &str) -> serde_json::Value {
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON report ({e}) in:\n{stdout}"))
}

#[test]
fn boot_debian_image_runs_the_command_over_ssh_and_shuts_down_clean() {
    let Some(f) = fixture() else { return };
    let keys = tempfile::tempdir().expect("tempdir");
    let key = fresh_key(keys.path());
    let before = crate::common::sha256_file(&f.image.join("rootfs.ext4"));
    // Boot 1: DIR (initrd), accel auto (a hanging KVM falls back to TCG), the acceptance
    // command, --check.
    let cmd = format!("{ACCEPTANCE}; cat /etc/ssh/ssh_host_ed25519_key.pub");
    let out = boot(f)
        .arg(&f.image)
        .arg("--authorized-key")
        .arg(key.with_extension("pub"))
        .args(["--exec", &cmd, "--json", "--check", "--timeout", "240"])
        .output()
        .expect("run rootsmith boot");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "boot 1 failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\""),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == "0"),
        "id -u is not 0:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("/ ") && l.contains(" ext4 ") && l.contains("rw")),
        "findmnt /:\n{stdout}"
    );
    assert!(stdout.contains("total 0"), "ls -l /run/sshd:\n{stdout}");
    let host_key_1 = stdout
        .lines()
        .find(|l| l.starts_with("ssh-ed25519 "))
        .expect("host key printed")
        .to_string();
    let r = report(&stdout);
    // SmolVM's exact shape, nothing else: the initramfs loads virtio-blk and virtio-net.
    let cmdline = r["cmdline"].as_str().expect("cmdline");
    let b64 = cmdline
        .strip_prefix("console=ttyS0 reboot=k panic=1 root=/dev/vda rw init=/init ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off smolvm.authorized_key_b64=")
        .unwrap_or_else(|| panic!("not SmolVM's command line: {cmdline}"));
    assert!(
        !b64.is_empty()
            && b64
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)),
        "{cmdline}"
    );
    assert_eq!(r["disk"], "virtio");
    assert_eq!(r["exec_status"], 0);
    assert_eq!(
        r["qemu_status"], 0,
        "QEMU did not exit cleanly: {r}\n{stderr}"
    );
    assert!(
        r["shutdown"] == "ctrl-alt-del" || r["shutdown"] == "acpi",
        "not a clean shutdown: {}",
        r["shutdown"]
    );
    assert_eq!(
        r["fsck"]["clean"], true,
        "e2fsck -fn: {}",
        r["fsck"]["output"]
    );
    // A qcow2 overlay when qemu-img is installed, else a copy: never the image itself.
    assert!(
        r["disk_mode"] == "overlay" || r["disk_mode"] == "copy",
        "{}",
        r["disk_mode"]
    );
    let stages: Vec<&str> = r["milestones"]
        .as_array()
        .expect("milestones")
        .iter()
        .filter_map(|m| m["stage"].as_str())
        .collect();
    for s in [
        "init-start",
        "mounts-ready",
        "net-ready",
        "first-service-started",
    ] {
        assert!(stages.contains(&s), "milestone {s} missing: {stages:?}");
    }
    let t = &r["timings"];
    let banner = t["banner"].as_f64().expect("banner time");
    let init = t["init_exec"].as_f64().expect("init exec time");
    assert!(init < banner, "{t}");
    eprintln!(
        "boot 1: {}",
        stderr
            .lines()
            .filter(|l| l.contains("time to ssh") || l.contains("milestones"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The built image is untouched (the guest wrote to the overlay).
    assert_eq!(
        crate::common::sha256_file(&f.image.join("rootfs.ext4")),
        before
    );

    // Boot 2: the image without the initrd, root on NVMe, TCG: another VM, another host key;
    // rootsmith exits with the command's status.
    let out = boot(f)
        .arg(f.image.join("rootfs.ext4"))
        .arg("--kernel")
        .arg(f.image.join("vmlinux.bin"))
        .args(["--disk", "nvme"])
        .arg("--identity")
        .arg(&key)
        .args([
            "--accel",
            "tcg",
            "--exec",
            "cat /etc/ssh/ssh_host_ed25519_key.pub; exit 7",
            "--timeout",
            "240",
        ])
        .output()
        .expect("run rootsmith boot");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(7), "boot 2:\n{stdout}\n{stderr}");
    assert!(stderr.contains("stopped by CtrlAltDel"), "{stderr}");
    let host_key_2 = stdout
        .lines()
        .find(|l| l.starts_with("ssh-ed25519 "))
        .expect("host key");
    assert_ne!(
        host_key_1, host_key_2,
        "two VMs of one image share a host key"
    );
}

#[test]
fn boot_refuses_bad_inputs_clearly() {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let not_kernel = dir.path().join("vmlinuz");
    fs::write(&not_kernel, "#!/bin/sh\necho not a kernel\n").expect("write");
    let not_ext4 = dir.path().join("rootfs.ext4");
    fs::write(&not_ext4, vec![0u8; 8192]).expect("write");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port().to_string();
    let rootfs = f.image.join("rootfs.ext4");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![
                rootfs.clone().into(),
                "--kernel".into(),
                not_kernel.clone().into(),
            ],
            "not a Linux kernel",
        ),
        (
            vec![
                not_ext4.clone().into(),
                "--kernel".into(),
                f.image.join("vmlinux.bin").into(),
            ],
            "not an ext4 filesystem",
        ),
        (
            vec![
                f.image.clone().into(),
                "--ssh-port".into(),
                busy_port.clone().into(),
            ],
            "is in use",
        ),
        (vec![dir.path().join("nothing").into()], "No such file"),
    ];
    for (args, want) in cases {
        let out = boot(f).args(&args).output().expect("run");
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(want),
            "{args:?}: want {want:?} in: {stderr}"
        );
    }
    let out = rootsmith()
        .args(["boot", "--qemu", "/nonexistent"])
        .arg(&f.image)
        .output()
        .expect("run");
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("--qemu /nonexistent: no such file"),
        "{stderr}"
    );
    let out = rootsmith()
        .arg("boot")
        .arg(&f.image)
        .env("PATH", dir.path())
        .env_remove("ROOTSMITH_QEMU")
        .output()
        .expect("run");
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("no qemu-system-x86_64 on PATH") && stderr.contains("install"),
        "{stderr}"
    );
}

#[test]
fn boot_of_a_guest_that_never_answers_times_out_with_the_console() {
    let Some(f) = fixture() else { return };
    // `ip=off` (the last ip= wins): eth0 never gets an address, sshd starts but no packet
    // reaches it.
    let out = boot(f)
        .arg(&f.image)
        .args([
            "--accel",
            "tcg",
            "--append",
            "ip=off",
            "--timeout",
            "30",
            "--exec",
            "true",
        ])
        .output()
        .expect("run");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not answer on ssh") && stderr.contains("within 30 s"),
        "{stderr}"
    );
    assert!(stderr.contains("last console lines:"), "{stderr}");
    assert!(
        stderr.contains("  | ") && stderr.contains("rootsmith-init"),
        "no console lines in:\n{stderr}"
    );
    if !in_ci() {
        eprintln!("timeout case ok");
    }
}
