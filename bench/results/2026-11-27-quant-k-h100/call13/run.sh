#!/usr/bin/env bash
# Session 14, call 13: the final HEAD (22e0520): op checks and the Sage checks, and one 1.3B
# SageSLA + FP8 and one 14B 720p forward bench.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 300 .gpu/new/turbine-gpucheck --parts ops,sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/check.log | tail -3
grep -E "linear_residual|gated_gelu|sagesla topk 0\.1 \[32760|sage dense, wgmma \[32760" $R/check.log | head -12
timeout 100 .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13.json > $R/sla13.log 2>&1 || echo "sla13 failed"
timeout 150 .gpu/new/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14.json > $R/sla14.log 2>&1 || echo "sla14 failed"
python3 -c "
import json
for n in ('sla13', 'sla14'):
    j = json.load(open('$R/' + n + '.json')); print(n, 'forward median', round(j['forward']['median_ms'], 2), 'ms, first forward', j['first_forward'])"
cd $R/.. && tar czf results.tgz r && rm -rf r
