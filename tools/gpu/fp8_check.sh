#!/usr/bin/env bash
# The FP8 linears of `--quant fp8` (issue 6) on an H100/H200 host. Such hosts have no Rust
# toolchain: build the release binaries elsewhere (`cargo build --release -p turbine-gpucheck
# -p turbine-cli`), bring them along in .gpu/, and run this from anywhere in the repository:
#
#   tools/gpu/fp8_check.sh          BIN (default .gpu) holds turbine-gpucheck and turbine
#
# Steps, all outputs under $OUT (default ./fp8-out):
#   1. `turbine-gpucheck --parts fp8,fp8-bench` (fp8.log, fp8.json): the quantization kernel bit
#      for bit against the host quantizer; every FP8 layer against the CPU on the same quantized
#      values (max rel <= 1e-2: the GEMM, its scales and epilogues), against the unquantized f32
#      CPU linear and the GPU's bf16 linear (rel L2 <= 4.5e-2, the e4m3 format's own error on
#      random data being ~3.7e-2, printed as `sim`), at small shapes and Wan2.1-1.3B's 480p block
#      shapes; the tiny Wan DiT with FP8 block linears against the CPU (rel L2, beside bf16's);
#      then bf16 vs FP8 timings at the 1.3B and 14B block shapes (median ms, TFLOP/s and the
#      bf16/FP8 ratio for the whole layer and for the GEMM alone);
#   2. compute-sanitizer memcheck over the checks (memcheck.log);
#   3. PyTorch's FP8 GEMM with the same scaling (`torch._scaled_mm`, rowwise) and bf16 `F.linear`
#      at the same shapes, in this call (peers.json);
#   4. `turbine bench` Wan2.1-1.3B 480p, bf16 then --quant fp8 (bench-bf16.json, bench-fp8.json):
#      the whole DiT forward and its per-op profile.
# Exits non-zero when any step fails.
FORMAT=fp8 MEMCHECK_TIMEOUT=600 MEMCHECK_NOTE="" MEMCHECK_ARGS=()
source "$(dirname "$0")/quant_steps.sh"

echo "== 3. PyTorch peers"
python3 tools/gpu/peers.py --out "$OUT/peers.json" >"$OUT/peers.log" 2>&1
rc=$?
grep -E '"linear_' "$OUT/peers.json"
echo "step 3: exit $rc"
status=$((status | rc))

bench_1_3b 4 10

python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
runs = {q: json.loads((out / f"bench-{q}.json").read_text())
        for q in ["none", "fp8"] if (out / f"bench-{q}.json").exists()}
for q, b in runs.items():
    f = b["forward"]
    weights = b["device_after_load"]["live_bytes"] / 2**30
    print(f"turbine bench 1.3B 480p quant={b.get('quant')}: forward {f['median_ms']:.1f} ms "
          f"(min {f['min_ms']:.1f}), weights {weights:.2f} GiB")
    for op in (b.get("ops") or [])[:8]:
        print(f"    {op['op']:<24} {op['calls']:>5} calls {op['total_ms']:>10.2f} ms {100*op['share']:>5.1f} %")
if len(runs) == 2:
    ratio = runs["none"]["forward"]["median_ms"] / runs["fp8"]["forward"]["median_ms"]
    print(f"whole forward bf16/fp8: {ratio:.2f}x")
PY
echo "fp8_check.sh: exit $status"
exit "$status"
