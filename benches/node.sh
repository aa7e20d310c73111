#!/usr/bin/env bash
# The multi-app node under its issue's targets, with the release binary:
#   1. N deployed apps (default 10,000; 100 distinct components, the rest sharing them):
#      resident memory with every app idle, after a restart, and per additional idle app;
#      compared with one process per app (20 `wisp up` and 20 `wasmtime serve`, the
#      sum extrapolated to N).
#   2. Restart with N apps: time until the admin API and the data port answer.
#   3. First request to an idle app with a warm compile cache: p50 / p99 over 200 apps.
#   4. Memory per loaded-but-idle app (1,000 apps loaded).
#   5. Round robin over 1,000 loaded apps at c=64 vs one app at c=64 (wrk, Host header).
#   6. Replace one app 20 times under c=32 load: failed requests, and the longest time
#      from `deploy` returning to the new version answering.
#   7. Noisy neighbour: app A flooded (c=256, touch4mib) while app B runs at c=1: B's
#      p99 with and without the flood.
# Usage: benches/node.sh [seconds-per-load-run (default 10)]
#        NODE_APPS=2000 NODE_DISTINCT=50 benches/node.sh 5     (a quicker, smaller run)
# Everything listens on 127.0.0.1 only, on ports below the kernel's ephemeral range (the load
# generators' closed client sockets would otherwise hold them); every load run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
APPS="${NODE_APPS:-10000}"
DISTINCT="${NODE_DISTINCT:-100}"
PORT=18391
ADMIN=18392

. benches/common.sh
bench_tools
bench_build
WORK="$(mktemp -d)"
STATE="$WORK/state"
export WISP_NODE="http://127.0.0.1:$ADMIN" WISP_STATE_DIR="$STATE" WISP_CACHE_DIR="$WORK/cache"
PEERS=()
cleanup() {
  for pid in "${PEERS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ms_since() { awk -v s="$1" -v e="$(date +%s%N)" 'BEGIN{ printf "%.1f", (e-s)/1e6 }'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

start_node() { # idle-unload seconds -> NODE_PID, and START_MS: ms until admin and data answer
  local started=$(date +%s%N) admin_ms="" data_ms=""
  WISP_LOG=warn "$WISP" node --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN \
    --state-dir "$STATE" --idle-unload "$1" >>"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 1 20000); do
    if [ -z "$admin_ms" ] && [ -f "$STATE/admin-token" ] && curl -fs -m 1 -o /dev/null \
        -H "Authorization: Bearer $(cat "$STATE/admin-token")" "$WISP_NODE/v1/status"; then
      admin_ms=$(ms_since "$started")
    fi
    if [ -z "$data_ms" ] && curl -s -m 1 -o /dev/null -H 'Host: none.invalid' "http://127.0.0.1:$PORT/"; then
      data_ms=$(ms_since "$started")
    fi
    [ -n "$admin_ms" ] && [ -n "$data_ms" ] && break
    sleep 0.002
  done
  START_MS="$admin_ms $data_ms"
}
stop_node() { kill -TERM "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; }
api() { curl -fsS -H "Authorization: Bearer $(cat "$STATE/admin-token")" "$@"; }

# Distinct components: hello with a custom section naming its copy (a different digest,
# the same code).
echo "preparing $DISTINCT distinct components" >&2
python3 - "$GUESTS/hello.wasm" "$WORK/apps" "$DISTINCT" <<'EOF'
import os, sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = open(src, 'rb').read()
def leb(v):
    b = bytearray()
    while True:
        byte = v & 0x7f; v >>= 7
        b.append(byte | (0x80 if v else 0))
        if not v: return bytes(b)
for i in range(n):
    name = b'wisp-bench-copy'; payload = str(i).encode()
    body = leb(len(name)) + name + payload
    d = os.path.join(out, str(i)); os.makedirs(d)
    open(os.path.join(d, 'app.wasm'), 'wb').write(base + b'\x00' + leb(len(body)) + body)
    open(os.path.join(d, 'spin.toml'), 'w').write(
        'spin_manifest_version = 2\n[application]\nname = "bench"\n[[trigger.http]]\nroute = "/..."\n'
        'component = "main"\n[component.main]\nsource = "app.wasm"\n')
EOF

start_node 2
echo "deploying $DISTINCT distinct apps (compiling each once)" >&2
for i in $(seq 0 $((DISTINCT - 1))); do
  WISP_LOG=warn "$WISP" node deploy "app-$i" --from "$WORK/apps/$i" 2>/dev/null
done
api "$WISP_NODE/v1/apps" | python3 -c 'import json,sys; [print(a["name"], a["digest"]) for a in json.load(sys.stdin)]' \
  > "$WORK/digests"
echo "deploying $((APPS - DISTINCT)) more apps sharing them" >&2
seq "$DISTINCT" $((APPS - 1)) | awk -v d="$DISTINCT" -v f="$WORK/digests" '
  BEGIN { while ((getline line < f) > 0) { split(line, p, " "); sub("app-", "", p[1]); digest[p[1]] = p[2] } }
  { print $1, digest[$1 % d] }' > "$WORK/plan"
deploy_started=$(date +%s%N)
TOKEN="$(cat "$STATE/admin-token")"
xargs -P 4 -n 2 sh -c 'curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer '"$TOKEN"'" \
  -H "Content-Type: application/json" --data "{\"source\":{\"uploaded\":{\"manifest\":\"$1\"}}}" \
  "'"$WISP_NODE"'/v1/apps/app-$0"' < "$WORK/plan"
deploy_ms=$(ms_since "$deploy_started")
stop_node

# 1 and 2: idle memory after a restart, with only the distinct apps and with all of them.
cp "$STATE/node.db" "$WORK/all.db"
python3 - "$STATE/node.db" "$DISTINCT" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("DELETE FROM apps WHERE CAST(substr(name, 5) AS INTEGER) >= ?", (int(sys.argv[2]),))
db.commit()
EOF
start_node 3600
sleep 1
rss_few=$(rss_kib "$NODE_PID")
stop_node
cp "$WORK/all.db" "$STATE/node.db"
rm -f "$STATE/node.db-wal" "$STATE/node.db-shm"
start_node 3600
read -r restart_admin_ms restart_data_ms <<< "$START_MS"
sleep 1
rss_all=$(rss_kib "$NODE_PID")

echo "measuring first requests, loaded apps, round robin, replaces, noisy neighbour, peers" >&2
# 3: first requests to idle apps (every one a different app; apps 0..99 share code with
# the rest, so this is the warm-cache path).
for i in $(seq 1000 1199); do
  curl -s -o /dev/null -w '%{time_total}\n' -H "Host: app-$i.localhost" "http://127.0.0.1:$PORT/"
done | sort -n > "$WORK/first"
first_p50=$(awk '{a[NR]=$1} END{printf "%.2f", a[int(NR*0.5)]*1000}' "$WORK/first")
first_p99=$(awk '{a[NR]=$1} END{printf "%.2f", a[int(NR*0.99)]*1000}' "$WORK/first")

# 4: 1,000 apps loaded.
rss_before_load=$(rss_kib "$NODE_PID")
for i in $(seq 0 999); do
  curl -s -o /dev/null -H "Host: app-$i.localhost" "http://127.0.0.1:$PORT/"
done
sleep 1
rss_loaded=$(rss_kib "$NODE_PID")

# 5: round robin over those 1,000 vs one app.
cat > "$WORK/rr.lua" <<'EOF'
local i = 0
request = function()
  i = (i % 1000) + 1
  return wrk.format("GET", "/", { ["Host"] = "app-" .. (i - 1) .. ".localhost" })
end
EOF
wrk_rps() { awk '/^Requests\/sec/ {print $2}'; }
wrk -t2 -c64 -d2s -H 'Host: app-1.localhost' "http://127.0.0.1:$PORT/" >/dev/null 2>&1 || true
one_rps=$(wrk -t2 -c64 -d"${DURATION}s" -H 'Host: app-1.localhost' "http://127.0.0.1:$PORT/" | wrk_rps)
rr_rps=$(wrk -t2 -c64 -d"${DURATION}s" -s "$WORK/rr.lua" "http://127.0.0.1:$PORT/" | wrk_rps)

# 6: replace one app 20 times under c=32.
ECHO_APP="$WORK/echo"
mkdir -p "$ECHO_APP"
cp "$GUESTS/echo.wasm" "$ECHO_APP/app.wasm"
sed 's/name = "bench"/name = "echo"/' "$WORK/apps/0/spin.toml" > "$ECHO_APP/spin.toml"
WISP_LOG=warn "$WISP" node deploy swap --from "$WORK/apps/0" 2>/dev/null
wrk -t2 -c32 -d$((DURATION * 3))s -H 'Host: swap.localhost' "http://127.0.0.1:$PORT/swap" > "$WORK/swap.wrk" 2>&1 &
WRK_PID=$!
sleep 1
max_switch_ms=0
for round in $(seq 1 20); do
  if [ $((round % 2)) = 1 ]; then from="$ECHO_APP"; want="GET /swap"; else from="$WORK/apps/0"; want="Hello"; fi
  WISP_LOG=warn "$WISP" node deploy swap --from "$from" 2>/dev/null
  returned=$(date +%s%N)
  until curl -s -H 'Host: swap.localhost' "http://127.0.0.1:$PORT/swap" | grep -q "^$want"; do sleep 0.001; done
  took=$(ms_since "$returned")
  max_switch_ms=$(awk -v a="$max_switch_ms" -v b="$took" 'BEGIN{print (b>a)?b:a}')
done
wait "$WRK_PID" || true
swap_requests=$(awk '/requests in/ {print $1}' "$WORK/swap.wrk")
swap_non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/swap.wrk"); swap_non2xx=${swap_non2xx:-0}
swap_socket=$(awk '/Socket errors/ {gsub(",", ""); print $4+$6+$8+$10}' "$WORK/swap.wrk"); swap_socket=${swap_socket:-0}

# 7: noisy neighbour.
HOG="$WORK/hog"
mkdir -p "$HOG"
cp "$GUESTS/touch4mib.wasm" "$HOG/app.wasm"
sed 's/name = "bench"/name = "hog"/' "$WORK/apps/0/spin.toml" > "$HOG/spin.toml"
WISP_LOG=warn "$WISP" node deploy hog --from "$HOG" 2>/dev/null
WISP_LOG=warn "$WISP" node deploy quiet --from "$WORK/apps/1" 2>/dev/null
p99_of() { to_us "$(awk '$1=="99%" {print $2}')"; }
quiet_alone=$(wrk -t1 -c1 -d"${DURATION}s" --latency -H 'Host: quiet.localhost' "http://127.0.0.1:$PORT/" | p99_of)
wrk -t2 -c256 -d$((DURATION + 2))s -H 'Host: hog.localhost' "http://127.0.0.1:$PORT/" > "$WORK/hog.wrk" 2>&1 &
HOG_WRK=$!
sleep 1
quiet_flooded=$(wrk -t1 -c1 -d"${DURATION}s" --latency -H 'Host: quiet.localhost' "http://127.0.0.1:$PORT/" | p99_of)
wait "$HOG_WRK" || true
hog_rps=$(wrk_rps < "$WORK/hog.wrk")
stop_node

# Peers: one process per app.
peer_rss() { # command... -> total RSS KiB of 20 processes
  local total=0 port pids=()
  for i in $(seq 0 19); do
    port=$((18400 + i))
    "$@" "$port" >/dev/null 2>&1 &
    pids+=($!); PEERS+=($!)
  done
  for i in $(seq 0 19); do wait_for_200 $((18400 + i)) /hello >/dev/null || true; done
  sleep 1
  local alive=0
  for pid in "${pids[@]}"; do
    if [ -r "/proc/$pid/status" ]; then total=$((total + $(rss_kib "$pid"))); alive=$((alive + 1)); fi
  done
  [ "$alive" = 20 ] || { echo "only $alive of 20 peer processes started" >&2; total=$((total * 20 / (alive > 0 ? alive : 1))); }
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  echo "$total"
}
wisp_up() { WISP_LOG=warn exec "$WISP" up --from "$GUESTS/hello.wasm" --listen "127.0.0.1:$1"; }
wasmtime_serve() { exec "$WASMTIME" serve -Scli --addr "127.0.0.1:$1" "$GUESTS/hello.wasm"; }
peers_wisp=$(peer_rss wisp_up)
peers_wasmtime=$(peer_rss wasmtime_serve)

mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
printf '\nwisp node, %d apps (%d distinct components), %s\n' "$APPS" "$DISTINCT" "$(date -u +%F)"
printf 'deploying %d apps through the API (4 at a time): %.1f s\n' $((APPS - DISTINCT)) "$(awk -v m="$deploy_ms" 'BEGIN{print m/1000}')"
printf '%-58s %s\n' "idle RSS, $DISTINCT apps (after restart)" "$(mib "$rss_few") MiB"
printf '%-58s %s\n' "idle RSS, $APPS apps (after restart)" "$(mib "$rss_all") MiB"
printf '%-58s %s\n' "per additional idle app" "$(awk -v a="$rss_all" -v b="$rss_few" -v n=$((APPS - DISTINCT)) 'BEGIN{printf "%.2f KiB", (a-b)/n}')"
printf '%-58s %s / %s ms\n' "restart with $APPS apps: admin API / data port answer after" "$restart_admin_ms" "$restart_data_ms"
printf '%-58s p50 %s ms, p99 %s ms\n' "first request to an idle app (200 apps, warm cache)" "$first_p50" "$first_p99"
printf '%-58s %s\n' "per loaded-but-idle app (1,000 loaded)" "$(awk -v a="$rss_loaded" -v b="$rss_before_load" 'BEGIN{printf "%.1f KiB", (a-b)/1000}')"
printf '%-58s %s req/s vs one app %s req/s: %s\n' "round robin over 1,000 apps, c=64" "$rr_rps" "$one_rps" "$(awk -v a="$rr_rps" -v b="$one_rps" 'BEGIN{printf "%.2f", a/b}')"
printf '%-58s %s requests, %s non-2xx, %s socket errors; new version answered within %s ms\n' "replace 20 times under c=32" "$swap_requests" "$swap_non2xx" "$swap_socket" "$max_switch_ms"
printf '%-58s alone %s us, flooded %s us: %s (hog %s req/s)\n' "noisy neighbour: quiet app p99 at c=1" "$quiet_alone" "$quiet_flooded" "$(awk -v a="$quiet_flooded" -v b="$quiet_alone" 'BEGIN{printf "%.2f", a/b}')" "$hog_rps"
printf '%-58s wisp up %s MiB, wasmtime serve %s MiB\n' "one process per app: 20 processes" "$(mib "$peers_wisp")" "$(mib "$peers_wasmtime")"
printf '%-58s wisp up %s GiB, wasmtime serve %s GiB; node %s GiB\n' "... extrapolated to $APPS apps" \
  "$(awk -v k="$peers_wisp" -v n="$APPS" 'BEGIN{printf "%.1f", k/20*n/1048576}')" \
  "$(awk -v k="$peers_wasmtime" -v n="$APPS" 'BEGIN{printf "%.1f", k/20*n/1048576}')" \
  "$(awk -v k="$rss_all" 'BEGIN{printf "%.2f", k/1048576}')"
