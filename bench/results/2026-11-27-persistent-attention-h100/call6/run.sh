#!/usr/bin/env bash
# Session 10, call 6: the Sage kernel split like the flash one (the original for dense, a
# persistent variant for SageSLA, sharing the item code): checks and old/new kernels on one host.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
chmod +x .gpu/turbine .gpu/turbine-gpucheck .gpu/old/*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
timeout 80 .gpu/turbine-gpucheck --parts sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $?"
grep -E "FAIL|ALL CHECKS|flash \[|sage attention|sagesla topk 0.1 \[|sage dense, wgmma" $R/check.log | grep -v " ok$" | head -30
timeout 60 .gpu/old/turbine-gpucheck --parts sage > $R/old-sage.log 2>&1; echo "old sage rc $?"
grep -E "flash \[|sage attention|sagesla topk 0.1 \[|sage dense, wgmma" $R/old-sage.log | grep -v " ok$"
timeout 50 tools/gpu/ab_bench.sh sla13 .gpu/old/turbine .gpu/turbine 1 --model 1.3b --attention sagesla --topk 0.1 --quant fp8 2>&1 | head -8
cd $R/.. && tar czf results.tgz r && rm -rf r
