//! Boots `rootsmith-init` as PID 1 of a real Linux kernel under QEMU (TCG) and checks its
//! duties from the outside, over the serial console and a `hostfwd` port on 127.0.0.1.
//!
//! Inputs, fetched into a temp dir and never installed on the host: Debian's cloud kernel
//! (`linux-image-cloud-amd64` → the `linux-image-*-cloud-amd64` it depends on; NVMe built
//! in, virtio-net as modules), `busybox-static` (tools and the stand-in services), both with
//! `apt-get download` + `dpkg-deb -x`; QEMU from `../shared/fixtures/qemu.sh`; the host's
//! `ssh-keygen` with its libraries (the real host-key generator). The init is built with
//! `cargo build-init` unless `ROOTSMITH_INIT_BIN` names a prebuilt one. Images are made by
//! `rootsmith mkfs --from-dir DIR OUT --owner 0:0`.
//!
//! Three boots (networking is only `-netdev user,restrict=on` with one hostfwd on 127.0.0.1):
//! 1. static `ip=`, `reboot=k`, `rootsmith.modules=virtio_net`, a key on the command line:
//!    mounts, address and route, authorized_keys modes, host key generated, a service that
//!    exits is restarted, abandoned children are reaped; Ctrl-Alt-Del → restart → QEMU
//!    (`-no-reboot`) exits by itself; `e2fsck -fn` clean.
//! 2. the same image with `ip=dhcp`: eth0 gets its lease, the host key is the one from boot
//!    1; SIGTERM to PID 1 (from a CGI script) → power off → QEMU exits; fsck clean.
//! 3. no sshd and an unreadable `/etc/rootsmith/services` (a directory): the VM stays up,
//!    and QEMU's `system_powerdown` (ACPI power button → SIGPWR) with
//!    `rootsmith.shutdown=poweroff reboot=k` still powers it off; fsck clean.
//!
//! Outside CI a missing prerequisite (QEMU, apt-get download, ssh-keygen) skips with a
//! reason; under `CI=true` it fails. `ROOTSMITH_TEST_KVM=1` tries `-accel kvm` first.

use crate::common::{fsck, in_ci, ok, require, rootsmith};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const QEMU_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/qemu.sh");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The virtio-net chain of Debian's cloud kernel (plus what `virtio_net` needs at runtime).
/// The virtio-net chain of Debian's cloud kernel, and the ACPI power button with evdev.
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "button",
    "evdev",
];
const TEST_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJvb3RzbWl0aC10ZXN0LWtleS1ub3QtYS1yZWFsLW9uZQ rootsmith-test";
const GUEST_PORT: u16 = 8080;

/// Everything fetched once for all boots.
struct Inputs {
    qemu: PathBuf,
    kernel: PathBuf,
    kver: String,
    /// The unpacked kernel package (`lib/modules/<kver>/...`).
    kroot: PathBuf,
    busybox: PathBuf,
    ssh_keygen: PathBuf,
    init: PathBuf,
}

fn sh_out(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::inherit()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `apt-get download` + `dpkg-deb -x` of `pkg` into `dest`.
fn fetch_deb(pkg: &str, work: &Path, dest: &Path) -> Option<()> {
    let before: Vec<PathBuf> = fs::read_dir(work)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    sh_out(
        Command::new("apt-get")
            .args(["download", "-q", pkg])
            .current_dir(work),
    )?;
    let deb = fs::read_dir(work)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| !before.contains(p) && p.extension().is_some_and(|x| x == "deb"))?;
    sh_out(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dest))?;
    Some(())
}

/// The static init: `ROOTSMITH_INIT_BIN`, else `cargo build-init` in the repository.
pub(crate) fn build_init() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ROOTSMITH_INIT_BIN") {
        return Some(PathBuf::from(p));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = sh_out(
        Command::new(cargo)
            .args(["build-init", "--message-format=json-render-diagnostics"])
            .current_dir(REPO),
    )?;
    out.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        if v["reason"] != "compiler-artifact" || v["target"]["name"] != "rootsmith-init" {
            return None;
        }
        v["executable"].as_str().map(PathBuf::from)
    })
}

/// The `linux-image-*-cloud-amd64` package `linux-image-cloud-amd64` depends on.
fn kernel_package() -> Option<String> {
    let meta = sh_out(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))?;
    meta.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Depends: ")
            .filter(|d| d.starts_with("linux-image-"))
            .map(str::to_string)
    })
}

fn inputs(work: &Path) -> Option<Inputs> {
    let qemu = sh_out(Command::new("bash").arg(QEMU_SH)).map(|s| PathBuf::from(s.trim()));
    if !require(qemu.is_some(), "QEMU (../shared/fixtures/qemu.sh failed)") {
        return None;
    }
    // linux-image-cloud-amd64 is a metapackage: take the versioned image it depends on.
    // Without package lists (a fresh machine), update them once.
    let mut pkg = kernel_package();
    if pkg.is_none() {
        let _ = sh_out(Command::new("apt-get").args(["update", "-q"]));
        pkg = kernel_package();
    }
    let kroot = work.join("kernel");
    let got_kernel = pkg
        .as_deref()
        .is_some_and(|p| fetch_deb(p, work, &kroot).is_some());
    if !require(
        got_kernel,
        "Debian's cloud kernel via apt-get download (linux-image-cloud-amd64)",
    ) {
        return None;
    }
    let bbroot = work.join("busybox");
    if !require(
        fetch_deb("busybox-static", work, &bbroot).is_some(),
        "busybox-static via apt-get download",
    ) {
        return None;
    }
    // A package that unpacked but holds no kernel is a failure, not a missing prerequisite.
    let kernel = fs::read_dir(kroot.join("boot"))
        .expect("the kernel package has /boot")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .expect("the kernel package has /boot/vmlinuz-*");
    let kver = kernel
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_string();
    let ssh_keygen = crate::common::which("ssh-keygen");
    if !require(
        ssh_keygen.is_some(),
        "ssh-keygen (openssh-client) on the host",
    ) {
        return None;
    }
    if !require(crate::common::have("e2fsck"), "e2fsck") {
        return None;
    }
    let init = build_init();
    assert!(
        init.is_some(),
        "cargo build-init failed (is the x86_64-unknown-linux-musl target installed?)"
    );
    Some(Inputs {
        qemu: qemu?,
        kernel,
        kver,
        kroot,
        busybox: bbroot.join("bin/busybox"),
        ssh_keygen: ssh_keygen?,
        init: init?,
    })
}

fn write(root: &Path, path: &str, mode: u32, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
    fs::write(&p, text).expect("write staged file");
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn copy(from: &Path, root: &Path, to: &str, mode: u32) {
    let p = root.join(to.trim_start_matches('/'));
    fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
    fs::copy(from, &p).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The CGI script the host reads the guest's state through.
const STATE_CGI: &str = r#"#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "== mounts"; cat /proc/mounts
echo "== addr"; ip -4 addr show dev eth0; ip route
echo "== hostname $(hostname)"
echo "== keys"; stat -c '%a %u %g %n' /root/.ssh /root/.ssh/authorized_keys; cat /root/.ssh/authorized_keys
echo "== hostkey $(cat /etc/ssh/ssh_host_ed25519_key.pub)"
echo "== flaky $(wc -l < /run/flaky.count)"
[ -e /run/orphans.done ] && echo "== orphans done"
z=0; for f in /proc/[0-9]*/stat; do s=$(cut -d' ' -f3 $f 2>/dev/null); [ "$s" = Z ] && z=$((z+1)); done
echo "== zombies $z"
echo "== ptmx $(readlink /dev/ptmx) fd $(readlink /dev/fd)"
echo "== jsonl"; cat /run/rootsmith/boot.jsonl /run/smolvm/boot-milestones.jsonl
echo "== end"
"#;

/// Stage a root tree. `full`: sshd (a stand-in), ssh-keygen, services; else neither sshd nor
/// a readable services file.
fn stage(inp: &Inputs, root: &Path, full: bool) {
    for d in [
        "proc", "sys", "dev", "run", "tmp", "root", "etc/ssh", "bin", "usr/bin", "usr/sbin",
    ] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    copy(&inp.init, root, "/init", 0o755);
    copy(&inp.busybox, root, "/bin/busybox", 0o755);
    let list = sh_out(Command::new(&inp.busybox).arg("--list")).expect("busybox --list");
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = symlink("busybox", root.join("bin").join(applet));
    }
    write(
        root,
        "/etc/passwd",
        0o644,
        "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n",
    );
    write(root, "/etc/group", 0o644, "root:x:0:\ntty:x:5:\n");
    write(root, "/etc/hostname", 0o644, "rsm-image\n");
    // A few modules and no modules.dep: init falls back to .modinfo depends=.
    let mdir = inp.kroot.join("lib/modules").join(&inp.kver);
    for m in MODULES {
        let rel =
            find_module(&mdir, m).unwrap_or_else(|| panic!("module {m} not in the kernel package"));
        copy(
            &mdir.join(&rel),
            root,
            &format!("/lib/modules/{}/{}", inp.kver, rel.display()),
            0o644,
        );
    }
    copy(
        &mdir.join("modules.builtin"),
        root,
        &format!("/lib/modules/{}/modules.builtin", inp.kver),
        0o644,
    );
    if !full {
        // Unreadable services file: read(2) fails with EISDIR.
        fs::create_dir_all(root.join("etc/rootsmith/services")).expect("mkdir");
        return;
    }
    // The host's ssh-keygen and the libraries it links.
    copy(&inp.ssh_keygen, root, "/usr/bin/ssh-keygen", 0o755);
    let ldd = sh_out(Command::new("ldd").arg(&inp.ssh_keygen)).expect("ldd ssh-keygen");
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let real = fs::canonicalize(lib).expect("library exists");
        copy(&real, root, lib, 0o755);
    }
    // sshd stand-in: init's sshd handling (host key first, `-D -e`) without OpenSSH's server.
    write(
        root,
        "/usr/sbin/sshd",
        0o755,
        "#!/bin/sh\necho \"stand-in sshd $*\"\nexec sleep 1000000\n",
    );
    write(
        root,
        "/etc/rootsmith/services",
        0o644,
        &format!(
            "# test services\nweb /bin/busybox httpd -f -p {GUEST_PORT} -h /srv/www\n\
             flaky /bin/sh -c 'echo run >> /run/flaky.count; sleep 0.1; exit 3'\n\
             orphans /bin/sh /srv/orphans.sh\n"
        ),
    );
    // Abandon five children (their parent shell exits at once), wait until they are dead,
    // then say so: unreaped, they would stay zombies of PID 1.
    write(root, "/srv/orphans.sh", 0o755, "for i in 1 2 3 4 5; do ( sleep 0.2 & ); done\nsleep 1.5\ntouch /run/orphans.done\nexec sleep 1000000\n");
    write(root, "/srv/www/cgi-bin/state", 0o755, STATE_CGI);
    write(
        root,
        "/srv/www/cgi-bin/term",
        0o755,
        "#!/bin/sh\necho \"Content-Type: text/plain\"\necho\necho bye\nkill -TERM 1\n",
    );
}

fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == format!("{name}.ko"))
            {
                return p.strip_prefix(dir).ok().map(Path::to_path_buf);
            }
        }
    }
    None
}

fn mkfs(root: &Path, out: &Path) {
    ok(rootsmith()
        .args([
            "mkfs",
            "--quiet",
            "--size",
            "64M",
            "--owner",
            "0:0",
            "--from-dir",
        ])
        .arg(root)
        .arg(out));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A running VM; killed on drop.
struct Vm {
    child: Child,
    serial: PathBuf,
    monitor: PathBuf,
    port: u16,
    started: Instant,
}

impl Vm {
    fn boot(inp: &Inputs, img: &Path, dir: &Path, append: &str, nic: bool) -> Vm {
        let serial = dir.join("serial.log");
        let monitor = dir.join("monitor.sock");
        let _ = fs::remove_file(&serial);
        let _ = fs::remove_file(&monitor);
        let port = free_port();
        let accel = if std::env::var("ROOTSMITH_TEST_KVM").is_ok_and(|v| v == "1") {
            "kvm:tcg"
        } else {
            "tcg"
        };
        let mut cmd = Command::new(&inp.qemu);
        cmd.args([
            "-machine",
            &format!("pc,accel={accel}"),
            "-cpu",
            "max",
            "-m",
            "512",
            "-smp",
            "1",
        ])
        .args(["-display", "none", "-nodefaults", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-monitor")
        .arg(format!("unix:{},server=on,wait=off", monitor.display()))
        .arg("-kernel")
        .arg(&inp.kernel)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 root=/dev/nvme0n1 rootfstype=ext4 init=/init panic=-1 {append}"
        ))
        .arg("-drive")
        .arg(format!("file={},if=none,id=d0,format=raw", img.display()))
        .args(["-device", "nvme,drive=d0,serial=rootsmith0"]);
        if nic {
            cmd.args([
                "-netdev",
                &format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:{GUEST_PORT}"),
            ])
            .args(["-device", "virtio-net-pci,netdev=n0"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", inp.qemu.display()));
        Vm {
            child,
            serial,
            monitor,
            port,
            started: Instant::now(),
        }
    }

    fn console(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        panic!("{what}\n--- serial console ---\n{}", self.console());
    }

    /// Wait until the console contains `pat`; fail on a kernel panic or a QEMU exit.
    fn wait_for(&mut self, pat: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.console();
            if c.contains("Kernel panic") {
                self.fail("kernel panic (did PID 1 exit?)");
            }
            if c.contains(pat) {
                return c;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.fail(&format!(
                    "QEMU exited ({st}) before the console showed {pat:?}"
                ));
            }
            if Instant::now() > deadline {
                self.fail(&format!("no {pat:?} on the console after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One HTTP GET through the hostfwd port.
    fn get(&self, path: &str) -> Option<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: guest\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.contains("200 OK").then_some(body)
    }

    /// Poll the state CGI until `ready` holds.
    fn state_until(&mut self, ready: impl Fn(&str) -> bool, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(b) = self.get("/cgi-bin/state") {
                if b.contains("== end") && ready(&b) {
                    return b;
                }
                last = b;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.fail(&format!(
            "guest state never became ready; last answer:\n{last}"
        ));
    }

    fn monitor(&mut self, command: &str) {
        let r = (|| -> std::io::Result<()> {
            let mut s = UnixStream::connect(&self.monitor)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf)?; // banner
            s.write_all(format!("{command}\n").as_bytes())?;
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        })();
        if let Err(e) = r {
            self.fail(&format!("QEMU monitor {command:?}: {e}"));
        }
    }

    /// Wait for QEMU to exit by itself; its status must be success.
    fn wait_exit(&mut self, limit: Duration) -> Duration {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) if st.success() => return self.started.elapsed(),
                Ok(Some(st)) => self.fail(&format!("QEMU exited with {st}")),
                _ if Instant::now() > deadline => self.fail(&format!(
                    "QEMU did not exit within {limit:?} of the shutdown request"
                )),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Uptime of `rootsmith-init: <stage> <uptime>s` on the console.
fn stage_time(console: &str, stage: &str) -> Option<f64> {
    let prefix = format!("rootsmith-init: {stage} ");
    console.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(&prefix)?
            .strip_suffix('s')?
            .parse()
            .ok()
    })
}

/// printk time of the kernel's "Run /init as init process".
fn kernel_run_init(console: &str) -> Option<f64> {
    let l = console
        .lines()
        .find(|l| l.contains("Run /init as init process"))?;
    l.split(']')
        .next()?
        .trim_start_matches('[')
        .trim()
        .parse()
        .ok()
}

fn section<'a>(state: &'a str, name: &str) -> &'a str {
    let start = state.find(&format!("== {name}")).unwrap_or(state.len());
    let rest = &state[start..];
    let end = rest[3..].find("\n== ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

fn report_timings(boot: &str, c: &str) {
    let (k, s, f, n) = (
        kernel_run_init(c),
        stage_time(c, "init-start"),
        stage_time(c, "first-service-started"),
        stage_time(c, "net-ready"),
    );
    eprintln!(
        "init_boot {boot}: kernel 'Run /init' at {k:?}s, init-start at {s:?}s, first service +{:.1} ms, net-ready +{:.1} ms",
        f.zip(s).map_or(f64::NAN, |(f, s)| (f - s) * 1000.0),
        n.zip(s).map_or(f64::NAN, |(n, s)| (n - s) * 1000.0),
    );
}

#[test]
fn init_boots_serves_and_shuts_down_cleanly() {
    let t0 = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let Some(inp) = inputs(work.path()) else {
        return;
    };
    let image = fs::read(&inp.init).expect("read the init binary");
    assert!(
        image.len() <= 1 << 20,
        "init is {} bytes, over 1 MiB",
        image.len()
    );
    assert!(
        is_static_elf(&image),
        "init has PT_INTERP: not statically linked"
    );
    let key_b64 = base64(TEST_KEY.as_bytes());
    let boot_limit = Duration::from_secs(if in_ci() { 180 } else { 120 });

    // Image A: everything.
    let root_a = work.path().join("root-a");
    stage(&inp, &root_a, true);
    let img_a = work.path().join("a.ext4");
    mkfs(&root_a, &img_a);

    // Boot 1: static ip=, reboot=k, modules, key; Ctrl-Alt-Del.
    let mut vm = Vm::boot(
        &inp,
        &img_a,
        work.path(),
        &format!(
            "reboot=k ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off rootsmith.modules=virtio_net \
             rootsmith.hostname=rsm-test smolvm.authorized_key_b64={key_b64}"
        ),
        true,
    );
    vm.wait_for("rootsmith-init: init-complete", boot_limit);
    vm.wait_for("rootsmith-init: net-ready", boot_limit);
    let st = vm.state_until(
        |s| {
            s.contains("== orphans done")
                && flaky_runs(s) >= 3
                && s.contains("== hostkey ssh-ed25519 ")
        },
        boot_limit,
    );
    let mounts = section(&st, "mounts");
    for want in [
        "/dev/root / ext4 rw,",
        "proc /proc proc rw,nosuid,nodev,noexec",
        "sysfs /sys sysfs rw,nosuid,nodev,noexec",
        "devtmpfs /dev devtmpfs rw,nosuid",
        "devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=666",
        "/dev/shm tmpfs rw,nosuid,nodev",
        "tmpfs /run tmpfs rw,nosuid,nodev,relatime,mode=755",
    ] {
        assert!(mounts.contains(want), "mount {want:?} missing:\n{mounts}");
    }
    assert!(st.contains("== ptmx pts/ptmx fd /proc/self/fd"), "{st}");
    let addr = section(&st, "addr");
    assert!(
        addr.contains("inet 10.0.2.15/24") && addr.contains("default via 10.0.2.2 dev eth0"),
        "static ip= not applied:\n{addr}"
    );
    assert!(st.contains("== hostname rsm-test"), "{st}");
    let keys = section(&st, "keys");
    assert!(
        keys.contains("700 0 0 /root/.ssh\n")
            && keys.contains("600 0 0 /root/.ssh/authorized_keys\n"),
        "modes:\n{keys}"
    );
    assert!(keys.contains(TEST_KEY), "key missing:\n{keys}");
    let hostkey = section(&st, "hostkey")
        .lines()
        .next()
        .expect("hostkey line")
        .to_string();
    assert_eq!(
        section(&st, "zombies").trim(),
        "== zombies 0",
        "unreaped children:\n{st}"
    );
    assert!(
        st.contains("{\"stage\":\"init-start\",\"epoch_s\":"),
        "smolvm jsonl:\n{st}"
    );
    let c = vm.wait_for("flaky: exited (Code(3)); restart in 400ms", boot_limit);
    assert!(
        c.contains("SMOLVM_TS stage=init-start epoch_s="),
        "SMOLVM_TS lines"
    );
    assert!(
        c.contains("modules: loaded 8"),
        "virtio_net chain not loaded"
    );
    let c = vm.wait_for("stand-in sshd -D -e", boot_limit);
    assert!(c.contains("sshd: started"), "sshd not started");
    report_timings("boot 1 (static ip)", &c);
    vm.monitor("sendkey ctrl-alt-delete");
    vm.wait_exit(Duration::from_secs(60));
    let c = vm.console();
    assert!(
        c.contains("signal 2: shutting down (Restart)") && c.contains("reboot: Restarting system"),
        "CAD:\n{c}"
    );
    drop(vm);
    assert_eq!(fsck(&img_a), 0, "e2fsck -fn after boot 1");

    // Boot 2: same image, ip=dhcp, no reboot=k; SIGTERM from inside.
    let mut vm = Vm::boot(
        &inp,
        &img_a,
        work.path(),
        "ip=dhcp rootsmith.modules=virtio_net",
        true,
    );
    vm.wait_for("rootsmith-init: net-ready", boot_limit);
    let st = vm.state_until(|s| s.contains("== hostkey ssh-ed25519 "), boot_limit);
    let addr = section(&st, "addr");
    assert!(
        addr.contains("inet 10.0.2.15/24"),
        "DHCP lease not applied:\n{addr}"
    );
    assert_eq!(
        section(&st, "hostkey").lines().next(),
        Some(hostkey.as_str()),
        "host key changed across boots"
    );
    assert!(
        st.contains("== hostname rsm-image"),
        "/etc/hostname not used:\n{st}"
    );
    let c = vm.console();
    assert!(!c.contains("ssh-keygen"), "host key generated again:\n{c}");
    report_timings("boot 2 (dhcp)", &c);
    let _ = vm.get("/cgi-bin/term");
    vm.wait_exit(Duration::from_secs(60));
    let c = vm.console();
    assert!(
        c.contains("signal 15: shutting down (PowerOff)") && c.contains("reboot: Power down"),
        "SIGTERM:\n{c}"
    );
    assert!(
        c.contains("web: stopped (Signal(15))"),
        "services not stopped with SIGTERM:\n{c}"
    );
    drop(vm);
    assert_eq!(fsck(&img_a), 0, "e2fsck -fn after boot 2");

    // Boot 3: no sshd, unreadable services file, no NIC: stays up, then the ACPI power button
    // (`system_powerdown`) still shuts it down.
    let root_b = work.path().join("root-b");
    stage(&inp, &root_b, false);
    let img_b = work.path().join("b.ext4");
    mkfs(&root_b, &img_b);
    let mut vm = Vm::boot(
        &inp,
        &img_b,
        work.path(),
        "reboot=k rootsmith.shutdown=poweroff ip=off rootsmith.modules=button,evdev",
        false,
    );
    let c = vm.wait_for("rootsmith-init: init-complete", boot_limit);
    assert!(
        c.contains("error: /etc/rootsmith/services: Is a directory"),
        "services error not logged:\n{c}"
    );
    assert!(c.contains("no /usr/sbin/sshd: not starting sshd"), "{c}");
    std::thread::sleep(Duration::from_secs(3));
    if let Ok(Some(st)) = vm.child.try_wait() {
        vm.fail(&format!("VM ended by itself ({st})"));
    }
    vm.wait_for("rootsmith-init: net-config-done", boot_limit);
    vm.wait_for("rootsmith-init: power button: /dev/input/event", boot_limit);
    vm.monitor("system_powerdown");
    vm.wait_exit(Duration::from_secs(60));
    let c = vm.console();
    assert!(
        c.contains("signal 30: shutting down (PowerOff)") && c.contains("reboot: Power down"),
        "{c}"
    );
    drop(vm);
    assert_eq!(fsck(&img_b), 0, "e2fsck -fn after boot 3");
    eprintln!(
        "init_boot: {:.1} s in all ({} bytes of init)",
        t0.elapsed().as_secs_f64(),
        fs::metadata(&inp.init).map_or(0, |m| m.len())
    );
}

/// An ELF64 executable without an interpreter (PT_INTERP): it runs with no loader and no
/// shared library. (`cargo build-init` makes it non-PIE; a static-pie build, e.g. when
/// RUSTFLAGS overrides the alias's target rustflags, has PT_DYNAMIC and passes too.)
fn is_static_elf(b: &[u8]) -> bool {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|x| u64::from_le_bytes(x.try_into().expect("8 bytes")) as usize)
    };
    if b.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| {
        let ty = b.get(phoff + i * phentsize..phoff + i * phentsize + 4);
        !matches!(ty, Some([3, 0, 0, 0]) | None)
    })
}

fn flaky_runs(state: &str) -> u32 {
    section(state, "flaky")
        .trim()
        .trim_start_matches("== flaky")
        .trim()
        .parse()
        .unwrap_or(0)
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for ch in b.chunks(3) {
        let n = ch
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, x)| a | (u32::from(*x) << (16 - 8 * i)));
        for i in 0..4 {
            s.push(if i <= ch.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    s
}

/// The static check itself: a dynamically linked host program is caught.
#[test]
fn static_elf_check_sees_a_dynamic_program() {
    let ls = fs::read("/bin/ls").expect("/bin/ls exists");
    assert!(!is_static_elf(&ls));
    assert!(!is_static_elf(b"not an elf"));
}
