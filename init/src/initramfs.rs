//! Initramfs mode: when rootsmith-init is PID 1 of an initramfs that rootsmith built (the
//! marker file [`MARKER`] lists the modules to load), it loads those modules, waits for the
//! `root=` device, mounts it at `/newroot` (`rootfstype=`, default ext4; read-write with
//! `rw`, `rootflags=` passed through), moves `/dev`, `/proc` and `/sys` into it, switches
//! root (`MS_MOVE` onto `/` + chroot, like busybox's `switch_root`) and execs the real init:
//! `init=` from the command line, else `/init`, else `/sbin/init`. The initramfs holds only
//! this binary and a few modules, so its files are left in place (under 2 MiB of RAM).
//!
//! This is what lets a distribution kernel whose virtio-blk is a module boot with SmolVM's
//! exact arguments (`root=/dev/vda rw init=/init`). Any failure is logged and the VM powers
//! off (an initramfs has nothing else to run), so a host waiting on it sees the error on the
//! console and the VM exit.

use crate::cmdline::tokenize;
use crate::{info, log, modules, mount, sys, warn};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

/// Present only in initramfs images rootsmith builds: the modules to load, one per line.
pub const MARKER: &str = "/etc/rootsmith/initramfs";
const NEWROOT: &str = "/newroot";
/// How long to wait for the root device to appear (`rootdelay=` seconds overrides).
const ROOT_WAIT: Duration = Duration::from_secs(30);

/// What the command line says about the root filesystem. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSpec {
    pub device: String,
    pub fstype: String,
    pub flags: Option<String>,
    pub read_write: bool,
    pub init: Option<String>,
    pub wait: Duration,
}

/// Parses `root=`, `rootfstype=`, `rootflags=`, `rw`/`ro`, `init=`, `rootdelay=`.
/// `None` without `root=`.
pub fn parse(line: &str) -> Option<RootSpec> {
    let mut s = RootSpec {
        device: String::new(),
        fstype: "ext4".into(),
        flags: None,
        read_write: false,
        init: None,
        wait: ROOT_WAIT,
    };
    for p in tokenize(line) {
        match (p.key.as_str(), p.value) {
            ("root", Some(v)) => s.device = v,
            ("rootfstype", Some(v)) if !v.is_empty() => s.fstype = v,
            ("rootflags", Some(v)) => s.flags = Some(v),
            ("rw", None) => s.read_write = true,
            ("ro", None) => s.read_write = false,
            ("init", Some(v)) if v.starts_with('/') => s.init = Some(v),
            ("rootdelay", Some(v)) => {
                if let Ok(n) = v.parse::<u64>() {
                    s.wait = Duration::from_secs(n.clamp(1, 600));
                }
            }
            _ => {}
        }
    }
    (!s.device.is_empty()).then_some(s)
}

/// The module names of the marker file (blank lines and `#` comments skipped). Pure.
pub fn marker_modules(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(modules::norm)
        .collect()
}

/// True when this process is PID 1 of a rootsmith initramfs.
pub fn active() -> bool {
    Path::new(MARKER).is_file()
}

/// Runs the initramfs stage. Returns only if there is no `root=` (then the caller boots
/// the initramfs itself as the system).
pub fn run() {
    log::milestone("initramfs-start");
    for e in &mount::EARLY[..3] {
        if let Err(err) = mount::mount_one(e) {
            warn!("initramfs: mount {} on {}: {err}", e.fstype, e.target);
        }
    }
    let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let Some(spec) = parse(line.trim_end()) else {
        warn!("initramfs: no root= on the kernel command line; staying in the initramfs");
        return;
    };
    let wanted = marker_modules(&std::fs::read_to_string(MARKER).unwrap_or_default());
    modules::load(&wanted);
    log::milestone("initramfs-modules-done");
    if let Err(e) = switch(&spec) {
        log::line(&format!(
            "rootsmith-init: error: initramfs: {e}; powering off"
        ));
        sys::sync();
        std::thread::sleep(Duration::from_millis(200));
        let _ = sys::reboot(libc::RB_POWER_OFF);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

fn wait_for(dev: &str, limit: Duration) -> Result<(), String> {
    let t0 = sys::monotonic();
    while !Path::new(dev).exists() {
        if sys::monotonic().saturating_sub(t0) > limit {
            return Err(format!(
                "root device {dev} did not appear within {} s (is its driver in the initramfs?)",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Mount the root, move the API filesystems into it, switch root, exec the real init.
fn switch(spec: &RootSpec) -> Result<(), String> {
    if !spec.device.starts_with("/dev/") {
        return Err(format!(
            "root={} is not supported here; use a /dev/ path such as root=/dev/vda",
            spec.device
        ));
    }
    wait_for(&spec.device, spec.wait)?;
    let _ = std::fs::create_dir_all(NEWROOT);
    let flags = if spec.read_write { 0 } else { libc::MS_RDONLY };
    sys::mount(
        &spec.device,
        NEWROOT,
        Some(&spec.fstype),
        flags,
        spec.flags.as_deref(),
    )
    .map_err(|e| format!("mount {} ({}) on {NEWROOT}: {e}", spec.device, spec.fstype))?;
    log::milestone("initramfs-root-mounted");
    for d in ["/dev", "/proc", "/sys"] {
        let target = format!("{NEWROOT}{d}");
        let moved = Path::new(&target).is_dir()
            && sys::mount(d, &target, None, libc::MS_MOVE, None).is_ok();
        if !moved {
            let _ = sys::umount(d, libc::MNT_DETACH);
        }
    }
    let init = match &spec.init {
        Some(i) => i.clone(),
        None => ["/init", "/sbin/init"]
            .into_iter()
            .find(|p| Path::new(&format!("{NEWROOT}{p}")).exists())
            .unwrap_or("/sbin/init")
            .to_string(),
    };
    if !Path::new(&format!("{NEWROOT}{init}")).exists() {
        return Err(format!("{init} does not exist on {}", spec.device));
    }
    std::env::set_current_dir(NEWROOT).map_err(|e| format!("chdir {NEWROOT}: {e}"))?;
    sys::mount(".", "/", None, libc::MS_MOVE, None)
        .map_err(|e| format!("move {NEWROOT} onto /: {e}"))?;
    std::os::unix::fs::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    let _ = std::env::set_current_dir("/");
    info!("initramfs: switching to {init} on {}", spec.device);
    let err = std::process::Command::new(&init)
        .env_clear()
        .env("HOME", "/")
        .env("TERM", "linux")
        .exec();
    Err(format!("exec {init}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smolvm_cmdline() {
        let s = parse("console=ttyS0 reboot=k panic=1 root=/dev/vda rw init=/init ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off smolvm.authorized_key_b64=QQ==").unwrap();
        assert_eq!(s.device, "/dev/vda");
        assert_eq!(s.fstype, "ext4");
        assert!(s.read_write);
        assert_eq!(s.init.as_deref(), Some("/init"));
        assert_eq!(s.wait, ROOT_WAIT);
    }

    #[test]
    fn other_keys() {
        let s = parse(
            "root=/dev/nvme0n1 rw ro rootfstype=xfs rootflags=noatime rootdelay=5 init=relative",
        )
        .unwrap();
        assert!(!s.read_write);
        assert_eq!(s.fstype, "xfs");
        assert_eq!(s.flags.as_deref(), Some("noatime"));
        assert_eq!(s.wait, Duration::from_secs(5));
        assert_eq!(s.init, None);
        assert_eq!(parse("console=ttyS0 rw"), None);
        assert_eq!(parse("root="), None);
    }

    #[test]
    fn marker() {
        assert_eq!(
            marker_modules("# modules\nvirtio_pci\n\n virtio-blk # disk\n"),
            ["virtio_pci", "virtio_blk"]
        );
    }
}
