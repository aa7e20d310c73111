#!/usr/bin/env bash
# Installs what the http-go template builds with, from package registries only (no Go
# module proxy, no dl.google.com):
#   - Go 1.27 from Debian's trixie-backports (golang-1.27-go and golang-1.27-src), from the
#     Debian mirror this machine's apt sources name; the suite's InRelease is verified with
#     gpgv against the Debian archive keyring, the package index against the SHA256 in it,
#     and each package against the SHA256 in the index; unpacked without root (all done by
#     scripts/debian-archive.sh);
#   - wasm-tools from the Cargo registry (only its component, validate, print and parse features).
# Both land in one directory (default ~/.cache/wisp/tools): put its bin/ on the PATH.
# Idempotent; .ci/run calls it, and the http-go template test looks there.
#
#   scripts/install-go.sh && export PATH="$HOME/.cache/wisp/tools/bin:$PATH"
set -euo pipefail
tools="${WISP_TOOLS_DIR:-$HOME/.cache/wisp/tools}"
go_minor=1.27
wasm_tools_version=1.263.0
arch="$(dpkg --print-architecture)"
# debian_mirror, debian_need_tools, debian_index, debian_has_package, debian_unpack.
source "$(dirname "${BASH_SOURCE[0]}")/debian-archive.sh"

debian="$(debian_mirror)"
if [ -z "$debian" ]; then
    echo "error: no Debian archive among this machine's apt sources (/etc/apt/sources.list*); add one, or install Go 1.25+ yourself and put it on the PATH" >&2
    exit 1
fi
mkdir -p "$tools/bin" "$tools/downloads"

debian_need_tools

go_dir="$tools/go-$go_minor"
goroot="$go_dir/usr/lib/go-$go_minor"
# debian_unpack writes the marker last: a run that died half-way is redone, not taken as done.
if [ ! -f "$go_dir/.installed" ]; then
    debian_index "$debian" trixie-backports "$tools/downloads"
    packages="$tools/downloads/trixie-backports-Packages-$arch"
    for package in "golang-$go_minor-go" "golang-$go_minor-src"; do
        if ! debian_has_package "$packages" "$package"; then
            echo "error: $package is not in Debian's trixie-backports for $arch any more; update go_minor in $0" >&2
            exit 1
        fi
    done
    debian_unpack "$debian" "$packages" "$tools/downloads" "$go_dir" "golang-$go_minor-go" "golang-$go_minor-src"
fi
ln -sf "$goroot/bin/go" "$goroot/bin/gofmt" "$tools/bin/"
"$tools/bin/go" version

if ! "$tools/bin/wasm-tools" --version 2>/dev/null | grep -q "^wasm-tools $wasm_tools_version"; then
    echo "installing wasm-tools $wasm_tools_version from the Cargo registry (about two minutes)"
    cargo install --quiet --locked "wasm-tools@$wasm_tools_version" --no-default-features \
        --features component,validate,print,parse --root "$tools"
fi
"$tools/bin/wasm-tools" --version
