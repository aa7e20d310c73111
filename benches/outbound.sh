#!/usr/bin/env bash
# Outbound-heavy load: every request to wisp makes one outbound HTTP call (the caps-v5
# guest's /http route, spin-sdk 5) to a native hyper server on loopback, and answers with
# what it got. Compares, in one run, wisp with outbound connection reuse (the default) and
# without it (--outbound-idle-connections 0), with the upstream alone as the ceiling. Each
# cell also counts the TCP connections opened on the machine during it (the kernel's
# ActiveOpens counter, less wrk's own), i.e. wisp's connections to the upstream.
#
# `wasmtime serve` is not in this table: the guest imports Spin's interfaces, which it does
# not provide.
# Usage: benches/outbound.sh [seconds-per-cell (default 5)]
# OUTBOUND_CONCURRENCY="1 16 64" chooses the concurrency levels.
# Everything listens on 127.0.0.1 only; every load run stops by itself after its duration.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-5}"
PORT=18191
UPSTREAM=18192

. benches/common.sh
bench_wrk
bench_build
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"; kill $(jobs -p) 2>/dev/null || true' EXIT

"$NATIVE" 127.0.0.1:$UPSTREAM 2>/dev/null &
UPSTREAM_PID=$!
wait_for_200 "$UPSTREAM" || { echo "the upstream did not come up" >&2; exit 1; }

cat >"$DIR/spin.toml" <<TOML
spin_manifest_version = 2
[application]
name = "outbound-bench"

[[trigger.http]]
route = "/..."
component = "caps"

[component.caps]
source = "$GUESTS/caps_v5.wasm"
allowed_outbound_hosts = ["http://127.0.0.1:$UPSTREAM"]
TOML
CALL="/http?url=http%3A%2F%2F127.0.0.1%3A$UPSTREAM%2F"

active_opens() { # TCP connections this machine has opened so far
  awk '/^Tcp:/ { if (!n) { for (i = 1; i <= NF; i++) if ($i == "ActiveOpens") col = i; n = 1 } else print $col }' /proc/net/snmp
}

declare -A RPS P50 P99 CONNS
read -r -a CONCURRENCY <<< "${OUTBOUND_CONCURRENCY:-1 16 64}"
KINDS=(reuse no-reuse upstream)
for kind in "${KINDS[@]}"; do
  case $kind in
    reuse) WISP_LOG=warn "$WISP" up -f "$DIR/spin.toml" --listen 127.0.0.1:$PORT --cache-dir "$DIR/cache" 2>/dev/null & ;;
    no-reuse) WISP_LOG=warn "$WISP" up -f "$DIR/spin.toml" --listen 127.0.0.1:$PORT --cache-dir "$DIR/cache" --outbound-idle-connections 0 2>/dev/null & ;;
  esac
  if [ "$kind" = upstream ]; then port=$UPSTREAM path=/; pid=""; else port=$PORT path=$CALL; pid=$!; fi
  wait_for_200 "$port" "$path" || { echo "$kind did not come up" >&2; exit 1; }
  if [ "$kind" != upstream ]; then
    answer="$(curl -fs "http://127.0.0.1:$port$path")"
    case "$answer" in "status 200"*) ;; *) echo "$kind: the guest's call failed: $answer" >&2; exit 1 ;; esac
  fi
  for c in "${CONCURRENCY[@]}"; do
    t=$(( c < 2 ? 1 : 2 ))
    wrk -t"$t" -c"$c" -d1s "http://127.0.0.1:$port$path" >/dev/null 2>&1 || true # warm-up
    before=$(active_opens)
    out=$(wrk -t"$t" -c"$c" -d"${DURATION}s" --latency "http://127.0.0.1:$port$path")
    if echo "$out" | grep -q "Non-2xx"; then echo "$kind c=$c had errors:"; echo "$out"; fi
    RPS[$kind,$c]=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
    P50[$kind,$c]=$(to_us "$(echo "$out" | awk '$1=="50%" {print $2}')")
    P99[$kind,$c]=$(to_us "$(echo "$out" | awk '$1=="99%" {print $2}')")
    CONNS[$kind,$c]=$(( $(active_opens) - before - c ))
  done
  if [ "$kind" != upstream ]; then
    answer="$(curl -fs "http://127.0.0.1:$port$path")"
    case "$answer" in "status 200"*) ;; *) echo "$kind: the guest's call failed after the load: $answer" >&2; exit 1 ;; esac
    kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  fi
done
kill -TERM "$UPSTREAM_PID" 2>/dev/null || true

printf '\n%-10s %4s %12s %10s %10s %18s\n' kind c req/s p50_us p99_us upstream_conns
for c in "${CONCURRENCY[@]}"; do for kind in "${KINDS[@]}"; do
  printf '%-10s %4s %12.0f %10.0f %10.0f %18s\n' "$kind" "$c" "${RPS[$kind,$c]}" "${P50[$kind,$c]}" "${P99[$kind,$c]}" "${CONNS[$kind,$c]}"
done; done
echo
echo "ratios (req/s)"
for c in "${CONCURRENCY[@]}"; do
  awk -v a="${RPS[reuse,$c]}" -v b="${RPS[no-reuse,$c]}" -v u="${RPS[upstream,$c]}" -v c="$c" \
    'BEGIN{ printf "  c=%s: reuse / no-reuse %.2fx, reuse / upstream alone %.2fx\n", c, a/b, a/u }'
done
