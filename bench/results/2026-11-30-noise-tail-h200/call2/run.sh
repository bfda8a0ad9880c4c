#!/usr/bin/env bash
# Session 31, call 2: the keystream on two threads. The initial noise's draw (480p latent,
# 2,096,640 normals) with one keystream thread (base, 7fd091c) and two (new), alternately; then
# "tail" (7fd091c) against "ks" (the two-thread keystream) through `turbine serve` + `turbine
# submit`, traced (the denoiser draws the noise when a request reaches its model thread), and
# `turbine generate` twice a build.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; for f in .gpu/*/*.xz; do python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"; done
chmod +x .gpu/*/turbine .gpu/tools/*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
nproc >> $R/env.txt; lscpu | grep -E "Model name|MHz" >> $R/env.txt
for i in 1 2 3; do for b in base new; do echo "== $b"; .gpu/tools/noise_time_$b; done; done > $R/noise.txt 2>&1
echo "noise done t=$SECONDS"
ln -sf tail/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
port=50050
serve() { # build run
  local tag=$1-$2
  .gpu/tools/otlp_dump >$R/spans-$tag.jsonl 2>$R/otlp-$tag.txt &
  local dump=$!
  for _ in $(seq 1 50); do [ -s $R/otlp-$tag.txt ] && break; sleep 0.1; done
  local otlp=$(head -1 $R/otlp-$tag.txt)
  RUST_LOG=info,turbine_vae=debug,turbine_orchestrator=debug .gpu/$1/turbine serve --model-dir "$MODEL" \
    --listen 127.0.0.1:$port --device cuda --quant fp8 --artifact-dir /tmp/turbine-artifacts \
    --warm-up-shape 832x480x81 --otlp-endpoint "$otlp" --otlp-schedule-delay-ms 100 >$R/serve-$tag.log 2>&1 &
  local server=$!
  for _ in $(seq 1 240); do
    [ "$(grep -c 'serving' $R/serve-$tag.log)" -ge 3 ] && break
    kill -0 $server 2>/dev/null || break
    sleep 0.5
  done
  for j in warm 1 2 3; do submit $tag-$j "$prompt"; done
  kill -TERM $server; wait $server; echo "serve $tag exited $? t=$SECONDS"
  sleep 1; kill $dump
}
submit() { # name prompt
  timeout 120 .gpu/turbine submit --server http://127.0.0.1:$port --prompt "$2" --steps 4 \
    --attention sagesla --sla-topk 0.1 --seed 7 --out $R/$1.mp4 --timings-json $R/submit-$1.json >$R/submit-$1.log 2>&1
  echo "submit $1 rc $? $(md5sum < $R/$1.mp4 | cut -c1-12)"
}
serve tail 1; serve ks 1; serve tail 2; serve ks 2
gen() { # build name
  timeout 90 .gpu/$1/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" --seed 7 \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$2.mp4 --timings-json $R/timings-$2.json > $R/generate-$2.log 2>&1
  echo "$2 rc $? $(md5sum < $R/$2.mp4 | cut -c1-12) t=$SECONDS"
}
gen tail g-tail-0; gen ks g-ks-1; gen tail g-tail-1; gen ks g-ks-2; gen tail g-tail-2
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']
    print(os.path.basename(f)[8:-5].ljust(9), 'after_load %.3f text %.3f denoise %.3f vae %.3f finish %.3f | steps %s ms'
          % (j['wall_s'] - j['load_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], j['finish_output_s'],
             ' '.join('%.1f' % (s * 1e3) for s in t['steps_s'])))
for f in sorted(glob.glob(sys.argv[1] + "/spans-*.jsonl")):
    spans = [json.loads(l) for l in open(f)]
    traces = {}
    for s in spans: traces.setdefault(s["trace"], []).append(s)
    for t in sorted(traces.values(), key=lambda t: min(s["start_ns"] for s in t)):
        if not any(s["name"] == "job" for s in t): continue
        d = lambda n: [ (s["end_ns"]-s["start_ns"])/1e6 for s in t if s["name"] == n]
        gen = d("turbine.v1.Orchestrator/Generate")
        print(os.path.basename(f)[6:-6].ljust(7), 'Generate %.1f read_inputs %.1f prepare %.1f sample %.1f vae_decode %.1f encode_video %.1f finish_mp4 %.1f'
              % (gen[0], d("read_inputs")[0], d("prepare_context")[0], d("sample")[0], d("vae_decode")[0], d("encode_video")[0], d("finish_mp4")[0]))
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
