#!/usr/bin/env bash
# The node's noisy neighbour, small and repeatable: `wisp node` with two apps, a flooded one
# (FLOOD guest, touch4mib by default; hello floods with short requests) at c=256
# (`wrk -t2`) and a quiet one (hello) at c=1 (`wrk -t1 --latency`). Prints the quiet app's
# p99 alone and beside the flood, the flood's requests/s, and the node's CPU ticks during
# the flooded phase, for each binary: the release `wisp`, and with NOISY_WISP_BASELINE the
# given older binary too, alternating RUNS times (this machine's p99 swings between runs).
# benches/node.sh measures the same target inside its 10,000-app run.
# NOISY_FLOOD_NICE=19 runs the flood's load generator at that nice level: on this 2-core
# machine it shares the cores with the node, which clients of a real node would not.
# The node forwards a busy app's requests to its worker process (`docs/node.md`); for the
# node without one, pass a baseline that runs `WISP_NO_WORKER=true wisp "$@"`.
# NOISY_SPLIT=1 adds, to each run, the same two apps as two `wisp up` processes (the
# flood's in the idle scheduling class, `chrt --idle 0`, as a node's worker process for
# busy apps would be): what separate address spaces give the quiet app, for comparison.
# NOISY_SHARED=1 sends the quiet app's load beside the flood over a connection that first
# carries one quiet and 20 flood requests, as a load balancer's pooled connection to the
# node carries requests for many apps (benches/shared-connection.py: one Python client, so
# fewer requests per second than wrk; compare its runs with each other only).
# NOISY_SPARSE=GAP sends the quiet app one request every GAP seconds instead, each on a new
# connection (benches/sparse-requests.py), as a rarely used app is called: with a GAP above
# a second, each comes after a pause in the quiet app's traffic. Give it enough seconds for
# a few dozen requests (`NOISY_SPARSE=1.5 RUNS=1 benches/node-noisy.sh 45`); the p99 of
# fewer than 100 requests is their slowest.
# After the runs it prints each set-up's median ratio (the issue's target: 2x).
# Usage: [FLOOD=hello] [RUNS=3] [NOISY_WISP_BASELINE=/path/to/wisp] [NOISY_FLOOD_NICE=19] [NOISY_SPLIT=1] [NOISY_SHARED=1] [NOISY_SPARSE=GAP] benches/node-noisy.sh [seconds (5)]
# Loopback only; every load run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-5}"
RUNS="${RUNS:-3}"
FLOOD="${FLOOD:-touch4mib}"
FLOOD_NICE="${NOISY_FLOOD_NICE:-0}"
PORT=18591
ADMIN=18592
. benches/common.sh
bench_wrk
bench_build
WORK="$(mktemp -d)"
NODE_PID=""
trap '[ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null; kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

app() { # name guest
  mkdir -p "$WORK/$1"
  cp "$GUESTS/$2.wasm" "$WORK/$1/app.wasm"
  printf 'spin_manifest_version = 2\n[application]\nname = "%s"\n[[trigger.http]]\nroute = "/..."\ncomponent = "c"\n[component.c]\nsource = "app.wasm"\n' "$1" >"$WORK/$1/spin.toml"
}
app flood "$FLOOD"
app quiet hello
p99() { to_us "$(awk '$1=="99%" {print $2}')"; }
p50_of() { to_us "$(awk '$1=="50%" {print $2}' "$1")"; }
quiet_load() { # prime -> the quiet app's load for DURATION (NOISY_SHARED: `prime` flood requests first on its connection)
  if [ -n "${NOISY_SPARSE:-}" ]; then
    python3 benches/sparse-requests.py "127.0.0.1:$PORT" "$DURATION" "$NOISY_SPARSE" quiet.localhost
  elif [ -n "${NOISY_SHARED:-}" ]; then
    python3 benches/shared-connection.py "127.0.0.1:$PORT" "$DURATION" quiet.localhost flood.localhost "$1"
  else
    wrk -t1 -c1 -d"${DURATION}s" --latency -H 'Host: quiet.localhost' "http://127.0.0.1:$PORT/"
  fi
}
wrk_rps() { awk '/^Requests\/sec/ {print $2}'; }

node_ticks() { # the node's CPU ticks and its worker process's
  local total pid
  total=$(proc_cpu_ticks "$NODE_PID")
  for pid in $(pgrep -P "$NODE_PID" || true); do total=$((total + $(proc_cpu_ticks "$pid"))); done
  echo "$total"
}
worker_forwarded() { # requests the node forwarded to its worker process
  curl -fs -H "Authorization: Bearer $(cat "$1/admin-token")" "$WISP_NODE/v1/status" |
    sed -n 's/.*"forwarded_requests": *\([0-9]*\).*/\1/p'
}

one_run() { # wisp binary -> "quiet alone p99, flooded p99, flood req/s, node CPU ticks"
  local wisp=$1 state="$WORK/state.$RANDOM"
  export WISP_NODE="http://127.0.0.1:$ADMIN" WISP_STATE_DIR="$state" WISP_CACHE_DIR="$WORK/cache"
  WISP_LOG=warn "$wisp" node --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN \
    --state-dir "$state" >"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 500); do
    [ -f "$state/admin-token" ] && curl -fs -o /dev/null -H "Authorization: Bearer $(cat "$state/admin-token")" \
      "$WISP_NODE/v1/status" && break
    sleep 0.02
  done
  "$wisp" node deploy flood --from "$WORK/flood" >/dev/null 2>&1
  "$wisp" node deploy quiet --from "$WORK/quiet" >/dev/null 2>&1
  curl -fs -o /dev/null -H 'Host: quiet.localhost' "http://127.0.0.1:$PORT/"
  curl -fs -o /dev/null -H 'Host: flood.localhost' "http://127.0.0.1:$PORT/"
  local alone flooded ticks0 ticks1
  quiet_load 0 >"$WORK/quiet-alone.out"
  alone=$(p99 <"$WORK/quiet-alone.out")
  nice -n "$FLOOD_NICE" wrk -t2 -c256 -d$((DURATION + 2))s -H 'Host: flood.localhost' "http://127.0.0.1:$PORT/" >"$WORK/flood.wrk" 2>&1 &
  local flood_wrk=$!
  sleep 1
  ticks0=$(node_ticks)
  quiet_load 20 >"$WORK/quiet-flooded.out"
  flooded=$(p99 <"$WORK/quiet-flooded.out")
  ticks1=$(node_ticks)
  wait "$flood_wrk" || true
  local forwarded
  forwarded=$(worker_forwarded "$state")
  kill -TERM "$NODE_PID" 2>/dev/null || true
  wait "$NODE_PID" 2>/dev/null || true
  NODE_PID=""
  echo "quiet p99 alone ${alone} us, beside the flood ${flooded} us ($(awk -v a="$flooded" -v b="$alone" 'BEGIN{printf "%.2f", a/b}')x); p50 $(p50_of "$WORK/quiet-alone.out") / $(p50_of "$WORK/quiet-flooded.out") us; flood $(wrk_rps <"$WORK/flood.wrk") req/s; node CPU $((ticks1 - ticks0)) ticks in ${DURATION} s (worker included); ${forwarded:-no} requests forwarded to the worker"
}

split_run() { # wisp binary -> the same figures with each app in a `wisp up` of its own
  local wisp=$1 quiet_port=$((PORT + 2)) flood_port=$((PORT + 3)) quiet_pid flood_pid
  WISP_LOG=warn "$wisp" up -f "$WORK/quiet/spin.toml" --listen 127.0.0.1:$quiet_port \
    --state-dir "$WORK/split-quiet" --cache-dir "$WORK/cache" >"$WORK/quiet.log" 2>&1 &
  quiet_pid=$!
  WISP_LOG=warn chrt --idle 0 "$wisp" up -f "$WORK/flood/spin.toml" --listen 127.0.0.1:$flood_port \
    --state-dir "$WORK/split-flood" --cache-dir "$WORK/cache" >"$WORK/flood.log" 2>&1 &
  flood_pid=$!
  wait_for_200 $quiet_port && wait_for_200 $flood_port
  local alone flooded ticks0 ticks1
  alone=$(wrk -t1 -c1 -d"${DURATION}s" --latency "http://127.0.0.1:$quiet_port/" | p99)
  nice -n "$FLOOD_NICE" wrk -t2 -c256 -d$((DURATION + 2))s "http://127.0.0.1:$flood_port/" >"$WORK/flood.wrk" 2>&1 &
  local flood_wrk=$!
  sleep 1
  ticks0=$(( $(proc_cpu_ticks $quiet_pid) + $(proc_cpu_ticks $flood_pid) ))
  flooded=$(wrk -t1 -c1 -d"${DURATION}s" --latency "http://127.0.0.1:$quiet_port/" | p99)
  ticks1=$(( $(proc_cpu_ticks $quiet_pid) + $(proc_cpu_ticks $flood_pid) ))
  wait "$flood_wrk" || true
  kill -TERM $quiet_pid $flood_pid 2>/dev/null || true
  wait $quiet_pid $flood_pid 2>/dev/null || true
  echo "quiet p99 alone ${alone} us, beside the flood ${flooded} us ($(awk -v a="$flooded" -v b="$alone" 'BEGIN{printf "%.2f", a/b}')x); flood $(wrk_rps <"$WORK/flood.wrk") req/s; both processes' CPU $((ticks1 - ticks0)) ticks in ${DURATION} s"
}

echo "noisy neighbour in the node: flood $FLOOD at c=256 (its wrk at nice $FLOOD_NICE), quiet hello at c=1, ${DURATION} s each"
say() { echo "$1" | tee -a "$WORK/runs"; }
for run in $(seq 1 "$RUNS"); do
  [ -n "${NOISY_WISP_BASELINE:-}" ] && say "run $run baseline: $(one_run "$NOISY_WISP_BASELINE")"
  say "run $run wisp:     $(one_run "$WISP")"
  if [ -n "${NOISY_SPLIT:-}" ]; then say "run $run two processes: $(split_run "$WISP")"; fi
done
# One run's ratio swings with this machine's noise: the median over the runs, per set-up.
for setup in baseline wisp "two processes"; do
  grep "^run [0-9]* $setup:" "$WORK/runs" | sed 's/.*us (\([0-9.]*\)x).*/\1/' | sort -g |
    awk -v setup="$setup" '{r[NR] = $1} END {
      if (NR == 0) exit
      m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
      printf "median quiet p99 ratio, %s: %.2fx over %d runs\n", setup, m, NR
    }'
done
