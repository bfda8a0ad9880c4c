#!/usr/bin/env bash
# Session 19, call 6: the review mend (the selection probe's pipeline in sage.rs): part sage.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 250 .gpu/new6/turbine-gpucheck --parts sage --json $R/sage.json > $R/sage.log 2>&1; echo "sage rc $? t=$SECONDS"
grep -E "select|FAIL|passed|failed|ALL CHECKS" $R/sage.log | grep -v INFO | tail -8
cd $R/.. && tar czf results.tgz r && rm -rf r
