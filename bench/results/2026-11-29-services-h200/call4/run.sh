#!/usr/bin/env bash
# Session 22, call 4: `--parts ops` (the Sage kernel's size refusal on the bf16 backend); then
# `turbine serve` traced as in call 3 under three HTTP/2 flow-control settings (an experiment-only
# env hook, TURBINE_H2, in the stage servers, the orchestrator's server and its stage clients):
# hyper's defaults (server windows 1 MiB), windows of 16 MiB (connection 32 MiB), and hyper's
# adaptive window. Three 480p x 81 requests each; spans in spans-<config>.jsonl.
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
port=50050
for cfg in default window:16777216 adaptive; do
    tag=${cfg%%:*}
    .gpu/otlp_dump > $R/spans-$tag.jsonl 2> $R/otlp-$tag.txt &
    dump=$!
    sleep 1; endpoint=$(head -1 $R/otlp-$tag.txt)
    TURBINE_H2=$cfg .gpu/turbine serve --model-dir "$MODEL" --listen "127.0.0.1:$port" --device cuda --quant fp8 \
        --artifact-dir /tmp/turbine-artifacts --warm-up-shape 832x480x81 \
        --otlp-endpoint "$endpoint" --otlp-schedule-delay-ms 100 >"$R/serve-$tag.log" 2>&1 &
    server=$!
    for _ in $(seq 1 240); do
        [ "$(grep -c 'serving' "$R/serve-$tag.log")" -ge 3 ] && break
        kill -0 $server 2>/dev/null || break
        sleep 0.5
    done
    for name in a b c; do
        t0=$(date +%s%N)
        timeout 300 .gpu/turbine submit --server "http://127.0.0.1:$port" --prompt "$prompt" \
            --steps 4 --attention sagesla --sla-topk 0.1 --seed 7 --out "$R/$name.mp4" \
            --timings-json "$R/submit-$tag-$name.json" >"$R/submit-$tag-$name.log" 2>&1
        echo "$cfg submit $name: exit $? in $((($(date +%s%N) - t0) / 1000000)) ms"
    done
    kill -TERM $server; wait $server; echo "$cfg serve exit $?"
    sleep 1; kill $dump
    echo "t=$SECONDS"
done
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
