#!/usr/bin/env bash
# Session 9, call 6: turbine generate with H.264 at medium (med) and low (low) complexity, alternating.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
chmod +x .gpu/turbine .gpu/turbine-med
source tools/gpu/cudnn.sh
source tools/gpu/model_folder.sh
summ() {
  python3 - "$1" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); t=d["report"]["timings"]
after=d["wall_s"]-d["load_s"]
print("   load %.3f text %.3f steps %s denoise %.3f vae %.3f sink %.3f finish %.3f after_load %.3f wall %.3f" % (
  d["load_s"], t["text_encode_s"], ",".join("%.3f"%s for s in t["steps_s"]), t["denoise_s"], t["vae_decode_s"], t["sink_s"], d["finish_output_s"], after, d["wall_s"]))
PY
}
run() {
  local name=$1 bin=$2
  timeout 300 $bin generate --model-dir "$MODEL" --dit-preset 1.3b \
      --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
      --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
      --attention sagesla --sla-topk 0.1 --quant fp8 \
      --out "$R/$name.mp4" --timings-json "$R/timings-$name.json" >"$R/generate-$name.log" 2>&1
  echo "$name rc $? $(md5sum < "$R/$name.mp4" | cut -c1-8) $(stat -c %s "$R/$name.mp4")"; summ "$R/timings-$name.json"
}
run cold .gpu/turbine
for i in 1 2 3 4; do run med-$i .gpu/turbine-med; run low-$i .gpu/turbine; done
python3 - "$R" <<'PY'
import sys, cv2, numpy as np
r = sys.argv[1]
for name in ("med-1", "low-1"):
    cap = cv2.VideoCapture(f"{r}/{name}.mp4"); n = 0
    while True:
        ok, _ = cap.read()
        if not ok: break
        n += 1
    print(name, "decoded frames", n)
PY
rm -f "$R"/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
