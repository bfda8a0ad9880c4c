#!/usr/bin/env bash
# Session 21, call 1: lazy rescaling (FlashAttention-4) in the bf16 flash (wgmma) and Sage sm90
# softmax. One build; TURBINE_KERNEL_DEFINES (experiment-only NVRTC -D hook) sets the slack:
# "F S" = TURBINE_FLASH_SLACK=F TURBINE_SAGE_SLACK=S; 0 0 is the committed behaviour.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
B=.gpu/slack
defs() { echo "TURBINE_FLASH_SLACK=$1 TURBINE_SAGE_SLACK=$2"; }
for v in "0 0" "8 2" "8 4"; do set -- $v; tag=$1-$2
  TURBINE_KERNEL_DEFINES="$(defs $1 $2)" timeout 150 $B/turbine-gpucheck --parts sage --json $R/sage-$tag.json > $R/sage-$tag.log 2>&1; echo "sage $tag rc $? t=$SECONDS"
  grep -E "FAIL|ALL CHECKS|vs bf16 flash|vs CPU|vs f32 SLA|proj_l = 0|wgmma vs mma|^bf16 flash \[|^sage dense, wgmma|^sagesla topk" $R/sage-$tag.log | grep -v "x 512 keys (mma"
done
for i in 1 2; do for v in "0 0" "8 2"; do set -- $v; tag=$1-$2
  TURBINE_KERNEL_DEFINES="$(defs $1 $2)" timeout 60 $B/turbine bench --model 1.3b --warmup 2 --iters 8 --json $R/dense13-$tag-$i.json > $R/dense13-$tag-$i.log 2>&1 || echo "dense13 $tag failed"
  TURBINE_KERNEL_DEFINES="$(defs $1 $2)" timeout 60 $B/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$tag-$i.json > $R/sla13-$tag-$i.log 2>&1 || echo "sla13 $tag failed"
done; done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/*13-*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f} ms  self {ops.get('attention (self)', 0):7.2f}  sage {ops.get('sage attention', 0):7.2f}  cross {ops.get('attention (cross)', 0):6.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
