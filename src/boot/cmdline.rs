//! The guest kernel command line, built the way SmolVM builds it for QEMU: its boot args
//! (`console=ttyS0 reboot=k panic=1 root=/dev/vda rw init=/init`), the user-network address
//! (`ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off`) and the SSH key as
//! `smolvm.authorized_key_b64=` (base64 of the whole key line, so it holds no blanks).
//! Pure: no I/O.

use base64::Engine as _;

/// The guest address, gateway and mask of QEMU's user network (slirp's defaults).
pub const USER_NET_IP: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";

/// What goes on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineSpec {
    /// The root device (`/dev/vda` for virtio-blk, `/dev/nvme0n1` for NVMe).
    pub root: String,
    /// The OpenSSH public key line for root, if any.
    pub authorized_key: Option<String>,
    /// Modules for rootsmith-init to load (`rootsmith.modules=`), empty for none.
    pub modules: Vec<String>,
    /// The user's extra arguments, appended last (a later `init=` or `ip=` wins).
    pub append: Option<String>,
}

/// The whole command line.
pub fn render(spec: &CmdlineSpec) -> String {
    let mut parts: Vec<String> = vec![
        "console=ttyS0".into(),
        "reboot=k".into(),
        "panic=1".into(),
        format!("root={}", spec.root),
        "rw".into(),
        "init=/init".into(),
        USER_NET_IP.into(),
    ];
    if let Some(key) = &spec.authorized_key {
        parts.push(format!(
            "smolvm.authorized_key_b64={}",
            base64::engine::general_purpose::STANDARD.encode(key.trim().as_bytes())
        ));
    }
    if !spec.modules.is_empty() {
        parts.push(format!("rootsmith.modules={}", spec.modules.join(",")));
    }
    if let Some(extra) = spec.append.as_deref().map(str::trim) {
        if !extra.is_empty() {
            parts.push(extra.to_string());
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smolvm_shape_with_key() {
        let s = render(&CmdlineSpec {
            root: "/dev/vda".into(),
            authorized_key: Some("ssh-ed25519 AAAA k@h\n".into()),
            modules: vec![],
            append: None,
        });
        assert_eq!(
            s,
            "console=ttyS0 reboot=k panic=1 root=/dev/vda rw init=/init \
             ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off \
             smolvm.authorized_key_b64=c3NoLWVkMjU1MTkgQUFBQSBrQGg="
        );
    }

    #[test]
    fn nvme_modules_and_append_come_last() {
        let s = render(&CmdlineSpec {
            root: "/dev/nvme0n1".into(),
            authorized_key: None,
            modules: vec!["virtio_net".into(), "button".into()],
            append: Some("  init=/lib/systemd/systemd ".into()),
        });
        assert!(s.contains(" root=/dev/nvme0n1 rw init=/init "), "{s}");
        assert!(
            s.ends_with("rootsmith.modules=virtio_net,button init=/lib/systemd/systemd"),
            "{s}"
        );
        assert!(!s.contains("authorized_key"));
    }
}
