#!/usr/bin/env bash
# Session 11, call 3: sage_select two query blocks a warp, on top of call 2; checks, old (HEAD) /
# new Sage parts, forwards, and each Sage kernel's time in one 1.3B SageSLA forward (ncu).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*.gz .gpu/old/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/turbine .gpu/turbine-gpucheck .gpu/old/*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
echo "t=$SECONDS"
timeout 120 .gpu/turbine-gpucheck --parts sage --json $R/check.json > $R/check.log 2>&1; echo "check rc $? t=$SECONDS"
grep -E "FAIL|ALL CHECKS|checks passed|failed" $R/check.log | head
grep -E "sage|flash \[|wgmma vs mma" $R/check.log | head -40
timeout 90 .gpu/old/turbine-gpucheck --parts sage > $R/old-sage.log 2>&1; echo "old sage rc $? t=$SECONDS"
grep -E "    sage|sage dense, wgmma|sagesla topk 0.1 \[" $R/old-sage.log | head -20
timeout 120 tools/gpu/ab_bench.sh sla13 .gpu/old/turbine .gpu/turbine 2 --model 1.3b --attention sagesla --topk 0.1 --quant fp8 2>&1 | head -20
echo "t=$SECONDS"
timeout 130 tools/gpu/ab_bench.sh sla14 .gpu/old/turbine .gpu/turbine 1 --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 2 2>&1 | head -20
echo "t=$SECONDS"
NCU=/usr/local/cuda/bin/ncu
for side in old new; do
  bin=.gpu/turbine; [ $side = old ] && bin=.gpu/old/turbine
  timeout 100 $NCU --metrics gpu__time_duration.sum -k regex:sage_ -o $R/ncu-$side $bin bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/ncu-$side.log 2>&1; echo "ncu $side rc $? t=$SECONDS"
  $NCU -i $R/ncu-$side.ncu-rep --csv --page raw --metrics gpu__time_duration.sum > $R/ncu-$side.csv 2>/dev/null
  python3 - $R/ncu-$side.csv <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
h = rows[0]; k = h.index("Kernel Name"); t = h.index("gpu__time_duration.sum")
tot = collections.defaultdict(float); n = collections.Counter()
for r in rows[2:]:
    try: tot[r[k]] += float(r[t]); n[r[k]] += 1
    except ValueError: pass
for name, v in sorted(tot.items(), key=lambda x: -x[1]):
    print(f"  {name:28s} calls {n[name]:4d}  mean {v / n[name] / 1000:8.1f} us")
PY
  rm -f $R/ncu-$side.ncu-rep
done
cd $R/.. && tar czf results.tgz r && rm -rf r
