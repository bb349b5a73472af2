//! Early mounts (idempotent: EBUSY means already mounted), device links, and the unmount
//! order used at shutdown (reverse of `/proc/self/mountinfo`).

use crate::sys;
use crate::{info, warn};
use libc::c_ulong;
use std::os::unix::fs::{symlink, PermissionsExt};

const NOSUID: c_ulong = libc::MS_NOSUID;
const NODEV: c_ulong = libc::MS_NODEV;
const NOEXEC: c_ulong = libc::MS_NOEXEC;

/// One entry of the early mount table.
pub struct Mount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: c_ulong,
    pub data: Option<&'static str>,
    /// Mode for the directory if init creates it.
    pub mode: u32,
}

const fn m(
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: c_ulong,
    data: Option<&'static str>,
) -> Mount {
    Mount {
        source,
        target,
        fstype,
        flags,
        data,
        mode: 0o755,
    }
}

/// The mounts every boot needs, in order (parents before children).
pub const EARLY: &[Mount] = &[
    m("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC, None),
    m("sysfs", "/sys", "sysfs", NOSUID | NODEV | NOEXEC, None),
    m("devtmpfs", "/dev", "devtmpfs", NOSUID, Some("mode=0755")),
    m(
        "devpts",
        "/dev/pts",
        "devpts",
        NOSUID | NOEXEC,
        Some("gid=5,mode=620,ptmxmode=666"),
    ),
    m(
        "shm",
        "/dev/shm",
        "tmpfs",
        NOSUID | NODEV,
        Some("mode=1777"),
    ),
    m("tmpfs", "/run", "tmpfs", NOSUID | NODEV, Some("mode=0755")),
];

/// Mount one entry, creating its directory. `Ok(false)` when it was already mounted.
pub fn mount_one(e: &Mount) -> std::io::Result<bool> {
    if std::fs::symlink_metadata(e.target).is_err() {
        std::fs::create_dir_all(e.target)?;
        let _ = std::fs::set_permissions(e.target, std::fs::Permissions::from_mode(e.mode));
    }
    match sys::mount(e.source, e.target, Some(e.fstype), e.flags, e.data) {
        Ok(()) => Ok(true),
        Err(err) if err.raw_os_error() == Some(libc::EBUSY) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Mount [`EARLY`], then the links and directories that go with them. Errors are logged.
pub fn early() {
    for e in EARLY {
        if let Err(err) = mount_one(e) {
            warn!("mount {} on {}: {err}", e.fstype, e.target);
        }
    }
    // std links; EEXIST is fine.
    for (target, link) in [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("/proc/kcore", "/dev/core"),
    ] {
        let _ = symlink(target, link);
    }
    // /dev/ptmx must be the devpts one, or ptys opened through it get no /dev/pts entry.
    if std::fs::read_link("/dev/ptmx").is_err() {
        let _ = std::fs::remove_file("/dev/ptmx");
        let _ = symlink("pts/ptmx", "/dev/ptmx");
    }
}

/// Remount `/` read-write (the kernel mounts it read-only without `rw`).
pub fn remount_root_rw() {
    if let Err(e) = sys::mount("", "/", None, libc::MS_REMOUNT, None) {
        warn!("remount / read-write: {e}");
    }
}

/// cgroup2 on /sys/fs/cgroup when the kernel has it.
pub fn cgroup2() {
    let has = std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.contains("\tcgroup2\n"));
    if !has {
        return;
    }
    let e = m(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        NOSUID | NODEV | NOEXEC,
        Some("nsdelegate"),
    );
    if let Err(err) = mount_one(&e) {
        info!("cgroup2 not mounted: {err}");
    }
}

/// Directories services expect on a fresh /run and a disk /tmp.
pub fn run_dirs() {
    for (d, mode) in [
        ("/run/sshd", 0o755),
        ("/run/lock", 0o1777),
        ("/tmp", 0o1777),
    ] {
        if std::fs::create_dir_all(d).is_ok() {
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode));
        }
    }
}

/// Decode a mountinfo path field (`\040` for space, etc.).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points from `/proc/self/mountinfo`, deepest/latest first, without `/` itself.
pub fn unmount_order(mountinfo: &str) -> Vec<String> {
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p != "/")
        .collect();
    points.reverse();
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INFO: &str = "\
22 1 259:0 / / rw,relatime - ext4 /dev/nvme0n1 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec - proc proc rw
24 22 0:22 / /sys rw - sysfs sysfs rw
25 22 0:5 / /dev rw - devtmpfs devtmpfs rw
26 25 0:23 / /dev/pts rw - devpts devpts rw
27 22 0:24 / /run rw - tmpfs tmpfs rw
28 22 0:25 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn reverse_order_children_first() {
        assert_eq!(
            unmount_order(INFO),
            vec![
                "/mnt/with space",
                "/run",
                "/dev/pts",
                "/dev",
                "/sys",
                "/proc"
            ]
        );
    }

    proptest! {
        #[test]
        fn mountinfo_garbage_never_panics(s in "\\PC{0,300}") {
            let _ = unmount_order(&s);
        }
    }
}
