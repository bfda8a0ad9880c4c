#!/usr/bin/env bash
# Issue 6's device run for the 8-bit attention, from the repository root of a GPU host, with the
# release binaries in .gpu/ (see check.sh):
#   1. turbine-gpucheck --parts ops,sage,sage-forward: every op check (the flash kernels share the
#      softmax and wgmma headers with the Sage kernels), the Sage accuracy gates and kernel timings
#      next to the bf16 flash kernel, then the gates on a 1.3B forward's own q/k/v and the whole
#      forward's error against dense bf16 (gpucheck.log, gpucheck.json);
#   2. whole Wan2.1-1.3B 480p forwards, seeded random weights, with dense bf16, dense Sage and
#      SageSLA top-k 0.1 / 0.15 self-attention, and SageSLA 0.1 with FP8 linears (bench-*.json);
#      BENCH_14B=1 adds 14B 720p dense bf16 and SageSLA 0.1 + FP8.
# Outputs under $OUT (default ./sage-out). Exits non-zero when a check fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-sage-out}
mkdir -p "$OUT"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/env.txt"
git log -1 --format='commit %H' 2>/dev/null | tee -a "$OUT/env.txt"

echo "== 1. op checks and the Sage part"
timeout "${CHECK_TIMEOUT:-400}" .gpu/turbine-gpucheck --parts "${PARTS:-ops,sage,sage-forward}" \
    --json "$OUT/gpucheck.json" 2>&1 | tee "$OUT/gpucheck.log"
rc=${PIPESTATUS[0]}
echo "step 1: exit $rc"
status=$((status | rc))

echo "== 2. whole-DiT forwards"
bench() {
    local name=$1
    shift
    timeout 300 .gpu/turbine bench "$@" --json "$OUT/bench-$name.json" >"$OUT/bench-$name.log" 2>&1
    local rc=$?
    python3 - "$OUT/bench-$name.json" "$name" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"{sys.argv[2]}: no report ({e})"); sys.exit()
f = r["forward"]
print(f"{sys.argv[2]:<28} {r['attention']:<34} median {f['median_ms']:9.1f} ms  min {f['min_ms']:9.1f} ms"
      f"  peak {r['device']['peak_live_bytes'] / 2**30:.2f} GiB")
PY
    return $rc
}
for att in dense sage; do
    bench "1.3b-$att" --model 1.3b --attention "$att" || status=1
done
for topk in 0.1 0.15; do
    bench "1.3b-sagesla-$topk" --model 1.3b --attention sagesla --topk "$topk" || status=1
done
bench "1.3b-sagesla-0.1-fp8" --model 1.3b --attention sagesla --quant fp8 || status=1
if [ "${BENCH_14B:-0}" = 1 ]; then
    bench "14b-dense" --model 14b --size 720p --iters 3 || status=1
    bench "14b-sagesla-0.1-fp8" --model 14b --size 720p --attention sagesla --quant fp8 --iters 3 \
        || status=1
fi
exit $status
