//! What one boot measured, in seconds of host time since QEMU was started: kernel entry
//! (from printk times), the kernel's `Run /init`, the init's milestones, sshd up, the SSH
//! banner, the first login, the command, the shutdown. Serialised for `--json`, and shown as
//! one summary line. Pure: built from console lines and host stamps.

use serde::Serialize;

use super::console::{self, Line, Milestone};
use super::disk::{Fsck, Mode};
use super::qemu::{Accel, Disk};

/// Host-clock times, seconds since QEMU start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// The kernel started (min over lines of host time − printk time).
    pub kernel_entry: Option<f64>,
    /// The kernel ran init (`Run /init as init process`), host time.
    pub init_exec: Option<f64>,
    /// The same in guest uptime (printk).
    pub init_exec_uptime: Option<f64>,
    /// The init the kernel ran.
    pub init_path: Option<String>,
    /// sshd said it listens (`Server listening on`, `Started ssh.service`).
    pub sshd_up: Option<f64>,
    /// The SSH banner arrived on the forwarded port.
    pub banner: Option<f64>,
    /// The first `ssh ... true` succeeded.
    pub login: Option<f64>,
    /// `--exec`'s command ended.
    pub exec_done: Option<f64>,
    /// The shutdown was requested.
    pub shutdown_request: Option<f64>,
    /// QEMU exited.
    pub qemu_exit: Option<f64>,
}

impl Timings {
    /// Fills the console-derived fields.
    pub fn from_console(&mut self, lines: &[Line]) {
        self.kernel_entry = console::kernel_entry(lines);
        if let Some((path, up, _)) = console::run_init(lines) {
            self.init_exec_uptime = Some(up);
            self.init_exec = self.kernel_entry.map(|k| k + up);
            self.init_path = Some(path);
        }
        self.sshd_up = lines
            .iter()
            .find(|l| console::sshd_up(&l.text))
            .map(|l| l.host);
    }
}

/// How the VM was stopped after `--exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shutdown {
    /// Ctrl-Alt-Del through the monitor (`sendkey ctrl-alt-delete`).
    CtrlAltDel,
    /// The ACPI power button (`system_powerdown`).
    Acpi,
    /// Neither worked: QEMU was told to quit (no clean shutdown).
    Forced,
    /// The guest ended by itself.
    Guest,
}

/// Everything about one boot.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The QEMU binary.
    pub qemu: String,
    /// The accelerator used.
    pub accel: Accel,
    /// True when KVM was tried, gave no console output, and TCG was used instead.
    pub kvm_fallback: bool,
    /// The root disk.
    pub disk: Disk,
    /// Overlay, copy or in place.
    pub disk_mode: Mode,
    /// The host port forwarded to the guest's 22.
    pub ssh_port: u16,
    /// The kernel command line.
    pub cmdline: String,
    /// The `ssh` command to log in.
    pub ssh_command: String,
    /// Host-clock times.
    pub timings: Timings,
    /// The init's milestones.
    pub milestones: Vec<Milestone>,
    /// `--exec`'s exit status.
    pub exec_status: Option<i32>,
    /// How the VM stopped.
    pub shutdown: Option<Shutdown>,
    /// QEMU's exit code.
    pub qemu_status: Option<i32>,
    /// `e2fsck -fn` of the booted disk, when checked.
    pub fsck: Option<Fsck>,
}

fn f(x: Option<f64>) -> String {
    x.map_or_else(|| "?".to_string(), |v| format!("{v:.2}"))
}

impl Report {
    /// One line: time to SSH and the stages.
    pub fn summary(&self) -> String {
        let t = &self.timings;
        let mut s = format!(
            "time to ssh {} s ({}{}): kernel {} → init {} → sshd {} → banner {} → login {}",
            f(t.banner),
            self.accel.name(),
            if self.kvm_fallback { ", kvm hung" } else { "" },
            f(t.kernel_entry),
            f(t.init_exec),
            f(t.sshd_up),
            f(t.banner),
            f(t.login),
        );
        if let (Some(a), Some(b)) = (t.shutdown_request, t.qemu_exit) {
            s.push_str(&format!("; power-off {:.2} s", b - a));
        }
        s
    }

    /// The milestones as `stage uptime` pairs relative to `init-start`.
    pub fn milestone_line(&self) -> Option<String> {
        let start = self.milestones.first()?.uptime;
        Some(
            self.milestones
                .iter()
                .map(|m| format!("{} +{:.0}ms", m.stage, (m.uptime - start) * 1000.0))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_from_console() {
        let lines = [
            Line::new(0.6, b"[    0.000000] Linux version"),
            Line::new(3.1, b"[    2.500000] Run /init as init process"),
            Line::new(3.2, b"rootsmith-init: init-start 2.510000s"),
            Line::new(4.0, b"Server listening on 0.0.0.0 port 22."),
        ];
        let mut t = Timings::default();
        t.from_console(&lines);
        assert!((t.kernel_entry.unwrap_or(0.0) - 0.6).abs() < 1e-9);
        assert!((t.init_exec.unwrap_or(0.0) - 3.1).abs() < 1e-9);
        assert_eq!(t.init_path.as_deref(), Some("/init"));
        assert_eq!(t.sshd_up, Some(4.0));
    }
}
