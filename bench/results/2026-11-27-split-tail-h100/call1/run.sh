#!/usr/bin/env bash
# Session 13, call 1: the last round's items split over idle SMs (Sage + bf16 flash) and flash's
# descriptors stepped by adds (new) against the session start (old, 17a4e39).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
echo "t=$SECONDS"
timeout 150 .gpu/new/turbine-gpucheck --parts ops > $R/ops-new.log 2>&1; echo "ops new rc $? t=$SECONDS"
grep -E "FAIL|passed|failed" $R/ops-new.log | tail -4
grep -E "attention" $R/ops-new.log | head -30
for side in new old; do
  timeout 150 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side.json > $R/sage-$side.log 2>&1; echo "sage $side rc $? t=$SECONDS"
  grep -E "FAIL|failed" $R/sage-$side.log | head -3
  grep -E "sage|flash|TOPS|TFLOP" $R/sage-$side.log | grep -v "INFO" | head -40
done
for i in 1 2; do for side in old new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "sla $side-$i failed"
  timeout 100 .gpu/$side/turbine bench --model 1.3b --json $R/dense13-$side-$i.json > $R/dense13-$side-$i.log 2>&1 || echo "dense $side-$i failed"
done; done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys
d = sys.argv[1]
for m in ("sla13", "dense13"):
    for i in (1, 2):
        for side in ("old", "new"):
            try:
                r = json.load(open(f"{d}/{m}-{side}-{i}.json"))
            except Exception:
                print(f"{m} {side}-{i}: -"); continue
            ops = {o["op"]: o["total_ms"] for o in r["ops"]}
            att = {k: v for k, v in ops.items() if "attention" in k}
            print(f"{m} {side}-{i}: forward {r['forward']['median_ms']:8.2f} (min {r['forward']['min_ms']:8.2f}) " + " ".join(f"{k} {v:7.2f}" for k, v in att.items()))
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
