#!/usr/bin/env bash
# Session 26, call 2: new = the VAE's latent-resolution layers (decode: conv_in, middle, first
# stage's blocks; encode: last stage's blocks, middle, head) run on a batch of latent frames at
# once. Against mid = 2bac32b (call 1's new: the upsample's phases): ops checks
# (new), --parts vae mid/new alternately, parity vs diffusers (new), turbine generate mid/new.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for side in mid new new mid; do
  timeout 120 .gpu/$side/turbine-gpucheck --parts vae --vae-iters 4 --json $R/vae-$side-$SECONDS.json > $R/vae-$side-$SECONDS.log 2>&1 || echo "vae $side failed"
done
echo "vae done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/vae-*.json"), key=lambda f: int(f.split('-')[-1][:-5])):
    full = json.load(open(f))["vae"]["full"]; d = full["decode"]; e = full.get("encode", {})
    prof = {o["op"]: o["ms"] for o in d["profile"]}
    print(f"{os.path.basename(f):22s} decode median {d['median_ms']:7.1f} min {d['min_ms']:7.1f}  conv3d {prof.get('conv3d',0):6.1f} add {prof.get('conv3d_add',0):6.1f} attn {prof.get('attention (self)',0):5.2f}  encode {e.get('median_ms',0):7.1f}")
PY
grep -h "first frame" $R/vae-*.log
BIN=.gpu/new PARTS=ops,vae OUT=$R/parity timeout 300 tools/gpu/vae_bench.sh > $R/vae_bench.log 2>&1; echo "vae_bench rc $? t=$SECONDS"
grep -hE "FAIL|passed|failed|ALL CHECKS" $R/parity/gpucheck.log | tail -3
grep -hE "^decode|^encode" $R/parity/gpucheck.log; tail -4 $R/parity/parity.log
ln -sf new/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
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
gen mid cold-mid
for i in 1 2 3; do [ $SECONDS -gt 480 ] && break; gen new new-$i; gen mid mid-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']
    print(os.path.basename(f)[8:-5].ljust(10), 'after_load', round(j['wall_s'] - j['load_s'], 3),
          {k: (round(v, 3) if isinstance(v, float) else v) for k, v in t.items() if k != 'steps_s'})
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
