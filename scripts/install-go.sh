#!/usr/bin/env bash
# Installs what the http-go template builds with, from package registries only (no Go
# module proxy, no dl.google.com):
#   - Go 1.27 from Debian's trixie-backports (golang-1.27-go and golang-1.27-src, over
#     https, checked against the SHA256 in Debian's package index, unpacked without root);
#   - wasm-tools from crates.io (only its component, validate, print and parse features).
# Both land in one directory (default ~/.cache/wisp/tools): put its bin/ on the PATH.
# Idempotent; .ci/run calls it, and the http-go template test looks there.
#
#   scripts/install-go.sh && export PATH="$HOME/.cache/wisp/tools/bin:$PATH"
set -euo pipefail
tools="${WISP_TOOLS_DIR:-$HOME/.cache/wisp/tools}"
go_minor=1.27
wasm_tools_version=1.263.0
debian=https://deb.debian.org/debian
arch="$(dpkg --print-architecture)"
mkdir -p "$tools/bin" "$tools/downloads"

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
command -v xz >/dev/null 2>&1 || missing+=(xz-utils)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

go_dir="$tools/go-$go_minor"
goroot="$go_dir/usr/lib/go-$go_minor"
# The marker is written last: a run that died half-way is redone, not taken as done.
if [ ! -f "$go_dir/.installed" ]; then
    index="$tools/downloads/trixie-backports-Packages-$arch.xz"
    curl -sSfL -o "$index" "$debian/dists/trixie-backports/main/binary-$arch/Packages.xz"
    packages="$tools/downloads/trixie-backports-Packages-$arch"
    xz -dc "$index" >"$packages"
    unpacked="$(mktemp -d "$tools/go-unpack.XXXXXX")"
    for package in "golang-$go_minor-go" "golang-$go_minor-src"; do
        entry="$(awk -v p="$package" '
            $1 == "Package:" { current = $2 }
            current == p && $1 == "Filename:" { file = $2 }
            current == p && $1 == "SHA256:" { sum = $2 }
            $0 == "" && current == p && file != "" { print file, sum; exit }' "$packages")"
        if [ -z "$entry" ]; then
            echo "error: $package is not in Debian's trixie-backports for $arch any more; update go_minor in $0" >&2
            exit 1
        fi
        read -r file sha256 <<<"$entry"
        deb="$tools/downloads/$(basename "$file")"
        echo "downloading $debian/$file"
        curl -sSfL -o "$deb" "$debian/$file"
        echo "$sha256  $deb" | sha256sum -c --quiet -
        dpkg-deb -x "$deb" "$unpacked"
    done
    rm -rf "$go_dir"
    mv "$unpacked" "$go_dir"
    touch "$go_dir/.installed"
fi
ln -sf "$goroot/bin/go" "$goroot/bin/gofmt" "$tools/bin/"
"$tools/bin/go" version

if ! "$tools/bin/wasm-tools" --version 2>/dev/null | grep -q "^wasm-tools $wasm_tools_version"; then
    echo "installing wasm-tools $wasm_tools_version from crates.io (about two minutes)"
    cargo install --quiet --locked "wasm-tools@$wasm_tools_version" --no-default-features \
        --features component,validate,print,parse --root "$tools"
fi
"$tools/bin/wasm-tools" --version
