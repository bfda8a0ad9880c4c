#!/usr/bin/env bash
# A/B of turbine generate (base vs new binaries) on one host; not committed.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-ab-out}; mkdir -p "$OUT"
source tools/gpu/cudnn.sh
source tools/gpu/model_folder.sh
for round in 1 2; do
  for b in base new; do
    bin=.gpu/turbine; [ $b = base ] && bin=.gpu-base/turbine
    name=$b-$round
    timeout 200 $bin generate --model-dir "$MODEL" --dit-preset 1.3b \
        --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
        --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
        --attention sagesla --sla-topk 0.1 --quant fp8 \
        --out /tmp/$name.mp4 --timings-json "$OUT/timings-$name.json" >"$OUT/generate-$name.log" 2>&1
    echo "$name: exit $? $(stat -c %s /tmp/$name.mp4)"
    grep -E '^\s+(text|denoise|vae|finish)' "$OUT/generate-$name.log" | tr -s ' ' | tr '\n' ';'; echo
  done
done
python3 - "$OUT" <<'PY'
import json, sys, glob
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    print(f.split("/")[-1], json.dumps(json.load(open(f)))[:600])
PY
