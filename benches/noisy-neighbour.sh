#!/usr/bin/env bash
# Noisy neighbours: how much of a healthy route's throughput and latency survives while
# as many requests as there are cores spin in a busy loop on the same server. Wisp vs
# `wasmtime serve` 48.0.8 vs a native hyper server, in one run, on one component
# (`spin-loop`: `/loop…` spins, every other path answers `Hello from Wisp`; the native
# server's `/loop` spins for 30 s on its worker thread).
#
# Per server: wrk on `/` alone (baseline), then again while the looping requests run.
# Prints req/s and p99 of both, and their ratios (loaded / baseline). The issue's target
# for Wisp: req/s ratio >= 0.5 and p99 ratio <= 3.
# Usage: benches/noisy-neighbour.sh [seconds-per-run (default 10)]
# Subsets: NOISY_KINDS="wisp native" benches/noisy-neighbour.sh 5
# Everything listens on 127.0.0.1 only; every load run and looping client stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
PORT=18281
LOOPS="${NOISY_LOOPS:-$(nproc)}"

. benches/common.sh
bench_tools
bench_build
WASM="$GUESTS/spin_loop.wasm"
CACHE="$(mktemp -d)"
LOOPERS=()
cleanup() {
  for pid in "${LOOPERS[@]}"; do kill "$pid" 2>/dev/null || true; done
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$CACHE"
}
trap cleanup EXIT

start_server() { # kind -> SERVER_PID, waits for the first 200
  case $1 in
    wisp) WISP_LOG=warn "$WISP" up --from "$WASM" --listen 127.0.0.1:$PORT --cache-dir "$CACHE" 2>/dev/null & ;;
    wasmtime) "$WASMTIME" serve -Scli --addr 127.0.0.1:$PORT "$WASM" >/dev/null 2>&1 & ;;
    native) "$NATIVE" 127.0.0.1:$PORT 2>/dev/null & ;;
  esac
  SERVER_PID=$!
  wait_for_200 "$PORT" || { echo "server $1 did not come up" >&2; exit 1; }
}
stop_server() { kill -KILL "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

measure() { # -> "rps p99_us"
  local out
  out=$(wrk -t2 -c16 -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/" 2>&1 || true)
  echo "$(echo "$out" | awk '/^Requests\/sec/ {print $2}') $(to_us "$(echo "$out" | awk '$1=="99%" {print $2}')")"
}

declare -A BASE_RPS BASE_P99 LOAD_RPS LOAD_P99
read -r -a KINDS <<< "${NOISY_KINDS:-wisp wasmtime native}"
for kind in "${KINDS[@]}"; do
  start_server "$kind"
  wrk -t2 -c16 -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1 || true # warm-up
  read -r BASE_RPS[$kind] BASE_P99[$kind] <<< "$(measure)"
  LOOPERS=()
  for _ in $(seq 1 "$LOOPS"); do
    curl -s -o /dev/null -m $((DURATION + 5)) "http://127.0.0.1:$PORT/loop" &
    LOOPERS+=($!)
  done
  sleep 1
  read -r LOAD_RPS[$kind] LOAD_P99[$kind] <<< "$(measure)"
  for pid in "${LOOPERS[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_server
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
printf '\n%d looping requests on %d cores, wrk -t2 -c16 -d%ss on /\n' "$LOOPS" "$(nproc)" "$DURATION"
printf '%-9s %12s %12s %9s %12s %12s %9s\n' server base_req/s loop_req/s ratio base_p99_us loop_p99_us ratio
for kind in "${KINDS[@]}"; do
  printf '%-9s %12.0f %12.0f %9s %12.0f %12.0f %9s\n' "$kind" \
    "${BASE_RPS[$kind]:-0}" "${LOAD_RPS[$kind]:-0}" "$(ratio "${LOAD_RPS[$kind]:-0}" "${BASE_RPS[$kind]:-0}")" \
    "${BASE_P99[$kind]:-0}" "${LOAD_P99[$kind]:-0}" "$(ratio "${LOAD_P99[$kind]:-0}" "${BASE_P99[$kind]:-0}")"
done
