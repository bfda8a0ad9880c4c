#!/usr/bin/env bash
# Session 22, call 3: `--parts ops` (the Sage attention-size rows on the bf16 backend); then
# `turbine serve` (1.3B random-weight SLA-tuned folder, SageSLA 0.1 + FP8) exporting its traces
# to an OTLP receiver that prints every span as a JSON line (tests/examples/otlp_dump.rs), with
# the denoiser's new spans (read_inputs, prepare_context, sample, send_latents): three 480p x 81
# requests, spans in spans.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/*.gz; chmod +x .gpu/turbine* .gpu/otlp_dump
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 120 .gpu/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "attention size|passed|ALL CHECKS|FAIL" $R/ops.log | tail -12
export OUT=$R KEEP_MODEL=1 RUST_BACKTRACE=0
source tools/gpu/model_folder.sh
echo "model rc $model_status t=$SECONDS"
.gpu/otlp_dump > $R/spans.jsonl 2> $R/otlp.txt &
dump=$!
sleep 1; endpoint=$(head -1 $R/otlp.txt); echo "otlp at $endpoint"
port=50050
.gpu/turbine serve --model-dir "$MODEL" --listen "127.0.0.1:$port" --device cuda --quant fp8 \
    --artifact-dir /tmp/turbine-artifacts --warm-up-shape 832x480x81 \
    --otlp-endpoint "$endpoint" --otlp-schedule-delay-ms 100 >"$R/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 240); do
    [ "$(grep -c 'serving' "$R/serve.log")" -ge 3 ] && break
    kill -0 $server 2>/dev/null || break
    sleep 0.5
done
for name in a b c; do
    t0=$(date +%s%N)
    timeout 300 .gpu/turbine submit --server "http://127.0.0.1:$port" --prompt "$prompt" \
        --steps 4 --attention sagesla --sla-topk 0.1 --seed 7 --out "$R/$name.mp4" \
        --timings-json "$R/submit-$name.json" >"$R/submit-$name.log" 2>&1
    echo "submit $name: exit $? in $((($(date +%s%N) - t0) / 1000000)) ms"; tail -4 "$R/submit-$name.log"
done
kill -TERM $server; wait $server; echo "serve exit $?"
sleep 2; kill $dump
wc -l $R/spans.jsonl
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
