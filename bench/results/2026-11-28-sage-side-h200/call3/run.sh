#!/usr/bin/env bash
# Session 19, call 3: the row norms (layer_norm_rows, rms_norm_rope_rows) prefetching into L2 the
# row one wave of resident rows ahead (new3) against ea0fed7 (base2): op and FP8 checks of new3,
# then forwards alternately: 1.3B 480p SageSLA 0.1 + FP8 (twice), 1.3B dense bf16, 14B 720p
# SageSLA 0.1 + FP8.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for part in ops fp8; do
  timeout 150 .gpu/new3/turbine-gpucheck --parts $part --json $R/$part.json > $R/$part.log 2>&1; echo "$part rc $? t=$SECONDS"
  grep -E "FAIL|passed|failed|ALL CHECKS" $R/$part.log | tail -3
done
for i in 1 2; do for side in base2 new3; do
  timeout 80 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "sla13 $side failed"
done; done
for side in base2 new3; do
  timeout 80 .gpu/$side/turbine bench --model 1.3b --warmup 1 --iters 5 --json $R/dense13-$side.json > $R/dense13-$side.log 2>&1 || echo "dense13 $side failed"
done
echo "t=$SECONDS"
for side in base2 new3; do
  timeout 120 .gpu/$side/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14-$side.json > $R/sla14-$side.log 2>&1 || echo "sla14 $side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/*1[34]-*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    e = j["forward"].get("energy") or {}
    norms = {k: v for k, v in ops.items() if "norm" in k}
    print(f"{os.path.basename(f):20s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  " + "  ".join(f"{k} {v:.2f}" for k, v in sorted(norms.items())))
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
