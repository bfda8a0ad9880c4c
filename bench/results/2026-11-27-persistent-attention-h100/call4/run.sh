#!/usr/bin/env bash
# Session 10, call 4: flash persistent only for short key sequences (cross-attention); checks,
# old/new isolated kernels, and forwards, alternating on one host.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
chmod +x .gpu/turbine .gpu/turbine-gpucheck .gpu/old/*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
timeout 200 .gpu/turbine-gpucheck --parts ops,sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $?"
grep -E "FAIL|ALL CHECKS|passed|flash \[|sage attention|sagesla topk 0.1 \[|sage dense, wgmma" $R/check.log | grep -v " ok$" | head -30
timeout 100 .gpu/old/turbine-gpucheck --parts sage > $R/old-sage.log 2>&1; echo "old sage rc $?"
grep -E "flash \[|sage attention|sagesla topk 0.1 \[|sage dense, wgmma" $R/old-sage.log | grep -v " ok$"
timeout 100 tools/gpu/ab_bench.sh dense13 .gpu/old/turbine .gpu/turbine 1 --model 1.3b 2>&1 | head -9
timeout 150 tools/gpu/ab_bench.sh sla13 .gpu/old/turbine .gpu/turbine 3 --model 1.3b --attention sagesla --topk 0.1 --quant fp8 2>&1 | head -16
timeout 150 tools/gpu/ab_bench.sh sla14 .gpu/old/turbine .gpu/turbine 1 --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 2>&1 | head -14
cd $R/.. && tar czf results.tgz r && rm -rf r
