#!/usr/bin/env bash
# Time to SSH: one Debian bookworm-slim image (openssh-server, systemd, udev, kmod, dbus from a
# local apt repository, the kernel from its linux-image-cloud-amd64 package) booted by
# `rootsmith boot` twice per run under the same QEMU settings:
#   init     rootsmith's /init (SmolVM's cmdline: ip=, key on the cmdline, rootsmith.modules=)
#   systemd  the same disk with init=/lib/systemd/systemd (networkd with a static address,
#            ssh.service enabled, virtio_net from /etc/modules-load.d)
# and prints, per run, QEMU start → kernel → init → sshd → banner → login (host clock, from
# `boot --json`), then the medians and the ratio init/systemd (the issue's goal: ≤ 0.2; the
# boot note explains why ≈0.3 is the floor under TCG).
# Usage: benches/boot.sh [RUNS]   (default 3; root for the fixtures' apt-get). RS=rootsmith,
# ROOTSMITH_INIT=static init, ACCEL=tcg|kvm|auto (default tcg) override; KEEP=1 keeps the work
# directory (consoles, image). Asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
FIX=$PWD/../shared/fixtures
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${RS:-}" ]; then
  cargo build -q
  RS=$TARGET/debug/rootsmith
fi
if [ -z "${ROOTSMITH_INIT:-}" ]; then
  cargo build-init -q
  ROOTSMITH_INIT=$TARGET/x86_64-unknown-linux-musl/release/rootsmith-init
fi
export ROOTSMITH_QEMU=${ROOTSMITH_QEMU:-$("$FIX/qemu.sh")}
ACCEL=${ACCEL:-tcg}
WORK=$(mktemp -d /var/tmp/rootsmith-boot-bench.XXXXXX)
APT=$TARGET/fixtures/apt-repo-boot-bench
cleanup() {
  "$FIX/apt-repo.sh" stop "$APT" >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
[ -f "$APT/repo.env" ] ||
  "$FIX/apt-repo.sh" build "$APT" openssh-server systemd udev kmod dbus linux-image-cloud-amd64 >&2
"$FIX/apt-repo.sh" stop "$APT" >/dev/null 2>&1 || true
"$FIX/apt-repo.sh" serve "$APT" >/dev/null

# The kernel and its modules (with a real modules.dep/alias from the host's depmod).
deb=$(awk -F'\t' '$1 ~ /^linux-image-.*-cloud-amd64$/ && $1 != "linux-image-cloud-amd64" {print $6; exit}' "$APT/packages.tsv")
dpkg-deb -x "$APT/repo/$deb" "$WORK/k"
REL=$(basename "$WORK"/k/boot/vmlinuz-* | sed 's/^vmlinuz-//')
depmod -b "$WORK/k" "$REL"

ssh-keygen -q -t ed25519 -N '' -C boot-bench -f "$WORK/key"
"$RS" build --quiet --base "rootfs:$FIX/base/debian-bookworm-slim-amd64.rootfs.tar.xz" \
  --package openssh-server --package systemd --package udev --package kmod --package dbus \
  --apt-source "$(cat "$APT/sources.list")" --init "$ROOTSMITH_INIT" --size 1G \
  --cache-dir "$WORK/cache" --out "$WORK/img"
cp "$WORK/k/boot/vmlinuz-$REL" "$WORK/img/vmlinux.bin"
cp "$WORK/k/boot/config-$REL" "$WORK/img/config-$REL"

# debugfs: modules, networkd config, units enabled (symlinks, as systemctl enable makes).
M=$WORK/k/lib/modules/$REL
B=/usr/lib/modules/$REL
{
  echo "mkdir /usr/lib/modules"
  echo "mkdir $B"
  files=()
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
    files+=("$(cd "$M" && find . -name "$m.ko" | sed 's|^\./||')")
  done
  for f in "${files[@]}"; do
    d=$(dirname "$f"); p=""
    for part in ${d//\// }; do p=${p:+$p/}$part; echo "mkdir $B/$p"; done
  done | awk '!seen[$0]++'
  for f in "${files[@]}"; do echo "write $M/$f $B/$f"; done
  for f in modules.dep modules.dep.bin modules.alias modules.alias.bin modules.builtin modules.builtin.bin \
    modules.builtin.alias.bin modules.symbols modules.symbols.bin modules.softdep modules.devname; do
    [ -f "$M/$f" ] && echo "write $M/$f $B/$f"
  done
  printf '[Match]\nName=eth0 en*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' >"$WORK/20-wired.network"
  echo "virtio_net" >"$WORK/virtio.conf"
  # A machine id: without one every boot is systemd's "first boot" (preset-all: +10 s
  # under TCG), which a Debian install's postinst would have avoided.
  echo 0123456789abcdef0123456789abcdef >"$WORK/machine-id"
  echo "rm /etc/machine-id"
  echo "write $WORK/machine-id /etc/machine-id"
  echo "write $WORK/20-wired.network /etc/systemd/network/20-wired.network"
  echo "mkdir /etc/modules-load.d"
  echo "write $WORK/virtio.conf /etc/modules-load.d/virtio.conf"
  echo "mkdir /etc/systemd/system/multi-user.target.wants"
  echo "mkdir /etc/systemd/system/sockets.target.wants"
  echo "symlink /etc/systemd/system/multi-user.target.wants/ssh.service /lib/systemd/system/ssh.service"
  echo "symlink /etc/systemd/system/multi-user.target.wants/systemd-networkd.service /lib/systemd/system/systemd-networkd.service"
  echo "symlink /etc/systemd/system/sockets.target.wants/systemd-networkd.socket /lib/systemd/system/systemd-networkd.socket"
} >"$WORK/debugfs.cmds"
debugfs -w -f "$WORK/debugfs.cmds" "$WORK/img/rootfs.ext4" >/dev/null 2>"$WORK/debugfs.err" || { cat "$WORK/debugfs.err"; exit 1; }
e2fsck -fn "$WORK/img/rootfs.ext4" >/dev/null 2>&1 || { echo "e2fsck -fn: the prepared image is not clean" >&2; exit 1; }
# A first boot with rootsmith's init, in place, creates the host keys and root's
# authorized_keys, which the systemd boots need too (ssh.service does not make keys).
"$RS" boot "$WORK/img" --in-place --accel "$ACCEL" --authorized-key "$WORK/key.pub" --exec true -q

boot() { # boot NAME [ARGS...] -> one TSV line
  local name=$1; shift
  cp --sparse=always "$WORK/img/rootfs.ext4" "$WORK/run.ext4"
  "$RS" boot "$WORK/run.ext4" --kernel "$WORK/img/vmlinux.bin" --in-place --accel "$ACCEL" --cpus 2 --memory 1024 \
    --authorized-key "$WORK/key.pub" --exec true --json -q --console "$WORK/console-$name.log" "$@" |
    tail -1 | python3 -c "
import json,sys
r=json.load(sys.stdin); t=r['timings']
g=lambda k: t.get(k) if t.get(k) is not None else float('nan')
print('\t'.join(['$name']+['%.2f'%x for x in [g('kernel_entry'),g('init_exec'),g('sshd_up'),g('banner'),g('login'),g('qemu_exit')-g('shutdown_request')]]))"
}
printf 'run\twhat\tkernel\tinit\tsshd\tbanner\tlogin\tpoweroff\n'
: >"$WORK/results"
for i in $(seq 1 "$RUNS"); do
  for what in init systemd; do
    if [ "$what" = init ]; then line=$(boot init --disk nvme); else line=$(boot systemd --disk nvme --append init=/lib/systemd/systemd); fi
    printf '%s\t%s\n' "$i" "$line" | tee -a "$WORK/results"
  done
done
python3 - "$WORK/results" <<'EOF'
import sys, statistics as st
rows=[l.rstrip('\n').split('\t') for l in open(sys.argv[1])]
cols=['kernel','init','sshd','banner','login','poweroff']
med={}
for what in ('init','systemd'):
    r=[list(map(float,x[2:])) for x in rows if x[1]==what]
    med[what]=[st.median(c) for c in zip(*r)]
    print('median\t%s\t%s' % (what, '\t'.join('%.2f'%v for v in med[what])))
b=cols.index('banner'); l=cols.index('login')
print('ratio init/systemd: banner %.2f, login %.2f (goal <= 0.2; TCG floor ~0.3, see the boot note)' % (med['init'][b]/med['systemd'][b], med['init'][l]/med['systemd'][l]))
EOF
