//! `rootsmith boot`: run an image under QEMU and prove it with SSH.
//!
//! One boot: find QEMU ([`qemu`]), check the rootfs and kernel ([`inputs`]), make a key pair
//! ([`ssh`]), put a qcow2 overlay or a copy in front of the image ([`disk`]), build SmolVM's
//! kernel command line ([`cmdline`]), start QEMU with user networking (`restrict=on`, one
//! `hostfwd` to the guest's 22 on 127.0.0.1) and the console on a pipe ([`vm`]), wait for the
//! SSH banner with one probe at a time, log in, optionally run `--exec`'s command with the
//! real `ssh` client, shut the guest down cleanly through the monitor (Ctrl-Alt-Del, then
//! the ACPI power button), and report when each stage happened ([`report`], from the console
//! lines parsed in [`console`]). With `accel` auto, KVM is tried when `/dev/kvm` opens; a
//! KVM that shows no console output within a few seconds (it hangs on some nested hosts) is
//! killed and the boot restarts under TCG.

pub mod cmdline;
pub mod console;
pub mod disk;
pub mod inputs;
pub mod qemu;
pub mod report;
pub mod ssh;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use inputs::DiskChoice;
pub use qemu::{Accel, Disk};
pub use report::{Report, Shutdown, Timings};
pub use vm::ConsoleSink;

/// Why a boot failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A bad input file.
    #[error("{}: {why}", .path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// No QEMU.
    #[error(transparent)]
    Qemu(#[from] qemu::FindError),
    /// QEMU did not start.
    #[error("cannot start {}: {err}; check that it is a qemu-system-x86_64 binary", .qemu.display())]
    Spawn {
        /// The binary.
        qemu: PathBuf,
        /// The error.
        err: std::io::Error,
    },
    /// The SSH port is taken.
    #[error("port {0} on 127.0.0.1 is in use; pick a free one with --ssh-port or omit --ssh-port to get one")]
    PortInUse(u16),
    /// QEMU ended before SSH answered.
    #[error("qemu exited ({status}) before the guest answered on ssh{}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    QemuExited {
        /// Its exit status.
        status: String,
        /// Its stderr.
        stderr: String,
        /// The last console lines.
        tail: String,
    },
    /// The console showed a failure the guest cannot recover from.
    #[error("{hint}")]
    Guest {
        /// What happened and what to do.
        hint: String,
        /// The last console lines.
        tail: String,
    },
    /// No SSH in time.
    #[error("the guest did not answer on ssh (127.0.0.1:{port}) within {secs} s: {what}; raise --timeout for a slow host, or check that the image starts sshd")]
    Timeout {
        /// The limit.
        secs: u64,
        /// The port.
        port: u16,
        /// How far it got.
        what: String,
        /// The last console lines.
        tail: String,
    },
    /// Stopped by Ctrl-C or SIGTERM.
    #[error("interrupted; the VM was stopped")]
    Interrupted,
    /// A helper tool failed.
    #[error("{tool}: {why}")]
    Tool {
        /// The tool.
        tool: String,
        /// What happened.
        why: String,
    },
    /// I/O on our own files.
    #[error("{what}: {err}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        err: std::io::Error,
    },
}

impl BootError {
    /// The last console lines, for errors that have them (printed by the CLI line by line).
    pub fn console_tail(&self) -> Option<&str> {
        match self {
            BootError::QemuExited { tail, .. }
            | BootError::Guest { tail, .. }
            | BootError::Timeout { tail, .. } => Some(tail.as_str()).filter(|t| !t.is_empty()),
            _ => None,
        }
    }
}

/// `--accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM when /dev/kvm opens read-write (falling back to TCG if it hangs), else TCG.
    Auto,
    /// KVM only.
    Kvm,
    /// TCG only.
    Tcg,
}

/// Everything `rootsmith boot` was asked.
pub struct BootOptions {
    /// `DIR` or an ext4 image.
    pub target: PathBuf,
    /// `--kernel`.
    pub kernel: Option<PathBuf>,
    /// `--initrd`.
    pub initrd: Option<PathBuf>,
    /// `--append`.
    pub append: Option<String>,
    /// `--memory` in MiB.
    pub memory_mib: u32,
    /// `--cpus`.
    pub cpus: u32,
    /// `--ssh-port` (else a free one).
    pub ssh_port: Option<u16>,
    /// `--timeout` for SSH.
    pub timeout: Duration,
    /// `--qemu`.
    pub qemu: Option<PathBuf>,
    /// `$ROOTSMITH_QEMU`.
    pub qemu_env: Option<PathBuf>,
    /// `$PATH`.
    pub path_var: Option<std::ffi::OsString>,
    /// `--accel`.
    pub accel: AccelChoice,
    /// How long KVM may stay silent before it counts as hung.
    pub kvm_probe: Duration,
    /// `--disk`.
    pub disk: DiskChoice,
    /// `--modules` (else chosen from the kernel config).
    pub modules: Option<Vec<String>>,
    /// `--allow-network`: no `restrict=on`.
    pub allow_network: bool,
    /// `--authorized-key`.
    pub authorized_key: Option<PathBuf>,
    /// `--identity`.
    pub identity: Option<PathBuf>,
    /// `--user`.
    pub user: String,
    /// `--exec`.
    pub exec: Option<String>,
    /// `--in-place`.
    pub in_place: bool,
    /// `--check`: `e2fsck -fn` of the booted disk after QEMU exits.
    pub check: bool,
    /// `--console`.
    pub console: Option<ConsoleSink>,
    /// Set on Ctrl-C or SIGTERM: stop the VM and return.
    pub stop: Arc<AtomicBool>,
}

/// Progress, for the CLI to print.
#[derive(Debug)]
pub enum Event<'a> {
    /// QEMU is starting.
    Starting {
        /// The accelerator.
        accel: Accel,
        /// The forwarded port.
        port: u16,
        /// The disk and why.
        disk: (Disk, &'static str),
        /// The kernel command line.
        cmdline: &'a str,
    },
    /// KVM showed no console output: restarting under TCG.
    KvmHung(Duration),
    /// The banner arrived.
    Banner(&'a str, f64),
    /// Logged in; the command to use.
    Ready(&'a str, f64),
    /// The shutdown request.
    Stopping,
}

const LOGIN_TRIES_EVERY: Duration = Duration::from_millis(500);

/// Boots, waits for SSH, runs `--exec`, stops the VM, and reports.
pub fn run(opts: BootOptions, on: &mut dyn FnMut(Event)) -> Result<Report, BootError> {
    let qemu_bin = qemu::find(
        opts.qemu.as_deref(),
        opts.qemu_env.as_deref(),
        opts.path_var.as_deref(),
        Path::is_file,
    )?;
    let inp = inputs::resolve(&opts.target, opts.kernel.as_deref(), opts.initrd.as_deref())?;
    let work = tempfile::Builder::new()
        .prefix("rootsmith-boot-")
        .tempdir()
        .map_err(|e| BootError::Io {
            what: "making a temp directory".into(),
            err: e,
        })?;
    let keys = ssh::keys(
        opts.authorized_key.as_deref(),
        opts.identity.as_deref(),
        work.path(),
    )?;
    let disk = inputs::choose_disk(opts.disk, inp.initrd.is_some(), inp.config.as_deref());
    let modules = opts.modules.clone().unwrap_or_else(|| {
        inputs::default_modules(inp.initrd.is_some(), inp.config.as_deref(), disk.0)
    });
    let port = ssh_port(opts.ssh_port)?;
    let qemu_img = disk::find_qemu_img(&qemu_bin);
    let prepared = disk::prepare(&inp.rootfs, work.path(), opts.in_place, qemu_img.as_deref())?;
    let line = cmdline::render(&cmdline::CmdlineSpec {
        root: disk.0.root_device().into(),
        authorized_key: Some(keys.public.clone()),
        modules,
        append: opts.append.clone(),
    });
    let monitor = work.path().join("monitor.sock");
    let mut config = qemu::QemuConfig {
        accel: Accel::Tcg,
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        kernel: inp.kernel.clone(),
        initrd: inp.initrd.clone(),
        cmdline: line.clone(),
        disk: disk.0,
        disk_path: prepared.path.clone(),
        disk_format: prepared.format,
        ssh_port: port,
        restrict: !opts.allow_network,
        monitor: monitor.clone(),
    };
    let try_kvm = match opts.accel {
        AccelChoice::Kvm => true,
        AccelChoice::Tcg => false,
        AccelChoice::Auto => kvm_opens(),
    };
    let mut kvm_fallback = false;
    let mut vm = None;
    if try_kvm {
        config.accel = Accel::Kvm;
        on(Event::Starting {
            accel: Accel::Kvm,
            port,
            disk,
            cmdline: &line,
        });
        let mut v = spawn(&qemu_bin, &config, &opts)?;
        if opts.accel == AccelChoice::Auto {
            let until = Instant::now() + opts.kvm_probe;
            while !v.has_output() && v.exited().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !v.has_output() {
                v.kill();
                let _ = std::fs::remove_file(&monitor);
                on(Event::KvmHung(opts.kvm_probe));
                kvm_fallback = true;
            } else {
                vm = Some(v);
            }
        } else {
            vm = Some(v);
        }
    }
    let mut vm = match vm {
        Some(v) => v,
        None => {
            config.accel = Accel::Tcg;
            if !kvm_fallback {
                on(Event::Starting {
                    accel: Accel::Tcg,
                    port,
                    disk,
                    cmdline: &line,
                });
            }
            spawn(&qemu_bin, &config, &opts)?
        }
    };
    let mut timings = Timings::default();
    let banner = wait_banner(&mut vm, port, &opts)?;
    timings.banner = Some(banner.1);
    on(Event::Banner(&banner.0, banner.1));
    let ssh_bin = disk::which("ssh").ok_or_else(|| BootError::Tool {
        tool: "ssh".into(),
        why: "not found; install openssh-client".into(),
    })?;
    let base_args = ssh::ssh_args(keys.identity.as_deref(), port, &opts.user);
    timings.login = Some(wait_login(&mut vm, &ssh_bin, &base_args, port, &opts)?);
    let ssh_command = ssh::ssh_command_line(keys.identity.as_deref(), port, &opts.user);
    on(Event::Ready(
        &ssh_command,
        timings.login.unwrap_or_default(),
    ));
    let mut exec_status = None;
    let shutdown;
    if let Some(cmd) = &opts.exec {
        let st = Command::new(&ssh_bin)
            .args(&base_args)
            .arg(cmd)
            .status()
            .map_err(|e| BootError::Tool {
                tool: "ssh".into(),
                why: e.to_string(),
            })?;
        timings.exec_done = Some(vm.now());
        exec_status = Some(st.code().unwrap_or(255));
        on(Event::Stopping);
        timings.shutdown_request = Some(vm.now());
        shutdown = Some(stop_vm(&mut vm));
    } else {
        loop {
            if vm.exited().is_some() {
                shutdown = Some(Shutdown::Guest);
                break;
            }
            if opts.stop.load(Ordering::Relaxed) {
                on(Event::Stopping);
                timings.shutdown_request = Some(vm.now());
                shutdown = Some(stop_vm(&mut vm));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let qemu_status = vm.wait_exit(Duration::from_secs(5)).and_then(|s| s.code());
    timings.qemu_exit = Some(vm.now());
    let lines = vm.lines();
    timings.from_console(&lines);
    drop(vm);
    let fsck = if opts.check {
        Some(disk::check(&prepared, work.path(), qemu_img.as_deref())?)
    } else {
        None
    };
    Ok(Report {
        qemu: qemu_bin.display().to_string(),
        accel: config.accel,
        kvm_fallback,
        disk: disk.0,
        disk_mode: prepared.mode,
        ssh_port: port,
        cmdline: line,
        ssh_command,
        timings,
        milestones: console::milestones(&lines),
        exec_status,
        shutdown,
        qemu_status,
        fsck,
    })
}

/// The given port, checked free, or a free one.
fn ssh_port(want: Option<u16>) -> Result<u16, BootError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", want.unwrap_or(0))).map_err(|e| {
        match (want, e.kind()) {
            (Some(p), std::io::ErrorKind::AddrInUse) => BootError::PortInUse(p),
            _ => BootError::Io {
                what: format!("binding 127.0.0.1:{}", want.unwrap_or(0)),
                err: e,
            },
        }
    })?;
    l.local_addr().map(|a| a.port()).map_err(|e| BootError::Io {
        what: "reading a bound port".into(),
        err: e,
    })
}

/// True when /dev/kvm opens read-write (it may still hang: see the fallback).
fn kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn spawn(
    qemu_bin: &Path,
    config: &qemu::QemuConfig,
    opts: &BootOptions,
) -> Result<vm::Vm, BootError> {
    vm::Vm::spawn(
        qemu_bin,
        &qemu::args(config),
        &config.monitor,
        opts.console.clone(),
    )
    .map_err(|e| BootError::Spawn {
        qemu: qemu_bin.to_path_buf(),
        err: e,
    })
}

const TAIL: usize = 25;

/// Stops for QEMU's exit, a fatal console line, the deadline or an interrupt.
fn check_vm(vm: &mut vm::Vm, port: u16, opts: &BootOptions, what: &str) -> Result<(), BootError> {
    if opts.stop.load(Ordering::Relaxed) {
        return Err(BootError::Interrupted);
    }
    if let Some(st) = vm.exited() {
        std::thread::sleep(Duration::from_millis(100));
        let stderr = vm.stderr_text();
        if stderr.contains("Could not set up host forwarding rule") {
            return Err(BootError::PortInUse(port));
        }
        let lines = vm.lines();
        if let Some(hint) = lines.iter().find_map(|l| console::fatal(&l.text)) {
            return Err(BootError::Guest {
                hint: hint.to_string(),
                tail: console::tail(&lines, TAIL),
            });
        }
        return Err(BootError::QemuExited {
            status: st.to_string(),
            stderr,
            tail: console::tail(&lines, TAIL),
        });
    }
    let lines = vm.lines();
    if let Some(hint) = lines.iter().find_map(|l| console::fatal(&l.text)) {
        // panic=1 reboots after a second and -no-reboot ends QEMU: let the last lines come.
        let _ = vm.wait_exit(Duration::from_secs(3));
        return Err(BootError::Guest {
            hint: hint.to_string(),
            tail: console::tail(&vm.lines(), TAIL),
        });
    }
    if vm.started.elapsed() > opts.timeout {
        return Err(BootError::Timeout {
            secs: opts.timeout.as_secs(),
            port,
            what: what.to_string(),
            tail: if lines.is_empty() {
                "(no console output at all: the kernel did not start; try --accel tcg)".into()
            } else {
                console::tail(&lines, TAIL)
            },
        });
    }
    Ok(())
}

/// One probe at a time. slirp holds a forwarded connection whose SYN the guest cannot
/// answer yet and retries it with TCP back-off (seconds), so a probe opened before the
/// guest's network is up can deliver its banner late; and many queued probes overwhelm a
/// slow sshd (see the boot note). So: 1 s probes until the console shows the network
/// configured (rootsmith-init's `net-ready`, systemd's network targets) or sshd up, then
/// probes that hold 3 s, doubling up to 20 s while the guest stays silent.
fn wait_banner(vm: &mut vm::Vm, port: u16, opts: &BootOptions) -> Result<(String, f64), BootError> {
    let mut patient = Duration::from_secs(3);
    loop {
        check_vm(vm, port, opts, "no ssh banner")?;
        let lines = vm.lines();
        let net = lines.iter().any(|l| {
            console::network_up(&l.text)
                || console::milestone(l).is_some_and(|m| m.stage == "net-ready")
        });
        let init_milestones = lines.iter().any(|l| console::milestone(l).is_some());
        let sshd = lines.iter().any(|l| console::sshd_up(&l.text));
        // rootsmith-init says when the network is up; otherwise sshd up is the best sign.
        let ready = net || (sshd && !init_milestones);
        let hold = if ready {
            patient
        } else {
            Duration::from_secs(1)
        };
        let mut failed = None;
        let probe = {
            let mut abort = || match check_vm(vm, port, opts, "no ssh banner") {
                Ok(()) => false,
                Err(e) => {
                    failed = Some(e);
                    true
                }
            };
            ssh::probe(port, hold, &mut abort)
        };
        if let Some(e) = failed {
            return Err(e);
        }
        match probe {
            ssh::Probe::Banner(b) => return Ok((b, vm.now())),
            ssh::Probe::Closed => std::thread::sleep(Duration::from_millis(100)),
            ssh::Probe::Silent if ready => {
                patient = (patient * 2).min(Duration::from_secs(20));
            }
            ssh::Probe::Silent => {}
        }
    }
}

/// `ssh ... true` until it succeeds (the key may land in authorized_keys just after sshd
/// starts); returns the host time of the first success.
fn wait_login(
    vm: &mut vm::Vm,
    ssh_bin: &Path,
    args: &[std::ffi::OsString],
    port: u16,
    opts: &BootOptions,
) -> Result<f64, BootError> {
    loop {
        check_vm(vm, port, opts, "ssh answered but the login failed")
            .map_err(|e| add_ssh_error(e, ""))?;
        let out = Command::new(ssh_bin)
            .args(args)
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| BootError::Tool {
                tool: "ssh".into(),
                why: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(vm.now());
        }
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        std::thread::sleep(LOGIN_TRIES_EVERY);
        if let Err(e) = check_vm(vm, port, opts, "ssh answered but the login failed") {
            return Err(add_ssh_error(e, &err));
        }
    }
}

fn add_ssh_error(e: BootError, ssh_err: &str) -> BootError {
    match e {
        BootError::Timeout {
            secs,
            port,
            what,
            tail,
        } if !ssh_err.is_empty() => BootError::Timeout {
            secs,
            port,
            what: format!("{what} (ssh: {ssh_err})"),
            tail,
        },
        e => e,
    }
}

/// Ctrl-Alt-Del, then the ACPI power button, then `quit`, over one monitor connection.
fn stop_vm(vm: &mut vm::Vm) -> Shutdown {
    let mut mon = vm.monitor().ok();
    for (cmd, how, wait) in [
        ("sendkey ctrl-alt-delete", Shutdown::CtrlAltDel, 20),
        ("system_powerdown", Shutdown::Acpi, 20),
        ("quit", Shutdown::Forced, 10),
    ] {
        if vm.exited().is_some() {
            return Shutdown::Guest;
        }
        if mon.as_mut().is_none_or(|m| m.send(cmd).is_err()) {
            mon = vm.monitor().ok();
            if let Some(m) = mon.as_mut() {
                let _ = m.send(cmd);
            }
        }
        if vm.wait_exit(Duration::from_secs(wait)).is_some() {
            return how;
        }
    }
    vm.kill();
    Shutdown::Forced
}
