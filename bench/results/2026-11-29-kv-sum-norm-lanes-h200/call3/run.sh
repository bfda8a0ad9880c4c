#!/usr/bin/env bash
# Session 25, call 3: new = call 2's build with sage_kv_reduce on 16 rows a CTA (8 CTAs a head);
# against 9177d88 (base): sage / sage-forward checks, 1.3B and 14B SageSLA + FP8 forwards
# alternately, ncu on sage_kv_sum / sage_kv_reduce.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 200 .gpu/new/turbine-gpucheck --parts sage --json $R/sage.json > $R/sage.log 2>&1; echo "sage rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/sage.log | tail -4
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 150 .gpu/$side/turbine bench "$@" --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
S13="--model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10"
bench base warm $S13
for side in base new new base; do bench $side sla13 $S13; done
echo "sla13 done t=$SECONDS"
S14="--model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3"
for side in base new new base; do bench $side sla14 $S14; done
echo "sla14 done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))
    print(f"{os.path.basename(f):26s} median {j['forward']['median_ms']:9.2f}  stats {g('sage stats')[0]:7.2f}/{g('sage stats')[1]}")
PY
timeout 150 .gpu/new/turbine-gpucheck --parts sage-forward --json $R/sf.json > $R/sf.log 2>&1; echo "sage-forward rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|sage stats" $R/sf.log | tail -6
grep -A5 "whole forward" $R/sf.log | head -8
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis"
timeout 100 $NCU --clock-control none -k regex:'sage_kv_(sum|reduce)$' --launch-skip 20 --launch-count 4 $SECT \
  .gpu/new/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/ncu-kv14.log 2>&1; echo "ncu kv14 rc $? t=$SECONDS"
timeout 100 $NCU --clock-control none -k regex:'sage_kv(|_sum|_reduce)$' --launch-skip 30 --launch-count 6 $SECT \
  .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/ncu-kv13.log 2>&1; echo "ncu kv13 rc $? t=$SECONDS"
awk '/^  [a-z_0-9]+ \(/{name=$1" "$2} /Duration|DRAM Throughput/{print name, $0}' $R/ncu-kv14.log $R/ncu-kv13.log | head -40
cd $R/.. && tar czf results.tgz r && rm -rf r
