#!/usr/bin/env bash
# Session 28, call 3: the final build (ea453c9) on one host — the bare VAE decode
# (`turbine-gpucheck --parts vae`: CUDA-event medians, first frame) beside three generations (1.3B
# 480p x 81, 4-step rCM, SageSLA 0.1 + FP8), so the VAE stage's excess over the bare decode splits
# into the report's chunk times on the same GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/new/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
ln -sf new/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
[ -f $MODEL/Wan2.1_VAE.safetensors ] || rm -f $MODEL/config.json
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
gen() { # name
  timeout 90 .gpu/new/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$1.mp4 --timings-json $R/timings-$1.json > $R/generate-$1.log 2>&1
  echo "$1 rc $? $(stat -c %s $R/$1.mp4 2>/dev/null) bytes $(md5sum < $R/$1.mp4 | cut -c1-12) t=$SECONDS"
}
gen cold
timeout 150 .gpu/new/turbine-gpucheck --parts vae --vae-iters 6 --json $R/vae-1.json > $R/vae-1.log 2>&1; echo "vae rc $? t=$SECONDS"
for i in 1 2 3; do gen new-$i; done
timeout 150 .gpu/new/turbine-gpucheck --parts vae --vae-iters 6 --json $R/vae-2.json > $R/vae-2.log 2>&1; echo "vae rc $? t=$SECONDS"
grep -hE "^decode|^encode|first frame" $R/vae-*.log
python3 - $R <<'PY'
import json, sys, glob, os, statistics as st
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']; c = t['chunks']
    gaps = [b['decoded_s'] - a['decoded_s'] for a, b in zip(c, c[1:])]
    print(os.path.basename(f)[8:-5].ljust(6), 'load %.3f after_load %.3f text %.3f denoise %.3f vae %.3f finish %.3f | first frame %.3f (queued %.3f) chunk gaps median %.1f sum %.1f ms, last chunk to sink %.1f ms'
          % (j['load_s'], j['wall_s'] - j['load_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], j['finish_output_s'],
             c[0]['decoded_s'], c[0]['queued_s'], st.median(gaps) * 1e3, sum(gaps) * 1e3, (c[-1]['written_s'] - c[-1]['decoded_s']) * 1e3))
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
