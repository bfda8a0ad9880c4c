#!/usr/bin/env bash
# Session 15, call 5: cuDNN with the time taps folded into channels at the decoder's 192- and
# 384-channel layers (`--parts vae`'s conv timings, twice).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
gunzip -f .gpu/new/*.gz; chmod +x .gpu/new/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
for i in 1 2; do
  timeout 60 .gpu/new/turbine-gpucheck --parts vae --json $R/vae-$i.json > $R/vae-$i.log 2>&1
  echo "vae $i rc $?"; grep -hE "conv 96|conv 192|conv 384|head conv|^decode" $R/vae-$i.log
done
cd $R/.. && tar czf results.tgz r && rm -rf r
