#!/usr/bin/env bash
# Session 13, call 7: `turbine bench`'s energy per forward and mean power (NVML), next to
# nvidia-smi's power samples, for the 1.3B 480p SageSLA + FP8 and dense bf16 forwards.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv,noheader -lms 50 > $R/clocks.csv 2>&1 &
SMI=$!
for m in "sla13:--attention sagesla --topk 0.1 --quant fp8" "dense13:"; do
  n=${m%%:*}; a=${m#*:}
  timeout 100 .gpu/new/turbine bench --model 1.3b $a --warmup 2 --iters 10 --json $R/$n.json > $R/$n.log 2>&1 || echo "$n failed"
  python3 -c "import json; r=json.load(open('$R/$n.json')); print('$n', r['forward']['median_ms'], r['forward']['energy'], r['device'].get('power_limit_w'))"
done
kill $SMI
awk -F', ' '{split($3,p," "); if (p[1] > 300) {s += p[1]; n++}} END {print "nvidia-smi mean power over samples > 300 W:", s / n, "W,", n, "samples"}' $R/clocks.csv
gzip -9 $R/clocks.csv
cd $R/.. && tar czf results.tgz r && rm -rf r
