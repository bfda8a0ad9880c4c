#!/usr/bin/env bash
# Session 12, call 6: row layouts fitted to each kernel's residency (f: RowLayout::fit) against
# HEAD 7747aa4 (c2): op/FP8 checks, 14B and 1.3B SageSLA + FP8 forwards with per-op times.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
echo "t=$SECONDS"
timeout 200 .gpu/f/turbine-gpucheck --parts ops,fp8 > $R/ops-f.log 2>&1; echo "ops,fp8 f rc $? t=$SECONDS"
grep -E "FAIL|passed|failed" $R/ops-f.log | tail -4
grep -E "norm|quantize" $R/ops-f.log | grep -E "5120|13824|5128" | head
for i in 1 2; do for side in c2 f; do
  timeout 200 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 --json $R/sla14-$side-$i.json > $R/sla14-$side-$i.log 2>&1 || echo "$side-$i failed"
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "$side-$i failed"
done; done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys
d = sys.argv[1]
keys = ["residual+layer_norm_modulate", "residual+layer_norm", "rms_norm_rope", "rms_norm", "quantize fp8"]
for m in ("sla14", "sla13"):
    for i in (1, 2):
        for side in ("c2", "f"):
            try:
                r = json.load(open(f"{d}/{m}-{side}-{i}.json"))
            except Exception:
                print(f"{m} {side}-{i}: -"); continue
            ops = {o["op"]: o["total_ms"] for o in r["ops"]}
            print(f"{m} {side}-{i}: forward {r['forward']['median_ms']:8.2f} (min {r['forward']['min_ms']:8.2f}) " + " ".join(f"{k} {ops.get(k, 0):7.2f}" for k in keys))
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
