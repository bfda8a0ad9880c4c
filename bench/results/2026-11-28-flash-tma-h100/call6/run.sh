#!/usr/bin/env bash
# Session 17, call 6: op and sage checks of the review mend (the flash launcher's TMA choice in
# its launch-shape match; the unused cp.async mbarrier helper removed).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/new/*.gz; chmod +x .gpu/new/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 120 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -2
timeout 120 .gpu/new/turbine-gpucheck --parts sage --json $R/sage.json > $R/sage.log 2>&1; echo "sage rc $? t=$SECONDS"
grep -E "bf16 flash|FAIL|failed" $R/sage.log | grep -v INFO
cd $R/.. && tar czf results.tgz r && rm -rf r
