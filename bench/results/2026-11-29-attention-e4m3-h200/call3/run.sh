#!/usr/bin/env bash
# Session 23, call 3: is cuBLASLt's fastest candidate for the scalar-scaled e4m3-out FFN-in GEMM
# the same run after run? The 2026-11-28 probe (first eight heuristic answers, median of 15),
# three times on one host. .gpu/lt_probe.py is bench/results/2026-11-28-fp8-hidden-h200/call7/lt_probe.py.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for i in 1 2 3; do
  timeout 150 python3 .gpu/lt_probe.py > $R/candidates-$i.log 2>&1; echo "run $i rc $? t=$SECONDS"
  grep heuristic $R/candidates-$i.log
done
cd $R/.. && tar czf results.tgz r && rm -rf r
