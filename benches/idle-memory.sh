#!/usr/bin/env bash
# What an idle `wisp up` keeps resident, and what the first request after an idle stretch
# pays: the release `wisp up --from hello.wasm` (warm compile cache, `WISP_LOG=warn`) is
# started STARTS times; each time: one request, 1 s, two timed requests, IDLE_SECONDS of
# nothing (`wisp up` unmaps its binary's read-only pages and trims its heap once it has
# been idle 5 s after its start, and after 30 s idle later on; checked every second),
# then two more timed requests. Prints the RSS serving, after
# the idle wait and after the two requests (`/proc/PID/status`), each request's time
# (curl's total, a new connection each), and the CPU the idle process used during the wait
# (all its threads' `/proc/PID/task/*/schedstat`, in µs per second).
# Usage: benches/idle-memory.sh [starts (3)] [idle seconds (40)]. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
STARTS="${1:-3}"
IDLE_SECONDS="${2:-40}"
PORT=18761
. benches/common.sh
bench_build
CACHE="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$CACHE"' EXIT

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
# CPU time of all of a process's threads so far, in ns.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{t += $1} END {print t}'; }
request_ms() {
  curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/" | awk '{printf "%.2f", $1 * 1000}'
}

# Fills the compile cache, so every measured start loads the compiled code.
WISP_LOG=warn "$WISP" up --from "$GUESTS/hello.wasm" --listen 127.0.0.1:$PORT --cache-dir "$CACHE" >/dev/null 2>&1 &
wait_for_200 $PORT
kill $! && wait $! 2>/dev/null || true

for start in $(seq 1 "$STARTS"); do
  WISP_LOG=warn "$WISP" up --from "$GUESTS/hello.wasm" --listen 127.0.0.1:$PORT --cache-dir "$CACHE" >/dev/null 2>&1 &
  pid=$!
  wait_for_200 $PORT
  sleep 1
  before="$(request_ms) $(request_ms)"
  serving=$(rss_mib $pid)
  cpu_before=$(cpu_ns $pid)
  sleep "$IDLE_SECONDS"
  idle_cpu=$(( ($(cpu_ns $pid) - cpu_before) / 1000 / IDLE_SECONDS ))
  idle=$(rss_mib $pid)
  after="$(request_ms) $(request_ms)"
  echo "start $start: RSS serving $serving MiB, after ${IDLE_SECONDS} s idle $idle MiB, after two more requests $(rss_mib $pid) MiB; requests before the wait ${before// / and } ms, after it ${after// / and } ms; CPU while idle ${idle_cpu} µs/s"
  kill $pid && wait $pid 2>/dev/null || true
done
