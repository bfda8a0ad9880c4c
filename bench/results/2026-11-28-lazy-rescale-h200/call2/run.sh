#!/usr/bin/env bash
# Session 21, call 2: L2 prefetch one wave of rows ahead in the row kernels (layer_norm_rows,
# rms_norm_rope_rows, quantize_fp8_rows), and the Sage softmax's lazy rescaling at slack 4. One
# build; TURBINE_KERNEL_DEFINES (experiment-only NVRTC -D hook) picks the variant:
#   B = neither (the committed kernels), P = prefetch, S = prefetch + Sage slack 4.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
X=.gpu/slack
declare -A D=([B]="TURBINE_NO_ROW_PREFETCH TURBINE_FLASH_SLACK=0 TURBINE_SAGE_SLACK=0" [P]="TURBINE_FLASH_SLACK=0 TURBINE_SAGE_SLACK=0" [S]="TURBINE_FLASH_SLACK=0 TURBINE_SAGE_SLACK=4")
TURBINE_KERNEL_DEFINES="${D[S]}" timeout 150 $X/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | grep -v INFO | tail -4
for i in 1 2; do for v in B P S; do
  TURBINE_KERNEL_DEFINES="${D[$v]}" timeout 60 $X/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$v-$i.json > $R/sla13-$v-$i.log 2>&1 || echo "sla13 $v failed"
done; done
for v in B P; do
  TURBINE_KERNEL_DEFINES="${D[$v]}" timeout 60 $X/turbine bench --model 1.3b --warmup 2 --iters 8 --json $R/dense13-$v-1.json > $R/dense13-$v-1.log 2>&1 || echo "dense13 $v failed"
done
echo "t=$SECONDS"
for i in 1 2; do for v in B S; do
  [ $SECONDS -lt 400 ] || break
  TURBINE_KERNEL_DEFINES="${D[$v]}" timeout 90 $X/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$v-$i.json > $R/sla14-$v-$i.log 2>&1 || echo "sla14 $v failed"
  echo "sla14 $v $i t=$SECONDS"
done; done
if [ $SECONDS -lt 420 ]; then
  TURBINE_KERNEL_DEFINES="${D[S]}" timeout $((540 - SECONDS)) $X/turbine-gpucheck --parts sage-forward --json $R/sf.json > $R/sf.log 2>&1; echo "sage-forward rc $? t=$SECONDS"
  grep -E "whole|^sage |topk 0.1 +|FAIL|ALL CHECKS" $R/sf.log | grep -v INFO | tail -10
fi
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/*1[34]-*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    norms = sum(ops.get(k, 0) for k in ["layer_norm_modulate", "layer_norm", "rms_norm_rope", "rms_norm", "residual+layer_norm", "residual+layer_norm_modulate"])
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f}  norms {norms:7.2f}  qfp8 {ops.get('quantize fp8', 0):6.2f}  lnm {ops.get('layer_norm_modulate', 0):6.2f}  ln {ops.get('layer_norm', 0):6.2f}  rope {ops.get('rms_norm_rope', 0):6.2f}  sage {ops.get('sage attention', 0):7.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
