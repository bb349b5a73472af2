#!/usr/bin/env bash
# Benchmarks `rootsmith mkfs` against the incumbents on the same input, alternating runs:
#   1. --from-dir vs `mke2fs -t ext4 -d DIR` (Debian's e2fsprogs) on the extracted
#      debian-bookworm-amd64 fixture, same image size: medians, ratio, peak RSS.
#   2. --from-tar on each base fixture vs decompression alone (xzcat/zcat > /dev/null).
#   3. With BIG=1: peak RSS of --from-dir on a generated ~5 GiB tree.
# Usage: benches/mkfs.sh [RUNS]   (default 5; run as root so owners extract; needs ../shared)
# Prints timings only; nothing here asserts them.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BASE=../shared/fixtures/base
cargo build --release -q
RS=$PWD/target/release/rootsmith
WORK=$(mktemp -d /var/tmp/rootsmith-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# timeit OUTFILE CMD...: appends "seconds maxrss_kb" to OUTFILE
timeit() { local out=$1; shift; /usr/bin/time -f "%e %M" -o "$WORK/t" "$@" >/dev/null 2>&1; cat "$WORK/t" >> "$out"; }

echo "== mkfs --from-dir vs mke2fs -d (debian-bookworm-amd64, $RUNS runs each, alternating)"
mkdir "$WORK/tree"
tar --xattrs --xattrs-include='*' --numeric-owner -xpf "$BASE/debian-bookworm-amd64.rootfs.tar.xz" -C "$WORK/tree"
size=$("$RS" mkfs --from-dir "$WORK/tree" --json "$WORK/probe.ext4" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')
echo "image size: $((size >> 20)) MiB"
: > "$WORK/rs"; : > "$WORK/mk"
for i in $(seq "$RUNS"); do
  rm -f "$WORK/a.ext4" "$WORK/b.ext4"
  timeit "$WORK/mk" mke2fs -q -F -t ext4 -d "$WORK/tree" "$WORK/b.ext4" "$((size / 1024))k"
  timeit "$WORK/rs" "$RS" mkfs -q --from-dir "$WORK/tree" --size "$((size / 1024))k" "$WORK/a.ext4"
done
e2fsck -fn "$WORK/a.ext4" >/dev/null && e2fsck -fn "$WORK/b.ext4" >/dev/null
rs=$(cut -d' ' -f1 "$WORK/rs" | median); mk=$(cut -d' ' -f1 "$WORK/mk" | median)
rss_rs=$(cut -d' ' -f2 "$WORK/rs" | sort -n | tail -1); rss_mk=$(cut -d' ' -f2 "$WORK/mk" | sort -n | tail -1)
echo "mke2fs -d:            median ${mk}s  peak RSS $((rss_mk / 1024)) MiB"
echo "rootsmith --from-dir: median ${rs}s  peak RSS $((rss_rs / 1024)) MiB"
python3 -c "print(f'ratio: rootsmith is {$mk/$rs:.2f}x faster than mke2fs -d')"

echo
echo "== mkfs --from-tar vs decompression alone ($RUNS runs each, alternating)"
for f in "$BASE"/*.tar.*; do
  case "$f" in *.xz) dec=xzcat ;; *.gz) dec=zcat ;; *.zst) dec=zstdcat ;; *) dec=cat ;; esac
  : > "$WORK/rs"; : > "$WORK/dc"
  for i in $(seq "$RUNS"); do
    timeit "$WORK/dc" sh -c "$dec '$f' > /dev/null"
    rm -f "$WORK/c.ext4"
    timeit "$WORK/rs" "$RS" mkfs -q --from-tar "$f" "$WORK/c.ext4"
  done
  rs=$(cut -d' ' -f1 "$WORK/rs" | median); dc=$(cut -d' ' -f1 "$WORK/dc" | median)
  rss=$(cut -d' ' -f2 "$WORK/rs" | sort -n | tail -1)
  python3 -c "print(f'$(basename "$f"): {\"$dec\"} {$dc}s, rootsmith {$rs}s, ratio {$rs/$dc:.2f}x, peak RSS {$rss//1024} MiB')"
done

if [ "${BIG:-0}" = 1 ]; then
  echo
  echo "== peak RSS on a ~5 GiB tree (BIG=1)"
  mkdir -p "$WORK/big"
  python3 - "$WORK/big" <<'PY'
import os, sys
root = sys.argv[1]
block = os.urandom(1 << 20)
for d in range(50):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    with open(f"{root}/d{d}/large", "wb") as f:
        for i in range(96):
            f.write(block[i:] + block[:i])
    for i in range(2000):
        with open(f"{root}/d{d}/small{i}", "wb") as f:
            f.write(block[:(i * 37) % 20000])
PY
  du -sh "$WORK/big"
  : > "$WORK/rs"
  timeit "$WORK/rs" "$RS" mkfs -q --from-dir "$WORK/big" "$WORK/big.ext4"
  read -r secs rss < "$WORK/rs"
  echo "rootsmith --from-dir 5 GiB tree: ${secs}s, peak RSS $((rss / 1024)) MiB"
  e2fsck -fn "$WORK/big.ext4" >/dev/null && echo "e2fsck -fn: clean"
fi
