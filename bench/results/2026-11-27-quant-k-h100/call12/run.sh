#!/usr/bin/env bash
# Session 14, call 12: the cp.async copies of sage_kv / sage_stats and sage_linear unrolled with
# their addresses stepped (new) against 3d024b4 (base): the Sage checks of both (accuracy rows must
# be identical), then 1.3B 480p and 14B 720p SageSLA 0.1 + FP8 forwards alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for side in new base; do
  timeout 200 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side.json > $R/sage-$side.log 2>&1; echo "sage $side rc $? t=$SECONDS"
done
grep -E "FAIL|passed|failed|ALL CHECKS" $R/sage-new.log | tail -3
diff <(grep -E " ok$| FAIL" $R/sage-base.log) <(grep -E " ok$| FAIL" $R/sage-new.log) > $R/sage-diff.txt; echo "accuracy rows differ: $(wc -l < $R/sage-diff.txt) lines"
for i in 1 2; do for side in base new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "sla13 $side failed"
done; done
for side in base new; do
  timeout 150 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$side.json > $R/sla14-$side.log 2>&1 || echo "sla14 $side failed"
done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/sla1*.json")):
    j = json.load(open(f)); ops = {o["op"]: o for o in j["ops"]}
    st = ops.get("sage stats", {}); li = ops.get("sage linear out", {})
    print(f"{os.path.basename(f):18s} forward median {j['forward']['median_ms']:8.2f} ms  sage stats {st.get('total_ms', 0):7.2f} ms  sage linear out {li.get('total_ms', 0):7.2f} ms")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
