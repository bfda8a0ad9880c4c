#!/usr/bin/env bash
# Prints a directory holding `nasm`, for PATH, fetching it first when the machine has none.
# OpenH264 (the H.264 encoder, built from source by openh264-sys2) compiles its x86 assembly only
# when nasm is on PATH at build time; without it the build silently falls back to C and encodes
# 2–3× slower, which the MP4 finishing after the last frame shows end to end. Debian's nasm
# package (one binary, libc only) is downloaded by tools/debian_package.sh and unpacked into
# .nasm/ (gitignored), not installed.
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
    tools/debian_package.sh bookworm nasm "$DIR"
fi
"$BIN" -v >&2
dirname "$BIN"
