#!/usr/bin/env bash
# Session 28, call 4: the sampler's per-step velocity download through a pinned buffer ("new")
# against ea453c9 ("base"), end to end (1.3B 480p x 81, 4-step rCM, SageSLA 0.1 + FP8),
# alternating, with the bare forward (`turbine bench`, CUDA events) on the same host.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
ln -sf new/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
[ -f $MODEL/Wan2.1_VAE.safetensors ] || rm -f $MODEL/config.json
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
gen() { # side name
  local side=$1 name=$2
  timeout 90 .gpu/$side/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$name.mp4 --timings-json $R/timings-$name.json > $R/generate-$name.log 2>&1
  echo "$name rc $? $(stat -c %s $R/$name.mp4 2>/dev/null) bytes $(md5sum < $R/$name.mp4 | cut -c1-12) t=$SECONDS"
}
gen base cold-base
timeout 100 .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13.json > $R/sla13.log 2>&1; echo "bench rc $? t=$SECONDS"
for i in 1 2 3 4; do [ $SECONDS -gt 450 ] && break; gen new new-$i; gen base base-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
b = json.load(open(sys.argv[1] + '/sla13.json'))
print('bench forward', {k: b['forward'][k] for k in b['forward'] if not isinstance(b['forward'][k], (list, dict))})
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']
    print(os.path.basename(f)[8:-5].ljust(10), 'after_load %.3f total %.3f text %.3f denoise %.3f vae %.3f finish %.3f' % (j['wall_s'] - j['load_s'], t['total_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], j['finish_output_s']), 'steps', [round(s * 1e3, 1) for s in t['steps_s']])
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
