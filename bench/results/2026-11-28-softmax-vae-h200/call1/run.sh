#!/usr/bin/env bash
# Session 20, call 1: exp2 partly on the FMA pipes (a polynomial) in the softmax of the bf16 flash
# kernel (wgmma) and the Sage sm90 kernel. One build; the fraction of exps moved is set per run by
# TURBINE_KERNEL_DEFINES (an experiment-only NVRTC -D hook): POLY8 = v means groups g with g % 8 < v.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
B=.gpu/exp1
for v in 0 2 1 3; do
  TURBINE_KERNEL_DEFINES="TURBINE_FLASH_POLY8=$v TURBINE_SAGE_POLY8=$v" timeout 150 $B/turbine-gpucheck --parts sage --json $R/sage-$v.json > $R/sage-$v.log 2>&1; echo "sage v=$v rc $? t=$SECONDS"
  grep -E "FAIL|ALL CHECKS|vs bf16 flash|vs CPU|vs f32 SLA|proj_l = 0|^bf16 flash \[|^sage dense, wgmma|^sagesla topk" $R/sage-$v.log | grep -v "x 512 keys (mma" 
done
for i in 1 2; do for v in 0 2; do
  TURBINE_KERNEL_DEFINES="TURBINE_FLASH_POLY8=$v TURBINE_SAGE_POLY8=$v" timeout 60 $B/turbine bench --model 1.3b --warmup 2 --iters 8 --json $R/dense13-$v-$i.json > $R/dense13-$v-$i.log 2>&1 || echo "dense13 $v failed"
  TURBINE_KERNEL_DEFINES="TURBINE_FLASH_POLY8=$v TURBINE_SAGE_POLY8=$v" timeout 60 $B/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$v-$i.json > $R/sla13-$v-$i.log 2>&1 || echo "sla13 $v failed"
done; done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/*13-*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  self {ops.get('attention (self)', 0):7.2f}  sage {ops.get('sage attention', 0):7.2f}  cross {ops.get('attention (cross)', 0):6.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
