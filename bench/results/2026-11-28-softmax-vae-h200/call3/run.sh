#!/usr/bin/env bash
# Session 20, call 3: the VAE's bf16 channel norm with SiLU on __expf / __fdividef (new3) against
# base (the exp1 build, a2d7677's kernels): --parts vae ABBA (decode/encode timing and profile,
# tiny-VAE gates), --parts ops on new3 (the channel-norm rows among them).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
i=0
for side in exp1 new3 new3 exp1; do
  i=$((i+1))
  timeout 140 .gpu/$side/turbine-gpucheck --parts vae --json $R/vae-$i-$side.json > $R/vae-$i-$side.log 2>&1; echo "vae $i $side rc $? t=$SECONDS"
  grep -E "^decode|^encode|causal_rms_norm|conv3d  |FAIL|ALL CHECKS|tiny VAE" $R/vae-$i-$side.log
done
timeout 150 .gpu/new3/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -iE "norm" $R/ops.log | grep -v INFO | head -30; grep -E "passed|failed|FAIL|ALL CHECKS" $R/ops.log | tail -3
cd $R/.. && tar czf results.tgz r && rm -rf r
