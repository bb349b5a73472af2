//! Orderly shutdown. The order is fixed here and tested with a recording fake of [`Ops`]:
//! stop services (SIGTERM, grace) → `kill(-1, SIGTERM)` → reap → `kill(-1, SIGKILL)` → reap
//! → sync → unmount in reverse order → remount `/` read-only → sync → `reboot(2)`.
//!
//! Which `reboot(2)` command: SIGUSR2 powers off and SIGUSR1 halts (busybox `poweroff`,
//! `halt`). SIGINT (Ctrl-Alt-Del), SIGTERM (busybox `reboot`) and SIGPWR follow
//! `rootsmith.shutdown=` if given, else restart when `reboot=k` is on the command line (with
//! `qemu -no-reboot` or Firecracker that ends the VM), else power off.

use crate::cmdline::ShutdownMode;
use std::time::Duration;

/// The final `reboot(2)` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PowerOff,
    Restart,
    Halt,
}

impl Action {
    pub fn reboot_cmd(self) -> libc::c_int {
        match self {
            Action::PowerOff => libc::RB_POWER_OFF,
            Action::Restart => libc::RB_AUTOBOOT,
            Action::Halt => libc::RB_HALT_SYSTEM,
        }
    }
}

/// Pure: the action for a signal, or `None` if the signal does not shut down.
pub fn action_for(sig: libc::c_int, mode: Option<ShutdownMode>, reboot_k: bool) -> Option<Action> {
    match sig {
        libc::SIGUSR2 => Some(Action::PowerOff),
        libc::SIGUSR1 => Some(Action::Halt),
        libc::SIGINT | libc::SIGTERM | libc::SIGPWR => Some(match mode {
            Some(ShutdownMode::PowerOff) => Action::PowerOff,
            Some(ShutdownMode::Reboot) => Action::Restart,
            Some(ShutdownMode::Halt) => Action::Halt,
            None if reboot_k => Action::Restart,
            None => Action::PowerOff,
        }),
        _ => None,
    }
}

/// The side effects of a shutdown, so the order can be tested without a machine.
pub trait Ops {
    /// SIGTERM to the supervised services; wait up to `grace` for them (reaping meanwhile).
    fn stop_services(&mut self, grace: Duration);
    /// `kill(-1, sig)`: every process but PID 1.
    fn kill_all(&mut self, sig: libc::c_int);
    /// Reap children until none is left or `limit` passes.
    fn reap_until_gone(&mut self, limit: Duration);
    fn sync(&mut self);
    /// Unmount everything but `/`, deepest first (lazily if busy).
    fn unmount_all(&mut self);
    fn remount_root_ro(&mut self);
    /// Does not return on success.
    fn reboot(&mut self, a: Action);
}

/// Service grace period, and how long to wait after SIGTERM to everything.
pub const SERVICE_GRACE: Duration = Duration::from_secs(3);
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// Run the whole sequence.
pub fn run(ops: &mut dyn Ops, a: Action) {
    ops.stop_services(SERVICE_GRACE);
    ops.kill_all(libc::SIGTERM);
    ops.reap_until_gone(TERM_GRACE);
    ops.kill_all(libc::SIGKILL);
    ops.reap_until_gone(Duration::from_millis(500));
    ops.sync();
    ops.unmount_all();
    ops.remount_root_ro();
    ops.sync();
    ops.reboot(a);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec(Vec<String>);

    impl Ops for Rec {
        fn stop_services(&mut self, g: Duration) {
            self.0.push(format!("stop_services {}s", g.as_secs()));
        }
        fn kill_all(&mut self, sig: libc::c_int) {
            self.0.push(format!("kill -1 {sig}"));
        }
        fn reap_until_gone(&mut self, _: Duration) {
            self.0.push("reap".into());
        }
        fn sync(&mut self) {
            self.0.push("sync".into());
        }
        fn unmount_all(&mut self) {
            self.0.push("umount".into());
        }
        fn remount_root_ro(&mut self) {
            self.0.push("ro".into());
        }
        fn reboot(&mut self, a: Action) {
            self.0.push(format!("reboot {a:?}"));
        }
    }

    #[test]
    fn shutdown_order() {
        let mut r = Rec::default();
        run(&mut r, Action::Restart);
        assert_eq!(
            r.0,
            vec![
                "stop_services 3s",
                "kill -1 15",
                "reap",
                "kill -1 9",
                "reap",
                "sync",
                "umount",
                "ro",
                "sync",
                "reboot Restart"
            ]
        );
    }

    #[test]
    fn actions() {
        use libc::*;
        assert_eq!(action_for(SIGINT, None, true), Some(Action::Restart));
        assert_eq!(action_for(SIGTERM, None, false), Some(Action::PowerOff));
        assert_eq!(
            action_for(SIGPWR, Some(ShutdownMode::Halt), true),
            Some(Action::Halt)
        );
        assert_eq!(
            action_for(SIGINT, Some(ShutdownMode::PowerOff), true),
            Some(Action::PowerOff)
        );
        assert_eq!(
            action_for(SIGUSR2, Some(ShutdownMode::Reboot), true),
            Some(Action::PowerOff)
        );
        assert_eq!(action_for(SIGUSR1, None, true), Some(Action::Halt));
        assert_eq!(action_for(SIGCHLD, None, true), None);
        assert_eq!(Action::Restart.reboot_cmd(), RB_AUTOBOOT);
    }
}
