//! The disk QEMU writes to. Booting never alters the built image: by default the guest
//! writes to a qcow2 overlay whose backing file is the image (`qemu-img create -f qcow2 -F raw
//! -b IMAGE`), or to a sparse copy when there is no `qemu-img`; `--in-place` boots the image
//! itself. After the VM exits, [`check`] runs `e2fsck -fn` on what the guest wrote (the
//! overlay flattened to raw with `qemu-img convert`, the copy, or the image).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::BootError;

/// How the image is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A qcow2 overlay backed by the image.
    Overlay,
    /// A sparse copy of the image.
    Copy,
    /// The image itself (`--in-place`).
    InPlace,
}

/// The disk of one boot.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What QEMU opens.
    pub path: PathBuf,
    /// `raw` or `qcow2`.
    pub format: &'static str,
    /// How.
    pub mode: Mode,
}

/// Finds `qemu-img`: `$ROOTSMITH_QEMU_IMG`, beside QEMU, then `PATH`.
pub fn find_qemu_img(qemu: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROOTSMITH_QEMU_IMG").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let beside = qemu.with_file_name("qemu-img");
    if beside.is_file() {
        return Some(beside);
    }
    which("qemu-img")
}

/// A program on `PATH`, or in `/sbin`, `/usr/sbin` (e2fsck lives there).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Makes the disk for this boot in `work`.
pub fn prepare(
    image: &Path,
    work: &Path,
    in_place: bool,
    qemu_img: Option<&Path>,
) -> Result<Prepared, BootError> {
    if in_place {
        return Ok(Prepared {
            path: image.to_path_buf(),
            format: "raw",
            mode: Mode::InPlace,
        });
    }
    let abs = std::fs::canonicalize(image).map_err(|e| BootError::Input {
        path: image.to_path_buf(),
        why: format!("{e}"),
    })?;
    if let Some(qi) = qemu_img {
        let overlay = work.join("disk.qcow2");
        run(Command::new(qi)
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&abs)
            .arg(&overlay))?;
        return Ok(Prepared {
            path: overlay,
            format: "qcow2",
            mode: Mode::Overlay,
        });
    }
    let copy = work.join("disk.raw");
    sparse_copy(&abs, &copy).map_err(|e| BootError::Io {
        what: format!("copying {} to {}", abs.display(), copy.display()),
        err: e,
    })?;
    Ok(Prepared {
        path: copy,
        format: "raw",
        mode: Mode::Copy,
    })
}

/// Copies `from` to `to`, leaving holes where `from` has 64 KiB runs of zeros.
pub fn sparse_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = File::open(from)?;
    let len = src.metadata()?.len();
    let mut dst = File::create(to)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if chunk.iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(i64::try_from(n).unwrap_or(i64::MAX)))?;
        } else {
            dst.write_all(chunk)?;
        }
    }
    dst.set_len(len)?;
    dst.sync_all()
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The result of `e2fsck -fn` on the booted disk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fsck {
    /// True when e2fsck exited 0.
    pub clean: bool,
    /// Its output.
    pub output: String,
}

/// `e2fsck -fn` on what the guest wrote (flattening an overlay first, into `work`).
pub fn check(disk: &Prepared, work: &Path, qemu_img: Option<&Path>) -> Result<Fsck, BootError> {
    let target = match disk.mode {
        Mode::Overlay => {
            let qi = qemu_img.ok_or_else(|| BootError::Tool {
                tool: "qemu-img".into(),
                why: "needed to flatten the overlay".into(),
            })?;
            let flat = work.join("flat.raw");
            run(Command::new(qi)
                .args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
                .arg(&disk.path)
                .arg(&flat))?;
            flat
        }
        Mode::Copy | Mode::InPlace => disk.path.clone(),
    };
    let e2fsck = which("e2fsck").ok_or_else(|| BootError::Tool {
        tool: "e2fsck".into(),
        why: "not found; install e2fsprogs or drop --check".into(),
    })?;
    let out = Command::new(e2fsck)
        .arg("-fn")
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BootError::Tool {
            tool: "e2fsck".into(),
            why: e.to_string(),
        })?;
    if disk.mode == Mode::Overlay {
        let _ = std::fs::remove_file(&target);
    }
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(Fsck {
        clean: out.status.success(),
        output,
    })
}

fn run(cmd: &mut Command) -> Result<(), BootError> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BootError::Tool {
            tool: name.clone(),
            why: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BootError::Tool {
            tool: name,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_keeps_bytes_and_length() {
        let d = tempfile::tempdir().expect("tempdir");
        let a = d.path().join("a");
        let mut data = vec![0u8; 300 * 1024];
        data[5] = 1;
        data[200 * 1024] = 7;
        data.extend_from_slice(&[0u8; 1000]);
        std::fs::write(&a, &data).expect("write");
        let b = d.path().join("b");
        sparse_copy(&a, &b).expect("copy");
        assert_eq!(std::fs::read(&b).expect("read"), data);
    }

    #[test]
    fn in_place_is_the_image() {
        let p = prepare(Path::new("/x/rootfs.ext4"), Path::new("/w"), true, None).expect("ok");
        assert_eq!(p.mode, Mode::InPlace);
        assert_eq!(p.path, Path::new("/x/rootfs.ext4"));
    }
}
