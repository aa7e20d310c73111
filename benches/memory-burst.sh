#!/usr/bin/env bash
# Memory under a burst of memory-hungry guests: `wisp up` with its default limits (128 MiB
# per instance, 256 instances, the default memory budget) serving the `memhog` guest, which
# allocates until its cap stops it. wrk keeps CONCURRENCY requests in flight for the burst;
# the script samples the server's resident memory and prints its baseline, its peak
# (VmHWM), and what it holds 2 s and 10 s after the burst and once it has been idle long
# enough to give memory back (MEMORY_BURST_IDLE seconds after the burst, default 45: the
# server releases after 30 s without work), with the budget the server reported. A healthy
# request is timed before, 10 s after, and after the idle release.
#
# Only Wisp is measured: `wasmtime serve` and a native server have no process-wide memory
# bound, and the same burst against them (200 × 128 MiB) could take this machine down.
# Usage: benches/memory-burst.sh [seconds (default 10)] ; MEMORY_BURST_CONCURRENCY=200,
# MEMORY_BURST_IDLE=45, MEMORY_BURST_WISP=<another wisp binary>
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
IDLE="${MEMORY_BURST_IDLE:-45}"
CONCURRENCY="${MEMORY_BURST_CONCURRENCY:-200}"
PORT=18381

. benches/common.sh
bench_tools
bench_build
# Another build to compare with: MEMORY_BURST_WISP=/tmp/wisp-old benches/memory-burst.sh
WISP="${MEMORY_BURST_WISP:-$WISP}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/spin.toml" <<EOF
spin_manifest_version = 2
[application]
name = "memory-burst"
[[trigger.http]]
route = "/hello"
component = "hello"
[[trigger.http]]
route = "/memhog"
component = "memhog"
[component.hello]
source = "$GUESTS/hello.wasm"
[component.memhog]
source = "$GUESTS/memhog.wasm"
EOF

WISP_LOG=warn "$WISP" up -f "$WORK/spin.toml" --listen 127.0.0.1:$PORT --cache-dir "$WORK/cache" 2>"$WORK/stderr" &
PID=$!
wait_for_200 "$PORT" /hello || { echo "wisp did not come up" >&2; exit 1; }
rss() { awk '/^VmRSS:/ {print int($2/1024)}' "/proc/$PID/status"; }
hwm() { awk '/^VmHWM:/ {print int($2/1024)}' "/proc/$PID/status"; }
hello_ms() { curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/hello" | awk '{printf "%.1f", $1*1000}'; }

budget=$(grep -o '[0-9]* MiB memory budget' "$WORK/stderr" | head -1)
baseline=$(rss)
before=$(hello_ms)
out=$(wrk -t2 -c"$CONCURRENCY" -d"${DURATION}s" --timeout 40s "http://127.0.0.1:$PORT/memhog" 2>&1 || true)
peak=$(hwm)
sleep 2
after2=$(rss)
sleep 8
after10=$(rss)
after=$(hello_ms)
sleep $((IDLE - 10))
after_idle=$(rss)
after_idle_ms=$(hello_ms)
statuses=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
requests=$(echo "$out" | awk '/requests in/ {print $1}')
printf '\nmemhog burst: %s requests in flight for %ss (%s; 128 MiB cap per instance)\n' "$CONCURRENCY" "$DURATION" "${budget:-budget unknown}"
printf '  requests answered: %s (non-2xx: %s; every memhog request fails on its cap or the budget)\n' "${requests:-0}" "${statuses:-0}"
printf '  resident memory: baseline %s MiB, peak %s MiB, %s MiB 2 s after, %s MiB 10 s after, %s MiB %s s after (idle)\n' "$baseline" "$peak" "$after2" "$after10" "$after_idle" "$IDLE"
printf '  /hello: %s ms before, %s ms 10 s after, %s ms after the idle release\n' "$before" "$after" "$after_idle_ms"
printf '  503 (budget) log lines: %s, 500 (own cap) log lines: %s\n' \
  "$(grep -c 'process memory budget' "$WORK/stderr" || true)" "$(grep -c 'exceeded its memory limit' "$WORK/stderr" || true)"
