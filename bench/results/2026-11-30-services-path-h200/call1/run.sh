#!/usr/bin/env bash
# Session 30, call 1: where the services path loses time against `turbine generate`.
# `turbine serve --device cuda --quant fp8` traced into an OTLP dump with the VAE service's and
# the video writer's per-chunk debug spans; four submits (480p x 81, 4-step rCM, SageSLA 0.1):
# a warm-up, a new prompt (text miss), the first prompt again twice (cache hits); then
# `turbine generate` twice on the same folder and host.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
chmod +x .gpu/*/turbine* .gpu/otlp_dump
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
nproc >> $R/env.txt
ln -sf new/turbine .gpu/turbine
MODEL=/tmp/turbine-e2e
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
.gpu/otlp_dump >$R/spans.jsonl 2>$R/otlp.txt &
dump=$!
for _ in $(seq 1 50); do [ -s $R/otlp.txt ] && break; sleep 0.1; done
otlp=$(head -1 $R/otlp.txt)
port=50050
RUST_LOG=info,turbine_vae=debug,turbine_orchestrator=debug .gpu/turbine serve --model-dir "$MODEL" \
  --listen 127.0.0.1:$port --device cuda --quant fp8 --artifact-dir /tmp/turbine-artifacts \
  --warm-up-shape 832x480x81 --otlp-endpoint "$otlp" --otlp-schedule-delay-ms 100 >$R/serve.log 2>&1 &
server=$!
for _ in $(seq 1 240); do
  [ "$(grep -c 'serving' $R/serve.log)" -ge 3 ] && break
  kill -0 $server 2>/dev/null || break
  sleep 0.5
done
echo "serving t=$SECONDS"
submit() { # name prompt
  timeout 120 .gpu/turbine submit --server http://127.0.0.1:$port --prompt "$2" --steps 4 \
    --attention sagesla --sla-topk 0.1 --seed 7 --out $R/$1.mp4 --timings-json $R/submit-$1.json >$R/submit-$1.log 2>&1
  echo "submit $1 rc $? $(md5sum < $R/$1.mp4 | cut -c1-12)"
}
submit warm "$prompt"
submit miss "A lighthouse on a cliff at night, waves crashing below, beams of light sweeping through fog"
submit hit1 "$prompt"
submit hit2 "$prompt"
kill -TERM $server; wait $server; echo "serve exited $?"
sleep 1; kill $dump
python3 - $R/spans.jsonl <<'PY'
import json, sys
spans = [json.loads(line) for line in open(sys.argv[1])]
by_id = {s["span"]: s for s in spans}
def depth(s):
    d = 0
    while s["parent"] in by_id:
        s, d = by_id[s["parent"]], d + 1
    return d
traces = {}
for s in spans:
    traces.setdefault(s["trace"], []).append(s)
for trace in sorted(traces.values(), key=lambda t: min(s["start_ns"] for s in t)):
    if not any(s["name"] == "job" for s in trace):
        continue
    trace.sort(key=lambda s: s["start_ns"])
    t0 = trace[0]["start_ns"]
    print(f"== trace {trace[0]['trace'][:8]}: start ms, end ms, duration ms, span")
    for s in trace:
        attrs = "".join(f" {k}={v}" for k, v in s.get("attrs", {}).items() if k in ("first_frame",))
        print(f"{(s['start_ns'] - t0) / 1e6:9.1f} {(s['end_ns'] - t0) / 1e6:9.1f} "
              f"{(s['end_ns'] - s['start_ns']) / 1e6:8.1f}  {'  ' * depth(s)}{s['name']}{attrs}")
PY
for f in $R/submit-*.json; do echo "$f"; cat $f; done
gen() {
  timeout 90 .gpu/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" --seed 7 \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$1.mp4 --timings-json $R/timings-$1.json > $R/generate-$1.log 2>&1
  echo "$1 rc $? $(md5sum < $R/$1.mp4 | cut -c1-12) t=$SECONDS"
}
gen g1; gen g2
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f)); t = j['report']['timings']; c = t['chunks']
    print(os.path.basename(f)[8:-5].ljust(7), 'after_load %.3f total %.3f text %.3f denoise %.3f vae %.3f finish %.3f sink %.3f | steps %s ms'
          % (j['wall_s'] - j['load_s'], t['total_s'], t['text_encode_s'], t['denoise_s'], t['vae_decode_s'], j['finish_output_s'], t['sink_s'],
             ' '.join('%.1f' % (s * 1e3) for s in t['steps_s'])))
    print('   chunks (queued, decoded, written ms):', ' '.join('%.0f/%.0f/%.0f' % (x['queued_s']*1e3, x['decoded_s']*1e3, x['written_s']*1e3) for x in c))
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
