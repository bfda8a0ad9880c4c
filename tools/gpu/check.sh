#!/usr/bin/env bash
# The CUDA backend's device check on a GPU host. Such hosts have no Rust toolchain: build the
# binary elsewhere (`cargo build --release -p turbine-gpucheck`, stripped by the release profile),
# bring it along, and run this from anywhere in the repository:
#
#   tools/gpu/check.sh [BINARY]          BINARY defaults to .gpu/turbine-gpucheck
#
# Steps, all outputs under $OUT (default ./gpucheck-out):
#   1. empty kernel cache: every op and the tiny Wan DiT against the CPU backend, then timings
#      (gpucheck.log, gpucheck.json);
#   2. warm disk cache, another seed: start-up cost and the op checks again (warm.log);
#   3. compute-sanitizer memcheck (out-of-bounds accesses) and racecheck (shared-memory races)
#      over the op and DiT checks (memcheck.log, racecheck.log). Racecheck reports hazards inside
#      cuBLASLt's own bf16 GEMM kernels (`nvjet_*`, whose asynchronous-proxy synchronization it
#      does not follow): those are listed and not counted; a hazard in any other kernel fails.
#      (Its --kernel-name-exclude crashed the sanitizer on these kernels, H200, 2026-11-26.)
# Exits non-zero when any step fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-.gpu/turbine-gpucheck}")
OUT=${OUT:-gpucheck-out}
mkdir -p "$OUT"
status=0

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    ldconfig -p | grep -E 'libcuda\.so|libnvrtc\.so|libcublasLt\.so'
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

TURBINE_KERNEL_CACHE=$(mktemp -d)
export TURBINE_KERNEL_CACHE

echo "== 1. cold kernel cache: ops, tiny DiT, timings"
"$BIN" --json "$OUT/gpucheck.json" 2>&1 | tee "$OUT/gpucheck.log"
rc=${PIPESTATUS[0]}
echo "step 1: exit $rc"
status=$((status | rc))

echo "== 2. warm kernel cache, seed 7: ops"
"$BIN" --parts ops --seed 7 >"$OUT/warm.log" 2>&1
rc=$?
grep -E '^(device|kernel modules|ops:)' "$OUT/warm.log"
echo "step 2: exit $rc"
status=$((status | rc))

for tool in memcheck racecheck; do
    echo "== 3. compute-sanitizer $tool: ops, tiny DiT"
    timeout 300 compute-sanitizer --tool "$tool" --error-exitcode 9 \
        "$BIN" --parts ops,dit --seed 11 >"$OUT/$tool.log" 2>&1
    rc=$?
    grep -E '^(ops:|dit:)|ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/$tool.log"
    if [ "$tool" = racecheck ] && [ "$rc" = 9 ] \
        && ! grep -E '^========= (Error|Internal)' "$OUT/$tool.log" | grep -qv 'nvjet_' \
        && grep -qE '^(ops|dit): .* 0 failed' "$OUT/$tool.log"; then
        echo "racecheck: hazards only inside cuBLASLt's nvjet kernels (not counted):"
        grep -E '^========= Error' "$OUT/$tool.log" | sort | uniq -c
        rc=0
    fi
    echo "step 3 $tool: exit $rc"
    status=$((status | rc))
done

echo "check.sh: exit $status"
exit "$status"
