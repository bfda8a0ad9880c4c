# Sourced by fp8_check.sh and int8_check.sh: the steps they share. Expects FORMAT
# (fp8 or int8), MEMCHECK_TIMEOUT (seconds), MEMCHECK_NOTE (appended to step 2's title) and the
# array MEMCHECK_ARGS (more turbine-gpucheck arguments). Leaves the shell at the repository root
# with BIN, OUT (default ./$FORMAT-out) and status (the steps' exit codes or-ed) set:
#   1. `turbine-gpucheck --parts $FORMAT,$FORMAT-bench` ($FORMAT.log, $FORMAT.json);
#   2. compute-sanitizer memcheck over the checks (memcheck.log);
# and defines bench_1_3b, a later step of both.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${BIN:-.gpu}
OUT=${OUT:-$FORMAT-out}
mkdir -p "$OUT"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
    | tee "$OUT/env.txt"

echo "== 1. gpucheck: ${FORMAT^^} checks and timings"
"$BIN/turbine-gpucheck" --parts "$FORMAT,$FORMAT-bench" --json "$OUT/$FORMAT.json" 2>&1 \
    | tee "$OUT/$FORMAT.log"
rc=${PIPESTATUS[0]}
echo "step 1: exit $rc"
status=$((status | rc))

echo "== 2. compute-sanitizer memcheck: ${FORMAT^^} checks$MEMCHECK_NOTE"
timeout "$MEMCHECK_TIMEOUT" compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$BIN/turbine-gpucheck" --parts "$FORMAT" "${MEMCHECK_ARGS[@]}" --seed 11 \
    >"$OUT/memcheck.log" 2>&1
rc=$?
grep -E "^$FORMAT:|ERROR SUMMARY" "$OUT/memcheck.log"
echo "step 2: exit $rc"
status=$((status | rc))

# Step $1: `turbine bench` Wan2.1-1.3B 480p, bf16 then $FORMAT, $2 timed forwards each
# (bench-none.json, bench-$FORMAT.json).
bench_1_3b() {
    local step=$1 iters=$2 quant
    for quant in none "$FORMAT"; do
        echo "== $step. turbine bench 1.3b 480p --quant $quant"
        "$BIN/turbine" bench --model 1.3b --size 480p --frames 81 --precision bf16 \
            --quant "$quant" --iters "$iters" --json "$OUT/bench-$quant.json" \
            >"$OUT/bench-$quant.log" 2>&1
        rc=$?
        echo "step $step ($quant): exit $rc"
        status=$((status | rc))
    done
}
