#!/usr/bin/env bash
# Benchmarks `rootsmith images` against the shell pipeline SmolVM's ImageManager amounts to,
# on one real image (the debian-bookworm-amd64 fixture made into a SIZE ext4 by rootsmith mkfs),
# served by python3 -m http.server on 127.0.0.1, alternating runs, medians:
#   1. publish (zstd -19, multithreaded) vs `zstd -19 -T0` and `zstd -19` (the CLI default,
#      one thread) on the same rootfs.ext4: time and compressed size.
#   2. ensure cold from rootfs.ext4.zst (download + sha256 + decompress + rename) vs
#      `curl | tee >(sha256sum) | zstd -d > file`.
#   3. ensure cold from a plain rootfs.ext4 vs `curl -o file && sha256sum file`.
#   4. ensure warm (cached: re-hash, no download) vs `sha256sum rootfs.ext4`.
# Usage: benches/images.sh [RUNS]  (default 3; SIZE=512M; RS=path/to/rootsmith skips the
# release build; needs ../shared, python3, curl, zstd). Prints timings; asserts nothing but
# that the outputs agree.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SIZE=${SIZE:-512M}
BASE=../shared/fixtures/base
if [ -z "${RS:-}" ]; then
  cargo build --release -q
  RS=$PWD/target/release/rootsmith
fi
WORK=$(mktemp -d /var/tmp/rootsmith-images-bench.XXXXXX)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# timeit OUTFILE CMD...: appends elapsed seconds to OUTFILE
timeit() { local out=$1; shift; /usr/bin/time -f "%e" -o "$WORK/t" "$@" >/dev/null 2>&1; cat "$WORK/t" >> "$out"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}x' if b else 'n/a')" "$1" "$2"; }

mkdir -p "$WORK/cache/img" "$WORK/www"
"$RS" mkfs -q --from-tar "$BASE/debian-bookworm-amd64.rootfs.tar.xz" --size "$SIZE" "$WORK/cache/img/rootfs.ext4"
IMG=$WORK/cache/img/rootfs.ext4
SHA=$(sha256sum "$IMG" | cut -d' ' -f1)
echo "image: debian-bookworm-amd64 as ext4, $(($(stat -c %s "$IMG") >> 20)) MiB apparent, $(du -m "$IMG" | cut -f1) MiB allocated; $RUNS runs each"
echo "rootsmith: $RS"

echo
echo "== publish vs zstd CLI (level 19)"
: > "$WORK/p"; : > "$WORK/zt"; : > "$WORK/z1"
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/out"
  timeit "$WORK/p" "$RS" images --images-dir "$WORK/cache" publish -q img "$WORK/out"
  timeit "$WORK/zt" zstd -q -f -19 -T0 "$IMG" -o "$WORK/zt.zst"
  timeit "$WORK/z1" zstd -q -f -19 "$IMG" -o "$WORK/z1.zst"
done
zstd -dc "$WORK/out/rootfs.ext4.zst" | cmp - "$IMG"
(cd "$WORK/out" && sha256sum -c --quiet sha256)
p=$(median < "$WORK/p"); zt=$(median < "$WORK/zt"); z1=$(median < "$WORK/z1")
echo "rootsmith images publish (x$(nproc)): ${p}s  $(stat -c %s "$WORK/out/rootfs.ext4.zst") bytes"
echo "zstd -19 -T0:                  ${zt}s  $(stat -c %s "$WORK/zt.zst") bytes   ratio rootsmith/zstd-T0 time $(ratio "$p" "$zt")"
echo "zstd -19 (1 thread):           ${z1}s  $(stat -c %s "$WORK/z1.zst") bytes   ratio rootsmith/zstd time $(ratio "$p" "$z1")"

cp "$WORK/out/rootfs.ext4.zst" "$WORK/www/img-rootfs.ext4.zst"
cp "$IMG" "$WORK/www/img-rootfs.ext4"
ZSHA=$(sha256sum "$WORK/www/img-rootfs.ext4.zst" | cut -d' ' -f1)
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$WORK/www" > "$WORK/http.out" 2>/dev/null &
SERVER=$!
for _ in $(seq 50); do grep -q port "$WORK/http.out" && break; sleep 0.1; done
PORT=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$WORK/http.out")
URL=http://127.0.0.1:$PORT

echo
echo "== ensure cold from .zst vs curl | sha256sum + zstd -d"
: > "$WORK/e"; : > "$WORK/c"
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/c1"
  timeit "$WORK/e" "$RS" images --images-dir "$WORK/c1" ensure -q "$URL/img-rootfs.ext4.zst" --sha256 "$ZSHA"
  rm -f "$WORK/curl.ext4"
  timeit "$WORK/c" bash -c "curl -sf '$URL/img-rootfs.ext4.zst' | tee >(sha256sum > '$WORK/curl.sha') | zstd -dq > '$WORK/curl.ext4'"
done
cmp "$WORK/c1/img/rootfs.ext4" "$IMG"
e=$(median < "$WORK/e"); c=$(median < "$WORK/c")
echo "rootsmith images ensure: ${e}s (disk $(du -m "$WORK/c1/img/rootfs.ext4" | cut -f1) MiB)"
echo "curl | zstd -d:          ${c}s (disk $(du -m "$WORK/curl.ext4" | cut -f1) MiB)   ratio $(ratio "$e" "$c")"

echo
echo "== ensure cold from plain .ext4 vs curl -o + sha256sum"
: > "$WORK/e"; : > "$WORK/c"
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/c2"
  timeit "$WORK/e" "$RS" images --images-dir "$WORK/c2" ensure -q "$URL/img-rootfs.ext4" --sha256 "$SHA"
  rm -f "$WORK/curl.ext4"
  timeit "$WORK/c" bash -c "curl -sf -o '$WORK/curl.ext4' '$URL/img-rootfs.ext4' && sha256sum '$WORK/curl.ext4'"
done
e=$(median < "$WORK/e"); c=$(median < "$WORK/c")
echo "rootsmith images ensure: ${e}s"
echo "curl -o + sha256sum:     ${c}s   ratio $(ratio "$e" "$c")"

echo
echo "== ensure warm (cached, verified again) vs sha256sum"
: > "$WORK/e"; : > "$WORK/c"
for i in $(seq "$RUNS"); do
  timeit "$WORK/e" "$RS" images --images-dir "$WORK/c1" ensure -q "$URL/img-rootfs.ext4.zst" --sha256 "$ZSHA"
  timeit "$WORK/c" sha256sum "$WORK/c1/img/rootfs.ext4"
done
e=$(median < "$WORK/e"); c=$(median < "$WORK/c")
echo "rootsmith images ensure (warm): ${e}s"
echo "sha256sum rootfs.ext4:          ${c}s   ratio $(ratio "$e" "$c")"
