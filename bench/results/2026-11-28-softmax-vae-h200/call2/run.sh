#!/usr/bin/env bash
# Session 20, call 2: the bf16 wgmma flash kernels' row sums on the tensor cores (P times a tile of
# ones, m64n8k16 beside each PV step; the softmax without its FADDs) — new2 — against base (the
# exp1 build with no defines: a2d7677's kernels). Checks of new2 (parts sage, ops), dense bf16
# forwards at 1.3B 480p and 14B 720p and SageSLA 0.1 + FP8 at 1.3B (its cross-attention) alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 150 .gpu/new2/turbine-gpucheck --parts sage --json $R/sage.json > $R/sage.log 2>&1; echo "sage rc $? t=$SECONDS"
grep -E "FAIL|ALL CHECKS|vs bf16 flash|wgmma vs mma|^bf16 flash \[|^sage dense, wgmma" $R/sage.log
timeout 150 .gpu/new2/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -iE "flash|attention" $R/ops.log | grep -v INFO | head -30; grep -E "passed|failed|FAIL|ALL CHECKS" $R/ops.log | tail -4
for i in 1 2; do for side in exp1 new2; do
  timeout 60 .gpu/$side/turbine bench --model 1.3b --warmup 2 --iters 8 --json $R/dense13-$side-$i.json > $R/dense13-$side-$i.log 2>&1 || echo "dense13 $side failed"
done; done
echo "t=$SECONDS"
for side in exp1 new2; do
  timeout 100 .gpu/$side/turbine bench --model 14b --size 720p --warmup 1 --iters 2 --json $R/dense14-$side.json > $R/dense14-$side.log 2>&1 || echo "dense14 $side failed"
done
echo "t=$SECONDS"
for side in exp1 new2; do
  timeout 60 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side.json > $R/sla13-$side.log 2>&1 || echo "sla13 $side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/*1[34]-*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:9.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  self {ops.get('attention (self)', 0):8.2f}  sage {ops.get('sage attention', 0):7.2f}  cross {ops.get('attention (cross)', 0):6.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
