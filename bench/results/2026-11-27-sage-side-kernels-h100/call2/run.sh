#!/usr/bin/env bash
# Session 11, call 2: sage_stats / sage_kv and sage_linear persistent with cp.async double buffering,
# on top of call 1's Sage kernel changes; checks, old (HEAD)/new Sage parts and forwards.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*.gz .gpu/old/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/turbine .gpu/turbine-gpucheck .gpu/old/*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
(ls /usr/local/cuda/bin; command -v nsys; ls -d /opt/nvidia/nsight-systems* /usr/local/cuda/nsight-systems* 2>/dev/null) > $R/cudabin.txt 2>&1
echo "t=$SECONDS"
timeout 230 .gpu/turbine-gpucheck --parts sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $? t=$SECONDS"
grep -E "FAIL|ALL CHECKS|checks passed|failed" $R/check.log | head
grep -E "sage|flash \[|wgmma vs mma" $R/check.log | head -40
timeout 90 .gpu/old/turbine-gpucheck --parts sage > $R/old-sage.log 2>&1; echo "old sage rc $? t=$SECONDS"
grep -E "sage|flash \[|wgmma vs mma" $R/old-sage.log | head -40
timeout 120 tools/gpu/ab_bench.sh sla13 .gpu/old/turbine .gpu/turbine 2 --model 1.3b --attention sagesla --topk 0.1 --quant fp8 2>&1 | head -40
echo "t=$SECONDS"
timeout 130 tools/gpu/ab_bench.sh sla14 .gpu/old/turbine .gpu/turbine 1 --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 2>&1 | head -40
echo "t=$SECONDS"
timeout 80 tools/gpu/ab_bench.sh sage13 .gpu/old/turbine .gpu/turbine 1 --model 1.3b --attention sage --quant fp8 2>&1 | head -12
echo "t=$SECONDS"
cd $R/.. && tar czf results.tgz r && rm -rf r
