#!/usr/bin/env bash
# Benchmarks `rootsmith build` end to end on the shipped SmolVM recipes, against loopback
# servers (a registry holding the base fixtures, the apt repository of debian-ssh-key's
# closure, a synthetic apk repository for alpine-ssh-key), printing the time of each stage
# (from --json) and the total:
#   cold    empty download cache, empty SmolVM cache (everything fetched from the servers)
#   rebuild warm download cache, fresh output directory (a full build without the network)
#   warm    the same build again: a cache hit on the SmolVM cache's .fingerprint
# Usage: benches/build.sh [RUNS]   (default 3; medians; run as root: the fixture scripts
# install docker-registry, skopeo, gpg when missing). RS=path/to/rootsmith overrides the
# release build. Prints timings only; nothing here asserts them.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
FIX=$PWD/../shared/fixtures
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${RS:-}" ]; then
  cargo build --release -q
  cargo build-init -q
  RS=$TARGET/release/rootsmith
fi
export ROOTSMITH_INIT=${ROOTSMITH_INIT:-$TARGET/x86_64-unknown-linux-musl/release/rootsmith-init}
WORK=$(mktemp -d /var/tmp/rootsmith-build-bench.XXXXXX)
APT=$TARGET/fixtures/apt-repo-smolvm
cleanup() {
  "$FIX/registry.sh" stop "$WORK/reg" >/dev/null 2>&1 || true
  "$FIX/apt-repo.sh" stop "$APT" >/dev/null 2>&1 || true
  "$FIX/apk-repo.sh" stop "$WORK/apk" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export SOURCE_DATE_EPOCH=1700000000
REG=$("$FIX/registry.sh" start "$WORK/reg" 0)
"$FIX/registry.sh" push-tar "$FIX/base/debian-bookworm-slim-amd64.rootfs.tar.xz" "$REG/debian:bookworm-slim" >/dev/null
"$FIX/registry.sh" push-tar "$FIX/base/alpine-minirootfs-3.20.3-x86_64.tar.gz" "$REG/alpine:3.20" >/dev/null
unset SOURCE_DATE_EPOCH
[ -f "$APT/repo.env" ] || "$FIX/apt-repo.sh" build "$APT" openssh-server iproute2 curl ca-certificates python3
"$FIX/apt-repo.sh" serve "$APT" >/dev/null
for n in openssh iproute2 curl bash ca-certificates python3; do
  "$FIX/apk-repo.sh" example "$WORK/pkgs/$n" "$n" 1.0-r0 >/dev/null 2>&1
done
mkdir -p "$WORK/pkgs/openssh/root/etc/ssh"
printf 'Include /etc/ssh/sshd_config.d/*.conf\n' >"$WORK/pkgs/openssh/root/etc/ssh/sshd_config"
APK_REPO_KEY_BITS=2048 "$FIX/apk-repo.sh" build "$WORK/apk" "$WORK"/pkgs/* >/dev/null 2>&1
APK_URL=$("$FIX/apk-repo.sh" serve "$WORK/apk")
APK_KEY=$(ls "$WORK"/apk/keys/*.pub)

args_for() {
  case $1 in
    debian-ssh-key) echo "--base $REG/debian:bookworm-slim" ;;
    alpine-ssh-key) echo "--base $REG/alpine:3.20 --apk-repository $APK_URL/main --apk-key $APK_KEY" ;;
  esac
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# one RECIPE KIND RUN: prints "total resolve base packages overlay ext4" for one build
one() {
  local recipe=$1 kind=$2 i=$3 extra
  # shellcheck disable=SC2046
  set -- $(args_for "$recipe")
  [ "$recipe" = debian-ssh-key ] && set -- "$@" --apt-source "$(cat "$APT/sources.list")"
  case $kind in
    cold) rm -rf "$WORK/c-$i" "$WORK/s-$i"; extra=(--cache-dir "$WORK/c-$i" --smolvm-dir "$WORK/s-$i") ;;
    rebuild) rm -rf "$WORK/o-$i"; extra=(--cache-dir "$WORK/c-$i" --out "$WORK/o-$i") ;;
    warm) extra=(--cache-dir "$WORK/c-$i" --smolvm-dir "$WORK/s-$i") ;;
  esac
  local t0 t1
  t0=$(date +%s.%N)
  "$RS" build "$recipe" "$@" "${extra[@]}" --json 2>/dev/null >"$WORK/j"
  t1=$(date +%s.%N)
  python3 - "$WORK/j" "$t0" "$t1" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().splitlines()[-1])
s = j["stages"]
wall = float(sys.argv[3]) - float(sys.argv[2])
print(wall, *(s.get(k, 0) for k in ["resolve", "base", "packages", "overlay", "ext4"]))
PY
}

for recipe in alpine-ssh-key debian-ssh-key; do
  echo "== $recipe ($RUNS runs each; seconds, medians; wall = process start to exit)"
  printf '%-8s %8s %8s %8s %8s %8s %8s\n' kind wall resolve base packages overlay ext4
  for kind in cold rebuild warm; do
    : >"$WORK/t"
    for i in $(seq "$RUNS"); do one "$recipe" "$kind" "$i" >>"$WORK/t"; done
    row=$(for c in 1 2 3 4 5 6; do cut -d' ' -f$c "$WORK/t" | median; done | tr '\n' ' ')
    # shellcheck disable=SC2086
    printf '%-8s %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f\n' "$kind" $row
  done
done
