#!/usr/bin/env bash
# Before/after for loading an app, on this noisy machine: this checkout's release `wisp`
# against an older `wisp` binary, taking turns so drift in the machine's speed hits both.
#   1. `wisp up --from hello.wasm`, warm compile cache: process start to the first 200
#      (`first-200`, ROUNDS starts each) and the resident memory then: median, quartiles;
#      `wasmtime serve` 48.0.8 (as `benches/rps.sh` starts it) and a native hyper hello in the same
#      turns, for the ratios.
#   2. `wisp node`: 100 hello apps deployed, the node restarted (every app idle, nothing
#      loaded), then the first request to each app (a load from the compile cache):
#      p50 and p90 per node, NODE_ROUNDS nodes each.
# Usage: benches/start-ab.sh OLD_WISP [rounds (40)]   (NODE_ROUNDS=3 by default)
# Build an older binary with e.g.
#   git worktree add /tmp/old <rev> && (cd /tmp/old && cargo build --release -p wisp-cli)
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD="${1:?usage: benches/start-ab.sh OLD_WISP [rounds]}"
ROUNDS="${2:-40}"
NODE_ROUNDS="${NODE_ROUNDS:-3}"
PORT=18493
ADMIN=18494
. benches/common.sh
bench_tools
bench_build
NEW="$WISP"
HELLO="$GUESTS/hello.wasm"
FIRST_200="$PWD/target/release/first-200"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
export WISP_CACHE_DIR="$WORK/cache"

quartiles() { # label < "ms rss_kib" lines
  sort -n | awk -v l="$1" '{t[NR]=$1; r[NR]=$2} END {
    n=asort(r, rs);
    printf "%-8s first 200: median %.2f ms (quartiles %.2f, %.2f); RSS median %d KiB\n",
      l, t[int((NR+1)/2)], t[int((NR+3)/4)], t[int((3*NR+1)/4)], rs[int((n+1)/2)] }'
}

up() { "$FIRST_200" 127.0.0.1:$PORT -- "$1" up --from "$HELLO" --listen 127.0.0.1:$PORT; }
wasmtime_serve() { "$FIRST_200" 127.0.0.1:$PORT -- "$WASMTIME" serve -Scli --addr 127.0.0.1:$PORT "$HELLO"; }
native() { "$FIRST_200" 127.0.0.1:$PORT -- "$NATIVE" 127.0.0.1:$PORT; }
up "$NEW" >/dev/null # compiles hello into the shared cache
up "$OLD" >/dev/null
wasmtime_serve >/dev/null
for _ in $(seq 1 "$ROUNDS"); do
  up "$NEW" >>"$WORK/up-new"
  up "$OLD" >>"$WORK/up-old"
  wasmtime_serve >>"$WORK/up-wasmtime"
  native >>"$WORK/up-native"
done
echo "start to first 200 of hello, warm caches, $ROUNDS starts each, taking turns:"
quartiles new <"$WORK/up-new"
quartiles old <"$WORK/up-old"
quartiles wasmtime <"$WORK/up-wasmtime"
quartiles native <"$WORK/up-native"
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
awk -v n="$(median "$WORK/up-new")" -v o="$(median "$WORK/up-old")" -v w="$(median "$WORK/up-wasmtime")" \
  'BEGIN { printf "medians: new/old %.3f, new/wasmtime %.3f, old/wasmtime %.3f\n", n/o, n/w, o/w }'

node_round() { # wisp label -> "p50 p90" in ms
  local state="$WORK/state-$2" pid
  rm -rf "$state"
  export WISP_NODE="http://127.0.0.1:$ADMIN" WISP_STATE_DIR="$state"
  start() {
    WISP_LOG=warn "$1" node --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$ADMIN/" && return; sleep 0.05; done
    echo "node did not start" >&2; exit 1
  }
  start "$1"
  for i in $(seq 1 100); do
    WISP_LOG=warn "$1" node deploy "app-$i" --from "$HELLO" >"$WORK/deploy.log" 2>&1 ||
      { cat "$WORK/deploy.log" >&2; exit 1; }
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  start "$1"
  sleep 0.5
  for i in $(seq 1 100); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Host: app-$i.localhost" "http://127.0.0.1:$PORT/"
  done | sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f\n", a[int(NR*0.5)]*1000, a[int(NR*0.9)]*1000}'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
# No peer hosts many apps in one process to compare with here.
echo "wisp node, first request to each of 100 idle hello apps (p50 p90 ms), $NODE_ROUNDS nodes each, taking turns:"
for round in $(seq 1 "$NODE_ROUNDS"); do
  echo "round $round: new $(node_round "$NEW" new), old $(node_round "$OLD" old)"
done
