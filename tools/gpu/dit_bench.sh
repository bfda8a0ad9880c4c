#!/usr/bin/env bash
# The DiT benchmark and parity run on a GPU host (no Rust toolchain there: bring release binaries
# `turbine` and `turbine-gpucheck` in .gpu/ and the diffusers wheel in .whl/, see below):
#
#   tools/gpu/dit_bench.sh
#
# Steps, all outputs under $OUT (default ./dit-bench-out):
#   1. PyTorch peers in this call: SDPA (cuDNN, flash) at Wan shapes, bf16 linears, the diffusers
#      14B 720p forward unless SKIP_14B=1 (peers.json);
#   2. `turbine bench`, Wan2.1-1.3B 480p bf16 on seeded random weights, exporting the weights and
#      dumping outputs at three timesteps (bench-1.3b-480p.json);
#   3. tools/gpu/dit_parity.py: the same weights and inputs through diffusers bf16 and fp32, the
#      relative L2 errors and the diffusers forward time and peak memory (parity-1.3b.json);
#   4. `turbine bench`, 14B 720p bf16 (bench-14b-720p.json) unless SKIP_14B=1.
#
# diffusers is not in the GPU image: carry its wheel (and importlib_metadata's), e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 importlib_metadata
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.gpu}
OUT=${OUT:-dit-bench-out}
WORK=${WORK:-/tmp/turbine-dit-bench}
mkdir -p "$OUT" "$WORK"
status=0
export PYTHONUNBUFFERED=1
source tools/gpu/wheels.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/env.txt"

echo "== 1. PyTorch peers"
PEER_DIT=()
[ "${SKIP_14B:-0}" != 1 ] && PEER_DIT=(--dit 14b:720p)
python3 tools/gpu/peers.py --out "$OUT/peers.json" "${PEER_DIT[@]}" >"$OUT/peers.log" 2>&1 || status=1

echo "== 2. turbine bench 1.3b 480p"
"$BIN/turbine" bench --model 1.3b --size 480p --frames 81 --precision bf16 --iters 10 \
    --export-weights "$WORK/wan1.3b.safetensors" --dump "$WORK/dump1.3b.safetensors" \
    --json "$OUT/bench-1.3b-480p.json" >"$OUT/bench-1.3b-480p.log" 2>&1 || status=1

echo "== 3. parity vs diffusers"
python3 tools/gpu/dit_parity.py --model 1.3b --weights "$WORK/wan1.3b.safetensors" \
    --dump "$WORK/dump1.3b.safetensors" --fp32-reference --out "$OUT/parity-1.3b.json" \
    >"$OUT/parity-1.3b.log" 2>&1 || status=1
rm -f "$WORK/wan1.3b.safetensors"

if [ "${SKIP_14B:-0}" != 1 ]; then
    echo "== 4. turbine bench 14b 720p"
    "$BIN/turbine" bench --model 14b --size 720p --frames 81 --precision bf16 --warmup 1 \
        --iters 3 --json "$OUT/bench-14b-720p.json" >"$OUT/bench-14b-720p.log" 2>&1 || status=1
fi

python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
def get(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else {}
peers, b13, par, b14 = (get(n) for n in ["peers.json", "bench-1.3b-480p.json", "parity-1.3b.json", "bench-14b-720p.json"])
gib = lambda b: b / 2**30 if b else float("nan")
for name, b in [("1.3B 480p", b13), ("14B 720p", b14)]:
    if b:
        f = b["forward"]
        print(f"turbine {name}: forward {f['median_ms']:.1f} ms (min {f['min_ms']:.1f}), {f['tflops']:.0f} TFLOP/s, "
              f"weights {gib(b['device_after_load']['live_bytes']):.2f} GiB, peak {gib(b['device']['peak_live_bytes']):.2f} GiB, load {b['load_s']:.1f} s")
        for op in (b.get("ops") or [])[:8]:
            print(f"    {op['op']:<24} {op['calls']:>5} calls {op['total_ms']:>10.2f} ms {100*op['share']:>5.1f} %")
if par:
    print(f"diffusers bf16 1.3B 480p: {par['diffusers_bf16_forward_ms']:.1f} ms, peak {gib(par['diffusers_bf16_peak_bytes']):.2f} GiB")
    for k in ["turbine_vs_diffusers_bf16_rel_l2", "turbine_vs_fp32_rel_l2", "diffusers_bf16_vs_fp32_rel_l2"]:
        if k in par:
            print(f"{k}: {', '.join(f'{v:.2e}' for v in par[k])}")
for k, v in peers.items():
    if k.endswith("_ms"):
        print(f"peer {k}: {v:.2f}")
    elif k.endswith("_peak_bytes"):
        print(f"peer {k}: {gib(v):.2f} GiB")
PY
echo "dit_bench.sh: exit $status"
exit "$status"
