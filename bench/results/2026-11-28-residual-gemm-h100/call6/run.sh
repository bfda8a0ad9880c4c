#!/usr/bin/env bash
# Session 16, call 6: INT8 W8A8 branch layers adding into the residual stream in the GEMM's
# epilogue (new) against 22b25e2 (base): INT8 checks, then 1.3B 480p and 14B 720p SageSLA 0.1 +
# INT8 forwards alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts int8 --json $R/int8.json > $R/int8.log 2>&1; echo "int8 rc $? t=$SECONDS"
grep -E "residual" $R/int8.log; grep -E "FAIL|passed|failed|ALL CHECKS" $R/int8.log | tail -3
for i in 1 2; do for side in base new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant int8 --warmup 2 --iters 10 --json $R/int13-$side-$i.json > $R/int13-$side-$i.log 2>&1 || echo "int13 $side failed"
done; done
echo "t=$SECONDS"
for side in base new; do
  timeout 150 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant int8 --warmup 1 --iters 3 --json $R/int14-$side.json > $R/int14-$side.log 2>&1 || echo "int14 $side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/int1*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    keep = ["linear int8", "linear int8+residual", "quantize int8", "residual+layer_norm_modulate", "residual+layer_norm", "layer_norm_modulate", "layer_norm", "gated_residual", "add"]
    e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  " + "  ".join(f"{k} {ops[k]:.2f}" for k in keep if k in ops))
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
