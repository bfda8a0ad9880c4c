#!/usr/bin/env bash
# Session 12, call 7: which row layouts RowLayout::fit picks at 14B 720p (trace log).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
RUST_LOG=turbine_tensor::cuda::rows=trace timeout 200 .gpu/f/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/trace.log 2>&1; echo "rc $?"
grep "row layout" $R/trace.log | sed 's/.*row layout//' | sort | uniq -c
cd $R/.. && tar czf results.tgz r && rm -rf r
