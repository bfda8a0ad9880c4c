#!/usr/bin/env bash
# Session 28, call 12: call 11 with the configuration cuBLASLt's heuristic chose for each GEMM
# shape logged: do the lengths whose first encode is slow get kernels no earlier length used?
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
RUST_LOG=turbine_tensor::cuda::alloc=debug,turbine_tensor::cuda::gemm=debug timeout 200 .gpu/new/turbine-gpucheck --parts umt5 \
  --umt5-weights $UMT5_DIR/umt5-xxl.safetensors --json $R/umt5.json > $R/umt5.log 2>&1
echo "umt5 rc $? t=$SECONDS"
# The allocations between two result lines belong to the encodes the second line reports.
sed 's/\x1b\[[0-9;]*m//g' $R/umt5.log | python3 -c '
import re, sys
n = ms = h = hms = 0.0
for line in sys.stdin:
    m = re.search(r"ms=([0-9.]+)", line)
    if m and "cuMemAlloc" in line:
        n += 1; ms += float(m.group(1))
    elif m and "cuBLASLt heuristic" in line:
        h += 1; hms += float(m.group(1))
    elif "tokens" in line and ("median" in line or "first at" in line or "multiple of" in line):
        print(line.rstrip()[:150], "| before it: cuMemAlloc %d, %.2f ms; heuristics %d, %.2f ms" % (n, ms, h, hms))
        n = ms = h = hms = 0.0
'
sed 's/\x1b\[[0-9;]*m//g' $R/umt5.log | grep "cuBLASLt heuristic" | grep -E "m: (4096|10240)" | \
  sed -E 's/.*m: ([0-9]+), n: ([0-9]+), k: ([0-9]+).*kind: ([A-Za-z0-9]+), gelu: ([a-z]+).*config=Some\(\[([0-9, ]+)\]\).*/n=\2 m=\1 k=\3 \4 gelu=\5 [\6]/' | \
  grep -E "^n=(28|29|32|77|114|115|116|192|200|208|336|342|343|352|512) " | sort -t= -k2 -n
cd $R/.. && tar czf results.tgz r && rm -rf r
