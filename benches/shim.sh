#!/usr/bin/env bash
# The containerd shim against the other ways to run the same hello component, in one run:
#   shim        `ctr run --runtime io.containerd.wisp.v1` of an image whose one layer is the
#               hello component (precompiled by the shim at the first create; the measured
#               starts reuse containerd's precompiled code),
#   spintainer  `wisp up` inside an ordinary container under runc (the image holds the
#               release `wisp`, the libraries it links and the component),
#   wisp up     the release `wisp up --from hello.wasm` on the host, no container,
# plus, for requests/s, `wasmtime serve` 48.0.8 and a native hyper server (the floor).
# Every way logs at `warn` (no line per request). The spintainer has no compile cache that
# outlives a container (each starts from its image), as in a pod without a volume.
# Prints: container start -> first 200 (median of RUNS, by first-200 polling every 100 µs),
# the resident memory of each way once it has served (shim: the shim process plus the
# container's process; spintainer: runc's shim plus `wisp`), and requests/s at C
# connections for SECONDS_PER_RUN seconds, with ratios.
# Needs root. Starts a containerd of its own (Debian trixie's 1.7, installed by
# scripts/install-containerd.sh) with its root, state and socket in a temp dir.
# Usage: benches/shim.sh ; RUNS=10 C=64 SECONDS_PER_RUN=5 IDLE_SECONDS=40 by default (0: no
# idle reading). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10}"
C="${C:-64}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
IDLE_SECONDS="${IDLE_SECONDS:-40}"
PORT=18751
. benches/common.sh
bench_tools
bench_build
cargo build --release -q -p wisp-shim >&2
bash scripts/install-containerd.sh >/dev/null
BIN="${WISP_TOOLS_DIR:-$HOME/.cache/wisp/tools}/containerd-trixie/usr/bin"
FIRST_200="$PWD/target/release/first-200"
HELLO="$GUESTS/hello.wasm"

WORK="$(mktemp -d /tmp/wsb.XXXXXX)"
cleanup() {
  if [ -S "$WORK/c.sock" ]; then
    for id in $(ctr_ tasks ls -q 2>/dev/null); do
      ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for id in $(ctr_ containers ls -q 2>/dev/null); do
      ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true
      ctr_ containers delete "$id" >/dev/null 2>&1 || true
    done
  fi
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ctr_() { "$BIN/ctr" --address "$WORK/c.sock" --namespace bench "$@"; }

cat >"$WORK/config.toml" <<EOF
version = 2
root = "$WORK/root"
state = "$WORK/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$WORK/c.sock"
[ttrpc]
  address = "$WORK/t.sock"
[debug]
  address = "$WORK/d.sock"
EOF
PATH="$PWD/target/release:$BIN:$PATH:/usr/sbin" "$BIN/containerd" --config "$WORK/config.toml" \
  >"$WORK/containerd.log" 2>&1 &
for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done

# The hello component as a single-layer wasm image (an OCI layout written here).
python3 benches/wasm-image.py "$HELLO" "$WORK/hello-layout"
tar -C "$WORK/hello-layout" -cf "$WORK/hello.tar" .
ctr_ images import --base-name localhost/hello "$WORK/hello.tar" >/dev/null

# The spintainer: the release wisp with the libraries it links, and the component.
umoci init --layout "$WORK/st" >/dev/null
umoci new --image "$WORK/st:latest" >/dev/null
umoci unpack --image "$WORK/st:latest" "$WORK/st-bundle" >/dev/null
rootfs="$WORK/st-bundle/rootfs"
mkdir -p "$rootfs/app" "$rootfs/tmp"
cp "$WISP" "$rootfs/app/wisp"
cp "$HELLO" "$rootfs/app/hello.wasm"
for lib in $(ldd "$WISP" | grep -o '/[^ ]*'); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
umoci repack --image "$WORK/st:latest" "$WORK/st-bundle" >/dev/null
umoci config --image "$WORK/st:latest" --config.env HOME=/tmp --config.env WISP_LOG=warn \
  --config.entrypoint /app/wisp --config.cmd up --config.cmd --from --config.cmd /app/hello.wasm \
  --config.cmd --listen --config.cmd "127.0.0.1:$PORT" --config.cmd --quiet >/dev/null
tar -C "$WORK/st" -cf "$WORK/st.tar" .
ctr_ images import --base-name localhost/spintainer "$WORK/st.tar" >/dev/null

CTR=("$BIN/ctr" --address "$WORK/c.sock" --namespace bench)
# The `ctr run` of each way, as container $1 (in the foreground: first-200's SIGTERM goes
# to ctr, which passes it to the task).
shim_run() { echo "${CTR[@]}" run --rm --net-host --runtime io.containerd.wisp.v1 --env "SPIN_HTTP_LISTEN_ADDR=127.0.0.1:$PORT" --env WISP_LOG=warn localhost/hello:latest "$1" /; }
runc_run() { echo "${CTR[@]}" run --rm --net-host localhost/spintainer:latest "$1"; }

# Median ms of RUNS starts -> first 200 of the way `$1`, each a new container, after one
# start that precompiles or warms caches.
median_start() { # shim_run|runc_run
  local runs=() out
  for i in $(seq 0 "$RUNS"); do
    # shellcheck disable=SC2046 # the command's words
    out=$(timeout 60 "$FIRST_200" 127.0.0.1:$PORT -- $($1 "m$1$i") 2>/dev/null) || {
      echo "a start failed (${out:-no output})" >&2; echo n/a; return; }
    [ "$i" -eq 0 ] || runs+=("${out% *}")
    # Let the container go (ctr run --rm deletes it after the task exits).
    sleep 0.3
  done
  printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(( RUNS / 2 + 1 ))p"
}

echo "container start -> first 200 (median of $RUNS):"
shim_ms=$(median_start shim_run)
runc_ms=$(median_start runc_run)
up_ms=$(timeout 60 "$FIRST_200" 127.0.0.1:$PORT -- env WISP_LOG=warn "$WISP" up --from "$HELLO" --listen 127.0.0.1:$PORT --quiet | awk '{print $1}')
printf '  %-12s %8s ms\n' shim "$shim_ms" spintainer "$runc_ms" "wisp up" "$up_ms"
awk -v a="$shim_ms" -v b="$runc_ms" 'BEGIN{ if (b > 0) printf "  shim / spintainer: %.2f\n", a / b }'

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Proportional set size: shared pages (the same binary mapped by two processes) split.
pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# Anonymous memory: what this process holds that no other process or file shares.
anon_kib() { awk '/^Anonymous:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# The pids of a running container's processes: the shim process (the task's parent) and
# all its descendants. For Wisp's shim that is four processes: the shim, runwasi's two
# zygotes (a global one forked at the shim's start and one per container, both
# single-threaded, waiting on a socket) and the container's process; for runc, its shim
# and the container's process. Looked up once: each `ctr tasks ls` is a call into the
# shim process, which would run (and fault back in) code the reading should not count.
container_pids() { # id
  local pid shim
  pid=$(ctr_ tasks ls | awk -v id="$1" '$1 == id {print $2}')
  shim=$(awk '{print $4}' "/proc/$pid/stat")
  local all=("$shim") i=0
  while (( i < ${#all[@]} )); do
    for child in $(cat /proc/"${all[$i]}"/task/*/children 2>/dev/null); do all+=("$child"); done
    i=$(( i + 1 ))
  done
  echo "${all[@]}"
}
# The resident memory of those processes: prints "RSS_SUM:PSS_SUM" (KiB) and, on stderr,
# each one's RSS, PSS and anonymous memory. RSS counts a page shared by two of them (the
# binary's code, the zygotes' copy-on-write pages) in both; PSS splits it.
container_rss() { # id pid...
  local id=$1 rss=0 pss=0 line="    $1:"
  shift
  for pid in "$@"; do
    line+=" $(cat "/proc/$pid/comm" 2>/dev/null) RSS $(rss_kib "$pid") PSS $(pss_kib "$pid") anon $(anon_kib "$pid");"
    rss=$(( rss + $(rss_kib "$pid") ))
    pss=$(( pss + $(pss_kib "$pid") ))
  done
  echo "$line" >&2
  echo "$rss:$pss"
}

# Requests/s of a running container (or host process) at C connections.
load() {
  wrk -t2 -c"$C" -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1 || true
  wrk -t2 -c"$C" -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$PORT/" | awk '/^Requests\/sec/ {print $2}'
}

# One request on a new connection, in ms (curl's total time).
request_ms() {
  curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/" | awk '{printf "%.2f", $1 * 1000}'
}

# Starts way `$1` (shim_run|runc_run) detached as container `$2`, serves one request, then
# prints "RSS_KIB RPS RSS_KIB_AFTER_LOAD RSS_KIB_SETTLED RSS_KIB_IDLE FIRST_AFTER_IDLE_MS
# REQUEST_MS_BEFORE_IDLE" and stops it. Settled: 10 s after the first response, when the
# container's process has been idle 5 s since its start and the shim process 7 s since
# the container's creation, and each has unmapped its read-only pages (the binary's and
# its libraries') and trimmed its heap, and the shim process has done the same for
# runwasi's zygotes (crates/shim/src/zygotes.rs); runc's ways do nothing of the kind.
# Idle: IDLE_SECONDS after the load
# (Wisp's processes do the same after 30 s without work, checked every second), then the
# time of one request, against one right after the load.
serve_and_load() { # way id
  $($1 "$2" | sed 's/ run --rm / run -d /') >/dev/null
  wait_for_200 $PORT
  curl -fs -o /dev/null "http://127.0.0.1:$PORT/"
  local rss settled rps after idle=0 first=0 warm=0
  local pids
  pids=$(container_pids "$2")
  # shellcheck disable=SC2086 # two pids
  rss=$(container_rss "$2" $pids)
  sleep 10
  # shellcheck disable=SC2086
  settled=$(container_rss "$2" $pids)
  rps=$(load)
  # shellcheck disable=SC2086
  after=$(container_rss "$2" $pids)
  if (( IDLE_SECONDS > 0 )); then
    warm=$(request_ms)
    sleep "$IDLE_SECONDS"
    # shellcheck disable=SC2086
    idle=$(container_rss "$2" $pids)
    first=$(request_ms)
  fi
  echo "$rss $rps $after $settled $idle $first $warm"
  ctr_ tasks kill -s SIGTERM "$2" >/dev/null
  # The port must be free before the next server starts.
  for _ in $(seq 100); do
    ctr_ tasks ls | awk -v id="$2" '$1 == id && $3 == "RUNNING" {found = 1} END {exit !found}' || break
    sleep 0.1
  done
}

echo "resident memory after serving, and requests/s at c=$C for ${SECONDS_PER_RUN}s:"
# Not `read < <(…)`: that would go on before the container has stopped.
shim=$(serve_and_load shim_run load-shim)
runc=$(serve_and_load runc_run load-runc)
read -r shim_rss shim_rps shim_rss_after shim_rss_settled shim_rss_idle shim_first_idle shim_warm <<<"$shim"
read -r runc_rss runc_rps _ runc_rss_settled runc_rss_idle runc_first_idle runc_warm <<<"$runc"

up_rps=$(measure_rps env WISP_LOG=warn "$WISP" up --from "$HELLO" --listen 127.0.0.1:$PORT --quiet)
wasmtime_rps=$(measure_rps "$WASMTIME" serve -Scli --addr 127.0.0.1:$PORT "$HELLO")
native_rps=$(measure_rps "$NATIVE" 127.0.0.1:$PORT)

mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
# A "RSS:PSS" reading as "R MiB (PSS P)".
mem() { echo "$(mib "${1%%:*}") MiB (PSS $(mib "${1##*:}"))"; }
echo "  all of a container's processes (RSS sums; PSS sums in brackets):"
printf '  %-12s RSS %s, settled %s, after the load %s   %10s req/s\n' shim "$(mem "$shim_rss")" "$(mem "$shim_rss_settled")" "$(mem "$shim_rss_after")" "$shim_rps"
printf '  %-12s RSS %s, settled %s   %10s req/s\n' spintainer "$(mem "$runc_rss")" "$(mem "$runc_rss_settled")" "$runc_rps"
if (( IDLE_SECONDS > 0 )); then
  printf '  after %s s idle: shim RSS %s (next request %s ms; %s ms before the wait), spintainer RSS %s (next request %s ms; %s ms before)\n' \
    "$IDLE_SECONDS" "$(mem "$shim_rss_idle")" "$shim_first_idle" "$shim_warm" "$(mem "$runc_rss_idle")" "$runc_first_idle" "$runc_warm"
fi
printf '  %-12s %10s req/s\n' "wisp up" "$up_rps" wasmtime "$wasmtime_rps" native "$native_rps"
awk -v s="$shim_rps" -v u="$up_rps" -v r="$runc_rps" -v w="$wasmtime_rps" -v n="$native_rps" 'BEGIN{
  printf "  shim / wisp up: %.2f   shim / spintainer: %.2f   shim / wasmtime serve: %.2f   shim / native: %.2f\n", s/u, s/r, s/w, s/n }'
