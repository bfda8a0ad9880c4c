#!/usr/bin/env bash
# Session 27, call 5: what cuDNN's convolutions in the 480p decode are doing, for the decision on
# an implicit-GEMM convolution of our own: Nsight Compute on the decode's cuDNN kernels (tensor
# pipe, memory, occupancy; the clocks the GPU chose) and nvidia-smi clocks / power during decodes.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,utilization.gpu --format=csv,noheader -lms 20 > $R/smi.csv &
SMI=$!
timeout 150 .gpu/new/turbine-gpucheck --parts vae --vae-iters 10 --json $R/vae.json > $R/vae.log 2>&1; echo "vae rc $? t=$SECONDS"
kill $SMI
grep -A6 "^decode" $R/vae.log | head -8
python3 - $R/smi.csv <<'PY'
import sys, statistics
rows = [l.split(', ') for l in open(sys.argv[1]) if l.count(',') >= 3]
busy = [(float(r[1].split()[0]), float(r[2].split()[0])) for r in rows if float(r[2].split()[0]) > 200]
if busy:
    c = sorted(b[0] for b in busy); p = sorted(b[1] for b in busy)
    q = lambda v, f: v[int(f * (len(v) - 1))]
    print(f"samples >200 W: {len(busy)}; SM clock median {q(c,.5)} (p10 {q(c,.1)}, p90 {q(c,.9)}) MHz; power median {q(p,.5)} (p90 {q(p,.9)}) W")
PY
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
SECT="--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis"
timeout 300 $NCU --clock-control none -k regex:'fprop|xmma|cutlass|implicit|conv|dgrad|sm90' \
  --launch-skip 200 --launch-count 60 $SECT .gpu/new/turbine-gpucheck --parts vae --vae-iters 1 > $R/ncu.log 2>&1; echo "ncu rc $? t=$SECONDS"
awk '/^  [a-zA-Z_0-9]+.*\(/{name=substr($1,1,90); grid=$2$3$4$5$6$7} /DRAM Throughput/{dr=$4} /Compute \(SM\) Throughput/{sm=$5} /Registers Per/{rg=$5} /Achieved Occupancy/{occ=$4} /Duration/{d=$3} /Waves Per SM/{print name, grid, "us", d, "dram", dr, "sm", sm, "regs", rg}' $R/ncu.log | sort | uniq -c | sort -k1 -n -r | head -30
grep -E "Issue Slots Busy|Executed Ipc Active|SM Busy|Tensor|Pipe" $R/ncu.log | sort | uniq -c | sort -rn | head -20
gzip -9 $R/ncu.log
cd $R/.. && tar czf results.tgz r && rm -rf r
