#!/usr/bin/env bash
# Session 12, call 5: row kernels with every lane holding the same number of chunks (r: 5120-wide
# rows on 4 warps, not 3) against HEAD 7747aa4 (c2): 14B 720p forwards, per-op times.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
echo "t=$SECONDS"
for i in 1 2; do for side in c2 r; do
  timeout 200 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 --json $R/sla14-$side-$i.json > $R/sla14-$side-$i.log 2>&1 || echo "$side-$i failed"
  echo "t=$SECONDS"
done; done
python3 - $R <<'PY'
import json, sys
d = sys.argv[1]
for i in (1, 2):
    for side in ("c2", "r"):
        r = json.load(open(f"{d}/sla14-{side}-{i}.json"))
        ops = {o["op"]: o["total_ms"] for o in r["ops"]}
        keys = ["residual+layer_norm_modulate", "residual+layer_norm", "rms_norm_rope", "rms_norm", "quantize fp8"]
        print(f"{side}-{i}: forward {r['forward']['median_ms']:8.2f} (min {r['forward']['min_ms']:8.2f}) " + " ".join(f"{k} {ops.get(k, 0):7.2f}" for k in keys))
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
