#!/usr/bin/env bash
# Session 27, call 9: the ops checks with the channel norm's grid-looping cases on 360x512 frames
# (every warp also looping, plain and folded), and the cuDNN overlap probe through peers.py's timer.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
timeout 150 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "360, 512|download_async" $R/ops.log | cut -c1-150; grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
timeout 100 python3 tools/gpu/cudnn_overlap_probe.py $R/overlap.json > $R/overlap.log 2>&1; echo "probe rc $? t=$SECONDS"
python3 -c "
import json
for r in json.load(open('$R/overlap.json')): print(r['case'], r.get('median_ms'), sorted({a['status'] for a in r.get('algos', [])}))"
cd $R/.. && tar czf results.tgz r && rm -rf r
