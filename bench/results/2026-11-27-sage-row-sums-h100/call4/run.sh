#!/usr/bin/env bash
# Session 12, call 4: the softmax's row maxima and sums by a tree (t) against HEAD 7747aa4 (c2):
# checks (ops: every flash kernel), kernel timings, forwards (dense bf16 and SageSLA + FP8).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
echo "t=$SECONDS"
for side in t c2; do
  timeout 120 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side.json > $R/sage-$side.log 2>&1; echo "sage $side rc $? t=$SECONDS"
  grep -E "FAIL|failed" $R/sage-$side.log | head -3
  grep -E "sage|flash \[|TOPS" $R/sage-$side.log | grep -v "INFO" | head -40
done
timeout 150 .gpu/t/turbine-gpucheck --parts ops > $R/ops-t.log 2>&1; echo "ops t rc $? t=$SECONDS"
grep -E "FAIL|passed|failed" $R/ops-t.log | tail -3
grep -iE "flash|attention" $R/ops-t.log | head -30
bench() { # label rounds args...
  local label=$1 rounds=$2; shift 2
  for ((i = 1; i <= rounds; i++)); do for side in c2 t; do
    timeout 200 .gpu/$side/turbine bench "$@" --json $R/$label-$side-$i.json > $R/$label-$side-$i.log 2>&1 || echo "$label $side-$i failed"
  done; done
  python3 - $R $label $rounds <<'PY'
import json, sys
d, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(1, n + 1):
    row = []
    for side in ("c2", "t"):
        try:
            r = json.load(open(f"{d}/{label}-{side}-{i}.json"))
            ops = {o["op"]: o["total_ms"] for o in r["ops"]}
            att = ops.get("sage attention", ops.get("attention (self)", ops.get("attention", 0)))
            row.append(f"{side} {r['forward']['median_ms']:8.2f} (min {r['forward']['min_ms']:8.2f}, attn {att:7.2f})")
        except Exception as e:
            row.append(f"{side} -")
    print(f"{label} {i}: " + " | ".join(row))
PY
}
bench dense13 2 --model 1.3b
echo "t=$SECONDS"
bench sla13 2 --model 1.3b --attention sagesla --topk 0.1 --quant fp8
echo "t=$SECONDS"
bench sla14 1 --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2
echo "t=$SECONDS"
cd $R/.. && tar czf results.tgz r && rm -rf r
