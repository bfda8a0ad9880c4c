#!/usr/bin/env bash
# Session 21, call 7: SG_FOLD 8 against the committed 4 (experiment-only NVRTC -D hook).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
X=.gpu/f8
for v in 4 8; do
  TURBINE_KERNEL_DEFINES="SG_FOLD=$v" timeout 110 $X/turbine-gpucheck --parts sage --json $R/sage-$v.json > $R/sage-$v.log 2>&1; echo "sage $v rc $? t=$SECONDS"
  grep -E "FAIL|ALL CHECKS|vs CPU f32 \(wgmma|vs f32 SLA|proj_l = 0 vs sage dense \(wgmma|^sage dense, wgmma|^sagesla topk 0.1 \[" $R/sage-$v.log
done
for v in 4 8 4 8; do
  [ $SECONDS -lt 260 ] || break
  TURBINE_KERNEL_DEFINES="SG_FOLD=$v" timeout 60 $X/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$v-$SECONDS.json > $R/sla14-$v.log 2>&1 || echo "sla14 $v failed"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[2], j['forward']['median_ms'], [o['total_ms'] for o in j['ops'] if o['op']=='sage attention'])" $(ls -t $R/sla14-$v-*.json | head -1) $v
done
cd $R/.. && tar czf results.tgz r && rm -rf r
