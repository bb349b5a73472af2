//! Supervised services: foreground children, restarted when they exit, with a backoff that
//! starts at 100 ms and doubles to 5 s (reset after a service has run for 10 s).
//!
//! Built-in services: `sshd -D -e` when `/usr/sbin/sshd` exists (first running `ssh-keygen`
//! when the image has no host key), and `/usr/local/bin/smolvm-guest-agent --listen
//! vsock://1024` when it is executable. More come from `/etc/rootsmith/services`:
//!
//! ```text
//! # /etc/rootsmith/services: one service per line, started in this order at boot.
//! # NAME COMMAND [ARG...]
//! #   NAME: letters, digits, '.', '_' or '-'. COMMAND: an absolute path, or a name looked up
//! #   in PATH. Words split on blanks; '...' is literal, "..." allows \" and \\, a backslash
//! #   outside quotes escapes the next character. No variables, globs or pipes: wrap those
//! #   in `/bin/sh -c '...'`. '#' starts a comment at the beginning of a line.
//! web   /bin/busybox httpd -f -p 8080 -h /srv/www
//! ```
//!
//! Each service runs in its own process group with stdin on /dev/null and stdout/stderr on
//! the console, with a clean environment (PATH, HOME=/root, TERM).

use crate::sys::{self, Exit};
use crate::{info, warn};
use std::time::Duration;

pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const STABLE_AFTER: Duration = Duration::from_secs(10);
static FIRST_STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A service definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub argv: Vec<String>,
    /// Commands run (in order, each waited for) before the first start only.
    pub prestart: Vec<Vec<String>>,
}

/// Pure: split one command line into words (see the module docs). `Err` names the problem.
pub fn split_words(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            ' ' | '\t' => {
                if have {
                    words.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            '\'' => {
                have = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote"),
                    }
                }
            }
            '"' => {
                have = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote"),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote"),
                    }
                }
            }
            '\\' => {
                have = true;
                cur.push(it.next().ok_or("trailing backslash")?);
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        words.push(cur);
    }
    Ok(words)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Pure: parse `/etc/rootsmith/services`. Bad lines are reported and skipped.
pub fn parse_services(text: &str) -> (Vec<Spec>, Vec<String>) {
    let mut specs: Vec<Spec> = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let (name, rest) = l.split_once([' ', '\t']).unwrap_or((l, ""));
        if !valid_name(name) {
            errors.push(format!("line {n}: bad service name {name:?}"));
            continue;
        }
        if specs.iter().any(|s| s.name == name) {
            errors.push(format!(
                "line {n}: service {name:?} defined twice; later one ignored"
            ));
            continue;
        }
        match split_words(rest) {
            Ok(argv) if argv.is_empty() => {
                errors.push(format!("line {n}: service {name:?} has no command"))
            }
            Ok(argv) if argv[0].contains('\0') => errors.push(format!("line {n}: NUL in command")),
            Ok(argv) => specs.push(Spec {
                name: name.to_string(),
                argv,
                prestart: Vec::new(),
            }),
            Err(e) => errors.push(format!("line {n}: {e}")),
        }
    }
    (specs, errors)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Running prestart command `usize` as pid.
    Pre(usize, libc::pid_t),
    Running(libc::pid_t),
    /// Waiting to (re)start at this monotonic time.
    Waiting(Duration),
    Stopped,
}

struct Svc {
    spec: Spec,
    state: State,
    backoff: Duration,
    started_at: Duration,
    starts: u32,
}

/// All services and their state.
pub struct Supervisor {
    svcs: Vec<Svc>,
    stopping: bool,
}

fn spawn(argv: &[String]) -> std::io::Result<libc::pid_t> {
    let env = [
        format!("PATH={PATH}"),
        "HOME=/root".to_string(),
        "TERM=linux".to_string(),
    ];
    sys::spawn(argv, &env)
}

impl Supervisor {
    pub fn new(specs: Vec<Spec>) -> Self {
        let svcs = specs
            .into_iter()
            .map(|spec| Svc {
                spec,
                state: State::Waiting(Duration::ZERO),
                backoff: BACKOFF_MIN,
                started_at: Duration::ZERO,
                starts: 0,
            })
            .collect();
        Supervisor {
            svcs,
            stopping: false,
        }
    }

    fn launch(s: &mut Svc, now: Duration) {
        let pre = if s.starts == 0 {
            match s.state {
                State::Pre(i, _) => i + 1,
                _ => 0,
            }
        } else {
            usize::MAX
        };
        if let Some(cmd) = s.spec.prestart.get(pre) {
            match spawn(cmd) {
                Ok(pid) => {
                    info!("{}: running {:?}", s.spec.name, cmd);
                    s.state = State::Pre(pre, pid);
                    return;
                }
                Err(e) => warn!("{}: {}: {e}", s.spec.name, cmd[0]),
            }
            // A prestart that cannot start is skipped.
            s.state = State::Pre(pre, 0);
            return Self::launch(s, now);
        }
        s.starts += 1;
        s.started_at = now;
        match spawn(&s.spec.argv) {
            Ok(pid) => {
                if !FIRST_STARTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    crate::log::milestone("first-service-started");
                }
                info!(
                    "{}: started (pid {pid}): {}",
                    s.spec.name,
                    s.spec.argv.join(" ")
                );
                s.state = State::Running(pid);
            }
            Err(e) => {
                warn!(
                    "{}: cannot start {}: {e}; retry in {:?}",
                    s.spec.name, s.spec.argv[0], s.backoff
                );
                s.state = State::Waiting(now + s.backoff);
                s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Start every service whose time has come.
    pub fn tick(&mut self, now: Duration) {
        if self.stopping {
            return;
        }
        for s in &mut self.svcs {
            if matches!(s.state, State::Waiting(t) if t <= now) {
                Self::launch(s, now);
            }
        }
    }

    /// The next restart time, if any service is waiting.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.svcs
            .iter()
            .filter_map(|s| {
                if let State::Waiting(t) = s.state {
                    Some(t)
                } else {
                    None
                }
            })
            .min()
    }

    /// A child exited: advance the service it belonged to (if any).
    pub fn on_exit(&mut self, pid: libc::pid_t, exit: Exit, now: Duration) {
        let stopping = self.stopping;
        let Some(s) = self
            .svcs
            .iter_mut()
            .find(|s| matches!(s.state, State::Running(p) | State::Pre(_, p) if p == pid))
        else {
            return;
        };
        match s.state {
            State::Pre(i, _) => {
                if exit != Exit::Code(0) {
                    warn!(
                        "{}: {} ended with {exit:?}",
                        s.spec.name, s.spec.prestart[i][0]
                    );
                }
                if stopping {
                    s.state = State::Stopped;
                } else {
                    Self::launch(s, now);
                }
            }
            State::Running(_) if stopping => {
                info!("{}: stopped ({exit:?})", s.spec.name);
                s.state = State::Stopped;
            }
            State::Running(_) => {
                if now.saturating_sub(s.started_at) >= STABLE_AFTER {
                    s.backoff = BACKOFF_MIN;
                }
                info!(
                    "{}: exited ({exit:?}); restart in {:?}",
                    s.spec.name, s.backoff
                );
                s.state = State::Waiting(now + s.backoff);
                s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
            }
            State::Waiting(_) | State::Stopped => {}
        }
    }

    /// Stop restarting and send SIGTERM to every running service's process group.
    /// Returns how many were signalled.
    pub fn terminate_all(&mut self) -> usize {
        self.stopping = true;
        let mut n = 0;
        for s in &mut self.svcs {
            match s.state {
                State::Running(pid) | State::Pre(_, pid) if pid > 0 => {
                    let _ = sys::kill(-pid, libc::SIGTERM);
                    let _ = sys::kill(pid, libc::SIGTERM);
                    n += 1;
                }
                _ => s.state = State::Stopped,
            }
        }
        n
    }

    /// True while some service process is still alive.
    pub fn any_running(&self) -> bool {
        self.svcs
            .iter()
            .any(|s| matches!(s.state, State::Running(_) | State::Pre(..)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#"/bin/sh -c 'echo "hi there"' a\ b "x\"y""#).unwrap(),
            vec!["/bin/sh", "-c", "echo \"hi there\"", "a b", "x\"y"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), vec![""]);
        assert!(split_words("'open").is_err());
    }

    #[test]
    fn services_file() {
        let (s, e) = parse_services(
            "# comment\n\nweb /bin/busybox httpd -f -p 8080\nbad/name /x\nweb /again\nempty\nq 'unterminated\nok\t/bin/true\n",
        );
        assert_eq!(
            s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            vec!["web", "ok"]
        );
        assert_eq!(s[0].argv, vec!["/bin/busybox", "httpd", "-f", "-p", "8080"]);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("line 4"));
    }

    #[test]
    fn backoff_doubles_to_five_seconds() {
        let mut sup = Supervisor::new(vec![Spec {
            name: "x".into(),
            argv: vec!["/nonexistent".into()],
            prestart: vec![],
        }]);
        // Pretend it is running, then exits repeatedly.
        let mut now = Duration::from_secs(1);
        let mut waits = Vec::new();
        for pid in 100..110 {
            sup.svcs[0].state = State::Running(pid);
            sup.svcs[0].started_at = now;
            sup.on_exit(pid, Exit::Code(1), now);
            let t = sup.next_deadline().expect("waiting");
            waits.push((t - now).as_millis());
            now = t;
        }
        assert_eq!(
            waits,
            vec![100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]
        );
        // Ran long enough: back to 100 ms.
        sup.svcs[0].state = State::Running(1);
        sup.svcs[0].started_at = now;
        sup.on_exit(1, Exit::Code(0), now + STABLE_AFTER);
        assert_eq!(sup.next_deadline(), Some(now + STABLE_AFTER + BACKOFF_MIN));
    }

    #[test]
    fn no_restart_while_stopping() {
        let mut sup = Supervisor::new(vec![Spec {
            name: "x".into(),
            argv: vec!["/x".into()],
            prestart: vec![],
        }]);
        sup.svcs[0].state = State::Running(0); // pid 0: not signalled
        sup.stopping = true;
        sup.on_exit(0, Exit::Signal(15), Duration::ZERO);
        assert!(!sup.any_running());
        assert_eq!(sup.next_deadline(), None);
    }

    proptest! {
        #[test]
        fn services_parser_never_panics(s in "\\PC{0,300}") {
            let _ = parse_services(&s);
        }
    }
}
