#!/usr/bin/env bash
# Session 18, call 2: which cuBLASLt FP8 scale modes take an e4m3 output (and GELU + bias) on this GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 300 python3 .gpu/lt_probe.py 2>&1 | tee $R/probe.log
cd $R/.. && tar czf results.tgz r && rm -rf r
