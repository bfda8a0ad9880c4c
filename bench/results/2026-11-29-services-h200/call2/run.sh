#!/usr/bin/env bash
# Session 22, call 2: `--parts ops` with the new attention-size rows; then `turbine serve` (1.3B
# random-weight SLA-tuned folder, SageSLA 0.1 + FP8, default warm-up: dense + SageSLA) with its
# Prometheus metrics: two 480p requests, a 720p x 161-frame SageSLA request (147,600 tokens, past
# the block selection's 131,072: RESOURCE_EXHAUSTED before any work), a normal one after it; the
# step and stage histograms after each; then `turbine generate` on the same folder for its
# per-step times.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/*.gz; chmod +x .gpu/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 120 .gpu/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "attention size|passed|ALL CHECKS|FAIL" $R/ops.log | tail -12
export OUT=$R KEEP_MODEL=1
source tools/gpu/model_folder.sh
echo "model rc $model_status t=$SECONDS"
port=50050
.gpu/turbine serve --model-dir "$MODEL" --listen "127.0.0.1:$port" --device cuda --quant fp8 \
    --artifact-dir /tmp/turbine-artifacts --warm-up-shape 832x480x81 --metrics-addr 127.0.0.1:9464 \
    >"$R/serve.log" 2>&1 &
server=$!
start=$(date +%s%N)
for _ in $(seq 1 240); do
    [ "$(grep -c 'serving' "$R/serve.log")" -ge 3 ] && break
    kill -0 $server 2>/dev/null || break
    sleep 0.5
done
echo "serving after $((($(date +%s%N) - start) / 1000000)) ms"
grep -o 'warmed up.*' "$R/serve.log"
metrics() { curl -s 127.0.0.1:9464/metrics > "$R/metrics-$1.txt"; grep -E "step_seconds_(sum|count)|stage_seconds_(sum|count)" "$R/metrics-$1.txt" | sed "s/^/  $1 /"; }
metrics ready
submit() {
    local name=$1; shift
    local t0=$(date +%s%N)
    timeout 300 .gpu/turbine submit --server "http://127.0.0.1:$port" --prompt "$prompt" \
        --steps 4 --attention sagesla --sla-topk 0.1 --seed 7 --out "$R/$name.mp4" \
        --timings-json "$R/submit-$name.json" "$@" >"$R/submit-$name.log" 2>&1
    echo "submit $name: exit $? in $((($(date +%s%N) - t0) / 1000000)) ms"; tail -5 "$R/submit-$name.log"
    metrics $name
}
submit warm
submit timed
submit long --width 1280 --height 720 --frames 161
submit after
kill -TERM $server; wait $server; echo "serve exit $?"
echo "== turbine generate t=$SECONDS"
timeout 120 .gpu/turbine generate --model-dir "$MODEL" --device cuda --frames 81 --steps 4 \
    --attention sagesla --sla-topk 0.1 --quant fp8 --prompt "$prompt" --out $R/gen.mp4 \
    --timings-json $R/timings-gen.json > $R/generate.log 2>&1; echo "generate rc $?"
grep -E '^\s+(load|text|dit|denoise|vae|encode|total|step)' $R/generate.log
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
