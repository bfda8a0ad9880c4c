#!/usr/bin/env bash
# Session 9, call 8: --quant auto (the default) on a -quant and a bf16 1.3B checkpoint.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
chmod +x .gpu/turbine
source tools/gpu/cudnn.sh
source tools/gpu/model_folder.sh
timeout 180 python3 tools/gpu/quant_export.py "$MODEL/diffusion_pytorch_model.safetensors" /tmp/dit13-quant.safetensors \
    >"$R/quant-export.log" 2>&1; echo "quant export rc $?"
gen() {
  local name=$1; shift
  timeout 300 .gpu/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
      --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
      --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
      --attention sagesla --sla-topk 0.1 "$@" \
      --out "$R/$name.mp4" --timings-json "$R/timings-$name.json" >"$R/generate-$name.log" 2>&1
  echo "$name rc $? $(stat -c %s "$R/$name.mp4" 2>/dev/null)"
  grep -E "^--quant|^--device|quant" "$R/generate-$name.log" | head -3
  python3 - "$R/timings-$name.json" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); t=d["report"]["timings"]
print("   load %.3f (dit %.2f s) steps %s after_load %.3f" % (d["load_s"], d["load"]["dit"]["seconds"], ",".join("%.3f"%s for s in t["steps_s"]), d["wall_s"]-d["load_s"]))
PY
}
gen bf16-auto
gen quant-auto --dit /tmp/dit13-quant.safetensors
gen quant-int8 --dit /tmp/dit13-quant.safetensors --quant int8
gen quant-none --dit /tmp/dit13-quant.safetensors --quant none
rm -f "$R"/*.mp4 /tmp/dit13-quant.safetensors
cd $R/.. && tar czf results.tgz r && rm -rf r
