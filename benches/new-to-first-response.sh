#!/usr/bin/env bash
# Time from nothing to a running function, per language template:
#   wisp new <template> → wisp build → wisp up → first 200 on loopback.
# Every phase is timed separately; run it twice to see the warm-cache numbers (package
# caches of cargo, npm and pip, and wisp's compile cache, are reused between runs).
#
#   benches/new-to-first-response.sh [template ...]     (default: http-rust http-js http-py)
#   WISP=target/release/wisp benches/new-to-first-response.sh
#
# Needs the toolchains the templates build with: cargo with wasm32-wasip2, Node.js with
# npm, python3 (a venv with componentize-py and spin-sdk is made under $WORK).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
wisp="$(realpath "${WISP:-$root/target/release/wisp}")"
work="${WORK:-${TMPDIR:-/tmp}/wisp-first-response}"
port="${PORT:-3997}"
templates=("$@")
[ ${#templates[@]} -gt 0 ] || templates=(http-rust http-js http-py)
[ -x "$wisp" ] || { echo "no wisp binary at $wisp; cargo build --release -p wisp-cli, or set WISP" >&2; exit 1; }
mkdir -p "$work"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

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
    *) echo "$PATH" ;;
    esac
}

printf '%-10s %8s %8s %8s %8s\n' template new_s build_s up_s total_s
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
    WISP_CACHE_DIR="$work/compile-cache" "$wisp" up -f "$app/spin.toml" --listen "127.0.0.1:$port" \
        >"$work/$template-up.log" 2>&1 &
    pid=$!
    deadline=$((SECONDS + 120))
    until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do
        if [ $SECONDS -gt $deadline ] || ! kill -0 $pid 2>/dev/null; then
            echo "$template: no 200 within 120 s, see $work/$template-up.log" >&2
            break
        fi
        sleep 0.05
    done
    t3=$(now)
    kill $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    printf '%-10s %8s %8s %8s %8s\n' "$template" "$(elapsed "$t0" "$t1")" "$(elapsed "$t1" "$t2")" \
        "$(elapsed "$t2" "$t3")" "$(elapsed "$t0" "$t3")"
done
