#!/usr/bin/env bash
# Session 22, call 6: the final HEAD's `TRACE=1 tools/gpu/services_check.sh` (warm-up in dense +
# SageSLA, two requests, the too-big request refused before any work, a normal one after,
# SIGTERM, umT5 on the CPU for lack of room; each job's spans printed).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/*.gz; chmod +x .gpu/turbine .gpu/otlp_dump
OUT=$R/svc TRACE=1 timeout 560 bash tools/gpu/services_check.sh > $R/svc.log 2>&1; echo "services_check rc $? t=$SECONDS"
grep -v "^\s*[0-9.]\+ \+[0-9.]\+ \+[0-9.]\+  \+turbine.v1.TextEncoder" $R/svc.log | grep -vE "^/tmp|^total|^d|^-|^l|^$" | tail -90
rm -f $R/svc/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
