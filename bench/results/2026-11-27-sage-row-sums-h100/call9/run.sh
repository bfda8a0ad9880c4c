#!/usr/bin/env bash
# Session 12, call 9: the session's committed code (new, 67b43da) against its start (old, 743f39c):
# Sage checks and timings, SageSLA + FP8 forwards at 1.3B 480p and 14B 720p.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
echo "t=$SECONDS"
for side in new old; do
  timeout 120 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side.json > $R/sage-$side.log 2>&1; echo "sage $side rc $? t=$SECONDS"
  grep -E "FAIL|failed" $R/sage-$side.log | head -3
  grep -E "sage|flash \[|TOPS" $R/sage-$side.log | grep -v "INFO\|mma.sync\|512 keys" | head -40
done
for i in 1 2; do for side in old new; do
  timeout 200 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 --json $R/sla14-$side-$i.json > $R/sla14-$side-$i.log 2>&1 || echo "$side-$i failed"
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "$side-$i failed"
done; done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys
d = sys.argv[1]
keys = ["sage attention", "residual+layer_norm_modulate", "residual+layer_norm", "quantize fp8"]
for m in ("sla14", "sla13"):
    for i in (1, 2):
        for side in ("old", "new"):
            try:
                r = json.load(open(f"{d}/{m}-{side}-{i}.json"))
            except Exception:
                print(f"{m} {side}-{i}: -"); continue
            ops = {o["op"]: o["total_ms"] for o in r["ops"]}
            print(f"{m} {side}-{i}: forward {r['forward']['median_ms']:8.2f} (min {r['forward']['min_ms']:8.2f}) " + " ".join(f"{k} {ops.get(k, 0):7.2f}" for k in keys))
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
