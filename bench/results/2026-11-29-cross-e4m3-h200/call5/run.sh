#!/usr/bin/env bash
# Session 24, call 5: the final HEAD (flash_v_max with 64-bit offsets): FP8 checks; and the bf16
# flash kernels' epilogue (store_rows restructured for the e4m3 form) against 944b909 (base) on
# 1.3B dense bf16 forwards, alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 100 .gpu/$side/turbine bench "$@" --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
D13="--model 1.3b --warmup 2 --iters 10"
bench base warm $D13
for side in base new new base; do bench $side dense13 $D13; done
echo "dense13 done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))
    print(f"{os.path.basename(f):26s} median {j['forward']['median_ms']:9.2f}  self {g('attention (self)')[0]:7.2f}/{g('attention (self)')[1]}  cross {g('attention (cross)')[0]:6.2f}/{g('attention (cross)')[1]}")
PY
timeout 200 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
grep -E "keys bf16" $R/fp8.log
cd $R/.. && tar czf results.tgz r && rm -rf r
