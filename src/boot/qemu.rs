//! QEMU: where the binary is (`--qemu`, `$ROOTSMITH_QEMU`, then `qemu-system-x86_64` on
//! `PATH`) and the command line for one boot — direct kernel boot, the rootfs as a
//! virtio-blk or NVMe drive, user networking with `restrict=on` and one `hostfwd` to the
//! guest's port 22 on 127.0.0.1, the serial console on stdio, the human monitor on a Unix
//! socket, `-no-reboot` so a guest reboot ends QEMU. Pure: no I/O except the existence
//! checks passed in.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The binary looked for on `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// The accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm (`-cpu host`).
    Kvm,
    /// QEMU's emulator (`-cpu max`: RDRAND seeds the guest's RNG at once).
    Tcg,
}

impl Accel {
    /// The name QEMU uses.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// How the root disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disk {
    /// virtio-blk on PCI: `/dev/vda` (SmolVM's `root=`).
    Virtio,
    /// NVMe: `/dev/nvme0n1` (built into most distribution kernels, virtio-blk often is not).
    Nvme,
}

impl Disk {
    /// The guest's device for `root=`.
    pub fn root_device(self) -> &'static str {
        match self {
            Disk::Virtio => "/dev/vda",
            Disk::Nvme => "/dev/nvme0n1",
        }
    }
}

/// Everything one QEMU command line needs.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// Accelerator.
    pub accel: Accel,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// The kernel (bzImage, or an ELF with a PVH note).
    pub kernel: PathBuf,
    /// An initramfs.
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// How the disk is attached.
    pub disk: Disk,
    /// The disk file QEMU opens (an overlay, a copy or the image itself).
    pub disk_path: PathBuf,
    /// `raw` or `qcow2`.
    pub disk_format: &'static str,
    /// Host port on 127.0.0.1 forwarded to the guest's port 22.
    pub ssh_port: u16,
    /// `restrict=on`: the guest can reach nothing but the forwarded port's replies.
    pub restrict: bool,
    /// The monitor's Unix socket.
    pub monitor: PathBuf,
}

/// The arguments after the binary.
pub fn args(c: &QemuConfig) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(OsString::from(s));
    push("-machine");
    push("q35");
    push("-accel");
    push(c.accel.name());
    push("-cpu");
    push(match c.accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    });
    push("-m");
    push(&c.memory_mib.to_string());
    push("-smp");
    push(&c.cpus.to_string());
    for s in ["-nodefaults", "-display", "none", "-no-reboot"] {
        push(s);
    }
    push("-serial");
    push("stdio");
    push("-monitor");
    a.push(join("unix:", &c.monitor, ",server=on,wait=off"));
    a.push("-kernel".into());
    a.push(c.kernel.clone().into_os_string());
    if let Some(i) = &c.initrd {
        a.push("-initrd".into());
        a.push(i.clone().into_os_string());
    }
    a.push("-append".into());
    a.push(c.cmdline.clone().into());
    a.push("-drive".into());
    // A comma in a path must be doubled in QEMU's option syntax.
    let path = c.disk_path.to_string_lossy().replace(',', ",,");
    a.push(format!("file={path},if=none,id=d0,format={}", c.disk_format).into());
    a.push("-device".into());
    a.push(
        match c.disk {
            Disk::Virtio => "virtio-blk-pci,drive=d0",
            Disk::Nvme => "nvme,drive=d0,serial=rootsmith0",
        }
        .into(),
    );
    a.push("-netdev".into());
    a.push(
        format!(
            "user,id=n0,{}hostfwd=tcp:127.0.0.1:{}-:22",
            if c.restrict { "restrict=on," } else { "" },
            c.ssh_port
        )
        .into(),
    );
    a.push("-device".into());
    a.push("virtio-net-pci,netdev=n0".into());
    a
}

fn join(pre: &str, p: &Path, post: &str) -> OsString {
    let mut s = OsString::from(pre);
    s.push(p.as_os_str());
    s.push(post);
    s
}

/// Why no QEMU was found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FindError {
    /// The path given (flag or environment) is not a file.
    #[error("{from} {}: no such file; give the path of a qemu-system-x86_64 binary (or omit it to search PATH)", .path.display())]
    Missing {
        /// `--qemu` or `ROOTSMITH_QEMU`.
        from: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// Nothing on PATH.
    #[error("no qemu-system-x86_64 on PATH: install QEMU (Debian/Ubuntu: apt-get install qemu-system-x86; Alpine: apk add qemu-system-x86_64) or pass its path with --qemu or ROOTSMITH_QEMU")]
    NotOnPath,
}

/// Finds QEMU: the flag, else the environment variable, else `PATH`.
pub fn find(
    flag: Option<&Path>,
    env: Option<&Path>,
    path_var: Option<&std::ffi::OsStr>,
    is_file: impl Fn(&Path) -> bool,
) -> Result<PathBuf, FindError> {
    for (from, p) in [("--qemu", flag), ("ROOTSMITH_QEMU", env)] {
        if let Some(p) = p.filter(|p| !p.as_os_str().is_empty()) {
            return if is_file(p) {
                Ok(p.to_path_buf())
            } else {
                Err(FindError::Missing {
                    from,
                    path: p.to_path_buf(),
                })
            };
        }
    }
    path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(QEMU_BINARY))
        .find(|p| is_file(p))
        .ok_or(FindError::NotOnPath)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> QemuConfig {
        QemuConfig {
            accel: Accel::Tcg,
            memory_mib: 512,
            cpus: 1,
            kernel: "/k/vmlinux.bin".into(),
            initrd: None,
            cmdline: "console=ttyS0 root=/dev/vda".into(),
            disk: Disk::Virtio,
            disk_path: "/t/a,b.qcow2".into(),
            disk_format: "qcow2",
            ssh_port: 2222,
            restrict: true,
            monitor: "/t/mon.sock".into(),
        }
    }

    fn joined(c: &QemuConfig) -> String {
        args(c)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn virtio_restricted_tcg() {
        let s = joined(&cfg());
        assert!(s.contains("-accel tcg -cpu max -m 512 -smp 1"), "{s}");
        assert!(s.contains("-no-reboot"));
        assert!(s.contains("-monitor unix:/t/mon.sock,server=on,wait=off"));
        assert!(s.contains("-drive file=/t/a,,b.qcow2,if=none,id=d0,format=qcow2 -device virtio-blk-pci,drive=d0"), "{s}");
        assert!(s.contains("-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=n0"), "{s}");
        assert!(!s.contains("-initrd"));
        // The command line is one argument.
        assert!(args(&cfg())
            .iter()
            .any(|a| a == "console=ttyS0 root=/dev/vda"));
    }

    #[test]
    fn nvme_kvm_initrd_open_network() {
        let mut c = cfg();
        c.accel = Accel::Kvm;
        c.disk = Disk::Nvme;
        c.initrd = Some("/k/initrd.img".into());
        c.restrict = false;
        let s = joined(&c);
        assert!(s.contains("-accel kvm -cpu host"));
        assert!(s.contains("-device nvme,drive=d0,serial=rootsmith0"));
        assert!(s.contains("-initrd /k/initrd.img"));
        assert!(s.contains("-netdev user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22"));
    }

    #[test]
    fn find_order_and_errors() {
        let yes = |p: &Path| p.starts_with("/ok");
        let path = std::ffi::OsString::from("/nope:/ok/bin");
        assert_eq!(
            find(
                Some(Path::new("/ok/q")),
                Some(Path::new("/ok/e")),
                None,
                yes
            ),
            Ok("/ok/q".into())
        );
        assert_eq!(
            find(None, Some(Path::new("/ok/e")), Some(&path), yes),
            Ok("/ok/e".into())
        );
        assert_eq!(
            find(None, None, Some(&path), yes),
            Ok("/ok/bin/qemu-system-x86_64".into())
        );
        let e = find(Some(Path::new("/nonexistent")), None, Some(&path), yes).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--qemu /nonexistent: no such file"),
            "{e}"
        );
        let e = find(None, None, Some(&std::ffi::OsString::from("/nope")), yes).unwrap_err();
        assert!(
            e.to_string().contains("apt-get install qemu-system-x86"),
            "{e}"
        );
    }
}
