#!/usr/bin/env bash
# Session 26, call 5: new = layer_norm_rows on a resident grid, each block walking its row groups
# in turn. Against base = 3cd645a (four chunks a lane): ops checks (new; among them rows enough
# that blocks walk several groups), fused FP8 norm checks, ncu on layer_norm_rows (both), 1.3B
# SageSLA 0.1 + FP8 forwards alternately, 14B 720p one each.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 100 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "walking|FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -5
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 150 .gpu/$side/turbine bench "$@" --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
S13="--model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10"
bench base warm $S13
for side in base new new base; do bench $side sla13 $S13; done
S14="--model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3"
for side in base new; do bench $side sla14 $S14; done
echo "benches done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))[0]
    print(f"{os.path.basename(f):26s} median {j['forward']['median_ms']:9.2f}  ln_mod {g('layer_norm_modulate'):6.2f} ln {g('layer_norm'):6.2f} rope {g('rms_norm_rope'):6.2f} rms {g('rms_norm'):6.2f}")
PY
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats"
for side in base new; do
  timeout 80 $NCU --clock-control none -k regex:'layer_norm_rows' --launch-skip 12 --launch-count 6 $SECT \
    .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/ncu-$side.log 2>&1; echo "ncu $side rc $? t=$SECONDS"
  awk '/^  [a-zA-Z_0-9]+.*\(/{name=$1" "$2} /DRAM Throughput/{dr=$4} /Registers Per/{rg=$5} /Achieved Occupancy/{print name, d, "us DRAM", dr, "regs", rg, "occ", $4} /Duration/{d=$3}' $R/ncu-$side.log
done
if [ $SECONDS -lt 200 ]; then
  timeout 170 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
  grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
fi
cd $R/.. && tar czf results.tgz r && rm -rf r
