#!/usr/bin/env bash
# Session 12, call 13: row layouts by resident rows alone, rows a block searched too, all three row kernels (y)
# against HEAD 182ac34 (new): 14B 720p forwards with per-op times, the layouts picked.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
timeout 200 .gpu/y/turbine-gpucheck --parts ops,fp8 > $R/ops-y.log 2>&1; echo "ops,fp8 y rc $?"
grep -E "FAIL|passed|failed" $R/ops-y.log | tail -4
for i in 1 2; do for side in new y; do
  timeout 200 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 --json $R/sla14-$side-$i.json > $R/sla14-$side-$i.log 2>&1 || echo "$side-$i failed"
done; done
for i in 1 2; do for side in new y; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1
done; done
python3 - $R <<'PY'
import json, sys
d = sys.argv[1]
keys = ["residual+layer_norm_modulate", "residual+layer_norm", "rms_norm_rope", "rms_norm", "quantize fp8"]
for m, n in (("sla14", 2), ("sla13", 2)):
    for i in range(1, n + 1):
        for side in ("new", "y"):
            try:
                r = json.load(open(f"{d}/{m}-{side}-{i}.json"))
            except Exception:
                print(f"{m} {side}-{i}: -"); continue
            ops = {o["op"]: o["total_ms"] for o in r["ops"]}
            print(f"{m} {side}-{i}: forward {r['forward']['median_ms']:8.2f} (min {r['forward']['min_ms']:8.2f}) " + " ".join(f"{k} {ops.get(k, 0):7.2f}" for k in keys))
PY
for m in "--model 14b --size 720p" "--model 1.3b"; do
RUST_LOG=turbine_tensor::cuda::rows=trace timeout 100 .gpu/y/turbine bench $m --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/trace.log 2>&1
grep "row layout" $R/trace.log | sed "s/.*row layout//" | sort | uniq -c | tee -a $R/layouts.txt
done
rm $R/trace.log
cd $R/.. && tar czf results.tgz r && rm -rf r
