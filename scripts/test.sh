#!/usr/bin/env bash
# The test command: installs what the tests need on this kind of machine (the pinned Rust
# toolchain's wasm targets, Node.js 20+ with npm, python3-venv, Go and wasm-tools, the
# Debian servers), starts the servers on loopback, then runs every test.
#   scripts/test.sh            the full tier (what CI runs)
#   scripts/test.sh --fast     the fast tier only: unit tests, no server (installs only the
#                              C libraries the build links)
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p wisp-cli --test up).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# What building the workspace needs beyond Rust (both tiers): the containerd shim links
# libseccomp (youki's libcontainer, through runwasi).
if ! pkg-config --exists libseccomp 2>/dev/null || ! command -v protoc >/dev/null 2>&1; then
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        libseccomp-dev pkg-config protobuf-compiler
fi

if [ "${1:-}" = "--fast" ]; then
    shift
    exec cargo test-fast "$@"
fi

# The toolchain and wasm targets pinned in rust-toolchain.toml (no-ops when present).
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install 1.95.0 --profile minimal
rustup target add wasm32-wasip2 wasm32-wasip1

# Node.js 20+ with npm for the http-js template test (npm fetches componentize-js from the
# npm registry; its dependencies need Node 20). This kind of machine has NodeSource's apt
# source, so `apt-get install nodejs` gives Node 20 there.
node_major() { # 0 when there is no node
    local version
    version="$(node --version 2>/dev/null)" || { echo 0; return; }
    echo "$version" | sed -E 's/^v([0-9]+).*/\1/'
}
if ! command -v npm >/dev/null 2>&1 || [ "$(node_major)" -lt 20 ]; then
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends nodejs npm ||
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q nodejs
fi
if [ "$(node_major)" -lt 20 ]; then
    echo "error: the http-js test needs Node.js 20 or newer, found $(node --version 2>&1)" >&2
    exit 1
fi

# curl and openssl for the inbound TLS test (a certificate made per run, HTTPS and HTTP/2).
if ! command -v curl >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends curl openssl ca-certificates
fi

# python3 with venv and ensurepip for the Python SDK tests (they build their own venv).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends python3-venv
fi

# Go (Debian trixie-backports) and wasm-tools (Cargo registry) for the http-go template test,
# under ~/.cache/wisp/tools, where the test looks.
bash scripts/install-go.sh

# containerd 1.7 beside the system's 1.6, for the shim's tests of wasm-layer images.
bash scripts/install-containerd.sh

# Real servers the tests use (they fail, not skip, without them), installed from Debian
# packages when missing and started on loopback: redis, mosquitto, PostgreSQL, MariaDB;
# docker-registry and htpasswd for the OCI tests, which start their own registries.
bash scripts/test-services.sh

cargo test --workspace "$@"
