# Shared by the load scripts in benches/ (sourced, not run): the load generator, the
# `wasmtime serve` to compare with, the release build, and wrk's latency units.

# Installs wrk (Debian package) when missing.
bench_wrk() {
  if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk (Debian package)" >&2
    apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
  fi
}

# Installs wrk and wasmtime-cli 48.0.8 when missing; sets WASMTIME.
bench_tools() {
  bench_wrk
  if ! command -v wasmtime >/dev/null 2>&1 || ! wasmtime --version | grep -q '^wasmtime 48.0.8'; then
    echo "installing wasmtime-cli 48.0.8 (cargo install; takes a while once)" >&2
    cargo install --locked wasmtime-cli@48.0.8 >&2
  fi
  WASMTIME="$(command -v wasmtime)"
}

# Builds the release `wisp`, the native baseline servers and the guests; sets WISP, NATIVE
# and GUESTS.
bench_build() {
  echo "building release binaries and guests" >&2
  cargo build --release -q -p wisp-cli -p wisp-benches --bins >&2
  # The library target runs the build script that (re)builds the guests.
  cargo build --release -q -p wisp-test-programs >&2
  WISP="$PWD/target/release/wisp"
  NATIVE="$PWD/target/release/native-hello"
  GUESTS="$PWD/target/guest-programs/wasm32-wasip2/release"
}

# Starts `command...` in the background, waits for its first 200 on 127.0.0.1:$PORT, loads
# it with wrk at concurrency $C (1 s warm-up, then $SECONDS_PER_RUN s), stops it with
# SIGTERM and prints its req/s.
measure_rps() { # command...
  measure_rps_cpu "$@" | awk '{print $1}'
}

# Like measure_rps, and also the server's CPU time per request over the measured run
# (user + system time of its process from /proc, in microseconds): prints `RPS CPU_US`.
# CPU per request does not move with the load generator taking the cores the way
# requests/s does, so small costs show through the machine's noise.
measure_rps_cpu() { # command...
  "$@" >/dev/null 2>&1 &
  local pid=$! threads=$(( C < 2 ? 1 : 2 )) before after out
  wait_for_200 "$PORT" || true
  wrk -t$threads -c"$C" -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1 || true
  before=$(proc_cpu_ticks "$pid")
  out=$(wrk -t$threads -c"$C" -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$PORT/")
  after=$(proc_cpu_ticks "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  awk -v b="$before" -v a="$after" -v tck="$(getconf CLK_TCK)" '
    /^Requests\/sec/ {rps=$2}
    / requests in / {n=$1}
    END {printf "%s %.2f\n", rps, (n > 0 ? (a - b) * 1000000 / tck / n : 0)}' <<<"$out"
}

# utime + stime of process $1 in clock ticks (fields 14 and 15 of /proc/PID/stat, counted
# after the command name, which may hold spaces).
proc_cpu_ticks() {
  awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}

# Waits (up to 30 s) until http://127.0.0.1:$1$2 answers 200.
wait_for_200() {
  for _ in $(seq 1 600); do
    if curl -fs -m 2 -o /dev/null "http://127.0.0.1:$1${2:-/}"; then return 0; fi
    sleep 0.05
  done
  return 1
}

# wrk latency like 170.00us / 1.20ms / 2.00s -> microseconds
to_us() {
  awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v+0} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000000} else print v }'
}
