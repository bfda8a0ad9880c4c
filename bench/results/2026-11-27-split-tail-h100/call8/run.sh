#!/usr/bin/env bash
# Session 13, call 8: the NVML queries through one helper (review mend): bench's energy fields.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
timeout 100 .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --json $R/sla13.json > $R/sla13.log 2>&1 || echo "failed"
python3 -c "import json; r=json.load(open('$R/sla13.json')); print('sla13', r['forward']['median_ms'], r['forward']['energy'], r['device'].get('power_limit_w'))"
cd $R/.. && tar czf results.tgz r && rm -rf r
