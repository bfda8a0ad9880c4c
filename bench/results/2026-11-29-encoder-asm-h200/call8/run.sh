#!/usr/bin/env bash
# Session 28, call 8: call 7 with each cuMemAlloc's time logged: how much of umT5's first encode
# at an unseen prompt length is the driver's allocation of the new pool blocks.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/new/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
UMT5_DIR=/tmp/turbine-umt5
if [ ! -f "$UMT5_DIR/umt5-xxl.safetensors" ]; then
  WORK=/tmp/turbine-e2e source tools/gpu/wheels.sh
  timeout 300 python3 tools/gpu/umt5_parity.py --dir "$UMT5_DIR" --lengths 512,77 > $R/umt5-weights.log 2>&1; echo "weights rc $? t=$SECONDS"
fi
RUST_LOG=turbine_tensor::cuda::alloc=debug timeout 200 .gpu/new/turbine-gpucheck --parts umt5 \
  --umt5-weights $UMT5_DIR/umt5-xxl.safetensors --json $R/umt5.json > $R/umt5.log 2>&1
echo "umt5 rc $? t=$SECONDS"
# The allocations between two result lines belong to the encodes the second line reports.
sed 's/\x1b\[[0-9;]*m//g' $R/umt5.log | python3 -c '
import re, sys
n = ms = big = 0.0
for line in sys.stdin:
    m = re.search(r"bytes=(\d+) ms=([0-9.]+)", line)
    if m:
        n += 1; ms += float(m.group(2)); big = max(big, float(m.group(2)))
    elif "tokens" in line and ("median" in line or "first at" in line):
        print(line.rstrip()[:110], "| cuMemAlloc before it: %d calls, %.2f ms, longest %.2f ms" % (n, ms, big))
        n = ms = big = 0.0
'
cd $R/.. && tar czf results.tgz r && rm -rf r
