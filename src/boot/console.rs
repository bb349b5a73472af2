//! Reading the serial console: each line carries the host time it arrived (seconds since
//! QEMU was started), and this module finds the kernel's printk times, the
//! `Run /init as init process` line, rootsmith-init's milestones
//! (`rootsmith-init: <stage> <uptime>s` and SmolVM's `SMOLVM_TS stage=… uptime_s=…`),
//! sshd coming up, and the failures worth stopping for (a kernel panic, no root device).
//! Pure: no I/O.

/// One console line and when the host saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Seconds since QEMU was started, on the host's monotonic clock.
    pub host: f64,
    /// The text, without the line ending, carriage returns or terminal escapes.
    pub text: String,
}

impl Line {
    /// A line from raw console bytes.
    pub fn new(host: f64, raw: &[u8]) -> Line {
        Line {
            host,
            text: clean(&String::from_utf8_lossy(raw)),
        }
    }
}

/// Drops `\r`, `\n` and ANSI escape sequences (systemd colours its status lines).
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte(0x40..=0x7e); other escapes: one more char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// The printk time of a kernel line, `[    1.234567] ...`.
pub fn printk_time(text: &str) -> Option<f64> {
    let rest = text.trim_start().strip_prefix('[')?;
    let (t, _) = rest.split_once(']')?;
    t.trim().parse().ok()
}

/// A milestone: stage name, guest uptime in seconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Milestone {
    /// The stage (`init-start`, `mounts-ready`, `first-service-started`, ...).
    pub stage: String,
    /// Guest uptime when the init reached it.
    pub uptime: f64,
    /// Host seconds since QEMU start when the line arrived.
    pub host: f64,
}

/// `rootsmith-init: <stage> <uptime>s`, or SmolVM's `SMOLVM_TS stage=<s> ... uptime_s=<f>`.
pub fn milestone(line: &Line) -> Option<Milestone> {
    let t = line.text.trim();
    if let Some(rest) = t.strip_prefix("SMOLVM_TS ") {
        let mut stage = None;
        let mut uptime = None;
        for kv in rest.split_whitespace() {
            match kv.split_once('=') {
                Some(("stage", v)) => stage = Some(v.to_string()),
                Some(("uptime_s", v)) => uptime = v.parse().ok(),
                _ => {}
            }
        }
        return Some(Milestone {
            stage: stage?,
            uptime: uptime?,
            host: line.host,
        });
    }
    let rest = t.strip_prefix("rootsmith-init: ")?;
    let mut words = rest.split(' ');
    let (stage, up, extra) = (words.next()?, words.next()?, words.next());
    if extra.is_some() || stage.ends_with(':') {
        return None;
    }
    Some(Milestone {
        stage: stage.to_string(),
        uptime: up.strip_suffix('s')?.parse().ok()?,
        host: line.host,
    })
}

/// rootsmith-init prints each milestone twice (its own line and `SMOLVM_TS`): one per stage.
pub fn milestones(lines: &[Line]) -> Vec<Milestone> {
    let mut out: Vec<Milestone> = Vec::new();
    for m in lines.iter().filter_map(milestone) {
        if !out.iter().any(|o| o.stage == m.stage) {
            out.push(m);
        }
    }
    out
}

/// When the kernel started, in host seconds: the smallest `host − printk` over the lines
/// (the line that arrived with the least delay bounds it best).
pub fn kernel_entry(lines: &[Line]) -> Option<f64> {
    lines
        .iter()
        .filter_map(|l| printk_time(&l.text).map(|p| l.host - p))
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))))
}

/// The kernel's `Run <path> as init process`: (path, printk time, host time).
pub fn run_init(lines: &[Line]) -> Option<(String, f64, f64)> {
    lines.iter().find_map(|l| {
        let i = l.text.find("Run ")?;
        let rest = l.text.get(i + 4..)?;
        let path = rest.strip_suffix(" as init process")?;
        Some((path.to_string(), printk_time(&l.text)?, l.host))
    })
}

/// sshd is up: `sshd -e` says `Server listening on`, systemd says `Started ssh.service` or
/// `Started OpenBSD Secure Shell server`.
pub fn sshd_up(text: &str) -> bool {
    text.contains("Server listening on")
        || text.contains("Started ssh.service")
        || text.contains("Started OpenBSD Secure Shell server")
}

/// The guest's network is configured: systemd reached its network targets.
pub fn network_up(text: &str) -> bool {
    text.contains("Reached target network-online.target")
        || text.contains("Reached target network.target")
}

/// A console line after which the guest will not get to SSH, with a hint for the user.
pub fn fatal(text: &str) -> Option<&'static str> {
    if text.contains("Unable to mount root fs") || text.contains("Cannot open root device") {
        Some("the kernel found no root disk: with a distribution kernel whose virtio-blk is a module, pass --disk nvme or an --initrd that loads virtio_blk")
    } else if text.contains("Kernel panic - not syncing") {
        Some("the guest kernel panicked")
    } else {
        None
    }
}

/// The last `n` lines, one per line, for error messages.
pub fn tail(lines: &[Line], n: usize) -> String {
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(host: f64, s: &str) -> Line {
        Line::new(host, s.as_bytes())
    }

    #[test]
    fn printk_and_kernel_entry() {
        let lines = [
            l(1.2, "[    0.000000] Linux version 6.1.0"),
            l(2.0, "[    0.700000] smpboot: CPU0"),
            l(2.1, "no stamp"),
        ];
        assert_eq!(printk_time(&lines[1].text), Some(0.7));
        let e = kernel_entry(&lines).expect("entry");
        assert!((e - 1.2).abs() < 1e-9, "{e}");
        assert_eq!(kernel_entry(&lines[2..]), None);
    }

    #[test]
    fn run_init_line() {
        let lines = [l(3.0, "[    2.480000] Run /init as init process\r\n")];
        assert_eq!(run_init(&lines), Some(("/init".into(), 2.48, 3.0)));
        let sd = [l(3.0, "[    2.1] Run /lib/systemd/systemd as init process")];
        assert_eq!(
            run_init(&sd).map(|r| r.0),
            Some("/lib/systemd/systemd".into())
        );
    }

    #[test]
    fn milestones_from_both_formats_once_each() {
        let lines = [
            l(3.0, "rootsmith-init: init-start 2.510s"),
            l(
                3.0,
                "SMOLVM_TS stage=init-start epoch_s=1700000000 uptime_s=2.510",
            ),
            l(3.1, "rootsmith-init: sshd: started (pid 77)"),
            l(3.2, "SMOLVM_TS stage=boot-complete epoch_s=1 uptime_s=2.9"),
            l(3.3, "rootsmith-init: error: something bad"),
        ];
        let m = milestones(&lines);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].stage, "init-start");
        assert!((m[0].uptime - 2.51).abs() < 1e-9);
        assert_eq!(m[1].stage, "boot-complete");
    }

    #[test]
    fn escapes_and_status_lines() {
        let t = clean("[\u{1b}[0;32m  OK  \u{1b}[0m] Started \u{1b}[0;1;39mssh.service\u{1b}[0m - OpenBSD Secure Shell server.\r");
        assert_eq!(
            t,
            "[  OK  ] Started ssh.service - OpenBSD Secure Shell server."
        );
        assert!(sshd_up(&t));
        assert!(sshd_up("Server listening on 0.0.0.0 port 22."));
        assert!(!sshd_up("rootsmith-init: sshd: started"));
        assert!(network_up(&clean("[\u{1b}[0;32m  OK  \u{1b}[0m] Reached target \u{1b}[0;1;39mnetwork.target\u{1b}[0m - Network.")));
    }

    #[test]
    fn fatal_lines_and_tail() {
        assert!(fatal(
            "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
        )
        .is_some_and(|h| h.contains("--disk nvme")));
        assert!(fatal("Kernel panic - not syncing: Attempted to kill init!").is_some());
        assert!(fatal("all good").is_none());
        let lines: Vec<Line> = (0..5).map(|i| l(0.0, &format!("line {i}"))).collect();
        assert_eq!(tail(&lines, 2), "line 3\nline 4");
        assert_eq!(tail(&lines, 10).lines().count(), 5);
    }
}
