#!/usr/bin/env bash
# Session 29, call 9: `turbine generate` (1.3B 480p x 81, 4-step rCM, SageSLA 0.1 + FP8, random-weight
# folder), base dcff25d and new (the initial noise's ChaCha8 keystream generated on a second thread)
# alternately, four pairs: the first step (which waits for the noise) and the totals.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
ln -sf new/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
gen() { # side name
  timeout 90 .gpu/$1/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$2.mp4 --timings-json $R/timings-$2.json > $R/generate-$2.log 2>&1
  echo "$2 rc $? $(stat -c %s $R/$2.mp4 2>/dev/null) bytes $(md5sum < $R/$2.mp4 | cut -c1-12) t=$SECONDS"
}
gen new cold
for i in 1 2 3 4; do gen base base-$i; gen new new-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']; c = t['chunks']
    print(os.path.basename(f)[8:-5].ljust(7), 'after_load %.3f total %.3f text %.3f denoise %.3f vae %.3f finish %.3f | steps %s ms | chunk0 decoded %.1f ms'
          % (j['wall_s'] - j['load_s'], t['total_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], j['finish_output_s'],
             ' '.join('%.1f' % (s * 1e3) for s in t['steps_s']), c[0]['decoded_s'] * 1e3))
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
