#!/usr/bin/env bash
# Session 15, call 1: the narrow implicit-GEMM conv (VAE head): op checks, VAE parity vs diffusers
# (new build), then `--parts vae` timings old / new alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 200 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "narrow|head" $R/ops.log; grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
BIN=.gpu/new PARTS=vae OUT=$R/parity timeout 330 tools/gpu/vae_bench.sh > $R/vae_bench.log 2>&1; echo "vae_bench rc $? t=$SECONDS"
grep -A8 "bf16 conv3d (NDHWC)" $R/parity/gpucheck.log; grep -E "decode|encode" $R/parity/gpucheck.log | head -12; cat $R/parity/parity.log | tail -8
for side in old new old; do
  [ $SECONDS -gt 520 ] && break
  timeout 60 .gpu/$side/turbine-gpucheck --parts vae --json $R/vae-$side-$SECONDS.json > $R/vae-$side-$SECONDS.log 2>&1
  echo "vae $side rc $? t=$SECONDS"; grep -E "head conv|full Wan|decode|conv3d  " $R/vae-$side-*.log | tail -8
done
cd $R/.. && tar czf results.tgz r && rm -rf r
