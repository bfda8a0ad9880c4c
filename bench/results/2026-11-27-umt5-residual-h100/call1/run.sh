#!/usr/bin/env bash
# Session 14, call 1: umT5's residual and gated layers kept in f32 (linear_residual,
# linear_gated_gelu): op checks of the new build, then umT5-XXL parity and speed, old vs new
# build on the same transformers weights and references.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -4
grep -E "linear_residual|gated_gelu" $R/ops.log | head -12
U=/tmp/turbine-umt5
timeout 300 python3 tools/gpu/umt5_parity.py --dir $U > $R/transformers.log 2>&1; echo "parity rc $? t=$SECONDS"
tail -3 $R/transformers.log
for side in old new old new; do
  timeout 120 .gpu/$side/turbine-gpucheck --parts umt5 --umt5-weights $U/umt5-xxl.safetensors --umt5-reference $U/reference.safetensors --json $R/umt5-$side.json > $R/umt5-$side.log 2>&1; echo "umt5 $side rc $? t=$SECONDS"
  grep -iE "xxl|rel|ms" $R/umt5-$side.log | grep -v INFO | tail -8
done
cd $R/.. && tar czf results.tgz r && rm -rf r
