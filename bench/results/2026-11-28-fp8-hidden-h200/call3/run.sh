#!/usr/bin/env bash
# Session 18, call 3: the FFN hidden rows written by ffn.0 in e4m3 (scalar-scaled GEMM: uniform ffn.0 weight, norm2 rows under one bound scale) (new)
# against 1c40b5a (base): FP8 checks, the FFN bench, whole-forward accuracy, then
# SageSLA 0.1 + FP8 forwards at 1.3B 480p and 14B 720p alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "hidden|FFN|one scale" $R/fp8.log | head -24; grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
timeout 300 .gpu/new/turbine-gpucheck --parts fp8-bench --json $R/fp8b.json > $R/fp8b.log 2>&1; echo "fp8-bench rc $? t=$SECONDS"
grep -A4 "The FFN from" $R/fp8b.log
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
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  gelu {ops.get('linear+gelu fp8', 0):7.2f}  quant {ops.get('quantize fp8', 0):6.2f}  hscale {ops.get('fp8 hidden scale', 0):5.2f}  res {ops.get('linear fp8+residual', 0):7.2f}")
PY
for side in new; do
  timeout 240 .gpu/$side/turbine-gpucheck --parts sage-forward --json $R/sf-$side.json > $R/sf-$side.log 2>&1; echo "sage-forward $side rc $? t=$SECONDS"
  grep -E "^sage|topk|fp8 linears|whole" $R/sf-$side.log | tail -12
done
cd $R/.. && tar czf results.tgz r && rm -rf r
