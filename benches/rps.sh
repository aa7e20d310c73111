#!/usr/bin/env bash
# Load benchmark: wisp vs `wasmtime serve` 48.0.8 (defaults, and with keep-resident tuning)
# vs a native hyper server, in one run on this machine, on the hello guest and on a guest
# that allocates and touches 4 MiB per request. Prints req/s, p50, p99 per cell, ratios,
# start-to-first-200 times and idle RSS.
#
# wasmtime serve runs with -Scli: Rust guests import wasi:cli (environment), which plain
# `wasmtime serve` does not link; nothing else is changed from its defaults.
# Usage: benches/rps.sh [seconds-per-cell (default 5)]
# Subsets for quick comparisons: RPS_KINDS="wisp wasmtime-keep" RPS_GUESTS=hello
# (kind `wisp-log` is wisp with its default request log on, to measure the log's cost)
# RPS_CONCURRENCY=64 RPS_RATIOS=0 RPS_STARTUP=0 benches/rps.sh 3
# Before/after: RPS_WISP_BASELINE=/path/to/an/older/wisp adds kind `wisp-base` (that binary
# with the same flags, in the load runs and the start-up table), e.g.
# RPS_KINDS="wisp wisp-base wasmtime" to compare in one run.
# Servers are stopped with SIGTERM (background jobs of a script ignore SIGINT).
# Everything listens on 127.0.0.1 only; every load run stops by itself after its duration.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-5}"
ROOT="$PWD"
PORT=18181

. benches/common.sh
bench_tools
bench_build
CACHE="$(mktemp -d)"
trap 'rm -rf "$CACHE"; kill $(jobs -p) 2>/dev/null || true' EXIT

start_server() { # kind guest -> sets SERVER_PID; waits for the first 200
  local kind=$1 guest=$2 wasm="$GUESTS/$2.wasm"
  case $kind in
    wisp) WISP_LOG=warn "$WISP" up --from "$wasm" --listen 127.0.0.1:$PORT --cache-dir "$CACHE" --memory-limit-mb 128 2>/dev/null & ;;
    wisp-base) WISP_LOG=warn "${RPS_WISP_BASELINE:?set RPS_WISP_BASELINE to a wisp binary}" up --from "$wasm" --listen 127.0.0.1:$PORT --cache-dir "$CACHE" --memory-limit-mb 128 2>/dev/null & ;;
    # wisp with its default one-line request log (written to a file, as a service's log would be).
    wisp-log) "$WISP" up --from "$wasm" --listen 127.0.0.1:$PORT --cache-dir "$CACHE" --memory-limit-mb 128 2>"$CACHE/requests.log" & ;;
    wasmtime) "$WASMTIME" serve -Scli --addr 127.0.0.1:$PORT "$wasm" >/dev/null 2>&1 & ;;
    wasmtime-keep) "$WASMTIME" serve -Scli -O pooling-memory-keep-resident=16777216,pooling-table-keep-resident=1048576 --addr 127.0.0.1:$PORT "$wasm" >/dev/null 2>&1 & ;;
    native) if [ "$guest" = touch4mib ]; then "$NATIVE" 127.0.0.1:$PORT --touch4mib 2>/dev/null & else "$NATIVE" 127.0.0.1:$PORT 2>/dev/null & fi ;;
  esac
  SERVER_PID=$!
  wait_for_200 "$PORT" || { echo "server $kind did not come up" >&2; exit 1; }
}
stop_server() { kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

declare -A RPS P50 P99
read -r -a KINDS <<< "${RPS_KINDS:-wisp wasmtime wasmtime-keep native}"
read -r -a GUEST_NAMES <<< "${RPS_GUESTS:-hello touch4mib}"
read -r -a CONCURRENCY <<< "${RPS_CONCURRENCY:-1 16 64}"
for guest in "${GUEST_NAMES[@]}"; do
  for kind in "${KINDS[@]}"; do
    start_server "$kind" "$guest"
    for c in "${CONCURRENCY[@]}"; do
      t=$(( c < 2 ? 1 : 2 ))
      wrk -t"$t" -c"$c" -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1 || true # warm-up
      out=$(wrk -t"$t" -c"$c" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/")
      if echo "$out" | grep -q "Non-2xx"; then echo "$kind/$guest c=$c had errors:"; echo "$out"; fi
      RPS[$kind,$guest,$c]=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
      P50[$kind,$guest,$c]=$(to_us "$(echo "$out" | awk '$1=="50%" {print $2}')")
      P99[$kind,$guest,$c]=$(to_us "$(echo "$out" | awk '$1=="99%" {print $2}')")
    done
    stop_server
  done
done

printf '\n%-14s %-10s %4s %12s %10s %10s\n' server guest c req/s p50_us p99_us
for guest in "${GUEST_NAMES[@]}"; do for c in "${CONCURRENCY[@]}"; do for kind in "${KINDS[@]}"; do
  printf '%-14s %-10s %4s %12.0f %10.0f %10.0f\n' "$kind" "$guest" "$c" "${RPS[$kind,$guest,$c]}" "${P50[$kind,$guest,$c]}" "${P99[$kind,$guest,$c]}"
done; done; done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
echo
echo "ratios (req/s, wisp / other; >1 means wisp is faster)"
[ "${RPS_RATIOS:-1}" = 1 ] && for guest in "${GUEST_NAMES[@]}"; do for c in "${CONCURRENCY[@]}"; do
  w=${RPS[wisp,$guest,$c]}
  echo "  $guest c=$c: vs wasmtime $(ratio "$w" "${RPS[wasmtime,$guest,$c]:-0}")x, vs wasmtime keep-resident $(ratio "$w" "${RPS[wasmtime-keep,$guest,$c]:-0}")x, vs native $(ratio "$w" "${RPS[native,$guest,$c]:-0}")x, vs wisp-base $(ratio "$w" "${RPS[wisp-base,$guest,$c]:-0}")x"
done; done
[ "${RPS_RATIOS:-1}" = 1 ] && [ -n "${P50[wisp,hello,1]:-}" ] && echo "  hello c=1 p50: wisp ${P50[wisp,hello,1]}us, native ${P50[native,hello,1]}us (difference $(awk -v a="${P50[wisp,hello,1]}" -v b="${P50[native,hello,1]}" 'BEGIN{printf "%.0f", a-b}')us)"

[ "${RPS_STARTUP:-1}" = 1 ] || exit 0
echo
echo "start to first 200 (median of 10, compile cache warm) and idle RSS after the first request"
FIRST_200="$ROOT/target/release/first-200"
STARTUP_KINDS=(wisp)
[ -n "${RPS_WISP_BASELINE:-}" ] && STARTUP_KINDS+=(wisp-base)
for kind in "${STARTUP_KINDS[@]}" wasmtime native; do
  case $kind in
    wisp) cmd=(env WISP_LOG=warn "$WISP" up --from "$GUESTS/hello.wasm" --listen 127.0.0.1:$PORT --cache-dir "$CACHE") ;;
    wisp-base) cmd=(env WISP_LOG=warn "$RPS_WISP_BASELINE" up --from "$GUESTS/hello.wasm" --listen 127.0.0.1:$PORT --cache-dir "$CACHE") ;;
    wasmtime) cmd=("$WASMTIME" serve -Scli --addr 127.0.0.1:$PORT "$GUESTS/hello.wasm") ;;
    native) cmd=("$NATIVE" 127.0.0.1:$PORT) ;;
  esac
  "$FIRST_200" 127.0.0.1:$PORT -- "${cmd[@]}" >/dev/null # warm caches
  runs=()
  for _ in $(seq 1 10); do runs+=("$("$FIRST_200" 127.0.0.1:$PORT -- "${cmd[@]}")"); done
  median=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n 5p)
  printf '  %-9s first 200 after %6.2f ms   idle RSS %6.1f MiB\n' "$kind" "${median% *}" "$(awk -v k="${median#* }" 'BEGIN{print k/1024}')"
done
