#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time (default 30 s; first argument
# or WISP_FUZZ_SECONDS), starting from the checked-in corpus. Fails on the first crash,
# panic, leak-free timeout or out-of-memory, printing the input that caused it (saved
# under fuzz/artifacts/<target>/); a found crash becomes a regression test in the crate
# that owns the reader. New inputs go to a temporary directory, not the checked-in corpus
# (to grow that: `fuzz/run.sh 600 --keep`, then `cargo fuzz cmin <target>`).
#
# This machine has one Rust toolchain, stable, and no other can be installed: libFuzzer's
# instrumentation flags are nightly-only, so the build sets RUSTC_BOOTSTRAP=1 for this
# build alone (the flags are stable in all but name; the main build never sees them).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-${WISP_FUZZ_SECONDS:-30}}
keep=${2:-}
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    cargo install --locked "cargo-fuzz@$cargo_fuzz_version"
fi

# Rust panics are what the targets look for (the code under test forbids `unsafe`), so
# no sanitizer: an instrumented build without one is several times faster to build and run.
flags=(--sanitizer none)
cargo fuzz build "${flags[@]}"

targets=$(cargo fuzz list)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for target in $targets; do
    mkdir -p "corpus/$target"
    new="$work/$target"
    if [ "$keep" = "--keep" ]; then new="corpus/$target"; fi
    mkdir -p "$new"
    log="$work/$target.log"
    if cargo fuzz run "${flags[@]}" "$target" "$new" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
        echo "fuzz $target: ${seconds} s, $runs inputs run, coverage $cov edges, no crash"
    else
        failed=1
        echo "fuzz $target: FAILED"
        tail -40 "$log"
        artifact=$(grep -o "artifacts/$target/[^ ]*" "$log" | head -1 || true)
        if [ -n "$artifact" ] && [ -f "$artifact" ]; then
            echo "the input (base64), saved at fuzz/$artifact:"
            base64 "$artifact" | head -50
        fi
    fi
done
exit $failed
