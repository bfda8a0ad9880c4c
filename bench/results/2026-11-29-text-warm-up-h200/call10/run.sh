#!/usr/bin/env bash
# Session 29, call 10 (review mend): the heuristic's warm-up and the text stage's GEMM warm-up
# built from one unbound-shape query: --parts fp8 (its kinds warmed at backend start) and umt5.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/new/turbine-gpucheck.gz; chmod +x .gpu/new/turbine-gpucheck
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
RUST_LOG=turbine_tensor::cuda::gemm=debug timeout 150 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "passed|FAIL" $R/fp8.log | tail -3; echo "heuristic warm-up failures: $(grep -c 'heuristic warm-up' $R/fp8.log)"
U=/tmp/turbine-umt5
WORK=/tmp/turbine-e2e source tools/gpu/wheels.sh
timeout 300 python3 tools/gpu/umt5_parity.py --dir $U --lengths 512,77 > $R/umt5-weights.log 2>&1; echo "weights rc $? t=$SECONDS"
timeout 150 .gpu/new/turbine-gpucheck --parts umt5 --umt5-weights $U/umt5-xxl.safetensors --umt5-reference $U/reference.safetensors --json $R/umt5.json > $R/umt5.log 2>&1; echo "umt5 rc $? t=$SECONDS"
grep -E "512 tokens|77 tokens|warm-up|450 tokens, first" $R/umt5.log | cut -c1-160; grep -o "cached blocks.*" $R/umt5.log
sed -i '/cuBLASLt heuristic shape/d' $R/fp8.log
cd $R/.. && tar czf results.tgz r && rm -rf r
