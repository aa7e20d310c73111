#!/usr/bin/env bash
# Before/after on this noisy machine: this checkout's release `wisp`, an older `wisp`
# binary and `wasmtime serve` 48.0.8, each serving the same guest, measured in turn for
# ROUNDS rounds (wrk, 1 s warm-up then SECONDS s), so drift in the machine's speed hits all
# three alike. Prints req/s per round, the means, and the ratios new/old, new/wasmtime and
# old/wasmtime.
# Usage: benches/ab.sh OLD_WISP [rounds (5)] [concurrency (16)] [guest (hello)] [seconds (4)]
# Build an older binary with e.g.
#   git worktree add /tmp/old <rev> && (cd /tmp/old && cargo build --release -p wisp-cli)
# Everything listens on 127.0.0.1 only; every load run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD="${1:?usage: benches/ab.sh OLD_WISP [rounds] [concurrency] [guest] [seconds]}"
ROUNDS="${2:-5}"
C="${3:-16}"
GUEST="${4:-hello}"
SECONDS_PER_RUN="${5:-4}"
PORT=18611
. benches/common.sh
bench_tools
bench_build
NEW="$WISP"
WASM="$GUESTS/$GUEST.wasm"
CACHE="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$CACHE"' EXIT

sum_new=0; sum_old=0; sum_wt=0
for round in $(seq 1 "$ROUNDS"); do
  new=$(WISP_LOG=warn measure_rps "$NEW" up --from "$WASM" --listen 127.0.0.1:$PORT --cache-dir "$CACHE")
  old=$(WISP_LOG=warn measure_rps "$OLD" up --from "$WASM" --listen 127.0.0.1:$PORT --cache-dir "$CACHE")
  wt=$(measure_rps wasmtime serve -Scli --addr 127.0.0.1:$PORT "$WASM")
  printf 'round %d: new %s  old %s  wasmtime %s req/s\n' "$round" "$new" "$old" "$wt"
  sum_new=$(awk -v a="$sum_new" -v b="$new" 'BEGIN{print a+b}')
  sum_old=$(awk -v a="$sum_old" -v b="$old" 'BEGIN{print a+b}')
  sum_wt=$(awk -v a="$sum_wt" -v b="$wt" 'BEGIN{print a+b}')
done
awk -v n="$sum_new" -v o="$sum_old" -v w="$sum_wt" -v r="$ROUNDS" -v g="$GUEST" -v c="$C" 'BEGIN{
  printf "%s c=%s, mean of %d rounds: new %.0f, old %.0f, wasmtime %.0f req/s\n", g, c, r, n/r, o/r, w/r;
  printf "ratios: new/old %.3f, new/wasmtime %.3f, old/wasmtime %.3f\n", n/o, n/w, o/w }'
