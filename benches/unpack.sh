#!/usr/bin/env bash
# benches/unpack.sh - unpack of each base fixture's OCI layer into rootsmith's in-memory tree,
# against `umoci unpack --rootless` (to a fresh directory on tmpfs) and against decompression
# alone (`zcat LAYER > /dev/null`) on the same gzip layer. Runs alternate (rootsmith, umoci,
# zcat, rootsmith, ...), RUNS times each (default 5); prints medians and ratios.
#
#   benches/unpack.sh [FIXTURE...]     default: every tarball in ../shared/fixtures/base
#   RUNS=7 ROOTSMITH=target/release/rootsmith benches/unpack.sh
#
# Goal (issue #4): rootsmith <= 1.2x decompression alone, and >= 3x faster than umoci.
# rootsmith's time includes process start, hashing the blob (digest check), decompressing,
# the diff_id hash and building the tree. Needs umoci (Debian package `umoci`), installed
# with apt-get when run as root.
#
# Measured 2026-11-23 on the shared 2-core CI-like host (load average 7-9 from parallel
# builds, so treat as rough), RUNS=5, release build, medians:
#   fixture                                  rootsmith   umoci    zcat   vs-zcat  umoci/rs
#   alpine-minirootfs-3.20.3-x86_64.tar.gz     0.118s   0.482s  0.127s   0.93x    4.08x
#   alpine-minirootfs-3.20.3-aarch64.tar.gz    0.134s   0.692s  0.159s   0.85x    5.15x
#   debian-bookworm-slim-amd64.rootfs.tar.xz   0.957s   4.790s  1.412s   0.68x    5.00x
#   debian-bookworm-amd64.rootfs.tar.xz        1.424s   9.334s  1.779s   0.80x    6.56x
#   ubuntu-noble-amd64.rootfs.tar.gz           0.917s   3.853s  1.117s   0.82x    4.20x
# (rootsmith decompresses on a second thread while the first builds the tree, which is how
# it beats a single-threaded zcat.)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=$here/../shared/fixtures
RUNS=${RUNS:-5}
ROOTSMITH=${ROOTSMITH:-}
if [ -z "$ROOTSMITH" ]; then
    (cd "$here" && cargo build --release --quiet)
    ROOTSMITH=${CARGO_TARGET_DIR:-$here/target}/release/rootsmith
fi
if ! command -v umoci >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends umoci >&2
    else
        echo "unpack.sh: umoci missing: sudo apt-get install -y umoci" >&2
        exit 1
    fi
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/rootsmith-bench.XXXXXX")
tmpfs=$(mktemp -d /dev/shm/rootsmith-bench.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$work" "$tmpfs"' EXIT

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

if [ $# -eq 0 ]; then set -- "$fixtures"/base/*.tar.*; fi
printf '%-44s %9s %9s %9s %8s %8s\n' fixture rootsmith umoci zcat vs-zcat umoci/rs
for f in "$@"; do
    name=$(basename "$f")
    lay=$work/${name%%.tar*}
    "$fixtures/registry.sh" layout "$f" "$lay" latest 2>/dev/null
    layer=$(find "$lay/blobs/sha256" -type f -size +100k | head -1)
    : >"$work/rs"; : >"$work/um"; : >"$work/zc"
    for _ in $(seq "$RUNS"); do
        t0=$(now); "$ROOTSMITH" pull --unpack -q "oci:$lay:latest" >/dev/null; t1=$(now)
        echo "$t1 - $t0" | bc -l >>"$work/rs"
        rm -rf "$tmpfs/u"; sync
        t0=$(now); umoci unpack --rootless --image "$lay:latest" "$tmpfs/u" >/dev/null 2>&1; t1=$(now)
        echo "$t1 - $t0" | bc -l >>"$work/um"
        rm -rf "$tmpfs/u"
        t0=$(now); zcat "$layer" >/dev/null; t1=$(now)
        echo "$t1 - $t0" | bc -l >>"$work/zc"
    done
    rs=$(median <"$work/rs"); um=$(median <"$work/um"); zc=$(median <"$work/zc")
    printf '%-44s %8.3fs %8.3fs %8.3fs %7.2fx %7.2fx\n' "$name" "$rs" "$um" "$zc" \
        "$(echo "$rs / $zc" | bc -l)" "$(echo "$um / $rs" | bc -l)"
done
