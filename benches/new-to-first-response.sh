#!/usr/bin/env bash
# Time from nothing to a running function, per language template:
#   wisp new <template> → wisp build → wisp up → first 200 on loopback.
# Every phase is timed separately. `up` starts with an empty compile cache (the first
# `wisp up` ever); `up_warm` starts again with that cache filled; `wasmtime` is
# `wasmtime serve -Scli -Ccache=n` (48.0.8; its compile cache off, so it compiles as a
# first `wisp up` does) on the same component, to first 200, for
# comparison ("n/a" when it cannot serve it, e.g. a component importing Spin interfaces).
# Package caches (cargo, npm, pip) are reused between runs: run it twice for the
# warm-cache build numbers.
#
#   benches/new-to-first-response.sh [template ...]  (default: http-rust http-js http-py http-go)
#   WISP=target/release/wisp benches/new-to-first-response.sh
#
# Needs the toolchains the templates build with: cargo with wasm32-wasip2, Node.js with
# npm, python3 (a venv with componentize-py and spin-sdk is made under $WORK), Go and
# wasm-tools (scripts/install-go.sh; ~/.cache/wisp/tools/bin is added to the PATH).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
wisp="$(realpath "${WISP:-$root/target/release/wisp}")"
work="${WORK:-${TMPDIR:-/tmp}/wisp-first-response}"
port="${PORT:-3997}"
templates=("$@")
[ ${#templates[@]} -gt 0 ] || templates=(http-rust http-js http-py http-go)
[ -x "$wisp" ] || { echo "no wisp binary at $wisp; cargo build --release -p wisp-cli, or set WISP" >&2; exit 1; }
mkdir -p "$work"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

path_for() { # extra PATH entries a template's build needs
    case "$1" in
    http-py)
        if [ ! -x "$work/pyvenv/bin/componentize-py" ]; then
            python3 -m venv "$work/pyvenv" >&2
            "$work/pyvenv/bin/pip" install -q --disable-pip-version-check \
                spin-sdk==3.4.1 componentize-py==0.17.2 >&2
        fi
        echo "$work/pyvenv/bin:$PATH"
        ;;
    http-go) echo "${WISP_TOOLS_DIR:-$HOME/.cache/wisp/tools}/bin:$PATH" ;;
    *) echo "$PATH" ;;
    esac
}

first_200() { # pid: waits for the first 200 on $port, or gives up after 120 s
    local deadline=$((SECONDS + 120))
    until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do
        if [ $SECONDS -gt $deadline ] || ! kill -0 "$1" 2>/dev/null; then return 1; fi
        sleep 0.02
    done
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "something already listens on 127.0.0.1:$port; stop it or set PORT" >&2
    exit 1
fi
wasmtime_bin="$(command -v wasmtime || true)"

printf '%-10s %7s %7s %7s %7s %8s %8s\n' template new_s build_s up_s total_s up_warm wasmtime
for template in "${templates[@]}"; do
    app="$work/$template-app"
    rm -rf "$app"
    search_path="$(path_for "$template")"
    t0=$(now)
    (cd "$work" && "$wisp" new "$template" "$template-app" --accept-defaults >/dev/null 2>&1)
    # The Rust templates share one target directory, as a developer's cargo cache would.
    if [ -f "$app/Cargo.toml" ]; then ln -s "$work/cargo-target" "$app/target"; mkdir -p "$work/cargo-target"; fi
    t1=$(now)
    (cd "$app" && PATH="$search_path" "$wisp" build >"$work/$template-build.log" 2>&1) ||
        { echo "$template: build failed, see $work/$template-build.log" >&2; continue; }
    t2=$(now)
    cache="$work/compile-cache-$template"
    rm -rf "$cache"
    WISP_CACHE_DIR="$cache" "$wisp" up -f "$app/spin.toml" --listen "127.0.0.1:$port" \
        >"$work/$template-up.log" 2>&1 &
    pid=$!
    first_200 $pid || echo "$template: no 200 within 120 s, see $work/$template-up.log" >&2
    t3=$(now)
    stop $pid
    WISP_CACHE_DIR="$cache" "$wisp" up -f "$app/spin.toml" --listen "127.0.0.1:$port" \
        >>"$work/$template-up.log" 2>&1 &
    pid=$!
    t4=$(now)
    first_200 $pid || echo "$template: no 200 from the warm start, see $work/$template-up.log" >&2
    t5=$(now)
    stop $pid
    wasmtime_s=n/a
    source="$(sed -nE 's/^source = "(.*)"$/\1/p' "$app/spin.toml" | head -1)"
    if [ -n "$wasmtime_bin" ] && [ -f "$app/$source" ]; then
        t6=$(now)
        "$wasmtime_bin" serve -Scli -Ccache=n --addr "127.0.0.1:$port" "$app/$source" \
            >"$work/$template-wasmtime.log" 2>&1 &
        pid=$!
        if first_200 $pid; then wasmtime_s="$(elapsed "$t6" "$(now)")"; fi
        stop $pid
    fi
    printf '%-10s %7s %7s %7s %7s %8s %8s\n' "$template" "$(elapsed "$t0" "$t1")" \
        "$(elapsed "$t1" "$t2")" "$(elapsed "$t2" "$t3")" "$(elapsed "$t0" "$t3")" \
        "$(elapsed "$t4" "$t5")" "$wasmtime_s"
done
