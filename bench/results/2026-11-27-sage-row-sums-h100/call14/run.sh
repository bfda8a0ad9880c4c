#!/usr/bin/env bash
# Session 12, call 14: the review mend (9da3ef5, spreads searched once per kernel and row width):
# op/FP8 checks, the layouts it picks at 14B 720p and 1.3B 480p, one forward of each.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
timeout 200 .gpu/m/turbine-gpucheck --parts ops,fp8 > $R/ops-m.log 2>&1; echo "ops,fp8 rc $?"
grep -E "FAIL|passed|failed" $R/ops-m.log | tail -4
for m in "--model 14b --size 720p --warmup 1 --iters 2" "--model 1.3b"; do
RUST_LOG=turbine_tensor::cuda::rows=trace timeout 150 .gpu/m/turbine bench $m --attention sagesla --topk 0.1 --quant fp8 --json $R/fwd.json > $R/trace.log 2>&1
grep "row layout" $R/trace.log | sed "s/.*row layout//" | sort | uniq -c | tee -a $R/layouts.txt
python3 -c "import json,sys; r=json.load(open('$R/fwd.json')); print('forward', r['model'], r['forward']['median_ms'])" | tee -a $R/layouts.txt
done
rm $R/trace.log
cd $R/.. && tar czf results.tgz r && rm -rf r
