#!/usr/bin/env bash
# Session 25, call 5: new = HEAD d5b7112 + sage_select's counting passes stopping once exactly
# `keep` keys lie at or above the candidate; against 9177d88 (base): sage checks (selection rows
# vs the host), 1.3B and 14B SageSLA + FP8 forwards alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts sage --json $R/sage.json > $R/sage.log 2>&1; echo "sage rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/sage.log | tail -4
grep -iE "select" $R/sage.log | head -12
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 150 .gpu/$side/turbine bench "$@" --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
S13="--model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10"
bench base warm $S13
for side in base new new base; do bench $side sla13 $S13; done
echo "sla13 done t=$SECONDS"
S14="--model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3"
for side in new base; do bench $side sla14 $S14; done
echo "sla14 done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))
    print(f"{os.path.basename(f):26s} median {j['forward']['median_ms']:9.2f}  select {g('sage select')[0]:7.2f}/{g('sage select')[1]}  stats {g('sage stats')[0]:7.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
