#!/usr/bin/env bash
# Session 16, call 2: FP8 branch layers adding into the residual stream (bf16 in the bf16 DiT) in
# the GEMM, and the dense cross-attention output layer likewise (new) against 3ee3af7 (base).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 150 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "residual vs|tiny DiT fp8" $R/fp8.log; grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
for i in 1 2; do for side in base new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "sla13 $side failed"
done; done
echo "t=$SECONDS"
for i in 1 2; do for side in base new; do
  timeout 150 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$side-$i.json > $R/sla14-$side-$i.log 2>&1 || echo "sla14 $side failed"
done; done
echo "t=$SECONDS"
for side in base new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --warmup 2 --iters 5 --json $R/dense13-$side.json > $R/dense13-$side.log 2>&1 || echo "dense13 $side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/*13-*.json") + glob.glob(sys.argv[1] + "/sla14-*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    keep = ["linear fp8", "linear fp8+residual", "linear", "quantize fp8", "residual+layer_norm_modulate", "residual+layer_norm", "layer_norm_modulate", "layer_norm", "gated_residual", "add", "mul"]
    e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  " + "  ".join(f"{k} {ops[k]:.2f}" for k in keep if k in ops))
PY
timeout 240 .gpu/new/turbine-gpucheck --parts sage-forward --json $R/sf-new.json > $R/sf-new.log 2>&1; echo "sage-forward new rc $? t=$SECONDS"
grep -E "fp8 linears" $R/sf-new.log
cd $R/.. && tar czf results.tgz r && rm -rf r
