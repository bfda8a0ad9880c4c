#!/usr/bin/env bash
# Session 27, call 1: (a) Nsight Compute on the VAE decode's norm kernels (channel_rms_norm_bf16:
# plain and time-folded) at the clocks the GPU chose; (b) cuDNN's legacy API on the time-folded
# convolution with its input packed (3x the frames) or in one overlapping buffer.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
timeout 150 python3 tools/gpu/cudnn_overlap_probe.py $R/overlap.json > $R/overlap.log 2>&1; echo "probe rc $? t=$SECONDS"
cat $R/overlap.log | cut -c1-400
timeout 120 .gpu/new/turbine-gpucheck --parts vae --vae-iters 2 --json $R/vae.json > $R/vae.log 2>&1; echo "vae rc $? t=$SECONDS"
grep -A14 "^decode" $R/vae.log | head -16
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis"
timeout 240 $NCU --clock-control none -k regex:'channel_rms_norm_bf16|slice|concat|interleave' \
  --launch-skip 150 --launch-count 260 $SECT .gpu/new/turbine-gpucheck --parts vae --vae-iters 1 > $R/ncu.log 2>&1; echo "ncu rc $? t=$SECONDS"
awk '/^  [a-zA-Z_0-9]+.*\(/{name=$1; grid=$2} /DRAM Throughput/{dr=$4} /Registers Per/{rg=$5} /Achieved Occupancy/{occ=$4} /Duration/{d=$3; print name, grid, d, "us DRAM", dr}' $R/ncu.log | sort -k3 -n -r | head -40
cd $R/.. && tar czf results.tgz r && rm -rf r
