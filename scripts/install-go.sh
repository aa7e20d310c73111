#!/usr/bin/env bash
# Installs what the http-go template builds with, from package registries only (no Go
# module proxy, no dl.google.com):
#   - Go 1.27 from Debian's trixie-backports (golang-1.27-go and golang-1.27-src), from the
#     Debian mirror this machine's apt sources name; the suite's InRelease is verified with
#     gpgv against the Debian archive keyring, the package index against the SHA256 in it,
#     and each package against the SHA256 in the index; unpacked without root;
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
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# The Debian archive this machine's apt uses: the first source (deb822 `.sources` or
# one-line `deb`) signed by the Debian archive keyring or carrying the release's own suite,
# whose URI ends in /debian. No mirror host is written in this script.
debian_mirror() {
    local codename
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    {
        for file in /etc/apt/sources.list.d/*.sources; do
            [ -f "$file" ] || continue
            awk -v codename="$codename" '
                function flush() {
                    if (uris != "" && (suites ~ ("(^| )" codename "( |$)") || signed ~ /debian-archive/)) {
                        n = split(uris, list, " ")
                        for (i = 1; i <= n; i++) if (list[i] ~ /\/debian\/?$/) print list[i]
                    }
                    uris = ""; suites = ""; signed = ""
                }
                /^[ \t]*$/ { flush(); next }
                $1 == "URIs:" { $1 = ""; uris = $0 }
                $1 == "Suites:" { $1 = ""; suites = $0 " " }
                $1 == "Signed-By:" { signed = $2 }
                END { flush() }' "$file"
        done
        { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
            awk -v codename="$codename" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == codename && $i ~ /\/debian\/?$/) print $i
                }'
    } | awk 'NR == 1' | sed 's:/*$::'
}
debian="$(debian_mirror)"
if [ -z "$debian" ]; then
    echo "error: no Debian archive among this machine's apt sources (/etc/apt/sources.list*); add one, or install Go 1.25+ yourself and put it on the PATH" >&2
    exit 1
fi
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
    suite="$debian/dists/trixie-backports"
    in_release="$tools/downloads/trixie-backports-InRelease"
    release="$tools/downloads/trixie-backports-Release"
    curl -sSfL -o "$in_release" "$suite/InRelease"
    # Only a Release file signed by Debian's archive keys is trusted, and through it the
    # index and the packages.
    if ! gpgv --quiet --keyring "$keyring" --output "$release" "$in_release" 2>/dev/null; then
        echo "error: $suite/InRelease is not signed by a key in $keyring; refusing its packages (is debian-archive-keyring current?)" >&2
        exit 1
    fi
    index="$tools/downloads/trixie-backports-Packages-$arch.xz"
    index_sha256="$(awk -v f="main/binary-$arch/Packages.xz" '
        $1 == "SHA256:" { in_sha = 1; next }
        /^[^ ]/ { in_sha = 0 }
        in_sha && $3 == f { print $1; exit }' "$release")"
    if [ -z "$index_sha256" ]; then
        echo "error: the signed Release of trixie-backports lists no main/binary-$arch/Packages.xz" >&2
        exit 1
    fi
    curl -sSfL -o "$index" "$suite/main/binary-$arch/Packages.xz"
    echo "$index_sha256  $index" | sha256sum -c --quiet -
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
    echo "installing wasm-tools $wasm_tools_version from the Cargo registry (about two minutes)"
    cargo install --quiet --locked "wasm-tools@$wasm_tools_version" --no-default-features \
        --features component,validate,print,parse --root "$tools"
fi
"$tools/bin/wasm-tools" --version
