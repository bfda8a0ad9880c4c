#!/usr/bin/env bash
# Prints the path of a Docker Compose v2 binary, fetching it first when needed: the machines this
# project is tested on carry Debian 12's docker-compose (v1, Python), while most users run Compose
# v2 (`docker compose`). Debian 13's docker-compose package is v2, one static Go binary (libc
# only); tools/debian_package.sh downloads it from Debian's archive and unpacks it into
# .compose-v2/ (gitignored), not installed.
#
# Usage: compose=$(tools/compose_v2.sh) && "$compose" version
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=$PWD/.compose-v2
BIN=$DIR/usr/libexec/docker/cli-plugins/docker-compose
if [ ! -x "$BIN" ]; then
    tools/debian_package.sh trixie docker-compose "$DIR"
fi
"$BIN" version >&2
echo "$BIN"
