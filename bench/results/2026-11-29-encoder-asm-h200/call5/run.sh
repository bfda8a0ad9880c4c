#!/usr/bin/env bash
# Session 28, call 5: umT5's warm-up in `turbine generate` at one token ("one") against the
# warm-up at the prompt's token count (ea453c9, "base"), for a short, the usual and a long prompt,
# end to end (1.3B 480p x 81, 4-step rCM, SageSLA 0.1 + FP8): does the text stage's one-time
# cost depend on the prompt's length?
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
ln -sf base/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
[ -f $MODEL/Wan2.1_VAE.safetensors ] || rm -f $MODEL/config.json
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
short="A red fox running through fresh snow."
long="$prompt $prompt $prompt"
gen() { # side name prompt
  local side=$1 name=$2
  timeout 90 .gpu/$side/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$3" \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$name.mp4 --timings-json $R/timings-$name.json > $R/generate-$name.log 2>&1
  echo "$name rc $? $(stat -c %s $R/$name.mp4 2>/dev/null) bytes $(md5sum < $R/$name.mp4 | cut -c1-12) t=$SECONDS"
}
gen base cold "$prompt"
for i in 1 2; do
  for p in short usual long; do
    case $p in short) text=$short ;; usual) text=$prompt ;; long) text=$long ;; esac
    gen one $p-one-$i "$text"; gen base $p-base-$i "$text"
  done
done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); r = j['report']; t = r['timings']
    print(os.path.basename(f)[8:-5].ljust(14), 'tokens %3d load %.3f text %.4f step1 %.1f ms after_load %.3f' % (r['prompt_tokens'], j['load_s'], t['text_encode_s'], t['steps_s'][0] * 1e3, j['wall_s'] - j['load_s']))
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
