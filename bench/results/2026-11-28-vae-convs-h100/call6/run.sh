#!/usr/bin/env bash
# Session 15, call 6: the final HEAD's binaries: op checks, `--parts vae` (conv timings, full
# decode/encode), and VAE parity vs diffusers.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/new/*.gz; chmod +x .gpu/new/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
BIN=.gpu/new PARTS=vae OUT=$R/parity timeout 200 tools/gpu/vae_bench.sh > $R/vae_bench.log 2>&1; echo "vae_bench rc $? t=$SECONDS"
grep -hE "conv 96|head conv|^decode|^encode|causal_rms|  conv3d|ALL CHECKS|FAIL" $R/parity/gpucheck.log; tail -3 $R/parity/parity.log
cd $R/.. && tar czf results.tgz r && rm -rf r
