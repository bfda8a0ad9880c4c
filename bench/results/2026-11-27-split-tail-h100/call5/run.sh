#!/usr/bin/env bash
# Session 13, call 5: dense Sage persistent with the split (p) against a CTA a unit (new, e81fc6f)
# on a second host, and the SM clock and power through 1.3B 480p forwards (SageSLA + FP8, dense
# bf16; nvidia-smi every 50 ms, phases marked with their start times).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
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
  grep -E "sage dense, wgmma \[|sagesla topk 0.1 \[.*TOPS" $R/sage-$side-$i.log
done; done
grep -E "vs |topk 1.0" $R/sage-p-1.log
for m in "sla13:--attention sagesla --topk 0.1 --quant fp8" "dense13:"; do
  n=${m%%:*}; a=${m#*:}
  mark "$n start"
  timeout 100 .gpu/new/turbine bench --model 1.3b $a --warmup 2 --iters 10 --json $R/$n.json > $R/$n.log 2>&1 || echo "$n failed"
  mark "$n end"
done
sleep 1
kill $SMI
cat $R/marks.txt
python3 - $R <<'PY'
import json, sys, collections
d = sys.argv[1]
marks = {}
for l in open(f"{d}/marks.txt"):
    t, name, edge = l.split()
    marks.setdefault(name, {})[edge] = t
rows = [l.strip().split(", ") for l in open(f"{d}/clocks.csv") if l.count(",") >= 4]
for name, m in marks.items():
    sel = [r for r in rows if m["start"] <= r[0].split()[1][:12] <= m["end"]]
    clk = sorted(int(r[1].split()[0]) for r in sel); pw = sorted(float(r[2].split()[0]) for r in sel)
    thr = collections.Counter(r[4] for r in sel).most_common(2)
    extra = ""
    if name in ("sla13", "dense13"):
        r = json.load(open(f"{d}/{name}.json")); extra = f" forward median {r['forward']['median_ms']:.2f} ms"
    print(f"{name}: {len(sel)} samples, SM clock min/median/max {clk[0]}/{clk[len(clk)//2]}/{clk[-1]} MHz, power median/max {pw[len(pw)//2]}/{pw[-1]} W, throttle {thr}{extra}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
