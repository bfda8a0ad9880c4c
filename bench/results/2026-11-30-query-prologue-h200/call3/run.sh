#!/usr/bin/env bash
# Session 32, call 3: "view" (the previous call's new build) against "noise" (the initial noise
# drawn in stretches of the stream on up to 8 threads, the values one thread draws): the 480p
# draw timed alternately (noise_bench), then `turbine serve` + `turbine submit` traced, two
# servers a build alternating, each a warm-up job, three new prompts (misses) and two repeats
# (hits); `turbine generate` once a build (MP4s compared).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.xz; do python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"; rm "$f"; done
chmod +x .gpu/*/*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
nproc >> $R/env.txt; lscpu | grep -E "Model name|MHz" >> $R/env.txt
for i in 1 2 3; do for b in view noise; do echo "$b $(.gpu/$b/noise_bench 9)"; done; done | tee $R/noise.txt
ln -sf noise/turbine .gpu/turbine
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
  RUST_LOG=info .gpu/$1/turbine serve --model-dir "$MODEL" \
    --listen 127.0.0.1:$port --device cuda --quant fp8 --artifact-dir /tmp/turbine-artifacts \
    --warm-up-shape 832x480x81 --otlp-endpoint "$otlp" --otlp-schedule-delay-ms 100 >$R/serve-$tag.log 2>&1 &
  local server=$!
  for _ in $(seq 1 240); do
    [ "$(grep -c 'serving' $R/serve-$tag.log)" -ge 3 ] && break
    kill -0 $server 2>/dev/null || break
    sleep 0.5
  done
  submit $tag-warm "$prompt"
  for j in 1 2 3; do submit $tag-miss$j "A lighthouse on a cliff at night, waves crashing below, beams of light sweeping through fog, take $2$j"; done
  for j in 1 2; do submit $tag-hit$j "$prompt"; done
  kill -TERM $server; wait $server; echo "serve $tag exited $? t=$SECONDS"
  sleep 1; kill $dump
}
submit() { # name prompt
  timeout 120 .gpu/turbine submit --server http://127.0.0.1:$port --prompt "$2" --steps 4 \
    --attention sagesla --sla-topk 0.1 --seed 7 --out $R/$1.mp4 --timings-json $R/submit-$1.json >$R/submit-$1.log 2>&1
  echo "submit $1 rc $? $(md5sum < $R/$1.mp4 | cut -c1-12)"
}
serve view 1; serve noise 1; serve view 2; serve noise 2
gen() { # build name
  timeout 90 .gpu/$1/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" --seed 7 \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$2.mp4 --timings-json $R/timings-$2.json > $R/generate-$2.log 2>&1
  echo "$2 rc $? $(md5sum < $R/$2.mp4 | cut -c1-12) t=$SECONDS"
}
gen view g-view; gen noise g-noise
python3 - $R <<'PY' | tee $R/summary.txt
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/spans-*.jsonl")):
    spans = [json.loads(l) for l in open(f)]
    traces = {}
    for s in spans: traces.setdefault(s["trace"], []).append(s)
    for t in sorted(traces.values(), key=lambda t: min(s["start_ns"] for s in t)):
        if not any(s["name"] == "job" for s in t): continue
        g = [s for s in t if s["name"] == "turbine.v1.Orchestrator/Generate"][0]; t0 = g["start_ns"]
        d = lambda n: [ (s["end_ns"]-s["start_ns"])/1e6 for s in t if s["name"] == n]
        at = lambda n: [ (s["start_ns"]-t0)/1e6 for s in t if s["name"] == n]
        te = d("text_encode")
        print(os.path.basename(f)[6:-6].ljust(8), 'Generate %.1f text_encode %.1f read_inputs %.1f (at %.1f) sample %.1f (at %.1f) vae_decode %.1f'
              % ((g["end_ns"]-t0)/1e6, te[0] if te else 0, d("read_inputs")[0], at("read_inputs")[0], d("sample")[0], at("sample")[0], d("vae_decode")[0]))
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
