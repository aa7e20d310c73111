#!/usr/bin/env bash
# Installs what the http-go template builds with, from package registries only (no Go
# module proxy, no dl.google.com):
#   - Go 1.27 from Debian's trixie-backports (golang-1.27-go and golang-1.27-src, checked
#     against the SHA256 in Debian's package index, unpacked without root);
#   - wasm-tools from crates.io (only its component, validate, print and parse features).
# Both land in one directory (default ~/.cache/wisp/tools): put its bin/ on the PATH.
# Idempotent; .ci/run calls it, and the http-go template test looks there.
#
#   scripts/install-go.sh && export PATH="$HOME/.cache/wisp/tools/bin:$PATH"
set -euo pipefail
tools="${WISP_TOOLS_DIR:-$HOME/.cache/wisp/tools}"
go_minor=1.27
wasm_tools_version=1.263.0
debian=http://deb.debian.org/debian
mkdir -p "$tools/bin" "$tools/downloads"

goroot="$tools/go-$go_minor/usr/lib/go-$go_minor"
if [ ! -x "$goroot/bin/go" ]; then
    index="$tools/downloads/trixie-backports-Packages.xz"
    curl -sSfL -o "$index" "$debian/dists/trixie-backports/main/binary-amd64/Packages.xz"
    for package in "golang-$go_minor-go" "golang-$go_minor-src"; do
        read -r file sha256 < <(xz -dc "$index" | awk -v p="$package" '
            $1 == "Package:" { current = $2 }
            current == p && $1 == "Filename:" { file = $2 }
            current == p && $1 == "SHA256:" { sum = $2 }
            $0 == "" && current == p && file != "" { print file, sum; exit }')
        [ -n "${file:-}" ] || { echo "error: $package is not in trixie-backports any more" >&2; exit 1; }
        deb="$tools/downloads/$(basename "$file")"
        echo "downloading $debian/$file"
        curl -sSfL -o "$deb" "$debian/$file"
        echo "$sha256  $deb" | sha256sum -c --quiet -
        dpkg-deb -x "$deb" "$tools/go-$go_minor"
    done
fi
ln -sf "$goroot/bin/go" "$goroot/bin/gofmt" "$tools/bin/"
"$tools/bin/go" version

if ! "$tools/bin/wasm-tools" --version 2>/dev/null | grep -q "^wasm-tools $wasm_tools_version"; then
    echo "installing wasm-tools $wasm_tools_version from crates.io (about two minutes)"
    cargo install --quiet --locked "wasm-tools@$wasm_tools_version" --no-default-features \
        --features component,validate,print,parse --root "$tools"
fi
"$tools/bin/wasm-tools" --version
