#!/usr/bin/env bash
# Session 16, call 7: the final build's FP8 checks (the residual check moved to check_quant.rs,
# the 8-bit residual branches through one helper) and one 1.3B 480p SageSLA 0.1 + FP8 forward bench.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/new/*.gz; chmod +x .gpu/new/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 150 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "residual vs" $R/fp8.log; grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
timeout 100 .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13.json > $R/sla13.log 2>&1 || echo "sla13 failed"
python3 -c "import json; j=json.load(open('$R/sla13.json')); print('sla13 median', round(j['forward']['median_ms'],2))"
cd $R/.. && tar czf results.tgz r && rm -rf r
