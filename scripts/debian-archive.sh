# Functions for taking packages of another Debian release (say trixie on a bookworm
# machine) straight from the Debian archive, without apt or root: unpacked into a private
# directory, never installed over the system's own packages. Source it from a bash script
# running under `set -euo pipefail`; every function exits the script on an error.
#
#   debian_mirror                        the Debian archive this machine's apt uses
#   debian_need_tools                    installs curl and xz with apt when missing
#   debian_index ARCHIVE SUITE DOWNLOADS the suite's main package index, verified
#   debian_has_package INDEX PACKAGE     whether the index lists the package
#   debian_unpack ARCHIVE INDEX DOWNLOADS DIR PACKAGE...
#                                        the packages, verified, unpacked into DIR
#
# Trust runs from the Debian archive keyring: the suite's InRelease must be signed by it,
# the Packages index must match the SHA256 in that signed Release, and each .deb the
# SHA256 in the index. No mirror host is written here: it comes from the apt sources.

debian_keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# The Debian archive this machine's apt uses: the first source (deb822 `.sources` or
# one-line `deb`) signed by the Debian archive keyring or carrying the release's own suite,
# whose URI ends in /debian. Prints nothing when there is none.
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

# curl and xz fetch and read the archive; gpgv and dpkg-deb come with every Debian.
debian_need_tools() {
    local missing=() sudo=""
    command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
    command -v xz >/dev/null 2>&1 || missing+=(xz-utils)
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

# debian_index ARCHIVE SUITE DOWNLOADS: downloads SUITE's InRelease and main Packages.xz
# for this machine's architecture into DOWNLOADS and verifies them; the index, unpacked,
# is then DOWNLOADS/SUITE-Packages-ARCH (ARCH as `dpkg --print-architecture` says).
debian_index() {
    local archive="$1" suite="$2" downloads="$3" arch url sha256
    arch="$(dpkg --print-architecture)"
    url="$archive/dists/$suite"
    mkdir -p "$downloads"
    curl -sSfL -o "$downloads/$suite-InRelease" "$url/InRelease"
    # Only a Release file signed by Debian's archive keys is trusted, and through it the
    # index and the packages.
    if ! gpgv --quiet --keyring "$debian_keyring" --output "$downloads/$suite-Release" \
        "$downloads/$suite-InRelease" 2>/dev/null; then
        echo "error: $url/InRelease is not signed by a key in $debian_keyring; refusing its packages (is debian-archive-keyring current?)" >&2
        exit 1
    fi
    sha256="$(awk -v f="main/binary-$arch/Packages.xz" '
        $1 == "SHA256:" { in_sha = 1; next }
        /^[^ ]/ { in_sha = 0 }
        in_sha && $3 == f { print $1; exit }' "$downloads/$suite-Release")"
    if [ -z "$sha256" ]; then
        echo "error: the signed Release of $suite lists no main/binary-$arch/Packages.xz" >&2
        exit 1
    fi
    curl -sSfL -o "$downloads/$suite-Packages-$arch.xz" "$url/main/binary-$arch/Packages.xz"
    echo "$sha256  $downloads/$suite-Packages-$arch.xz" | sha256sum -c --quiet -
    xz -dc "$downloads/$suite-Packages-$arch.xz" >"$downloads/$suite-Packages-$arch"
}

# The "Filename SHA256" of PACKAGE in INDEX, or nothing.
debian_package_entry() {
    awk -v p="$2" '
        $1 == "Package:" { current = $2 }
        current == p && $1 == "Filename:" { file = $2 }
        current == p && $1 == "SHA256:" { sum = $2 }
        $0 == "" && current == p && file != "" { print file, sum; exit }' "$1"
}

# Whether INDEX lists PACKAGE: lets the caller say what to change when it does not.
debian_has_package() {
    [ -n "$(debian_package_entry "$1" "$2")" ]
}

# debian_unpack ARCHIVE INDEX DOWNLOADS DIR PACKAGE...: downloads each PACKAGE listed in
# INDEX into DOWNLOADS, checks it against the index's SHA256, and unpacks them all (no
# maintainer scripts run) into a fresh DIR, replacing what was there. DIR/.installed is
# written last: a run that died half-way is redone, not taken as done.
debian_unpack() {
    local archive="$1" index="$2" downloads="$3" dir="$4" unpacked package entry file sha256 deb
    shift 4
    mkdir -p "$downloads" "$(dirname "$dir")"
    unpacked="$(mktemp -d "$dir.unpack.XXXXXX")"
    for package in "$@"; do
        entry="$(debian_package_entry "$index" "$package")"
        if [ -z "$entry" ]; then
            echo "error: $package is not in $index; pick a package that suite has" >&2
            rm -rf "$unpacked"
            exit 1
        fi
        read -r file sha256 <<<"$entry"
        deb="$downloads/$(basename "$file")"
        echo "downloading $archive/$file"
        curl -sSfL -o "$deb" "$archive/$file"
        echo "$sha256  $deb" | sha256sum -c --quiet -
        dpkg-deb -x "$deb" "$unpacked"
    done
    rm -rf "$dir"
    mv "$unpacked" "$dir"
    touch "$dir/.installed"
}
