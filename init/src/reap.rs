//! Reaping: every child, orphans included (they are reparented to PID 1), is collected with
//! `waitpid(-1, WNOHANG)` until none is left, after each SIGCHLD and on every loop turn.

use crate::sys::{self, Exit};
use crate::warn;

/// Collect every exited child; `on_exit` sees each (pid, how it ended). Returns the count.
pub fn reap_all(mut on_exit: impl FnMut(libc::pid_t, Exit)) -> usize {
    let mut n = 0;
    loop {
        match sys::wait_any_nohang() {
            Ok(Some((pid, exit))) => {
                n += 1;
                on_exit(pid, exit);
            }
            Ok(None) => return n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => {
                warn!("waitpid: {e}");
                return n;
            }
        }
    }
}

/// True when this process has no children left (ECHILD).
pub fn no_children() -> bool {
    !sys::have_children()
}
