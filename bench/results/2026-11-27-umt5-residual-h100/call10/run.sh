#!/usr/bin/env bash
# Session 14, call 10: cuBLASLt's first heuristic query and first matmul per operand types (bf16
# -> bf16, bf16 -> f32, with GELU, with beta 1), each order in a fresh process (.gpu/lt_probe.py).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
source tools/gpu/cudnn.sh
timeout 120 python3 .gpu/lt_probe.py 2>&1 | tee $R/lt_probe.txt
cd $R/.. && tar czf results.tgz r && rm -rf r
