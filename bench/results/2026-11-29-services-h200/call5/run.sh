#!/usr/bin/env bash
# Session 22, call 5: tools/gpu/services_trace.sh (4 requests) with the committed HTTP/2 windows
# (16 MiB stream / 32 MiB connection on every server and the orchestrator's stage clients) and
# the orchestrator's writer taking the VAE service's u8 frames as they are (no u8 -> f32 -> u8).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/*.gz; chmod +x .gpu/turbine .gpu/otlp_dump
OUT=$R/trace REQUESTS=4 KEEP_MODEL=1 timeout 500 bash tools/gpu/services_trace.sh > $R/trace.log 2>&1; echo "trace rc $? t=$SECONDS"
grep -E "==|job|read_inputs|sample|send_latents|Denoise|Decode|encode_video|Generate" $R/trace.log | grep -v "^.*Encode" | head -80
for f in $R/trace/submit-*.log; do tail -4 $f; done
cd $R/.. && tar czf results.tgz r && rm -rf r
