#!/usr/bin/env bash
# Session 32, call 4: the plain causal norm storing the next chunk's cached frames as it writes
# them ("kept") against the VAE as before ("base": 23f8a6e's gpucheck, b6655ca's turbine; neither
# changed the VAE): ops checks, `--parts vae` decodes alternately, `turbine generate` three times a
# build alternately after a cold run.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.xz; do python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"; rm "$f"; done
chmod +x .gpu/*/*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 100 .gpu/kept/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|cached next" $R/ops.log | tail -14
for side in base kept kept base base kept; do
  timeout 120 .gpu/$side/turbine-gpucheck --parts vae --vae-iters 4 --json $R/vae-$side-$SECONDS.json > $R/vae-$side-$SECONDS.log 2>&1 || echo "vae $side failed"
done
echo "vae done t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/vae-kept-*.log | tail -4
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/vae-*.json"), key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f))["vae"]; d = j["full"]["decode"]
    prof = {o["op"]: (o["ms"], o["calls"]) for o in d["profile"]}
    g = lambda k: prof.get(k, (0, 0))
    e = j["full"].get("encode", {})
    print(f"{os.path.basename(f):22s} decode median {d['median_ms']:7.1f} min {d['min_ms']:7.1f}  slice {g('slice')[0]:6.2f}/{g('slice')[1]}  plain norm {g('causal_rms_norm_silu')[0]:6.2f}/{g('causal_rms_norm_silu')[1]}  conv {g('conv3d')[0]+g('conv3d_add')[0]:7.1f}  encode {e.get('median_ms',0):7.1f}  peak {d.get('peak_bytes', j['full'].get('peak_bytes', 0))}")
PY
ln -sf kept/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
gen() { # build name
  timeout 90 .gpu/$1/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" --seed 7 \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$2.mp4 --timings-json $R/timings-$2.json > $R/generate-$2.log 2>&1
  echo "$2 rc $? $(md5sum < $R/$2.mp4 | cut -c1-12) $(stat -c %s $R/$2.mp4) t=$SECONDS"
}
gen base g-base-0
for i in 1 2 3; do gen kept g-kept-$i; gen base g-base-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']
    print(os.path.basename(f)[8:-5].ljust(9), 'load %.3f after_load %.3f total %.3f text %.3f denoise %.3f vae %.3f finish %.3f'
          % (j['load_s'], j['wall_s'] - j['load_s'], t['total_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], j['finish_output_s']))
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
