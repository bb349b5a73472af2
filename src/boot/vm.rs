//! The QEMU process: spawn it, read its serial console (stdout) on a thread that stamps each
//! line with the host time since the spawn and copies the bytes to `--console`, keep its
//! stderr for error messages, send human-monitor commands over the Unix socket, and kill it
//! on drop so no VM outlives `rootsmith boot`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::console::Line;

/// Where console bytes are copied as they arrive.
pub type ConsoleSink = Arc<Mutex<dyn Write + Send>>;

/// A running QEMU.
pub struct Vm {
    child: Child,
    /// When it was spawned.
    pub started: Instant,
    lines: Arc<Mutex<Vec<Line>>>,
    output: Arc<AtomicBool>,
    stderr: Arc<Mutex<Vec<u8>>>,
    monitor: PathBuf,
    exit: Option<ExitStatus>,
}

impl Vm {
    /// Starts `qemu args...` with the console on stdout.
    pub fn spawn(
        qemu: &Path,
        args: &[OsString],
        monitor: &Path,
        sink: Option<ConsoleSink>,
    ) -> std::io::Result<Vm> {
        let mut child = Command::new(qemu)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let started = Instant::now();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let output = Arc::new(AtomicBool::new(false));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let (lines, output) = (lines.clone(), output.clone());
            std::thread::spawn(move || read_console(out, started, lines, output, sink));
        }
        if let Some(mut err) = child.stderr.take() {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = stderr.lock() {
                        s.extend_from_slice(&buf[..n]);
                    }
                }
            });
        }
        Ok(Vm {
            child,
            started,
            lines,
            output,
            stderr,
            monitor: monitor.to_path_buf(),
            exit: None,
        })
    }

    /// Seconds since the spawn.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// A copy of the console lines so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// True once any console byte arrived.
    pub fn has_output(&self) -> bool {
        self.output.load(Ordering::Relaxed)
    }

    /// QEMU's stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .map(|s| String::from_utf8_lossy(&s).trim().to_string())
            .unwrap_or_default()
    }

    /// The exit status once QEMU has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits up to `limit` for QEMU to end.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.exited() {
                // Let the console thread take the last bytes.
                std::thread::sleep(Duration::from_millis(50));
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A connection to the human monitor. Keep it open until QEMU has acted: QEMU reads a
    /// command a byte at a time (and not at all while the monitor is busy), and drops what
    /// it has not read when the connection closes.
    pub fn monitor(&self) -> std::io::Result<Monitor> {
        let mut s = UnixStream::connect(&self.monitor)?;
        // The banner and prompt, if they come at once; the command works either way.
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        Ok(Monitor(s))
    }

    /// Kills QEMU (no clean shutdown).
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_console(
    mut out: impl Read,
    started: Instant,
    lines: Arc<Mutex<Vec<Line>>>,
    output: Arc<AtomicBool>,
    sink: Option<ConsoleSink>,
) {
    let mut buf = [0u8; 4096];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let host = started.elapsed().as_secs_f64();
        output.store(true, Ordering::Relaxed);
        if let Some(Ok(mut s)) = sink.as_ref().map(|s| s.lock()) {
            let _ = s.write_all(&buf[..n]);
            let _ = s.flush();
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                let line = Line::new(host, &partial);
                partial.clear();
                if let Ok(mut l) = lines.lock() {
                    l.push(line);
                }
            } else if partial.len() < 64 * 1024 {
                partial.push(b);
            }
        }
    }
    if !partial.is_empty() {
        if let Ok(mut l) = lines.lock() {
            l.push(Line::new(started.elapsed().as_secs_f64(), &partial));
        }
    }
}

/// An open monitor connection.
pub struct Monitor(UnixStream);

impl Monitor {
    /// Sends one command line (`sendkey ctrl-alt-delete`, `system_powerdown`, `quit`).
    pub fn send(&mut self, command: &str) -> std::io::Result<()> {
        self.0.write_all(format!("{command}\n").as_bytes())
    }
}
