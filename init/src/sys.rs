//! Thin, safe wrappers over the raw syscalls PID 1 needs and `std` does not offer: mount,
//! reboot, modules, signals, reaping, rlimits, clocks. Each returns `io::Result` with errno.
//! This is one of the few modules allowed to use `unsafe`; every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// mount(2). `data` is the fs-specific option string.
pub fn mount(
    source: &str,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let (s, t) = (cstr(source)?, cstr(target)?);
    let f = fstype.map(cstr).transpose()?;
    let d = data.map(cstr).transpose()?;
    // SAFETY: every pointer is either null or a NUL-terminated CString that outlives the call.
    check(unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            d.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    })
}

/// umount2(2).
pub fn umount(target: &str, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: `t` is a valid NUL-terminated string for the duration of the call.
    check(unsafe { libc::umount2(t.as_ptr(), flags) })
}

/// reboot(2) with one of the `LINUX_REBOOT_CMD_*` / `RB_*` commands. Only returns on error
/// (or for `RB_DISABLE_CAD`).
pub fn reboot(cmd: libc::c_int) -> io::Result<()> {
    // SAFETY: reboot takes a plain integer command; no memory is passed.
    check(unsafe { libc::reboot(cmd) })
}

/// sync(2).
pub fn sync() {
    // SAFETY: sync has no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// sethostname(2).
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe the bytes of `name`, valid during the call.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
}

/// finit_module(2): load a module from an open file. `flags` may hold
/// `MODULE_INIT_COMPRESSED_FILE` (4) on kernels with CONFIG_MODULE_DECOMPRESS.
pub fn finit_module(fd: RawFd, params: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: finit_module takes an fd, a NUL-terminated string that outlives the call, and
    // an integer; the kernel copies what it needs.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, fd, params.as_ptr(), flags) };
    check(if rc < 0 { -1 } else { 0 })
}

/// init_module(2): load a module from memory (used after in-process decompression).
pub fn init_module(image: &[u8], params: &CStr) -> io::Result<()> {
    // SAFETY: pointer and length describe `image`, valid during the call; `params` is
    // NUL-terminated. The kernel copies the image.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            params.as_ptr(),
        )
    };
    check(if rc < 0 { -1 } else { 0 })
}

/// kill(2). `pid` -1 means every process but PID 1.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::kill(pid, sig) })
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// One `waitpid(-1, WNOHANG)`: `Ok(None)` when no child has changed state (or none exist).
pub fn wait_any_nohang() -> io::Result<Option<(libc::pid_t, Exit)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable c_int for the duration of the call.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ECHILD) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if pid == 0 {
        return Ok(None);
    }
    let exit = if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    Ok(Some((pid, exit)))
}

/// The signals PID 1 handles, blocked in every thread and read from a signalfd.
pub const HANDLED: [libc::c_int; 6] = [
    libc::SIGCHLD,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGPWR,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Block [`HANDLED`] in the calling thread (threads spawned later inherit the mask; children
/// get an empty mask from `std::process::Command`) and return a signalfd for them.
pub fn block_and_signalfd() -> io::Result<OwnedFd> {
    let set = handled_set();
    // SAFETY: `set` is an initialised sigset_t; the old-mask pointer may be null.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: -1 asks for a new fd; `set` is initialised; flags are valid.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by signalfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Wait up to `timeout` (None = forever) for the signalfd, then drain it.
pub fn read_signals(fd: &OwnedFd, timeout: Option<Duration>) -> Vec<libc::c_int> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    // SAFETY: one valid pollfd, count 1.
    unsafe { libc::poll(&mut pfd, 1, ms) };
    let mut out = Vec::new();
    loop {
        // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`, which is exactly that large.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if n != size as isize {
            break;
        }
        out.push(info.ssi_signo as libc::c_int);
    }
    out
}

/// setrlimit(2) for RLIMIT_NOFILE, capped at what the kernel allows (`fs.nr_open`).
pub fn raise_nofile(want: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: want as libc::rlim_t,
        rlim_max: want as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })
}

fn clock(id: libc::clockid_t) -> Duration {
    // SAFETY: timespec is plain data; clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is valid and writable; the clock ids used exist on every Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Time since boot, counting suspend (what `/proc/uptime` shows, at nanosecond resolution).
pub fn uptime() -> Duration {
    clock(libc::CLOCK_BOOTTIME)
}

/// Wall-clock time since the epoch.
pub fn epoch() -> Duration {
    clock(libc::CLOCK_REALTIME)
}

/// Monotonic time, for deadlines.
pub fn monotonic() -> Duration {
    clock(libc::CLOCK_MONOTONIC)
}

/// setsockopt(SO_BINDTODEVICE).
pub fn bind_to_device(fd: RawFd, dev: &str) -> io::Result<()> {
    // SAFETY: pointer/length describe `dev`'s bytes; `fd` is a socket owned by the caller.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr().cast(),
            dev.len() as libc::socklen_t,
        )
    })
}

/// Interface index by name (0 → not found).
pub fn if_index(name: &str) -> Option<u32> {
    let n = cstr(name).ok()?;
    // SAFETY: `n` is NUL-terminated and valid for the call.
    let i = unsafe { libc::if_nametoindex(n.as_ptr()) };
    (i != 0).then_some(i)
}

/// The kernel release (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is valid and writable.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: the kernel NUL-terminates `release` within its fixed-size array.
    unsafe { CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)`: false only when this process has no
/// children at all (ECHILD). Nothing is reaped.
pub fn have_children() -> bool {
    // SAFETY: siginfo_t is plain data; all-zero is valid and waitid writes it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is valid and writable for the call.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    !(rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

/// Start `argv` (argv[0] looked up in PATH) with environment `env` (`KEY=VALUE`) through
/// `posix_spawnp` (musl: a CLONE_VFORK child, no page-table copy; exec errors come back as
/// errors): stdin on /dev/null, stdout/stderr inherited, an empty signal mask, every signal
/// at its default action, and its own process group.
pub fn spawn(argv: &[String], env: &[String]) -> io::Result<libc::pid_t> {
    let cargv: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<io::Result<_>>()?;
    let cenv: Vec<CString> = env.iter().map(|a| cstr(a)).collect::<io::Result<_>>()?;
    if cargv.is_empty() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut pargv: Vec<*mut libc::c_char> = cargv.iter().map(|c| c.as_ptr().cast_mut()).collect();
    pargv.push(std::ptr::null_mut());
    let mut penv: Vec<*mut libc::c_char> = cenv.iter().map(|c| c.as_ptr().cast_mut()).collect();
    penv.push(std::ptr::null_mut());
    let devnull = c"/dev/null";
    let mut pid: libc::pid_t = 0;
    // SAFETY: attr and file_actions are initialised before use and destroyed after; every
    // pointer passed (argv, envp, path strings, sigsets) points to live, NUL-terminated or
    // initialised data that outlives the posix_spawnp call, which copies what it needs.
    let rc = unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        libc::posix_spawn_file_actions_init(&mut fa);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        // Every signal back to its default (std ignores SIGPIPE; a parent may ignore more).
        let mut dfl: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut dfl);
        libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        libc::posix_spawnattr_setsigdefault(&mut attr, &dfl);
        libc::posix_spawnattr_setpgroup(&mut attr, 0);
        let flags = libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF
            | libc::POSIX_SPAWN_SETPGROUP;
        libc::posix_spawnattr_setflags(&mut attr, flags as libc::c_short);
        libc::posix_spawn_file_actions_addopen(&mut fa, 0, devnull.as_ptr(), libc::O_RDONLY, 0);
        let rc = libc::posix_spawnp(
            &mut pid,
            pargv[0],
            &fa,
            &attr,
            pargv.as_ptr(),
            penv.as_ptr(),
        );
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut attr);
        rc
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(pid)
}

/// Wait up to `timeout` for one of the [`HANDLED`] signals (they are blocked) without a
/// signalfd; `None` on timeout. For the last-resort loop.
pub fn wait_signal(timeout: Duration) -> Option<libc::c_int> {
    let set = handled_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as _, // time_t: i64 on glibc, i32 on 32-bit musl before 1.2
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `set` and `ts` are initialised and live for the call; siginfo may be null.
    let s = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (s > 0).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: `status` is a valid, writable c_int; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        assert!(libc::WIFEXITED(status), "child did not exit normally");
        libc::WEXITSTATUS(status)
    }

    /// Regression: services inherited PID 1's blocked signals and ignored SIGTERM at shutdown.
    /// A spawned child must start with an empty mask, default SIGPIPE, its own process group
    /// and stdin on /dev/null, even when the parent thread blocks the handled signals.
    #[test]
    fn spawned_child_gets_a_clean_slate() {
        let _fd = block_and_signalfd().expect("signalfd");
        let env = ["FOO=bar".to_string(), "PATH=/usr/bin:/bin".to_string()];
        let run = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            wait_for(spawn(&argv, &env).expect("spawn"))
        };
        // grep reads its own status: no shell in between (shells reset their mask).
        let status = "/proc/self/status";
        assert_eq!(
            run(&["grep", "-q", "^SigBlk:[[:space:]]*0*$", status]),
            0,
            "blocked mask"
        );
        // SIGPIPE is signal 13, bit 12: the 13th of 16 hex digits must be even.
        let pipe_dfl = "^SigIgn:[[:space:]]*[0-9a-f]\\{12\\}[02468ace]";
        assert_eq!(run(&["grep", "-q", pipe_dfl, status]), 0, "SIGPIPE ignored");
        let script = r#"
            read -r pid comm state ppid pgrp rest < /proc/self/stat
            [ "$pgrp" = "$$" ] || exit 12
            [ "$(readlink /proc/self/fd/0)" = /dev/null ] || exit 13
            [ "$FOO" = bar ] || exit 14
        "#;
        assert_eq!(run(&["sh", "-c", script]), 0);
        // An exec failure comes back as an error, not as a child that exits 127.
        let missing = ["/nonexistent/program".to_string()];
        assert!(spawn(&missing, &env).is_err());
    }
}
