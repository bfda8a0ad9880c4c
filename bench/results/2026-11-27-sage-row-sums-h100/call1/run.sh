#!/usr/bin/env bash
# Session 12, call 1: the P·V wait kept after the softmax (flash bf16, Sage) = new; plus P̃'s row
# sums from a ones column of Vᵀ = c. Checks and old/new/c kernel timings.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
for f in .gpu/*.gz .gpu/old/*.gz .gpu/c/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/turbine .gpu/turbine-gpucheck .gpu/old/* .gpu/c/*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
echo "t=$SECONDS"
for side in new c old; do
  bin=.gpu/turbine-gpucheck; [ $side != new ] && bin=.gpu/$side/turbine-gpucheck
  timeout 150 $bin --parts sage --json $R/sage-$side.json > $R/sage-$side.log 2>&1; echo "sage $side rc $? t=$SECONDS"
  grep -E "FAIL|failed" $R/sage-$side.log | head -5
  grep -E "sage|flash \[|wgmma vs mma|TOPS" $R/sage-$side.log | grep -v "INFO" | head -40
done
timeout 150 .gpu/turbine-gpucheck --parts ops > $R/ops-new.log 2>&1; echo "ops new rc $? t=$SECONDS"
grep -E "FAIL|passed|failed" $R/ops-new.log | tail -3
cd $R/.. && tar czf results.tgz r && rm -rf r
