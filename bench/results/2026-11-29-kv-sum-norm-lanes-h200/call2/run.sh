#!/usr/bin/env bash
# Session 25, call 2: new = φ(K)ᵀV's chunks summed by sage_kv_sum (full occupancy) before
# sage_kv_reduce's projection; the bf16 channel norm's lanes on interleaved 16-byte chunks. Against
# 9177d88 (base): sage / ops / sage-forward checks, 1.3B and 14B SageSLA + FP8 forwards and the VAE
# decode alternately, ncu on the new build's norms and sage side kernels.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 100 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
timeout 200 .gpu/new/turbine-gpucheck --parts sage --json $R/sage.json > $R/sage.log 2>&1; echo "sage rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|differing" $R/sage.log | tail -8
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
echo "sla14 done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))
    print(f"{os.path.basename(f):26s} median {j['forward']['median_ms']:9.2f}  stats {g('sage stats')[0]:7.2f}/{g('sage stats')[1]}")
PY
for side in base new new base; do
  timeout 120 .gpu/$side/turbine-gpucheck --parts vae --vae-iters 4 --json $R/vae-$side-$SECONDS.json > $R/vae-$side-$SECONDS.log 2>&1 || echo "vae $side failed"
done
echo "vae done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/vae-*.json"), key=lambda f: int(f.split('-')[-1][:-5])):
    d = json.load(open(f))["vae"]["full"]["decode"]
    prof = {o["op"]: o["ms"] for o in d["profile"]}
    e = json.load(open(f))["vae"]["full"].get("encode", {})
    print(f"{os.path.basename(f):22s} decode median {d['median_ms']:7.1f} min {d['min_ms']:7.1f}  folded {prof.get('causal_rms_norm_silu_folded',0):6.2f}  plain {prof.get('causal_rms_norm_silu',0):6.2f}  encode {e.get('median_ms',0):7.1f}")
PY
timeout 150 .gpu/new/turbine-gpucheck --parts sage-forward --json $R/sf.json > $R/sf.log 2>&1; echo "sage-forward rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|forward|sage stats" $R/sf.log | tail -14
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis --section SchedulerStats"
timeout 150 $NCU --clock-control none -k regex:channel_rms_norm_bf16 --launch-skip 600 --launch-count 30 $SECT \
  .gpu/new/turbine-gpucheck --parts vae --vae-iters 1 > $R/ncu-vae.log 2>&1; echo "ncu vae rc $? t=$SECONDS"
timeout 100 $NCU --clock-control none -k regex:'sage_kv_(sum|reduce)$' --launch-skip 20 --launch-count 4 $SECT \
  .gpu/new/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/ncu-kv14.log 2>&1; echo "ncu kv rc $? t=$SECONDS"
awk '/^  [a-z_0-9]+ \(/{name=$1" "$2} /Duration/{print name, $2, $3}' $R/ncu-vae.log $R/ncu-kv14.log | head -40
cd $R/.. && tar czf results.tgz r && rm -rf r
