#!/usr/bin/env bash
# CPython 3.13 and 3.14 for the attach tests (memdiag runs on 3.11 and goes into services
# running these), from Debian's own packages: trixie's python3.13 and sid's python3.14.
#
# Each is unpacked under .ci/cache/pythons/SUITE with the C library and the other libraries
# it was built against, and a copy of its binary is pointed at them (patchelf: the loader
# and the library path), so it runs beside the system's older libc. The system's apt state
# is not touched: each suite has its own sources, lists and cache, and the packages are
# checked against Debian's archive keyring. Prints the interpreters' paths, ':'-separated.
# Idempotent: a cached interpreter that runs is used as it is.
#
# Usage: export MEMDIAG_TEST_PYTHONS="$(.ci/pythons.sh)"
set -euo pipefail
cd "$(dirname "$0")"
CACHE="$PWD/cache/pythons"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { echo "pythons.sh: $*" >&2; }

fetch() {
    local suite=$1 version=$2
    local dir="$CACHE/$suite"
    local bin="$dir/root/usr/bin/python$version-local"
    if [ -x "$bin" ] && "$bin" -I -S -c pass 2>/dev/null; then
        echo "$bin"
        return
    fi
    log "unpacking python$version from Debian $suite"
    rm -rf "$dir"
    mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/debs" "$dir/root"
    echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $suite main" >"$dir/sources.list"
    local apt=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir" -o "Dir::Cache::archives=$dir/archives"
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    timeout 180 apt-get "${apt[@]}" update -qq >&2
    local packages
    packages=$(apt-cache "${apt[@]}" depends --recurse --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances --no-pre-depends "python$version" |
        grep -E '^[a-z0-9]' | sort -u |
        grep -vE '^(debconf|perl|dpkg|base-files|tzdata|media-types|netbase|mime-support)')
    # shellcheck disable=SC2086
    (cd "$dir/debs" && timeout 300 apt-get "${apt[@]}" download -qq $packages >&2)
    for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
    local lib="$dir/root/usr/lib/x86_64-linux-gnu"
    cp "$dir/root/usr/bin/python$version" "$bin"
    patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" --set-rpath "$lib" "$bin"
    "$bin" -I -S -c pass
    rm -rf "$dir/debs" "$dir/archives" "$dir/lists"
    echo "$bin"
}

command -v patchelf >/dev/null || { log "patchelf is missing (apt-get install patchelf)"; exit 1; }
[ "$(uname -m)" = x86_64 ] || { log "only x86_64 is set up here"; exit 1; }
first=$(fetch trixie 3.13)
second=$(fetch sid 3.14)
echo "$first:$second"
