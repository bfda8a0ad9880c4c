#!/usr/bin/env bash
# Session 22, call 1: the denoiser's warm-up attention modes through `turbine serve` (1.3B
# random-weight SLA-tuned folder, 480p 81 frames, 4-step rCM, SageSLA 0.1 + FP8, two requests
# each): first with `--warm-up-attention dense` (the warm-up before this change), then
# tools/gpu/services_check.sh with the new default (dense + SageSLA on an SLA-tuned checkpoint).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/*.gz; chmod +x .gpu/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
export OUT=$R/base KEEP_MODEL=1
mkdir -p $OUT
source tools/gpu/model_folder.sh
echo "model rc $model_status t=$SECONDS"
port=50050
.gpu/turbine serve --model-dir "$MODEL" --listen "127.0.0.1:$port" --device cuda --quant fp8 \
    --artifact-dir /tmp/turbine-artifacts --warm-up-shape 832x480x81 --warm-up-attention dense \
    >"$OUT/serve.log" 2>&1 &
server=$!
start=$(date +%s%N)
for _ in $(seq 1 240); do
    [ "$(grep -c 'serving' "$OUT/serve.log")" -ge 3 ] && break
    kill -0 $server 2>/dev/null || break
    sleep 0.5
done
echo "base: serving after $((($(date +%s%N) - start) / 1000000)) ms"
grep -o 'warmed up.*' "$OUT/serve.log"
for name in warm timed; do
    timeout 300 .gpu/turbine submit --server "http://127.0.0.1:$port" --prompt "$prompt" \
        --steps 4 --attention sagesla --sla-topk 0.1 --seed 7 --out "$OUT/$name.mp4" \
        --timings-json "$OUT/submit-$name.json" >"$OUT/submit-$name.log" 2>&1
    echo "base submit $name: exit $?"; tail -5 "$OUT/submit-$name.log"
done
kill -TERM $server; wait $server
echo "base done t=$SECONDS"
OUT=$R/new timeout $((570 - SECONDS)) bash tools/gpu/services_check.sh > $R/new.log 2>&1; echo "new rc $? t=$SECONDS"
grep -v INFO $R/new.log | tail -45
rm -f $R/*/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
