#!/usr/bin/env bash
# Session 21, call 3: the Sage wgmma kernel's FP8 P̃V products gathered over SG_FOLD tiles before
# joining the f32 sum (fewer FADDs a tile). One build; TURBINE_KERNEL_DEFINES (experiment-only
# NVRTC -D hook) sets SG_FOLD: 1 = the committed kernel (91290c8).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
X=.gpu/fold
for v in 1 2 4; do
  TURBINE_KERNEL_DEFINES="SG_FOLD=$v" timeout 120 $X/turbine-gpucheck --parts sage --json $R/sage-$v.json > $R/sage-$v.log 2>&1; echo "sage $v rc $? t=$SECONDS"
  grep -E "FAIL|ALL CHECKS|vs bf16 flash|vs CPU|vs f32 SLA|proj_l = 0|^sage dense, wgmma|^sagesla topk" $R/sage-$v.log
done
for i in 1 2; do for v in 1 4 2; do
  TURBINE_KERNEL_DEFINES="SG_FOLD=$v" timeout 60 $X/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$v-$i.json > $R/sla13-$v-$i.log 2>&1 || echo "sla13 $v failed"
done; done
echo "t=$SECONDS"
for v in 1 4; do
  [ $SECONDS -lt 300 ] || break
  TURBINE_KERNEL_DEFINES="SG_FOLD=$v" timeout 90 $X/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$v.json > $R/sla14-$v.log 2>&1 || echo "sla14 $v failed"
  echo "sla14 $v t=$SECONDS"
done
if [ $SECONDS -lt 330 ]; then
  TURBINE_KERNEL_DEFINES="SG_FOLD=4" timeout $((480 - SECONDS)) $X/turbine-gpucheck --parts sage-forward --json $R/sf.json > $R/sf.log 2>&1; echo "sage-forward rc $? t=$SECONDS"
  grep -E "whole|^sage |topk 0.1 +|FAIL|ALL CHECKS" $R/sf.log | grep -v INFO | tail -6
fi
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/sla1*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f}  sage {ops.get('sage attention', 0):7.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
