#!/usr/bin/env bash
# Session 13, call 3: the committed split (Sage units counted through a shuffle; new) against the
# session start (old, 17a4e39): op checks, Sage/flash checks and timings twice each, alternating,
# dense bf16 1.3B forwards and SageSLA + FP8 14B 720p forwards, alternating.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
timeout 150 .gpu/new/turbine-gpucheck --parts ops > $R/ops-new.log 2>&1; echo "ops new rc $? t=$SECONDS"
grep -E "FAIL|passed|failed" $R/ops-new.log | tail -3
for i in 1 2; do for side in old new; do
  timeout 150 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side-$i.json > $R/sage-$side-$i.log 2>&1; echo "sage $side-$i rc $? t=$SECONDS"
  grep -E "FAIL|failed" $R/sage-$side-$i.log | head -3
  grep -E "wgmma \[|sagesla topk 0.1 \[.*TOPS|flash \[[0-9]*, [0-9]*, 128\] \(" $R/sage-$side-$i.log
done; done
grep -E "vs |topk 1.0" $R/sage-new-1.log
for i in 1 2; do for side in old new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --json $R/dense13-$side-$i.json > $R/dense13-$side-$i.log 2>&1 || echo "dense $side-$i failed"
done; done
for side in old new; do
  timeout 200 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 --json $R/sla14-$side.json > $R/sla14-$side.log 2>&1 || echo "sla14 $side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys
d = sys.argv[1]
for name in ["dense13-old-1", "dense13-new-1", "dense13-old-2", "dense13-new-2", "sla14-old", "sla14-new"]:
    try:
        r = json.load(open(f"{d}/{name}.json"))
    except Exception:
        print(f"{name}: -"); continue
    ops = {o["op"]: o["total_ms"] for o in r["ops"]}
    att = {k: v for k, v in ops.items() if "attention" in k}
    print(f"{name}: forward {r['forward']['median_ms']:8.2f} (min {r['forward']['min_ms']:8.2f}) " + " ".join(f"{k} {v:7.2f}" for k, v in att.items()))
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
