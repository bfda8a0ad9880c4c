#!/usr/bin/env bash
# Prints a directory holding `nasm`, for PATH, fetching it first when the machine has none.
# OpenH264 (the H.264 encoder, built from source by openh264-sys2) compiles its x86 assembly only
# when nasm is on PATH at build time; without it the build silently falls back to C and encodes
# about half as fast, which the MP4 finishing after the last frame shows end to end. Debian's nasm
# package (one binary, libc only) is downloaded from Debian's archive with apt (a private source
# list and cache, the system's apt state untouched) and unpacked into .nasm/ (gitignored), not
# installed.
#
# Usage: export PATH="$(tools/nasm.sh):$PATH"
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v nasm >/dev/null; then
    dirname "$(command -v nasm)"
    exit 0
fi
DIR=$PWD/.nasm
BIN=$DIR/usr/bin/nasm
if [ ! -x "$BIN" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" \
        >"$work/bookworm.list"
    apt=(-o "Dir::Etc::sourcelist=$work/bookworm.list" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
    apt-get "${apt[@]}" -qq update >&2
    (cd "$work" && apt-get "${apt[@]}" -qq download nasm >&2)
    rm -rf "$DIR"
    dpkg -x "$work"/nasm_*.deb "$DIR"
fi
"$BIN" -v >&2
dirname "$BIN"
