#!/usr/bin/env bash
# Session 15, call 3: the 96-channel causal convolutions' time taps folded into channels. Op
# checks (new), `--parts vae` of 9849f62 (mid: narrow head only) and new alternately, VAE parity
# vs diffusers (new), then `turbine generate` of a316219 (old) and new alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "folded|narrow" $R/ops.log; grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
for side in mid new mid new; do
  timeout 60 .gpu/$side/turbine-gpucheck --parts vae --json $R/vae-$side-$SECONDS.json > $R/vae-$side-$SECONDS.log 2>&1
  echo "vae $side rc $? t=$SECONDS"; grep -hE "res conv 96|head conv|^decode|^encode|  conv3d |causal_rms" $(ls -t $R/vae-$side-*.log | head -1)
done
BIN=.gpu/new PARTS=vae OUT=$R/parity timeout 200 tools/gpu/vae_bench.sh > $R/vae_bench.log 2>&1; echo "vae_bench rc $? t=$SECONDS"
grep -hE "^decode|^encode" $R/parity/gpucheck.log; tail -3 $R/parity/parity.log
ln -sf new/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
[ -f $MODEL/diffusion_pytorch_model.safetensors ] || rm -f $MODEL/config.json
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
gen() { # side name
  timeout 60 .gpu/$1/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$2.mp4 --timings-json $R/timings-$2.json > $R/generate-$2.log 2>&1
  echo "$2 rc $? $(stat -c %s $R/$2.mp4 2>/dev/null) bytes $(md5sum < $R/$2.mp4 | cut -c1-12) t=$SECONDS"
}
gen old cold-old
for i in 1 2 3; do [ $SECONDS -gt 540 ] && break; gen new new-$i; gen old old-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']
    print(os.path.basename(f)[8:-5].ljust(9), 'after_load', round(j['wall_s'] - j['load_s'], 3),
          {k: (round(v, 3) if isinstance(v, float) else v) for k, v in t.items() if k != 'steps_s'})
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
