#!/usr/bin/env bash
# Issue 7's device run for umT5 on the GPU and GPU generation, from the repository root of a GPU
# host, with the release binaries in .gpu/ (see check.sh):
#   1. tools/gpu/umt5_parity.py: a random-weight umT5-XXL UMT5EncoderModel built on the GPU, its
#      bf16 weights saved under $UMT5_DIR, its fp32 and bf16 outputs on 512- and 77-token prompts
#      and its bf16 encode time (transformers.log, transformers.json);
#   2. turbine-gpucheck --parts ops,umt5: the op checks (the relative-bias attention kernel among
#      them), the small umT5 encoders CUDA bf16 vs CPU f32, then umT5-XXL on those weights: encode
#      time at 512 / 77 tokens, memory, rel L2 vs transformers fp32 (gate 1e-2) and bf16
#      (gpucheck.log, gpucheck.json);
#   3. turbine generate on the tiny preset with --device cuda, per attention mode: dense and sage
#      must write an MP4 (size > 0, `ftyp` box), sla and sagesla must refuse cleanly (the tiny
#      preset has no proj_l) without a panic (generate-*.log, *.mp4, timings-*.json).
# Outputs under $OUT (default ./umt5-out). $UMT5_DIR (default /tmp/turbine-umt5, 11.4 GB) is
# removed at the end unless KEEP_UMT5=1. Exits non-zero when a step fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-umt5-out}
UMT5_DIR=${UMT5_DIR:-/tmp/turbine-umt5}
mkdir -p "$OUT" "$UMT5_DIR"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/env.txt"
git log -1 --format='commit %H' 2>/dev/null | tee -a "$OUT/env.txt"
df -h "$UMT5_DIR" | tee -a "$OUT/env.txt"

echo "== 1. transformers umT5-XXL (random weights, bf16 and fp32)"
timeout 300 python3 tools/gpu/umt5_parity.py --dir "$UMT5_DIR" 2>&1 | tee "$OUT/transformers.log"
rc=${PIPESTATUS[0]}
echo "step 1: exit $rc"
status=$((status | rc))
cp "$UMT5_DIR/transformers.json" "$OUT/" 2>/dev/null

echo "== 2. op checks and the umt5 part"
reference=()
if [ "$rc" = 0 ]; then
    reference=(--umt5-weights "$UMT5_DIR/umt5-xxl.safetensors"
        --umt5-reference "$UMT5_DIR/reference.safetensors")
fi
timeout 300 .gpu/turbine-gpucheck --parts ops,umt5 "${reference[@]}" \
    --json "$OUT/gpucheck.json" 2>&1 | tee "$OUT/gpucheck.log"
rc=${PIPESTATUS[0]}
echo "step 2: exit $rc"
status=$((status | rc))
[ "${KEEP_UMT5:-0}" = 1 ] || rm -rf "$UMT5_DIR"

echo "== 3. turbine generate, tiny preset, --device cuda"
for att in dense sage sla sagesla; do
    mp4="$OUT/tiny-$att.mp4"
    timeout 120 .gpu/turbine generate --device cuda --attention "$att" \
        --prompt "a red fox running through fresh snow" --out "$mp4" \
        --timings-json "$OUT/timings-$att.json" >"$OUT/generate-$att.log" 2>&1
    rc=$?
    if grep -q panicked "$OUT/generate-$att.log"; then
        echo "$att: PANIC"; status=1; continue
    fi
    case $att in
    dense | sage)
        if [ "$rc" = 0 ] && [ -s "$mp4" ] && [ "$(head -c 8 "$mp4" | tail -c 4)" = ftyp ] &&
            grep -q "^device: cuda" "$OUT/generate-$att.log"; then
            echo "$att: ok, $(stat -c %s "$mp4") bytes, $(grep '^device:' "$OUT/generate-$att.log")"
        else
            echo "$att: FAIL (exit $rc)"; tail -5 "$OUT/generate-$att.log"; status=1
        fi
        ;;
    *)
        if [ "$rc" != 0 ] && grep -q proj_l "$OUT/generate-$att.log"; then
            echo "$att: refused as expected: $(tail -1 "$OUT/generate-$att.log")"
        else
            echo "$att: FAIL (exit $rc, expected the proj_l error)"; status=1
        fi
        ;;
    esac
done
exit $status
