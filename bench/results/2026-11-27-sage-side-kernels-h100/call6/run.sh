#!/usr/bin/env bash
# Session 11, call 6: cuBLASLt's heuristic candidates at the Wan linear shapes (fp8-bench's new
# table), and the op / FP8 checks after the GEMM set-up was factored out (problem(), dense_gemm,
# fp8_gemm).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/turbine-gpucheck
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
timeout 250 .gpu/turbine-gpucheck --parts ops,fp8,fp8-bench --json $R/check.json > $R/check.log 2>&1; echo "check rc $? t=$SECONDS"
grep -E "FAIL|ALL CHECKS|passed|failed" $R/check.log | head
sed -n '/FP8 vs bf16 linears/,$p' $R/check.log | head -60
cd $R/.. && tar czf results.tgz r && rm -rf r
