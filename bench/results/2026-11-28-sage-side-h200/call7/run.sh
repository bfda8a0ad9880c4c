#!/usr/bin/env bash
# Session 19, call 7: sage_kv / sage_stats on three stages, φ(k) over the stage's k tile (new7)
# against 16ce765 (new5): the sage checks (the LUT against a host top-k, bit for bit) and kernel
# timings of new7, SageSLA 0.1 + FP8 forwards at 1.3B 480p and 14B 720p alternately, and the
# whole-forward accuracy (sage-forward).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 280 .gpu/new7/turbine-gpucheck --parts sage --json $R/sage.json > $R/sage.log 2>&1; echo "sage rc $? t=$SECONDS"
grep -E "select|FAIL|passed|failed|ALL CHECKS|sage (stats|quantize|select|linear|attention)|sagesla topk 0.1 \[" $R/sage.log | grep -v INFO | tail -24
for i in 1 2; do for side in new5 new7; do
  timeout 80 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "sla13 $side failed"
done; done
echo "t=$SECONDS"
for side in new5 new7; do
  timeout 120 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$side.json > $R/sla14-$side.log 2>&1 || echo "sla14 $side failed"
done
echo "t=$SECONDS"
timeout 200 .gpu/new7/turbine-gpucheck --parts sage-forward --json $R/sf.json > $R/sf.log 2>&1; echo "sage-forward rc $? t=$SECONDS"
grep -v INFO $R/sf.log | grep -A7 "stages on" | head -8; grep -E "whole|^sage |topk 0.1 +|ops:|FAIL|ALL CHECKS" $R/sf.log | tail -8
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/sla1*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  select {ops.get('sage select', 0):6.2f}  stats {ops.get('sage stats', 0):6.2f}  quant {ops.get('sage quantize', 0):6.2f}  attn {ops.get('sage attention', 0):7.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
