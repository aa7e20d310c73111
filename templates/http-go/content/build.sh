#!/usr/bin/env bash
# Builds target/{{project-name}}.wasm, a wasi:http/proxy component, from this Go module.
# Needs: Go >= 1.25 (GOOS=wasip1 with //go:wasmexport) and wasm-tools (component embed/new).
# After editing wit/, regenerate the bindings with wit-bindgen 0.63.0: REGEN=1 bash build.sh
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=

command -v go >/dev/null ||
    { echo "error: no \`go\` on the PATH; install Go 1.25 or newer (see wisp's docs/cli/new.md)" >&2; exit 1; }
command -v wasm-tools >/dev/null ||
    { echo "error: no \`wasm-tools\` on the PATH; cargo install --locked wasm-tools" >&2; exit 1; }
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
if [ "${go_minor:-0}" -lt 25 ] 2>/dev/null; then
    echo "error: $(go env GOVERSION) is too old; this template needs Go 1.25 or newer" >&2
    exit 1
fi

if [ "${REGEN:-0}" = 1 ]; then
    wit-bindgen go --world wisp:hello/hello wit >/dev/null
    go mod edit -go=1.25 -replace go.bytecodealliance.org/pkg=./gopkg
fi
mkdir -p target
# -checklinkname=0: the bindings' runtime links to runtime.sbrk.
GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -ldflags=-checklinkname=0 -o target/core.wasm .
wasm-tools component embed --world wisp:hello/hello wit target/core.wasm -o target/core.embed.wasm
wasm-tools component new target/core.embed.wasm --adapt wasi_snapshot_preview1.proxy.wasm \
    -o target/{{project-name}}.wasm
