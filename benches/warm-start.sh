#!/usr/bin/env bash
# Warm start of real apps: process start → first 200, with the compile cache already
# filled by an earlier start, for each app directory given (a built Spin app, e.g. made by
# `wisp new http-js js-app --accept-defaults && (cd js-app && wisp build)`; see
# benches/new-to-first-response.sh for the toolchains). Servers compared in one run:
#   wisp       the release build of this checkout (`wisp up -f <dir>/spin.toml`),
#   wisp-base  another wisp binary, when WISP_BASELINE=/path/to/wisp is set,
#   wasmtime   `wasmtime serve -Scli` 48.0.8 with its own compile cache on, serving the
#              app's first component ("n/a" when it cannot: Spin imports),
# and a native hyper server (`native-hello`) as the floor. Prints, per app and server, the
# median of RUNS starts (first-200 polls GET / every 100 µs) and the resident memory after
# the first response, then wisp's ratios.
# Usage: benches/warm-start.sh APP_DIR... ; RUNS=10 by default.
# Everything listens on 127.0.0.1 only; each server is stopped after its first 200.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: benches/warm-start.sh APP_DIR..." >&2; exit 2; }
RUNS="${RUNS:-10}"
PORT=18741
. benches/common.sh
bench_tools
bench_build
FIRST_200="$PWD/target/release/first-200"
CACHES="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$CACHES"' EXIT

# Median "ms rss_kib" of RUNS starts of command..., after one start that fills its caches;
# "n/a" when the command never answers 200, or when any counted start fails (said on
# stderr): a failed start must not pull the median down.
median_start() {
  if ! timeout 300 "$FIRST_200" 127.0.0.1:$PORT -- "$@" >/dev/null 2>&1; then
    echo "n/a"
    return
  fi
  local runs=() out
  for _ in $(seq 1 "$RUNS"); do
    if ! out=$(timeout 60 "$FIRST_200" 127.0.0.1:$PORT -- "$@" 2>/dev/null) ||
        ! [[ $out =~ ^[0-9.]+\ [0-9]+$ ]]; then
      echo "a start of $1 failed (${out:-no output}); not reporting a median" >&2
      echo "n/a"
      return
    fi
    runs+=("$out")
  done
  # The middle run (the upper of the two middle ones for an even count).
  printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(( RUNS / 2 + 1 ))p"
}

show() { # name "ms kib"|n/a
  if [ "$2" = n/a ]; then printf '  %-10s n/a\n' "$1"; return; fi
  printf '  %-10s first 200 after %8.2f ms   RSS %7.1f MiB\n' "$1" "${2% *}" "$(awk -v k="${2#* }" 'BEGIN{print k/1024}')"
}

ratio() { awk -v a="${1% *}" -v b="${2% *}" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

native=$(median_start "$NATIVE" 127.0.0.1:$PORT)
echo "native hello (the floor):"
show native "$native"
for dir in "$@"; do
  dir="$(realpath "$dir")"
  name="$(basename "$dir")"
  source="$(sed -nE 's/^source = "(.*)"$/\1/p' "$dir/spin.toml" | head -1)"
  size=$(stat -c %s "$dir/$source" 2>/dev/null || echo 0)
  echo "$name ($source, $(awk -v s="$size" 'BEGIN{printf "%.1f", s/1048576}') MiB of wasm):"
  wisp=$(cd "$dir" && WISP_LOG=warn median_start "$WISP" up -f spin.toml --listen 127.0.0.1:$PORT --cache-dir "$CACHES/$name-wisp")
  show wisp "$wisp"
  base=n/a
  if [ -n "${WISP_BASELINE:-}" ]; then
    base=$(cd "$dir" && WISP_LOG=warn median_start "$WISP_BASELINE" up -f spin.toml --listen 127.0.0.1:$PORT --cache-dir "$CACHES/$name-base")
    show wisp-base "$base"
  fi
  wasmtime=$(cd "$dir" && median_start "$WASMTIME" serve -Scli --addr 127.0.0.1:$PORT "$source")
  show wasmtime "$wasmtime"
  line="  ratios (time): "
  [ "$base" != n/a ] && [ "$wisp" != n/a ] && line+="wisp / wisp-base $(ratio "$wisp" "$base")  "
  [ "$wasmtime" != n/a ] && [ "$wisp" != n/a ] && line+="wisp / wasmtime $(ratio "$wisp" "$wasmtime")  "
  [ "$wisp" != n/a ] && line+="wisp / native $(ratio "$wisp" "$native")"
  echo "$line"
done
