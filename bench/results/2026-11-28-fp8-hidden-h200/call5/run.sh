#!/usr/bin/env bash
# Session 18, call 5: the final build of the e4m3 FFN hidden rows (new) against 1c40b5a (base):
# FP8, op and INT8 checks of new; dense bf16 and INT8 forwards (paths the Branch change touches);
# one more 14B 720p SageSLA 0.1 + FP8 pair.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for part in fp8 ops int8; do
  timeout 200 .gpu/new/turbine-gpucheck --parts $part --json $R/$part.json > $R/$part.log 2>&1; echo "$part rc $? t=$SECONDS"
  grep -E "FAIL|passed|failed|ALL CHECKS" $R/$part.log | tail -3
done
grep -E "hidden|FFN|one scale" $R/fp8.log | head -16
for side in base new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --warmup 1 --iters 3 --json $R/dense13-$side.json > $R/dense13-$side.log 2>&1 || echo "dense13 $side failed"
done
timeout 100 .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant int8 --warmup 1 --iters 3 --json $R/int813-new.json > $R/int813-new.log 2>&1 || echo "int813 new failed"
for side in new base; do
  timeout 150 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$side.json > $R/sla14-$side.log 2>&1 || echo "sla14 $side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/*1[34]-*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  gelu {ops.get('linear+gelu fp8', ops.get('linear+gelu', 0)):7.2f}  quant {ops.get('quantize fp8', ops.get('quantize int8', 0)):6.2f}  hscale {ops.get('fp8 hidden scale', 0):5.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
