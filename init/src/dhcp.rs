//! A tiny DHCPv4 client (RFC 2131): DISCOVER → OFFER → REQUEST → ACK over a UDP socket
//! bound to the interface, with the broadcast flag set so the server broadcasts its replies
//! (the interface has no address yet). Enough for QEMU user networking and ordinary servers;
//! no relay, no INFORM. Packet building and parsing are pure and unit-tested.

use crate::sys;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

/// What a server offered or acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lease {
    pub msg_type: u8,
    pub xid: u32,
    pub address: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub prefix_len: Option<u8>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    pub hostname: Option<String>,
    pub domain: Option<String>,
}

/// Build a client message. `requested`/`server` go into options 50/54 (REQUEST).
pub fn build(
    msg_type: u8,
    xid: u32,
    mac: [u8; 6],
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // broadcast flag
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&[53, 1, msg_type]);
    let mut cid = vec![61, 7, 1];
    cid.extend_from_slice(&mac);
    p.extend_from_slice(&cid);
    if let Some(r) = requested {
        p.extend_from_slice(&[50, 4]);
        p.extend_from_slice(&r.octets());
    }
    if let Some(s) = server {
        p.extend_from_slice(&[54, 4]);
        p.extend_from_slice(&s.octets());
    }
    p.extend_from_slice(&[55, 7, 1, 3, 6, 12, 15, 28, 51]);
    p.extend_from_slice(&[57, 2, 0x05, 0xdc]); // max message size 1500
    p.push(255);
    while p.len() < 300 {
        p.push(0);
    }
    p
}

fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

fn text(b: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(b).ok()?.trim_end_matches('\0');
    (!s.is_empty()).then(|| s.to_string())
}

/// Parse a server reply for transaction `xid`. `None` if it is not a well-formed reply to us.
pub fn parse(p: &[u8], xid: u32, mac: [u8; 6]) -> Option<Lease> {
    if p.len() < 240
        || p[0] != 2
        || p[4..8] != xid.to_be_bytes()
        || p[28..34] != mac
        || p[236..240] != MAGIC
    {
        return None;
    }
    let mut l = Lease {
        xid,
        ..Lease::default()
    };
    let yi = ip4(&p[16..20])?;
    l.address = (!yi.is_unspecified()).then_some(yi);
    let mut i = 240usize;
    while i < p.len() {
        let code = p[i];
        if code == 0 {
            i += 1;
            continue;
        }
        if code == 255 {
            break;
        }
        let len = usize::from(*p.get(i + 1)?);
        let v = p.get(i + 2..i + 2 + len)?;
        match code {
            53 if len == 1 => l.msg_type = v[0],
            1 if len == 4 => {
                let m = u32::from(ip4(v)?);
                if m.leading_ones() + m.trailing_zeros() == 32 {
                    l.prefix_len = Some(m.leading_ones() as u8);
                }
            }
            3 if len >= 4 => l.router = ip4(v).filter(|a| !a.is_unspecified()),
            6 => {
                l.dns = v
                    .chunks_exact(4)
                    .filter_map(ip4)
                    .filter(|a| !a.is_unspecified())
                    .collect()
            }
            12 => l.hostname = text(v),
            15 => l.domain = text(v),
            51 if len == 4 => l.lease_secs = Some(u32::from_be_bytes(v.try_into().ok()?)),
            54 if len == 4 => l.server = ip4(v),
            _ => {}
        }
        i += 2 + len;
    }
    (l.msg_type != 0).then_some(l)
}

/// The interface's MAC address from sysfs.
pub fn mac_of(dev: &str) -> Option<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{dev}/address")).ok()?;
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    v.try_into().ok()
}

fn random_xid() -> u32 {
    let mut b = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        return sys::monotonic().subsec_nanos() ^ std::process::id();
    }
    u32::from_ne_bytes(b)
}

fn exchange(
    sock: &UdpSocket,
    msg: &[u8],
    xid: u32,
    mac: [u8; 6],
    want: &[u8],
    wait: Duration,
) -> io::Result<Option<Lease>> {
    let dst = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    sock.send_to(msg, dst)?;
    let deadline = sys::monotonic() + wait;
    let mut buf = [0u8; 1500];
    loop {
        let now = sys::monotonic();
        if now >= deadline {
            return Ok(None);
        }
        sock.set_read_timeout(Some(deadline - now))?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Some(l) = parse(&buf[..n], xid, mac) {
                    if want.contains(&l.msg_type) {
                        return Ok(Some(l));
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

/// Run DISCOVER/REQUEST on `dev` (already up) until ACK, trying `attempts` times with a
/// doubling wait starting at 1 s. `requested` asks for a previous address (renewal).
pub fn obtain(dev: &str, attempts: u32, requested: Option<Ipv4Addr>) -> io::Result<Lease> {
    let mac = mac_of(dev)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no MAC for {dev}")))?;
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))?;
    sock.set_broadcast(true)?;
    sys::bind_to_device(sock.as_raw_fd(), dev)?;
    let mut wait = Duration::from_secs(1);
    for _ in 0..attempts.max(1) {
        let xid = random_xid();
        let offer = match exchange(
            &sock,
            &build(DISCOVER, xid, mac, requested, None),
            xid,
            mac,
            &[OFFER],
            wait,
        )? {
            Some(o) => o,
            None => {
                wait = (wait * 2).min(Duration::from_secs(8));
                continue;
            }
        };
        let Some(addr) = offer.address else { continue };
        let req = build(REQUEST, xid, mac, Some(addr), offer.server);
        match exchange(&sock, &req, xid, mac, &[ACK, NAK], wait)? {
            Some(ack) if ack.msg_type == ACK && ack.address.is_some() => return Ok(ack),
            _ => wait = (wait * 2).min(Duration::from_secs(8)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no DHCP lease on {dev}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn reply(xid: u32, ty: u8) -> Vec<u8> {
        let mut p = build(DISCOVER, xid, MAC, None, None);
        p[0] = 2;
        p[16..20].copy_from_slice(&[10, 0, 2, 15]);
        p.truncate(240);
        p.extend_from_slice(&[53, 1, ty, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2]);
        p.extend_from_slice(&[
            6, 8, 10, 0, 2, 3, 1, 1, 1, 1, 51, 4, 0, 1, 81, 128, 54, 4, 10, 0, 2, 2, 255,
        ]);
        p
    }

    #[test]
    fn discover_shape() {
        let p = build(DISCOVER, 0xdeadbeef, MAC, None, None);
        assert_eq!(p.len(), 300);
        assert_eq!(&p[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&p[236..243], &[99, 130, 83, 99, 53, 1, 1]);
    }

    #[test]
    fn parse_offer() {
        let l = parse(&reply(7, OFFER), 7, MAC).expect("offer parses");
        assert_eq!(l.msg_type, OFFER);
        assert_eq!(l.address, Some(Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(l.prefix_len, Some(24));
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(
            l.dns,
            vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(l.lease_secs, Some(86400));
        assert_eq!(l.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(parse(&reply(7, OFFER), 8, MAC).is_none(), "wrong xid");
    }

    proptest! {
        #[test]
        fn parse_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut p = reply(1, ACK);
            p.truncate(240);
            p.extend_from_slice(&tail);
            let _ = parse(&p, 1, MAC);
        }

        #[test]
        fn parse_short_never_panics(p in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&p, 1, MAC);
        }
    }
}
