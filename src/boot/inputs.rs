//! What to boot: `DIR` (SmolVM's layout: `DIR/rootfs.ext4`, `DIR/vmlinux.bin`, and
//! `DIR/initrd.img` when present) or an image file with `--kernel`; checks that the rootfs
//! is ext4 (superblock magic) and the kernel is a kernel (bzImage `HdrS` header or ELF), and
//! reads the kernel's config when one lies beside it (`config-<release>`, as distribution
//! packages ship it) to pick the root disk and the modules the init must load.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::qemu::Disk;
use super::BootError;

/// The files of one boot.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The ext4 image.
    pub rootfs: PathBuf,
    /// The kernel.
    pub kernel: PathBuf,
    /// The kernel's format and release.
    pub kernel_kind: KernelKind,
    /// An initramfs.
    pub initrd: Option<PathBuf>,
    /// The kernel's `.config`, when found beside it.
    pub config: Option<String>,
}

/// What the kernel file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelKind {
    /// An x86 bzImage, with the release from its header (`6.1.0-56-cloud-amd64`).
    BzImage {
        /// The first word of the header's version string.
        release: Option<String>,
    },
    /// An ELF `vmlinux` (QEMU boots it only through a PVH note).
    Elf,
}

/// Resolves `DIR|IMAGE` and the optional `--kernel`/`--initrd`, and checks them.
pub fn resolve(
    target: &Path,
    kernel: Option<&Path>,
    initrd: Option<&Path>,
) -> Result<Inputs, BootError> {
    let meta = std::fs::metadata(target).map_err(|e| BootError::Input {
        path: target.to_path_buf(),
        why: format!("{e}; give an image directory (rootfs.ext4 + vmlinux.bin) or an ext4 image"),
    })?;
    let (rootfs, dir) = if meta.is_dir() {
        (target.join("rootfs.ext4"), target.to_path_buf())
    } else {
        let dir = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        (target.to_path_buf(), dir)
    };
    check_ext4(&rootfs)?;
    let kernel = match kernel {
        Some(k) => k.to_path_buf(),
        None => {
            let k = dir.join("vmlinux.bin");
            if !k.is_file() {
                return Err(BootError::Input {
                    path: k,
                    why: "no kernel: build with a kernel (vmlinux.bin beside rootfs.ext4) or pass --kernel FILE".into(),
                });
            }
            k
        }
    };
    let kernel_kind = check_kernel(&kernel)?;
    let initrd = match initrd {
        Some(i) => {
            if !i.is_file() {
                return Err(BootError::Input {
                    path: i.to_path_buf(),
                    why: "no such file; pass an initramfs (cpio, optionally compressed) or omit --initrd".into(),
                });
            }
            Some(i.to_path_buf())
        }
        None if meta.is_dir() => Some(dir.join("initrd.img")).filter(|p| p.is_file()),
        None => None,
    };
    let config = find_config(&kernel, &dir, &kernel_kind);
    Ok(Inputs {
        rootfs,
        kernel,
        kernel_kind,
        initrd,
        config,
    })
}

/// The ext4 superblock magic (0xEF53) at byte 1024 + 0x38.
pub fn check_ext4(path: &Path) -> Result<(), BootError> {
    let bad = |why: String| BootError::Input {
        path: path.to_path_buf(),
        why,
    };
    let mut f = File::open(path).map_err(|e| bad(format!("{e}")))?;
    let mut magic = [0u8; 2];
    f.seek(SeekFrom::Start(1024 + 0x38))
        .and_then(|_| f.read_exact(&mut magic))
        .map_err(|_| bad("not an ext4 filesystem (too short for a superblock); boot a rootfs.ext4 made by rootsmith build or rootsmith mkfs".into()))?;
    if magic != [0x53, 0xEF] {
        return Err(bad("not an ext4 filesystem (no superblock magic 0xEF53 at byte 1080); boot a rootfs.ext4 made by rootsmith build or rootsmith mkfs".into()));
    }
    Ok(())
}

/// A bzImage (`HdrS` at 0x202, release string at 0x200 + the u16 at 0x20E) or an ELF.
pub fn check_kernel(path: &Path) -> Result<KernelKind, BootError> {
    let bad = |why: String| BootError::Input {
        path: path.to_path_buf(),
        why,
    };
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| bad(format!("{e}")))?;
    kernel_kind(&head).ok_or_else(|| {
        bad("not a Linux kernel (no bzImage header and no ELF header); pass a bzImage such as /boot/vmlinuz-* with --kernel".into())
    })
}

/// Pure: the kind of kernel from its first bytes.
pub fn kernel_kind(head: &[u8]) -> Option<KernelKind> {
    if head.starts_with(b"\x7fELF") {
        return Some(KernelKind::Elf);
    }
    if head.get(0x202..0x206) != Some(b"HdrS") {
        return None;
    }
    let release = head
        .get(0x20E..0x210)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .filter(|&o| o != 0)
        .and_then(|o| head.get(o.checked_add(0x200)?..))
        .and_then(|s| {
            let end = s.iter().position(|&c| c == 0 || c == b' ')?;
            std::str::from_utf8(&s[..end]).ok().map(str::to_string)
        })
        .filter(|r| !r.is_empty());
    Some(KernelKind::BzImage { release })
}

/// `config-<release>` or `config` beside the kernel or in the image directory.
fn find_config(kernel: &Path, dir: &Path, kind: &KernelKind) -> Option<String> {
    let kdir = kernel.parent().unwrap_or(dir);
    let mut candidates = Vec::new();
    if let KernelKind::BzImage {
        release: Some(r), ..
    } = kind
    {
        candidates.push(kdir.join(format!("config-{r}")));
        candidates.push(dir.join(format!("config-{r}")));
    }
    candidates.push(dir.join("config"));
    candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
}

/// Pure: `y`, `m` or `None` (not set / absent) for `CONFIG_<name>` in a kernel config.
pub fn config_value(config: &str, name: &str) -> Option<char> {
    let key = format!("CONFIG_{name}=");
    config.lines().find_map(|l| {
        l.strip_prefix(&key)
            .and_then(|v| v.chars().next())
            .filter(|c| *c == 'y' || *c == 'm')
    })
}

/// The user's `--disk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiskChoice {
    /// virtio-blk with an initrd or when the kernel config says it is built in (or says
    /// nothing); NVMe when the config has virtio-blk as a module and NVMe built in.
    Auto,
    /// virtio-blk (`root=/dev/vda`).
    Virtio,
    /// NVMe (`root=/dev/nvme0n1`).
    Nvme,
}

/// Pure: the disk to use and why.
pub fn choose_disk(
    choice: DiskChoice,
    has_initrd: bool,
    config: Option<&str>,
) -> (Disk, &'static str) {
    match choice {
        DiskChoice::Virtio => (Disk::Virtio, "--disk virtio"),
        DiskChoice::Nvme => (Disk::Nvme, "--disk nvme"),
        DiskChoice::Auto if has_initrd => (Disk::Virtio, "the initrd loads virtio-blk"),
        DiskChoice::Auto => match config {
            Some(c)
                if config_value(c, "VIRTIO_BLK") != Some('y')
                    && config_value(c, "BLK_DEV_NVME") == Some('y') =>
            {
                (
                    Disk::Nvme,
                    "the kernel config has NVMe built in, virtio-blk not",
                )
            }
            Some(_) => (Disk::Virtio, "the kernel config has virtio-blk built in"),
            None => (
                Disk::Virtio,
                "no kernel config beside the kernel: SmolVM's default",
            ),
        },
    }
}

/// Pure: the modules rootsmith-init should load when the user gave no `--modules`: none
/// with an initrd (it loads them); virtio_net when the config has it as a module, or when
/// there is no config and the disk is NVMe (a modular distribution kernel).
pub fn default_modules(has_initrd: bool, config: Option<&str>, disk: Disk) -> Vec<String> {
    if has_initrd {
        return Vec::new();
    }
    let modular_net = match config {
        Some(c) => config_value(c, "VIRTIO_NET") == Some('m'),
        None => disk == Disk::Nvme,
    };
    if modular_net {
        vec!["virtio_net".to_string()]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage(release: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x1000];
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x20E..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let s = format!("{release} (builder@host) #1 SMP\0");
        b[0x500..0x500 + s.len()].copy_from_slice(s.as_bytes());
        b
    }

    #[test]
    fn kernel_kinds() {
        assert_eq!(
            kernel_kind(&bzimage("6.1.0-56-cloud-amd64")),
            Some(KernelKind::BzImage {
                release: Some("6.1.0-56-cloud-amd64".into())
            })
        );
        assert_eq!(kernel_kind(b"\x7fELF\x02\x01"), Some(KernelKind::Elf));
        assert_eq!(kernel_kind(b"#!/bin/sh\necho not a kernel\n"), None);
        assert_eq!(kernel_kind(&[]), None);
        // A header whose version offset points past the end: a kernel, release unknown.
        let mut b = bzimage("x");
        b[0x20E..0x210].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert_eq!(kernel_kind(&b), Some(KernelKind::BzImage { release: None }));
    }

    const DEBIAN: &str = "CONFIG_VIRTIO_BLK=m\nCONFIG_BLK_DEV_NVME=y\n# CONFIG_IP_PNP is not set\nCONFIG_VIRTIO_NET=m\n";
    const SMOLVM: &str = "CONFIG_VIRTIO_BLK=y\nCONFIG_VIRTIO_NET=y\n";

    #[test]
    fn config_values() {
        assert_eq!(config_value(DEBIAN, "VIRTIO_BLK"), Some('m'));
        assert_eq!(config_value(DEBIAN, "BLK_DEV_NVME"), Some('y'));
        assert_eq!(config_value(DEBIAN, "IP_PNP"), None);
        assert_eq!(config_value(DEBIAN, "VIRTIO"), None);
    }

    #[test]
    fn disk_and_modules() {
        let a = DiskChoice::Auto;
        assert_eq!(choose_disk(a, false, Some(DEBIAN)).0, Disk::Nvme);
        assert_eq!(choose_disk(a, true, Some(DEBIAN)).0, Disk::Virtio);
        assert_eq!(choose_disk(a, false, Some(SMOLVM)).0, Disk::Virtio);
        assert_eq!(choose_disk(a, false, None).0, Disk::Virtio);
        assert_eq!(
            choose_disk(DiskChoice::Nvme, true, Some(SMOLVM)).0,
            Disk::Nvme
        );
        assert_eq!(
            default_modules(false, Some(DEBIAN), Disk::Nvme),
            ["virtio_net"]
        );
        assert!(default_modules(true, Some(DEBIAN), Disk::Virtio).is_empty());
        assert!(default_modules(false, Some(SMOLVM), Disk::Virtio).is_empty());
        assert_eq!(default_modules(false, None, Disk::Nvme), ["virtio_net"]);
        assert!(default_modules(false, None, Disk::Virtio).is_empty());
    }

    #[test]
    fn not_ext4_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.img");
        std::fs::write(&p, vec![0u8; 4096]).expect("write");
        let e = check_ext4(&p).unwrap_err().to_string();
        assert!(e.contains("not an ext4 filesystem"), "{e}");
        std::fs::write(&p, b"short").expect("write");
        assert!(check_ext4(&p).is_err());
        let mut sb = vec![0u8; 4096];
        sb[1024 + 0x38] = 0x53;
        sb[1024 + 0x39] = 0xEF;
        std::fs::write(&p, &sb).expect("write");
        assert!(check_ext4(&p).is_ok());
    }
}
