//! `rootsmith boot`: start an image under QEMU, wait for SSH, print how to log in, and with
//! `--exec` run one command over SSH and stop the VM cleanly, exiting with its status.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::boot::{self, AccelChoice, BootError, BootOptions, DiskChoice, Event};

/// Arguments of `rootsmith boot`.
#[derive(Debug, Args)]
#[command(after_help = "\
What it runs: qemu-system-x86_64 with the kernel booted directly, the rootfs as a virtio-blk
(or NVMe) drive, user networking with restrict=on (the guest reaches nothing; only the
forwarded port 127.0.0.1:PORT -> guest:22 connects in) and -no-reboot. The kernel command
line is SmolVM's:
  console=ttyS0 reboot=k panic=1 root=/dev/vda rw init=/init
  ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off smolvm.authorized_key_b64=<key>
then rootsmith.modules=virtio_net for modular kernels without an initrd, then --append.

The built image is never changed: the guest writes to a qcow2 overlay (qemu-img) or a copy,
unless --in-place. Without --authorized-key/--identity a throwaway ed25519 key pair is made
for this boot. Without --exec, the ssh command is printed and the VM runs until it powers
off or rootsmith gets Ctrl-C (then it is shut down cleanly).

QEMU is --qemu, else $ROOTSMITH_QEMU, else qemu-system-x86_64 on PATH.

Examples:
  rootsmith boot out/
  rootsmith boot out/ --exec 'cat /etc/os-release' --json
  rootsmith boot rootfs.ext4 --kernel /boot/vmlinuz --disk nvme --console console.log")]
pub struct BootArgs {
    /// An image directory (rootfs.ext4, vmlinux.bin, optional initrd.img) or an ext4 image.
    #[arg(value_name = "DIR|IMAGE")]
    target: PathBuf,
    /// The kernel (bzImage). Default: vmlinux.bin beside the image.
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// An initramfs. Default: initrd.img in DIR when present.
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// Extra kernel arguments, after rootsmith's (a later init= or ip= wins).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    append: Option<String>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    memory: u32,
    /// vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    cpus: u32,
    /// Host port on 127.0.0.1 forwarded to the guest's 22. Default: a free one.
    #[arg(long, value_name = "PORT")]
    ssh_port: Option<u16>,
    /// Seconds to wait for SSH (banner and login) before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    timeout: u64,
    /// Copy the serial console to FILE (`-` for stderr).
    #[arg(long, value_name = "FILE")]
    console: Option<PathBuf>,
    /// Print one JSON object with the timings and milestones at the end (on stdout).
    #[arg(long)]
    json: bool,
    /// The QEMU binary.
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
    /// Accelerator: auto tries KVM when /dev/kvm opens and falls back to TCG when KVM shows
    /// no console output within --kvm-probe seconds.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto, env = "ROOTSMITH_ACCEL")]
    accel: AccelChoice,
    /// Seconds KVM may stay silent before it counts as hung.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    kvm_probe: u64,
    /// How the root disk is attached: auto uses virtio-blk, or NVMe when the kernel's
    /// config (config-<release> beside it) has virtio-blk as a module and no initrd is given.
    #[arg(long, value_enum, default_value_t = DiskChoice::Auto)]
    disk: DiskChoice,
    /// Modules for /init to load (rootsmith.modules=), comma-separated; "" for none.
    /// Default: virtio_net when the kernel has it as a module and there is no initrd.
    #[arg(long, value_name = "LIST")]
    modules: Option<String>,
    /// Give the guest outbound network (no restrict=on).
    #[arg(long)]
    allow_network: bool,
    /// The public key root may log in with (FILE.pub); FILE beside it is the identity.
    #[arg(long, value_name = "FILE.pub")]
    authorized_key: Option<PathBuf>,
    /// The private key ssh uses.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// The user to log in as.
    #[arg(long, value_name = "NAME", default_value = "root")]
    user: String,
    /// Run CMD over SSH, shut the VM down, and exit with CMD's status.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Boot the image itself: the guest's writes change it.
    #[arg(long)]
    in_place: bool,
    /// After the VM exits, run e2fsck -fn on the disk the guest wrote (flattened overlay,
    /// copy or image); fail if it is not clean.
    #[arg(long)]
    check: bool,
    /// No progress lines on stderr.
    #[arg(short, long)]
    quiet: bool,
}

/// The `--exec` command's nonzero status, for `main` to exit with.
#[derive(Debug, thiserror::Error)]
#[error("the command exited with status {0}")]
pub struct ExitStatus(pub i32);

/// Runs `rootsmith boot`.
pub fn run(args: BootArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::Relaxed));
    }
    let console: Option<boot::ConsoleSink> = match &args.console {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Arc::new(Mutex::new(std::io::stderr()))),
        Some(p) => Some(Arc::new(Mutex::new(
            std::fs::File::create(p).with_context(|| format!("--console {}", p.display()))?,
        ))),
    };
    let modules = args.modules.as_deref().map(|m| {
        m.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    let opts = BootOptions {
        target: args.target.clone(),
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        append: args.append.clone(),
        memory_mib: args.memory,
        cpus: args.cpus,
        ssh_port: args.ssh_port,
        timeout: Duration::from_secs(args.timeout),
        qemu: args.qemu.clone(),
        qemu_env: std::env::var_os("ROOTSMITH_QEMU").map(PathBuf::from),
        path_var: std::env::var_os("PATH"),
        accel: args.accel,
        kvm_probe: Duration::from_secs(args.kvm_probe),
        disk: args.disk,
        modules,
        allow_network: args.allow_network,
        authorized_key: args.authorized_key.clone(),
        identity: args.identity.clone(),
        user: args.user.clone(),
        exec: args.exec.clone(),
        in_place: args.in_place,
        check: args.check,
        console,
        stop,
    };
    let quiet = args.quiet;
    let interactive = args.exec.is_none();
    let mut on = |e: Event| {
        match e {
        Event::Starting {
            accel,
            port,
            disk,
            cmdline,
        } if !quiet => {
            eprintln!(
                "rootsmith: booting under {} (root disk {:?}: {}), ssh on 127.0.0.1:{port}",
                accel.name(),
                disk.0,
                disk.1
            );
            eprintln!("rootsmith: kernel command line: {cmdline}");
        }
        Event::KvmHung(d) if !quiet => eprintln!(
            "rootsmith: kvm showed no console output in {} s (a hanging /dev/kvm); restarting under tcg",
            d.as_secs()
        ),
        Event::Banner(b, t) if !quiet => eprintln!("rootsmith: {b} after {t:.2} s"),
        Event::Ready(cmd, t) => {
            if interactive {
                println!("{cmd}");
            }
            if !quiet {
                eprintln!("rootsmith: logged in after {t:.2} s; log in with:\n  {cmd}");
            }
        }
        Event::Stopping if !quiet => eprintln!("rootsmith: shutting the VM down"),
        _ => {}
    }
    };
    let report = match boot::run(opts, &mut on) {
        Ok(r) => r,
        Err(e) => {
            print_tail(&e);
            return Err(e.into());
        }
    };
    if !quiet {
        eprintln!("rootsmith: {}", report.summary());
        if let Some(m) = report.milestone_line() {
            eprintln!("rootsmith: init milestones: {m}");
        }
        if let Some(s) = report.shutdown {
            eprintln!("rootsmith: stopped by {s:?}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    if let Some(f) = &report.fsck {
        if !f.clean {
            anyhow::bail!(
                "e2fsck -fn found problems in the disk the guest wrote:\n{}",
                f.output.trim()
            );
        } else if !quiet {
            eprintln!("rootsmith: e2fsck -fn of the booted disk: clean");
        }
    }
    if report.shutdown == Some(boot::Shutdown::Forced) {
        eprintln!("rootsmith: warning: the guest ignored Ctrl-Alt-Del and the ACPI power button; QEMU was stopped");
    }
    match report.exec_status {
        Some(0) | None => Ok(()),
        Some(c) => Err(ExitStatus(c).into()),
    }
}

fn print_tail(e: &BootError) {
    if let Some(t) = e.console_tail() {
        eprintln!("rootsmith: last console lines:");
        for l in t.lines() {
            eprintln!("  | {l}");
        }
    }
}
