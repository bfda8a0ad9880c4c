#!/usr/bin/env bash
# Session 11, call 5: where the VAE stage's 0.37 s went (call 4: 1.16 s where the ninth session
# measured 0.79): the ninth session's final build (a5a09d2, .gpu/s9) against this session's, the
# VAE decode alone (gpucheck --parts vae) and end to end, alternating.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*.gz .gpu/s9/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/turbine .gpu/turbine-gpucheck .gpu/s9/*
rm -rf .gpu/old
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
for side in s9 new; do
  bin=.gpu/turbine-gpucheck; [ $side = s9 ] && bin=.gpu/s9/turbine-gpucheck
  timeout 120 $bin --parts vae > $R/vae-$side.log 2>&1; echo "vae $side rc $? t=$SECONDS"
  grep -E "decode|encode" $R/vae-$side.log | grep -v " ok$" | head -8
done
source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
for i in 1 2 3; do
  for side in s9 new; do
    bin=.gpu/turbine; [ $side = s9 ] && bin=.gpu/s9/turbine
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
