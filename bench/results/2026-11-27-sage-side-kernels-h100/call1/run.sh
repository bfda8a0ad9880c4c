#!/usr/bin/env bash
# Session 11, call 1: checks of the committed-but-unrun flash selection (003d858, 7a505a2) and of
# the Sage kernel changes (seeded scores into the softmax FMAs, ring stage stepped, sage_select
# 16-byte reads); old/new Sage kernels and forwards; per-kernel breakdown of the SageSLA forwards.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*.gz .gpu/old/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/turbine .gpu/turbine-gpucheck .gpu/old/*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
(ls /usr/local/cuda/bin; command -v nsys; ls -d /opt/nvidia/nsight-systems* /usr/local/cuda/nsight-systems* 2>/dev/null) > $R/cudabin.txt 2>&1
echo "t=$SECONDS"
timeout 230 .gpu/turbine-gpucheck --parts ops,sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $? t=$SECONDS"
grep -E "FAIL|ALL CHECKS|checks passed|failed" $R/check.log | head
grep -E "sage|flash \[|wgmma vs mma" $R/check.log | head -40
timeout 90 .gpu/old/turbine-gpucheck --parts sage > $R/old-sage.log 2>&1; echo "old sage rc $? t=$SECONDS"
grep -E "sage|flash \[|wgmma vs mma" $R/old-sage.log | head -40
timeout 120 tools/gpu/ab_bench.sh sla13 .gpu/old/turbine .gpu/turbine 2 --model 1.3b --attention sagesla --topk 0.1 --quant fp8 2>&1 | head -40
echo "t=$SECONDS"
timeout 130 tools/gpu/ab_bench.sh sla14 .gpu/old/turbine .gpu/turbine 1 --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 2>&1 | head -40
echo "t=$SECONDS"
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ] && [ $SECONDS -lt 480 ]; then
  timeout 90 $NSYS profile -o $R/sla13 --force-overwrite true .gpu/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 > $R/nsys13.log 2>&1; echo "nsys rc $? t=$SECONDS"
  timeout 60 $NSYS stats --report cuda_gpu_kern_sum --format csv -o $R/sla13 $R/sla13.nsys-rep > /dev/null 2>&1
  head -40 $R/sla13_cuda_gpu_kern_sum.csv | cut -c1-200
  rm -f $R/sla13.sqlite
fi
cd $R/.. && tar czf results.tgz r && rm -rf r
