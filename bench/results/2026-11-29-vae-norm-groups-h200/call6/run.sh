#!/usr/bin/env bash
# Session 27, call 6: Nsight Compute on the 480p decode's cuDNN convolution kernels (sm90 xmma
# implicit GEMMs) in the full decode (launches past the tiny checks and the layout table).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
SECT="--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis"
timeout 400 $NCU --clock-control none -k regex:'sm90_xmma' --launch-skip 700 --launch-count 70 $SECT \
  .gpu/new/turbine-gpucheck --parts vae --vae-iters 1 > $R/ncu.log 2>&1; echo "ncu rc $? t=$SECONDS"
awk '/^  [a-zA-Z_0-9]+.*\(/{name=$1; grid=$2$3$4$5$6$7} /SM Frequency/{f=$4} /DRAM Throughput/{dr=$4} /Compute \(SM\) Throughput/{sm=$5} /Registers Per/{rg=$5} /Duration/{d=$3} /Waves Per SM/{print substr(name,1,120), grid, "us", d, "MHz", f, "dram", dr, "sm", sm, "regs", rg}' $R/ncu.log > $R/ncu-summary.txt
sort $R/ncu-summary.txt | awk '{$0=$0} {print}' | sed -E 's/us [0-9.]+ MHz [0-9.,]+//' | sort | uniq -c | sort -rn | head -20
awk '/Duration/{d=$3} /SM Frequency/{f=$4} /^  [a-zA-Z_0-9]+.*\(/{n=substr($1,1,60)} /Tensor|Issue Slots Busy|SM Busy|Mem Pipes/{print n, $0}' $R/ncu.log | sort | uniq -c | sort -rn | head -30
gzip -9 $R/ncu.log
cd $R/.. && tar czf results.tgz r && rm -rf r
