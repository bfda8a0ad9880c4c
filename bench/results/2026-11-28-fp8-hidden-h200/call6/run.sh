#!/usr/bin/env bash
# Session 18, call 6: the review mend (the norm bound's rounding slack (1 + 2^-8)(1 + 2^-4), no
# 2^-10 factor on the output bound, a norm without `mul` multiplies by 1): FP8 checks, one 1.3B
# SageSLA 0.1 + FP8 pair against 1c40b5a (base).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
grep -E "hidden|one scale" $R/fp8.log | head -16
for side in base new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side.json > $R/sla13-$side.log 2>&1 || echo "sla13 $side failed"
done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/sla13-*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f} ms  weights_s {j.get('weights_s', 0):.3f}  gelu {ops.get('linear+gelu fp8', 0):7.2f}  quant {ops.get('quantize fp8', 0):6.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
