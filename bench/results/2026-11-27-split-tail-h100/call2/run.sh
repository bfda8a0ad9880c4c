#!/usr/bin/env bash
# Session 13, call 2: the Sage kernel's unit key-block count read through a shuffle (no YIELD in
# its loop; new) against the session start (old, 17a4e39): Sage timings twice each, alternating,
# and SageSLA + FP8 1.3B forwards.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
for i in 1 2; do for side in old new; do
  timeout 150 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side-$i.json > $R/sage-$side-$i.log 2>&1; echo "sage $side-$i rc $? t=$SECONDS"
  grep -E "FAIL|failed" $R/sage-$side-$i.log | head -3
  grep -E "wgmma \[|sagesla topk 0.1 \[.*TOPS|^    sage attention|flash \[[0-9]*, [0-9]*, 128\] \(" $R/sage-$side-$i.log
done; done
for i in 1 2; do for side in old new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "sla $side-$i failed"
done; done
python3 - $R <<'PY'
import json, sys
d = sys.argv[1]
for i in (1, 2):
    for side in ("old", "new"):
        try:
            r = json.load(open(f"{d}/sla13-{side}-{i}.json"))
        except Exception:
            print(f"sla13 {side}-{i}: -"); continue
        ops = {o["op"]: o["total_ms"] for o in r["ops"]}
        print(f"sla13 {side}-{i}: forward {r['forward']['median_ms']:8.2f} (min {r['forward']['min_ms']:8.2f}) sage attention {ops['sage attention']:7.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
