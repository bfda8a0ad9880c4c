#!/usr/bin/env bash
# Issue 7's device run for the Wan2.1 VAE, from the repository root of a GPU host, with the
# release binaries in .gpu/ and the diffusers wheel in .whl/ (see dit_bench.sh):
#   1. tools/gpu/vae_parity.py prepare: AutoencoderKLWan (Wan2.1 config, random bf16-rounded
#      weights saved in diffusers' layout), a normalized latent [16, 21, 60, 104] and a video
#      [3, 81, 480, 832]; diffusers fp32 and bf16 decode/encode outputs, bf16 timings and peak
#      memory (diffusers.json);
#   2. turbine-gpucheck --parts ops,vae: every op check (bf16 conv3d, channel norms and the 384-wide
#      attention among them), the conv3d and tiny-VAE gates (CUDA vs CPU), cuDNN layout timings,
#      then the full VAE on the same weights and inputs, timed, outputs dumped (gpucheck.log,
#      gpucheck.json);
#   3. tools/gpu/vae_parity.py compare: rel L2 vs diffusers bf16 (gate 1e-2) and fp32
#      (parity.json).
# cuDNN comes from the torch venv's nvidia-cudnn wheel: its directory goes on LD_LIBRARY_PATH so
# cudarc's loader finds libcudnn.so.9. Outputs under $OUT (default ./vae-out). Exits non-zero when
# a check fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.gpu}
OUT=${OUT:-vae-out}
WORK=${WORK:-/tmp/turbine-vae-bench}
mkdir -p "$OUT" "$WORK"
rm -f "$WORK"/*.safetensors
status=0
export PYTHONUNBUFFERED=1
source tools/gpu/wheels.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/env.txt"
git log -1 --format='commit %H' 2>/dev/null | tee -a "$OUT/env.txt"

source tools/gpu/cudnn.sh

echo "== 1. diffusers AutoencoderKLWan (reference outputs, bf16 timings)"
timeout 300 python3 tools/gpu/vae_parity.py prepare --work "$WORK" --out "$OUT/diffusers.json" \
    2>&1 | tee "$OUT/diffusers.log"
rc=${PIPESTATUS[0]}
echo "step 1: exit $rc"
status=$((status | rc))
args=()
[ "$rc" = 0 ] && args=(--vae-weights "$WORK/vae.safetensors" --vae-inputs "$WORK/inputs.safetensors"
    --vae-dump "$WORK/ours.safetensors")

echo "== 2. turbine-gpucheck --parts ${PARTS:-ops,vae}"
RUST_LOG=${RUST_LOG:-turbine_tensor=info} timeout 400 "$BIN/turbine-gpucheck" --parts "${PARTS:-ops,vae}" \
    "${args[@]}" --json "$OUT/gpucheck.json" 2>&1 | tee "$OUT/gpucheck.log"
rc=${PIPESTATUS[0]}
echo "step 2: exit $rc"
status=$((status | rc))

if [ -f "$WORK/ours.safetensors" ]; then
    echo "== 3. parity vs diffusers"
    python3 tools/gpu/vae_parity.py compare --work "$WORK" --prepared "$OUT/diffusers.json" \
        --out "$OUT/parity.json" 2>&1 | tee "$OUT/parity.log"
    status=$((status | PIPESTATUS[0]))
fi
rm -f "$WORK"/*.safetensors
exit $status
