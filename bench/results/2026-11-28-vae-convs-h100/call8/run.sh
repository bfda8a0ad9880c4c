#!/usr/bin/env bash
# Session 15, call 8: the second review mend (one operand conversion for both conv engines): op checks and `--parts vae`.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/new/*.gz; chmod +x .gpu/new/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "conv3d_add|folded.*16\]" $R/ops.log; grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
timeout 90 .gpu/new/turbine-gpucheck --parts vae --json $R/vae.json > $R/vae.log 2>&1; echo "vae rc $? t=$SECONDS"
grep -hE "conv 96|head conv|^decode|^encode|ALL CHECKS|FAIL" $R/vae.log
cd $R/.. && tar czf results.tgz r && rm -rf r
