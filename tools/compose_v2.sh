#!/usr/bin/env bash
# Prints the path of a Docker Compose v2 binary, fetching it first when needed: the machines this
# project is tested on carry Debian 12's docker-compose (v1, Python), while most users run Compose
# v2 (`docker compose`). Debian 13's docker-compose package is v2, one static Go binary (libc
# only); it is downloaded from Debian's archive with apt (a private source list and cache, the
# system's apt state untouched) and unpacked into .compose-v2/ (gitignored), not installed.
#
# Usage: compose=$(tools/compose_v2.sh) && "$compose" version
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=$PWD/.compose-v2
BIN=$DIR/usr/libexec/docker/cli-plugins/docker-compose
if [ ! -x "$BIN" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        >"$work/trixie.list"
    apt=(-o "Dir::Etc::sourcelist=$work/trixie.list" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
    apt-get "${apt[@]}" -qq update >&2
    (cd "$work" && apt-get "${apt[@]}" -qq download docker-compose >&2)
    rm -rf "$DIR"
    dpkg -x "$work"/docker-compose_*.deb "$DIR"
fi
"$BIN" version >&2
echo "$BIN"
