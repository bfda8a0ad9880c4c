#!/usr/bin/env bash
# Session 17, call 4: the final build (new, 7a23361: TMA flash kernels) against 9308cae (base):
# op and sage checks of new, SageSLA 0.1 + FP8 forwards at 1.3B and 14B alternately; and
# FlashAttention-3's ping-pong between the consumers on top of new (alt): its op checks, kernel
# timings and dense 1.3B forwards against new.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for side in new alt; do
  timeout 120 .gpu/$side/turbine-gpucheck --parts ops --json $R/ops-$side.json > $R/ops-$side.log 2>&1; echo "ops $side rc $? t=$SECONDS"
  grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops-$side.log | tail -2
  timeout 120 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side.json > $R/sage-$side.log 2>&1; echo "sage $side rc $? t=$SECONDS"
  grep -E "bf16 flash|sagesla topk 0.1 \[|FAIL|failed" $R/sage-$side.log | grep -v INFO
done
for i in 1 2; do for side in base new; do
  timeout 60 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "sla13 $side failed"
done; done
echo "t=$SECONDS"
for side in base new; do
  timeout 100 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$side.json > $R/sla14-$side.log 2>&1 || echo "sla14 $side failed"
done
echo "t=$SECONDS"
for i in 1 2; do for side in new alt; do
  timeout 60 .gpu/$side/turbine bench --model 1.3b --warmup 2 --iters 5 --json $R/dense13-$side-$i.json > $R/dense13-$side-$i.log 2>&1 || echo "dense13 $side failed"
done; done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/dense1*.json") + glob.glob(sys.argv[1] + "/sla1*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:9.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  self {ops.get('attention (self)', 0):8.2f}  sage {ops.get('sage attention', 0):8.2f}  cross {ops.get('attention (cross)', 0):7.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
