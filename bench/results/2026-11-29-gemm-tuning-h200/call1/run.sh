#!/usr/bin/env bash
# Session 24, call 1: new = cuBLASLt algorithms tuned by timing (the fastest of the heuristic's
# first 8, once per shape, kept on disk) against 944b909 (base): forwards alternately, the
# first forward's cost of tuning, the kept plans read by a second process, FP8 checks.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
B="--warmup 2 --iters 10"
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 200 .gpu/$side/turbine bench "$@" $B --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
# Kernels compiled once (same sources in both builds), so no first forward pays NVRTC below.
bench base warm --model 1.3b --attention sagesla --topk 0.1 --quant fp8
# First process of new: tunes every large shape in its first forward.
RUST_LOG=info bench new tune13 --model 1.3b --attention sagesla --topk 0.1 --quant fp8
grep -c "algorithm tuned" $R/tune13-new-*.log
cp -r /tmp/turbine-cache/cublaslt $R/plans-after-1.3b-sla
for i in 1 2; do for side in base new new base; do
  bench $side sla13 --model 1.3b --attention sagesla --topk 0.1 --quant fp8
done; done
echo "sla13 done t=$SECONDS"
RUST_LOG=info bench new tune13d --model 1.3b
for side in base new new base; do bench $side dense13 --model 1.3b; done
echo "dense13 done t=$SECONDS"
RUST_LOG=info bench new tune14 --model 14b --attention sagesla --topk 0.1 --quant fp8
for side in base new new base; do bench $side sla14 --model 14b --attention sagesla --topk 0.1 --quant fp8; done
echo "sla14 done t=$SECONDS"
grep -h "algorithm tuned" $R/tune*.log > $R/tuned-lines.txt; wc -l < $R/tuned-lines.txt
cp -r /tmp/turbine-cache/cublaslt $R/plans-final
timeout 240 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))[0]
    ff = j.get("first_forward")
    lin = {k: round(v[0], 2) for k, v in ops.items() if k.startswith("linear")}
    print(f"{os.path.basename(f):28s} median {j['forward']['median_ms']:9.2f} min {j['forward']['min_ms']:9.2f} first {json.dumps(ff)[:50]} {lin}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
