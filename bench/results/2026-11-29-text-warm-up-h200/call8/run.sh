#!/usr/bin/env bash
# Session 29, call 8: the memory the text stage's GEMM warm-up leaves in the pool's cache (umT5-XXL,
# 71 lengths), gpucheck --parts umt5 printing the cached bytes before and after it.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/new/turbine-gpucheck.gz; chmod +x .gpu/new/turbine-gpucheck
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
U=/tmp/turbine-umt5
WORK=/tmp/turbine-e2e source tools/gpu/wheels.sh
timeout 300 python3 tools/gpu/umt5_parity.py --dir $U --lengths 512,77 > $R/umt5-weights.log 2>&1; echo "weights rc $? t=$SECONDS"
timeout 150 .gpu/new/turbine-gpucheck --parts umt5 --umt5-weights $U/umt5-xxl.safetensors --json $R/umt5.json > $R/umt5.log 2>&1; echo "umt5 rc $? t=$SECONDS"
grep -E "warm-up|pool|512 tokens|77 tokens" $R/umt5.log | cut -c1-120; grep -o "cached blocks.*" $R/umt5.log
cd $R/.. && tar czf results.tgz r && rm -rf r
