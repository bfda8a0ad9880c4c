#!/usr/bin/env bash
# Session 31, call 1: base (f4e1ec3) against new (the request's noise drawn while the models load;
# the last segment of a clip's MP4 halved, warmed up ahead) alternately on one host: the H.264
# writer's finish at the VAE's pace (h264_bench), `turbine generate` four times a build, then
# `turbine serve` traced with three submits a build.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; for f in .gpu/*/*.xz; do python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"; done
chmod +x .gpu/*/turbine .gpu/*/h264_bench .gpu/tools/otlp_dump
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
nproc >> $R/env.txt; lscpu | grep -E "Model name|MHz" >> $R/env.txt
for b in base new; do
  echo "== h264_bench $b" >> $R/h264.txt
  .gpu/$b/h264_bench 0.25 31 2>&1 | tail -4 >> $R/h264.txt
done
echo "h264 done t=$SECONDS"
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
for i in 1 2 3 4; do gen new g-new-$i; gen base g-base-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']; c = t['chunks']
    print(os.path.basename(f)[8:-5].ljust(9), 'after_load %.3f total %.3f text %.3f denoise %.3f vae %.3f finish %.3f sink %.3f | steps %s ms | last chunk decoded %.0f written %.0f'
          % (j['wall_s'] - j['load_s'], t['total_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], j['finish_output_s'], t['sink_s'],
             ' '.join('%.1f' % (s * 1e3) for s in t['steps_s']), c[-1]['decoded_s']*1e3, c[-1]['written_s']*1e3))
PY
port=50050
serve() { # build
  local tag=$1
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
  submit $tag-warm "$prompt"
  submit $tag-1 "$prompt"
  submit $tag-2 "$prompt"
  submit $tag-3 "$prompt"
  kill -TERM $server; wait $server; echo "serve $tag exited $? t=$SECONDS"
  sleep 1; kill $dump
}
submit() { # name prompt
  timeout 120 .gpu/turbine submit --server http://127.0.0.1:$port --prompt "$2" --steps 4 \
    --attention sagesla --sla-topk 0.1 --seed 7 --out $R/$1.mp4 --timings-json $R/submit-$1.json >$R/submit-$1.log 2>&1
  echo "submit $1 rc $? $(md5sum < $R/$1.mp4 | cut -c1-12) $(stat -c %s $R/$1.mp4) $(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); t=j['server_timings']; print('wall %.3f text %.4f denoise %.3f vae %.3f encode %.3f' % (j['client_wall_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], t['encode_video_s']))" $R/submit-$1.json 2>/dev/null)"
}
serve base; serve new
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/spans-*.jsonl")):
    spans = [json.loads(l) for l in open(f)]
    traces = {}
    for s in spans: traces.setdefault(s["trace"], []).append(s)
    for t in sorted(traces.values(), key=lambda t: min(s["start_ns"] for s in t)):
        if not any(s["name"] == "job" for s in t): continue
        d = lambda n: [ (s["end_ns"]-s["start_ns"])/1e6 for s in t if s["name"] == n]
        gen = d("turbine.v1.Orchestrator/Generate")
        print(os.path.basename(f)[6:-6].ljust(7), 'Generate %.1f sample %.1f vae_decode %.1f encode_video %.1f finish_mp4 %.1f'
              % (gen[0], d("sample")[0], d("vae_decode")[0], d("encode_video")[0], d("finish_mp4")[0]))
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
