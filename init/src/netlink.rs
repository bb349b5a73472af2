//! A minimal rtnetlink client over a raw `NETLINK_ROUTE` socket: link up, add an IPv4
//! address, add a default route. Messages are built by pure functions (unit-tested); the
//! socket wrapper sends one request at a time and waits for its ACK. "Already exists" is
//! success, so applying a configuration the kernel already has (CONFIG_IP_PNP) is harmless.
#![allow(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDR: usize = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
/// RTPROT_BOOT: "route installed during boot".
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;
const IFF_UP: u32 = 0x1;

fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

fn finish(ty: u16, flags: u16, seq: u32, body: Vec<u8>) -> Vec<u8> {
    let mut msg = Vec::with_capacity(NLMSG_HDR + body.len());
    msg.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// RTM_NEWLINK setting IFF_UP on `index`.
pub fn link_up_msg(seq: u32, index: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.push(libc::AF_UNSPEC as u8);
    b.push(0);
    b.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    b.extend_from_slice(&(index as i32).to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    b.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    finish(RTM_NEWLINK, 0, seq, b)
}

/// RTM_NEWADDR `addr/prefix` (with the subnet broadcast) on `index`.
pub fn add_addr_msg(seq: u32, index: u32, addr: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut b = Vec::with_capacity(40);
    b.push(libc::AF_INET as u8);
    b.push(prefix.min(32));
    b.push(0); // ifa_flags
    b.push(0); // RT_SCOPE_UNIVERSE
    b.extend_from_slice(&index.to_ne_bytes());
    push_attr(&mut b, IFA_LOCAL, &addr.octets());
    push_attr(&mut b, IFA_ADDRESS, &addr.octets());
    if prefix < 31 {
        let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        push_attr(
            &mut b,
            IFA_BROADCAST,
            &Ipv4Addr::from(u32::from(addr) | host).octets(),
        );
    }
    finish(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, seq, b)
}

/// RTM_NEWROUTE `default via gw dev index`.
pub fn default_route_msg(seq: u32, index: u32, gw: Ipv4Addr) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&[
        libc::AF_INET as u8,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        0,
        RTN_UNICAST,
    ]);
    b.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    push_attr(&mut b, RTA_GATEWAY, &gw.octets());
    push_attr(&mut b, RTA_OIF, &index.to_ne_bytes());
    finish(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, seq, b)
}

/// Find the NLMSG_ERROR reply for `seq` in a datagram: `Some(0)` = ACK, `Some(-errno)`.
pub fn parse_ack(buf: &[u8], seq: u32) -> Option<i32> {
    let mut off = 0usize;
    while off.checked_add(NLMSG_HDR)? <= buf.len() {
        let h = &buf[off..];
        let len = u32::from_ne_bytes(h[0..4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(h[4..6].try_into().ok()?);
        let s = u32::from_ne_bytes(h[8..12].try_into().ok()?);
        if len < NLMSG_HDR || len > h.len() {
            return None;
        }
        if ty == NLMSG_ERROR && s == seq && len >= NLMSG_HDR + 4 {
            return Some(i32::from_ne_bytes(h[16..20].try_into().ok()?));
        }
        off = off.checked_add((len + 3) & !3)?;
    }
    None
}

/// An open rtnetlink socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; zero is a valid initial value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a valid timeval and the length matches it.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Netlink { fd, seq: 1 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Send one request and wait for its ACK. EEXIST counts as success.
    fn request(&mut self, seq: u32, msg: &[u8]) -> io::Result<()> {
        // SAFETY: pointer/length describe `msg`; the fd is a bound netlink socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: pointer/length describe `buf`, which is writable.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            match parse_ack(&buf[..n as usize], seq) {
                Some(0) => return Ok(()),
                Some(e) if -e == libc::EEXIST => return Ok(()),
                Some(e) => return Err(io::Error::from_raw_os_error(-e)),
                None => continue,
            }
        }
    }

    pub fn link_up(&mut self, index: u32) -> io::Result<()> {
        let seq = self.next_seq();
        self.request(seq, &link_up_msg(seq, index))
    }

    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let seq = self.next_seq();
        self.request(seq, &add_addr_msg(seq, index, addr, prefix))
    }

    pub fn default_route(&mut self, index: u32, gw: Ipv4Addr) -> io::Result<()> {
        let seq = self.next_seq();
        self.request(seq, &default_route_msg(seq, index, gw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addr_message_layout() {
        let m = add_addr_msg(7, 2, Ipv4Addr::new(10, 0, 2, 15), 24);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWADDR);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(m[17], 24);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 2);
        // IFA_LOCAL attr, then IFA_ADDRESS, then broadcast 10.0.2.255.
        assert_eq!(&m[24..32], &[8, 0, 2, 0, 10, 0, 2, 15]);
        assert_eq!(&m[40..48], &[8, 0, 4, 0, 10, 0, 2, 255]);
        assert_eq!(m.len() % 4, 0);
    }

    #[test]
    fn route_message_layout() {
        let m = default_route_msg(1, 3, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(&m[16..24], &[2, 0, 0, 0, 254, 3, 0, 1]);
        assert_eq!(&m[28..36], &[8, 0, 5, 0, 10, 0, 2, 2]);
    }

    #[test]
    fn ack_parsing() {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&9u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(-17i32).to_ne_bytes());
        b.extend_from_slice(&[0u8; 16]);
        assert_eq!(parse_ack(&b, 9), Some(-17));
        assert_eq!(parse_ack(&b, 8), None);
    }

    proptest! {
        #[test]
        fn ack_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200), seq in any::<u32>()) {
            let _ = parse_ack(&b, seq);
        }
    }
}
