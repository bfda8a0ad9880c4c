#!/usr/bin/env bash
# Session 25, call 1: the review mend's kernels (9177d88) through the FP8 checks; hardware
# counters (ncu) on the VAE decode's channel norms and the 1.3B SageSLA side kernels.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU" >> $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats"
timeout 200 $NCU --clock-control none -k regex:channel_rms_norm_bf16 --launch-skip 100 --launch-count 16 $SECT \
  .gpu/new/turbine-gpucheck --parts vae --vae-iters 1 > $R/ncu-vae.log 2>&1; echo "ncu vae rc $? t=$SECONDS"
timeout 150 $NCU --clock-control none -k regex:'sage_(kv|select|quant_k|quant_q|linear|kv_reduce)$' --launch-skip 60 --launch-count 12 $SECT \
  .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 1 > $R/ncu-sage13.log 2>&1; echo "ncu sage rc $? t=$SECONDS"
grep -E "^  [a-z_]+\(|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Grid Size|Issue Slots Busy|No Eligible" $R/ncu-vae.log | head -150
grep -E "^  [a-z_]+\(|Duration|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Grid Size|Issue Slots Busy|No Eligible" $R/ncu-sage13.log | head -120
cd $R/.. && tar czf results.tgz r && rm -rf r
