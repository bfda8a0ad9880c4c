#!/usr/bin/env bash
# Session 21, call 5: `turbine generate` with the DiT's warm-up forward (the request's size and
# attention mode) beside the VAE's while umT5 loads; issue 7's end-to-end run (tools/gpu/e2e_bench.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/*.gz; chmod +x .gpu/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
OUT=$R/e2e timeout 400 bash tools/gpu/e2e_bench.sh > $R/e2e.log 2>&1; echo "e2e rc $? t=$SECONDS"
grep -E "^==|exit|^\s+(load|text|dit|denoise|vae|encode|total|finish)" $R/e2e.log
for f in $R/e2e/timings-*.json; do python3 -c "
import json,sys; j=json.load(open(sys.argv[1])); t=j['report']['timings']
print(sys.argv[1].split('/')[-1], 'load', round(j['load_s'],3), 'total', round(t['total_s'],3), 'steps', [round(x,4) for x in t['steps_s']], 'vae', round(t['vae_decode_s'],3), 'text', round(t['text_encode_s'],3))" $f; done
rm -f $R/e2e/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
