//! Networking from the command line: loopback up, then `ip=` (static over rtnetlink, or the
//! built-in DHCP client for `ip=dhcp` / `smolvm.network=guest` / no `ip=` at all), default
//! route, and `/etc/resolv.conf` (DNS fields of `ip=` or the lease, else `/proc/net/pnp`,
//! else the gateway). Runs on its own thread so services start without waiting for it.

use crate::cmdline::{IpConfig, StaticIp};
use crate::netlink::Netlink;
use crate::{dhcp, info, log, sys, warn};
use std::net::Ipv4Addr;
use std::time::Duration;

/// What the network thread should do, decided from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Loopback only (`ip=off`).
    LoopbackOnly,
    Static(StaticIp),
    /// DHCP on `device`; `explicit` is false when nothing asked for it (no `ip=`), in which
    /// case a missing device is not an error.
    Dhcp {
        device: String,
        explicit: bool,
        dns: Vec<Ipv4Addr>,
    },
}

/// Pure: the plan for an `ip=` value (if any) and `smolvm.network=guest`.
pub fn plan(ip: Option<&IpConfig>, guest_network: bool) -> Plan {
    match (ip, guest_network) {
        (Some(IpConfig::Dhcp { device, dns, .. }), _) => Plan::Dhcp {
            device: device.clone().unwrap_or_else(|| "eth0".into()),
            explicit: true,
            dns: dns.clone(),
        },
        (_, true) => Plan::Dhcp {
            device: "eth0".into(),
            explicit: true,
            dns: Vec::new(),
        },
        (Some(IpConfig::Static(s)), false) => Plan::Static(s.clone()),
        (Some(IpConfig::Off), false) => Plan::LoopbackOnly,
        (None, false) => Plan::Dhcp {
            device: "eth0".into(),
            explicit: false,
            dns: Vec::new(),
        },
    }
}

/// Pure: `/etc/resolv.conf` contents. DNS servers from the command line or lease win; else
/// the `nameserver`/`domain`/`search` lines of `/proc/net/pnp`; else the gateway. `None` when
/// there is nothing to say (the image's file is left alone).
pub fn resolv_conf(
    dns: &[Ipv4Addr],
    pnp: Option<&str>,
    gateway: Option<Ipv4Addr>,
    domain: Option<&str>,
) -> Option<String> {
    let mut out = String::from("# written by rootsmith-init from the kernel command line\n");
    if let Some(d) = domain.filter(|d| !d.is_empty() && !d.contains(char::is_whitespace)) {
        out.push_str(&format!("search {d}\n"));
    }
    let mut servers: Vec<Ipv4Addr> = Vec::new();
    for d in dns {
        if !servers.contains(d) {
            servers.push(*d);
        }
    }
    if servers.is_empty() {
        if let Some(p) = pnp {
            let kept: Vec<&str> = p
                .lines()
                .map(str::trim)
                .filter(|l| {
                    l.starts_with("nameserver ")
                        || l.starts_with("domain ")
                        || l.starts_with("search ")
                })
                .filter(|l| !l.ends_with(" 0.0.0.0"))
                .collect();
            if kept.iter().any(|l| l.starts_with("nameserver ")) {
                for l in kept {
                    out.push_str(l);
                    out.push('\n');
                }
                return Some(out);
            }
        }
        servers.extend(gateway);
    }
    if servers.is_empty() {
        return None;
    }
    for s in servers.iter().take(3) {
        out.push_str(&format!("nameserver {s}\n"));
    }
    Some(out)
}

fn write_resolv(dns: &[Ipv4Addr], gateway: Option<Ipv4Addr>, domain: Option<&str>) {
    let pnp = std::fs::read_to_string("/proc/net/pnp").ok();
    let Some(text) = resolv_conf(dns, pnp.as_deref(), gateway, domain) else {
        return;
    };
    let tmp = "/etc/.resolv.conf.rootsmith";
    // rename() replaces a symlink (e.g. to a resolved stub that does not run here).
    let r = std::fs::write(tmp, &text).and_then(|()| std::fs::rename(tmp, "/etc/resolv.conf"));
    if let Err(e) = r {
        warn!("write /etc/resolv.conf: {e}");
    }
}

/// Bring `lo` up (and give it 127.0.0.1/8 if the kernel has not).
pub fn loopback(nl: &mut Netlink) {
    let idx = sys::if_index("lo").unwrap_or(1);
    if let Err(e) = nl.link_up(idx) {
        warn!("lo up: {e}");
    }
    if let Err(e) = nl.add_addr(idx, Ipv4Addr::LOCALHOST, 8) {
        warn!("lo address: {e}");
    }
}

/// Poll for `dev` to appear (drivers probe asynchronously after module load).
fn wait_link(dev: &str, timeout: Duration) -> Option<u32> {
    let deadline = sys::monotonic() + timeout;
    loop {
        if let Some(i) = sys::if_index(dev) {
            return Some(i);
        }
        if sys::monotonic() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn apply_static(nl: &mut Netlink, s: &StaticIp) -> bool {
    let dev = s.device.as_deref().unwrap_or("eth0");
    let Some(idx) = wait_link(dev, Duration::from_secs(5)) else {
        warn!("ip=: no network device {dev}");
        return false;
    };
    let mut ok = true;
    if let Err(e) = nl.link_up(idx) {
        warn!("{dev} up: {e}");
        ok = false;
    }
    if let Err(e) = nl.add_addr(idx, s.address, s.prefix_len) {
        warn!("{dev} address {}/{}: {e}", s.address, s.prefix_len);
        ok = false;
    }
    if let Some(gw) = s.gateway {
        if let Err(e) = nl.default_route(idx, gw) {
            warn!("default route via {gw}: {e}");
            ok = false;
        }
    }
    info!(
        "{dev}: {}/{} gateway {}",
        s.address,
        s.prefix_len,
        s.gateway.map_or("none".into(), |g| g.to_string())
    );
    write_resolv(&s.dns, s.gateway, None);
    ok
}

fn apply_lease(nl: &mut Netlink, idx: u32, dev: &str, l: &dhcp::Lease, extra_dns: &[Ipv4Addr]) {
    let Some(addr) = l.address else { return };
    let prefix = l
        .prefix_len
        .unwrap_or_else(|| crate::cmdline::classful_prefix(addr));
    if let Err(e) = nl.add_addr(idx, addr, prefix) {
        warn!("{dev} address {addr}/{prefix}: {e}");
    }
    if let Some(gw) = l.router {
        if let Err(e) = nl.default_route(idx, gw) {
            warn!("default route via {gw}: {e}");
        }
    }
    info!(
        "{dev}: DHCP {addr}/{prefix} gateway {} from {}",
        l.router.map_or("none".into(), |g| g.to_string()),
        l.server.map_or("?".into(), |s| s.to_string())
    );
    let dns: Vec<Ipv4Addr> = extra_dns.iter().chain(&l.dns).copied().collect();
    write_resolv(&dns, l.router, l.domain.as_deref());
}

fn run_dhcp(nl: &mut Netlink, dev: &str, explicit: bool, extra_dns: &[Ipv4Addr]) {
    let wait = if explicit {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(500)
    };
    let Some(idx) = wait_link(dev, wait) else {
        if explicit {
            warn!("DHCP: no network device {dev}");
            log::milestone("net-config-failed");
        } else {
            info!("no {dev} and no ip=: loopback only");
            log::milestone("net-config-done");
        }
        return;
    };
    if let Err(e) = nl.link_up(idx) {
        warn!("{dev} up: {e}");
    }
    let mut lease = match dhcp::obtain(dev, 5, None) {
        Ok(l) => l,
        Err(e) => {
            warn!("DHCP on {dev}: {e}");
            log::milestone("net-config-failed");
            return;
        }
    };
    apply_lease(nl, idx, dev, &lease, extra_dns);
    log::milestone("net-ready");
    log::milestone("net-config-done");
    // Renew at T1 (half the lease) for as long as the VM lives.
    loop {
        let secs = match lease.lease_secs {
            Some(u32::MAX) | None => return,
            Some(s) => u64::from(s.max(60)) / 2,
        };
        std::thread::sleep(Duration::from_secs(secs));
        match dhcp::obtain(dev, 5, lease.address) {
            Ok(l) => {
                if l.address != lease.address {
                    apply_lease(nl, idx, dev, &l, extra_dns);
                }
                lease = l;
            }
            Err(e) => warn!("DHCP renewal on {dev}: {e}"),
        }
    }
}

/// The network thread's body.
pub fn run(plan: Plan) {
    log::milestone("net-config-start");
    let mut nl = match Netlink::open() {
        Ok(nl) => nl,
        Err(e) => {
            warn!("netlink socket: {e}");
            log::milestone("net-config-failed");
            return;
        }
    };
    loopback(&mut nl);
    match plan {
        Plan::LoopbackOnly => log::milestone("net-config-done"),
        Plan::Static(s) => {
            let ok = apply_static(&mut nl, &s);
            log::milestone(if ok { "net-ready" } else { "net-config-failed" });
            log::milestone("net-config-done");
        }
        Plan::Dhcp {
            device,
            explicit,
            dns,
        } => run_dhcp(&mut nl, &device, explicit, &dns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::parse_ip;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn plans() {
        assert!(matches!(
            plan(
                Some(&parse_ip("10.0.2.15::10.0.2.2:255.255.255.0::eth0:off")),
                false
            ),
            Plan::Static(_)
        ));
        assert!(matches!(
            plan(Some(&parse_ip("dhcp")), false),
            Plan::Dhcp { explicit: true, .. }
        ));
        assert!(matches!(
            plan(None, true),
            Plan::Dhcp { explicit: true, .. }
        ));
        assert!(matches!(
            plan(None, false),
            Plan::Dhcp {
                explicit: false,
                ..
            }
        ));
        assert_eq!(plan(Some(&parse_ip("off")), false), Plan::LoopbackOnly);
    }

    #[test]
    fn resolv_prefers_cmdline_dns() {
        let r = resolv_conf(
            &[a("1.1.1.1"), a("1.1.1.1"), a("9.9.9.9")],
            Some("nameserver 8.8.8.8\n"),
            Some(a("10.0.2.2")),
            None,
        )
        .expect("some");
        assert!(
            r.ends_with("nameserver 1.1.1.1\nnameserver 9.9.9.9\n"),
            "{r}"
        );
    }

    #[test]
    fn resolv_falls_back_to_pnp_then_gateway() {
        let pnp = "#PROTO: DHCP\ndomain example.org\nnameserver 10.0.2.3\nnameserver 0.0.0.0\n";
        let r = resolv_conf(&[], Some(pnp), Some(a("10.0.2.2")), None).expect("some");
        assert!(
            r.ends_with("domain example.org\nnameserver 10.0.2.3\n"),
            "{r}"
        );
        let r = resolv_conf(
            &[],
            Some("#PROTO: DHCP\n"),
            Some(a("10.0.2.2")),
            Some("lan"),
        )
        .expect("some");
        assert!(r.ends_with("search lan\nnameserver 10.0.2.2\n"), "{r}");
        assert_eq!(resolv_conf(&[], None, None, None), None);
    }
}
