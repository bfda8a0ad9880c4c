#!/usr/bin/env bash
# Session 29, call 5: `turbine serve` (text encoder, denoiser, VAE and orchestrator in one process,
# 1.3B random-weight folder, umT5 on the GPU) from HEAD~2 = 368eeb6 ("base") and this build
# ("new"): readiness, then four prompts of new lengths through `turbine submit`, then the first
# again; the text stage's time of each. Then two `turbine generate` runs of the new build with
# the pool's cuMemAlloc calls logged, to see what the VAE stage's first chunk waits for.
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
w="a red panda walks along a mossy branch in a misty bamboo forest at dawn with soft golden light"
p1="$w"; p2="$w $w"; p3="$w $w $w $w"; p4="$w $w $w $w $w $w $w"
port=50050
for side in base new; do
  start=$(date +%s%N)
  .gpu/$side/turbine serve --model-dir "$MODEL" --listen "127.0.0.1:$port" --device cuda --quant fp8 \
    --artifact-dir /tmp/turbine-artifacts --warm-up-shape 832x480x81 > $R/serve-$side.log 2>&1 &
  server=$!
  ready=never
  for _ in $(seq 1 240); do
    if [ "$(grep -c 'serving' $R/serve-$side.log)" -ge 3 ]; then ready=$((($(date +%s%N) - start) / 1000000)); break; fi
    kill -0 $server 2>/dev/null || break; sleep 0.25
  done
  echo "$side: stages serving after $ready ms t=$SECONDS"
  i=0
  for p in "$p1" "$p2" "$p3" "$p4" "$p1"; do
    i=$((i+1))
    timeout 120 .gpu/$side/turbine submit --server "http://127.0.0.1:$port" --prompt "$p" --steps 4 \
      --attention sagesla --sla-topk 0.1 --seed 7 --out $R/s.mp4 --timings-json $R/submit-$side-$i.json > $R/submit-$side-$i.log 2>&1
    echo "  submit $i rc $? $(python3 -c "import json,sys; j=json.load(open('$R/submit-$side-$i.json')); t=j.get('timings', j.get('report', {}).get('timings', j)); print({k: v for k, v in t.items() if not isinstance(v, (list, dict))})" 2>&1 | cut -c1-300)"
  done
  kill -TERM $server; wait $server; echo "  serve exit $?"
done
gen() { # name
  RUST_LOG=turbine_tensor::cuda::alloc=debug timeout 90 .gpu/new/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$1.mp4 --timings-json $R/timings-$1.json > $R/generate-$1.log 2>&1
  echo "$1 rc $? $(stat -c %s $R/$1.mp4 2>/dev/null) bytes t=$SECONDS"
}
gen g1; gen g2
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']; c = t['chunks']
    print(os.path.basename(f), 'after_load %.3f text %.3f denoise %.3f vae %.3f | chunk0 queued %.4f decoded %.4f chunk1 queued %.4f decoded %.4f'
          % (j['wall_s'] - j['load_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], c[0]['queued_s'], c[0]['decoded_s'], c[1]['queued_s'], c[1]['decoded_s']))
PY
for g in g1 g2; do echo "$g: cuMemAlloc lines $(grep -c cuMemAlloc $R/generate-$g.log)"; sed 's/\x1b\[[0-9;]*m//g' $R/generate-$g.log | grep -E "cuMemAlloc" | tail -40 | cut -c1-200; done
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
