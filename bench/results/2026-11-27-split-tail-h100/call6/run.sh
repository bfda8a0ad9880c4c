#!/usr/bin/env bash
# Session 13, call 6: the final build (bc2980f: the split's workspace and merge launch in one
# place): op checks, the tiny DiT against the CPU and diffusers, the Sage checks and timings, and
# the 8-bit attention on a 1.3B forward's own activations.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
timeout 400 .gpu/new/turbine-gpucheck --parts ops,dit,sage,sage-forward --json $R/check.json > $R/check.log 2>&1; echo "check rc $? t=$SECONDS"
grep -E "FAIL|passed|failed" $R/check.log | tail -6
grep -E "sage|flash|TOPS|rel L2" $R/check.log | grep -v INFO | head -60
cd $R/.. && tar czf results.tgz r && rm -rf r
