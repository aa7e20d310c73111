#!/usr/bin/env bash
# Server CPU per request of the hello guest: wisp, `wasmtime serve` 48.0.8 (defaults, and
# with keep-resident tuning) and the native hyper server, taking turns in each round, at
# each concurrency. CPU per request (user + system time of the server's process over the
# measured run, divided by the requests wrk counted) moves less with the load generator
# sharing the cores than requests/s does, so it shows what each server spends on a request.
# Prints one line per run, then each server's median over the rounds and its ratio to wisp.
#
# Usage: benches/cpu-per-request.sh [seconds-per-run (default 5)]
#   CPU_ROUNDS=3 CPU_CONCURRENCY="64 1"   (the defaults)
# Everything listens on 127.0.0.1 only; every load run stops by itself after its duration.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-5}"
PORT=18183

. benches/common.sh
bench_tools
bench_build
CACHE="$(mktemp -d)"
RESULTS="$CACHE/results"
trap 'rm -rf "$CACHE"; kill $(jobs -p) 2>/dev/null || true' EXIT
HELLO="$GUESTS/hello.wasm"
KINDS="wisp wasmtime wasmtime-keep native"

for C in ${CPU_CONCURRENCY:-64 1}; do
  for round in $(seq "${CPU_ROUNDS:-3}"); do
    for kind in $KINDS; do
      case $kind in
        wisp) out=$(measure_rps_cpu env WISP_LOG=warn "$WISP" up --from "$HELLO" \
          --listen 127.0.0.1:$PORT --cache-dir "$CACHE" --memory-limit-mb 128) ;;
        wasmtime) out=$(measure_rps_cpu "$WASMTIME" serve -Scli --addr 127.0.0.1:$PORT "$HELLO") ;;
        wasmtime-keep) out=$(measure_rps_cpu "$WASMTIME" serve -Scli \
          -O pooling-memory-keep-resident=16777216,pooling-table-keep-resident=1048576 \
          --addr 127.0.0.1:$PORT "$HELLO") ;;
        native) out=$(measure_rps_cpu "$NATIVE" 127.0.0.1:$PORT) ;;
      esac
      read -r rps cpu <<<"$out"
      printf 'c=%-3s round %s  %-14s %10s req/s  %8s µs of CPU per request\n' \
        "$C" "$round" "$kind" "$rps" "$cpu"
      echo "$C $kind $rps $cpu" >>"$RESULTS"
    done
  done
done

echo
echo "medians over the rounds (ratio: the server's CPU per request / wisp's; req/s: wisp / the server's)"
for C in ${CPU_CONCURRENCY:-64 1}; do
  median() { # kind field
    awk -v c="$C" -v k="$1" -v f="$2" '$1 == c && $2 == k {print $f}' "$RESULTS" | sort -n |
      awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
  }
  wisp_cpu=$(median wisp 4)
  wisp_rps=$(median wisp 3)
  for kind in $KINDS; do
    cpu=$(median "$kind" 4)
    rps=$(median "$kind" 3)
    awk -v c="$C" -v k="$kind" -v cpu="$cpu" -v rps="$rps" -v wc="$wisp_cpu" -v wr="$wisp_rps" \
      'BEGIN {printf "c=%-3s %-14s %8.1f µs per request (%.2fx wisp)  %10.0f req/s (wisp %.2fx)\n",
        c, k, cpu, cpu / wc, rps, wr / rps}'
  done
done
