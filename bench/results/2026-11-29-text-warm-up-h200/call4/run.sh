#!/usr/bin/env bash
# Session 29, call 4: the VAE's first chunk pushed alone, op by op with the host's time in each
# (the generation's VAE stage waits on the host there), twice.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
for i in 1 2; do
timeout 150 .gpu/new/turbine-gpucheck --parts vae --vae-iters 6 --json $R/vae-$i.json > $R/vae-$i.log 2>&1; echo "vae rc $? t=$SECONDS"
sed -n '/^decode/,/^encode/p' $R/vae-$i.log
done
cd $R/.. && tar czf results.tgz r && rm -rf r
