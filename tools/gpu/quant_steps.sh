# Sourced by fp8_check.sh and int8_check.sh, which differ only after these steps. Expects FORMAT
# (fp8 or int8), MEMCHECK_TIMEOUT (seconds), MEMCHECK_NOTE (appended to step 2's title) and the
# array MEMCHECK_ARGS (more turbine-gpucheck arguments). Leaves the shell at the repository root
# with BIN, OUT (default ./$FORMAT-out) and status (the steps' exit codes or-ed) set:
#   1. `turbine-gpucheck --parts $FORMAT,$FORMAT-bench` ($FORMAT.log, $FORMAT.json);
#   2. compute-sanitizer memcheck over the checks (memcheck.log).
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
