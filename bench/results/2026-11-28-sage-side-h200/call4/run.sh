#!/usr/bin/env bash
# Session 19, call 4: SageSLA 0.1's stages on a 1.3B forward's own q, k, v (layer 15, each rCM
# timestep) against Gaussian ones of the same shape (new4 = ea0fed7 + the timing rows).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 300 .gpu/new4/turbine-gpucheck --parts sage-forward --json $R/sf.json > $R/sf.log 2>&1; echo "sage-forward rc $? t=$SECONDS"
grep -v INFO $R/sf.log | grep -A8 "stages on" | head -60
grep -E "whole|^sage|FAIL|ALL CHECKS" $R/sf.log | tail -6
cd $R/.. && tar czf results.tgz r && rm -rf r
