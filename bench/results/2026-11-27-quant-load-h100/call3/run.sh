#!/usr/bin/env bash
# Session 9, call 3: the final build end to end: 1.3B SageSLA + FP8 twice, then a 14B TurboWan-style
# `-quant` checkpoint (int8 weights from tools/gpu/quant_export.py) next to umT5-XXL and the VAE, 720p.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT
R=$OUT/r; mkdir -p $R
OUT=$R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$R/env.txt"
chmod +x .gpu/turbine
source tools/gpu/cudnn.sh
source tools/gpu/model_folder.sh
summ() {
  python3 - "$1" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); t=d["report"]["timings"]
after=d["wall_s"]-d["load_s"]
loads=" ".join("%s %.2fs" % (k, v["seconds"]) for k, v in d["load"].items())
print("   load %.3f (%s) text %.3f steps %s denoise %.3f vae %.3f sink %.3f finish %.3f after_load %.3f wall %.3f" % (
  d["load_s"], loads, t["text_encode_s"], ",".join("%.3f"%s for s in t["steps_s"]), t["denoise_s"], t["vae_decode_s"], t["sink_s"], d["finish_output_s"], after, d["wall_s"]))
PY
}
for i in 1 2; do
  timeout 300 .gpu/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
      --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
      --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
      --attention sagesla --sla-topk 0.1 --quant fp8 \
      --out "$R/e2e13-$i.mp4" --timings-json "$R/timings-13-$i.json" >"$R/generate-13-$i.log" 2>&1
  echo "1.3B $i rc $? $(md5sum < "$R/e2e13-$i.mp4" | cut -c1-8) $(stat -c %s "$R/e2e13-$i.mp4")"; summ "$R/timings-13-$i.json"
done
rm -f "$R"/*.mp4
M14=/tmp/turbine-14b; mkdir -p $M14
timeout 300 .gpu/turbine bench --model 14b --attention sagesla --warmup 0 --iters 1 --size 480p --frames 5 \
    --export-weights $M14/bf16.safetensors >"$R/export-14b.log" 2>&1 || echo "14B export failed"
timeout 300 python3 tools/gpu/quant_export.py $M14/bf16.safetensors $M14/diffusion_pytorch_model.safetensors \
    >"$R/quant-export-14b.log" 2>&1 || echo "quant export failed"
rm -f $M14/bf16.safetensors
cat >"$M14/config.json" <<'JSON'
{"_class_name": "WanModel", "model_type": "t2v", "dim": 5120, "eps": 1e-06, "ffn_dim": 13824,
 "freq_dim": 256, "in_dim": 16, "num_heads": 40, "num_layers": 40, "out_dim": 16, "text_len": 512}
JSON
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$R/memory-14b.csv" &
smi=$!
timeout 400 .gpu/turbine generate --model-dir "$M14" --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" \
    --tokenizer "$MODEL/google/umt5-xxl/tokenizer.json" --vae "$MODEL/Wan2.1_VAE.safetensors" \
    --device cuda --quant int8 --attention sagesla --sla-topk 0.1 \
    --width 1280 --height 720 --frames 81 --steps 4 --prompt "$prompt" \
    --out "$R/14b-quant.mp4" --timings-json "$R/timings-14b-quant.json" >"$R/generate-14b-quant.log" 2>&1
echo "14B -quant rc $? $(stat -c %s "$R/14b-quant.mp4")"
kill $smi
summ "$R/timings-14b-quant.json"
echo "GPU memory used, peak over the run: $(sort -n "$R/memory-14b.csv" | tail -1) MiB"
rm -rf $M14 "$R"/*.mp4
cd $OUT/.. && tar czf results.tgz r && rm -rf r
