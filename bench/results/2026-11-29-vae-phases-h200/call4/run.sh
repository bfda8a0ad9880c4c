#!/usr/bin/env bash
# Session 26, call 4: new = the row kernels (layer_norm_rows, rms_norm_rope_rows,
# quantize_fp8_rows) on four 8-column chunks a lane instead of eight (1024 columns a warp).
# Against base (the DiT as at 2bac32b): fp8 and ops checks (new), ncu on the row kernels (new),
# 1.3B SageSLA 0.1 + FP8 forwards alternately, 14B 720p and 1.3B dense one each.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 200 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
timeout 100 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 150 .gpu/$side/turbine bench "$@" --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
S13="--model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10"
bench base warm $S13
for side in base new new base; do bench $side sla13 $S13; done
echo "sla13 done t=$SECONDS"
S14="--model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3"
for side in base new; do bench $side sla14 $S14; done
D13="--model 1.3b --warmup 1 --iters 4"
for side in base new; do bench $side dense13 $D13; done
echo "benches done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))[0]
    print(f"{os.path.basename(f):26s} median {j['forward']['median_ms']:9.2f}  ln_mod {g('layer_norm_modulate'):6.2f} ln {g('layer_norm'):6.2f} rope {g('rms_norm_rope'):6.2f} rms {g('rms_norm'):6.2f} res+ln {g('residual+layer_norm')+g('residual+layer_norm_modulate'):6.2f} q {g('quantize fp8'):6.2f}")
PY
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats"
timeout 100 $NCU --clock-control none -k regex:'norm|rope|quantize' --launch-skip 400 --launch-count 36 $SECT \
  .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/ncu13.log 2>&1; echo "ncu rc $? t=$SECONDS"
awk '/^  [a-zA-Z_0-9]+.*\(/{name=$1} /DRAM Throughput/{dr=$4} /Registers Per/{rg=$5} /Achieved Occupancy/{print name, d, "us DRAM", dr, "regs", rg, "occ", $4} /Duration/{d=$3}' $R/ncu13.log | sort | uniq -c | head -40
cd $R/.. && tar czf results.tgz r && rm -rf r
