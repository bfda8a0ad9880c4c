#!/usr/bin/env bash
# Session 14, call 9: call 8's comparison with CUDA_MODULE_LOADING=EAGER: is the text stage's
# extra first-call time the lazy loading of cuBLASLt's f32-output kernels?
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
ln -sf new/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
[ -f $MODEL/diffusion_pytorch_model.safetensors ] || rm -f $MODEL/config.json
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
prompt="A red panda walks along a mossy branch in a misty bamboo forest at dawn, soft golden light filtering through the leaves, slow camera pan, shallow depth of field, cinematic, highly detailed"
gen() { # side name
  timeout 120 .gpu/$1/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$2.mp4 --timings-json $R/timings-$2.json > $R/generate-$2.log 2>&1
  echo "$2 rc $? $(stat -c %s $R/$2.mp4 2>/dev/null) bytes $(md5sum < $R/$2.mp4 | cut -c1-12)"
}
export CUDA_MODULE_LOADING=EAGER
for i in 1 2; do gen prev eager-prev-$i; gen base eager-base-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f))
    print(os.path.basename(f), json.dumps({k: v for k, v in j.items() if not isinstance(v, (dict, list))})[:400])
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
