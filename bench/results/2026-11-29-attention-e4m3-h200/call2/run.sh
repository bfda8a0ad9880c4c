#!/usr/bin/env bash
# Session 23, call 2: new = call 1's change with the e4m3 factor read once per store and the
# linear branch's max on packed 16-bit maxima, against ec3d747 (base): FP8 and Sage checks,
# attention -> o timings, 1.3B SageSLA 0.1 + FP8 forwards alternately (A B B A, twice).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for part in fp8 sage; do
  timeout 240 .gpu/new/turbine-gpucheck --parts $part --json $R/$part.json > $R/$part.log 2>&1; echo "$part rc $? t=$SECONDS"
  grep -E "FAIL|passed|failed|ALL CHECKS" $R/$part.log | tail -4
done
grep -E "attention (output|o)" $R/fp8.log
timeout 200 .gpu/new/turbine-gpucheck --parts fp8-bench --json $R/fp8b.json > $R/fp8b.log 2>&1; echo "fp8-bench rc $? t=$SECONDS"
grep -A4 "attention -> o" $R/fp8b.log
for side in base new new base base new new base; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side-$SECONDS.json > $R/sla13-$side-$SECONDS.log 2>&1 || echo "sla13 $side failed"
done
echo "t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/sla1*.json"), key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    e = j["forward"].get("energy") or {}
    g = lambda k: ops.get(k, (0, 0))
    print(f"{os.path.basename(f):26s} median {j['forward']['median_ms']:8.2f} ms  J {e.get('joules_per_forward', 0):7.1f}  attn {g('sage attention')[0]:7.2f}  quant {g('quantize fp8')[0]:6.2f}/{g('quantize fp8')[1]}  res {g('linear fp8+residual')[0]:6.2f}  linout {g('sage linear out')[0]:5.2f}  oscale {g('sage out scale')[0]:5.2f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
