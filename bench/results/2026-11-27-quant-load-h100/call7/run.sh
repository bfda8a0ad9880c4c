#!/usr/bin/env bash
# Session 9, call 7: the final build: INT8 checks (int8_tiles through per_tile) and two end-to-end runs.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
chmod +x .gpu/turbine .gpu/turbine-gpucheck
source tools/gpu/cudnn.sh
timeout 300 .gpu/turbine-gpucheck --parts int8 >"$R/int8.log" 2>&1; echo "int8 rc $?"
grep -E "^int8:|FAIL" "$R/int8.log" | head
source tools/gpu/model_folder.sh
for i in 1 2 3; do
  timeout 300 .gpu/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
      --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
      --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
      --attention sagesla --sla-topk 0.1 --quant fp8 \
      --out "$R/e2e-$i.mp4" --timings-json "$R/timings-$i.json" >"$R/generate-$i.log" 2>&1
  echo "run $i rc $? $(md5sum < "$R/e2e-$i.mp4" | cut -c1-8) $(stat -c %s "$R/e2e-$i.mp4")"
  python3 - "$R/timings-$i.json" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); t=d["report"]["timings"]
print("   load %.3f text %.3f steps %s denoise %.3f vae %.3f sink %.3f finish %.3f after_load %.3f wall %.3f" % (
  d["load_s"], t["text_encode_s"], ",".join("%.3f"%s for s in t["steps_s"]), t["denoise_s"], t["vae_decode_s"], t["sink_s"], d["finish_output_s"], d["wall_s"]-d["load_s"], d["wall_s"]))
PY
done
rm -f "$R"/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
