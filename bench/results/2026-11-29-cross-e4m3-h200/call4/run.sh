#!/usr/bin/env bash
# Session 24, call 4: new = call 3's change with the e4m3 bound read once per consumer thread
# before the item loop instead of in each item's epilogue; against 944b909 (base): FP8 checks, ops
# checks (the flash kernels), whole-forward accuracy, forwards alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 240 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
grep -E "attention (output|o)" $R/fp8.log
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 150 .gpu/$side/turbine bench "$@" --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
S13="--model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10"
bench base warm $S13
for i in 1 2; do for side in base new new base; do bench $side sla13 $S13; done; done
echo "sla13 done t=$SECONDS"
S14="--model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3"
for side in base new new base; do bench $side sla14 $S14; done
echo "sla14 done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))
    print(f"{os.path.basename(f):26s} median {j['forward']['median_ms']:9.2f}  cross {g('attention (cross)')[0]:7.2f}/{g('attention (cross)')[1]}  quant {g('quantize fp8')[0]:6.2f}/{g('quantize fp8')[1]}  res {g('linear fp8+residual')[0]:7.2f}")
PY
timeout 200 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
timeout 150 .gpu/new/turbine-gpucheck --parts sage-forward --json $R/sf.json > $R/sf.log 2>&1; echo "sage-forward rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|forward" $R/sf.log | tail -12
cd $R/.. && tar czf results.tgz r && rm -rf r
