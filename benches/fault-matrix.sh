#!/usr/bin/env bash
# The guest fault matrix on the release build: how a healthy route fares while a fault runs
# on the same server. One component (`faults`: `/loop`, `/memory`, `/recursion`, `/huge`,
# `/dribble`, `/no-read`, `/write-forever` misbehave, every other path answers
# `Hello from faults`), served by Wisp and by `wasmtime serve` 48.0.8 with the same limits
# (2 s deadline, 64 MiB of linear memory); a native hyper server's hello gives the
# reference latency of the machine in the same run.
#
# Per server and fault: a fresh server, wrk -c8 on `/hello` alone (baseline), then again
# while two clients repeat the fault (the `control` row: the healthy route instead, to
# show what the clients themselves cost the machine). Prints the healthy route's p99 next to the fault as a
# ratio to its baseline, its failed requests (non-2xx and socket errors), and for Wisp the
# resident memory a second after the fault stopped. The issue's target for Wisp: p99 ratio
# <= 2 and 0 failed.
# Rounds: FAULT_ROUNDS=N (default 3) measures the baseline and the fault phase N times in turn
# on the same server and reports the median of the N ratios, with each round's ratio: one
# pair of 5 s phases on this noisy machine is a lottery (baselines alone moved from 1.5 to
# 17 ms between runs), and alternating rounds put the same noise on both sides.
# Wisp's resident memory is read after the warm-up, a second after the last fault phase,
# and FAULT_IDLE_WAIT seconds later (default 35; 0 skips it): the server gives back what
# its instance pool kept after 30 s without work.
# Usage: benches/fault-matrix.sh [seconds-per-phase (default 5)]
# Subsets: FAULT_KINDS="wisp" FAULTS="loop huge" benches/fault-matrix.sh 3
# Before/after: FAULT_WISP_BASELINE=/tmp/wisp-old FAULT_KINDS="wisp wisp-baseline" ... runs
# another `wisp` binary as the kind `wisp-baseline`, each fault on both in turn.
# Everything listens on 127.0.0.1 only; every load run and fault client stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-5}"
PORT=18291

. benches/common.sh
bench_tools
bench_build
WASM="$GUESTS/faults.wasm"
CACHE="$(mktemp -d)"
BODY="$CACHE/body-4mib"
head -c $((4 << 20)) /dev/zero | tr '\0' b > "$BODY"
FAULTERS=()
stop_faulters() { # the fault loops and the curl each may be running
  for pid in "${FAULTERS[@]}"; do pkill -P "$pid" 2>/dev/null || true; { kill "$pid" && wait "$pid"; } 2>/dev/null || true; done
  FAULTERS=()
}
cleanup() {
  stop_faulters
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$CACHE"
}
trap cleanup EXIT

start_server() { # kind -> SERVER_PID, waits for the first 200
  case $1 in
    wisp|wisp-baseline)
      local bin="$WISP"
      [ "$1" = wisp-baseline ] && bin="${FAULT_WISP_BASELINE:?set FAULT_WISP_BASELINE to a wisp binary}"
      WISP_LOG=error "$bin" up --from "$WASM" --listen 127.0.0.1:$PORT --cache-dir "$CACHE" \
        --request-timeout 2 --memory-limit-mb 64 >/dev/null 2>&1 & ;;
    wasmtime) "$WASMTIME" serve -Scli --addr 127.0.0.1:$PORT -W timeout=2s \
                -W max-memory-size=$((64 << 20)) "$WASM" >/dev/null 2>&1 & ;;
    native) "$NATIVE" 127.0.0.1:$PORT 2>/dev/null & ;;
  esac
  SERVER_PID=$!
  wait_for_200 "$PORT" /hello || { echo "server $1 did not come up" >&2; exit 1; }
}
stop_server() { kill -KILL "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

measure() { # -> "p99_us failed requests" ("-" for a figure wrk did not print)
  local out non2xx socket p99 count
  out=$(wrk -t2 -c8 -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/hello" 2>&1 || true)
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  socket=$(echo "$out" | awk -F'[ ,]+' '/Socket errors/ {print $5 + $7 + $9 + $11}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  count=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$([ -n "$p99" ] && to_us "$p99" || echo -) $(( ${non2xx:-0} + ${socket:-0} )) ${count:--}"
}

fault_client() { # fault -> some attempts, discarding the answers
  local url="http://127.0.0.1:$PORT" n="attempt=[1-200]"
  # Many attempts per curl process (curl's URL globbing; its -m bounds each attempt): a
  # process per attempt cost the two cores more than a quick fault (recursion) costs the
  # server, and what is measured is the server.
  case $1 in
    # The control: the same two clients on the healthy route, to tell what the clients
    # cost the machine from what the faults cost the server.
    control) curl -s -o /dev/null -m 5 "$url/hello?$n" ;;
    loop|memory|recursion) curl -s -o /dev/null -m 5 "$url/$1?$n" ;;
    huge) curl -s -o /dev/null -m 10 "$url/huge?mib=64&$n" ;;
    dribble) curl -s -o /dev/null -m 3 "$url/dribble?$n" ;;
    no-read) curl -s -o /dev/null -m 5 --data-binary @"$BODY" "$url/no-read?$n" ;;
    # A client that leaves mid-response while the guest keeps writing.
    write-forever) curl -s -o /dev/null -m 0.2 "$url/write-forever?$n" ;;
  esac
}

rss_mib() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

read -r -a KINDS <<< "${FAULT_KINDS:-wisp wasmtime}"
read -r -a LIST <<< "${FAULTS:-control loop memory recursion huge dribble no-read write-forever}"
ROUNDS="${FAULT_ROUNDS:-3}"
IDLE_WAIT="${FAULT_IDLE_WAIT:-35}"
median() { printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.2f", (v[NR/2] + v[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f", a / b; else print "-" }'; }
declare -A BASE RATIO ROUND_RATIOS FAILED COUNT RSS RSS_BASE RSS_IDLE
for fault in "${LIST[@]}"; do
  for kind in "${KINDS[@]}"; do
    start_server "$kind"
    wrk -t2 -c8 -d1s "http://127.0.0.1:$PORT/hello" >/dev/null 2>&1 || true # warm-up
    RSS_BASE[$kind/$fault]=$(rss_mib "$SERVER_PID")
    bases=() ratios=() failed_all=0 count_all=0
    for round in $(seq "$ROUNDS"); do
      read -r base _ _ <<< "$(measure)"
      FAULTERS=()
      for _ in 1 2; do
        # Until the measurement (0.3 s later, $DURATION long) is surely over.
        ( end=$((SECONDS + DURATION + 2)); while [ $SECONDS -lt $end ]; do fault_client "$fault" || true; done ) &
        FAULTERS+=($!)
      done
      sleep 0.3 # the faults are running when the measurement starts
      read -r loaded failed count <<< "$(measure)"
      stop_faulters
      sleep 1 # what the fault left running ends before the next baseline
      bases+=("$base") ratios+=("$(ratio "$loaded" "$base")")
      failed_all=$((failed_all + failed)) count_all=$((count_all + ${count/-/0}))
      echo "$kind $fault round $round: baseline p99 ${base} us, with the fault ${loaded} us, ${failed} of ${count} failed" >&2
    done
    RSS[$kind/$fault]=$(rss_mib "$SERVER_PID")
    if [ "$IDLE_WAIT" -gt 0 ] && [[ $kind == wisp* ]]; then
      sleep "$IDLE_WAIT"
      RSS_IDLE[$kind/$fault]=$(rss_mib "$SERVER_PID")
    fi
    BASE[$kind/$fault]=$(median "${bases[@]}") RATIO[$kind/$fault]=$(median "${ratios[@]}")
    ROUND_RATIOS[$kind/$fault]=$(IFS=/; echo "${ratios[*]}")
    FAILED[$kind/$fault]=$failed_all COUNT[$kind/$fault]=$count_all
    stop_server
  done
done
start_server native
wrk -t2 -c8 -d1s "http://127.0.0.1:$PORT/hello" >/dev/null 2>&1 || true
read -r native_p99 _ _ <<< "$(measure)"
stop_server

echo
echo "healthy /hello at c=8 next to each fault (2 clients repeating it), ${DURATION}s per phase, $ROUNDS round(s)"
echo "native hyper hello p99 in this run: ${native_p99} us"
echo "base p99: median of the rounds' baselines; p99 ratio: median of the rounds' ratios (each round's after it)"
printf '%-15s' fault
for kind in "${KINDS[@]}"; do printf ' | %-8s base p99 | p99 ratio (rounds) | failed/requests' "$kind"; done
[ -n "${RSS[wisp/${LIST[0]}]:-}" ] && printf ' | wisp RSS: base, 1 s after, %s s later' "$IDLE_WAIT"
echo
for fault in "${LIST[@]}"; do
  printf '%-15s' "$fault"
  for kind in "${KINDS[@]}"; do
    k="$kind/$fault"
    printf ' | %14s us | %5s (%s) | %s/%s' "${BASE[$k]}" "${RATIO[$k]}" "${ROUND_RATIOS[$k]}" "${FAILED[$k]}" "${COUNT[$k]}"
  done
  [ -n "${RSS[wisp/$fault]:-}" ] && printf ' | %s, %s, %s MiB' "${RSS_BASE[wisp/$fault]}" "${RSS[wisp/$fault]}" "${RSS_IDLE[wisp/$fault]:--}"
  echo
done
