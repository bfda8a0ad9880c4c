#!/usr/bin/env bash
# Session 29, call 7: the final build (431f3f5): GPU checks over every GEMM path (ops, fp8; poisoned
# allocations), umT5 parity and the text stage's warm-up, and the 1.3B SageSLA 0.1 + FP8 forward
# against 368eeb6 ("base") alternately (every GEMM now passes the warm-up's shape recording).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
timeout 240 .gpu/new/turbine-gpucheck --parts ops,fp8 --json $R/checks.json > $R/checks.log 2>&1; echo "ops,fp8 rc $? t=$SECONDS"
grep -E "passed|FAIL" $R/checks.log | tail -5
U=/tmp/turbine-umt5
WORK=/tmp/turbine-e2e source tools/gpu/wheels.sh
timeout 300 python3 tools/gpu/umt5_parity.py --dir $U --lengths 512,77 > $R/umt5-weights.log 2>&1; echo "weights rc $? t=$SECONDS"
timeout 150 .gpu/new/turbine-gpucheck --parts umt5 --umt5-weights $U/umt5-xxl.safetensors \
  --umt5-reference $U/reference.safetensors --json $R/umt5.json > $R/umt5.log 2>&1; echo "umt5 rc $? t=$SECONDS"
grep -E "tokens|warm-up|passed|FAIL" $R/umt5.log | cut -c1-200
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 150 .gpu/$side/turbine bench "$@" --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
S13="--model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10"
for side in base new new base; do bench $side sla13 $S13; done
echo "benches done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/sla13-*.json")]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f))
    print(os.path.basename(f), 'median %.2f ms min %.2f' % (j['forward']['median_ms'], j['forward']['min_ms']))
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
