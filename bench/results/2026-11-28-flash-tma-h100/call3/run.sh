#!/usr/bin/env bash
# Session 17, call 3: the TMA flash kernels with the producer at 24 registers and the consumers
# at 240 (new), and the same with every self-attention on the persistent kernel (alt), against
# call 1's TMA build (base, dd9a328, 56 / 224): op checks of new, kernel timings, dense bf16
# forwards at 1.3B 480p alternately and 14B 720p.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "bf16 attention " $R/ops.log | grep -v INFO | tail -20; grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
for side in base new alt; do
  timeout 200 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side.json > $R/sage-$side.log 2>&1; echo "sage $side rc $? t=$SECONDS"
  grep -E "bf16 flash \[|sage dense, wgmma" $R/sage-$side.log | grep -v INFO
done
for i in 1 2; do for side in base new alt; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --warmup 2 --iters 5 --json $R/dense13-$side-$i.json > $R/dense13-$side-$i.log 2>&1 || echo "dense13 $side failed"
done; done
echo "t=$SECONDS"
for side in new alt; do
  timeout 150 .gpu/$side/turbine bench --model 14b --size 720p --warmup 1 --iters 2 --json $R/dense14-$side.json > $R/dense14-$side.log 2>&1 || echo "dense14 $side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/dense1*.json")):
    j = json.load(open(f)); ops = {o["op"]: o["total_ms"] for o in j["ops"]}
    e = j["forward"].get("energy") or {}
    print(f"{os.path.basename(f):18s} median {j['forward']['median_ms']:9.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  self {ops.get('attention (self)', 0):8.2f}  cross {ops.get('attention (cross)', 0):7.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
