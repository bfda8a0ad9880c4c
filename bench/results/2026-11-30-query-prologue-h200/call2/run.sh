#!/usr/bin/env bash
# Session 32, call 2: base (23f8a6e) against new (narrow as a view, the DiT's modulation slices
# free): ops checks, 1.3B SageSLA 0.1 + FP8 forwards alternately, then `turbine generate` three
# times a build alternately after a cold run.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.xz; do python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"; rm "$f"; done
chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 100 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS|narrow" $R/ops.log | tail -6
bench() { # side tag args...
  local side=$1 tag=$2; shift 2
  timeout 150 .gpu/$side/turbine bench "$@" --json $R/$tag-$side-$SECONDS.json > $R/$tag-$side-$SECONDS.log 2>&1 || echo "$tag $side failed"
}
S13="--model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10"
bench base warm $S13
for side in base new new base base new new base; do bench $side sla13 $S13; done
echo "sla13 done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
fs = [f for f in glob.glob(sys.argv[1] + "/*.json") if f.split('-')[-1][:-5].isdigit()]
for f in sorted(fs, key=lambda f: int(f.split('-')[-1][:-5])):
    j = json.load(open(f)); ops = {o["op"]: (o["total_ms"], o["calls"]) for o in j["ops"]}
    g = lambda k: ops.get(k, (0, 0))
    print(f"{os.path.basename(f):24s} median {j['forward']['median_ms']:8.2f} min {j['forward']['min_ms']:8.2f} slice {g('slice')[0]:.2f}/{g('slice')[1]} add {g('add')[0]:.2f}/{g('add')[1]} peak {j['device']['peak_live_bytes']}")
PY
ln -sf new/turbine .gpu/turbine
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
for i in 1 2 3; do gen new g-new-$i; gen base g-base-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']
    print(os.path.basename(f)[8:-5].ljust(9), 'after_load %.3f total %.3f text %.3f denoise %.3f vae %.3f finish %.3f | steps %s ms'
          % (j['wall_s'] - j['load_s'], t['total_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], j['finish_output_s'],
             ' '.join('%.1f' % (s * 1e3) for s in t['steps_s'])))
PY
rm -f $R/*.mp4.tmp
cd $R/.. && tar czf results.tgz r && rm -rf r
