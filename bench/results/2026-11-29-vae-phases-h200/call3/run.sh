#!/usr/bin/env bash
# Session 26, call 3: Nsight Compute on the 1.3B SageSLA 0.1 + FP8 forward's row kernels (norms,
# rope, quantizers, residuals) and Sage side kernels, at the clocks the GPU chose; 2bac32b's build.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
S13="--model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1"
timeout 60 .gpu/new/turbine bench $S13 --json $R/warm.json > $R/warm.log 2>&1; echo "warm rc $? t=$SECONDS"
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis"
timeout 200 $NCU --clock-control none -k regex:'norm|rope|gated|residual|sage_(linear|quant_[kq]|kv$|select)' \
  --launch-skip 40 --launch-count 48 $SECT .gpu/new/turbine bench $S13 > $R/ncu13.log 2>&1; echo "ncu rc $? t=$SECONDS"
awk '/^  [a-zA-Z_0-9]+.*\(/{name=$1} /DRAM Throughput/{dr=$4} /Duration/{print name, $3, "us DRAM", dr}' $R/ncu13.log | sort | uniq -c | head -60
cd $R/.. && tar czf results.tgz r && rm -rf r
