#!/usr/bin/env bash
# Session 21, call 4: the committed kernels (SG_SLACK 4, SG_FOLD 4; no experiment hook) checked
# (`--parts ops,sage`), a 1.3B SageSLA + FP8 forward, and issue 7's end-to-end run
# (tools/gpu/e2e_bench.sh: random-weight model folder, `turbine generate` 480p 81 frames).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/*.gz; chmod +x .gpu/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/turbine-gpucheck --parts ops,sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|vs CPU|vs f32 SLA|proj_l = 0|^sage dense, wgmma|^sagesla topk" $R/check.log | grep -v INFO | tail -16
timeout 60 .gpu/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13.json > $R/sla13.log 2>&1; echo "sla13 rc $? t=$SECONDS"
OUT=$R/e2e timeout $((560 - SECONDS)) bash tools/gpu/e2e_bench.sh > $R/e2e.log 2>&1; echo "e2e rc $? t=$SECONDS"
grep -v INFO $R/e2e.log | tail -40
cd $R/.. && rm -f r/e2e/*.mp4.tmp && tar czf results.tgz r && rm -rf r
