#!/usr/bin/env bash
# Session 13, call 4: dense Sage launched persistent with the split (p) against a CTA a unit
# (new, e81fc6f), and the SM clock and power through a 14B 720p SageSLA + FP8 forward and through
# the Sage kernel timings (nvidia-smi every 50 ms, phases marked with their start times).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
cp .gpu/new/turbine .gpu/p/turbine 2>/dev/null
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv,noheader -lms 50 > $R/clocks.csv 2>&1 &
SMI=$!
mark() { echo "$(date +%H:%M:%S.%N | cut -c1-12) $*" >> $R/marks.txt; }
for i in 1 2; do for side in new p; do
  mark "sage $side-$i start"
  timeout 150 .gpu/$side/turbine-gpucheck --parts sage --json $R/sage-$side-$i.json > $R/sage-$side-$i.log 2>&1; echo "sage $side-$i rc $? t=$SECONDS"
  mark "sage $side-$i end"
  grep -E "FAIL|failed" $R/sage-$side-$i.log | head -3
  grep -E "sage dense, wgmma \[|sagesla topk 0.1 \[.*TOPS|^    sage attention" $R/sage-$side-$i.log
done; done
mark "sla14 start"
timeout 200 .gpu/new/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 --json $R/sla14.json > $R/sla14.log 2>&1 || echo "sla14 failed"
mark "sla14 end"
sleep 1
kill $SMI
python3 - $R <<'PY'
import json, sys
d = sys.argv[1]
r = json.load(open(f"{d}/sla14.json"))
ops = {o["op"]: o["total_ms"] for o in r["ops"]}
print("sla14 forward", r["forward"]["median_ms"], "sage attention", ops["sage attention"], "linear fp8", ops["linear fp8"])
PY
cat $R/marks.txt
awk -F', ' '{c[$2]++} END {for (k in c) print k, c[k]}' $R/clocks.csv | sort -k3 -n -r | head -12
cd $R/.. && tar czf results.tgz r && rm -rf r
