#!/usr/bin/env bash
# The INT8 W8A8 linears of `--quant int8` (issue 6) on a GPU host. Such hosts have no Rust
# toolchain: build the release binaries elsewhere (`cargo build --release -p turbine-gpucheck
# -p turbine-cli`), bring them along in .gpu/, and run this from anywhere in the repository:
#
#   tools/gpu/int8_check.sh          BIN (default .gpu) holds turbine-gpucheck and turbine
#
# Steps, all outputs under $OUT (default ./int8-out), about 3 minutes on an H100:
#   1. `turbine-gpucheck --parts int8,int8-bench` (int8.log, int8.json): the block quantizer bit
#      for bit against the host one; each INT8 layer's GEMM against the host block-scaled GEMM on
#      the same int8 values (max rel <= 2^-8 and 0 differing bf16 outputs), against the f32 CPU
#      linear and the GPU's bf16 linear (rel L2 <= 3e-2; the format's own floor printed as
#      `sim`), at small shapes with row tails and Wan2.1-1.3B's 480p block shapes; K % 128 and
#      N % 8 refused; the tiny Wan DiT with INT8 block linears; then bf16 vs INT8 vs FP8 timings
#      at the 1.3B and 14B block shapes (32760 tokens);
#   2. compute-sanitizer memcheck over the checks at 300 tokens (memcheck.log);
#   3. `turbine bench` Wan2.1-1.3B 480p, bf16 then --quant int8 (bench-none.json, bench-int8.json);
#   4. `turbine bench` Wan2.1-14B 720p --quant int8, one forward (bench-14b-int8.json): the weights
#      resident after load (issue 6 target <= 15 GB).
# Exits non-zero when any step fails.
FORMAT=int8 MEMCHECK_TIMEOUT=300 MEMCHECK_NOTE=" at 300 tokens" MEMCHECK_ARGS=(--int8-tokens 300)
source "$(dirname "$0")/quant_steps.sh"

bench_1_3b 3 5

echo "== 4. turbine bench 14b 720p --quant int8"
"$BIN/turbine" bench --model 14b --size 720p --frames 81 --precision bf16 --quant int8 \
    --warmup 0 --iters 1 --json "$OUT/bench-14b-int8.json" >"$OUT/bench-14b-int8.log" 2>&1
rc=$?
echo "step 4: exit $rc"
status=$((status | rc))

python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ["bench-none", "bench-int8", "bench-14b-int8"]:
    path = out / f"{name}.json"
    if not path.exists():
        continue
    b = json.loads(path.read_text())
    f = b["forward"]
    live = b["device_after_load"]["live_bytes"]
    print(f"turbine bench {b.get('model')} quant={b.get('quant')}: forward {f['median_ms']:.1f} ms, "
          f"weights resident {live / 1e9:.2f} GB ({live / 2**30:.2f} GiB)")
    for op in (b.get("ops") or [])[:8]:
        print(f"    {op['op']:<24} {op['calls']:>5} calls {op['total_ms']:>10.2f} ms {100*op['share']:>5.1f} %")
PY
echo "int8_check.sh: exit $status"
exit "$status"
