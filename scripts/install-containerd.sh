#!/usr/bin/env bash
# Installs Debian trixie's containerd (1.7.x) into a private directory, default
# ~/.cache/wisp/tools/containerd-trixie, beside bookworm's containerd 1.6, which refuses
# images whose layers are raw wasm blobs. Nothing is installed over the system's packages
# (no dpkg -i, no maintainer scripts): the shim's tests start $dir/usr/bin/containerd
# themselves, with $dir/usr/bin first on its PATH (else it runs bookworm's
# /usr/bin/containerd-shim-runc-v2) and bookworm's runc 1.1 (/usr/sbin/runc), which serves.
# The package comes from the Debian mirror this machine's apt sources name, verified from
# the Debian archive keyring down (scripts/debian-archive.sh). Idempotent.
#
#   scripts/install-containerd.sh
set -euo pipefail
tools="${WISP_TOOLS_DIR:-$HOME/.cache/wisp/tools}"
dir="$tools/containerd-trixie"
arch="$(dpkg --print-architecture)"
# debian_mirror, debian_need_tools, debian_index, debian_has_package, debian_unpack.
source "$(dirname "${BASH_SOURCE[0]}")/debian-archive.sh"

# debian_unpack writes the marker last: a run that died half-way is redone, not taken as done.
if [ ! -f "$dir/.installed" ]; then
    debian="$(debian_mirror)"
    if [ -z "$debian" ]; then
        echo "error: no Debian archive among this machine's apt sources (/etc/apt/sources.list*); add one, or set WISP_TOOLS_DIR to a directory holding containerd-trixie/usr/bin/containerd 1.7" >&2
        exit 1
    fi
    debian_need_tools
    debian_index "$debian" trixie "$tools/downloads"
    packages="$tools/downloads/trixie-Packages-$arch"
    if ! debian_has_package "$packages" containerd; then
        echo "error: containerd is not in Debian's trixie for $arch; install containerd 1.7 into $dir/usr/bin by hand" >&2
        exit 1
    fi
    # Only containerd itself: bookworm's runc 1.1 runs its containers.
    debian_unpack "$debian" "$packages" "$tools/downloads" "$dir" containerd
fi
"$dir/usr/bin/containerd" --version
