#!/usr/bin/env bash
# Session 16, call 4: SageSLA's LUT best score first (new) against the residual-in-GEMM build
# 22b25e2 (base): Sage checks and kernel timings of both, whole-forward accuracy (new), then
# 1.3B 480p and 14B 720p SageSLA 0.1 + FP8 forwards alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for side in base new; do
  timeout 200 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side.json > $R/sage-$side.log 2>&1; echo "sage $side rc $? t=$SECONDS"
  grep -E "sagesla|SageSLA" $R/sage-$side.log | head -30
  grep -E "FAIL|passed|failed|ALL CHECKS" $R/sage-$side.log | tail -2
done
for i in 1 2; do for side in base new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "sla13 $side failed"
done; done
echo "t=$SECONDS"
for side in base new; do
  timeout 150 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$side.json > $R/sla14-$side.log 2>&1 || echo "sla14 $side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/sla1*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  sage attention {ops.get('sage attention', 0):7.2f}  select {ops.get('sage select', 0):6.2f}")
PY
timeout 240 .gpu/new/turbine-gpucheck --parts sage-forward --json $R/sf-new.json > $R/sf-new.log 2>&1; echo "sage-forward new rc $? t=$SECONDS"
grep -E "^sage|topk|fp8 linears" $R/sf-new.log | tail -12
cd $R/.. && tar czf results.tgz r && rm -rf r
