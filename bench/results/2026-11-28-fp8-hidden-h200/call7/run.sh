#!/usr/bin/env bash
# Session 18, call 7: cuBLASLt's first eight algorithms for the FFN-in GEMM, outer-vector bf16 out
# against scalar e4m3 out, at the 14B 720p and 1.3B 480p shapes (GELU + bias epilogue).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 python3 .gpu/lt_probe.py 2>&1 | tee $R/candidates.log
cd $R/.. && tar czf results.tgz r && rm -rf r
