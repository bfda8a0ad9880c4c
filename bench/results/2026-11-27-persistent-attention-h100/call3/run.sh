#!/usr/bin/env bash
# Session 10, call 3: as call 2, with the Sage producer back at 24 registers (at 32 the
# consumers' setmaxnreg.inc never got its registers: call 2 hung).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
chmod +x .gpu/turbine .gpu/turbine-gpucheck .gpu/old/*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
timeout 150 .gpu/turbine-gpucheck --parts sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $?"
grep -E "FAIL|ALL CHECKS|flash|sage attention|sagesla topk|sage dense" $R/check.log | head -40
timeout 200 tools/gpu/ab_bench.sh sla13 .gpu/old/turbine .gpu/turbine 2 --model 1.3b --attention sagesla --topk 0.1 --quant fp8 2>&1 | head -24
timeout 200 tools/gpu/ab_bench.sh sla14 .gpu/old/turbine .gpu/turbine 1 --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 2>&1 | head -24
timeout 100 tools/gpu/ab_bench.sh dense13 .gpu/old/turbine .gpu/turbine 1 --model 1.3b 2>&1 | head -12
cd $R/.. && tar czf results.tgz r && rm -rf r
