#!/usr/bin/env bash
# Session 13, call 9: review mend (the split workspace's layout owned by split.cuh): op checks
# (every small flash case split) and the Sage checks (dense and SageSLA split at 1.3B / 14B).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
timeout 300 .gpu/new/turbine-gpucheck --parts ops,sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/check.log | tail -4
grep -E "vs |wgmma \[|flash \[[0-9]*, [0-9]*, 128\] \(" $R/check.log | grep -v INFO | head -20
cd $R/.. && tar czf results.tgz r && rm -rf r
