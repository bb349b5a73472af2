//! The kernel command line (`/proc/cmdline`) as init sees it: tokens, quoting, and the keys
//! rootsmith-init acts on. Pure: no I/O, so it is unit-tested on the host.
//!
//! Tokenising follows the kernel's `next_arg()`: parameters are separated by whitespace, a
//! double quote toggles quoting anywhere in a token (`key="a b"` and `"key=a b"` both give
//! `key` = `a b`), quotes are removed, and `--` ends the kernel's parameters (the rest are
//! init's argv, not ours). Dotted keys (`rootsmith.*`, `smolvm.*`) never reach init's argv or
//! environment, which is why init reads `/proc/cmdline` itself.
//!
//! Repeated keys: a single-valued key takes its **last** occurrence, as the kernel's own
//! `__setup` handlers do (so a value appended later overrides); list-valued keys
//! (`rootsmith.modules`, `*.authorized_key_b64`) accumulate in order.

use std::net::Ipv4Addr;

/// One `key[=value]` parameter. A bare word has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: Option<String>,
}

/// Split a command line into parameters, kernel style. Never panics; stops at `--`.
pub fn tokenize(line: &str) -> Vec<Param> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut token = String::new();
        let mut in_quote = false;
        let mut quoted_any = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !in_quote {
                break;
            }
            chars.next();
            if c == '"' {
                in_quote = !in_quote;
                quoted_any = true;
            } else {
                token.push(c);
            }
        }
        if token == "--" && !quoted_any {
            break;
        }
        let (key, value) = match token.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (token, None),
        };
        if key.is_empty() {
            continue;
        }
        out.push(Param { key, value });
    }
    out
}

/// What to do at shutdown when `rootsmith.shutdown=` says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    PowerOff,
    Reboot,
    Halt,
}

/// The `ip=` parameter (kernel nfsroot syntax), reduced to what init applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpConfig {
    /// `ip=off`/`none`, or no usable client address and no autoconf protocol.
    Off,
    /// `ip=dhcp|on|any|bootp|both|rarp`, or a full form with an autoconf protocol and no
    /// client address. `device` is `None` when the field was empty.
    Dhcp {
        device: Option<String>,
        hostname: Option<String>,
        dns: Vec<Ipv4Addr>,
    },
    /// A client address was given.
    Static(StaticIp),
}

/// A static `ip=client:server:gw:netmask:hostname:device:autoconf:dns0:dns1:ntp0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub device: Option<String>,
    pub dns: Vec<Ipv4Addr>,
}

fn is_dynamic_proto(s: &str) -> bool {
    matches!(s, "on" | "any" | "dhcp" | "bootp" | "rarp" | "both")
}

/// Netmask field: a dotted quad with contiguous ones, or a bare prefix length (`24`, `/24`).
pub fn parse_netmask(s: &str) -> Option<u8> {
    let s = s.trim_start_matches('/');
    if let Ok(n) = s.parse::<u8>() {
        return (n <= 32).then_some(n);
    }
    let m = u32::from(s.parse::<Ipv4Addr>().ok()?);
    let ones = m.leading_ones();
    // Contiguous: after the leading ones, only zeros.
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The kernel's default when the netmask field is empty: the address's class.
pub fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

fn ip_field(s: Option<&str>) -> Option<Ipv4Addr> {
    s.filter(|s| !s.is_empty())?.parse().ok()
}

fn text_field(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

/// Parse an `ip=` value. Garbage in a field is treated as an empty field, like the kernel.
pub fn parse_ip(value: &str) -> IpConfig {
    if !value.contains(':') {
        return if is_dynamic_proto(value) {
            IpConfig::Dhcp {
                device: None,
                hostname: None,
                dns: Vec::new(),
            }
        } else {
            IpConfig::Off
        };
    }
    let f: Vec<&str> = value.split(':').collect();
    let get = |i: usize| f.get(i).copied();
    let client = ip_field(get(0));
    let gateway = ip_field(get(2)).filter(|g| !g.is_unspecified());
    let hostname = text_field(get(4)).filter(|h| valid_hostname(h));
    let device = text_field(get(5)).filter(|d| d.len() < 16 && !d.contains('/'));
    let autoconf = get(6).unwrap_or("");
    let dns: Vec<Ipv4Addr> = [get(7), get(8)]
        .into_iter()
        .filter_map(ip_field)
        .filter(|a| !a.is_unspecified())
        .collect();
    match client.filter(|c| !c.is_unspecified()) {
        Some(address) => {
            let prefix_len = get(3)
                .filter(|s| !s.is_empty())
                .and_then(parse_netmask)
                .unwrap_or_else(|| classful_prefix(address));
            IpConfig::Static(StaticIp {
                address,
                prefix_len,
                gateway,
                hostname,
                device,
                dns,
            })
        }
        None if autoconf.is_empty() || is_dynamic_proto(autoconf) => IpConfig::Dhcp {
            device,
            hostname,
            dns,
        },
        None => IpConfig::Off,
    }
}

/// RFC 1123 host name (labels of letters, digits and hyphens, ≤ 63 each, ≤ 253 total).
pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Everything init takes from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `ip=` (last occurrence); `None` when absent.
    pub ip: Option<IpConfig>,
    /// `smolvm.network=guest`: guest-managed networking (DHCP on eth0).
    pub guest_network: bool,
    /// `rootsmith.hostname=` (or `smolvm.hostname=`), validated.
    pub hostname: Option<String>,
    /// `rootsmith.authorized_key_b64=` and `smolvm.authorized_key_b64=`, all occurrences.
    pub authorized_keys_b64: Vec<String>,
    /// `rootsmith.modules=a,b,c`, all occurrences, in order, deduplicated.
    pub modules: Vec<String>,
    /// `reboot=` contains `k`/`kbd`/`t`/`triple`/...: some reboot type was asked for, which
    /// (with `-no-reboot` or Firecracker) makes a restart end the VM.
    pub reboot_k: bool,
    /// `rootsmith.shutdown=poweroff|reboot|halt`.
    pub shutdown: Option<ShutdownMode>,
    /// `rootsmith.cgroup=0` disables the cgroup2 mount.
    pub cgroup: bool,
    /// The kernel's `quiet`: init prints only errors and milestones.
    pub quiet: bool,
    /// Unknown or malformed values, for the log (key, why).
    pub warnings: Vec<String>,
}

/// `reboot=` items that name a reboot method (arch/x86/kernel/reboot.c); `warm`, `cold` and
/// friends only tune it.
const REBOOT_TYPES: &[&str] = &[
    "k", "kbd", "t", "triple", "b", "bios", "a", "acpi", "e", "efi", "p", "pci",
];

fn truthy(v: Option<&str>) -> Option<bool> {
    match v {
        None | Some("1" | "y" | "yes" | "on" | "true") => Some(true),
        Some("0" | "n" | "no" | "off" | "false") => Some(false),
        Some(_) => None,
    }
}

/// Interpret the parameters. Never panics; bad values become warnings.
pub fn parse(line: &str) -> Config {
    let mut c = Config {
        cgroup: true,
        ..Config::default()
    };
    for p in tokenize(line) {
        let v = p.value.as_deref();
        match p.key.as_str() {
            "ip" => c.ip = Some(parse_ip(v.unwrap_or(""))),
            "quiet" => c.quiet = true,
            "smolvm.network" => c.guest_network = v == Some("guest"),
            "rootsmith.hostname" | "smolvm.hostname" => match v {
                Some(h) if valid_hostname(h) => c.hostname = Some(h.to_string()),
                _ => c
                    .warnings
                    .push(format!("{}: not a valid host name, ignored", p.key)),
            },
            "rootsmith.authorized_key_b64" | "smolvm.authorized_key_b64" => match v {
                Some(k) if !k.is_empty() => c.authorized_keys_b64.push(k.to_string()),
                _ => c.warnings.push(format!("{}: empty, ignored", p.key)),
            },
            "rootsmith.modules" => {
                for m in v
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                {
                    let m = m.replace('-', "_");
                    if m.contains('/') || m.contains('\0') || m.len() > 64 {
                        c.warnings
                            .push(format!("rootsmith.modules: bad module name {m:?}"));
                    } else if !c.modules.contains(&m) {
                        c.modules.push(m);
                    }
                }
            }
            "reboot" | "reb" => {
                c.reboot_k = v.is_some_and(|v| v.split(',').any(|t| REBOOT_TYPES.contains(&t)))
            }
            "rootsmith.shutdown" => match v {
                Some("poweroff") => c.shutdown = Some(ShutdownMode::PowerOff),
                Some("reboot") => c.shutdown = Some(ShutdownMode::Reboot),
                Some("halt") => c.shutdown = Some(ShutdownMode::Halt),
                _ => c.warnings.push(
                    "rootsmith.shutdown: expected poweroff, reboot or halt; ignored".to_string(),
                ),
            },
            "rootsmith.cgroup" => match truthy(v) {
                Some(b) => c.cgroup = b,
                None => c
                    .warnings
                    .push("rootsmith.cgroup: expected 0 or 1; ignored".into()),
            },
            k if k.starts_with("rootsmith.") => c
                .warnings
                .push(format!("{k}: unknown rootsmith key, ignored")),
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn tokenize_quotes_and_double_dash() {
        let t = tokenize(r#"console=ttyS0 a="b c" "d=e f" bare  -- x=y"#);
        let kv: Vec<(&str, Option<&str>)> = t
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_deref()))
            .collect();
        assert_eq!(
            kv,
            vec![
                ("console", Some("ttyS0")),
                ("a", Some("b c")),
                ("d", Some("e f")),
                ("bare", None)
            ]
        );
    }

    #[test]
    fn tokenize_unterminated_quote_takes_rest() {
        let t = tokenize("a=\"x y");
        assert_eq!(
            t,
            vec![Param {
                key: "a".into(),
                value: Some("x y".into())
            }]
        );
    }

    #[test]
    fn smolvm_static_ip() {
        let c =
            parse("console=ttyS0 reboot=k panic=1 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off");
        assert_eq!(
            c.ip,
            Some(IpConfig::Static(StaticIp {
                address: ip("10.0.2.15"),
                prefix_len: 24,
                gateway: Some(ip("10.0.2.2")),
                hostname: None,
                device: Some("eth0".into()),
                dns: vec![],
            }))
        );
        assert!(c.reboot_k);
    }

    #[test]
    fn full_form_with_dns_and_hostname() {
        let c = parse_ip(
            "192.168.1.5:192.168.1.1:192.168.1.1:255.255.0.0:box:eth1:none:1.1.1.1:9.9.9.9:ntp",
        );
        let IpConfig::Static(s) = c else {
            panic!("static expected: {c:?}")
        };
        assert_eq!(s.prefix_len, 16);
        assert_eq!(s.hostname.as_deref(), Some("box"));
        assert_eq!(s.device.as_deref(), Some("eth1"));
        assert_eq!(s.dns, vec![ip("1.1.1.1"), ip("9.9.9.9")]);
    }

    #[test]
    fn short_forms() {
        for s in ["dhcp", "on", "any", "bootp", "both", "rarp"] {
            assert!(matches!(parse_ip(s), IpConfig::Dhcp { .. }), "{s}");
        }
        for s in ["off", "none", "", "garbage"] {
            assert_eq!(parse_ip(s), IpConfig::Off, "{s}");
        }
        assert!(
            matches!(parse_ip(":::::eth0:dhcp"), IpConfig::Dhcp { device: Some(d), .. } if d == "eth0")
        );
        assert_eq!(parse_ip(":::::eth0:off"), IpConfig::Off);
    }

    #[test]
    fn empty_netmask_is_classful_and_prefix_form_accepted() {
        let IpConfig::Static(s) = parse_ip("10.1.2.3::::::off") else {
            panic!()
        };
        assert_eq!(s.prefix_len, 8);
        let IpConfig::Static(s) = parse_ip("172.16.0.2::172.16.0.1:24::eth0:off") else {
            panic!()
        };
        assert_eq!(s.prefix_len, 24);
        assert_eq!(parse_netmask("255.0.255.0"), None);
        assert_eq!(parse_netmask("255.255.255.255"), Some(32));
        assert_eq!(parse_netmask("0.0.0.0"), Some(0));
    }

    #[test]
    fn repeated_keys_last_wins_lists_accumulate() {
        let c = parse(
            "ip=dhcp ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off rootsmith.modules=virtio-net,a \
             rootsmith.modules=b,a smolvm.authorized_key_b64=QQ== rootsmith.authorized_key_b64=Qg== \
             rootsmith.hostname=one rootsmith.hostname=two",
        );
        assert!(matches!(c.ip, Some(IpConfig::Static(_))));
        assert_eq!(c.modules, vec!["virtio_net", "a", "b"]);
        assert_eq!(c.authorized_keys_b64, vec!["QQ==", "Qg=="]);
        assert_eq!(c.hostname.as_deref(), Some("two"));
    }

    #[test]
    fn shutdown_and_flags() {
        let c = parse("rootsmith.shutdown=halt smolvm.network=guest rootsmith.cgroup=0 rootsmith.bogus=1 quiet");
        assert!(c.quiet);
        assert_eq!(c.shutdown, Some(ShutdownMode::Halt));
        assert!(c.guest_network);
        assert!(!c.cgroup);
        assert!(!c.reboot_k);
        assert_eq!(c.warnings.len(), 1);
        let c = parse("rootsmith.shutdown=explode rootsmith.hostname=-bad-");
        assert_eq!(c.shutdown, None);
        assert_eq!(c.hostname, None);
        assert_eq!(c.warnings.len(), 2);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn ip_never_panics(s in "[0-9a-z.:/ ]{0,80}") {
            let _ = parse_ip(&s);
        }

        #[test]
        fn static_roundtrip(a in any::<[u8; 4]>(), g in any::<[u8; 4]>(), p in 0u8..=32) {
            prop_assume!(a != [0, 0, 0, 0]);
            let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0));
            let s = format!("{}::{}:{}::eth0:off", Ipv4Addr::from(a), Ipv4Addr::from(g), mask);
            let IpConfig::Static(st) = parse_ip(&s) else { panic!("{s}") };
            prop_assert_eq!(st.address, Ipv4Addr::from(a));
            prop_assert_eq!(st.prefix_len, p);
        }

        #[test]
        fn tokens_have_no_unquoted_whitespace(words in proptest::collection::vec("[a-z.]{1,8}=[a-z0-9]{0,8}", 0..10)) {
            let line = words.join(" ");
            let t = tokenize(&line);
            prop_assert_eq!(t.len(), words.len());
        }
    }
}
