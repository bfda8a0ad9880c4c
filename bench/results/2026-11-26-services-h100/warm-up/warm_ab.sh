#!/usr/bin/env bash
# A/B, not committed: turbine serve without and with --warm-up-shape, two submits each.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-warm-out}; mkdir -p "$OUT"
source tools/gpu/cudnn.sh
source tools/gpu/model_folder.sh
port=50171
for mode in none 832x480x81 none 832x480x81; do
  port=$((port + 1))
  flag=(); [ $mode != none ] && flag=(--warm-up-shape $mode)
  start=$(date +%s%N)
  .gpu/turbine serve --model-dir "$MODEL" --listen "127.0.0.1:$port" --device cuda --quant fp8 \
      --artifact-dir /tmp/turbine-artifacts "${flag[@]}" >"$OUT/serve-$mode-$port.log" 2>&1 &
  server=$!
  for _ in $(seq 1 240); do
    [ "$(grep -c 'serving' "$OUT/serve-$mode-$port.log")" -ge 3 ] && break
    sleep 0.25
  done
  echo "$mode: serving after $((($(date +%s%N) - start) / 1000000)) ms"
  for n in 1 2; do
    s=$(date +%s%N)
    timeout 120 .gpu/turbine submit --server "http://127.0.0.1:$port" --prompt "$prompt" \
        --width 832 --height 480 --frames 81 --steps 4 --attention sagesla --sla-topk 0.1 \
        --out /tmp/warm-$n.mp4 --timings-json "$OUT/submit-$mode-$port-$n.json" >"$OUT/submit-$mode-$port-$n.log" 2>&1
    echo "  request $n: exit $? wall $((($(date +%s%N) - s) / 1000000)) ms"
  done
  kill -TERM $server; wait $server
done
