//! The ACPI power button (QEMU `system_powerdown`, a cloud provider's "stop"): when the
//! kernel has an input device named "Power Button" (the `button` driver, plus `evdev` for
//! `/dev/input/event*`; on Debian's cloud kernel both are modules, so pass
//! `rootsmith.modules=...,button,evdev`), a thread reads it and turns a KEY_POWER press into
//! SIGPWR for PID 1, which shuts down like Ctrl-Alt-Del.

use crate::{info, sys, warn};
use std::io::Read;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// `struct input_event` on 64-bit: timeval (16) + type (2) + code (2) + value (4).
const EVENT_SIZE: usize = 24;

/// Pure: does this `input_event` record say "power key pressed"?
pub fn is_power_press(ev: &[u8]) -> bool {
    if ev.len() < EVENT_SIZE {
        return false;
    }
    let ty = u16::from_ne_bytes([ev[16], ev[17]]);
    let code = u16::from_ne_bytes([ev[18], ev[19]]);
    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
    ty == EV_KEY && code == KEY_POWER && value == 1
}

/// `/dev/input/eventN` of the first "Power Button" input device.
fn find_button() -> Option<String> {
    let rd = std::fs::read_dir("/sys/class/input").ok()?;
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("event")
            && std::fs::read_to_string(e.path().join("device/name"))
                .is_ok_and(|s| s.trim() == "Power Button")
        {
            return Some(format!("/dev/input/{n}"));
        }
    }
    None
}

/// Start the watcher thread if there is a power button. Returns whether one was found.
pub fn watch() -> bool {
    let Some(dev) = find_button() else {
        return false;
    };
    let f = match std::fs::File::open(&dev) {
        Ok(f) => f,
        Err(e) => {
            warn!("power button {dev}: {e}");
            return false;
        }
    };
    info!("power button: {dev}");
    let r = std::thread::Builder::new()
        .name("power".into())
        .spawn(move || {
            let mut f = f;
            let mut buf = [0u8; EVENT_SIZE * 16];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if buf[..n].chunks_exact(EVENT_SIZE).any(is_power_press) {
                            let _ = sys::kill(1, libc::SIGPWR);
                        }
                    }
                }
            }
        });
    r.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_press() {
        let mut ev = [0u8; 24];
        ev[16..18].copy_from_slice(&EV_KEY.to_ne_bytes());
        ev[18..20].copy_from_slice(&KEY_POWER.to_ne_bytes());
        ev[20..24].copy_from_slice(&1i32.to_ne_bytes());
        assert!(is_power_press(&ev));
        ev[20..24].copy_from_slice(&0i32.to_ne_bytes());
        assert!(!is_power_press(&ev), "release");
        assert!(!is_power_press(&ev[..10]));
    }
}
