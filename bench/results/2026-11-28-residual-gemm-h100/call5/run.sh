#!/usr/bin/env bash
# Session 16, call 5: the final build (a93c07d): op and FP8 checks, one 1.3B 480p SageSLA 0.1 +
# FP8 and one dense bf16 forward bench.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/new/*.gz; chmod +x .gpu/new/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 250 .gpu/new/turbine-gpucheck --parts ops,fp8 --json $R/check.json > $R/check.log 2>&1; echo "ops,fp8 rc $? t=$SECONDS"
grep -E "residual vs|kv \[21|tiny DiT fp8" $R/check.log; grep -E "FAIL|passed|failed|ALL CHECKS" $R/check.log | tail -4
timeout 100 .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13.json > $R/sla13.log 2>&1 || echo "sla13 failed"
timeout 100 .gpu/new/turbine bench --model 1.3b --warmup 2 --iters 5 --json $R/dense13.json > $R/dense13.log 2>&1 || echo "dense13 failed"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/*13.json")):
    j = json.load(open(f)); e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):14s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
