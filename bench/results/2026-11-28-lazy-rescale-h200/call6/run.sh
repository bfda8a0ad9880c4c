#!/usr/bin/env bash
# Session 21, call 6: the final HEAD's kernels (dce7288, a comment-only mend in sage.cu after
# call 4) checked: `--parts ops,sage`.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/*.gz; chmod +x .gpu/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/turbine-gpucheck --parts ops,sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|vs CPU|vs f32 SLA|proj_l = 0|^sage dense, wgmma|^sagesla topk" $R/check.log | grep -v INFO | tail -16
cd $R/.. && tar czf results.tgz r && rm -rf r
