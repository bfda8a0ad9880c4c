#!/usr/bin/env bash
# Session 32, call 1: base (23f8a6e) against new (narrow as a view; the queries' RMSNorm and
# rotary embedding made in sage_quant_q_rope): fp8 and ops checks, 1.3B SageSLA / dense Sage and
# 14B 720p forwards alternately, ncu on the fused kernel.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.xz; do python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"; rm "$f"; done
chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|projected" $R/fp8.log | tail -12
timeout 100 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|narrow" $R/ops.log | tail -8
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 150 .gpu/$side/turbine bench "$@" --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
S13="--model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10"
bench base warm $S13
for side in base new new base base new; do bench $side sla13 $S13; done
echo "sla13 done t=$SECONDS"
D13="--model 1.3b --attention sage --quant fp8 --warmup 2 --iters 10"
for side in new base base new; do bench $side sage13 $D13; done
echo "sage13 done t=$SECONDS"
S14="--model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3"
for side in base new; do bench $side sla14 $S14; done
echo "sla14 done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
keys = ['slice', 'rms_norm_rope', 'sage quantize', 'sage linear out', 'sage cast', 'sage stats']
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))
    print(f"{os.path.basename(f):24s} median {j['forward']['median_ms']:8.2f} min {j['forward']['min_ms']:8.2f} " +
          "  ".join(f"{k} {g(k)[0]:.2f}/{g(k)[1]}" for k in keys))
PY
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis"
timeout 120 $NCU --clock-control none -k regex:'sage_quant_q|rms_norm_rope' --launch-skip 30 --launch-count 6 $SECT \
  .gpu/base/turbine bench $S13 --warmup 0 --iters 1 > $R/ncu-base.log 2>&1; echo "ncu base rc $? t=$SECONDS"
timeout 120 $NCU --clock-control none -k regex:'sage_quant_q|rms_norm_rope' --launch-skip 30 --launch-count 6 $SECT \
  .gpu/new/turbine bench $S13 --warmup 0 --iters 1 > $R/ncu-new.log 2>&1; echo "ncu new rc $? t=$SECONDS"
awk '/^  [a-z_0-9]+ \(/{name=$1} /Duration|DRAM Throughput|Registers Per|Achieved Occupancy/{print FILENAME": "name, $0}' $R/ncu-base.log $R/ncu-new.log | sed 's#.*/##' | head -60
cd $R/.. && tar czf results.tgz r && rm -rf r
