#!/usr/bin/env bash
# Session 19, call 8: the second review's mend (one bf16x8 unpack for the row norms and sage_kv,
# the select limit in sage_blocks, the CPU's top_blocks for the host selection): parts ops, sage, fp8.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for part in ops sage fp8; do
  timeout 150 .gpu/new8/turbine-gpucheck --parts $part --json $R/$part.json > $R/$part.log 2>&1; echo "$part rc $? t=$SECONDS"
  grep -E "select .* vs host|FAIL|passed|failed|ALL CHECKS" $R/$part.log | grep -v INFO | tail -6
done
cd $R/.. && tar czf results.tgz r && rm -rf r
