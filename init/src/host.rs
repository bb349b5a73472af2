//! Host name and `/etc/hosts`: `rootsmith.hostname=` (or the `ip=` hostname field), else
//! `/etc/hostname`, else [`DEFAULT`]; `/etc/hosts` gets a `127.0.1.1 NAME` line if it lacks
//! one, so the name resolves without DNS.

use crate::cmdline::valid_hostname;
use crate::{info, sys, warn};

pub const DEFAULT: &str = "rootsmith";

/// Pure: pick the host name.
pub fn choose(cmdline: Option<&str>, ip_field: Option<&str>, etc_hostname: Option<&str>) -> String {
    let etc = etc_hostname.and_then(|s| {
        s.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
    });
    [cmdline, ip_field, etc]
        .into_iter()
        .flatten()
        .find(|h| valid_hostname(h))
        .unwrap_or(DEFAULT)
        .to_string()
}

/// Pure: the new `/etc/hosts`, or `None` when `name` already resolves there.
pub fn hosts_with(existing: Option<&str>, name: &str) -> Option<String> {
    let text =
        existing.unwrap_or("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let has = text.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("");
        let mut w = l.split_whitespace();
        w.next().is_some() && w.any(|n| n == name)
    });
    if has && existing.is_some() {
        return None;
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !has {
        out.push_str(&format!("127.0.1.1\t{name}\n"));
    }
    Some(out)
}

/// Set the kernel host name; returns it for [`write_hosts`].
pub fn apply(cmdline: Option<&str>, ip_field: Option<&str>) -> String {
    let etc = std::fs::read_to_string("/etc/hostname").ok();
    let name = choose(cmdline, ip_field, etc.as_deref());
    if let Err(e) = sys::sethostname(&name) {
        warn!("sethostname {name}: {e}");
    }
    info!("hostname {name}");
    name
}

/// Make `name` resolvable through `/etc/hosts` (done after the services are started: it
/// writes to the root filesystem on first boot).
pub fn write_hosts(name: &str) {
    let hosts = std::fs::read_to_string("/etc/hosts").ok();
    if let Some(new) = hosts_with(hosts.as_deref(), name) {
        let tmp = "/etc/.hosts.rootsmith";
        if let Err(e) = std::fs::write(tmp, new).and_then(|()| std::fs::rename(tmp, "/etc/hosts")) {
            warn!("write /etc/hosts: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn precedence() {
        assert_eq!(choose(Some("a"), Some("b"), Some("c\n")), "a");
        assert_eq!(choose(None, Some("b"), Some("c\n")), "b");
        assert_eq!(choose(None, None, Some("# x\n\n c \n")), "c");
        assert_eq!(choose(None, None, Some("bad name!")), DEFAULT);
        assert_eq!(choose(None, None, None), DEFAULT);
    }

    #[test]
    fn hosts_line() {
        assert_eq!(
            hosts_with(Some("127.0.0.1 localhost\n127.0.1.1 vm # me\n"), "vm"),
            None
        );
        let h = hosts_with(Some("127.0.0.1 localhost"), "vm").expect("changed");
        assert_eq!(h, "127.0.0.1 localhost\n127.0.1.1\tvm\n");
        assert!(hosts_with(None, "vm")
            .expect("created")
            .contains("localhost"));
    }

    proptest! {
        #[test]
        fn hosts_idempotent(existing in "[a-z0-9. \\n#]{0,80}") {
            if let Some(once) = hosts_with(Some(&existing), "vm") {
                prop_assert_eq!(hosts_with(Some(&once), "vm"), None);
            }
        }
    }
}
