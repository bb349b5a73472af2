//! Console logging and boot milestones.
//!
//! Every line goes to the console as `rootsmith-init: ...` (write errors are ignored: PID 1
//! must not die because the console is gone). A milestone is printed as
//! `rootsmith-init: <stage> <uptime>s` plus SmolVM's `SMOLVM_TS stage=<s> epoch_s=<int>
//! uptime_s=<float>`, and appended as a JSON line to `/run/rootsmith/boot.jsonl` and
//! `/run/smolvm/boot-milestones.jsonl` (+ `milestones.jsonl`). Milestones reached before
//! `/run` is mounted are buffered and written by [`flush_files`].

use crate::sys;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;

struct State {
    /// JSON lines not yet written because /run was not ready.
    pending: Vec<(String, String)>,
    files_ready: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    pending: Vec::new(),
    files_ready: false,
});

const ROOTSMITH_JSONL: &str = "/run/rootsmith/boot.jsonl";
const SMOLVM_JSONL: [&str; 2] = [
    "/run/smolvm/boot-milestones.jsonl",
    "/run/smolvm/milestones.jsonl",
];

/// Print one line on the console.
pub fn line(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "rootsmith-init: {msg}");
    let _ = out.flush();
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// With the kernel's `quiet`, informational lines are dropped (errors and milestones stay).
pub fn set_quiet(q: bool) {
    QUIET.store(q, std::sync::atomic::Ordering::Relaxed);
}

/// An informational console line (dropped under `quiet`).
pub fn info_line(msg: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        line(msg);
    }
}

/// `info!("...")`: an informational console line.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::info_line(&format!($($t)*)) };
}

/// `warn!("...")`: a console line marked as an error; boot goes on.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::line(&format!("error: {}", format_args!($($t)*))) };
}

/// Escape a string for a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The two JSON records for one milestone: (rootsmith, smolvm).
/// Seconds with microseconds, `2.500000`, without float formatting (under emulation the
/// first use of a large code path is slow, and this runs in the first milliseconds).
pub fn secs6(d: std::time::Duration) -> String {
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// The two JSON records for one milestone: (rootsmith, smolvm). `uptime_s` as [`secs6`].
pub fn records(stage: &str, uptime_s: &str, epoch_s: u64) -> (String, String) {
    let st = json_str(stage);
    (
        format!("{{\"stage\":{st},\"uptime_s\":{uptime_s},\"epoch_s\":{epoch_s}}}"),
        format!("{{\"stage\":{st},\"epoch_s\":{epoch_s},\"uptime_s\":{uptime_s}}}"),
    )
}

/// Record a boot milestone.
pub fn milestone(stage: &str) {
    let up = secs6(sys::uptime());
    let epoch = sys::epoch().as_secs();
    // One write(2) for both lines: console output is costly under emulation.
    let text = format!(
        "rootsmith-init: {stage} {up}s\nSMOLVM_TS stage={stage} epoch_s={epoch} uptime_s={up}\n"
    );
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    let rec = records(stage, &up, epoch);
    let Ok(mut st) = STATE.lock() else { return };
    if st.files_ready {
        append(&[rec]);
    } else {
        st.pending.push(rec);
    }
}

fn append(recs: &[(String, String)]) {
    let open = |p: &str| OpenOptions::new().create(true).append(true).open(p);
    if let Ok(mut f) = open(ROOTSMITH_JSONL) {
        for (r, _) in recs {
            let _ = writeln!(f, "{r}");
        }
    }
    for p in SMOLVM_JSONL {
        if let Ok(mut f) = open(p) {
            for (_, s) in recs {
                let _ = writeln!(f, "{s}");
            }
        }
    }
}

/// Called once `/run` is a tmpfs: create the directories and write buffered milestones.
pub fn flush_files() {
    for d in ["/run/rootsmith", "/run/smolvm"] {
        if let Err(e) = std::fs::create_dir_all(d) {
            warn!("mkdir {d}: {e}");
        }
    }
    let Ok(mut st) = STATE.lock() else { return };
    st.files_ready = true;
    let pending = std::mem::take(&mut st.pending);
    append(&pending);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn smolvm_record_shape() {
        assert_eq!(
            secs6(std::time::Duration::from_micros(2_500_007)),
            "2.500007"
        );
        let (r, s) = records("init-start", "2.500000", 1_700_000_000);
        assert_eq!(
            s,
            r#"{"stage":"init-start","epoch_s":1700000000,"uptime_s":2.500000}"#
        );
        assert_eq!(
            r,
            r#"{"stage":"init-start","uptime_s":2.500000,"epoch_s":1700000000}"#
        );
    }
}
