#!/usr/bin/env bash
# Session 12, call 10: HEAD (new, occupancy answers cached) against the session's start (old,
# 743f39c): SageSLA + FP8 forwards, 1.3B 480p three pairs and 14B 720p one.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
for i in 1 2 3; do for side in old new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "$side-$i failed"
done; done
for side in old new; do
  timeout 200 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 --json $R/sla14-$side-1.json > $R/sla14-$side-1.log 2>&1 || echo "$side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys
d = sys.argv[1]
keys = ["sage attention", "residual+layer_norm_modulate", "residual+layer_norm", "quantize fp8"]
for m, n in (("sla13", 3), ("sla14", 1)):
    for i in range(1, n + 1):
        for side in ("old", "new"):
            try:
                r = json.load(open(f"{d}/{m}-{side}-{i}.json"))
            except Exception:
                print(f"{m} {side}-{i}: -"); continue
            ops = {o["op"]: o["total_ms"] for o in r["ops"]}
            print(f"{m} {side}-{i}: forward {r['forward']['median_ms']:8.2f} (min {r['forward']['min_ms']:8.2f}) wall first {r['first_forward']['wall_ms']:8.1f} " + " ".join(f"{k} {ops.get(k, 0):7.2f}" for k in keys))
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
