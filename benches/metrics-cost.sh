#!/usr/bin/env bash
# What observability costs: the release `wisp` serving the hello guest with metrics off,
# with metrics on (`--metrics-listen`, CPU metering included, scraped every second as
# Prometheus would), with its request log on (which also meters CPU per request, written
# to a file), and with OpenTelemetry tracing to a local OTLP sink (a Python HTTP server
# that reads and discards each export) sampling 1% of the traces and all of them, against
# `wasmtime serve` 48.0.8 and a native hyper server. Each is
# measured in turn for ROUNDS rounds (wrk, 1 s warm-up then SECONDS s), so drift in the
# machine's speed hits all alike, in the reverse order every other round (on this machine
# the position in a round alone moved a result by 20%); prints req/s per round, the means
# and the ratios, and the same for the server's CPU time per request (steadier than
# requests/s here: the load generator shares the two cores).
# Usage: benches/metrics-cost.sh [rounds (5)] [concurrency (64)] [seconds (4)]
# Before/after: METRICS_WISP_BASELINE=/path/to/an/older/wisp adds kinds `off-base`,
# `metrics-base` and `log-base` (that binary, same settings); METRICS_KINDS="off metrics …"
# measures only the kinds listed.
# Everything listens on 127.0.0.1 only; every load run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-5}"
C="${2:-64}"
SECONDS_PER_RUN="${3:-4}"
PORT=18711
METRICS_PORT=18712
SINK_PORT=18713
. benches/common.sh
bench_tools
bench_build
WASM="$GUESTS/hello.wasm"
CACHE="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$CACHE"' EXIT

# Scrapes the metrics listener once a second while the load runs (stops with the server).
scraper() {
  while sleep 1; do curl -fs -m 2 -o /dev/null "http://127.0.0.1:$METRICS_PORT/metrics" || true; done
}

# The OTLP sink for the tracing runs.
python3 -c '
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, *args):
        pass  # a server stopped mid-export resets its connection: not news
Server(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
' "$SINK_PORT" &

declare -A SUM CPU
read -r -a KINDS <<< "${METRICS_KINDS:-off metrics log trace1 traceall wasmtime native}"
if [ -n "${METRICS_WISP_BASELINE:-}" ]; then KINDS+=(off-base metrics-base log-base); fi
for kind in off metrics log trace1 traceall wasmtime native off-base metrics-base log-base; do SUM[$kind]=0; CPU[$kind]=0; done
for round in $(seq 1 "$ROUNDS"); do
  line="round $round:"
  order=("${KINDS[@]}")
  if (( round % 2 == 0 )); then
    order=(); for (( i=${#KINDS[@]}-1; i>=0; i-- )); do order+=("${KINDS[i]}"); done
  fi
  for kind in "${order[@]}"; do
    bin=$WISP
    [[ $kind == *-base ]] && bin=$METRICS_WISP_BASELINE
    case ${kind%-base} in
      off) res=$(WISP_LOG=warn measure_rps_cpu "$bin" up --from "$WASM" --listen 127.0.0.1:$PORT --cache-dir "$CACHE") ;;
      metrics)
        scraper & scraping=$!
        res=$(WISP_LOG=warn measure_rps_cpu "$bin" up --from "$WASM" --listen 127.0.0.1:$PORT --cache-dir "$CACHE" --metrics-listen 127.0.0.1:$METRICS_PORT)
        kill "$scraping" 2>/dev/null || true; wait "$scraping" 2>/dev/null || true ;;
      log) res=$(measure_rps_cpu sh -c "exec '$bin' up --from '$WASM' --listen 127.0.0.1:$PORT --cache-dir '$CACHE' 2>'$CACHE/requests.log'") ;;
      trace1) res=$(WISP_LOG=warn OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 \
          measure_rps_cpu "$WISP" up --from "$WASM" --listen 127.0.0.1:$PORT --cache-dir "$CACHE") ;;
      traceall) res=$(WISP_LOG=warn OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT OTEL_TRACES_SAMPLER=always_on \
          measure_rps_cpu "$WISP" up --from "$WASM" --listen 127.0.0.1:$PORT --cache-dir "$CACHE") ;;
      wasmtime) res=$(measure_rps_cpu "$WASMTIME" serve -Scli --addr 127.0.0.1:$PORT "$WASM") ;;
      native) res=$(measure_rps_cpu "$NATIVE" 127.0.0.1:$PORT) ;;
    esac
    rps=${res%% *}; cpu=${res##* }
    line="$line $kind ${rps:-0} (${cpu:-0} us)"
    SUM[$kind]=$(awk -v a="${SUM[$kind]}" -v b="${rps:-0}" 'BEGIN{print a+b}')
    CPU[$kind]=$(awk -v a="${CPU[$kind]}" -v b="${cpu:-0}" 'BEGIN{print a+b}')
  done
  echo "$line req/s (server CPU per request)"
done
# q(a, b): a/b, or "n/a" when either was not measured (METRICS_KINDS left it out).
RATIO='function q(a, b) { return (a > 0 && b > 0) ? sprintf("%.3f", a / b) : "n/a" }'
awk -v off="${SUM[off]}" -v m="${SUM[metrics]}" -v l="${SUM[log]}" -v t1="${SUM[trace1]}" -v ta="${SUM[traceall]}" -v w="${SUM[wasmtime]}" -v n="${SUM[native]}" -v r="$ROUNDS" -v c="$C" "$RATIO"'
BEGIN{
  printf "hello c=%s, mean of %d rounds: metrics off %.0f, metrics on %.0f, request log on %.0f, tracing 1%% %.0f, tracing all %.0f, wasmtime serve %.0f, native %.0f req/s\n", c, r, off/r, m/r, l/r, t1/r, ta/r, w/r, n/r;
  printf "ratios: metrics on / off %s, request log on / off %s, tracing 1%% / off %s, tracing all / off %s, metrics on / wasmtime %s, metrics on / native %s, off / wasmtime %s\n", q(m, off), q(l, off), q(t1, off), q(ta, off), q(m, w), q(m, n), q(off, w) }'
# The same costs as CPU time per request (off's over on's: the share of requests/s the
# feature leaves when the cores are the limit), the steadier measure on a noisy machine.
awk -v off="${CPU[off]}" -v m="${CPU[metrics]}" -v l="${CPU[log]}" -v t1="${CPU[trace1]}" -v ta="${CPU[traceall]}" -v w="${CPU[wasmtime]}" -v n="${CPU[native]}" -v r="$ROUNDS" "$RATIO"'
BEGIN{
  printf "server CPU per request, mean of %d rounds: metrics off %.2f, metrics on %.2f, request log on %.2f, tracing 1%% %.2f, tracing all %.2f, wasmtime serve %.2f, native %.2f us\n", r, off/r, m/r, l/r, t1/r, ta/r, w/r, n/r;
  printf "CPU ratios (off / on): metrics %s, request log %s, tracing 1%% %s, tracing all %s; wasmtime / metrics on %s, native / metrics on %s\n", q(off, m), q(off, l), q(off, t1), q(off, ta), q(w, m), q(n, m) }'
if [ -n "${METRICS_WISP_BASELINE:-}" ]; then
  awk -v m="${SUM[metrics]}" -v l="${SUM[log]}" -v ob="${SUM[off-base]}" -v mb="${SUM[metrics-base]}" -v lb="${SUM[log-base]}" -v r="$ROUNDS" "$RATIO"'
  BEGIN{
    printf "baseline binary, mean of %d rounds: metrics off %.0f, metrics on %.0f, request log on %.0f req/s\n", r, ob/r, mb/r, lb/r;
    printf "baseline ratios: metrics on / off %s, request log on / off %s; this binary / baseline: metrics on %s, request log on %s\n", q(mb, ob), q(lb, ob), q(m, mb), q(l, lb) }'
  awk -v ob="${CPU[off-base]}" -v mb="${CPU[metrics-base]}" -v lb="${CPU[log-base]}" "$RATIO"'
  BEGIN{ printf "baseline CPU ratios (off / on): metrics %s, request log %s\n", q(ob, mb), q(ob, lb) }'
fi
