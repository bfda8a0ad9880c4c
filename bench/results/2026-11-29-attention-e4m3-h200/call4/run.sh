#!/usr/bin/env bash
# Session 23, call 4: the review's mend (sage_out_scale through block_reduce): FP8 checks.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/new/*.gz; chmod +x .gpu/new/turbine-gpucheck
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0
timeout 240 .gpu/new/turbine-gpucheck --parts fp8 --json $R/fp8.json > $R/fp8.log 2>&1; echo "fp8 rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/fp8.log | tail -3
grep -E "attention output  " $R/fp8.log
cd $R/.. && tar czf results.tgz r && rm -rf r
