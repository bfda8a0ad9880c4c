#!/usr/bin/env bash
# Issue 7's end-to-end run: `turbine generate` at full size on the GPU, prompt to MP4 file, from
# the repository root of a GPU host with the release binaries in .gpu/ and the diffusers wheel in
# .whl/ (see dit_bench.sh). The model folder is built from random weights first (model_folder.sh).
# Then `turbine generate --device cuda` 480p x 81 frames, 4-step rCM, SageSLA top-k 0.1 + FP8
# linears, twice (the first process compiles kernels into the disk cache; each process plans its
# cuDNN convolutions again), and once dense bf16. Per-stage timings (load = time to ready) in
# timings-*.json, logs in generate-*.log, under $OUT (default ./e2e-out). E2E_14B=1 adds a 14B
# 720p run from a `-quant` checkpoint next to umT5-XXL and the VAE with the GPU's peak memory use; ENCODER_THREADS
# (below) repeats the SageSLA + FP8 run with fewer H.264 encoder threads.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-e2e-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/env.txt"
source tools/gpu/cudnn.sh

echo "== 1. model folder (random weights)"
source tools/gpu/model_folder.sh
status=$model_status

run() {
    local name=$1
    shift
    timeout 300 .gpu/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
        --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
        --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
        --out "$OUT/$name.mp4" --timings-json "$OUT/timings-$name.json" "$@" \
        >"$OUT/generate-$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc, $(stat -c %s "$OUT/$name.mp4" 2>/dev/null || echo 0) bytes"
    grep -E '^\s+(load|text|dit|denoise|vae|encode|total|step)' "$OUT/generate-$name.log"
    return $rc
}
echo "== 2. turbine generate, 1.3B 480p 81 frames, 4-step rCM"
run sagesla-fp8-cold --attention sagesla --sla-topk 0.1 --quant fp8 || status=1
run sagesla-fp8 --attention sagesla --sla-topk 0.1 --quant fp8 || status=1
run dense --attention dense || status=1
# ENCODER_THREADS="8 4": the SageSLA + FP8 run again with that many H.264 segments at once (the
# default is one per core), to see what the encoder threads cost the thread feeding the GPU.
for n in ${ENCODER_THREADS:-}; do
    run "sagesla-fp8-enc$n" --attention sagesla --sla-topk 0.1 --quant fp8 --encoder-threads "$n" \
        || status=1
done

if [ -n "${E2E_14B:-}" ]; then
    # Issue 7's memory plan: a 14B DiT with int8 weights next to umT5-XXL and the VAE on one
    # card, 720p 81 frames, the GPU's memory use sampled every 100 ms by nvidia-smi. The DiT is a
    # TurboWan-style `-quant` checkpoint (quant_export.py over the random bf16 export), as users
    # run TurboDiffusion's 14B.
    echo "== 3. turbine generate, 14B -quant 720p 81 frames, 4-step rCM, SageSLA 0.1"
    M14=${M14:-/tmp/turbine-14b}
    mkdir -p "$M14"
    timeout 300 .gpu/turbine bench --model 14b --attention sagesla --warmup 0 --iters 1 \
        --size 480p --frames 5 --export-weights "$M14/bf16.safetensors" >"$OUT/export-14b.log" 2>&1 \
        || { echo "14B export failed"; status=1; }
    timeout 300 python3 tools/gpu/quant_export.py "$M14/bf16.safetensors" \
        "$M14/diffusion_pytorch_model.safetensors" >"$OUT/quant-export-14b.log" 2>&1 \
        || { echo "14B -quant export failed"; status=1; }
    rm -f "$M14/bf16.safetensors"
    cat >"$M14/config.json" <<'JSON'
{"_class_name": "WanModel", "model_type": "t2v", "dim": 5120, "eps": 1e-06, "ffn_dim": 13824,
 "freq_dim": 256, "in_dim": 16, "num_heads": 40, "num_layers": 40, "out_dim": 16, "text_len": 512}
JSON
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/memory-14b.csv" &
    smi=$!
    timeout 400 .gpu/turbine generate --model-dir "$M14" --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" \
        --tokenizer "$MODEL/google/umt5-xxl/tokenizer.json" --vae "$MODEL/Wan2.1_VAE.safetensors" \
        --device cuda --quant int8 --attention sagesla --sla-topk 0.1 \
        --width 1280 --height 720 --frames 81 --steps 4 --prompt "$prompt" \
        --out "$OUT/14b-int8.mp4" --timings-json "$OUT/timings-14b-int8.json" \
        >"$OUT/generate-14b-int8.log" 2>&1 || status=1
    kill $smi
    grep -E '^(device|text-device)|^\s+(load|text|dit|denoise|vae|encode|total|step)' "$OUT/generate-14b-int8.log"
    echo "GPU memory used, peak over the run: $(sort -n "$OUT/memory-14b.csv" | tail -1) MiB"
    rm -rf "$M14"
fi
[ -n "${KEEP_MODEL:-}" ] || rm -rf "$MODEL"
exit $status
