//! SSH for one boot: the key pair (given, derived, or a throwaway ed25519 pair made with
//! `ssh-keygen` for this boot), the arguments of the real `ssh` client, and the banner probe.
//!
//! The probe keeps **one** connection open at a time. slirp accepts a forwarded connection
//! at once, before the guest is up, and queues it; many short probes pile up and reach sshd
//! together, where each slow child (under TCG) misses its probe's deadline and nothing ever
//! succeeds (see the boot note). So each probe waits long once the guest is up.

use std::ffi::OsString;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::BootError;

/// The key root's `authorized_keys` gets, and the private key `ssh` uses.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The public key line.
    pub public: String,
    /// The private key (`-i`); `None` leaves the choice to `ssh` (agent, defaults).
    pub identity: Option<PathBuf>,
    /// True when made for this boot (deleted with the work directory).
    pub throwaway: bool,
}

/// `--authorized-key` / `--identity`, or a fresh pair in `work`.
pub fn keys(
    authorized: Option<&Path>,
    identity: Option<&Path>,
    work: &Path,
) -> Result<Keys, BootError> {
    match (authorized, identity) {
        (Some(pubf), id) => {
            let public = read_public(pubf)?;
            let identity = id.map(Path::to_path_buf).or_else(|| {
                let s = pubf.to_string_lossy();
                s.strip_suffix(".pub")
                    .map(PathBuf::from)
                    .filter(|p| p.is_file())
            });
            Ok(Keys {
                public,
                identity,
                throwaway: false,
            })
        }
        (None, Some(id)) => {
            let mut pubf = id.as_os_str().to_owned();
            pubf.push(".pub");
            let pubf = PathBuf::from(pubf);
            let public = if pubf.is_file() {
                read_public(&pubf)?
            } else {
                let out = tool(Command::new("ssh-keygen").arg("-y").arg("-f").arg(id))?;
                String::from_utf8_lossy(&out).trim().to_string()
            };
            Ok(Keys {
                public,
                identity: Some(id.to_path_buf()),
                throwaway: false,
            })
        }
        (None, None) => {
            let id = work.join("id_ed25519");
            tool(
                Command::new("ssh-keygen")
                    .args([
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        "rootsmith-boot",
                        "-f",
                    ])
                    .arg(&id),
            )?;
            let public = read_public(&work.join("id_ed25519.pub"))?;
            Ok(Keys {
                public,
                identity: Some(id),
                throwaway: true,
            })
        }
    }
}

fn read_public(p: &Path) -> Result<String, BootError> {
    let text = std::fs::read_to_string(p).map_err(|e| BootError::Input {
        path: p.to_path_buf(),
        why: format!("{e}; pass an OpenSSH public key file (e.g. ~/.ssh/id_ed25519.pub)"),
    })?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let kind = line.split_whitespace().next().unwrap_or("");
    if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-")) {
        return Err(BootError::Input {
            path: p.to_path_buf(),
            why: "not an OpenSSH public key (expected a line like `ssh-ed25519 AAAA... comment`); pass the .pub file".into(),
        });
    }
    Ok(line.to_string())
}

fn tool(cmd: &mut Command) -> Result<Vec<u8>, BootError> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BootError::Tool {
            tool: name.clone(),
            why: format!("{e}; install openssh-client"),
        })?;
    if !out.status.success() {
        return Err(BootError::Tool {
            tool: name,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// Pure: the `ssh` arguments before the remote command.
pub fn ssh_args(identity: Option<&Path>, port: u16, user: &str) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    for o in [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "BatchMode=yes",
        "ConnectTimeout=30",
    ] {
        a.push("-o".into());
        a.push(o.into());
    }
    if let Some(id) = identity {
        a.push("-o".into());
        a.push("IdentitiesOnly=yes".into());
        a.push("-i".into());
        a.push(id.as_os_str().to_owned());
    }
    a.push("-p".into());
    a.push(port.to_string().into());
    a.push(format!("{user}@127.0.0.1").into());
    a
}

/// Pure: the same as one line a user can paste into a shell.
pub fn ssh_command_line(identity: Option<&Path>, port: u16, user: &str) -> String {
    let mut s = String::from("ssh");
    for a in ssh_args(identity, port, user) {
        s.push(' ');
        s.push_str(&shell_quote(&a.to_string_lossy()));
    }
    s
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=@:,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// An `SSH-...` line.
    Banner(String),
    /// Refused, reset or closed without a banner: the guest is not listening yet.
    Closed,
    /// Nothing within the probe's time, or `abort` said stop.
    Silent,
}

/// One connection to 127.0.0.1:`port`, held up to `hold` for a banner; `abort` is asked
/// every 200 ms.
pub fn probe(port: u16, hold: Duration, abort: &mut dyn FnMut() -> bool) -> Probe {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return Probe::Closed;
    };
    let until = Instant::now() + hold;
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 256];
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => return Probe::Closed,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if let Some(i) = got.iter().position(|&c| c == b'\n') {
                    let line = String::from_utf8_lossy(&got[..i]).trim().to_string();
                    return if line.starts_with("SSH-") {
                        Probe::Banner(line)
                    } else {
                        Probe::Closed
                    };
                }
                if got.len() > 4096 {
                    return Probe::Closed;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if abort() {
                    return Probe::Silent;
                }
            }
            Err(_) => return Probe::Closed,
        }
    }
    Probe::Silent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn args_and_printed_command() {
        let a = ssh_args(Some(Path::new("/tmp/k dir/id")), 2222, "root");
        let s: Vec<String> = a.iter().map(|x| x.to_string_lossy().into_owned()).collect();
        assert!(s.windows(2).any(|w| w == ["-o", "BatchMode=yes"]));
        assert!(s
            .windows(2)
            .any(|w| w == ["-o", "StrictHostKeyChecking=no"]));
        assert!(s
            .windows(2)
            .any(|w| w == ["-o", "UserKnownHostsFile=/dev/null"]));
        assert!(s.windows(2).any(|w| w == ["-i", "/tmp/k dir/id"]));
        assert_eq!(s.last().map(String::as_str), Some("root@127.0.0.1"));
        let line = ssh_command_line(Some(Path::new("/tmp/k dir/id")), 2222, "root");
        assert!(
            line.starts_with("ssh -o StrictHostKeyChecking=no"),
            "{line}"
        );
        assert!(
            line.contains("-i '/tmp/k dir/id' -p 2222 root@127.0.0.1"),
            "{line}"
        );
        assert!(!ssh_command_line(None, 22, "root").contains("-i"));
    }

    #[test]
    fn public_keys_are_checked() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("k.pub");
        std::fs::write(&p, "# comment\nssh-ed25519 AAAAC3Nz me@host\n").expect("write");
        std::fs::write(d.path().join("k"), "private").expect("write");
        let k = keys(Some(&p), None, d.path()).expect("keys");
        assert_eq!(k.public, "ssh-ed25519 AAAAC3Nz me@host");
        assert_eq!(k.identity.as_deref(), Some(d.path().join("k").as_path()));
        std::fs::write(&p, "-----BEGIN OPENSSH PRIVATE KEY-----\n").expect("write");
        let e = keys(Some(&p), None, d.path()).unwrap_err().to_string();
        assert!(e.contains("not an OpenSSH public key"), "{e}");
    }

    #[test]
    fn probe_sees_banner_close_and_silence() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let t = std::thread::spawn(move || {
            let (mut a, _) = l.accept().expect("accept");
            a.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
                .expect("write");
            let (b, _) = l.accept().expect("accept");
            drop(b);
            let (_c, _) = l.accept().expect("accept");
            std::thread::sleep(Duration::from_millis(800));
        });
        let hold = Duration::from_secs(5);
        assert_eq!(
            probe(port, hold, &mut || false),
            Probe::Banner("SSH-2.0-OpenSSH_9.2p1 Debian".into())
        );
        assert_eq!(probe(port, hold, &mut || false), Probe::Closed);
        assert_eq!(
            probe(port, Duration::from_millis(400), &mut || false),
            Probe::Silent
        );
        t.join().expect("server");
    }
}
