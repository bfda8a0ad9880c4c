#!/usr/bin/env bash
# Session 28, call 1: OpenH264 with its x86 assembly (nasm at build time, "new") against the C
# fallback ("base"), the same tree otherwise (chunk timings in the report): the encoder alone
# (h264_bench on this host's CPU), then end to end (1.3B 480p x 81, 4-step rCM, SageSLA 0.1 +
# FP8), alternating.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine .gpu/*/h264_bench
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
{ nproc; lscpu | grep -E "Model name|MHz"; } >> $R/env.txt
for side in base new; do timeout 60 .gpu/$side/h264_bench 0.25 30 > $R/h264-$side.log 2>&1; echo "h264 $side rc $? t=$SECONDS"; done
ln -sf new/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
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
for i in 1 2 3; do [ $SECONDS -gt 450 ] && break; gen new new-$i; gen base base-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']
    print(os.path.basename(f)[8:-5].ljust(10), 'after_load', round(j['wall_s'] - j['load_s'], 3), 'finish', round(j['finish_output_s'], 3),
          {k: (round(v, 3) if isinstance(v, float) else v) for k, v in t.items() if k not in ('steps_s', 'chunks')})
    c = t['chunks']
    d = [x['decoded_s'] for x in c]; q = [x['queued_s'] for x in c]; w = [x['written_s'] for x in c]
    gaps = [round((b - a) * 1e3, 1) for a, b in zip(d, d[1:])]
    print('   first frame %.3f s, queued %s' % (d[0], [round(x * 1e3) for x in q]))
    print('   decoded gaps ms', gaps)
    print('   written lag ms', [round((b - a) * 1e3, 1) for a, b in zip(d, w)])
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
