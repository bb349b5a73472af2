//! rootsmith-init: the static PID 1 placed at `/init` in every image rootsmith builds.
//!
//! Boot: block signals (read from a signalfd) → milestone `init-start` → mounts → CAD off,
//! `/` read-write, rlimits → command line → host name → authorized keys → network thread
//! (modules, `ip=`/DHCP, resolv.conf) → services (sshd, guest agent, `/etc/rootsmith/services`)
//! → loop: reap children, restart services, shut down on SIGINT/SIGTERM/SIGPWR/SIGUSR1/SIGUSR2.
//! PID 1 never exits: every error is logged and boot goes on; the last resort is an idle loop.
//!
//! In a rootsmith initramfs (`/etc/rootsmith/initramfs` exists) it first loads the listed
//! modules, mounts `root=` and switches root to the real init (see `initramfs`).
//!
//! Not PID 1 (on a host): `--version` prints the version, `--parse-cmdline 'LINE'` prints
//! what init would do with a command line; anything else exits 2.

mod cmdline;
mod dhcp;
mod host;
mod initramfs;
mod keys;
mod log;
mod modules;
mod mount;
mod net;
mod netlink;
mod power;
mod reap;
mod shutdown;
mod supervise;
mod sys;

use shutdown::Action;
use std::path::Path;
use std::time::Duration;
use supervise::{Spec, Supervisor};

const SSHD: &str = "/usr/sbin/sshd";
const AGENT: &str = "/usr/local/bin/smolvm-guest-agent";
const SERVICES: &str = "/etc/rootsmith/services";

fn main() {
    if std::process::id() != 1 {
        std::process::exit(not_pid1());
    }
    pid1();
}

fn not_pid1() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") => {
            println!("rootsmith-init {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--parse-cmdline") => {
            let c = cmdline::parse(args.get(1).map_or("", String::as_str));
            println!(
                "{c:#?}\nnetwork: {:?}",
                net::plan(c.ip.as_ref(), c.guest_network)
            );
            0
        }
        _ => {
            eprintln!(
                "rootsmith-init: not PID 1; this is the /init of a rootsmith image (try --version)"
            );
            2
        }
    }
}

fn is_executable(p: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_in_path(name: &str) -> Option<String> {
    supervise::PATH
        .split(':')
        .map(|d| format!("{d}/{name}"))
        .find(|p| is_executable(p))
}

/// The services to run, built-ins first.
fn services() -> Vec<Spec> {
    let mut specs = Vec::new();
    if is_executable(AGENT) {
        specs.push(Spec {
            name: "smolvm-guest-agent".into(),
            argv: vec![AGENT.into(), "--listen".into(), "vsock://1024".into()],
            prestart: vec![],
        });
    }
    match std::fs::read(SERVICES) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let (more, errors) = supervise::parse_services(&text);
            for e in errors {
                warn!("{SERVICES}: {e}");
            }
            for s in more {
                if specs.iter().any(|x| x.name == s.name) {
                    warn!(
                        "{SERVICES}: service {:?} clashes with a built-in one; ignored",
                        s.name
                    );
                } else {
                    specs.push(s);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!("{SERVICES}: {e}; no extra services"),
    }
    if is_executable(SSHD) {
        let mut prestart = Vec::new();
        if !keys::have_host_key(Path::new("/etc/ssh")) {
            match find_in_path("ssh-keygen") {
                Some(kg) => prestart.push(vec![
                    kg,
                    "-q".into(),
                    "-t".into(),
                    "ed25519".into(),
                    "-N".into(),
                    String::new(),
                    "-f".into(),
                    "/etc/ssh/ssh_host_ed25519_key".into(),
                ]),
                None => warn!("no SSH host key and no ssh-keygen: sshd will fail"),
            }
        }
        specs.push(Spec {
            name: "sshd".into(),
            argv: vec![SSHD.into(), "-D".into(), "-e".into()],
            prestart,
        });
    } else {
        info!("no {SSHD}: not starting sshd");
    }
    specs
}

fn pid1() {
    install_panic_hook();
    // PID 1 of a rootsmith initramfs: load the root disk's modules, mount root=, switch
    // root and exec the real init (returns only when there is no root= to switch to).
    if initramfs::active() {
        initramfs::run();
    }
    let sigfd = match sys::block_and_signalfd() {
        Ok(fd) => Some(fd),
        Err(e) => {
            warn!("signalfd: {e}; shutdown requests will not be seen");
            None
        }
    };
    log::milestone("init-start");
    // Children get PATH from the spawn; posix_spawnp searches this process's PATH.
    std::env::set_var("PATH", supervise::PATH);
    let _ = std::env::set_current_dir("/");
    mount::early();
    log::flush_files();
    log::milestone("mounts-ready");
    // Ctrl-Alt-Del arrives as SIGINT instead of an immediate reboot.
    if let Err(e) = sys::reboot(libc::RB_DISABLE_CAD) {
        warn!("disable Ctrl-Alt-Del: {e}");
    }
    mount::remount_root_rw();
    mount::run_dirs();
    if let Err(e) = sys::raise_nofile(65536) {
        warn!("RLIMIT_NOFILE: {e}");
    }
    let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_else(|e| {
        warn!("/proc/cmdline: {e}");
        String::new()
    });
    let cfg = cmdline::parse(line.trim_end());
    log::set_quiet(cfg.quiet);
    for w in &cfg.warnings {
        warn!("cmdline: {w}");
    }
    if cfg.cgroup {
        mount::cgroup2();
    }
    log::milestone("root-ready");
    let ip_host = match &cfg.ip {
        Some(cmdline::IpConfig::Static(s)) => s.hostname.clone(),
        Some(cmdline::IpConfig::Dhcp { hostname, .. }) => hostname.clone(),
        _ => None,
    };
    let hostname = host::apply(cfg.hostname.as_deref(), ip_host.as_deref());

    log::milestone("services-start");
    let hook = cfg.guest_network && is_executable("/etc/smolvm/network.sh");
    let mut specs = services();
    if hook {
        specs.insert(
            0,
            Spec {
                name: "smolvm-network-hook".into(),
                argv: vec!["/etc/smolvm/network.sh".into(), "eth0".into()],
                prestart: vec![],
            },
        );
    }
    let mut sup = Supervisor::new(specs);
    sup.tick(sys::monotonic());
    log::milestone("services-started");
    // sshd reads authorized_keys at login, not at start: off the path to the first service.
    keys::install_authorized(&cfg.authorized_keys_b64);
    host::write_hosts(&hostname);
    // Modules and network on their own thread, after the services are spawned: nothing
    // waits for module loading or DHCP.
    let mut modules_wanted = cfg.modules.clone();
    match std::fs::read_to_string(modules::CONFIG) {
        Ok(text) => {
            for m in modules::parse_config(&text) {
                if !modules_wanted.contains(&m) {
                    modules_wanted.push(m);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!("{}: {e}", modules::CONFIG),
    }
    let plan = net::plan(cfg.ip.as_ref(), cfg.guest_network && !hook);
    let net_thread = std::thread::Builder::new()
        .name("net".into())
        .spawn(move || {
            if !modules_wanted.is_empty() {
                log::milestone("modules-start");
                modules::load(&modules_wanted);
                log::milestone("modules-done");
            }
            power::watch();
            net::run(plan);
        });
    if let Err(e) = net_thread {
        warn!("network thread: {e}");
    }

    log::milestone("init-complete");
    main_loop(&cfg, &mut sup, sigfd);
}

fn main_loop(
    cfg: &cmdline::Config,
    sup: &mut Supervisor,
    sigfd: Option<std::os::fd::OwnedFd>,
) -> ! {
    loop {
        let now = sys::monotonic();
        let timeout = sup
            .next_deadline()
            .map(|t| t.saturating_sub(now))
            .unwrap_or(Duration::from_secs(60));
        let sigs = match &sigfd {
            Some(fd) => sys::read_signals(fd, Some(timeout.max(Duration::from_millis(1)))),
            None => {
                std::thread::sleep(timeout.min(Duration::from_millis(200)));
                Vec::new()
            }
        };
        reap::reap_all(|pid, exit| sup.on_exit(pid, exit, sys::monotonic()));
        for s in sigs {
            if let Some(a) = shutdown::action_for(s, cfg.shutdown, cfg.reboot_k) {
                info!("signal {s}: shutting down ({a:?})");
                log::milestone("shutdown-start");
                shutdown::run(&mut SysOps { sup }, a);
                idle();
            }
        }
        sup.tick(sys::monotonic());
    }
}

/// The last resort: never return; keep reaping, and still honour a shutdown request with
/// a bare-bones sequence (no service bookkeeping).
fn idle() -> ! {
    warn!("idle loop");
    loop {
        reap::reap_all(|_, _| {});
        let Some(sig) = sys::wait_signal(Duration::from_secs(1)) else {
            continue;
        };
        let cfg = cmdline::parse(
            std::fs::read_to_string("/proc/cmdline")
                .unwrap_or_default()
                .trim_end(),
        );
        if let Some(a) = shutdown::action_for(sig, cfg.shutdown, cfg.reboot_k) {
            let _ = sys::kill(-1, libc::SIGTERM);
            std::thread::sleep(Duration::from_secs(1));
            let _ = sys::kill(-1, libc::SIGKILL);
            reap::reap_all(|_, _| {});
            sys::sync();
            let _ = sys::mount("", "/", None, libc::MS_REMOUNT | libc::MS_RDONLY, None);
            sys::sync();
            let _ = sys::reboot(a.reboot_cmd());
        }
    }
}

/// PID 1 must not die on a bug: a panic (which would abort, and the kernel would panic)
/// is logged, and the panicking thread parks (a helper thread) or becomes [`idle`] (main).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log::line(&format!("error: bug: {info}"));
        if std::thread::current().name() == Some("main") {
            idle();
        }
        loop {
            std::thread::park();
        }
    }));
}

/// The real side effects of a shutdown.
struct SysOps<'a> {
    sup: &'a mut Supervisor,
}

impl SysOps<'_> {
    fn reap_while(&mut self, limit: Duration, mut busy: impl FnMut(&Supervisor) -> bool) {
        let deadline = sys::monotonic() + limit;
        loop {
            let sup = &mut *self.sup;
            reap::reap_all(|pid, exit| sup.on_exit(pid, exit, sys::monotonic()));
            if !busy(self.sup) || sys::monotonic() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl shutdown::Ops for SysOps<'_> {
    fn stop_services(&mut self, grace: Duration) {
        if self.sup.terminate_all() > 0 {
            self.reap_while(grace, Supervisor::any_running);
        }
    }
    fn kill_all(&mut self, sig: libc::c_int) {
        match sys::kill(-1, sig) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => warn!("kill(-1, {sig}): {e}"),
            _ => {}
        }
    }
    fn reap_until_gone(&mut self, limit: Duration) {
        self.reap_while(limit, |_| !reap::no_children());
    }
    fn sync(&mut self) {
        sys::sync();
    }
    fn unmount_all(&mut self) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for p in mount::unmount_order(&info) {
            if sys::umount(&p, 0).is_err() {
                let _ = sys::umount(&p, libc::MNT_DETACH);
            }
        }
    }
    fn remount_root_ro(&mut self) {
        if let Err(e) = sys::mount("", "/", None, libc::MS_REMOUNT | libc::MS_RDONLY, None) {
            warn!("remount / read-only: {e}");
        }
    }
    fn reboot(&mut self, a: Action) {
        log::line(&format!("{a:?}"));
        if let Err(e) = sys::reboot(a.reboot_cmd()) {
            warn!("reboot({a:?}): {e}");
        }
    }
}
