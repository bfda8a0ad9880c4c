#!/usr/bin/env bash
# Downloads one package from Debian's archive and unpacks it into a directory, without
# installing it: apt runs on a private source list and cache, the system's apt state untouched.
# For tools a build or test needs that the machine may lack (tools/compose_v2.sh, tools/nasm.sh).
#
# Usage: tools/debian_package.sh SUITE PACKAGE DIR    (e.g. trixie docker-compose .compose-v2)
set -euo pipefail
suite=${1:?suite}
package=${2:?package}
dir=${3:?directory}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
    >"$work/sources.list"
apt=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt[@]}" -qq update >&2
(cd "$work" && apt-get "${apt[@]}" -qq download "$package" >&2)
rm -rf "$dir"
dpkg -x "$work/${package}"_*.deb "$dir"
