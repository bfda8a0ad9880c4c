#!/usr/bin/env bash
# Session 11, call 4: 1.3B 480p end to end (prompt to MP4, 4-step rCM, SageSLA 0.1 + FP8), HEAD
# (old) and this session's Sage kernels (new) alternating, three runs each (the first of each
# compiles its kernels into the disk cache).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*.gz .gpu/old/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/turbine .gpu/turbine-gpucheck .gpu/old/*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
echo "t=$SECONDS"
source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
for i in 1 2 3; do
  for side in old new; do
    bin=.gpu/turbine; [ $side = old ] && bin=.gpu/old/turbine
    timeout 120 $bin generate --model-dir "$MODEL" --dit-preset 1.3b \
        --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
        --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
        --attention sagesla --sla-topk 0.1 --quant fp8 \
        --out "$R/e2e-$side-$i.mp4" --timings-json "$R/timings-$side-$i.json" >"$R/generate-$side-$i.log" 2>&1
    echo "$side $i rc $? $(md5sum < "$R/e2e-$side-$i.mp4" | cut -c1-8) $(stat -c %s "$R/e2e-$side-$i.mp4") t=$SECONDS"
    python3 - "$R/timings-$side-$i.json" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); t=d["report"]["timings"]
print("   load %.3f text %.3f steps %s denoise %.3f vae %.3f sink %.3f finish %.3f after_load %.3f wall %.3f" % (
  d["load_s"], t["text_encode_s"], ",".join("%.3f"%s for s in t["steps_s"]), t["denoise_s"], t["vae_decode_s"], t["sink_s"], d["finish_output_s"], d["wall_s"]-d["load_s"], d["wall_s"]))
PY
  done
done
rm -f "$R"/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
