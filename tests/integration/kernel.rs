//! Kernels from a real Debian cloud kernel package: a signed local apt repository holding
//! `linux-image-cloud-amd64` and openssh-server (`../shared/fixtures/apt-repo.sh build DIR
//! openssh-server linux-image-cloud-amd64`), served on loopback laid out like the mirrors
//! the base names. Checked: the metapackage chain through rootsmith's deb machinery (only the
//! two kernel packages fetched, dpkg untouched, modules in the tree); the bzImage → ELF
//! extraction against `file`; `modules.dep` against `depmod -b` (kmod) on the same modules;
//! the initramfs against `cpio -t` and byte-identical across runs; and a boot under QEMU
//! with SmolVM's exact arguments (`root=/dev/vda rw init=/init ip=…`) through that initramfs.

use crate::common::{have, require, rootsmith};
use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rootsmith::kernel::{bzimage, initramfs, package};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
const BASE: &str = "debian-bookworm-slim-amd64.rootfs.tar.xz";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn tempdir(tag: &str) -> PathBuf {
    let d = target_dir().join(format!("tmp-kernel-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir temp");
    d
}

/// The repository, served once per test binary run.
struct Repo {
    /// `http://127.0.0.1:PORT` (the `--apt-mirror` value).
    url: String,
    key: PathBuf,
    /// The versioned kernel `.deb` in the pool.
    image_deb: PathBuf,
    /// `dpkg-deb -x` of it.
    unpacked: PathBuf,
    release: String,
}

fn build_repo() -> Option<Repo> {
    let out = target_dir().join("fixtures/apt-repo-kernel");
    if !out.join("repo.env").exists() {
        let ok = Command::new(format!("{FIXTURES}/apt-repo.sh"))
            .args([
                "build",
                out.to_str()?,
                "openssh-server",
                "linux-image-cloud-amd64",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !require(
            ok,
            "apt-repo.sh build with linux-image-cloud-amd64 (host apt mirrors, root)",
        ) {
            return None;
        }
    }
    let tsv = std::fs::read_to_string(out.join("packages.tsv")).expect("packages.tsv");
    let rel = tsv
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f[0].starts_with("linux-image-") && f[0] != "linux-image-cloud-amd64")
        .map(|f| f[5].to_string())
        .expect("the versioned linux-image package in packages.tsv");
    let repo = out.join("repo");
    let root = target_dir().join(format!("fixtures/kernel-mirror-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let link = |target: &Path, at: &str| {
        let p = root.join(at);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        symlink(target, p).expect("symlink");
    };
    let suite = repo.join("dists/bookworm");
    link(&repo.join("pool"), "debian/pool");
    link(&repo.join("pool"), "debian-security/pool");
    for s in ["bookworm", "bookworm-updates"] {
        link(&suite, &format!("debian/dists/{s}"));
    }
    link(&suite, "debian-security/dists/bookworm-security");
    let port = crate::deb::serve(root);
    let unpacked = target_dir().join("fixtures/kernel-unpacked");
    if !unpacked.join("boot").is_dir() {
        let _ = std::fs::remove_dir_all(&unpacked);
        let st = Command::new("dpkg-deb")
            .arg("-x")
            .arg(repo.join(&rel))
            .arg(&unpacked)
            .status()
            .expect("dpkg-deb");
        assert!(st.success(), "dpkg-deb -x {rel}");
    }
    let release = std::fs::read_dir(unpacked.join("lib/modules"))
        .expect("lib/modules in the kernel package")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("one release");
    Some(Repo {
        url: format!("http://127.0.0.1:{port}"),
        key: out.join("key.gpg"),
        image_deb: repo.join(rel),
        unpacked,
        release,
    })
}

fn repo() -> Option<&'static Repo> {
    static R: OnceLock<Option<Repo>> = OnceLock::new();
    R.get_or_init(build_repo).as_ref()
}

/// `depmod -b` (kmod) on a copy of the package's modules: its modules.dep text.
fn host_depmod(r: &Repo, dir: &Path) -> Option<String> {
    let depmod = crate::common::which("depmod");
    if !require(depmod.is_some(), "depmod (apt-get install kmod)") {
        return None;
    }
    let copy = dir.join("depmod-root");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&r.unpacked)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(st.success());
    let out = Command::new(depmod?)
        .arg("-b")
        .arg(&copy)
        .arg(&r.release)
        .output()
        .expect("depmod");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        std::fs::read_to_string(copy.join(format!("lib/modules/{}/modules.dep", r.release)))
            .expect("depmod wrote modules.dep"),
    )
}

/// Line-by-line comparison with depmod: the same modules in the same order, the same
/// dependency sets everywhere, and the same order on every virtio/ext4-related line.
fn compare_with_depmod(ours: &str, theirs: &str) -> (usize, usize) {
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), theirs.lines().collect());
    assert_eq!(a.len(), b.len(), "module count differs from depmod");
    let mut exact = 0;
    for (x, y) in a.iter().zip(&b) {
        let split = |l: &str| {
            let (p, d) = l.split_once(':').expect("path: deps");
            let mut set: Vec<String> = d.split_whitespace().map(str::to_string).collect();
            set.sort();
            (p.to_string(), set)
        };
        assert_eq!(split(x), split(y), "\nours:   {x}\ndepmod: {y}");
        if x == y {
            exact += 1;
        } else {
            assert!(
                !["virtio", "failover", "ext4", "jbd2", "mbcache", "crc16"]
                    .iter()
                    .any(|k| x.contains(k)),
                "dependency order differs on a line the VM uses:\nours:   {x}\ndepmod: {y}"
            );
        }
    }
    (exact, a.len())
}

#[test]
fn kernel_package_from_the_image_repositories_without_its_dependencies() {
    let Some(r) = repo() else { return };
    let dir = tempdir("pkg");
    let mut tree = rootsmith::build::load_base(&rootsmith::build::Base::RootfsTar(
        Path::new(FIXTURES).join("base").join(BASE),
    ))
    .expect("load the base");
    let status_before = tree.read_file(b"/var/lib/dpkg/status").expect("status");
    let opts = rootsmith::pkg::deb::DebOptions {
        mirror: Some(r.url.clone()),
        extra_keys: vec![r.key.clone()],
        now: 1_800_000_000,
        epoch: Some(1_700_000_000),
        ..Default::default()
    };
    let cache = rootsmith::cache::Cache::open(&dir.join("cache")).expect("cache");
    let fetcher = rootsmith::fetch::Fetcher::default();
    let t0 = Instant::now();
    let k = package::install(
        &mut tree,
        "linux-image-cloud-amd64",
        &opts,
        &cache,
        &fetcher,
    )
    .expect("install the kernel package");
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "kernel package: {} {} ({}), {} modules, {} MiB, {secs:.2}s; network: {}; root disk: {}",
        k.package,
        k.version,
        k.release,
        k.modules,
        k.module_bytes >> 20,
        k.network.load.join(","),
        k.root_disk.load.join(",")
    );
    assert_eq!(k.release, r.release);
    assert!(k.package.starts_with("linux-image-6."), "{}", k.package);
    // Only the metapackage and the image: 1.5 KB + the image's .deb.
    let deb_len = std::fs::metadata(&r.image_deb).expect("deb").len();
    assert!(
        k.downloaded >= deb_len && k.downloaded < deb_len + (4 << 20),
        "downloaded {} bytes for a {deb_len}-byte kernel .deb",
        k.downloaded
    );
    // What the VM loads for virtio-net over PCI (rootsmith.modules=virtio_pci,virtio_net).
    assert_eq!(
        k.network.load,
        [
            "virtio_ring",
            "virtio",
            "virtio_pci_modern_dev",
            "virtio_pci_legacy_dev",
            "virtio_pci",
            "failover",
            "net_failover",
            "virtio_net"
        ]
    );
    assert!(k.root_disk.load.contains(&"virtio_blk".to_string()));
    assert!(
        k.root_disk.builtin.contains(&"ext4".to_string()),
        "{:?}",
        k.root_disk
    );
    // dpkg is left unaware, and nothing the kernel package depends on came in.
    assert_eq!(
        tree.read_file(b"/var/lib/dpkg/status").expect("status"),
        status_before
    );
    for absent in [
        "/usr/bin/kmod".to_string(),
        "/usr/sbin/update-initramfs".to_string(),
        format!("/boot/vmlinuz-{}", k.release),
        format!("/var/lib/dpkg/info/{}.list", k.package),
    ] {
        assert!(
            tree.lookup(absent.as_bytes()).is_none(),
            "{absent} is in the tree"
        );
    }
    let prov = String::from_utf8(
        tree.read_file(package::PROVENANCE.as_bytes())
            .expect("provenance"),
    )
    .expect("utf-8");
    assert!(prov.contains(&format!("package={}\n", k.package)), "{prov}");
    // The module tree is the package's, with a modules.dep like depmod's.
    let ours = String::from_utf8(
        tree.read_file(format!("/lib/modules/{}/modules.dep", k.release).as_bytes())
            .expect("modules.dep in the tree"),
    )
    .expect("utf-8");
    if let Some(theirs) = host_depmod(r, &dir) {
        let (exact, all) = compare_with_depmod(&ours, &theirs);
        eprintln!("modules.dep: {exact}/{all} lines byte-identical to depmod's, all {all} with the same dependency sets");
        assert!(exact * 100 >= all * 95, "{exact}/{all}");
    }
    // The bzImage is the package's and converts to an ELF.
    let bz =
        std::fs::read(r.unpacked.join(format!("boot/vmlinuz-{}", k.release))).expect("vmlinuz");
    assert_eq!(k.vmlinuz, bz);
    let v = bzimage::extract_vmlinux(&k.vmlinuz).expect("ELF from the bzImage");
    assert!(v.from_header);
    // An initramfs from the tree: reproducible, and holding what the root disk needs.
    let init = dir.join("fake-init");
    let init_bytes = b"\x7fELF not really an init".to_vec();
    std::fs::write(&init, &init_bytes).expect("write");
    let a = initramfs::from_tree(&tree, &k.release, &init_bytes, &Default::default())
        .expect("initramfs");
    let b = initramfs::from_tree(&tree, &k.release, &init_bytes, &Default::default())
        .expect("initramfs");
    assert_eq!(a.bytes, b.bytes);
    for m in ["virtio_pci", "virtio_blk", "virtio_net"] {
        assert!(
            a.closure.load.contains(&m.to_string()),
            "{m}: {:?}",
            a.closure
        );
    }
}

#[test]
fn kernel_bzimage_to_elf_matches_file_and_bad_input_is_refused() {
    let Some(r) = repo() else { return };
    let dir = tempdir("elf");
    let bz = r.unpacked.join(format!("boot/vmlinuz-{}", r.release));
    let out = dir.join("vmlinux.bin");
    let t0 = Instant::now();
    let o = rootsmith()
        .args(["kernel", "extract", "--json", "-o"])
        .arg(&out)
        .arg(&bz)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    eprintln!("extract: {v} in {:.2}s", t0.elapsed().as_secs_f64());
    assert_eq!(v["from_header"], true);
    let elf = std::fs::read(&out).expect("vmlinux");
    assert!(elf.len() as u64 > std::fs::metadata(&bz).expect("bz").len());
    if require(have("file"), "file(1)") {
        let f = Command::new("file")
            .arg("-b")
            .arg(&out)
            .output()
            .expect("file");
        let verdict = String::from_utf8_lossy(&f.stdout);
        assert!(
            verdict.starts_with("ELF 64-bit LSB executable, x86-64"),
            "file says: {verdict}"
        );
    }
    // The header-less path gives the same ELF (extract-vmlinux's scan).
    let scanned = bzimage::scan(&std::fs::read(&bz).expect("bz")).expect("scan");
    assert_eq!(scanned.elf, elf);
    // The module tools on the unpacked package: the closure the boot command line needs.
    let o = rootsmith()
        .args(["kernel", "closure", "--json"])
        .arg(&r.unpacked)
        .args(["virtio_pci", "virtio_net", "ext4"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(c["release"], r.release.as_str());
    assert_eq!(c["load"].as_array().map(Vec::len), Some(8), "{c}");
    assert_eq!(c["builtin"], serde_json::json!(["ext4"]));
    let o = rootsmith()
        .args(["kernel", "closure"])
        .arg(&r.unpacked)
        .arg("no_such_module")
        .output()
        .expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no_such_module"));
    // Not a kernel: a clear error, nothing written.
    let bad = dir.join("bad.out");
    let o = rootsmith()
        .args(["kernel", "extract", "-o"])
        .arg(&bad)
        .arg(r.unpacked.join(format!("boot/config-{}", r.release)))
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a bzImage"), "{err}");
    assert!(!bad.exists());
}

#[test]
fn kernel_initramfs_lists_with_cpio_is_reproducible_and_boots_smolvm_args() {
    let Some(r) = repo() else { return };
    let dir = tempdir("initrd");
    let Some(init) = crate::init_boot::build_init() else {
        assert!(!crate::common::in_ci(), "cargo build-init failed");
        eprintln!("skipping: cargo build-init failed");
        return;
    };
    let mk = |out: &Path| {
        let o = rootsmith()
            .args(["kernel", "initramfs", "--json", "--init"])
            .arg(&init)
            .arg("-o")
            .arg(out)
            .arg(&r.unpacked)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .expect("run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("json")
    };
    let (one, two) = (dir.join("initrd-1.img"), dir.join("initrd-2.img"));
    let j = mk(&one);
    mk(&two);
    let bytes = std::fs::read(&one).expect("initrd");
    assert_eq!(
        bytes,
        std::fs::read(&two).expect("initrd"),
        "not byte-identical"
    );
    eprintln!("initramfs: {j}");
    if require(have("cpio"), "cpio (apt-get install cpio)") {
        let raw = dir.join("initrd.cpio");
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!("zcat {} > {}", one.display(), raw.display()))
            .status()
            .expect("zcat");
        assert!(st.success());
        let o = Command::new("cpio")
            .args(["-t", "-v", "--quiet", "-F"])
            .arg(&raw)
            .output()
            .expect("cpio");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let listing = String::from_utf8_lossy(&o.stdout);
        let names: BTreeMap<&str, &str> = listing
            .lines()
            .filter_map(|l| Some((l.split_whitespace().last()?, l)))
            .collect();
        let init_line = names.get("init").expect("init in the archive");
        assert!(init_line.starts_with("-rwxr-xr-x"), "{init_line}");
        assert!(names
            .get("dev/console")
            .is_some_and(|l| l.starts_with("crw-------")));
        let base = format!("lib/modules/{}", r.release);
        for m in [
            "drivers/block/virtio_blk.ko",
            "drivers/virtio/virtio_pci.ko",
            "drivers/net/virtio_net.ko",
        ] {
            assert!(
                names.contains_key(format!("{base}/kernel/{m}").as_str()),
                "{m} missing:\n{listing}"
            );
        }
        assert!(names.contains_key(format!("{base}/modules.dep").as_str()));
        assert!(names.contains_key("etc/rootsmith/initramfs"));
        assert!(
            listing
                .lines()
                .all(|l| l.contains(" root ") || l.contains(" 0 ")),
            "owners are root:\n{listing}"
        );
    }
    boot_with_smolvm_args(r, &dir, &init, &one);
}

/// QEMU from `../shared/fixtures/qemu.sh` (None, after saying why, outside CI).
fn qemu() -> Option<PathBuf> {
    let q = Command::new("bash")
        .arg(format!("{FIXTURES}/qemu.sh"))
        .stderr(Stdio::inherit())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    require(q.is_some(), "QEMU (../shared/fixtures/qemu.sh)").then_some(q?)
}

/// SmolVM's boot arguments for QEMU (the key is a placeholder).
const SMOLVM_ARGS: &str = "console=ttyS0 reboot=k panic=1 root=/dev/vda rw init=/init \
    ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off smolvm.authorized_key_b64=c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUhKdmIzUnpiV2wwYUMxMFpYTjBMV3RsZVMxdWIzUXRZUzF5WldGc0xXOXVaUSB0ZXN0Cg==";

/// Boots `kernel` + `initrd` with `img` on virtio-blk, a virtio NIC and SmolVM's exact
/// arguments, until `want` appears on the console (or 120 s). Returns the console and
/// the time from QEMU's start.
fn boot_smolvm(
    qemu: &Path,
    kernel: &Path,
    initrd: &Path,
    img: &Path,
    dir: &Path,
    want: &str,
) -> (String, Duration) {
    let serial = dir.join("serial.log");
    let _ = std::fs::remove_file(&serial);
    let t0 = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-machine", "q35,accel=tcg", "-m", "512", "-smp", "1"])
        .args([
            "-display",
            "none",
            "-nodefaults",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(SMOLVM_ARGS.split_whitespace().collect::<Vec<_>>().join(" "))
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=d0,format=raw,snapshot=on",
            img.display()
        ))
        .args(["-device", "virtio-blk-pci,drive=d0"])
        .args([
            "-netdev",
            "user,id=n0,restrict=on",
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start qemu");
    let console =
        || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let mut up = None;
    while t0.elapsed() < Duration::from_secs(120) {
        if console().contains(want) {
            up = Some(t0.elapsed());
            break;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("QEMU exited ({s}) before {want:?}:\n{}", console());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = console();
    let up = up.unwrap_or_else(|| panic!("no {want:?} within 120 s:\n{text}"));
    // The initramfs loaded the modules, switched root, and the image's /init took over.
    let pos = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("no {s:?} on the console:\n{text}"))
    };
    assert!(pos("rootsmith-init: initramfs-start") < pos("virtio_blk virtio"));
    assert!(
        pos("rootsmith-init: initramfs: switching to /init on /dev/vda")
            < pos("rootsmith-init: init-start")
    );
    assert!(text.contains("EXT4-fs (vda): mounted filesystem"));
    (text, up)
}

/// Boots the cloud kernel's bzImage with the initramfs and a rootfs holding only /init and
/// the modules; waits for the real init's network.
fn boot_with_smolvm_args(r: &Repo, dir: &Path, init: &Path, initrd: &Path) {
    let Some(qemu) = qemu() else { return };
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("lib")).expect("mkdir");
    std::fs::copy(init, root.join("init")).expect("copy init");
    let st = Command::new("cp")
        .arg("-a")
        .arg(r.unpacked.join("lib/modules"))
        .arg(root.join("lib/modules"))
        .status()
        .expect("cp");
    assert!(st.success());
    let img = dir.join("rootfs.ext4");
    let o = rootsmith()
        .args(["mkfs", "--owner", "0:0", "--from-dir"])
        .arg(&root)
        .arg(&img)
        .output()
        .expect("mkfs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let kernel = r.unpacked.join(format!("boot/vmlinuz-{}", r.release));
    let (text, up) = boot_smolvm(
        &qemu,
        &kernel,
        initrd,
        &img,
        dir,
        "rootsmith-init: net-ready",
    );
    assert!(
        text.contains("eth0: 10.0.2.15/24 gateway 10.0.2.2"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("rootsmith-init: modules: loaded"))
        .unwrap_or_default();
    eprintln!(
        "bzImage boot through the initramfs: net-ready {:.2}s after QEMU start; {line}",
        up.as_secs_f64()
    );
}

fn debugfs_cat(img: &Path, path: &str) -> Option<String> {
    let o = Command::new(crate::common::which("debugfs")?)
        .args(["-R", &format!("cat {path}")])
        .arg(img)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    (o.status.success() && !o.stdout.is_empty())
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn kernel_build_with_a_kernel_package_writes_elf_initrd_and_modules() {
    let Some(r) = repo() else { return };
    let Some(init) = crate::init_boot::build_init() else {
        assert!(!crate::common::in_ci(), "cargo build-init failed");
        return;
    };
    let dir = tempdir("build");
    let out = dir.join("out");
    let base = format!("rootfs:{FIXTURES}/base/{BASE}");
    let args = |extra: &[&str]| {
        let mut c = rootsmith();
        c.args(["build", "--base", &base, "--package", "openssh-server"])
            .args(["--apt-mirror", &r.url, "--apt-key"])
            .arg(&r.key)
            .arg("--init")
            .arg(&init)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--out")
            .arg(&out)
            .args(extra)
            .env("SOURCE_DATE_EPOCH", "1700000000");
        c
    };
    let t0 = Instant::now();
    let o = args(&[
        "--kernel-package",
        "linux-image-cloud-amd64",
        "--kernel-format",
        "elf",
        "--initramfs",
        "--json",
    ])
    .output()
    .expect("run rootsmith build");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    eprintln!(
        "build with a kernel package: {:.2}s, stages {}, kernel_package {}",
        t0.elapsed().as_secs_f64(),
        j["stages"],
        j["kernel_package"]["release"]
    );
    // vmlinux.bin is the ELF, initrd.img the initramfs, both beside rootfs.ext4.
    let vmlinux = std::fs::read(out.join("vmlinux.bin")).expect("vmlinux.bin");
    bzimage::check_elf_x86_64(&vmlinux).expect("vmlinux.bin is an x86-64 ELF");
    assert_eq!(
        j["kernel_path"],
        out.join("vmlinux.bin").display().to_string()
    );
    assert_eq!(
        j["initrd_path"],
        out.join("initrd.img").display().to_string()
    );
    let gz = std::fs::read(out.join("initrd.img")).expect("initrd.img");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw)
        .expect("gunzip");
    let names: Vec<String> = rootsmith::kernel::cpio::entries(&raw)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(names.iter().any(|n| n == "init"));
    assert!(
        names.iter().any(|n| n.ends_with("/virtio_blk.ko")),
        "{names:?}"
    );
    let kp = &j["kernel_package"];
    assert_eq!(kp["format"], "elf");
    assert_eq!(
        kp["network"]["load"].as_array().map(Vec::len),
        Some(8),
        "{kp}"
    );
    assert!(kp["initramfs_modules"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == "virtio_blk")));
    // The package set is openssh-server's: nothing the kernel package depends on.
    let pkgs: Vec<&str> = j["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for absent in [
        "kmod",
        "initramfs-tools",
        "linux-base",
        "linux-image-cloud-amd64",
    ] {
        assert!(!pkgs.contains(&absent), "{absent} was installed: {pkgs:?}");
    }
    let img = out.join("rootfs.ext4");
    assert_eq!(crate::common::fsck(&img), 0, "e2fsck -fn");
    if require(have("debugfs"), "debugfs (e2fsprogs)") {
        let release = kp["release"].as_str().expect("release");
        let prov =
            debugfs_cat(&img, package::PROVENANCE).expect("/etc/rootsmith/kernel in the image");
        assert!(prov.contains(&format!("release={release}\n")), "{prov}");
        let dep = debugfs_cat(&img, &format!("/usr/lib/modules/{release}/modules.dep"))
            .or_else(|| debugfs_cat(&img, &format!("/lib/modules/{release}/modules.dep")))
            .expect("modules.dep in the image");
        assert!(
            dep.contains("kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko"),
            "modules.dep"
        );
        let mods = debugfs_cat(&img, package::MODULES_CONFIG).expect("/etc/rootsmith/modules");
        assert!(mods.trim_end().ends_with("virtio_net"), "{mods}");
        let status = debugfs_cat(&img, "/var/lib/dpkg/status").expect("dpkg status");
        assert!(
            !status.contains("Package: linux-image"),
            "dpkg knows the kernel"
        );
    }
    // The image boots its ELF kernel (PVH entry under QEMU, as Firecracker loads it) through
    // its initramfs with SmolVM's exact arguments, and sshd starts.
    if let Some(q) = qemu() {
        let (text, up) = boot_smolvm(
            &q,
            &out.join("vmlinux.bin"),
            &out.join("initrd.img"),
            &img,
            &dir,
            "Server listening on",
        );
        assert!(
            text.contains("eth0: 10.0.2.15/24 gateway 10.0.2.2"),
            "{text}"
        );
        eprintln!("built image (ELF kernel, initramfs, SmolVM args): sshd listening {:.2}s after QEMU start", up.as_secs_f64());
    }
    // Flags that need a kernel package, and a package that is not there: clear errors.
    let o = args(&["--initramfs"]).output().expect("run");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--kernel-package"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = args(&["--kernel-package", "linux-image-nonexistent"])
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("linux-image-nonexistent") && err.contains("repositories"),
        "{err}"
    );
    // The failed builds left the previous outputs alone.
    assert_eq!(
        std::fs::read(out.join("vmlinux.bin")).expect("still there"),
        vmlinux
    );
}
